package server

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/store"
)

// churn changes a pool of bindings: each round advances the clock by a
// second and changes n random bindings (new lifetimes and CLTT, release,
// expiry or renewal). Keys other than the address stay fixed per binding,
// so filtered requestors keep following the same bindings.
type churn struct {
	clock *testClock
	rng   *rand.Rand
	pool  []store.Binding
}

func newChurn(clock *testClock, seed uint64, size int) *churn {
	ch := &churn{clock: clock, rng: rand.New(rand.NewPCG(seed, 7))}
	for i := range size {
		link := fmt.Sprintf("2001:db8:%x::1", i%4)
		var b store.Binding
		if i%5 == 4 {
			b = activeBinding(fmt.Sprintf("2001:db8:%x:%x::/64", 0x100+i%4, i), duid(i), link, clock.now())
			b.Key.Type = store.TypePD
		} else {
			b = activeBinding(fmt.Sprintf("2001:db8:%x::%x/128", i%4, 0x1000+i), duid(i), link, clock.now())
		}
		b.RelayID = []byte{0x00, 0x02, 0x00, 0x00, 0x9d, 0x10, 'r', byte('0' + i%4)}
		b.RemoteID = []byte{0x00, 0x00, 0x0d, 0xe9, 'p', byte('0' + i%8)}
		b.RelayPeer = netip.MustParseAddr("fe80::1")
		b.RelayMessage = relayForwSized(link, i%40)
		ch.pool = append(ch.pool, b)
	}
	return ch
}

// relayForwSized returns a RELAY-FORW from link with an OPTION_INTERFACE_ID
// of n octets, so that bodies differ in size.
func relayForwSized(link string, n int) []byte {
	rm := codec.RelayMessage{
		Type:        codec.MsgRelayForw,
		LinkAddress: netip.MustParseAddr(link),
		PeerAddress: netip.MustParseAddr("fe80::c1"),
	}
	rm.Options.Add(codec.OptInterfaceID, make([]byte, n+1))
	b, err := rm.AppendTo(nil)
	if err != nil {
		panic(err)
	}
	return b
}

// round applies one round of n changes.
func (ch *churn) round(ctx context.Context, st *store.Store, n int) error {
	ch.clock.add(time.Second)
	now := ch.clock.now()
	changes := make([]store.Binding, 0, n)
	for range n {
		b := &ch.pool[ch.rng.IntN(len(ch.pool))]
		switch ch.rng.IntN(6) {
		case 0:
			b.State = store.StateReleased
		case 1:
			b.State = store.StateExpired
		default:
			b.State = store.StateActive
			b.CLTT = now
			b.ValidLifetime = 40000 + uint32(ch.rng.IntN(40000))
			b.PreferredLifetime = b.ValidLifetime / 2
		}
		b.IAID++ // makes every change differ from the stored binding
		changes = append(changes, *b)
	}
	_, err := st.Apply(ctx, changes, nil)
	return err
}

// all applies every binding of the pool once.
func (ch *churn) all(ctx context.Context, st *store.Store) error {
	_, err := st.Apply(ctx, ch.pool, nil)
	return err
}

