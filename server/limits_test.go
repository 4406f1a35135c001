package server

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/store"
)

// seedLink stores n active IA_NA bindings of distinct clients on link
// 2001:db8:1::1, in batches.
func seedLink(t testing.TB, st *store.Store, n int) {
	t.Helper()
	batch := make([]store.Binding, 0, 10000)
	for i := 0; i < n; i++ {
		addr := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)})
		batch = append(batch, binding(netip.PrefixFrom(addr, 128).String(), duid(i), "2001:db8:1::1"))
		if len(batch) == cap(batch) || i == n-1 {
			seed(t, st, batch...)
			batch = batch[:0]
		}
	}
}

func closedCount(m *Metrics, r CloseReason) float64 {
	return counterValue(m.closed.WithLabelValues(r.String()))
}

func counterValue(c prometheus.Counter) float64 {
	var out dto.Metric
	if err := c.Write(&out); err != nil {
		panic(err)
	}
	return out.GetCounter().GetValue()
}

func newTestMetrics(t testing.TB) *Metrics {
	t.Helper()
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatalf("NewMetrics: %v", err)
	}
	return m
}

func TestIdleTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.IdleTimeout = 200 * time.Millisecond
	m := newTestMetrics(t)
	srv := startServer(t, openStore(t, nil), cfg, WithMetrics(m))

	silent := dial(t, srv)
	partial := dial(t, srv)
	partial.write(frame(leasequery(1, byLink("2001:db8:1::1")))[:7])

	start := time.Now()
	silent.waitClosed(5 * time.Second)
	partial.waitClosed(5 * time.Second)
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("closed after %v, before the 200 ms idle timeout", d)
	}
	eventually(t, 5*time.Second, "two idle closes counted", func() bool { return closedCount(m, CloseIdle) == 2 })
}

func TestConnectionFlood(t *testing.T) {
	st := openStore(t, nil)
	seed(t, st, binding("2001:db8:1::10/128", duid(1), "2001:db8:1::1"))
	cfg := testConfig()
	cfg.MaxConns = 4
	cfg.MaxConnsPerRequestor = 100
	m := newTestMetrics(t)
	srv := startServer(t, st, cfg, WithMetrics(m))

	var kept []*testRequestor
	for range 4 {
		r := dial(t, srv)
		if a := r.query(1, byLink("2001:db8:1::1")); len(a.clientData(t)) != 1 {
			t.Fatalf("connection under the limit not served")
		}
		kept = append(kept, r)
	}
	for range 20 {
		dial(t, srv).waitClosed(5 * time.Second)
	}
	for i, r := range kept {
		if a := r.query(2, byLink("2001:db8:1::1")); len(a.clientData(t)) != 1 {
			t.Errorf("connection %d not served after the flood", i)
		}
	}
	if got := closedCount(m, CloseTooManyConnections); got != 20 {
		t.Errorf("%v connections closed for the limit, want 20", got)
	}
}

func TestPerRequestorLimit(t *testing.T) {
	cfg := testConfig()
	cfg.MaxConnsPerRequestor = 2
	srv := startServer(t, openStore(t, nil), cfg)
	a, b := dial(t, srv), dial(t, srv)
	dial(t, srv).waitClosed(5 * time.Second)
	for _, r := range []*testRequestor{a, b} {
		if ans := r.query(3, byLink("2001:db8:1::1")); ans.reply == nil {
			t.Error("connection under the per-requestor limit not served")
		}
	}
	_ = a.conn.Close()
	eventually(t, 5*time.Second, "a freed slot accepts a connection", func() bool {
		c, err := net.Dial("tcp", srv.Addr().String())
		if err != nil {
			return false
		}
		defer c.Close()
		r := &testRequestor{t: t, conn: c, fr: codec.NewFrameReader(c, 0)}
		r.send(leasequery(4, byLink("2001:db8:1::1")))
		_, err = r.tryNext(time.Second)
		return err == nil
	})
}

