package server

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/store"
)

// BenchmarkActiveFanoutReport measures Active Leasequery end to end on
// loopback and reports its numbers next to anchors measured in the same
// run, so that they compare across machines:
//
//   - Delivered updates per second to benchUnfiltered unfiltered
//     requestors while the store commits as fast as it can, next to a
//     goroutine-per-connection server that writes the same pre-encoded
//     frames (the design the event-loop pump replaced). The two run in
//     alternating rounds and the ratio is the median over the rounds, so
//     that other load on the machine hits both alike.
//   - Latency from the store commit call to receipt, p50 and p99, at half
//     the median unfiltered maximum rate, also in alternating rounds with
//     the goroutine server at the same rate.
//   - The same to benchFiltered requestors, each following its own
//     relay-id (QUERY_BY_RELAY_ID), so that each change reaches one
//     requestor: the ratio of deliveries to store commits shows whether
//     the fanout keeps up with the store.
//   - Server memory per idle subscribed connection at benchFiltered
//     connections, next to the goroutine server's.
//
// The servers and the store run in this process; the requestors run in
// child processes (this test binary started again with activeBenchEnv),
// since a process may hold 20,000 descriptors and both ends of
// benchFiltered connections do not fit in one. Run it with -benchtime=1x.
func BenchmarkActiveFanoutReport(b *testing.B) {
	if testing.Short() {
		benchFiltered = 2000
	}
	for b.Loop() {
		runFanoutReport(b)
	}
}

// Sizes of the report. benchFiltered stays under the server's connection
// cap, which keeps 1100 of the process's 20,000 descriptors for the store
// and listeners. The report measures memory from a baseline taken in the
// same iteration, so run it with -benchtime=1x: a second iteration in the
// same process starts while the first one's server is still being
// collected.
const (
	benchUnfiltered = 1000
	benchPool       = 20000 // bindings the producer changes
	benchBatch      = 16    // changes per store commit, at full and at half rate
	benchRounds     = 5
	benchRound      = time.Second
)

// benchFiltered is the number of filtered requestors. With -short, as in
// make bench-once, the report runs at 2,000 so that it only checks that
// every part still works, with no process near its descriptor limit.
var benchFiltered = 18800

// contender is one server under the same load.
type contender struct {
	name   string
	client *benchClient
	// produce commits, or hands out, changes as fast as possible until ctx
	// ends, adding each to n.
	produce func(ctx context.Context, n *atomic.Int64) error
	// commit commits k changes at once, stamped with the current time.
	commit func(k int) error
}

