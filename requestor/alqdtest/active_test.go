package alqdtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/requestor"
	"github.com/alqd/alqd/requestor/mirror"
	"github.com/alqd/alqd/requestor/requestortest"
	"github.com/alqd/alqd/server"
	"github.com/alqd/alqd/store"
)

// fakeClock is the server's clock, moved by the test.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// activeConfig enables Active Leasequery over plaintext TCP, two explicit
// steps (RFC 7653 section 9.1).
func activeConfig() server.Config {
	return server.Config{Active: true, Insecure: true, ActiveIdleTimeout: testIdleTimeout}
}

// testIdleTimeout is alqd's ACTIVE_LQ_IDLE_TIMEOUT in these tests, far
// beyond their 20 s context: a test passes only if CatchUpComplete follows
// the catch-up data by itself, not behind a keepalive.
const testIdleTimeout = time.Hour

// apply commits changes to the store.
func apply(t *testing.T, st *store.Store, bs ...store.Binding) {
	t.Helper()
	if _, err := st.Apply(context.Background(), bs, nil); err != nil {
		t.Fatal(err)
	}
}

func TestAlqdWatchCatchUpThenLive(t *testing.T) {
	clock := &fakeClock{t: now}
	st := openStore(t, clock.Now)
	apply(t, st, fixtures...)
	srv, _ := startServer(t, st, activeConfig(), clock.Now)

	start := codec.DHCPTime(now) - 10
	w, err := requestor.NewWatcher(config(srv.Addr().String()), requestor.WatchRequest{Resume: requestor.Checkpoint{StartTime: start, Valid: true}})
	if err != nil {
		t.Fatal(err)
	}
	fresh := bind("2001:db8:1::99/128", client3, linkA, nil, nil)
	var catchUp, live []requestor.Binding
	var atComplete requestor.Checkpoint
	err = w.Run(testContext(t), func(ev requestor.Event) error {
		switch e := ev.(type) {
		case requestor.Binding:
			if e.CatchUp {
				catchUp = append(catchUp, e)
				return nil
			}
			live = append(live, e)
			return errors.New("done")
		case requestor.CatchUpComplete:
			atComplete = w.Checkpoint()
			// A change after catch-up, ten seconds later on the server.
			clock.Advance(10 * time.Second)
			apply(t, st, fresh)
		}
		return nil
	})
	if err == nil || err.Error() != "done" {
		t.Fatalf("Run: %v", err)
	}
	if len(catchUp) != len(fixtures) {
		t.Errorf("catch-up delivered %d bindings, want the %d changed since the start time", len(catchUp), len(fixtures))
	}
	if !atComplete.Valid || atComplete.StartTime < codec.DHCPTime(now) {
		t.Errorf("checkpoint at CatchUpComplete = %+v, want at least %d", atComplete, codec.DHCPTime(now))
	}
	if len(live) != 1 || live[0].Addr != fresh.Prefix.Addr() || live[0].BaseTime != codec.DHCPTime(now)+10 {
		t.Fatalf("live bindings = %v, want %v at base-time %d", live, fresh.Prefix, codec.DHCPTime(now)+10)
	}
	if cp := w.Checkpoint(); cp.StartTime != codec.DHCPTime(now)+10 {
		t.Errorf("checkpoint after the live change = %+v, want %d", cp, codec.DHCPTime(now)+10)
	}
}

func TestAlqdWatchFiltered(t *testing.T) {
	clock := &fakeClock{t: now}
	st := openStore(t, clock.Now)
	apply(t, st, fixtures...)
	srv, _ := startServer(t, st, activeConfig(), clock.Now)

	filter := &requestor.Query{Type: codec.QueryByRelayID, RelayID: relayA}
	req := requestor.WatchRequest{Filter: filter, Resume: requestor.Checkpoint{StartTime: codec.DHCPTime(now), Valid: true}}
	w, err := requestor.NewWatcher(config(srv.Addr().String()), req)
	if err != nil {
		t.Fatal(err)
	}
	other := bind("2001:db8:2::77/128", client3, linkB, nil, nil)
	mine := bind("2001:db8:1::77/128", client2, linkA, relayA, nil)
	var got []string
	err = w.Run(testContext(t), func(ev requestor.Event) error {
		switch e := ev.(type) {
		case requestor.Binding:
			got = append(got, bindingTarget(e))
			if !e.CatchUp {
				return errors.New("done")
			}
		case requestor.CatchUpComplete:
			clock.Advance(time.Second)
			apply(t, st, other, mine) // only mine matches the filter
		}
		return nil
	})
	if err == nil || err.Error() != "done" {
		t.Fatalf("Run: %v", err)
	}
	want := []string{"2001:db8:1::10", "2001:db8:100:1200::/56", "2001:db8:1::11", "2001:db8:1::77"}
	if len(got) != len(want) {
		t.Fatalf("bindings = %v, want %v", got, want)
	}
	seen := map[string]bool{}
	for _, g := range got {
		seen[g] = true
	}
	for _, w := range want {
		if !seen[w] {
			t.Errorf("binding %s missing from %v", w, got)
		}
	}
}

