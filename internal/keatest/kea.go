package keatest

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Timeouts of the Kea process life cycle. Kea 2.2 starts in well under a
// second and stops in 1-2 s on SIGTERM; the bounds leave room for a loaded
// machine.
const (
	keaCheckTimeout = 30 * time.Second // kea-dhcp6 -t
	keaStartTimeout = 30 * time.Second // until the socket and control socket are ready
	keaStopTimeout  = 15 * time.Second // after SIGTERM, before SIGKILL
	lfcWaitTimeout  = 15 * time.Second // for a running kea-lfc to finish at stop
)

// maxUnixSocketPath is the size of sun_path on Linux, including the
// terminating NUL byte.
const maxUnixSocketPath = 108

// dhcpServerPort is the UDP port DHCPv6 servers and relay agents listen on
// (RFC 8415 section 7.2).
const dhcpServerPort = 547

// Kea is one kea-dhcp6 process running in the server namespace of a Topology,
// with its configuration, lease file, log and control socket in a private
// work directory. Its methods are safe for concurrent use.
type Kea struct {
	topo    *Topology
	config  Config
	workDir string
	control *Control

	cmd      *exec.Cmd
	exited   chan struct{} // closed when the process has been waited for
	waitErr  error         // valid after exited is closed
	stopOnce sync.Once
	stopErr  error
}

// StartKea writes the configuration for cfg, checks it with "kea-dhcp6 -t",
// starts kea-dhcp6 in topo's server namespace and waits until it listens on
// [ServerAddr]:547 and responds on its control socket. Kea is stopped and its
// work directory removed in t.Cleanup; when the test has failed, the tail of
// Kea's log is logged first.
func StartKea(t testing.TB, topo *Topology, cfg Config) *Kea {
	t.Helper()
	Require(t)

	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg = cfg.withDefaults()

	// The work directory is short on purpose: the control socket path must
	// fit the 108 bytes of sun_path, which a t.TempDir path can exceed.
	workDir, err := os.MkdirTemp("", "alqd-kea-")
	if err != nil {
		t.Fatalf("create the Kea work directory: %v", err)
	}
	if socket := filepath.Join(workDir, controlSocketName); len(socket) >= maxUnixSocketPath {
		os.RemoveAll(workDir)
		t.Fatalf("Kea's control socket path %s is %d bytes, longer than the %d bytes a unix socket address can hold; set TMPDIR to a shorter directory",
			socket, len(socket), maxUnixSocketPath-1)
	}
	k := &Kea{
		topo:    topo,
		config:  cfg,
		workDir: workDir,
		control: &Control{SocketPath: filepath.Join(workDir, controlSocketName)},
		exited:  make(chan struct{}),
	}
	t.Cleanup(func() {
		if err := k.Stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("tail of %s:\n%s", k.LogFile(), tailFile(k.LogFile(), 40))
			t.Logf("tail of %s:\n%s", filepath.Join(workDir, stdoutFileName), tailFile(filepath.Join(workDir, stdoutFileName), 20))
		}
		if err := os.RemoveAll(workDir); err != nil {
			t.Errorf("remove the Kea work directory: %v", err)
		}
	})

	if err := k.writeConfig(); err != nil {
		t.Fatal(err)
	}
	if err := k.checkConfig(); err != nil {
		t.Fatal(err)
	}
	if err := k.start(); err != nil {
		t.Fatal(err)
	}
	return k
}

// WorkDir returns the directory that holds Kea's configuration, lease files,
// log, PID file and control socket.
func (k *Kea) WorkDir() string { return k.workDir }

// LeaseFile returns the path of the live memfile lease file. LFC renames it
// to LeaseFile()+".1" and compacts it into LeaseFile()+".2".
func (k *Kea) LeaseFile() string { return filepath.Join(k.workDir, leaseFileName) }

// ConfigFile returns the path of the Kea configuration in use.
func (k *Kea) ConfigFile() string { return filepath.Join(k.workDir, configFileName) }

// LogFile returns the path of Kea's own log.
func (k *Kea) LogFile() string { return filepath.Join(k.workDir, logFileName) }

// Config returns the configuration Kea was started with, defaults filled in.
func (k *Kea) Config() Config { return k.config }

// Control returns the client for Kea's control socket.
func (k *Kea) Control() *Control { return k.control }

// PID returns the process ID of kea-dhcp6.
func (k *Kea) PID() int { return k.cmd.Process.Pid }

// Stop sends SIGTERM to Kea and waits for it to exit, sending SIGKILL after
// 15 s. It then waits for a kea-lfc that Kea started to finish, so that no
// process is left in the namespace. Stop is idempotent; it returns an error if
// Kea had to be killed or exited with a failure status before the stop.
func (k *Kea) Stop() error {
	k.stopOnce.Do(func() { k.stopErr = k.stop() })
	return k.stopErr
}

func (k *Kea) stop() error {
	if k.cmd == nil || k.cmd.Process == nil {
		return nil
	}

	var err error
	select {
	case <-k.exited:
		// Kea exited by itself, which it never does when healthy.
		err = fmt.Errorf("kea-dhcp6 (pid %d) exited before the test stopped it: %v; see %s", k.PID(), k.waitErr, k.LogFile())
	default:
		_ = k.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-k.exited:
		case <-time.After(keaStopTimeout):
			_ = k.cmd.Process.Kill()
			<-k.exited
			err = fmt.Errorf("kea-dhcp6 (pid %d) did not exit within %v of SIGTERM and was killed", k.PID(), keaStopTimeout)
		}
	}

	// kea-lfc removes its PID file when it finishes.
	lfcPIDFile := k.LeaseFile() + ".pid"
	deadline := time.Now().Add(lfcWaitTimeout)
	for fileExists(lfcPIDFile) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	return err
}

