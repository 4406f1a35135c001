package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/store"
)

// The bulk dump benchmark answers one QUERY_BY_LINK_ADDRESS over a link of
// dumpBindings bindings, once through the gnet server and once through a
// goroutine-per-connection baseline that uses the same request parsing,
// store scan and encoder. The requestor is this test binary started again
// as a child process (dumpClientEnv), so getrusage(RUSAGE_SELF) measures
// the server side alone.
//
//	go test -run '^$' -bench BulkDump -benchtime 3x ./server
//
// ALQD_DUMP_BINDINGS overrides the binding count for a quicker run.

const (
	dumpClientEnv       = "ALQD_DUMP_CLIENT"
	dumpBindingsEnv     = "ALQD_DUMP_BINDINGS"
	defaultDumpBindings = 1_000_000
)

// runDumpClientIfAsked runs the requestor side when the process was
// started as the benchmark's child, and exits.
func runDumpClientIfAsked() {
	addr := os.Getenv(dumpClientEnv)
	if addr == "" {
		return
	}
	bindings, octets, err := dumpClient(addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dump client:", err)
		os.Exit(1)
	}
	fmt.Printf("%d %d\n", bindings, octets)
	os.Exit(0)
}

// dumpClient sends the query and counts the messages that carry
// OPTION_CLIENT_DATA until LEASEQUERY-DONE.
func dumpClient(addr string) (bindings, octets int, err error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	if _, err := c.Write(frame(leasequery(0xd0d0, byLink("2001:db8:1::1")))); err != nil {
		return 0, 0, err
	}
	fr := codec.NewFrameReader(c, 0)
	var opts codec.Options
	for {
		msg, err := fr.ReadFrame()
		if err != nil {
			return bindings, octets, err
		}
		octets += len(msg) + codec.FrameHeaderLen
		if err := opts.Decode(msg[codec.HeaderLen:]); err != nil {
			return bindings, octets, err
		}
		if opts.Has(codec.OptClientData) {
			bindings++
		}
		switch codec.MsgType(msg[0]) {
		case codec.MsgLeasequeryDone:
			return bindings, octets, nil
		case codec.MsgLeasequeryReply:
			if !opts.Has(codec.OptClientData) {
				return bindings, octets, nil
			}
		}
	}
}

func dumpBindingCount(b *testing.B) int {
	n := defaultDumpBindings
	if s := os.Getenv(dumpBindingsEnv); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			b.Fatalf("%s=%q is not a positive count", dumpBindingsEnv, s)
		}
		n = v
	}
	return n
}

func BenchmarkBulkDump(b *testing.B) {
	n := dumpBindingCount(b)
	st := openStore(b, nil)
	began := time.Now()
	seedLink(b, st, n)
	b.Logf("seeded %d bindings in %v", n, time.Since(began).Round(time.Millisecond))
	waitQuiet(b)

	b.Run("gnet", func(b *testing.B) {
		cfg := testConfig()
		cfg.ListenUDP = "off"
		srv := startServer(b, st, cfg)
		runDumps(b, srv.Addr().String(), n)
	})
	b.Run("goroutine", func(b *testing.B) {
		base := startBaseline(b, st)
		runDumps(b, base.addr, n)
	})
}

// runDumps runs one dump per iteration and reports bindings per second and
// the server's CPU seconds per dump.
func runDumps(b *testing.B, addr string, n int) {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	var wall time.Duration
	var cpu float64
	b.ReportAllocs()
	for b.Loop() {
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), dumpClientEnv+"="+addr)
		before := selfCPU(b)
		start := time.Now()
		out, err := cmd.Output()
		wall += time.Since(start)
		cpu += selfCPU(b) - before
		if err != nil {
			b.Fatalf("dump client: %v", err)
		}
		var got, octets int
		if _, err := fmt.Sscan(string(out), &got, &octets); err != nil || got != n {
			b.Fatalf("dump client got %q, want %d bindings", out, n)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/wall.Seconds(), "bindings/s")
	b.ReportMetric(cpu/float64(b.N), "server-cpu-s/op")
}

// waitQuiet waits until the process uses less than 4% of a CPU over a
// quarter second, so that Pebble's compactions after seeding do not count
// against the first server measured; it gives up after a minute.
func waitQuiet(b *testing.B) {
	const window = 250 * time.Millisecond
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		before := selfCPU(b)
		time.Sleep(window)
		if selfCPU(b)-before < 0.04*window.Seconds() {
			return
		}
	}
	b.Log("the process did not go quiet after seeding; CPU figures include background work")
}

// selfCPU returns the user plus system CPU seconds of this process.
func selfCPU(b *testing.B) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// baseline is a minimal goroutine-per-connection Bulk Leasequery server
// over net.Listener for comparison: the same parse, store scan and
// encoder, written with blocking writes instead of an event loop.
type baseline struct {
	addr string
	ln   net.Listener
	wg   sync.WaitGroup
}

func startBaseline(b *testing.B, st *store.Store) *baseline {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		b.Fatal(err)
	}
	m, _ := NewMetrics(nil)
	p := &policy{serverID: st.ServerDUID()}
	bl := &baseline{addr: ln.Addr().String(), ln: ln}
	bl.wg.Add(1)
	go func() {
		defer bl.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			bl.wg.Add(1)
			go func() {
				defer bl.wg.Done()
				defer c.Close()
				bl.serve(c, st, p, m)
			}()
		}
	}()
	b.Cleanup(func() {
		_ = ln.Close()
		bl.wg.Wait()
	})
	return bl
}

func (bl *baseline) serve(c net.Conn, st *store.Store, p *policy, m *Metrics) {
	fr := codec.NewFrameReader(c, DefaultMaxMessageSize)
	buf := make([]byte, 0, DefaultChunkSize+DefaultChunkSize/4)
	clock := func() time.Time { return testNow }
	for {
		msg, err := fr.ReadFrame()
		if err != nil {
			return
		}
		r := &request{}
		if v, _ := r.parse(append([]byte(nil), msg...), transportTCP, p); v != verdictAnswer {
			return
		}
		job := newBulkJob(r, p, st, clock, DefaultChunkSize, m)
		out := job.run(context.Background(), buf[:0], func(chunk []byte, last bool) ([]byte, error) {
			if _, err := c.Write(chunk); err != nil {
				return chunk[:0], &connError{err: err}
			}
			return chunk[:0], nil
		})
		if out.err != nil && !errors.Is(out.err, errConnClosed) {
			return
		}
	}
}
