package fanout

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// Ring is the fixed-size, single-producer, multi-consumer ring that carries
// committed binding updates from the store's writer to every event loop.
//
// The ring numbers the updates it publishes with positions 1, 2, 3, ... of
// its own, independent of Seq, so that gaps in the store's sequence numbers
// cost nothing. Position p lives in slot p mod Capacity. Consumers are Groups,
// one per event loop; each walks positions in order and never writes to the
// ring.
//
// Invariants:
//
//  1. Only the producer writes slots, head and lastSeq. Publish is not safe for
//     concurrent use, and a second concurrent caller panics.
//  2. A slot's stamp is the position of the update it holds, or 0 while the
//     producer rewrites it. The producer stores the stamp 0, then the update
//     pointer, then the new position.
//  3. head is the highest position whose slot has been completely written. It
//     is stored after the slots it covers and only grows.
//  4. A consumer reads position p <= head by loading the stamp, the update and
//     the stamp again. If both stamps equal p, the update is the one published
//     at p, because a rewrite in between stores 0 first (invariant 2).
//     Otherwise position p has been overwritten and the consumer is lapped.
//     It can not read a torn or stale slot, only detect that it is too late.
//  5. Seq strictly increases with position (Publish panics otherwise), so the
//     position of a sequence number among the retained ones is found by
//     binary search (seek).
//  6. Every update with Seq greater than the start sequence number passed to
//     NewRing is published, in Seq order, so once the ring retains an update
//     with Seq <= s, it retains every published update after s.
//  7. The ring never writes to an Update. A slot keeps its Update reachable
//     until the slot is overwritten.
//
// Rejected alternatives: slots indexed by Seq mod Capacity cannot tell a gap
// in Seq from a lap; an atomic pointer per slot to a ring-allocated
// {position, update} pair costs an allocation per publish; a mutex or RWMutex
// makes the store's writer wait for event loops; a channel per connection
// costs memory and a send per connection per update, and its producer must
// block or drop when the channel is full.
type Ring struct {
	cfg      Config
	mask     uint64
	slots    []slot
	startSeq uint64

	head       atomic.Uint64 // invariant 3
	lastSeq    atomic.Uint64 // Seq at head, or startSeq before the first publish
	publishing atomic.Bool   // invariant 1: set while a Publish call runs

	// pos and last are the producer's copies of head and lastSeq.
	pos  uint64
	last uint64

	mu      sync.Mutex               // serializes changes to groups and retired
	groups  atomic.Pointer[[]*Group] // copy on write, read by Publish without locks
	retired Stats                    // counters of closed groups
}

// slot is one ring cell; see invariants 2 and 4 of Ring.
type slot struct {
	stamp  atomic.Uint64
	update atomic.Pointer[Update]
}

// NewRing returns an empty ring sized by cfg. startSeq is the store's last
// sequence number at the moment the producer starts publishing: every update
// the ring will carry has a larger Seq. Read it from the store after
// registering the publishing callback and before the first commit, so that no
// commit falls between the two.
func NewRing(cfg Config, startSeq uint64) (*Ring, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()

	r := &Ring{
		cfg:      cfg,
		mask:     uint64(cfg.Capacity - 1),
		slots:    make([]slot, cfg.Capacity),
		startSeq: startSeq,
		last:     startSeq,
	}
	r.lastSeq.Store(startSeq)
	return r, nil
}

// Capacity returns the number of updates the ring retains.
func (r *Ring) Capacity() int { return r.cfg.Capacity }

// LastSeq returns the Seq of the last published update, or the start sequence
// number before the first publish. Safe for concurrent use. A subscription
// that wants only changes from now on starts after LastSeq.
func (r *Ring) LastSeq() uint64 { return r.lastSeq.Load() }

// Publish appends updates, which must have strictly increasing Seq values
// above every earlier one, and wakes each Group with live subscribers that is
// not already scheduled. It never blocks on consumers and does not allocate.
// The ring keeps the pointers: callers must not modify the updates afterwards.
//
// Publish must be called from one goroutine at a time (the store's writer,
// after the commit is synced). It panics on a Seq that does not increase and
// on concurrent calls, because either would break what every consumer relies
// on.
//
// hot path: once per store commit group.
func (r *Ring) Publish(updates ...*Update) {
	if len(updates) == 0 {
		return
	}
	if !r.publishing.CompareAndSwap(false, true) {
		panic("fanout: concurrent Ring.Publish calls; the ring has a single producer")
	}

	pos, last := r.pos, r.last
	for _, u := range updates {
		if u.Seq <= last {
			r.publishing.Store(false)
			panicSeqOrder(u.Seq, last)
		}
		pos++
		last = u.Seq

		// Invariant 2: a reader that overlaps this rewrite sees stamp 0 or
		// the new position, never the old position next to the new update.
		s := &r.slots[pos&r.mask]
		s.stamp.Store(0)
		s.update.Store(u)
		s.stamp.Store(pos)
	}
	r.pos, r.last = pos, last
	r.head.Store(pos)
	r.lastSeq.Store(last)
	r.publishing.Store(false)

	if gs := r.groups.Load(); gs != nil {
		for _, g := range *gs {
			g.notify()
		}
	}
}

