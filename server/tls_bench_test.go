package server

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/store"
)

// The benchmarks in this file compare Active Leasequery over TLS with
// plaintext. The server runs in the benchmark process and its subscribers in
// a child process (the test binary started again with fanoutClientEnv), so
// that the server's CPU time (getrusage of this process) and memory
// (runtime statistics of this process) leave out the clients' decryption
// and reading.

// fanoutClientEnv names the environment variable that makes the test binary
// a fanout client; its value is the JSON of fanoutClientArgs.
const fanoutClientEnv = "ALQD_FANOUT_CLIENT"

// fanoutClientArgs tells a fanout client what to open.
type fanoutClientArgs struct {
	Addr  string `json:"addr"`
	Conns int    `json:"conns"`
	// TLS files; empty CA means plaintext.
	CA   string `json:"ca"`
	Cert string `json:"cert"`
	Key  string `json:"key"`
}

// fanoutClient opens a.Conns connections, each with an unfiltered
// ACTIVELEASEQUERY, writes "ready", and then answers each "wait N" line on
// in with "ok" once its connections have received N LEASEQUERY-DATA
// messages in all. It ends when in is closed.
func fanoutClient(a fanoutClientArgs, in io.Reader, out io.Writer) error {
	var cfg *tls.Config
	if a.CA != "" {
		pemData, err := os.ReadFile(a.CA)
		if err != nil {
			return err
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pemData)
		pair, err := tls.LoadX509KeyPair(a.Cert, a.Key)
		if err != nil {
			return err
		}
		cfg = &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, ServerName: "::1"}
	}

	var received atomic.Int64
	var readers sync.WaitGroup
	conns := make([]net.Conn, a.Conns)
	defer func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Close()
			}
		}
		readers.Wait()
	}()
	for i := range conns {
		c, err := subscribe(a.Addr, cfg, uint32(i+1))
		if err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
		conns[i] = c
		readers.Add(1)
		go func() {
			defer readers.Done()
			countData(c, &received)
		}()
	}
	fmt.Fprintln(out, "ready")

	sc := bufio.NewScanner(in)
	for sc.Scan() {
		want, err := strconv.ParseInt(strings.TrimPrefix(sc.Text(), "wait "), 10, 64)
		if err != nil {
			return fmt.Errorf("command %q: %w", sc.Text(), err)
		}
		deadline := time.Now().Add(time.Minute)
		for received.Load() < want {
			if time.Now().After(deadline) {
				return fmt.Errorf("received %d LEASEQUERY-DATA, want %d after a minute", received.Load(), want)
			}
			time.Sleep(50 * time.Microsecond)
		}
		fmt.Fprintln(out, "ok")
	}
	return sc.Err()
}

// subscribe opens one connection, runs STARTTLS when cfg is set, sends an
// unfiltered ACTIVELEASEQUERY and reads its LEASEQUERY-REPLY.
func subscribe(addr string, cfg *tls.Config, xid uint32) (net.Conn, error) {
	raw, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	var c net.Conn = raw
	if cfg != nil {
		if _, err := raw.Write(frame(startTLSMessage(xid))); err != nil {
			raw.Close()
			return nil, err
		}
		if _, err := readFrameExact(raw); err != nil {
			raw.Close()
			return nil, fmt.Errorf("reading the REPLY to STARTTLS: %w", err)
		}
		tc := tls.Client(raw, cfg)
		if err := tc.Handshake(); err != nil {
			raw.Close()
			return nil, err
		}
		c = tc
	}
	if _, err := c.Write(frame(activeleasequery(xid, nil))); err != nil {
		c.Close()
		return nil, err
	}
	reply, err := readFrameExact(c)
	if err != nil || codec.MsgType(reply[0]) != codec.MsgLeasequeryReply {
		c.Close()
		return nil, fmt.Errorf("ACTIVELEASEQUERY not accepted: %v", err)
	}
	return c, nil
}

// readFrameExact reads one framed message without reading past it.
func readFrameExact(r io.Reader) ([]byte, error) {
	var head [codec.FrameHeaderLen]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return nil, err
	}
	msg := make([]byte, int(head[0])<<8|int(head[1]))
	if len(msg) < codec.HeaderLen {
		return nil, fmt.Errorf("frame of %d octets", len(msg))
	}
	_, err := io.ReadFull(r, msg)
	return msg, err
}

