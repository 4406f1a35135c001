package fanout

import (
	"fmt"
	"net/netip"
	"sync/atomic"
)

// State is the stage of a subscriber: taking updates from the ring, catching
// up, or waiting.
type State uint8

// Subscriber states.
const (
	// StateLive subscribers take updates from the group's walk of the ring.
	StateLive State = iota
	// StateJoining subscribers read ring updates older than the group's walk
	// by themselves until they reach it, then turn live.
	StateJoining
	// StateResync subscribers read the store's last-change index because
	// their cursor is older than anything the ring retains.
	StateResync
	// StateBlocked subscribers wait for Group.Unblock. They hold only their
	// cursor.
	StateBlocked
	// StateFailed subscribers had a store scan fail. They hold only their
	// cursor and the error, and wait for Group.Remove.
	StateFailed
	// StateRemoved subscribers have been removed from their group.
	StateRemoved
)

// Sink receives what a Pump hands out. The server implements it once per
// event loop. Its methods run on the group's goroutine, inside Pump; they may
// call Block, Unblock, Subscribe and Remove on the same group, but not Pump.
type Sink interface {
	// Deliver writes batch, the subscriber's pending updates in Seq order
	// (at most Config.MaxBatch of them), and returns how many leading
	// updates it wrote or queued. blocked reports that the kernel refused
	// more: the subscriber then stops taking updates until Group.Unblock. A
	// count below len(batch) also marks it blocked. batch and its updates
	// are read-only and are valid only until Deliver returns: copy or
	// write what must outlive the call (gnet's Write and Writev copy what
	// the kernel does not take).
	Deliver(s *Subscriber, batch []*Update) (written int, blocked bool)

	// CaughtUp reports that s finished catching up, from the store or from
	// older ring updates, and from now on takes updates as they are
	// published. It is called for new subscribers that started behind
	// Ring.LastSeq (Subscriber.CatchingUp was true) and after every store
	// resync, before any later Deliver for s. An Active Leasequery server
	// sends the LEASEQUERY-DATA with status CatchUpComplete here the first
	// time (RFC 7653 section 9.3).
	CaughtUp(s *Subscriber)

	// Failed reports that a store scan for s failed with err. s is in
	// StateFailed and receives nothing more; the server closes the
	// connection and calls Group.Remove.
	Failed(s *Subscriber, err error)
}

// Source is the store's last-change index as a group reads it to resync a
// subscriber from its cursor.
type Source interface {
	// ChangedSince returns an iterator over the bindings whose last change
	// has a Seq above after, each once in its current state, in increasing
	// Seq order. It may leave out bindings that f does not select; the group
	// applies f to what it yields anyway. It runs on the group's goroutine,
	// so it must not block for long.
	ChangedSince(after uint64, f Filter) Iterator
}

// Iterator is one store scan. The group calls Next and Update up to
// Config.MaxBatch times per Pump and then hands the updates to Sink.Deliver
// in one batch. An Update must therefore stay unchanged at least until the
// Pump that read it returns; allocating one per binding meets this.
type Iterator interface {
	// Next advances to the next binding and reports whether there is one.
	Next() bool
	// Update returns the binding at the current position, encoded as the ring
	// would carry it, with Seq set to its last change.
	Update() *Update
	// SnapshotSeq returns the store's last sequence number as of the scan's
	// start: once Next has returned false and Err is nil, every change up to
	// it was yielded in its current state or superseded by a later change.
	SnapshotSeq() uint64
	// Err returns the error that ended the scan, or nil.
	Err() error
	// Close releases the scan. The group calls it exactly once.
	Close() error
}

// Subscriber is one Active Leasequery subscription: a filter and a cursor.
// Its methods and fields are for the group's goroutine only.
//
// Its cursor is a Seq such that every update up to it has been delivered to
// the subscriber or was not selected by its filter, and no update above it
// has been delivered.
type Subscriber struct {
	group  *Group
	owner  any
	filter Filter
	link   netip.Addr // link restriction, zero for any link
	addr   addr128    // the queried address of a FilterByAddress filter

	state      State
	seq        uint64   // the cursor, or a lower bound of it while live (see Group)
	pos        uint64   // StateJoining: next ring position to read
	prevSeq    uint64   // StateJoining: Seq at pos-1, at most seq
	iter       Iterator // StateResync: open scan, or nil
	catchingUp bool     // CaughtUp is due when the subscriber turns live
	queued     bool     // in the group's work list
	err        error

	slot    int // position in the group's index list for its filter
	subsIdx int // position in Group.subs

	// Pump scratch, meaningful only during one walk.
	mark   uint64 // Seq of the last update collected for this subscriber
	count  int
	offset int
}

// Owner returns the value passed to Group.Subscribe, typically the server's
// connection state.
func (s *Subscriber) Owner() any { return s.owner }

// Filter returns the subscriber's filter.
func (s *Subscriber) Filter() Filter { return s.filter }

// State returns the subscriber's stage.
func (s *Subscriber) State() State { return s.state }

