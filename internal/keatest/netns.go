package keatest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Addresses of the test topology. All are in the documentation prefix
// 2001:db8::/32 (RFC 3849) and exist only inside the namespaces of a Topology.
var (
	// ServerAddr is Kea's address on the server side of the veth pair.
	ServerAddr = netip.MustParseAddr("2001:db8:1::1")
	// ClientAddr is perfdhcp's address on the client side of the veth pair.
	ClientAddr = netip.MustParseAddr("2001:db8:1::2")
	// ShimAddr is the relay shim's address on the client side.
	ShimAddr = netip.MustParseAddr("2001:db8:1::3")
)

// Interface names inside the namespaces. The veth pair is created directly
// inside the namespaces, so concurrent topologies never share a name.
const (
	ServerInterface = "veth-srv"
	ClientInterface = "veth-cli"
)

// namespacePrefix starts the name of every namespace this package creates;
// the rest is "srv-" or "cli-", the creating process ID and a sequence number.
const namespacePrefix = "alqd-"

// netnsDir is the directory of the named namespaces of ip netns.
const netnsDir = "/run/netns"

// ipTimeout bounds every ip command, which normally returns in milliseconds.
const ipTimeout = 15 * time.Second

// dadTimeout bounds the wait for the link-local addresses to leave the
// tentative state of duplicate address detection (about 1-2 s on Linux).
const dadTimeout = 20 * time.Second

// topologySeq numbers the topologies of one process.
var topologySeq atomic.Uint32

// Topology is a pair of network namespaces joined by a veth pair: ServerAddr on
// ServerInterface in ServerNamespace, ClientAddr and ShimAddr on
// ClientInterface in ClientNamespace. Its methods are safe for concurrent use.
type Topology struct {
	ServerNamespace string
	ClientNamespace string

	ipPath string
}

// NewTopology creates the namespaces and the veth pair and waits until
// duplicate address detection has finished on both ends. It first deletes
// namespaces left behind by earlier runs of this package whose process has
// exited, and anything that holds the names it is about to use. The
// namespaces are deleted in t.Cleanup. NewTopology calls Require.
func NewTopology(t testing.TB) *Topology {
	t.Helper()
	Require(t)

	ipPath, err := findTool("ip")
	if err != nil {
		t.Fatal(err)
	}
	seq := topologySeq.Add(1)
	topo := &Topology{
		ServerNamespace: fmt.Sprintf("%ssrv-%d-%d", namespacePrefix, os.Getpid(), seq),
		ClientNamespace: fmt.Sprintf("%scli-%d-%d", namespacePrefix, os.Getpid(), seq),
		ipPath:          ipPath,
	}

	removeStaleNamespaces(t, ipPath)
	for _, ns := range []string{topo.ServerNamespace, topo.ClientNamespace} {
		if namespaceExists(ns) {
			t.Logf("deleting leftover network namespace %s", ns)
			deleteNamespace(t, ipPath, ns)
		}
	}

	t.Cleanup(func() { topo.delete(t) })
	if err := topo.create(); err != nil {
		t.Fatalf("create the test network namespaces: %v", err)
	}
	if err := topo.waitForDAD(); err != nil {
		t.Fatal(err)
	}
	return topo
}

// create runs the ip commands that build the topology.
func (topo *Topology) create() error {
	srv, cli := topo.ServerNamespace, topo.ClientNamespace
	steps := [][]string{
		{"netns", "add", srv},
		{"netns", "add", cli},
		{"-n", srv, "link", "add", ServerInterface, "type", "veth", "peer", "name", ClientInterface, "netns", cli},
		{"-n", srv, "link", "set", "lo", "up"},
		{"-n", cli, "link", "set", "lo", "up"},
		// nodad: the global addresses are usable at once, and the test owns
		// both ends of the link, so no duplicate can exist.
		{"-n", srv, "addr", "add", prefix64(ServerAddr), "dev", ServerInterface, "nodad"},
		{"-n", cli, "addr", "add", prefix64(ClientAddr), "dev", ClientInterface, "nodad"},
		{"-n", cli, "addr", "add", prefix64(ShimAddr), "dev", ClientInterface, "nodad"},
		{"-n", srv, "link", "set", ServerInterface, "up"},
		{"-n", cli, "link", "set", ClientInterface, "up"},
	}
	for _, args := range steps {
		if _, err := runIP(topo.ipPath, args...); err != nil {
			return err
		}
	}
	return nil
}