// TestActiveStalledReaderCutOff checks ACTIVE_LQ_SEND_TIMEOUT: a requestor
// that stops reading is closed once blocked that long, and a requestor
// next to it keeps receiving every change.
func TestActiveStalledReaderCutOff(t *testing.T) {
	clock := newTestClock(testNow)
	st := openStoreAt(t, t.TempDir(), clock, 0)
	closeAtEnd(t, st)
	cfg := activeConfig()
	cfg.ActiveSendTimeout = 300 * time.Millisecond
	cfg.NotSentLowWater = 1024
	m := newTestMetrics(t)
	srv := startServerAt(t, st, cfg, clock, WithMetrics(m))

	stalled := &activeRequestor{testRequestor: dialSmallBuffer(t, srv, 4096), view: map[netip.Prefix]leaseState{}}
	stalled.start(0x51, nil, oro(codec.OptLQBaseTime, codec.OptLQRelayData))
	stalled.expect(codec.MsgLeasequeryReply, codec.StatusSuccess)
	good := dialActive(t, srv)
	good.start(0x52, nil, oro(codec.OptLQBaseTime, codec.OptLQRelayData))
	good.expect(codec.MsgLeasequeryReply, codec.StatusSuccess)

	ch := newChurn(clock, 1, 400)
	ctx := context.Background()
	if err := ch.all(ctx, st); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for closedCount(m, CloseSlowConsumer) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("stalled requestor not closed; blocked %d times", srv.active.ring.Stats().Blocked)
		}
		if err := ch.round(ctx, st, 50); err != nil {
			t.Fatal(err)
		}
		want := storeView(t, st, true, nil)
		good.readUntil(5*time.Second, "reading requestor current", func() bool { return len(diffViews(good.view, want)) == 0 })
	}

	stalled.readClosed(5 * time.Second)
	if got := gaugeValue(m.active.connections); got != 1 {
		t.Errorf("alqd_active_connections = %v after the close, want 1", got)
	}

	// The other requestor is unaffected.
	if err := ch.round(ctx, st, 20); err != nil {
		t.Fatal(err)
	}
	want := storeView(t, st, true, nil)
	good.readUntil(5*time.Second, "reading requestor after the close", func() bool { return len(diffViews(good.view, want)) == 0 })
}

// TestActiveSlowReaderExactState has a requestor read slower than the
// changes arrive, through a ring too small to hold its lag: it is blocked
// and lapped, resumes from the store, and ends with the current state of
// every binding.
func TestActiveSlowReaderExactState(t *testing.T) {
	clock := newTestClock(testNow)
	st := openStoreAt(t, t.TempDir(), clock, 0)
	closeAtEnd(t, st)
	cfg := activeConfig()
	cfg.NotSentLowWater = 1024
	cfg.ActiveRingSize = 64
	srv := startServerAt(t, st, cfg, clock)

	slow := &activeRequestor{testRequestor: dialSmallBuffer(t, srv, 4096), view: map[netip.Prefix]leaseState{}}
	slow.start(0x61, nil, oro(codec.OptLQBaseTime, codec.OptLQRelayData))
	slow.expect(codec.MsgLeasequeryReply, codec.StatusSuccess)

	ch := newChurn(clock, 2, 300)
	applied := make(chan error, 1)
	go func() {
		ctx := context.Background()
		err := ch.all(ctx, st)
		for i := 0; i < 60 && err == nil; i++ {
			err = ch.round(ctx, st, 50)
		}
		applied <- err
	}()

	var done bool
	deadline := time.Now().Add(30 * time.Second)
	for n := 0; ; n++ {
		if time.Now().After(deadline) {
			t.Fatalf("slow requestor not current after 30s:\n%v", diffViews(slow.view, storeView(t, st, true, nil)))
		}
		if !done {
			select {
			case err := <-applied:
				if err != nil {
					t.Fatalf("applying changes: %v", err)
				}
				done = true
			default:
			}
		}
		if done && len(diffViews(slow.view, storeView(t, st, true, nil))) == 0 {
			break
		}
		if _, err := slow.nextEvent(time.Second); err != nil && !isTimeout(err) {
			t.Fatalf("slow requestor: %v", err)
		}
		if n%16 == 0 {
			time.Sleep(2 * time.Millisecond)
		}
	}
	stats := srv.active.ring.Stats()
	if stats.Blocked == 0 || stats.Resyncs == 0 {
		t.Errorf("the slow requestor was blocked %d times and resynced %d times; the test did not provoke lag", stats.Blocked, stats.Resyncs)
	}
	slow.drain(200 * time.Millisecond)
	if d := diffViews(slow.view, storeView(t, st, true, nil)); len(d) > 0 {
		t.Errorf("view after the last message differs:\n%v", d)
	}
}

