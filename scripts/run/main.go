// Command run is the main job of "make run". It starts alqd on a live
// source of DHCPv6 binding changes, follows it with "alq watch --json" (an
// Active Leasequery requestor, RFC 7653) printing every change it receives,
// stops by itself after a bounded time, and then stops everything it
// started.
//
// The source depends on the machine:
//
//   - As root with ISC Kea installed (kea-dhcp6, perfdhcp, ip and Kea's
//     lease_cmds hook), the chain is real. Two network namespaces are
//     joined by a veth pair, kea-dhcp6 keeps a memfile lease file, and
//     perfdhcp clients talk to it directly and through a relay that adds
//     Remote-ID and Relay-ID. alqd follows the lease file
//     (--kea-lease-file).
//   - Otherwise, "alqd-loadgen churn" posts simulated binding changes into
//     alqd's ingest API (--ingest-listen). This needs nothing but Go.
//
// Usage, from the module root after "make build":
//
//	go run ./scripts/run [-bin bin] [-seconds 30] [-mode auto|kea|loadgen]
//
// RUN_SECONDS and RUN_MODE set the defaults of -seconds and -mode.
// The events of alq watch go to standard output, one JSON object per line;
// what this program does goes to standard error. Every address it uses is
// on loopback or inside the namespaces it creates.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/alqd/alqd/internal/keatest"
)

const (
	defaultSeconds = 30
	maxSeconds     = 3600

	readyTimeout = 20 * time.Second // for alqd to accept TCP connections
	stopTimeout  = 15 * time.Second // for a process to exit after its signal
	logTail      = 4 << 10          // bytes of a log printed on failure
)

// options are the command line of this program.
type options struct {
	bin     string
	seconds int
	mode    string
}

func main() {
	opts, err := parseOptions(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "run:", err)
		os.Exit(2)
	}
	ctx, stop := stopSignals()
	defer stop()

	r := &runner{opts: opts}
	err = r.run(ctx)
	r.cleanup()
	if err != nil {
		r.say("failed: %v", err)
		os.Exit(1)
	}
	if r.cleanupFailed {
		r.say("failed: stopping the processes reported the errors above")
		os.Exit(1)
	}
}

// stopSignals returns a context that ends at SIGINT, SIGTERM or SIGPIPE.
// A reader of standard output that goes away, as "make run | head" does,
// must stop the job like an interrupt. Without SIGPIPE here the Go runtime
// would end the program at the first write to the closed pipe, and the
// processes it started would run on with nothing to stop them.
func stopSignals() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGPIPE)
}

func parseOptions(args []string) (options, error) {
	seconds := defaultSeconds
	if v := os.Getenv("RUN_SECONDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return options{}, fmt.Errorf("RUN_SECONDS=%q is not a whole number of seconds", v)
		}
		seconds = n
	}
	mode := os.Getenv("RUN_MODE")
	if mode == "" {
		mode = "auto"
	}

	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var o options
	fs.StringVar(&o.bin, "bin", "bin", "directory holding the alqd, alq and alqd-loadgen binaries (make build writes them to bin/)")
	fs.IntVar(&o.seconds, "seconds", seconds, "how long to run the source and print changes, in seconds (default from RUN_SECONDS)")
	fs.StringVar(&o.mode, "mode", mode, "auto (Kea when root and Kea are available, else the load generator), kea or loadgen (default from RUN_MODE)")
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	if fs.NArg() > 0 {
		return options{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.seconds < 1 || o.seconds > maxSeconds {
		return options{}, fmt.Errorf("the run time %d s is out of range: set RUN_SECONDS or -seconds from 1 to %d", o.seconds, maxSeconds)
	}
	switch o.mode {
	case "auto", "kea", "loadgen":
	default:
		return options{}, fmt.Errorf("mode %q is invalid: use auto, kea or loadgen", o.mode)
	}
	return o, nil
}

// runner holds what one run started, so that cleanup can stop it.
type runner struct {
	opts     options
	dir      string   // temporary directory: alqd's store and the logs
	cleanups []func() // run last registered first

	cleanupFailed bool // a cleanup reported an error
}

func (r *runner) say(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "run: "+format+"\n", args...)
}

func (r *runner) cleanup() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
	r.cleanups = nil
}

