package fanout

import (
	"errors"
	"slices"
	"testing"
)

// checkLatest fails the test unless s has received the current version of
// every binding its filter selects that changed after Seq from.
func checkLatest(t *testing.T, fs *fakeStore, sink *recordingSink, s *Subscriber, from uint64) {
	t.Helper()
	st := sink.stream(s)
	for _, b := range fs.current() {
		if b.seq <= from || !s.Filter().Match(b.update()) {
			continue
		}
		if got := st.latest[b.id]; got != b.version {
			t.Errorf("subscriber %v: binding %d at version %d, want %d", s.Owner(), b.id, got, b.version)
		}
	}
}

func TestPartialWriteBlocks(t *testing.T) {
	r, fs, g, _ := newTestGroup(t, Config{Capacity: 64})
	sink := newRecordingSink(t)
	s := mustSubscribe(t, g, Filter{}, r.LastSeq(), "all")
	pumpUntilIdle(t, g, sink)

	sink.policy = func(_ *Subscriber, batch []*Update) (int, bool) { return 2, false }
	for id := range 5 {
		fs.commit(id, 0, 0)
	}
	fs.publish(r)
	pumpUntilIdle(t, g, sink)

	if s.State() != StateBlocked || s.Seq() != 2 {
		t.Fatalf("after writing 2 of 5: State %v, Seq %d; want blocked, 2", s.State(), s.Seq())
	}

	sink.policy = nil
	g.Unblock(s)
	pumpUntilIdle(t, g, sink)
	if got := sink.stream(s).seqs; !slices.Equal(got, []uint64{1, 2, 3, 4, 5}) {
		t.Errorf("received %v, want [1 2 3 4 5]", got)
	}
	if s.State() != StateLive {
		t.Errorf("State after resuming = %v, want live", s.State())
	}
	if fs.scans != 0 {
		t.Errorf("%d store scans, want 0: the ring still covered the cursor", fs.scans)
	}
	if got := g.Stats().Blocked; got != 1 {
		t.Errorf("Stats.Blocked = %d, want 1", got)
	}
}

func TestBlockedReportedWithFullWrite(t *testing.T) {
	r, fs, g, _ := newTestGroup(t, Config{Capacity: 64})
	sink := newRecordingSink(t)
	s := mustSubscribe(t, g, Filter{Key: RelayIDKey(relayID(1))}, r.LastSeq(), "relay 1")
	pumpUntilIdle(t, g, sink)

	// The whole batch went into the socket's buffer, which is now full.
	sink.policy = func(_ *Subscriber, batch []*Update) (int, bool) { return len(batch), true }
	fs.commit(1, 1, 0)
	fs.commit(2, 2, 0) // not selected; the cursor still passes it
	fs.publish(r)
	pumpUntilIdle(t, g, sink)

	if s.State() != StateBlocked || s.Seq() != 2 {
		t.Errorf("State, Seq = %v, %d; want blocked, 2", s.State(), s.Seq())
	}
}

