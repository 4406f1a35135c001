package server

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
)

// unallowedConfig serves on 127.0.0.1 and allows 127.0.0.1 only, so that
// connections from other loopback addresses (127.0.0.0/8) are outside
// Allow.
func unallowedConfig() Config {
	cfg := testConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.ListenUDP = "off"
	cfg.Allow = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	return cfg
}

// dialFrom connects to srv from the loopback address from.
func dialFrom(t *testing.T, srv *Server, from string) *testRequestor {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatalf("dial %v from %s: %v", srv.Addr(), from, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &testRequestor{t: t, conn: c, fr: codec.NewFrameReader(c, 0)}
}

// stillOpen reports whether the server kept r open for wait.
func stillOpen(r *testRequestor, wait time.Duration) bool {
	_ = r.conn.SetReadDeadline(time.Now().Add(wait))
	_, err := r.conn.Read(make([]byte, 1))
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestUnallowedConnsCannotLockOut fills more than MaxConns with idle
// connections from outside Allow: they are capped on their own, and every
// allowed connection up to MaxConns is still served.
func TestUnallowedConnsCannotLockOut(t *testing.T) {
	st := openStore(t, nil)
	seed(t, st, binding("2001:db8:1::10/128", duid(1), "2001:db8:1::1"))
	cfg := unallowedConfig()
	cfg.MaxConns = 4
	cfg.MaxUnallowedConns = 3
	cfg.UnallowedTimeout = time.Minute
	m := newTestMetrics(t)
	var logs logBuffer
	srv := startServer(t, st, cfg, WithMetrics(m), WithLogger(logs.logger()))

	var idle []*testRequestor
	for i := range 8 {
		idle = append(idle, dialFrom(t, srv, "127.0.0."+string(rune('2'+i%2))))
	}
	eventually(t, 5*time.Second, "5 connections over MaxUnallowedConns rejected", func() bool {
		return counterValue(m.rejected.WithLabelValues(limitMaxUnallowedConns)) == 5
	})
	open := 0
	for _, r := range idle {
		if stillOpen(r, 50*time.Millisecond) {
			open++
		}
	}
	if open != cfg.MaxUnallowedConns {
		t.Errorf("%d connections from outside Allow open, want %d", open, cfg.MaxUnallowedConns)
	}

	for i := range cfg.MaxConns {
		r := dialFrom(t, srv, "127.0.0.1")
		if a := r.query(uint32(i+1), byLink("2001:db8:1::1")); len(a.clientData(t)) != 1 {
			t.Fatalf("allowed connection %d not served while connections from outside Allow are open", i)
		}
	}
	if n := counterValue(m.rejected.WithLabelValues(limitMaxConns)); n != 0 {
		t.Errorf("%v allowed connections rejected for max_conns, want 0", n)
	}

	// Two addresses, each warned about once: the rejections are counted,
	// not logged one by one.
	out := logs.String()
	if n := strings.Count(out, `msg="connection rejected"`) + strings.Count(out, `msg="connection from a requestor not on the allow-list"`); n != 2 {
		t.Errorf("%d warnings about 8 connections from 2 addresses, want 2:\n%s", n, out)
	}
}

// TestUnallowedTimeout checks that a connection from outside Allow that
// sends nothing is closed after UnallowedTimeout, and one that sends a
// query is answered NotAllowed and closed at once.
func TestUnallowedTimeout(t *testing.T) {
	cfg := unallowedConfig()
	cfg.UnallowedTimeout = 200 * time.Millisecond
	cfg.IdleTimeout = time.Minute
	m := newTestMetrics(t)
	srv := startServer(t, openStore(t, nil), cfg, WithMetrics(m))

	start := time.Now()
	silent := dialFrom(t, srv, "127.0.0.2")
	silent.waitClosed(5 * time.Second)
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("closed after %v, before the 200 ms timeout", d)
	}

	asking := dialFrom(t, srv, "127.0.0.3")
	asking.send(leasequery(5, byLink("2001:db8:1::1")))
	if m := asking.next(); status(t, m) != codec.StatusNotAllowed {
		t.Errorf("status %v, want NotAllowed", status(t, m))
	}
	asking.waitClosed(5 * time.Second)
	eventually(t, 5*time.Second, "two not_allowed closes counted", func() bool { return closedCount(m, CloseNotAllowed) == 2 })

	allowed := dialFrom(t, srv, "127.0.0.1")
	if !stillOpen(allowed, 500*time.Millisecond) {
		t.Error("allowed connection closed within 500 ms; UnallowedTimeout must not apply to it")
	}
}

// TestUnallowedStartTLS checks that STARTTLS from outside Allow gets
// TLSConnectionRefused and a close, even when the server takes TLS.
func TestUnallowedStartTLS(t *testing.T) {
	tests := []struct {
		name string
		tls  bool
	}{
		{"without TLS", false},
		{"with TLS", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := unallowedConfig()
			if tt.tls {
				cfg.TLS = newTLSFixture(t).files
			}
			srv := startServer(t, openStore(t, nil), cfg)
			r := dialFrom(t, srv, "127.0.0.2")
			r.send(message(codec.MsgStartTLS, 0x5a5a02))
			m := r.next()
			if m.Type != codec.MsgReply || status(t, m) != codec.StatusTLSConnectionRefused {
				t.Errorf("got %v %v, want REPLY TLSConnectionRefused", m.Type, status(t, m))
			}
			r.waitClosed(5 * time.Second)
		})
	}
}

