package server

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/store"
)

// catchUpHistory applies the changes the catch-up tests select from:
// b1 at now-60m only, b2 at -60m, -30m and -10m, b3 added at -60m and
// released at -30m, b4 added at -30m. It returns b1..b4 as last applied.
func catchUpHistory(t testing.TB, st *store.Store, clock *testClock, base time.Time) []store.Binding {
	t.Helper()
	link := "2001:db8:1::1"
	b1 := activeBinding("2001:db8:1::1/128", duid(1), link, base.Add(-60*time.Minute))
	b2 := activeBinding("2001:db8:1::2/128", duid(2), link, base.Add(-60*time.Minute))
	b3 := activeBinding("2001:db8:100::/56", duid(3), link, base.Add(-60*time.Minute))
	b3.Key.Type = store.TypePD
	b4 := activeBinding("2001:db8:1::4/128", duid(4), link, base.Add(-30*time.Minute))

	clock.set(base.Add(-60 * time.Minute))
	seed(t, st, b1, b2, b3)
	clock.set(base.Add(-30 * time.Minute))
	b2.CLTT, b2.ValidLifetime = clock.now(), 50000
	b3.State = store.StateReleased
	seed(t, st, b2, b3, b4)
	clock.set(base.Add(-10 * time.Minute))
	b2.CLTT = clock.now()
	seed(t, st, b2)
	clock.set(base)
	return []store.Binding{b1, b2, b3, b4}
}

// checkCatchUp reads a catch-up answer: the REPLY, every binding changed
// since -30m once in its current state, then CatchUpComplete.
func checkCatchUp(t *testing.T, a *activeRequestor, bs []store.Binding) {
	t.Helper()
	a.expect(codec.MsgLeasequeryReply, codec.StatusSuccess)
	seen := map[netip.Prefix]int{}
	for {
		ev, err := a.nextEvent(10 * time.Second)
		if err != nil {
			t.Fatalf("catch-up: %v", err)
		}
		for _, l := range ev.bindings {
			seen[l.prefix]++
		}
		if ev.status == codec.StatusCatchUpComplete {
			if ev.msg.Type != codec.MsgLeasequeryData || len(ev.bindings) != 0 {
				t.Errorf("CatchUpComplete in %v with %d bindings, want LEASEQUERY-DATA without", ev.msg.Type, len(ev.bindings))
			}
			if !ev.hasBase {
				t.Errorf("CatchUpComplete without the requested base-time")
			}
			break
		}
	}
	want := map[netip.Prefix]leaseState{}
	for _, b := range bs[1:] {
		want[b.Prefix] = expectedState(&b, false)
	}
	if d := diffViews(a.view, want); len(d) > 0 {
		t.Errorf("catch-up view differs:\n%v", d)
	}
	for p, n := range seen {
		if n != 1 {
			t.Errorf("%v sent %d times during catch-up, want once", p, n)
		}
	}
}

func TestActiveCatchUpFromStore(t *testing.T) {
	clock := newTestClock(testNow)
	st := openStoreAt(t, t.TempDir(), clock, 0)
	closeAtEnd(t, st)
	bs := catchUpHistory(t, st, clock, testNow)
	m := newTestMetrics(t)
	srv := startServerAt(t, st, activeConfig(), clock, WithMetrics(m))

	a := dialActive(t, srv)
	a.start(0x0c01, nil, oro(codec.OptLQBaseTime), startTime(testNow.Add(-30*time.Minute)))
	checkCatchUp(t, a, bs)

	// Live changes follow.
	clock.add(5 * time.Second)
	b5 := activeBinding("2001:db8:1::5/128", duid(5), "2001:db8:1::1", clock.now())
	seed(t, st, b5)
	ev := a.expect(codec.MsgLeasequeryData, codec.StatusSuccess)
	if len(ev.bindings) != 1 || ev.bindings[0] != expectedState(&b5, false) {
		t.Errorf("live change after catch-up: %v, want %v", ev.bindings, expectedState(&b5, false))
	}
	if got := counterValue(m.active.catchUpsStarted); got != 1 {
		t.Errorf("catch-ups started = %v, want 1", got)
	}
	if got := counterValue(m.active.catchUpsCompleted); got != 1 {
		t.Errorf("catch-ups completed = %v, want 1", got)
	}
}

func TestActiveCatchUpFromRing(t *testing.T) {
	clock := newTestClock(testNow)
	st := openStoreAt(t, t.TempDir(), clock, 0)
	closeAtEnd(t, st)
	srv := startServerAt(t, st, activeConfig(), clock)
	// The changes happen while the server runs, so the ring holds them,
	// encoded up to an hour before they are sent.
	bs := catchUpHistory(t, st, clock, testNow)

	a := dialActive(t, srv)
	a.start(0x0c02, nil, oro(codec.OptLQBaseTime), startTime(testNow.Add(-30*time.Minute)))
	checkCatchUp(t, a, bs)
	if a.lastBase != codec.DHCPTime(testNow) {
		t.Errorf("last base-time %d, want the current time %d", a.lastBase, codec.DHCPTime(testNow))
	}
}