func runFanoutReport(b *testing.B) {
	b.StopTimer()
	defer b.StartTimer()

	rig := newActiveBenchRig(b)
	defer rig.close(b)
	flt, heap, rss := rig.filtered(b)

	gor := startGoroutineFanout(b)
	alqd := &contender{name: "alqd", client: startBenchClient(b, rig.srv.Addr().String(), benchUnfiltered, false),
		produce: rig.produce, commit: rig.commitNow}
	goroutine := &contender{name: "goroutine", client: startBenchClient(b, gor.addr, benchUnfiltered, false),
		produce: gor.produce, commit: gor.handOut}

	// Saturation rounds, alternating which contender goes first.
	var alqdRuns, gorRuns []saturation
	var rate, cpu []float64
	for i := range benchRounds {
		order := []*contender{alqd, goroutine}
		if i%2 == 1 {
			order = []*contender{goroutine, alqd}
		}
		var got [2]saturation
		for _, c := range order {
			out := saturateRound(b, c)
			if c == alqd {
				got[0] = out
			} else {
				got[1] = out
			}
		}
		alqdRuns, gorRuns = append(alqdRuns, got[0]), append(gorRuns, got[1])
		rate = append(rate, got[0].deliveriesPerSec/got[1].deliveriesPerSec)
		cpu = append(cpu, got[0].cpuPerMillion/got[1].cpuPerMillion)
	}
	maxRate := medianOf(alqdRuns, func(s saturation) float64 { return s.deliveriesPerSec })

	// Latency rounds at half the alqd maximum.
	changesPerSec := 0.5 * maxRate / benchUnfiltered
	var latAlqd, latGor []latencyResult
	for i := range benchRounds {
		order := []*contender{alqd, goroutine}
		if i%2 == 1 {
			order = []*contender{goroutine, alqd}
		}
		for _, c := range order {
			l := latencyRound(b, c, changesPerSec)
			if c == alqd {
				latAlqd = append(latAlqd, l)
			} else {
				latGor = append(latGor, l)
			}
		}
	}
	p50 := medianOf(latAlqd, func(l latencyResult) float64 { return float64(l.p50) })
	p99 := medianOf(latAlqd, func(l latencyResult) float64 { return float64(l.p99) })
	gp50 := medianOf(latGor, func(l latencyResult) float64 { return float64(l.p50) })
	gp99 := medianOf(latGor, func(l latencyResult) float64 { return float64(l.p99) })

	// Free the descriptors before the goroutine server takes benchFiltered.
	alqd.client.close()
	goroutine.client.close()
	gor.stop()
	gorHeap, gorRSS := goroutineIdleMemory(b, benchFiltered)

	b.ReportMetric(maxRate, "unfiltered-deliveries/s")
	b.ReportMetric(median(rate), "unfiltered-alqd/goroutine")
	b.ReportMetric(medianOf(alqdRuns, func(s saturation) float64 { return s.cpuPerMillion }), "unfiltered-server-cpu-s/M")
	b.ReportMetric(median(cpu), "unfiltered-cpu-alqd/goroutine")
	b.ReportMetric(p50/1e3, "p50-µs")
	b.ReportMetric(p99/1e3, "p99-µs")
	b.ReportMetric(p50/gp50, "p50-alqd/goroutine")
	b.ReportMetric(p99/gp99, "p99-alqd/goroutine")
	b.ReportMetric(flt.deliveriesPerSec, "filtered-deliveries/s")
	b.ReportMetric(flt.deliveriesPerSec/flt.publishedPerSec, "filtered-delivered/committed")
	b.ReportMetric(flt.cpuPerMillion, "filtered-server-cpu-s/M")
	b.ReportMetric(heap, "idle-heap+stack-B/conn")
	b.ReportMetric(rss, "idle-rss-B/conn")
	b.ReportMetric(heap/gorHeap, "idle-heap-alqd/goroutine")
	b.ReportMetric(rss/gorRSS, "idle-rss-alqd/goroutine")
	var rounds, lats strings.Builder
	for i := range alqdRuns {
		fmt.Fprintf(&rounds, " %.2fM/%.2fM", alqdRuns[i].deliveriesPerSec/1e6, gorRuns[i].deliveriesPerSec/1e6)
		fmt.Fprintf(&lats, " %v/%v", latAlqd[i].p99.Round(time.Millisecond), latGor[i].p99.Round(time.Millisecond))
	}
	b.Logf("deliveries/s per round, alqd/goroutine:%s; goroutine dropped %d of %d frames", rounds.String(), gor.dropped.Load(), gor.offered.Load())
	b.Logf("p99 per round at %.0f changes/s, alqd/goroutine:%s", changesPerSec, lats.String())
	b.Logf("filtered: %.0f deliveries/s from %.0f changes/s; idle per connection: alqd heap %.0f B rss %.0f B, goroutine heap %.0f B rss %.0f B",
		flt.deliveriesPerSec, flt.publishedPerSec, heap, rss, gorHeap, gorRSS)
}

// medianOf returns the median of f over xs.
func medianOf[T any](xs []T, f func(T) float64) float64 {
	v := make([]float64, len(xs))
	for i, x := range xs {
		v[i] = f(x)
	}
	return median(v)
}

// saturation is the outcome of one saturation round.
type saturation struct {
	deliveriesPerSec float64
	publishedPerSec  float64
	cpuPerMillion    float64 // server process CPU seconds per million deliveries
}