// waitForDAD polls until both veth ends have a link-local address that has
// passed duplicate address detection. Kea binds the link-local address of its
// interface, and perfdhcp sends from the link-local address of its own. The
// kernel adds these addresses only once the link is up, so the absence of
// tentative addresses alone proves nothing.
func (topo *Topology) waitForDAD() error {
	ends := []struct{ ns, dev string }{
		{topo.ServerNamespace, ServerInterface},
		{topo.ClientNamespace, ClientInterface},
	}
	deadline := time.Now().Add(dadTimeout)
	for {
		pending := ""
		for _, end := range ends {
			ready, err := topo.linkLocalReady(end.ns, end.dev)
			if err != nil {
				return err
			}
			if !ready {
				pending = end.ns
			}
		}
		if pending == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the link-local address in network namespace %s is missing or tentative after %v; check it with 'ip -n %s addr'",
				pending, dadTimeout, pending)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// linkLocalReady reports whether dev in ns has a link-local address and no
// tentative address.
func (topo *Topology) linkLocalReady(ns, dev string) (bool, error) {
	linkLocal, err := runIP(topo.ipPath, "-n", ns, "-6", "addr", "show", "dev", dev, "scope", "link")
	if err != nil {
		return false, err
	}
	tentative, err := runIP(topo.ipPath, "-n", ns, "-6", "addr", "show", "dev", dev, "tentative")
	if err != nil {
		return false, err
	}
	return strings.Contains(linkLocal, "inet6 fe80:") && strings.TrimSpace(tentative) == "", nil
}

// delete removes both namespaces, and with them the veth pair. A process still
// inside a namespace at this point is a leak of the test that started it: it
// is killed and reported.
func (topo *Topology) delete(t testing.TB) {
	for _, ns := range []string{topo.ClientNamespace, topo.ServerNamespace} {
		if pids := namespacePIDs(topo.ipPath, ns); len(pids) > 0 {
			t.Errorf("processes %v were still running in network namespace %s at cleanup; they are killed now", pids, ns)
		}
		deleteNamespace(t, topo.ipPath, ns)
	}
}

// ExecArgs returns the command line that runs name with args inside the
// namespace ns ("ip netns exec"). ip execs the command in place, so the
// started process ID is that of the command itself.
func (topo *Topology) ExecArgs(ns, name string, args ...string) []string {
	return append([]string{topo.ipPath, "netns", "exec", ns, name}, args...)
}

// ListenUDP opens a UDP socket bound to addr inside the namespace ns. The
// socket stays in that namespace for its whole life, while the calling
// goroutine keeps its own. The caller owns and closes the connection.
func (topo *Topology) ListenUDP(ns string, addr netip.AddrPort) (*net.UDPConn, error) {
	type result struct {
		conn *net.UDPConn
		err  error
	}
	done := make(chan result, 1)
	go func() {
		// Only this thread changes namespace, and it runs no other goroutine
		// until it is back in its own. If the way back fails, the thread stays
		// locked, so the runtime ends it when this goroutine returns instead of
		// scheduling other goroutines on it.
		runtime.LockOSThread()
		conn, restored, err := listenUDPIn(ns, addr)
		if restored {
			runtime.UnlockOSThread()
		}
		done <- result{conn, err}
	}()
	r := <-done
	if r.err != nil && r.conn != nil {
		r.conn.Close()
		r.conn = nil
	}
	return r.conn, r.err
}

// listenUDPIn moves the calling thread into the namespace ns, opens the
// socket there and moves the thread back. restored reports whether the thread
// is in its original namespace again. The caller must have locked the thread.
func listenUDPIn(ns string, addr netip.AddrPort) (conn *net.UDPConn, restored bool, err error) {
	// The thread's own namespace, which can differ from the process's.
	original, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		return nil, true, fmt.Errorf("open the current network namespace: %w", err)
	}
	defer original.Close()
	target, err := os.Open(filepath.Join(netnsDir, ns))
	if err != nil {
		return nil, true, fmt.Errorf("open network namespace %s: %w", ns, err)
	}
	defer target.Close()

	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return nil, true, fmt.Errorf("enter network namespace %s: %w", ns, err)
	}
	conn, err = net.ListenUDP("udp6", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		err = fmt.Errorf("listen on UDP %v in network namespace %s: %w", addr, ns, err)
	}
	if errBack := unix.Setns(int(original.Fd()), unix.CLONE_NEWNET); errBack != nil {
		return conn, false, errors.Join(err, fmt.Errorf("return from network namespace %s: %w", ns, errBack))
	}
	return conn, true, err
}