// countData counts the LEASEQUERY-DATA messages c receives until it fails.
func countData(c net.Conn, received *atomic.Int64) {
	fr := codec.NewFrameReader(c, 0)
	for {
		msg, err := fr.ReadFrame()
		if err != nil {
			return
		}
		if codec.MsgType(msg[0]) == codec.MsgLeasequeryData {
			received.Add(1)
		}
	}
}

// fanoutRig is one server with its subscribers in a child process.
type fanoutRig struct {
	st    *store.Store
	srv   *Server
	conns int
	cmd   *exec.Cmd
	in    io.WriteCloser
	out   *bufio.Reader

	published int64 // LEASEQUERY-DATA messages expected in all
	next      int   // binding counter
}

// newFanoutRig starts a server with Active Leasequery, over TLS when
// secure is set, and a client child with conns subscribers.
func newFanoutRig(b *testing.B, secure bool, conns int) *fanoutRig {
	b.Helper()
	st, srv, args := startFanoutServer(b, secure, conns)
	r := &fanoutRig{st: st, srv: srv, conns: conns}
	r.start(b, args)
	return r
}

// startFanoutServer starts a server with Active Leasequery for conns
// subscribers, over TLS when secure is set, and returns the arguments of a
// client child that connects to it.
func startFanoutServer(b *testing.B, secure bool, conns int) (*store.Store, *Server, fanoutClientArgs) {
	b.Helper()
	st := openStore(b, nil)
	cfg := testConfig()
	cfg.ListenUDP = "off"
	cfg.Active = true
	cfg.MaxConnsPerRequestor = conns + 10
	cfg.IdleTimeout = time.Hour
	args := fanoutClientArgs{Conns: conns}
	if secure {
		f := newTLSFixture(b)
		cfg.TLS = f.files
		dir := b.TempDir()
		args.CA = f.files.ClientCAFile
		args.Cert, args.Key = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
		writeKeyPair(b, args.Cert, args.Key, f.client)
	} else {
		cfg.Insecure = true
	}
	srv := startServer(b, st, cfg)
	args.Addr = srv.Addr().String()
	return st, srv, args
}

// start runs the client child and waits until its connections subscribed.
func (r *fanoutRig) start(b *testing.B, args fanoutClientArgs) {
	b.Helper()
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	js, _ := json.Marshal(args)
	r.cmd = exec.Command(exe)
	r.cmd.Env = append(os.Environ(), fanoutClientEnv+"="+string(js))
	r.cmd.Stderr = os.Stderr
	if r.in, err = r.cmd.StdinPipe(); err != nil {
		b.Fatal(err)
	}
	stdout, err := r.cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	r.out = bufio.NewReader(stdout)
	if err := r.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = r.in.Close()
		_ = r.cmd.Wait()
	})
	if line, err := r.out.ReadString('\n'); err != nil || line != "ready\n" {
		b.Fatalf("fanout client: %q, %v", line, err)
	}
	eventually(b, 10*time.Second, "every subscriber active", func() bool {
		return int(gaugeValue(r.srv.metrics.active.connections)) == args.Conns
	})
}

// publish commits k new bindings in one store batch and waits until every
// subscriber has received them.
func (r *fanoutRig) publish(b *testing.B, k int) {
	batch := make([]store.Binding, k)
	for i := range batch {
		r.next++
		n := r.next
		addr := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 9, 12: byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
		batch[i] = binding(netip.PrefixFrom(addr, 128).String(), duid(n), "2001:db8:9::1")
	}
	seed(b, r.st, batch...)
	r.published += int64(k * r.conns)
	fmt.Fprintf(r.in, "wait %d\n", r.published)
	if line, err := r.out.ReadString('\n'); err != nil || line != "ok\n" {
		b.Fatalf("fanout client: %q, %v", line, err)
	}
}

// fanoutBatch is the number of changes per store commit in the fanout
// benchmarks, and fanoutConns the number of subscribers.
const (
	fanoutBatch = 64
	fanoutConns = 200
)