func TestActiveCatchUpNothingChanged(t *testing.T) {
	clock := newTestClock(testNow)
	st := openStoreAt(t, t.TempDir(), clock, 0)
	closeAtEnd(t, st)
	catchUpHistory(t, st, clock, testNow)
	srv := startServerAt(t, st, activeConfig(), clock)

	a := dialActive(t, srv)
	a.start(0x0c03, nil, startTime(testNow.Add(-time.Minute)))
	a.expect(codec.MsgLeasequeryReply, codec.StatusSuccess)
	a.expect(codec.MsgLeasequeryData, codec.StatusCatchUpComplete)
	if len(a.view) != 0 {
		t.Errorf("bindings sent for a start time after the last change:\n%s", describeView(a.view))
	}
}

func TestActiveDataMissingBelowFloor(t *testing.T) {
	clock := newTestClock(testNow.Add(-3 * time.Hour))
	st := openStoreAt(t, t.TempDir(), clock, time.Hour)
	closeAtEnd(t, st)
	gone := activeBinding("2001:db8:1::1/128", duid(1), "2001:db8:1::1", clock.now())
	seed(t, st, gone)
	gone.State = store.StateReleased
	seed(t, st, gone)
	clock.set(testNow.Add(-30 * time.Minute))
	kept := activeBinding("2001:db8:1::2/128", duid(2), "2001:db8:1::1", clock.now())
	seed(t, st, kept)
	clock.set(testNow)
	if err := st.Trim(testNow); err != nil {
		t.Fatalf("Trim: %v", err)
	}
	floor, _ := st.Floor()
	if !floor.Equal(testNow.Add(-time.Hour)) {
		t.Fatalf("floor %v, want %v", floor, testNow.Add(-time.Hour))
	}
	m := newTestMetrics(t)
	srv := startServerAt(t, st, activeConfig(), clock, WithMetrics(m))

	t.Run("below", func(t *testing.T) {
		a := dialActive(t, srv)
		a.start(0x0d01, nil, startTime(testNow.Add(-2*time.Hour)))
		// RFC 7653 section 8.4.1: the REPLY carries DataMissing and the
		// current base-time even though the ORO did not ask for it.
		ev := a.expect(codec.MsgLeasequeryReply, codec.StatusDataMissing)
		if !ev.hasBase || ev.base != codec.DHCPTime(testNow) {
			t.Errorf("DataMissing REPLY base-time %d (present %v), want %d", ev.base, ev.hasBase, codec.DHCPTime(testNow))
		}
		// Only live changes follow, and no CatchUpComplete.
		if err := a.quiet(100 * time.Millisecond); err != nil {
			t.Fatalf("after DataMissing: %v", err)
		}
		clock.add(time.Second)
		b := activeBinding("2001:db8:1::3/128", duid(3), "2001:db8:1::1", clock.now())
		seed(t, st, b)
		ev = a.expect(codec.MsgLeasequeryData, codec.StatusSuccess)
		if len(ev.bindings) != 1 || ev.bindings[0].prefix != b.Prefix {
			t.Errorf("live change after DataMissing: %v", ev.bindings)
		}
	})
	t.Run("at floor", func(t *testing.T) {
		a := dialActive(t, srv)
		a.start(0x0d02, nil, startTime(testNow.Add(-time.Hour)))
		a.expect(codec.MsgLeasequeryReply, codec.StatusSuccess)
		a.readUntil(5*time.Second, "catch-up complete", func() bool {
			return len(a.statuses) > 0 && a.statuses[len(a.statuses)-1] == codec.StatusCatchUpComplete
		})
		if _, ok := a.view[kept.Prefix]; !ok {
			t.Errorf("catch-up from the floor lacks %v:\n%s", kept.Prefix, describeView(a.view))
		}
	})
	if got := counterValue(m.active.dataMissing.WithLabelValues("reply")); got != 1 {
		t.Errorf("DataMissing replies = %v, want 1", got)
	}
}