func TestSourceLimiter(t *testing.T) {
	l := sourceLimiter{interval: time.Minute}
	a, b := netip.MustParseAddr("2001:db8::a"), netip.MustParseAddr("2001:db8::b")
	t0 := time.Unix(1_800_000_000, 0)
	steps := []struct {
		addr           netip.Addr
		at             time.Duration
		wantOK         bool
		wantSuppressed int
	}{
		{a, 0, true, 0},
		{a, time.Second, false, 0},
		{b, time.Second, true, 0},
		{a, 30 * time.Second, false, 0},
		{a, time.Minute, true, 2},
		{a, time.Minute + time.Second, false, 0},
	}
	for i, s := range steps {
		ok, suppressed := l.allow(s.addr, t0.Add(s.at))
		if ok != s.wantOK || suppressed != s.wantSuppressed {
			t.Errorf("step %d: allow(%v, +%v) = %v, %d; want %v, %d", i, s.addr, s.at, ok, suppressed, s.wantOK, s.wantSuppressed)
		}
	}
}

func TestSourceLimiterBudget(t *testing.T) {
	l := sourceLimiter{interval: time.Minute}
	t0 := time.Unix(1_800_000_000, 0)
	addr := func(i int) netip.Addr {
		return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)})
	}
	allowed := 0
	for i := range 100 {
		if ok, _ := l.allow(addr(i), t0); ok {
			allowed++
		}
	}
	if allowed != maxWarningsPerInterval {
		t.Errorf("%d of 100 addresses warned about in one interval, want %d", allowed, maxWarningsPerInterval)
	}

	// An address held back by the budget reports it with its next warning.
	ok, suppressed := l.allow(addr(99), t0.Add(time.Minute))
	if !ok || suppressed != 1 {
		t.Errorf("next interval: allow = %v, %d; want true, 1", ok, suppressed)
	}
}

func TestSourceLimiterFull(t *testing.T) {
	l := sourceLimiter{interval: time.Minute}
	t0 := time.Unix(1_800_000_000, 0)
	addr := func(i int) netip.Addr {
		return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)})
	}
	for i := range maxLimitedSources + 10 {
		l.allow(addr(i), t0)
	}
	if n := len(l.sources); n != maxLimitedSources {
		t.Errorf("table holds %d addresses, want the cap of %d", n, maxLimitedSources)
	}
	if ok, _ := l.allow(addr(maxLimitedSources+20), t0.Add(time.Second)); ok {
		t.Error("a new address was let through with the table full of recent ones")
	}
	if ok, _ := l.allow(addr(maxLimitedSources+20), t0.Add(time.Minute)); !ok {
		t.Error("a new address was held back after the others went quiet")
	}
	if n := len(l.sources); n != 1 {
		t.Errorf("table holds %d addresses after forgetting the quiet ones, want 1", n)
	}
}