// saturateRound runs c's producer for benchRound, counts what its
// requestors receive in that time, and waits for the rest to drain so that
// it does not load the next round.
func saturateRound(b *testing.B, c *contender) saturation {
	b.Helper()
	var published atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), benchRound)
	defer cancel()
	c.client.command(b, "clear")
	cpu0 := selfCPUSeconds(b)
	began := time.Now()
	if err := c.produce(ctx, &published); err != nil && ctx.Err() == nil {
		b.Fatalf("%s: producing: %v", c.name, err)
	}
	st := c.client.command(b, "stats")
	elapsed := time.Since(began).Seconds()
	cpu := selfCPUSeconds(b) - cpu0
	c.client.drain(b)
	return saturation{
		deliveriesPerSec: float64(st.Received) / elapsed,
		publishedPerSec:  float64(published.Load()) / elapsed,
		cpuPerMillion:    cpu / (float64(st.Received) / 1e6),
	}
}

// latencyResult is the outcome of one latency round.
type latencyResult struct {
	p50, p99, max time.Duration
	samples       int64
}

// latencyRound commits changesPerSec changes per second to c in small
// commits for benchRound and returns the distribution of commit-to-receipt
// times.
func latencyRound(b *testing.B, c *contender, changesPerSec float64) latencyResult {
	b.Helper()
	c.client.drain(b)
	c.client.command(b, "clear")
	c.client.command(b, "latency")
	interval := time.Duration(float64(benchBatch) / changesPerSec * float64(time.Second))
	next := time.Now()
	end := next.Add(benchRound)
	for next.Before(end) {
		time.Sleep(time.Until(next))
		if err := c.commit(benchBatch); err != nil {
			b.Fatalf("%s: %v", c.name, err)
		}
		next = next.Add(interval)
	}
	c.client.drain(b)
	st := c.client.command(b, "stats")
	c.client.command(b, "clear")
	return latencyResult{p50: time.Duration(st.P50), p99: time.Duration(st.P99), max: time.Duration(st.Max), samples: st.Samples}
}

// activeBenchRig is an alqd server on a store in a temporary directory.
type activeBenchRig struct {
	st     *store.Store
	srv    *Server
	runErr chan error
	pool   []store.Binding
	rng    *rand.Rand // commitNow's
}

// benchProducers is the number of goroutines that commit at once in a
// saturation phase, so that the store's group commit has company.
const benchProducers = 4

func newActiveBenchRig(b *testing.B) *activeBenchRig {
	b.Helper()
	st, err := store.Open(b.TempDir(), store.Options{NoSync: true, TrimInterval: -1, ServerDUID: testServerDUID, Logger: discardLogger()})
	if err != nil {
		b.Fatal(err)
	}
	cfg := activeConfig()
	cfg.ListenUDP = "off"
	cfg.MaxConns = benchFiltered + 100
	cfg.MaxConnsPerRequestor = benchFiltered + 100
	cfg.IdleTimeout = time.Hour
	srv, err := New(cfg, st, WithLogger(discardLogger()))
	if err != nil {
		b.Fatal(err)
	}
	r := &activeBenchRig{st: st, srv: srv, runErr: make(chan error, 1), rng: rand.New(rand.NewPCG(9, 9))}
	go func() { r.runErr <- srv.Run() }()
	<-srv.Ready()

	// The pool: binding i follows relay-id i mod benchFiltered.
	now := time.Now()
	for i := range benchPool {
		addr := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 7, 12: byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)})
		bd := activeBinding(netip.PrefixFrom(addr, 128).String(), stampedDUID(0), "2001:db8:7::1", now)
		bd.RelayID = benchRelayID(i % benchFiltered)
		r.pool = append(r.pool, bd)
	}
	if _, err := st.Apply(context.Background(), r.pool, nil); err != nil {
		b.Fatal(err)
	}
	return r
}

func (r *activeBenchRig) close(b *testing.B) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.srv.Shutdown(ctx); err != nil {
		b.Errorf("Shutdown: %v", err)
	}
	if err := <-r.runErr; err != nil {
		b.Errorf("Run: %v", err)
	}
	if err := r.st.Close(); err != nil {
		b.Errorf("store.Close: %v", err)
	}
}