// TestActiveDataMissingUnderCatchUp trims the history below a catch-up that
// is blocked halfway: when the requestor reads again, the catch-up resumes
// from a store scan below the new floor, which the connection hears as a
// LEASEQUERY-DATA with DataMissing (RFC 7653 section 8.4.1).
func TestActiveDataMissingUnderCatchUp(t *testing.T) {
	clock := newTestClock(testNow.Add(-3 * time.Hour))
	st := openStoreAt(t, t.TempDir(), clock, time.Hour)
	closeAtEnd(t, st)

	// Released bindings at -3h, enough to block the catch-up halfway,
	// then one change at -10m.
	var batch []store.Binding
	for i := range 4000 {
		b := activeBinding(fmt.Sprintf("2001:db8:1::%x/128", 0x1000+i), duid(i), "2001:db8:1::1", clock.now())
		b.State = store.StateReleased
		batch = append(batch, b)
	}
	seed(t, st, batch...)
	clock.set(testNow.Add(-10 * time.Minute))
	late := activeBinding("2001:db8:2::1/128", duid(9999), "2001:db8:2::1", clock.now())
	seed(t, st, late)
	clock.set(testNow)

	cfg := activeConfig()
	cfg.NotSentLowWater = 1024
	m := newTestMetrics(t)
	srv := startServerAt(t, st, cfg, clock, WithMetrics(m))

	a := &activeRequestor{testRequestor: dialSmallBuffer(t, srv, 4096), view: make(map[netip.Prefix]leaseState)}
	a.start(0x0e01, nil, oro(codec.OptLQBaseTime), startTime(testNow.Add(-4*time.Hour)))
	a.expect(codec.MsgLeasequeryReply, codec.StatusSuccess)
	eventually(t, 10*time.Second, "catch-up blocked", func() bool {
		return srv.active.ring.Stats().Blocked > 0
	})
	if err := st.Trim(testNow); err != nil {
		t.Fatalf("Trim: %v", err)
	}

	a.readUntil(10*time.Second, "DataMissing", func() bool {
		return len(a.statuses) > 0 && a.statuses[len(a.statuses)-1] == codec.StatusDataMissing
	})
	if last := a.statuses[len(a.statuses)-1]; a.lastBase != codec.DHCPTime(testNow) {
		t.Errorf("DataMissing (%v) base-time %d, want the current time %d", last, a.lastBase, codec.DHCPTime(testNow))
	}
	if len(a.view) >= 4000 {
		t.Errorf("the whole catch-up arrived (%d bindings) although it was blocked before the trim", len(a.view))
	}

	// The catch-up phase is over: live changes, no CatchUpComplete.
	clock.add(time.Second)
	b := activeBinding("2001:db8:3::1/128", duid(10000), "2001:db8:3::1", clock.now())
	seed(t, st, b)
	a.readUntil(10*time.Second, "live change after DataMissing", func() bool { _, ok := a.view[b.Prefix]; return ok })
	for _, s := range a.statuses {
		if s == codec.StatusCatchUpComplete {
			t.Errorf("CatchUpComplete sent after DataMissing ended the catch-up")
		}
	}
	if got := counterValue(m.active.dataMissing.WithLabelValues("data")); got != 1 {
		t.Errorf("DataMissing in LEASEQUERY-DATA counted %v times, want 1", got)
	}
}

// TestActiveCatchUpAfterRestart follows a requestor across a server
// restart: it records the last base-time of its first connection and
// catches up from it after the server and the store were closed and
// reopened from the same directory.
func TestActiveCatchUpAfterRestart(t *testing.T) {
	dir := t.TempDir()
	clock := newTestClock(testNow)
	link := "2001:db8:1::1"

	// First life: a live connection sees two bindings.
	st := openStoreAt(t, dir, clock, 0)
	srv, err := New(activeConfig(), st, WithClock(clock.now), WithLogger(discardLogger()))
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- srv.Run() }()
	<-srv.Ready()
	a := dialActive(t, srv)
	a.start(0x0f01, nil, oro(codec.OptLQBaseTime))
	a.expect(codec.MsgLeasequeryReply, codec.StatusSuccess)
	b1 := activeBinding("2001:db8:1::1/128", duid(1), link, clock.now())
	b2 := activeBinding("2001:db8:1::2/128", duid(2), link, clock.now())
	seed(t, st, b1, b2)
	a.readUntil(5*time.Second, "first bindings", func() bool { return len(a.view) == 2 })
	checkpoint := a.lastBase

	shutdownServer(t, srv, runErr)
	if err := st.Close(); err != nil {
		t.Fatalf("store.Close: %v", err)
	}

	// While no server runs (and after a time jump), the store changes.
	clock.add(20 * time.Minute)
	st = openStoreAt(t, dir, clock, 0)
	closeAtEnd(t, st)
	b2.CLTT, b2.ValidLifetime = clock.now(), 90000
	b1.State = store.StateExpired
	b3 := activeBinding("2001:db8:1::3/128", duid(3), link, clock.now())
	seed(t, st, b1, b2, b3)

	// Second life: the requestor catches up from its checkpoint.
	clock.add(time.Minute)
	srv2 := startServerAt(t, st, activeConfig(), clock)
	a2 := dialActive(t, srv2)
	a2.view = a.view
	a2.start(0x0f02, nil, oro(codec.OptLQBaseTime), uint32Option(codec.OptLQStartTime, checkpoint))
	a2.expect(codec.MsgLeasequeryReply, codec.StatusSuccess)
	a2.readUntil(5*time.Second, "catch-up complete", func() bool {
		return len(a2.statuses) > 0 && a2.statuses[len(a2.statuses)-1] == codec.StatusCatchUpComplete
	})
	if d := diffViews(a2.view, storeView(t, st, false, nil)); len(d) > 0 {
		t.Errorf("view after the restart differs from the store:\n%v", d)
	}
}

// shutdownServer stops a server started without startServer.
func shutdownServer(t testing.TB, srv *Server, runErr <-chan error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-runErr; err != nil {
		t.Fatalf("Run: %v", err)
	}
}