func bindingTarget(b requestor.Binding) string {
	if b.Type == requestor.TypePD {
		return b.Prefix.String()
	}
	return b.Addr.String()
}

// TestAlqdReceiveTimeoutRetryAndSkew follows an alqd that sends nothing
// after catch-up (no keepalives within the test). The Watcher closes each
// connection after its receive timeout, reconnects no sooner than its
// retry interval with the base-time it kept, and converts the server's
// times, months behind the local clock, into local ones.
func TestAlqdReceiveTimeoutRetryAndSkew(t *testing.T) {
	clock := &fakeClock{t: now}
	st := openStore(t, clock.Now)
	apply(t, st, fixtures...)
	srv, _ := startServer(t, st, activeConfig(), clock.Now)

	cfg := config(srv.Addr().String())
	cfg.ReceiveTimeout = 300 * time.Millisecond
	cfg.RetryInterval = 500 * time.Millisecond
	start := codec.DHCPTime(now) - 10
	w, err := requestor.NewWatcher(cfg, requestor.WatchRequest{Resume: requestor.Checkpoint{StartTime: start, Valid: true}})
	if err != nil {
		t.Fatal(err)
	}
	var connected []requestor.Connected
	var connectedAt []time.Time
	var disconnects []error
	var first *requestor.Binding
	stop := errors.New("three connections")
	err = w.Run(testContext(t), func(ev requestor.Event) error {
		switch e := ev.(type) {
		case requestor.Connected:
			connected = append(connected, e)
			connectedAt = append(connectedAt, time.Now())
			if len(connected) == 3 {
				return stop
			}
		case requestor.Disconnected:
			disconnects = append(disconnects, e.Err)
		case requestor.Binding:
			if first == nil && e.Addr == fixtures[0].Prefix.Addr() {
				first = &e
			}
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("Run: %v", err)
	}

	if len(disconnects) != 2 {
		t.Errorf("%d disconnects before the third connection, want 2", len(disconnects))
	}
	for i, err := range disconnects {
		if !errors.Is(err, requestor.ErrReceiveTimeout) {
			t.Errorf("disconnect %d: %v, want ErrReceiveTimeout", i+1, err)
		}
	}
	// Connected is reported once the query is written, a little after the
	// attempt began, so only the lower bound is checked, less a margin for
	// that delay.
	for i := 1; i < len(connectedAt); i++ {
		if gap := connectedAt[i].Sub(connectedAt[i-1]); gap < cfg.RetryInterval-50*time.Millisecond {
			t.Errorf("connection %d began %v after the one before, want at least the retry interval %v", i+1, gap, cfg.RetryInterval)
		}
	}
	if connected[0].StartTime != start {
		t.Errorf("first start time %d, want %d", connected[0].StartTime, start)
	}
	for _, c := range connected[1:] {
		if !c.HasStartTime || c.StartTime != codec.DHCPTime(now) {
			t.Errorf("reconnect start time %d (present %v), want the base-time %d kept after catch-up", c.StartTime, c.HasStartTime, codec.DHCPTime(now))
		}
	}

	// The server's clock is fixed at now, months behind the local one.
	behind := time.Since(now)
	if d := w.Skew() - behind; d < -2*time.Second || d > 2*time.Second {
		t.Errorf("skew %v, want about %v", w.Skew(), behind)
	}
	if first == nil {
		t.Fatalf("no binding for %v", fixtures[0].Prefix)
	}
	// Granted 3600 s a minute before the server's now: it runs out 3540 s
	// after the message, in local time.
	want := first.Received.Add(3540 * time.Second)
	if d := first.ValidUntil.Sub(want); d < -2*time.Second || d > 2*time.Second {
		t.Errorf("valid until %v, want about %v (local time)", first.ValidUntil, want)
	}
}

// proxy forwards TCP connections to a target that the test can change,
// so that a server restarted on a new port keeps the requestor's address.
type proxy struct {
	ln     net.Listener
	mu     sync.Mutex
	target string
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) retarget(addr string) {
	p.mu.Lock()
	p.target = addr
	p.mu.Unlock()
}

func (p *proxy) serve() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		target := p.target
		p.mu.Unlock()
		upstream, err := net.Dial("tcp", target)
		if err != nil {
			client.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, client, upstream)
		p.mu.Unlock()
		p.wg.Add(2)
		pipe := func(dst, src net.Conn) {
			defer p.wg.Done()
			io.Copy(dst, src)
			dst.Close()
			src.Close()
		}
		go pipe(client, upstream)
		go pipe(upstream, client)
	}
}