// commit changes k random bindings of pool, each stamped with the time of
// the call, in one store commit.
func (r *activeBenchRig) commit(ctx context.Context, pool []store.Binding, rng *rand.Rand, k int) error {
	batch := make([]store.Binding, k)
	stamp := stampedDUID(time.Now().UnixNano())
	for i := range batch {
		bd := &pool[rng.IntN(len(pool))]
		bd.ClientID = stamp
		bd.ValidLifetime++
		batch[i] = *bd
	}
	_, err := r.st.Apply(ctx, batch, nil)
	return err
}

// commitNow commits k changes from the test goroutine (latency rounds).
func (r *activeBenchRig) commitNow(k int) error {
	return r.commit(context.Background(), r.pool, r.rng, k)
}

// produce commits as fast as the store takes it until ctx ends, from
// benchProducers goroutines that each change their own part of the pool.
func (r *activeBenchRig) produce(ctx context.Context, n *atomic.Int64) error {
	errs := make(chan error, benchProducers)
	part := len(r.pool) / benchProducers
	for p := range benchProducers {
		go func() {
			pool, rng := r.pool[p*part:(p+1)*part], rand.New(rand.NewPCG(uint64(p), 2))
			for ctx.Err() == nil {
				if err := r.commit(ctx, pool, rng, benchBatch); err != nil {
					errs <- err
					return
				}
				n.Add(benchBatch)
			}
			errs <- nil
		}()
	}
	var first error
	for range benchProducers {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// filtered connects benchFiltered requestors, each following its own
// relay-id, measures the server's memory per idle connection, then
// saturates them.
func (r *activeBenchRig) filtered(b *testing.B) (sat saturation, heapPerConn, rssPerConn float64) {
	b.Helper()
	heap0, rss0 := processMemory()
	cl := startBenchClient(b, r.srv.Addr().String(), benchFiltered, true)
	eventually(b, 30*time.Second, "every filtered requestor subscribed", func() bool {
		return int(gaugeValue(r.srv.metrics.active.connections)) == benchFiltered
	})
	heap1, rss1 := processMemory()
	heapPerConn = float64(heap1-heap0) / float64(benchFiltered)
	rssPerConn = float64(rss1-rss0) / float64(benchFiltered)

	var published atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 3*benchRound)
	defer cancel()
	cl.command(b, "clear")
	cpu0 := selfCPUSeconds(b)
	began := time.Now()
	if err := r.produce(ctx, &published); err != nil && ctx.Err() == nil {
		b.Fatalf("producing: %v", err)
	}
	st := cl.command(b, "stats")
	elapsed := time.Since(began).Seconds()
	cpu := selfCPUSeconds(b) - cpu0
	cl.close()
	sat = saturation{
		deliveriesPerSec: float64(st.Received) / elapsed,
		publishedPerSec:  float64(published.Load()) / elapsed,
		cpuPerMillion:    cpu / (float64(st.Received) / 1e6),
	}
	return sat, heapPerConn, rssPerConn
}

// goroutineFanout is the anchor: one goroutine, net.Conn and bufio.Writer
// per connection, fed pre-encoded LEASEQUERY-DATA frames through a channel,
// and dropping frames for a connection whose channel is full.
type goroutineFanout struct {
	addr    string
	ln      net.Listener
	mu      sync.Mutex
	outs    []chan []byte
	wg      sync.WaitGroup
	dropped atomic.Int64
	offered atomic.Int64
	frame   []byte
	stopped sync.Once
}

// goroutineQueue is the number of frames the goroutine server queues per
// connection before it drops them. With its 16 KiB bufio.Writer that is
// about 44 KiB per connection, the same order as alqd's pending output:
// one batch in gnet plus TCP_NOTSENT_LOWAT in the kernel.
const goroutineQueue = 256

func startGoroutineFanout(b *testing.B) *goroutineFanout {
	b.Helper()
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		b.Fatal(err)
	}
	g := &goroutineFanout{addr: ln.Addr().String(), ln: ln}
	b.Cleanup(g.stop)

	// The frame: a LEASEQUERY-DATA of the size alqd sends for a pool
	// binding, with base-time.
	bd := activeBinding("2001:db8:7::1/128", stampedDUID(0), "2001:db8:7::1", time.Now())
	body, err := appendClientData(nil, []store.Binding{bd}, view{cltTime: true}, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	g.frame = append(appendDataHead(nil, 1, len(body), true, codec.DHCPTime(time.Now())), body...)

	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			out := make(chan []byte, goroutineQueue)
			g.mu.Lock()
			g.outs = append(g.outs, out)
			g.mu.Unlock()
			g.wg.Add(1)
			go g.serve(c, out)
		}
	}()
	return g
}