func TestActiveFilteredQueries(t *testing.T) {
	clock := newTestClock(testNow)
	st := openStoreAt(t, t.TempDir(), clock, 0)
	closeAtEnd(t, st)
	srv := startServerAt(t, st, activeConfig(), clock)
	ch := newChurn(clock, 3, 200)
	relay := func(i int) []byte { return ch.pool[i].RelayID }
	remote := func(i int) []byte { return ch.pool[i].RemoteID }
	link := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	na := ch.pool[10].Prefix.Addr() // an IA_NA address
	inPD := ch.pool[9].Prefix.Addr().Next()
	if ch.pool[9].Type != store.TypePD {
		t.Fatalf("pool binding 9 is %v, want an IA_PD", ch.pool[9].Type)
	}

	tests := []struct {
		name  string
		query codec.LQQuery
		match func(*store.Binding) bool
	}{
		{"relay-id", byRelayID(relay(1), "::"), func(b *store.Binding) bool { return string(b.RelayID) == string(relay(1)) }},
		{"relay-id on its link", byRelayID(relay(2), "2001:db8:2::1"), func(b *store.Binding) bool { return string(b.RelayID) == string(relay(2)) }},
		{"relay-id on another link", byRelayID(relay(2), "2001:db8:3::1"), func(*store.Binding) bool { return false }},
		{"link-address", byLink("2001:db8:3::1"), func(b *store.Binding) bool { return b.LinkAddress == link("2001:db8:3::1") }},
		{"remote-id", byRemoteID(remote(5), "::"), func(b *store.Binding) bool { return string(b.RemoteID) == string(remote(5)) }},
		{"client-id", byClientID(duid(7), "::"), func(b *store.Binding) bool { return string(b.ClientID) == string(duid(7)) }},
		{"client-id on another link", byClientID(duid(7), "2001:db8:1::1"), func(*store.Binding) bool { return false }},
		{"address", byAddress(na.String()), func(b *store.Binding) bool { return b.Prefix.Contains(na) }},
		{"address in delegated prefix", byAddress(inPD.String()), func(b *store.Binding) bool { return b.Prefix.Contains(inPD) }},
	}
	reqs := make([]*activeRequestor, len(tests))
	for i, tt := range tests {
		reqs[i] = dialActive(t, srv)
		q := tt.query
		q.Options = append(q.Options, oro(codec.OptLQRelayData))
		reqs[i].start(uint32(0x700+i), &q, oro(codec.OptLQBaseTime))
		reqs[i].expect(codec.MsgLeasequeryReply, codec.StatusSuccess)
	}

	ctx := context.Background()
	if err := ch.all(ctx, st); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if err := ch.round(ctx, st, 30); err != nil {
			t.Fatal(err)
		}
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := reqs[i]
			a.t = t
			want := storeView(t, st, true, tt.match)
			a.readUntil(5*time.Second, "filtered view current", func() bool { return len(diffViews(a.view, want)) == 0 })
			// A binding can return to a state it had, so the view may match
			// before the last message: read what is left, then compare again.
			a.drain(100 * time.Millisecond)
			if d := diffViews(a.view, want); len(d) > 0 {
				t.Errorf("view after the last message differs:\n%v", d)
			}
		})
	}

	// A filtered catch-up reads the store's history and sends only what the
	// filter selects.
	t.Run("relay-id catch-up", func(t *testing.T) {
		a := dialActive(t, srv)
		q := byRelayID(relay(3), "::")
		a.start(0x7ff, &q, oro(codec.OptLQBaseTime), startTime(testNow))
		a.expect(codec.MsgLeasequeryReply, codec.StatusSuccess)
		a.readUntil(5*time.Second, "catch-up complete", func() bool {
			return len(a.statuses) > 0 && a.statuses[len(a.statuses)-1] == codec.StatusCatchUpComplete
		})
		want := storeView(t, st, false, func(b *store.Binding) bool { return string(b.RelayID) == string(relay(3)) })
		if d := diffViews(a.view, want); len(d) > 0 {
			t.Errorf("filtered catch-up differs:\n%v", d)
		}
	})
}

// TestActiveResumeFromLaggingConnection drops a connection in the middle of
// the store resync that follows a block, and resumes with the base-time of
// the last message read (RFC 7653 section 8.3): no binding changed before
// that base-time may still have been unsent, so the resumed connection
// ends with the exact state of every binding.
func TestActiveResumeFromLaggingConnection(t *testing.T) {
	lagging := func(t *testing.T, srv *Server) *activeRequestor {
		return &activeRequestor{testRequestor: dialSmallBuffer(t, srv, 4096), view: map[netip.Prefix]leaseState{}}
	}
	resumed := func(t *testing.T, srv *Server) *activeRequestor { return dialActive(t, srv) }
	testResumeFromLagging(t, activeConfig(), lagging, resumed)
}