func (r *runner) run(ctx context.Context) error {
	for _, name := range []string{"alqd", "alq", "alqd-loadgen"} {
		if _, err := os.Stat(filepath.Join(r.opts.bin, name)); err != nil {
			return fmt.Errorf("%s is missing (%v): run make build first, or pass -bin", filepath.Join(r.opts.bin, name), err)
		}
	}
	dir, err := os.MkdirTemp("", "alqd-run-")
	if err != nil {
		return err
	}
	r.dir = dir
	r.cleanups = append(r.cleanups, func() { os.RemoveAll(dir) })

	useKea, err := r.chooseSource()
	if err != nil {
		return err
	}
	if useKea {
		return r.runKea(ctx)
	}
	return r.runLoadgen(ctx)
}

// chooseSource decides between Kea and the load generator and prints why.
func (r *runner) chooseSource() (bool, error) {
	if r.opts.mode == "loadgen" {
		r.say("source: alqd-loadgen churn into alqd's ingest API (RUN_MODE=loadgen)")
		return false, nil
	}
	tb := newHarnessTB(r.say)
	err := tb.call(func() { keatest.Require(tb) })
	switch {
	case err == nil:
		r.say("source: ISC Kea with perfdhcp clients (root, kea-dhcp6, perfdhcp and ip are installed)")
		return true, nil
	case r.opts.mode == "kea":
		return false, fmt.Errorf("RUN_MODE=kea, but Kea can not run here: %w", err)
	}
	r.say("source: alqd-loadgen churn into alqd's ingest API, because Kea can not run here: %v", err)
	return false, nil
}

// alqdArgs returns alqd's command line apart from its source.
func (r *runner) alqdArgs(listen, metrics netip.AddrPort) []string {
	return []string{
		"--listen", listen.String(),
		"--allow", "127.0.0.0/8",
		"--data-dir", filepath.Join(r.dir, "data"),
		"--metrics", metrics.String(),
		"--active", "--insecure",
	}
}

// runKea builds the namespaces and starts Kea, alqd on Kea's lease file and
// alq watch. perfdhcp drives Kea for two thirds of the run time, so that
// the last third shows leases expiring.
func (r *runner) runKea(ctx context.Context) error {
	tb := newHarnessTB(r.say)
	var env *keatest.Env
	r.cleanups = append(r.cleanups, func() {
		r.say("stopping Kea and deleting the network namespaces")
		if env != nil {
			if err := stopKea(env.Kea); err != nil {
				r.say("%v", err)
				r.cleanupFailed = true
			}
		}
		tb.runCleanups()
		if tb.Failed() {
			r.cleanupFailed = true
		}
	})
	err := tb.call(func() {
		env = keatest.Start(tb, keatest.Config{
			ValidLifetime:     20 * time.Second,
			PreferredLifetime: 15 * time.Second,
			RenewTimer:        5 * time.Second,
			RebindTimer:       10 * time.Second,
			HoldReclaimedTime: 5 * time.Second,
			LFCInterval:       10 * time.Second,
		})
	})
	if err != nil {
		return fmt.Errorf("start Kea: %w", err)
	}
	r.say("kea-dhcp6 (pid %d) serves %s in network namespace %s; lease file %s",
		env.Kea.PID(), keatest.ServerAddr, env.Topology.ServerNamespace, env.Kea.LeaseFile())

	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	listen, metrics := ports[0], ports[1]
	args := append([]string{"--kea-lease-file", env.Kea.LeaseFile()}, r.alqdArgs(listen, metrics)...)
	alqd, err := r.startAlqd(args, listen)
	if err != nil {
		return err
	}
	watch, counter, err := r.startWatch(listen)
	if err != nil {
		return err
	}

	// perfdhcp runs in whole seconds.
	traffic := time.Duration(max(1, r.opts.seconds*2/3)) * time.Second
	loads := []keatest.Load{
		{Rate: 10, RenewRate: 3, ReleaseRate: 2, Clients: 200, Duration: traffic},
		{Relayed: true, Rate: 5, RenewRate: 2, ReleaseRate: 1, Clients: 100, Duration: traffic},
	}
	r.say("perfdhcp: 10 direct and 5 relayed new clients per second, with renews and releases, for %v", traffic)
	trafficCtx, stopTraffic := context.WithCancel(ctx)
	trafficDone := make(chan error, 1)
	go func() {
		_, err := env.RunAll(trafficCtx, loads...)
		trafficDone <- err
	}()
	defer func() {
		stopTraffic()
		<-trafficDone
	}()

	if err := r.waitRunTime(ctx, alqd, watch); err != nil {
		return err
	}
	return r.finish(alqd, watch, counter)
}