// Seq returns the subscriber's cursor: every update with a Seq up to it has
// been delivered to it or was not selected by its filter, and none above.
func (s *Subscriber) Seq() uint64 {
	if s.state == StateLive && s.group.walkedSeq > s.seq {
		return s.group.walkedSeq
	}
	return s.seq
}

// CatchingUp reports whether Sink.CaughtUp is still due for the subscriber.
// Right after Subscribe it is false exactly when there was nothing to catch
// up on.
func (s *Subscriber) CatchingUp() bool { return s.catchingUp }

// Err returns the error of a StateFailed subscriber, or nil.
func (s *Subscriber) Err() error { return s.err }

// matches reports whether the subscriber's filter selects u.
func (s *Subscriber) matches(u *Update) bool {
	if s.link.IsValid() && !sameAddr(u.Link, s.link) {
		return false
	}
	switch s.filter.Key.Kind {
	case FilterAll:
		return true
	case FilterByAddress:
		if !u.Prefix.IsValid() {
			return false
		}
		lo, hi := prefixRange(u.Prefix)
		return !s.addr.less(lo) && !hi.less(s.addr)
	}
	return s.filter.Match(u)
}

// closeIter closes an open store scan, counting a failed close.
func (s *Subscriber) closeIter() {
	if s.iter == nil {
		return
	}
	if err := s.iter.Close(); err != nil {
		s.group.stats.resyncErrors.Add(1)
	}
	s.iter = nil
}

// Group is the set of subscribers of one event loop, with the index that
// finds them by filter key and the pump that hands them ring updates.
// Everything but Stats runs on the group's own goroutine (the event loop);
// the producer only touches the atomic wake flag and live count.
//
// Invariants:
//
//  1. Cursor: every update with a Seq up to a subscriber's cursor has been
//     delivered to it or was not selected by its filter, and no update above
//     it has been delivered. The cursor of a live subscriber is
//     max(s.seq, walkedSeq); of any other, s.seq. A Sink that takes only
//     part of a batch moves the cursor to the last update it took.
//  2. Walk: every live subscriber has been offered every ring update at a
//     position below walkPos, and walkedSeq is the Seq at walkPos-1. One
//     shared walk advances every live cursor at once, so a pass costs the
//     entries walked plus the subscribers they match, not all subscribers.
//  3. Order: an update reaches a subscriber only when its Seq is above the
//     subscriber's cursor, which then moves to it, so each stream is in
//     strictly increasing Seq order without duplicates.
//  4. Joining: a subscriber turns live only with a cursor at or above
//     walkedSeq. One behind the walk first reads the ring positions between
//     its cursor and the walk by itself (StateJoining).
//  5. Handover: a subscriber leaves a store resync only when the ring still
//     retains every update above its cursor (Ring.seek). The store scan
//     yields each binding in its current state in Seq order, so switching to
//     the ring at any cursor loses no binding's latest state. A lap found
//     later sends it back to the store from the same cursor.
//  6. Memory: a blocked or failed subscriber holds only its cursor; a
//     resyncing one also holds one open store scan; a joining one a ring
//     position. No subscriber has a queue, and lag costs no memory.
//  7. Wake: a caller of wake first sets scheduled, and Pump clears it before
//     it loads the ring's head, so an update published during a Pump causes
//     another wake and none is lost.
//
// Rejected alternatives: a queue or coalescing map per subscriber grows with
// its lag; a goroutine or channel per subscriber costs memory and scheduling
// per update; testing every subscriber against every update costs the
// number of subscribers per update; moving every filtered subscriber's own
// cursor on each pass costs the same, which the shared walkedSeq avoids.
type Group struct {
	ring   *Ring
	cfg    Config
	source Source
	wake   func()

	scheduled atomic.Bool  // invariant 7
	liveCount atomic.Int32 // copy of live for the producer
	stats     groupStats

	closed    bool
	live      int
	delivered uint64 // updates delivered during the running Pump, not yet in stats
	walkPos   uint64 // invariant 2
	walkedSeq uint64 // invariant 2

	subs  []*Subscriber // every subscriber, in no order
	index index

	// work lists subscribers in StateJoining and StateResync; Pump swaps it
	// with workSpare so that a Sink may add to it while Pump walks it.
	work, workSpare, workKept []*Subscriber

	// Walk scratch, kept between passes so that a pass does not allocate.
	window  []*Update
	batch   []*Update
	flat    []*Update
	pairs   []pending
	touched []*Subscriber
	scratch []*Subscriber
}

// pending is one update collected for one filtered subscriber during a walk.
type pending struct {
	s *Subscriber
	u *Update
}

func newGroup(r *Ring, src Source, wake func()) *Group {
	return &Group{ring: r, cfg: r.cfg, source: src, wake: wake}
}