func panicSeqOrder(seq, last uint64) {
	panic(fmt.Sprintf("fanout: published Seq %d after Seq %d; the store must publish in strictly increasing Seq order", seq, last))
}

// read returns the update at position pos, which must be at most a head value
// the caller loaded. ok is false when pos has been overwritten (invariant 4).
//
// hot path: once per walked position per group.
func (r *Ring) read(pos uint64) (u *Update, ok bool) {
	s := &r.slots[pos&r.mask]
	if s.stamp.Load() != pos {
		return nil, false
	}
	u = s.update.Load()
	if s.stamp.Load() != pos {
		return nil, false
	}
	return u, true
}

// seek returns the position of the first update with a Seq above seq and
// the Seq at the position before it (the start sequence number before
// position 1). ok reports whether the ring still retains every published
// update above seq, so that a consumer positioned there misses none. pos may
// be head+1, the next position to be published. A concurrent lap during the
// search reports false, which only sends the caller to the store.
func (r *Ring) seek(seq uint64) (pos, prevSeq uint64, ok bool) {
	head := r.head.Load()
	if head == 0 {
		return 1, r.startSeq, seq >= r.startSeq
	}
	top, ok := r.read(head)
	if !ok {
		return 0, 0, false
	}
	if top.Seq <= seq {
		return head + 1, top.Seq, true
	}

	// Seq grows by at least one per position, so the last position holding a
	// Seq <= seq is at least head-(top.Seq-seq). With consecutive Seq values
	// the first probe lands on it, and probes stay clear of the oldest slots,
	// which the producer may be rewriting.
	low := uint64(1)
	if head > uint64(r.cfg.Capacity) {
		low = head - uint64(r.cfg.Capacity) + 1
	}
	if d := top.Seq - seq; head > d && head-d > low {
		low = head - d
	}
	bottom, ok := r.read(low)
	if !ok {
		return 0, 0, false
	}
	if bottom.Seq > seq {
		// No retained update is at or below seq. Only an unwrapped ring
		// whose start is at or below seq still covers it (invariant 6).
		return low, r.startSeq, low == 1 && seq >= r.startSeq
	}

	// Binary search keeping seq(low) <= seq < seq(high).
	high, lowSeq := head, bottom.Seq
	for high-low > 1 {
		mid := low + (high-low)/2
		u, ok := r.read(mid)
		if !ok {
			return 0, 0, false
		}
		if u.Seq <= seq {
			low, lowSeq = mid, u.Seq
		} else {
			high = mid
		}
	}
	return high, lowSeq, true
}

// NewGroup registers a consumer group, normally one per event loop, and
// returns it. src is the store scan that lapped and unblocked subscribers
// resync from. wake is called, at most once until the group's next Pump
// starts, when the group has work: from Publish on the producer's goroutine,
// and from Subscribe, Unblock and Pump on the group's own goroutine. It must
// not block and must not call Pump itself: it arranges for Pump to run soon
// on the group's goroutine, for example with gnet's EventLoop.Execute. Safe
// for concurrent use.
func (r *Ring) NewGroup(src Source, wake func()) (*Group, error) {
	if src == nil || wake == nil {
		return nil, fmt.Errorf("%w: NewGroup needs a Source and a wake function", ErrNilArgument)
	}
	g := newGroup(r, src, wake)

	r.mu.Lock()
	defer r.mu.Unlock()
	var gs []*Group
	if old := r.groups.Load(); old != nil {
		gs = append(gs, *old...)
	}
	gs = append(gs, g)
	r.groups.Store(&gs)
	return g, nil
}

// removeGroup unregisters g and keeps its counters in the ring's totals.
func (r *Ring) removeGroup(g *Group) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.groups.Load()
	if old == nil {
		return
	}
	gs := make([]*Group, 0, len(*old))
	for _, x := range *old {
		if x != g {
			gs = append(gs, x)
		}
	}
	r.groups.Store(&gs)
	r.retired.add(g.Stats())
}

// Stats returns the ring's counters summed over its groups, closed ones
// included. Safe for concurrent use; the fields are read one by one, so a
// snapshot taken during a Pump may be off by that Pump's work.
func (r *Ring) Stats() Stats {
	r.mu.Lock()
	st := r.retired
	r.mu.Unlock()

	if gs := r.groups.Load(); gs != nil {
		for _, g := range *gs {
			st.add(g.Stats())
		}
	}
	st.Published = r.head.Load() // positions count publishes
	return st
}