// removeStaleNamespaces deletes namespaces named by this package for a
// process that no longer exists, after killing what still runs inside them
// (a Kea or perfdhcp started by that crashed run).
func removeStaleNamespaces(t testing.TB, ipPath string) {
	entries, err := os.ReadDir(netnsDir)
	if err != nil {
		return // no named namespace exists yet
	}
	for _, e := range entries {
		pid, ok := creatorPID(e.Name())
		if !ok || pid == os.Getpid() || processExists(pid) {
			continue
		}
		t.Logf("deleting network namespace %s left by exited process %d", e.Name(), pid)
		deleteNamespace(t, ipPath, e.Name())
	}
}

// creatorPID parses the process ID out of a namespace name of this package,
// "alqd-srv-<pid>-<seq>" or "alqd-cli-<pid>-<seq>".
func creatorPID(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, namespacePrefix)
	if !ok {
		return 0, false
	}
	role, rest, ok := strings.Cut(rest, "-")
	if !ok || (role != "srv" && role != "cli") {
		return 0, false
	}
	pidText, seqText, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(pidText)
	if err != nil || pid <= 0 {
		return 0, false
	}
	if _, err := strconv.ParseUint(seqText, 10, 32); err != nil {
		return 0, false
	}
	return pid, true
}

// processExists reports whether a process with the given ID exists.
func processExists(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

func namespaceExists(ns string) bool {
	_, err := os.Stat(filepath.Join(netnsDir, ns))
	return err == nil
}

// namespacePIDs returns the processes running in the namespace ns.
func namespacePIDs(ipPath, ns string) []int {
	out, err := runIP(ipPath, "netns", "pids", ns)
	if err != nil {
		return nil
	}
	var pids []int
	for _, field := range strings.Fields(out) {
		if pid, err := strconv.Atoi(field); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// deleteNamespace kills the processes inside ns, which this package started,
// and deletes ns. Failures are reported as test errors, because a namespace
// left behind breaks later runs.
func deleteNamespace(t testing.TB, ipPath, ns string) {
	for _, pid := range namespacePIDs(ipPath, ns) {
		if pid != os.Getpid() {
			_ = unix.Kill(pid, syscall.SIGKILL)
		}
	}
	if !namespaceExists(ns) {
		return
	}
	if _, err := runIP(ipPath, "netns", "del", ns); err != nil {
		t.Errorf("delete network namespace %s: %v; delete it by hand with 'ip netns del %s'", ns, err, ns)
	}
}

// runIP runs ip with args and returns its standard output.
func runIP(ipPath string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), ipTimeout)
	defer cancel()

	cmd := exec.CommandContext(ctx, ipPath, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// prefix64 formats addr with the /64 prefix length of the test link.
func prefix64(addr netip.Addr) string {
	return netip.PrefixFrom(addr, 64).String()
}
