package server

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/store"
)

// activeConfig returns the fixture's secure-only configuration with Active
// Leasequery on.
func (f *tlsFixture) activeConfig() Config {
	cfg := f.config()
	cfg.Active = true
	return cfg
}

// dialActiveTLS opens a TLS connection for an Active Leasequery.
func dialActiveTLS(t testing.TB, srv *Server, f *tlsFixture) *activeRequestor {
	t.Helper()
	return &activeRequestor{testRequestor: dialTLS(t, srv, f.clientConfig(f.client)), view: make(map[netip.Prefix]leaseState)}
}

func TestTLSActiveStream(t *testing.T) {
	st := openStore(t, nil)
	before := binding("2001:db8:2::10/128", duid(1), "2001:db8:2::1")
	seed(t, st, before)
	f := newTLSFixture(t)
	m := newTestMetrics(t)
	srv := startServer(t, st, f.activeConfig(), WithMetrics(m))

	// Two TLS requestors, one for every change and one for a single client.
	all := dialActiveTLS(t, srv, f)
	all.start(0x0a0001, nil, oro(codec.OptLQBaseTime))
	all.expect(codec.MsgLeasequeryReply, codec.StatusSuccess)
	one := dialActiveTLS(t, srv, f)
	q := byClientID(duid(3), "::")
	one.start(0x0a0002, &q)
	one.expect(codec.MsgLeasequeryReply, codec.StatusSuccess)
	eventually(t, 5*time.Second, "two active TLS connections", func() bool { return gaugeValue(m.active.connections) == 2 })

	var changed []store.Binding
	for i := 2; i <= 40; i++ {
		b := binding(netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 15: byte(i)}), 128).String(), duid(i), "2001:db8:1::1")
		changed = append(changed, b)
		seed(t, st, b)
	}
	released := changed[1] // duid(3)
	released.State = store.StateReleased
	seed(t, st, released)

	want := storeView(t, st, false, func(bd *store.Binding) bool { return bd.Prefix != before.Prefix })
	all.readUntil(10*time.Second, "every change over TLS", func() bool { return len(diffViews(all.view, want)) == 0 })
	if !all.view[released.Prefix].ended {
		t.Errorf("release of %v not reported", released.Prefix)
	}
	one.readUntil(10*time.Second, "the client's release over TLS", func() bool { return one.view[released.Prefix].ended })
	if len(one.view) != 1 {
		t.Errorf("filtered TLS subscriber saw %d bindings, want 1:\n%s", len(one.view), describeView(one.view))
	}
	if err := all.quiet(100 * time.Millisecond); err != nil {
		t.Errorf("after the last change: %v", err)
	}
	if got := counterValue(m.tls.sent); got == 0 {
		t.Error("no octets counted as sent over TLS")
	}
}

func TestTLSActiveCatchUp(t *testing.T) {
	clock := newTestClock(testNow.Add(-time.Hour))
	st := openStoreAt(t, t.TempDir(), clock, 0)
	closeAtEnd(t, st)
	old := activeBinding("2001:db8:1::1/128", duid(1), "2001:db8:1::1", clock.now())
	seed(t, st, old)
	clock.set(testNow.Add(-10 * time.Minute))
	recent := activeBinding("2001:db8:1::2/128", duid(2), "2001:db8:1::1", clock.now())
	seed(t, st, recent)
	clock.set(testNow)

	f := newTLSFixture(t)
	srv := startServerAt(t, st, f.activeConfig(), clock)
	a := dialActiveTLS(t, srv, f)
	a.start(0x0c, nil, startTime(testNow.Add(-30*time.Minute)), oro(codec.OptLQBaseTime))
	a.expect(codec.MsgLeasequeryReply, codec.StatusSuccess)
	ev := a.expect(codec.MsgLeasequeryData, codec.StatusSuccess)
	if len(ev.bindings) != 1 || ev.bindings[0].prefix != recent.Prefix {
		t.Fatalf("catch-up sent %v, want only %v", ev.bindings, recent.Prefix)
	}
	a.expect(codec.MsgLeasequeryData, codec.StatusCatchUpComplete)

	// Live changes follow the catch-up.
	later := activeBinding("2001:db8:1::3/128", duid(3), "2001:db8:1::1", clock.now())
	seed(t, st, later)
	a.readUntil(5*time.Second, "live change after catch-up", func() bool { _, ok := a.view[later.Prefix]; return ok })
	if _, ok := a.view[old.Prefix]; ok {
		t.Errorf("binding changed before the start time was sent")
	}
}

func TestTLSActiveKeepalive(t *testing.T) {
	f := newTLSFixture(t)
	cfg := f.activeConfig()
	cfg.ActiveIdleTimeout = 150 * time.Millisecond
	srv := startServer(t, openStore(t, nil), cfg)
	a := dialActiveTLS(t, srv, f)
	a.start(0x0b, nil)
	a.expect(codec.MsgLeasequeryReply, codec.StatusSuccess)

	began := time.Now()
	ev := a.expect(codec.MsgLeasequeryData, codec.StatusSuccess)
	if waited := time.Since(began); waited < 100*time.Millisecond {
		t.Errorf("keepalive after %v, want about the idle timeout of 150ms", waited)
	}
	if len(ev.bindings) != 0 || ev.msg.Options.Has(codec.OptStatusCode) {
		t.Errorf("keepalive carries %d bindings, status %v", len(ev.bindings), ev.msg.Options.Has(codec.OptStatusCode))
	}
	a.expect(codec.MsgLeasequeryData, codec.StatusSuccess)
	if a.keepalives != 2 {
		t.Errorf("%d keepalives, want 2", a.keepalives)
	}
}