// TestBlockedConstantMemory checks that a blocked subscriber costs nothing
// while the ring laps it many times, and then catches up from the store
// with one update per changed binding, in its latest state.
func TestBlockedConstantMemory(t *testing.T) {
	const capacity = 16
	r, fs, g, _ := newTestGroup(t, Config{Capacity: capacity})
	sink := newRecordingSink(t)
	live := mustSubscribe(t, g, Filter{}, r.LastSeq(), "live")
	s := mustSubscribe(t, g, Filter{}, r.LastSeq(), "blocked")
	pumpUntilIdle(t, g, sink)
	g.Block(s)

	// Prepare 10 rings' worth of changes to 8 bindings, then publish and
	// pump them while measuring allocations.
	var updates []*Update
	for i := range 10 * capacity {
		updates = append(updates, fs.commit(i%8, 0, 0))
	}
	fs.pending = nil
	next := 0
	allocs := testing.AllocsPerRun(len(updates)-1, func() {
		r.Publish(updates[next])
		next++
		g.Pump(sink)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per publish and pump with a blocked subscriber, want 0", allocs)
	}
	if s.iter != nil || s.queued || s.State() != StateBlocked || s.Seq() != 0 {
		t.Errorf("blocked subscriber holds iter %v, queued %v, state %v, Seq %d; want nil, false, blocked, 0",
			s.iter, s.queued, s.State(), s.Seq())
	}
	if len(sink.stream(s).seqs) != 0 {
		t.Errorf("blocked subscriber received %d updates", len(sink.stream(s).seqs))
	}

	g.Unblock(s)
	if s.State() != StateResync {
		t.Fatalf("State after Unblock = %v, want resync: the ring lapped the cursor", s.State())
	}
	pumpUntilIdle(t, g, sink)

	st := sink.stream(s)
	if len(st.seqs) != 8 {
		t.Errorf("catch-up delivered %d updates, want 8 (one per binding)", len(st.seqs))
	}
	checkLatest(t, fs, sink, s, 0)
	checkLatest(t, fs, sink, live, 0)
	if st.caughtUp != 1 || s.State() != StateLive {
		t.Errorf("CaughtUp calls %d, State %v; want 1, live", st.caughtUp, s.State())
	}
	if got := g.Stats().Resyncs; got != 1 {
		t.Errorf("Stats.Resyncs = %d, want 1", got)
	}
}

// TestResyncHandover laps a live subscriber, then lets the store scan run
// ahead of the ring (commits visible but not yet published) and checks that
// the switch back to the ring neither repeats nor skips a Seq.
func TestResyncHandover(t *testing.T) {
	const capacity = 8
	r, fs, g, _ := newTestGroup(t, Config{Capacity: capacity})
	sink := newRecordingSink(t)
	s := mustSubscribe(t, g, Filter{}, r.LastSeq(), "all")
	pumpUntilIdle(t, g, sink)

	// Lap the subscriber: three rings published without a pump.
	for i := range 3 * capacity {
		fs.commit(i%5, 0, 0)
	}
	fs.publish(r)
	// Commit more that the scan will see before the ring does.
	for i := range 3 {
		fs.commit(10+i, 0, 0)
	}

	g.Pump(sink)
	if s.State() != StateResync || g.Stats().Lapped != 1 {
		t.Fatalf("after the lap: State %v, Lapped %d; want resync, 1", s.State(), g.Stats().Lapped)
	}
	pumpUntilIdle(t, g, sink)
	if s.State() != StateLive {
		t.Fatalf("State after the scan = %v, want live", s.State())
	}
	ahead := s.Seq()
	if ahead != fs.lastSeq() {
		t.Errorf("cursor after the scan = %d, want the store's last Seq %d", ahead, fs.lastSeq())
	}

	// The ring now publishes what the scan already delivered, then more.
	fs.publish(r)
	fs.commit(20, 0, 0)
	fs.publish(r)
	pumpUntilIdle(t, g, sink)

	st := sink.stream(s)
	if n := len(st.seqs); st.seqs[n-1] != fs.lastSeq() {
		t.Errorf("last delivered Seq %d, want %d", st.seqs[n-1], fs.lastSeq())
	}
	checkLatest(t, fs, sink, s, 0)
	if st.caughtUp != 1 {
		t.Errorf("CaughtUp called %d times, want 1", st.caughtUp)
	}
}

// TestJoiningBehindWalk resumes a subscriber whose cursor is older than the
// group's walk but still in the ring: it must read the gap by itself before
// it joins the walk.
func TestJoiningBehindWalk(t *testing.T) {
	r, fs, g, _ := newTestGroup(t, Config{Capacity: 64})
	sink := newRecordingSink(t)
	other := mustSubscribe(t, g, Filter{Key: RelayIDKey(relayID(1))}, r.LastSeq(), "other")
	s := mustSubscribe(t, g, Filter{Key: RelayIDKey(relayID(1))}, r.LastSeq(), "resumed")
	pumpUntilIdle(t, g, sink)

	g.Block(s)
	for id := range 6 {
		fs.commit(id, id%2, 0)
	}
	fs.publish(r)
	pumpUntilIdle(t, g, sink) // the walk moves on without s

	g.Unblock(s)
	if s.State() != StateJoining {
		t.Fatalf("State after Unblock = %v, want joining", s.State())
	}
	fs.commit(7, 1, 0)
	fs.publish(r)
	pumpUntilIdle(t, g, sink)

	want := []uint64{2, 4, 6, 7}
	if got := sink.stream(s).seqs; !slices.Equal(got, want) {
		t.Errorf("resumed subscriber received %v, want %v", got, want)
	}
	if got := sink.stream(other).seqs; !slices.Equal(got, want) {
		t.Errorf("other subscriber received %v, want %v", got, want)
	}
	if fs.scans != 0 {
		t.Errorf("%d store scans, want 0", fs.scans)
	}
}

// TestSubscribeCatchUp subscribes from an old cursor. CaughtUp must come
// after the catch-up and before any later update.
func TestSubscribeCatchUp(t *testing.T) {
	tests := []struct {
		name     string
		capacity int
		scans    int
	}{
		{"from the ring", 64, 0},
		{"from the store", 4, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, fs, g, _ := newTestGroup(t, Config{Capacity: tt.capacity})
			sink := newRecordingSink(t)
			live := mustSubscribe(t, g, Filter{}, r.LastSeq(), "live")
			pumpUntilIdle(t, g, sink)
			for id := range 10 {
				fs.commit(id, 0, 0)
				fs.publish(r)
				pumpUntilIdle(t, g, sink)
			}

			s := mustSubscribe(t, g, Filter{}, 3, "catch-up")
			if !s.CatchingUp() {
				t.Errorf("CatchingUp = false for a cursor behind the last Seq")
			}
			sink.order = nil
			pumpUntilIdle(t, g, sink)
			fs.commit(11, 0, 0)
			fs.publish(r)
			pumpUntilIdle(t, g, sink)

			want := []uint64{4, 5, 6, 7, 8, 9, 10, 11}
			if got := sink.stream(s).seqs; !slices.Equal(got, want) {
				t.Errorf("received %v, want %v", got, want)
			}
			if i := slices.Index(sink.order, "caughtup"); i < 0 || i == len(sink.order)-1 {
				t.Errorf("events %v: want CaughtUp before the last delivery", sink.order)
			}
			if fs.scans != tt.scans {
				t.Errorf("%d store scans, want %d", fs.scans, tt.scans)
			}
			checkLatest(t, fs, sink, live, 0)
		})
	}
}