// mirrorMatches reports whether the mirror holds exactly the store's
// active bindings as active records.
func mirrorMatches(t *testing.T, m *mirror.Mirror, want map[netip.Prefix]bool) bool {
	got := map[netip.Prefix]bool{}
	err := m.Scan(func(r *mirror.Record) error {
		if r.State == requestor.StateActive {
			got[r.Prefix] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		return false
	}
	for p := range want {
		if !got[p] {
			return false
		}
	}
	return true
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAlqdMirrorAcrossRestarts fills a mirror from alqd, restarts the
// server while bindings change, then restarts the mirror, and checks after
// each step that the mirror holds the store's active bindings.
func TestAlqdMirrorAcrossRestarts(t *testing.T) {
	clock := &fakeClock{t: now}
	st := openStore(t, clock.Now)
	apply(t, st, fixtures...)
	// A connection the proxy opens to a server that is shutting down can
	// stay silent. A one-second receive timeout ends it, as
	// ACTIVE_LQ_RCV_TIMEOUT would in the field, and alqd's keepalives at a
	// third of that keep the healthy connections open. RFC 7653 section
	// 8.4 sets the receive timeout at twice the idle timeout for the same
	// reason.
	const receiveTimeout = time.Second
	srvCfg := activeConfig()
	srvCfg.ActiveIdleTimeout = receiveTimeout / 3
	srv1, stop1 := startServer(t, st, srvCfg, clock.Now)
	px := newProxy(t, srv1.Addr().String())

	want := map[netip.Prefix]bool{}
	for _, b := range fixtures {
		want[b.Prefix] = true
	}
	cfg := mirror.Config{Dir: t.TempDir(), Requestor: config(px.addr())}
	cfg.Requestor.RetryInterval = 50 * time.Millisecond
	cfg.Requestor.ReceiveTimeout = receiveTimeout

	// runMirror runs a mirror until the returned stop is called, recording
	// the start time of each connection.
	var mu sync.Mutex
	var starts []requestor.Connected
	var history []string
	t.Cleanup(func() {
		if t.Failed() {
			mu.Lock()
			defer mu.Unlock()
			for _, h := range history {
				t.Log(h)
			}
		}
	})
	runMirror := func() (*mirror.Mirror, func()) {
		m, err := mirror.Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- m.Run(ctx, func(ev requestor.Event) error {
				if c, ok := ev.(requestor.Connected); ok {
					mu.Lock()
					starts = append(starts, c)
					mu.Unlock()
				}
				mu.Lock()
				history = append(history, fmt.Sprintf("%T %+v", ev, ev))
				mu.Unlock()
				return nil
			})
		}()
		return m, func() {
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Errorf("mirror Run: %v", err)
			}
			m.Close()
		}
	}

	// Fill: catch-up from start time 0 brings every binding.
	m, stopMirror := runMirror()
	waitFor(t, "the mirror to fill", func() bool { return mirrorMatches(t, m, want) })
	waitFor(t, "a checkpoint", func() bool { cp, _ := m.Checkpoint(); return cp.Valid })

	// Server restart: bindings change while it is down.
	stop1()
	clock.Advance(30 * time.Second)
	released := fixtures[2]
	released.State = store.StateReleased
	added := bind("2001:db8:1::50/128", requestortest.DUIDLL(5), linkA, nil, nil)
	apply(t, st, released, added)
	delete(want, released.Prefix)
	want[added.Prefix] = true
	srv2, _ := startServer(t, st, srvCfg, clock.Now)
	px.retarget(srv2.Addr().String())
	waitFor(t, "the mirror to catch up after the server restart", func() bool { return mirrorMatches(t, m, want) })

	// Mirror restart: a change while it is down arrives as catch-up from
	// the stored checkpoint.
	stopMirror()
	stored, err := func() (requestor.Checkpoint, error) {
		m, err := mirror.Open(cfg)
		if err != nil {
			return requestor.Checkpoint{}, err
		}
		defer m.Close()
		return m.Checkpoint()
	}()
	if err != nil || !stored.Valid {
		t.Fatalf("stored checkpoint = %+v, %v", stored, err)
	}
	clock.Advance(30 * time.Second)
	later := bind("2001:db8:1::51/128", requestortest.DUIDLL(6), linkA, nil, nil)
	apply(t, st, later)
	want[later.Prefix] = true
	m, stopMirror = runMirror()
	defer stopMirror()
	waitFor(t, "the mirror to catch up after its own restart", func() bool { return mirrorMatches(t, m, want) })

	mu.Lock()
	defer mu.Unlock()
	if len(starts) < 3 {
		t.Fatalf("got %d connections, want one per run and one after the server restart", len(starts))
	}
	if !starts[0].HasStartTime || starts[0].StartTime != 0 {
		t.Errorf("first connection start time = %d (present %v), want catch-up from 0", starts[0].StartTime, starts[0].HasStartTime)
	}
	last := starts[len(starts)-1]
	if !last.HasStartTime || last.StartTime != stored.StartTime {
		t.Errorf("after the mirror restart the start time = %d, want the stored %d", last.StartTime, stored.StartTime)
	}
}