// serve reads the query, sends a LEASEQUERY-REPLY and writes the frames
// that arrive on out.
func (g *goroutineFanout) serve(c net.Conn, out chan []byte) {
	defer g.wg.Done()
	defer c.Close()
	if _, err := readFrameExact(c); err != nil {
		return
	}
	m := codec.Message{Type: codec.MsgLeasequeryReply, TransactionID: 1}
	msg, err := m.AppendTo(nil)
	if err != nil {
		return
	}
	reply := frame(msg)
	w := bufio.NewWriterSize(c, 16<<10)
	if _, err := w.Write(reply); err != nil || w.Flush() != nil {
		return
	}
	for f := range out {
		if _, err := w.Write(f); err != nil {
			return
		}
		if len(out) == 0 && w.Flush() != nil {
			return
		}
	}
}

// produce hands one stamped frame per change to every connection until ctx
// ends, in batches of benchBatch like the alqd producer.
func (g *goroutineFanout) produce(ctx context.Context, n *atomic.Int64) error {
	for ctx.Err() == nil {
		if err := g.handOut(benchBatch); err != nil {
			return err
		}
		n.Add(benchBatch)
	}
	return nil
}

// handOut hands k frames, stamped with the current time, to every
// connection.
func (g *goroutineFanout) handOut(k int) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	for range k {
		f := append([]byte(nil), g.frame...)
		stampFrame(f, time.Now().UnixNano())
		for _, out := range g.outs {
			g.offered.Add(1)
			select {
			case out <- f:
			default:
				g.dropped.Add(1)
			}
		}
	}
	return nil
}

// stop closes the listener and every connection; it may be called again.
func (g *goroutineFanout) stop() {
	g.stopped.Do(func() {
		_ = g.ln.Close()
		g.mu.Lock()
		for _, out := range g.outs {
			close(out)
		}
		g.outs = nil
		g.mu.Unlock()
		g.wg.Wait()
	})
}

// goroutineIdleMemory returns the heap plus stacks and the RSS per idle
// connection of the goroutine server at conns connections.
func goroutineIdleMemory(b *testing.B, conns int) (heapPerConn, rssPerConn float64) {
	b.Helper()
	heap0, rss0 := processMemory()
	g := startGoroutineFanout(b)
	cl := startBenchClient(b, g.addr, conns, false)
	eventually(b, 30*time.Second, "every goroutine connection served", func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return len(g.outs) == conns
	})
	heap1, rss1 := processMemory()
	cl.close()
	g.stop()
	return float64(heap1-heap0) / float64(conns), float64(rss1-rss0) / float64(conns)
}

// processMemory returns this process's Go heap in use plus goroutine stacks
// and its resident set size, after a GC that returns free memory to the
// system, so that memory a previous phase freed does not count.
func processMemory() (heapAndStacks, rss int64) {
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if data, err := os.ReadFile("/proc/self/statm"); err == nil {
		var size, resident int64
		if _, err := fmt.Sscan(string(data), &size, &resident); err == nil {
			rss = resident * int64(os.Getpagesize())
		}
	}
	return int64(ms.HeapInuse + ms.StackInuse), rss
}

func selfCPUSeconds(b *testing.B) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// benchRelayID returns the relay-id (a DUID-EN) of filtered requestor i.
func benchRelayID(i int) []byte {
	return []byte{0x00, 0x02, 0x00, 0x00, 0x9d, 0x10, 'r', byte(i >> 16), byte(i >> 8), byte(i)}
}

// stampedDUID returns a client DUID (DUID-EN) whose last 8 octets are the
// commit time in Unix nanoseconds, which the requestors read back for the
// latency.
func stampedDUID(unixNano int64) []byte {
	return binary.BigEndian.AppendUint64([]byte{0x00, 0x02, 0x00, 0x00, 0x9d, 0x10}, uint64(unixNano))
}