// BenchmarkActiveFanoutTLS measures one op as fanoutBatch changes committed
// and delivered to fanoutConns subscribers, over plaintext and over TLS.
// server-cpu-ns/delivery is this process's CPU time, which the client
// child does not share.
func BenchmarkActiveFanoutTLS(b *testing.B) {
	for _, secure := range []bool{false, true} {
		name := "transport=plain"
		if secure {
			name = "transport=tls"
		}
		b.Run(name, func(b *testing.B) {
			r := newFanoutRig(b, secure, fanoutConns)
			r.publish(b, fanoutBatch) // warm up the connections
			b.ReportAllocs()
			before := selfCPU(b)
			b.ResetTimer()
			for b.Loop() {
				r.publish(b, fanoutBatch)
			}
			cpu := selfCPU(b) - before
			deliveries := float64(b.N) * fanoutBatch * fanoutConns
			b.ReportMetric(cpu*1e9/deliveries, "server-cpu-ns/delivery")
			b.ReportMetric(deliveries/b.Elapsed().Seconds(), "deliveries/s")
			stats := r.srv.active.ring.Stats()
			b.ReportMetric(float64(stats.Blocked)/float64(b.N), "blocked/op")
			b.ReportMetric(float64(stats.Resyncs)/float64(b.N), "resyncs/op")
		})
	}
}

// BenchmarkActiveFanoutTLSRatio runs a plaintext and a TLS server side by
// side and alternates one op on each, so that both see the same machine
// load. It reports the medians over rounds of TLS divided by plaintext for
// the server's CPU time and for the wall time of an op. One op commits
// batch changes: with batch=1 every change is a TLS record of its own per
// connection, the worst case for TLS.
func BenchmarkActiveFanoutTLSRatio(b *testing.B) {
	for _, batch := range []int{1, fanoutBatch} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			plain := newFanoutRig(b, false, fanoutConns)
			secure := newFanoutRig(b, true, fanoutConns)
			plain.publish(b, batch)
			secure.publish(b, batch)

			var cpuRatios, wallRatios []float64
			b.ReportAllocs()
			for b.Loop() {
				var cpu, wall [2]float64
				for i, r := range []*fanoutRig{plain, secure} {
					c0, t0 := selfCPU(b), time.Now()
					r.publish(b, batch)
					cpu[i], wall[i] = selfCPU(b)-c0, time.Since(t0).Seconds()
				}
				if cpu[0] > 0 {
					cpuRatios = append(cpuRatios, cpu[1]/cpu[0])
				}
				wallRatios = append(wallRatios, wall[1]/wall[0])
			}
			b.ReportMetric(median(cpuRatios), "tls/plain-server-cpu")
			b.ReportMetric(median(wallRatios), "tls/plain-wall")
		})
	}
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	return v[len(v)/2]
}

// idleConns is the number of idle subscribers BenchmarkIdleConnMemory holds.
const idleConns = 1000

// BenchmarkIdleConnMemory reports the server's memory per idle Active
// Leasequery connection, plaintext and TLS: Go heap in use plus goroutine
// stacks after a GC, and resident set size, each the difference between
// idleConns subscribed connections and none, divided by idleConns. Run it
// with -benchtime=1x; more iterations measure the same thing again.
func BenchmarkIdleConnMemory(b *testing.B) {
	for _, secure := range []bool{false, true} {
		name := "transport=plain"
		if secure {
			name = "transport=tls"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			var heap, rss float64
			for b.Loop() {
				h, r := measureIdle(b, secure)
				heap, rss = heap+h, rss+r
			}
			b.ReportMetric(heap/float64(b.N), "heap+stack-B/conn")
			b.ReportMetric(rss/float64(b.N), "rss-B/conn")
		})
	}
}

// measureIdle opens idleConns subscribers and returns the growth of the
// server's heap plus stacks and of its RSS per connection.
func measureIdle(b *testing.B, secure bool) (heapPerConn, rssPerConn float64) {
	b.StopTimer()
	defer b.StartTimer()
	st, srv, args := startFanoutServer(b, secure, idleConns)

	heap0, rss0 := serverMemory(b)
	goroutines := runtime.NumGoroutine()
	r := &fanoutRig{st: st, srv: srv, conns: idleConns}
	r.start(b, args)
	// An idle TLS connection keeps one goroutine, its reader, once the
	// flusher that wrote its LEASEQUERY-REPLY has lingered and exited.
	perConn := 0
	if secure {
		perConn = 1
	}
	eventually(b, 10*time.Second, "flushers exited", func() bool {
		return runtime.NumGoroutine() <= goroutines+perConn*idleConns+10
	})
	heap1, rss1 := serverMemory(b)
	return float64(heap1-heap0) / idleConns, float64(rss1-rss0) / idleConns
}

// serverMemory returns this process's Go heap in use plus goroutine stacks
// after a GC, and its resident set size, in octets.
func serverMemory(b *testing.B) (heapAndStacks, rss int64) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			rss = kb << 10
		}
	}
	return int64(ms.HeapInuse + ms.StackInuse), rss
}