// Subscribe adds a subscriber with filter f whose cursor starts at after: it
// receives every selected update with a larger Seq. A subscription for
// changes from now on passes Ring.LastSeq. A catch-up from a start time
// passes the Seq before the first change at or after that time. A cursor the
// ring still covers is served from the ring, an older one from the store
// (Sink.CaughtUp follows either catch-up). owner is returned by
// Subscriber.Owner. Subscribe schedules a Pump through the wake function.
func (g *Group) Subscribe(f Filter, after uint64, owner any) (*Subscriber, error) {
	if g.closed {
		return nil, ErrGroupClosed
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}

	s := &Subscriber{group: g, owner: owner, filter: f, seq: after}
	if restrictsLink(f.Link) {
		s.link = f.Link
	}
	if f.Key.Kind == FilterByAddress {
		s.addr = toAddr128(addrOf(f.Key.Value))
	}
	s.catchingUp = after < g.ring.LastSeq()

	s.subsIdx = len(g.subs)
	g.subs = append(g.subs, s)
	g.index.add(s)
	g.start(s)
	return s, nil
}

// Remove drops s from the group and closes its store scan, if any. It is a
// no-op for a subscriber already removed or of another group.
func (g *Group) Remove(s *Subscriber) {
	if s.group != g || s.state == StateRemoved {
		return
	}
	if s.state == StateLive {
		g.setLive(-1)
	}
	s.closeIter()
	s.state = StateRemoved
	g.index.remove(s)

	last := len(g.subs) - 1
	moved := g.subs[last]
	g.subs[s.subsIdx] = moved
	moved.subsIdx = s.subsIdx
	g.subs[last] = nil
	g.subs = g.subs[:last]
}

// Block marks s blocked: the kernel refused a write, so s takes no updates
// until Unblock. Its cursor stays where the last accepted update left it,
// and an open store scan is closed. The server calls it when a write it made
// outside Sink.Deliver left bytes buffered; Deliver reports the same through
// its results. It is a no-op for a subscriber that is not live or catching
// up, or of another group.
func (g *Group) Block(s *Subscriber) {
	if s.group != g {
		return
	}
	switch s.state {
	case StateLive:
		if g.walkedSeq > s.seq {
			s.seq = g.walkedSeq
		}
		g.setLive(-1)
	case StateJoining, StateResync:
		s.closeIter()
	default:
		return
	}
	s.state = StateBlocked
	g.stats.blocked.Add(1)
}

// Unblock resumes a blocked subscriber once its connection is writable
// again: from the ring when the ring still covers its cursor, else from the
// store (Sink.CaughtUp follows). It schedules a Pump through the wake
// function and is a no-op for a subscriber that is not blocked.
func (g *Group) Unblock(s *Subscriber) {
	if s.state != StateBlocked || s.group != g {
		return
	}
	g.start(s)
}

// Close removes every subscriber, closing their store scans, and unregisters
// the group from the ring so that it is no longer woken.
func (g *Group) Close() {
	if g.closed {
		return
	}
	for len(g.subs) > 0 {
		g.Remove(g.subs[len(g.subs)-1])
	}
	g.closed = true
	g.ring.removeGroup(g)
}

// Len returns the number of subscribers.
func (g *Group) Len() int { return len(g.subs) }

// Stats returns the group's counters. Safe for concurrent use.
func (g *Group) Stats() Stats { return g.stats.snapshot() }

// start positions s at its cursor: in the ring when the ring covers it, else
// in a store resync. It queues s for the next Pump and wakes the group.
func (g *Group) start(s *Subscriber) {
	if pos, prev, ok := g.ring.seek(s.seq); ok {
		s.state = StateJoining
		s.pos, s.prevSeq = pos, prev
	} else {
		s.state = StateResync
		s.catchingUp = true
	}
	g.enqueue(s)
	g.requestWake()
}

// lap sends s, whose next ring update was overwritten, to a store resync.
func (g *Group) lap(s *Subscriber) {
	s.state = StateResync
	s.catchingUp = true
	g.stats.lapped.Add(1)
	g.enqueue(s)
}

// goLive turns s live and reports a finished catch-up.
func (g *Group) goLive(sink Sink, s *Subscriber) {
	s.state = StateLive
	g.setLive(+1)
	if s.catchingUp {
		s.catchingUp = false
		sink.CaughtUp(s)
	}
}

// fail stops s after a store scan error.
func (g *Group) fail(sink Sink, s *Subscriber, err error) {
	s.state = StateFailed
	s.err = fmt.Errorf("fanout: store scan after Seq %d: %w", s.seq, err)
	g.stats.resyncErrors.Add(1)
	sink.Failed(s, s.err)
}

func (g *Group) setLive(delta int) {
	g.live += delta
	g.liveCount.Store(int32(g.live))
}

func (g *Group) enqueue(s *Subscriber) {
	if !s.queued {
		s.queued = true
		g.work = append(g.work, s)
	}
}

// notify wakes the group from Publish when it has live subscribers and is
// not already scheduled.
//
// hot path: once per publish per group.
func (g *Group) notify() {
	if g.liveCount.Load() == 0 || g.scheduled.Load() {
		return
	}
	g.requestWake()
}

// requestWake calls wake unless a wake is already pending (invariant 7).
func (g *Group) requestWake() {
	if g.scheduled.CompareAndSwap(false, true) {
		g.stats.wakes.Add(1)
		g.wake()
	}
}