// stampFrame writes unixNano into the client DUID of a frame built by
// startGoroutineFanout.
func stampFrame(f []byte, unixNano int64) {
	if duid := frameClientID(f[codec.FrameHeaderLen:]); len(duid) >= 8 {
		binary.BigEndian.PutUint64(duid[len(duid)-8:], uint64(unixNano))
	}
}

// frameClientID returns the OPTION_CLIENTID data inside the first
// OPTION_CLIENT_DATA of msg, aliasing msg, or nil.
func frameClientID(msg []byte) []byte {
	opts := msg[codec.HeaderLen:]
	for len(opts) >= codec.OptionHeaderLen {
		code := codec.OptionCode(binary.BigEndian.Uint16(opts))
		n := int(binary.BigEndian.Uint16(opts[2:]))
		if codec.OptionHeaderLen+n > len(opts) {
			return nil
		}
		data := opts[codec.OptionHeaderLen : codec.OptionHeaderLen+n]
		if code == codec.OptClientData {
			opts = data
			continue
		}
		if code == codec.OptClientID {
			return data
		}
		opts = opts[codec.OptionHeaderLen+n:]
	}
	return nil
}

// benchSampleEvery is the share of received updates whose latency a
// requestor records, one in this many, so that recording does not slow the
// requestors down.
const benchSampleEvery = 8

// activeBenchEnv names the environment variable that makes the test binary
// a benchmark requestor process; its value is the JSON of activeBenchArgs.
const activeBenchEnv = "ALQD_ACTIVE_BENCH_CLIENT"

type activeBenchArgs struct {
	Addr     string `json:"addr"`
	Conns    int    `json:"conns"`
	Filtered bool   `json:"filtered"`
}

// benchStats is the line a requestor process writes after each command.
type benchStats struct {
	Received int64 `json:"received"`
	Samples  int64 `json:"samples"`
	P50      int64 `json:"p50_ns"`
	P99      int64 `json:"p99_ns"`
	Max      int64 `json:"max_ns"`
}

// benchClient is the parent's handle on a requestor process.
type benchClient struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

func startBenchClient(b *testing.B, addr string, conns int, filtered bool) *benchClient {
	b.Helper()
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	js, _ := json.Marshal(activeBenchArgs{Addr: addr, Conns: conns, Filtered: filtered})
	c := &benchClient{cmd: exec.Command(exe)}
	b.Cleanup(c.close)
	c.cmd.Env = append(os.Environ(), activeBenchEnv+"="+string(js))
	c.cmd.Stderr = os.Stderr
	if c.in, err = c.cmd.StdinPipe(); err != nil {
		b.Fatal(err)
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	c.out = bufio.NewReader(stdout)
	if err := c.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	if line, err := c.out.ReadString('\n'); err != nil || line != "ready\n" {
		c.close()
		b.Fatalf("requestor process: %q, %v", line, err)
	}
	return c
}

// command sends one command line and returns the counts it reports.
func (c *benchClient) command(b *testing.B, cmd string) benchStats {
	b.Helper()
	fmt.Fprintln(c.in, cmd)
	line, err := c.out.ReadString('\n')
	if err != nil {
		b.Fatalf("requestor process, command %q: %v", cmd, err)
	}
	var st benchStats
	if err := json.Unmarshal([]byte(line), &st); err != nil {
		b.Fatalf("requestor process, command %q: %q: %v", cmd, line, err)
	}
	return st
}

// drain waits until the requestors have stopped receiving: the same count
// for 300 ms. A server that lapped its subscribers still resyncs them from
// the store after the producer stops, which takes seconds.
func (c *benchClient) drain(b *testing.B) {
	b.Helper()
	last := int64(-1)
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		st := c.command(b, "stats")
		if st.Received == last {
			return
		}
		last = st.Received
		time.Sleep(300 * time.Millisecond)
	}
	b.Fatalf("requestors still receiving after a minute")
}

// close ends the requestor process; it may be called again.
func (c *benchClient) close() {
	if c.in != nil {
		_ = c.in.Close()
	}
	if c.cmd.Process != nil {
		_ = c.cmd.Wait()
	}
}