func (k *Kea) writeConfig() error {
	tmplPath, err := testdataFile("kea-dhcp6.json.tmpl")
	if err != nil {
		return err
	}
	tmplText, err := os.ReadFile(tmplPath)
	if err != nil {
		return fmt.Errorf("keatest: read the Kea configuration template: %w", err)
	}
	hook, err := findLeaseCmdsHook()
	if err != nil {
		return err
	}
	text, err := renderConfig(string(tmplText), k.config, k.workDir, hook)
	if err != nil {
		return err
	}
	return os.WriteFile(k.ConfigFile(), text, 0o644)
}

// command returns a command that runs kea-dhcp6 with args in the server
// namespace, with Kea's PID and lock files in the work directory.
func (k *Kea) command(ctx context.Context, args ...string) (*exec.Cmd, error) {
	keaPath, err := findTool("kea-dhcp6")
	if err != nil {
		return nil, err
	}
	argv := k.topo.ExecArgs(k.topo.ServerNamespace, keaPath, args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "KEA_PIDFILE_DIR="+k.workDir, "KEA_LOCKFILE_DIR="+k.workDir)
	return cmd, nil
}

// checkConfig runs "kea-dhcp6 -t" in the server namespace, where the
// configured interface exists.
func (k *Kea) checkConfig() error {
	ctx, cancel := context.WithTimeout(context.Background(), keaCheckTimeout)
	defer cancel()

	cmd, err := k.command(ctx, "-t", k.ConfigFile())
	if err != nil {
		return err
	}
	out, err := runChild(cmd)
	if err != nil {
		return fmt.Errorf("kea-dhcp6 -t %s rejected the configuration: %w\n%s", k.ConfigFile(), err, out)
	}
	return nil
}

// start launches kea-dhcp6 and waits until it is ready.
func (k *Kea) start() error {
	stdout, err := os.Create(filepath.Join(k.workDir, stdoutFileName))
	if err != nil {
		return fmt.Errorf("keatest: create Kea's output file: %w", err)
	}
	defer stdout.Close() // the child has its own descriptor

	cmd, err := k.command(context.Background(), "-c", k.ConfigFile())
	if err != nil {
		return err
	}
	cmd.Stdout = stdout
	cmd.Stderr = stdout
	if err := startChild(cmd); err != nil {
		return fmt.Errorf("start kea-dhcp6: %w", err)
	}
	k.cmd = cmd
	go func() {
		k.waitErr = cmd.Wait()
		close(k.exited)
	}()

	return k.waitReady()
}

// waitReady polls until Kea has bound [ServerAddr]:547 and responds to
// version-get on its control socket.
func (k *Kea) waitReady() error {
	want := netip.AddrPortFrom(ServerAddr, dhcpServerPort)
	udp6 := fmt.Sprintf("/proc/%d/net/udp6", k.PID())
	deadline := time.Now().Add(keaStartTimeout)
	for {
		select {
		case <-k.exited:
			return fmt.Errorf("kea-dhcp6 exited during start-up: %v\n%s", k.waitErr, tailFile(k.LogFile(), 20))
		default:
		}

		bound, err := udpSocketBound(udp6, want)
		if err == nil && bound {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err = k.control.Command(ctx, "version-get", nil)
			cancel()
			if err == nil {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kea-dhcp6 was not ready within %v (UDP %v bound: %v, last error: %v)\n%s",
				keaStartTimeout, want, bound, err, tailFile(k.LogFile(), 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// udpSocketBound reports whether a /proc/<pid>/net/udp6 table lists a socket
// bound to want. The table shows the network namespace of that process.
func udpSocketBound(tablePath string, want netip.AddrPort) (bool, error) {
	f, err := os.Open(tablePath)
	if err != nil {
		return false, err
	}
	defer f.Close()

	scanner := bufio.NewScanner(f)
	scanner.Scan() // header line
	for scanner.Scan() {
		fields := strings.Fields(scanner.Text())
		if len(fields) < 2 {
			continue
		}
		local, err := parseProcNetAddr(fields[1])
		if err != nil {
			return false, fmt.Errorf("%s: %w", tablePath, err)
		}
		if local == want {
			return true, nil
		}
	}
	return false, scanner.Err()
}

// parseProcNetAddr parses a local_address of /proc/net/udp6 or tcp6:
// 32 hex digits of the address, printed as four 32-bit words in host byte
// order, a colon, and 4 hex digits of the port.
func parseProcNetAddr(s string) (netip.AddrPort, error) {
	addrText, portText, ok := strings.Cut(s, ":")
	if !ok || len(addrText) != 32 || len(portText) != 4 {
		return netip.AddrPort{}, fmt.Errorf("invalid /proc/net address %q", s)
	}
	var addr [16]byte
	for i := range 4 {
		word, err := strconv.ParseUint(addrText[i*8:i*8+8], 16, 32)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("invalid /proc/net address %q: %w", s, err)
		}
		binary.NativeEndian.PutUint32(addr[i*4:], uint32(word))
	}
	port, err := strconv.ParseUint(portText, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("invalid /proc/net port in %q: %w", s, err)
	}
	return netip.AddrPortFrom(netip.AddrFrom16(addr), uint16(port)), nil
}

// tailFile returns the last lines of a file, or a note that it is unreadable.
func tailFile(path string, lines int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, os.ErrNotExist)
}

// hexBytes decodes colon-separated hex ("00:01:02") as Kea prints DUIDs and
// hardware addresses.
func hexBytes(s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	return hex.DecodeString(strings.ReplaceAll(s, ":", ""))
}