func TestResyncScanFails(t *testing.T) {
	r, fs, g, _ := newTestGroup(t, Config{Capacity: 4})
	sink := newRecordingSink(t)
	for id := range 10 {
		fs.commit(id, 0, 0)
	}
	fs.publish(r)

	errDisk := errors.New("disk on fire")
	fs.failNext = errDisk
	s := mustSubscribe(t, g, Filter{}, 0, "doomed")
	pumpUntilIdle(t, g, sink)

	if s.State() != StateFailed || !errors.Is(s.Err(), errDisk) {
		t.Errorf("State, Err = %v, %v; want failed, %v", s.State(), s.Err(), errDisk)
	}
	if !errors.Is(sink.stream(s).failed, errDisk) {
		t.Errorf("Sink.Failed got %v, want %v", sink.stream(s).failed, errDisk)
	}
	if got := g.Stats().ResyncErrors; got != 1 {
		t.Errorf("Stats.ResyncErrors = %d, want 1", got)
	}
	g.Remove(s)
	if g.Len() != 0 {
		t.Errorf("Len = %d after removing the failed subscriber", g.Len())
	}
}

// TestResyncBudget checks that catch-up work is spread over several pumps
// and that every catching-up subscriber makes progress.
func TestResyncBudget(t *testing.T) {
	r, fs, g, _ := newTestGroup(t, Config{Capacity: 4, MaxBatch: 4, ResyncBudget: 6})
	sink := newRecordingSink(t)
	for id := range 40 {
		fs.commit(id, 0, 0)
	}
	fs.publish(r)

	subs := []*Subscriber{
		mustSubscribe(t, g, Filter{}, 0, "a"),
		mustSubscribe(t, g, Filter{}, 0, "b"),
		mustSubscribe(t, g, Filter{}, 0, "c"),
	}
	pumps := 0
	for g.scheduled.Load() {
		g.Pump(sink)
		pumps++
		if pumps > 1000 {
			t.Fatalf("catch-up did not finish")
		}
	}
	if pumps < 3*40/6 {
		t.Errorf("catch-up of 3 x 40 bindings took %d pumps with a budget of 6 reads each", pumps)
	}
	for _, s := range subs {
		if n := len(sink.stream(s).seqs); n != 40 {
			t.Errorf("%v received %d updates, want 40", s.Owner(), n)
		}
	}
}

func TestPumpZeroAllocs(t *testing.T) {
	r, fs, g, _ := newTestGroup(t, Config{Capacity: 256})
	sink := nopSink{}
	for i := range 50 {
		mustSubscribe(t, g, Filter{}, r.LastSeq(), i)
		mustSubscribe(t, g, Filter{Key: RelayIDKey(relayID(i))}, r.LastSeq(), i)
		mustSubscribe(t, g, Filter{Key: AddressKey(prefixFor(i).Addr())}, r.LastSeq(), i)
	}
	pumpUntilIdle(t, g, sink)

	var updates []*Update
	for i := range 1000 {
		updates = append(updates, fs.commit(i%50, i%50, 0))
	}
	fs.pending = nil
	// Warm the scratch slices.
	r.Publish(updates[:10]...)
	g.Pump(sink)

	next := 10
	allocs := testing.AllocsPerRun(500, func() {
		r.Publish(updates[next])
		next++
		g.Pump(sink)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per publish and pump, want 0", allocs)
	}
}

// nopSink accepts everything.
type nopSink struct{}

func (nopSink) Deliver(_ *Subscriber, batch []*Update) (int, bool) { return len(batch), false }
func (nopSink) CaughtUp(*Subscriber)                               {}
func (nopSink) Failed(*Subscriber, error)                          {}