func TestTLSActiveSecondRequest(t *testing.T) {
	f := newTLSFixture(t)
	m := newTestMetrics(t)
	srv := startServer(t, openStore(t, nil), f.activeConfig(), WithMetrics(m))
	a := dialActiveTLS(t, srv, f)
	a.start(0x01, nil)
	a.expect(codec.MsgLeasequeryReply, codec.StatusSuccess)

	a.send(leasequery(0x02, byLink("2001:db8:1::1")))
	a.xid = 0x02
	a.expect(codec.MsgLeasequeryReply, codec.StatusNotAllowed)
	a.xid = 0x01
	done := a.expect(codec.MsgLeasequeryDone, codec.StatusQueryTerminated)
	if !done.hasBase {
		t.Error("LEASEQUERY-DONE without OPTION_LQ_BASE_TIME")
	}
	a.readClosed(5 * time.Second)
	eventually(t, 5*time.Second, "protocol violation counted", func() bool { return closedCount(m, CloseProtocolViolation) == 1 })
}

// TestTLSActiveSlowConsumer checks ACTIVE_LQ_SEND_TIMEOUT on a TLS
// connection whose requestor stops reading while changes stream.
func TestTLSActiveSlowConsumer(t *testing.T) {
	st := openStore(t, nil)
	f := newTLSFixture(t)
	cfg := f.activeConfig()
	cfg.ActiveSendTimeout = 300 * time.Millisecond
	cfg.NotSentLowWater = 16 << 10
	m := newTestMetrics(t)
	srv := startServer(t, st, cfg, WithMetrics(m))

	reader := dialActiveTLS(t, srv, f)
	reader.start(0x01, nil)
	reader.expect(codec.MsgLeasequeryReply, codec.StatusSuccess)
	stalled := dialSmallBuffer(t, srv, 4096)
	stalled.startTLS(1)
	tr, err := stalled.handshake(f.clientConfig(f.client))
	if err != nil {
		t.Fatal(err)
	}
	tr.send(activeleasequery(0x02, nil))
	if m := tr.next(); m.Type != codec.MsgLeasequeryReply {
		t.Fatalf("first answer %v, want LEASEQUERY-REPLY", m.Type)
	}

	// The stalled requestor reads nothing more while 8,000 changes (about
	// 1 MB of LEASEQUERY-DATA) stream; the reading one keeps up.
	seeded := make(chan struct{})
	go func() {
		defer close(seeded)
		seedLink(t, st, 8000)
	}()
	last := netip.MustParsePrefix("2001:db8:1::1f3f/128") // binding 7999
	reader.readUntil(60*time.Second, "reading requestor got the last change", func() bool { _, ok := reader.view[last]; return ok })
	if len(reader.view) != 8000 {
		t.Errorf("reading requestor has %d bindings, want all 8000", len(reader.view))
	}
	<-seeded
	eventually(t, 20*time.Second, "stalled TLS requestor closed as a slow consumer", func() bool {
		return closedCount(m, CloseSlowConsumer) == 1
	})
	if got := gaugeValue(m.active.connections); got != 1 {
		t.Errorf("active connections = %v, want 1 after the slow consumer left", got)
	}
}

func TestTLSActiveShutdown(t *testing.T) {
	f := newTLSFixture(t)
	srv, err := New(f.activeConfig(), openStore(t, nil), WithClock(func() time.Time { return testNow }), WithLogger(discardLogger()))
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- srv.Run() }()
	<-srv.Ready()

	a := dialActiveTLS(t, srv, f)
	a.start(0x0c, nil)
	a.expect(codec.MsgLeasequeryReply, codec.StatusSuccess)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-runErr; err != nil {
		t.Fatalf("Run: %v", err)
	}
	// RFC 7653 section 8.4: DONE with QueryTerminated and the base-time.
	done := a.expect(codec.MsgLeasequeryDone, codec.StatusQueryTerminated)
	if !done.hasBase || done.base != codec.DHCPTime(testNow) {
		t.Errorf("DONE base-time %d (present %v), want %d", done.base, done.hasBase, codec.DHCPTime(testNow))
	}
	a.readClosed(5 * time.Second)
}

// TestTLSActiveNotSupported checks ACTIVELEASEQUERY over TLS on a server
// without Active Leasequery (RFC 7653 section 9.2).
func TestTLSActiveNotSupported(t *testing.T) {
	f := newTLSFixture(t)
	srv := startServer(t, openStore(t, nil), f.config())
	a := dialActiveTLS(t, srv, f)
	a.start(0x0d, nil)
	a.expect(codec.MsgLeasequeryReply, codec.StatusNotSupported)
	a.readClosed(5 * time.Second)
}