// activeBenchClient opens a.Conns connections, each with an ACTIVELEASEQUERY
// (filtered by its own relay-id when a.Filtered), writes "ready", and then
// answers commands on in, one JSON line each: "clear" resets the counts,
// "latency" starts recording commit-to-receipt times, "stats" returns the
// counts. It ends when in is closed.
func activeBenchClient(a activeBenchArgs, in io.Reader, out io.Writer) error {
	var (
		received  atomic.Int64
		recording atomic.Bool
		mu        sync.Mutex
		hist      = hdrhistogram.New(1, int64(time.Minute), 3)
		readers   sync.WaitGroup
	)
	conns := make([]net.Conn, a.Conns)
	defer func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Close()
			}
		}
		readers.Wait()
	}()
	bufSize := 64 << 10
	if a.Conns > 2000 {
		bufSize = 4 << 10
	}
	for i := range conns {
		var q *codec.LQQuery
		if a.Filtered {
			q = ptr(byRelayID(benchRelayID(i), "::"))
		}
		c, err := benchSubscribe(a.Addr, uint32(i+1), q)
		if err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
		conns[i] = c
		readers.Add(1)
		go func() {
			defer readers.Done()
			r := bufio.NewReaderSize(c, bufSize)
			var head [codec.FrameHeaderLen]byte
			msg := make([]byte, 0, 512)
			sampled := 0
			for {
				if _, err := io.ReadFull(r, head[:]); err != nil {
					return
				}
				n := int(head[0])<<8 | int(head[1])
				if n > cap(msg) {
					msg = make([]byte, n)
				}
				msg = msg[:n]
				if _, err := io.ReadFull(r, msg); err != nil || n < codec.HeaderLen {
					return
				}
				duid := frameClientID(msg)
				if codec.MsgType(msg[0]) != codec.MsgLeasequeryData || duid == nil {
					continue
				}
				received.Add(1)
				sampled++
				if recording.Load() && sampled%benchSampleEvery == 0 && len(duid) >= 8 {
					lat := time.Now().UnixNano() - int64(binary.BigEndian.Uint64(duid[len(duid)-8:]))
					mu.Lock()
					_ = hist.RecordValue(max(lat, 1))
					mu.Unlock()
				}
			}
		}()
	}
	fmt.Fprintln(out, "ready")

	sc := bufio.NewScanner(in)
	for sc.Scan() {
		switch sc.Text() {
		case "clear":
			received.Store(0)
			recording.Store(false)
			mu.Lock()
			hist.Reset()
			mu.Unlock()
		case "latency":
			recording.Store(true)
		case "stats":
		default:
			return fmt.Errorf("unknown command %q", sc.Text())
		}
		mu.Lock()
		st := benchStats{Received: received.Load(), Samples: hist.TotalCount(),
			P50: hist.ValueAtQuantile(50), P99: hist.ValueAtQuantile(99), Max: hist.Max()}
		mu.Unlock()
		js, _ := json.Marshal(st)
		fmt.Fprintln(out, string(js))
	}
	return sc.Err()
}

// benchSubscribe opens one connection, sends an ACTIVELEASEQUERY with
// OPTION_LQ_BASE_TIME requested and reads its LEASEQUERY-REPLY.
func benchSubscribe(addr string, xid uint32, q *codec.LQQuery) (net.Conn, error) {
	var c net.Conn
	var err error
	for range 50 {
		if c, err = net.DialTimeout("tcp", addr, 10*time.Second); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond) // a full accept backlog
	}
	if err != nil {
		return nil, err
	}
	if _, err := c.Write(frame(activeleasequery(xid, q, oro(codec.OptLQBaseTime)))); err != nil {
		c.Close()
		return nil, err
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	reply, err := readFrameExact(c)
	_ = c.SetReadDeadline(time.Time{})
	if err != nil || codec.MsgType(reply[0]) != codec.MsgLeasequeryReply {
		c.Close()
		return nil, fmt.Errorf("ACTIVELEASEQUERY not accepted: %v", err)
	}
	return c, nil
}