// TestTLSActiveResumeFromLaggingConnection is
// TestActiveResumeFromLaggingConnection over TLS, where the hub copies
// updates into the connection's outbox.
func TestTLSActiveResumeFromLaggingConnection(t *testing.T) {
	f := newTLSFixture(t)
	lagging := func(t *testing.T, srv *Server) *activeRequestor {
		r := dialSmallBuffer(t, srv, 4096)
		r.startTLS(1)
		tr, err := r.handshake(f.clientConfig(f.client))
		if err != nil {
			t.Fatalf("TLS handshake: %v", err)
		}
		return &activeRequestor{testRequestor: tr, view: map[netip.Prefix]leaseState{}}
	}
	resumed := func(t *testing.T, srv *Server) *activeRequestor { return dialActiveTLS(t, srv, f) }
	testResumeFromLagging(t, f.activeConfig(), lagging, resumed)
}

// testResumeFromLagging runs the lagging-resume check on a server with cfg:
// dialLagging opens the connection that stops reading, dialResumed the one
// that resumes from its last base-time.
func testResumeFromLagging(t *testing.T, cfg Config, dialLagging, dialResumed func(*testing.T, *Server) *activeRequestor) {
	clock := newTestClock(testNow)
	st := openStoreAt(t, t.TempDir(), clock, 0)
	closeAtEnd(t, st)
	cfg.NotSentLowWater = 1024
	cfg.ActiveRingSize = 64
	srv := startServerAt(t, st, cfg, clock)

	ch := newChurn(clock, 4, 300)
	ctx := context.Background()
	if err := ch.all(ctx, st); err != nil {
		t.Fatal(err)
	}
	a := dialLagging(t, srv)
	a.start(0x81, nil, oro(codec.OptLQBaseTime), startTime(testNow.Add(-time.Hour)))
	a.readUntil(5*time.Second, "initial catch-up", func() bool {
		return len(a.statuses) > 0 && a.statuses[len(a.statuses)-1] == codec.StatusCatchUpComplete
	})

	// The requestor stops reading. Changes go on until its connection is
	// blocked (a TLS one takes a 64 KiB outbox first), and for 20 seconds
	// after that, so that it lags behind the ring.
	blocked := srv.active.ring.Stats().Blocked
	for i := 0; srv.active.ring.Stats().Blocked == blocked; i++ {
		if i == 500 {
			t.Fatal("the requestor was not blocked after 500 seconds of changes")
		}
		if err := ch.round(ctx, st, 30); err != nil {
			t.Fatal(err)
		}
	}
	for range 20 {
		if err := ch.round(ctx, st, 30); err != nil {
			t.Fatal(err)
		}
	}
	resyncs := srv.active.ring.Stats().Resyncs

	// It reads until the server resumes it from the store, which happens
	// once the output queued before the block is in the kernel. At most a
	// few KiB of that output is still unread then, and the resync sends up
	// to one message per binding of the pool, so 100 messages later the
	// requestor is in the middle of the resync when it loses the
	// connection.
	a.readUntil(10*time.Second, "the store resync after the block", func() bool {
		return srv.active.ring.Stats().Resyncs > resyncs
	})
	for range 100 {
		if _, err := a.nextEvent(5 * time.Second); err != nil {
			t.Fatalf("reading after the block: %v", err)
		}
	}
	checkpoint := a.lastBase
	if checkpoint >= codec.DHCPTime(clock.now()) {
		t.Logf("checkpoint %d is the current second; the resync was already complete", checkpoint)
	}
	_ = a.conn.Close()

	b := dialResumed(t, srv)
	b.view = a.view
	b.start(0x82, nil, oro(codec.OptLQBaseTime), uint32Option(codec.OptLQStartTime, checkpoint))
	b.readUntil(5*time.Second, "catch-up from the checkpoint", func() bool {
		return len(b.statuses) > 0 && b.statuses[len(b.statuses)-1] == codec.StatusCatchUpComplete
	})
	if d := diffViews(b.view, storeView(t, st, false, nil)); len(d) > 0 {
		t.Errorf("view resumed from base-time %v differs from the store:\n%v", codec.TimeFromDHCP(checkpoint), d)
	}
}