// stopKea stops Kea and waits until no kea-lfc it started is left. Kea
// renames the lease file to .1 before it starts kea-lfc, and kea-lfc
// deletes .1 and then its .pid file when it finishes. Kea.Stop waits only
// for the .pid file, which a kea-lfc started just before SIGTERM may not
// have written yet.
func stopKea(kea *keatest.Kea) error {
	if err := kea.Stop(); err != nil {
		return err
	}
	const timeout = 10 * time.Second
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); {
		_, errRotated := os.Stat(kea.LeaseFile() + ".1")
		_, errLFC := os.Stat(kea.LeaseFile() + ".pid")
		if errors.Is(errRotated, os.ErrNotExist) && errors.Is(errLFC, os.ErrNotExist) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("kea-lfc had not finished %v after Kea stopped: %s.1 or .pid still exists", timeout, kea.LeaseFile())
}

// runLoadgen starts alqd with its ingest API, alq watch, and alqd-loadgen
// churn for the run time.
func (r *runner) runLoadgen(ctx context.Context) error {
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	listen, metrics, ingest := ports[0], ports[1], ports[2]
	args := append([]string{"--ingest-listen", ingest.String()}, r.alqdArgs(listen, metrics)...)
	alqd, err := r.startAlqd(args, listen)
	if err != nil {
		return err
	}
	watch, counter, err := r.startWatch(listen)
	if err != nil {
		return err
	}

	churnLog := filepath.Join(r.dir, "alqd-loadgen.log")
	churnOut, err := os.Create(churnLog)
	if err != nil {
		return err
	}
	defer churnOut.Close()
	churnArgs := []string{"churn",
		"--ingest-url", "http://" + ingest.String(),
		"--rate", "20", "--duration", strconv.Itoa(r.opts.seconds) + "s",
		"--clients", "200", "--links", "4", "--relays", "4",
		"--valid-lifetime", "60", "--preferred-lifetime", "40",
		"--stamp", "none", "--quiet",
	}
	r.say("alqd-loadgen churn: 20 binding changes per second from 200 clients on 4 links for %d s", r.opts.seconds)
	churn, err := r.start("alqd-loadgen", churnOut, churnOut, churnArgs...)
	if err != nil {
		return err
	}

	if err := r.waitRunTime(ctx, alqd, watch); err != nil {
		return err
	}
	// The churn stops by itself at the same time; give it a moment.
	if err := churn.wait(stopTimeout); err != nil {
		return fmt.Errorf("alqd-loadgen churn: %w\n%s", err, tailFile(churnLog))
	}
	if err := r.finish(alqd, watch, counter); err != nil {
		return err
	}
	summary := []byte(tailFile(churnLog))
	var compact bytes.Buffer
	if json.Compact(&compact, summary) == nil {
		summary = compact.Bytes()
	}
	r.say("alqd-loadgen summary: %s", summary)
	return nil
}

// waitRunTime waits for the run time. It fails early when alqd or alq
// watch exits on its own.
func (r *runner) waitRunTime(ctx context.Context, alqd, watch *process) error {
	r.say("printing changes for %d s (RUN_SECONDS); interrupt to stop earlier", r.opts.seconds)
	select {
	case <-time.After(time.Duration(r.opts.seconds) * time.Second):
		r.say("time is up after %d s: stopping alq watch and alqd", r.opts.seconds)
	case <-ctx.Done():
		r.say("interrupted: stopping alq watch and alqd")
	case <-alqd.done:
		return fmt.Errorf("alqd exited early: %v\n%s", alqd.err, tailFile(alqd.log))
	case <-watch.done:
		return fmt.Errorf("alq watch exited early: %v", watch.err)
	}
	return nil
}

// finish stops alq watch and alqd and prints what alq watch received.
func (r *runner) finish(alqd, watch *process, counter *eventCounter) error {
	var errs []error
	// alq watch exits with 130 when interrupted, its normal way to stop.
	if err := watch.stop(os.Interrupt); err != nil && !exitedWith(err, 130) {
		errs = append(errs, fmt.Errorf("alq watch: %w", err))
	}
	if err := alqd.stop(syscall.SIGTERM); err != nil {
		errs = append(errs, fmt.Errorf("alqd: %w\n%s", err, tailFile(alqd.log)))
	}
	events, active, ended := counter.counts()
	r.say("alq watch printed %s: %d active and %d ended bindings; alqd's log was %s", count(events, "event"), active, ended, alqd.log)
	if active+ended == 0 {
		errs = append(errs, fmt.Errorf("alq watch received no binding\n%s", tailFile(alqd.log)))
	}
	return errors.Join(errs...)
}