func TestSlowReaderGetsEverything(t *testing.T) {
	const n = 20000
	st := openStore(t, nil)
	seedLink(t, st, n)
	cfg := testConfig()
	cfg.MaxQueriesPerRequestor = 1
	srv := startServer(t, st, cfg)

	slow := dial(t, srv)
	// A small receive buffer keeps the kernel from absorbing the answer, so
	// the server's flow control has to pace it.
	_ = slow.conn.(*net.TCPConn).SetReadBuffer(64 << 10)
	slow.send(leasequery(0x5105, byLink("2001:db8:1::1")))

	// A second connection of the same requestor waits for the query slot
	// (whichever query gets it first) and is then served too. It is read
	// on its own goroutine, because the query holding the slot cannot end
	// while its requestor does not read.
	fast := dial(t, srv)
	fast.send(leasequery(0xfa57, byLink("2001:db8:1::1")))
	fastCount := make(chan int, 1)
	go func() {
		count := 0
		for {
			m, err := fast.tryNext(30 * time.Second)
			if err != nil {
				break
			}
			if m.Options.Has(codec.OptClientData) {
				count++
			}
			if m.Type == codec.MsgLeasequeryDone {
				break
			}
		}
		fastCount <- count
	}()

	bindings, msgs := 0, 0
	for {
		m, err := slow.tryNext(30 * time.Second)
		if err != nil {
			t.Fatalf("slow reader, after %d messages: %v", msgs, err)
		}
		msgs++
		if msgs%200 == 0 {
			time.Sleep(2 * time.Millisecond)
		}
		if m.Options.Has(codec.OptClientData) {
			bindings++
		}
		if m.Type == codec.MsgLeasequeryDone {
			break
		}
	}
	if bindings != n {
		t.Errorf("slow reader got %d bindings, want %d", bindings, n)
	}
	if got := <-fastCount; got != n {
		t.Errorf("second connection got %d bindings, want %d", got, n)
	}
}

func TestStoppedReaderClosed(t *testing.T) {
	st := openStore(t, nil)
	seedLink(t, st, 60000)
	cfg := testConfig()
	cfg.DataTimeout = 300 * time.Millisecond
	m := newTestMetrics(t)
	srv := startServer(t, st, cfg, WithMetrics(m))

	stalled := dial(t, srv)
	_ = stalled.conn.(*net.TCPConn).SetReadBuffer(4096)
	stalled.send(leasequery(0x57, byLink("2001:db8:1::1")))

	eventually(t, 10*time.Second, "stalled requestor closed as slow consumer", func() bool {
		return closedCount(m, CloseSlowConsumer) == 1
	})
	other := dial(t, srv)
	if a := other.query(1, byAddress("2001:db8:1::5")); len(a.clientData(t)) != 1 {
		t.Errorf("other connection not served while a requestor stalled")
	}
	stalled.waitClosed(10 * time.Second)
}

func TestShutdownTerminatesQuery(t *testing.T) {
	st := openStore(t, nil)
	seedLink(t, st, 60000)
	srv, err := New(testConfig(), st, WithClock(func() time.Time { return testNow }), WithLogger(discardLogger()))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- srv.Run() }()
	<-srv.Ready()

	r := dial(t, srv)
	_ = r.conn.(*net.TCPConn).SetReadBuffer(4096)
	// Two more queries wait behind the first, read ahead by the server.
	var pipelined []byte
	for _, m := range [][]byte{leasequery(0x5d, byLink("2001:db8:1::1")), leasequery(0x5e, byLink("2001:db8:1::1")), leasequery(0x5f, byAddress("2001:db8:1::5"))} {
		pipelined, _ = codec.AppendFrame(pipelined, m)
	}
	r.write(pipelined)
	first := r.next()
	if first.Type != codec.MsgLeasequeryReply {
		t.Fatalf("first message %v, want LEASEQUERY-REPLY", first.Type)
	}

	shutdownErr := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shutdownErr <- srv.Shutdown(ctx)
	}()

	var last *codec.Message
	var queued []*codec.Message
	count := 1
	for {
		m, err := r.tryNext(10 * time.Second)
		if err != nil {
			break
		}
		if m.TransactionID != 0x5d {
			queued = append(queued, m)
			continue
		}
		count++
		last = m
	}
	if last == nil || last.Type != codec.MsgLeasequeryDone || status(t, last) != codec.StatusQueryTerminated {
		t.Fatalf("last of %d messages is %v, want LEASEQUERY-DONE QueryTerminated", count, describeMsg(t, last))
	}
	// At shutdown every query ends with QueryTerminated. A query that had
	// not started gets it in its only message.
	if len(queued) != 2 {
		t.Fatalf("%d messages for the queued queries, want 2", len(queued))
	}
	for i, m := range queued {
		if want := uint32(0x5e + i); m.TransactionID != want || m.Type != codec.MsgLeasequeryReply || status(t, m) != codec.StatusQueryTerminated {
			t.Errorf("queued query %d: %v xid %#x, want LEASEQUERY-REPLY QueryTerminated xid %#x", i+1, describeMsg(t, m), m.TransactionID, want)
		}
	}
	if count-2 >= 60000 {
		t.Errorf("all %d bindings were sent before the shutdown took effect; the test proves nothing", count-2)
	}
	if err := <-shutdownErr; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-runErr; err != nil {
		t.Errorf("Run: %v", err)
	}
}

func describeMsg(t testing.TB, m *codec.Message) string {
	if m == nil {
		return "nothing"
	}
	return fmt.Sprintf("%v %v", m.Type, status(t, m))
}