func (r *runner) startAlqd(args []string, listen netip.AddrPort) (*process, error) {
	logPath := filepath.Join(r.dir, "alqd.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	p, err := r.start("alqd", logFile, logFile, args...)
	logFile.Close()
	if err != nil {
		return nil, err
	}
	p.log = logPath
	if err := p.waitAccepting(listen); err != nil {
		return nil, err
	}
	return p, nil
}

// startWatch starts alq watch on alqd, with its events on standard output
// and counted.
func (r *runner) startWatch(server netip.AddrPort) (*process, *eventCounter, error) {
	counter := &eventCounter{out: os.Stdout}
	p, err := r.start("alq", counter, os.Stderr,
		"watch", "--server", server.String(), "--json", "--retry-interval", "1s")
	if err != nil {
		return nil, nil, err
	}
	r.say("alq watch prints every change alqd sends; one JSON object per line follows on standard output")
	return p, counter, nil
}

// process is one child process this program started.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string        // path of its log file, if any
	done chan struct{} // closed once it has exited
	err  error         // its exit error, set before done is closed
}

// start starts bin/name with args. The process is killed by its process ID
// in cleanup if it still runs then.
func (r *runner) start(name string, stdout, stderr io.Writer, args ...string) (*process, error) {
	path := filepath.Join(r.opts.bin, name)
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// A process group of its own keeps an interrupt at the terminal from
	// reaching it before this program stops it in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	r.say("started %s (pid %d): %s %s", name, cmd.Process.Pid, path, strings.Join(args, " "))
	p := &process{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	r.cleanups = append(r.cleanups, func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p, nil
}

// waitAccepting waits until the process accepts TCP connections on addr.
func (p *process) waitAccepting(addr netip.AddrPort) error {
	deadline := time.Now().Add(readyTimeout)
	for {
		conn, err := net.DialTimeout("tcp", addr.String(), time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before it accepted connections on %s: %v\n%s", p.name, addr, p.err, tailFile(p.log))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not accept connections on %s within %v: %w", p.name, addr, readyTimeout, err)
		}
	}
}

// stop sends sig and waits for the exit, and kills the process after
// stopTimeout. It returns the exit error.
func (p *process) stop(sig os.Signal) error {
	select {
	case <-p.done:
		return fmt.Errorf("exited before it was stopped: %v", p.err)
	default:
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		return err
	}
	return p.wait(stopTimeout)
}

// wait waits up to timeout for the process to exit by itself, then kills it.
func (p *process) wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not exit within %v and was killed", p.name, timeout)
	}
}

func exitedWith(err error, code int) bool {
	var exit *exec.ExitError
	return errors.As(err, &exit) && exit.ExitCode() == code
}

// eventCounter passes alq watch's output through and counts its events.
type eventCounter struct {
	out io.Writer

	mu      sync.Mutex
	partial []byte // an incomplete last line
	events  int
	active  int
	ended   int
}

func (c *eventCounter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.partial = append(c.partial, p...)
	for {
		i := strings.IndexByte(string(c.partial), '\n')
		if i < 0 {
			break
		}
		c.count(c.partial[:i])
		c.partial = c.partial[i+1:]
	}
	return c.out.Write(p)
}

func (c *eventCounter) count(line []byte) {
	var ev struct {
		Event string `json:"event"`
		State string `json:"state"`
	}
	if json.Unmarshal(line, &ev) != nil {
		return
	}
	c.events++
	if ev.Event == "binding" {
		if ev.State == "ended" {
			c.ended++
		} else {
			c.active++
		}
	}
}

// count returns n and noun, in the plural unless n is 1.
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

func (c *eventCounter) counts() (events, active, ended int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.events, c.active, c.ended
}

// freePorts returns n distinct loopback addresses whose ports were free
// for both TCP and UDP a moment ago; alqd serves both on its --listen port.
func freePorts(n int) ([]netip.AddrPort, error) {
	loopback := netip.MustParseAddr("127.0.0.1")
	var held []io.Closer // kept open so that the ports differ
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	var ports []netip.AddrPort
	for tries := 0; len(ports) < n; tries++ {
		if tries == 20*n {
			return nil, fmt.Errorf("found %d of %d loopback ports free for both TCP and UDP", len(ports), n)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		held = append(held, ln)
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		held = append(held, pc)
		ports = append(ports, netip.AddrPortFrom(loopback, uint16(port)))
	}
	return ports, nil
}

// tailFile returns the last lines of the file at path, about logTail bytes.
func tailFile(path string) string {
	if path == "" {
		return ""
	}
	f, err := os.Open(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	defer f.Close()
	var lines []string
	size := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		size += len(sc.Text()) + 1
		for size > logTail && len(lines) > 1 {
			size -= len(lines[0]) + 1
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}
