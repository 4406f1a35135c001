package fanout

import "slices"

// Pump hands every subscriber with pending updates its batch through sink,
// then schedules another Pump through the wake function if work remains.
// Call it on the group's goroutine after each call of the wake function.
//
// One Pump first advances subscribers that are catching up (store scans and
// ring updates older than the walk, within Config.ResyncBudget reads), then
// walks at most Config.MaxBatch new ring updates once for all live
// subscribers: each update goes to every unfiltered subscriber and to the
// subscribers indexed under its keys. Each subscriber's updates from the walk
// reach the sink in one Deliver call.
//
// hot path: once per wake per event loop.
func (g *Group) Pump(sink Sink) {
	// Invariant 7: clear the flag before loading head, so that an update
	// published after the load wakes the group again.
	g.scheduled.Store(false)
	if g.closed {
		return
	}
	head := g.ring.head.Load()

	g.runWork(sink)
	g.walk(sink, head)
	g.stats.delivered.Add(g.delivered)
	g.delivered = 0

	if len(g.work) > 0 || (g.live > 0 && g.ring.head.Load() >= g.walkPos) {
		g.requestWake()
	}
}

// runWork advances the subscribers in StateResync and StateJoining, starting
// where the previous Pump ran out of budget.
func (g *Group) runWork(sink Sink) {
	if len(g.work) == 0 {
		return
	}
	list := g.work
	g.work = g.workSpare[:0]
	kept := g.workKept[:0]

	budget := g.cfg.ResyncBudget
	i := 0
	for ; i < len(list) && budget > 0; i++ {
		s := list[i]
		if s.state == StateResync {
			budget -= g.resyncStep(sink, s, budget)
		}
		if s.state == StateJoining && budget > 0 {
			budget -= g.joinStep(sink, s, budget)
		}
		if s.state == StateResync || s.state == StateJoining {
			kept = append(kept, s)
		} else {
			s.queued = false
		}
	}

	// Next time, subscribers a Sink queued during this loop and those the
	// budget did not reach go before those that made progress.
	g.work = append(g.work, list[i:]...)
	g.work = append(g.work, kept...)
	clear(list)
	g.workSpare = list[:0]
	clear(kept)
	g.workKept = kept[:0]
}

// resyncStep reads the next part of s's store scan, at most budget bindings
// and Config.MaxBatch selected ones, delivers them, and hands s over to the
// ring once the ring covers its cursor (invariant 5). It returns the number
// of bindings read.
func (g *Group) resyncStep(sink Sink, s *Subscriber, budget int) (reads int) {
	if s.iter == nil {
		s.iter = g.source.ChangedSince(s.seq, s.filter)
		g.stats.resyncs.Add(1)
	}
	it := s.iter

	// Read a batch. last is the Seq through which the scan has been
	// considered, selected or not.
	batch := g.batch[:0]
	last := s.seq
	exhausted := false
	for len(batch) < g.cfg.MaxBatch && reads < budget {
		if !it.Next() {
			exhausted = true
			break
		}
		reads++
		u := it.Update()
		if u == nil || u.Seq <= last {
			continue // a scan that goes backwards would break invariant 3
		}
		last = u.Seq
		if s.matches(u) {
			batch = append(batch, u)
		}
	}
	g.batch = batch
	defer clear(batch)

	if exhausted {
		err := it.Err()
		snapshot := it.SnapshotSeq()
		if cerr := it.Close(); err == nil {
			err = cerr
		}
		s.iter = nil
		if err != nil {
			g.fail(sink, s, err)
			return reads
		}
		last = max(last, snapshot)
	}

	g.handOver(sink, s, batch, last)
	if s.state != StateResync {
		return reads // blocked or removed by the sink
	}

	if pos, prev, ok := g.ring.seek(s.seq); ok {
		s.closeIter()
		s.state = StateJoining
		s.pos, s.prevSeq = pos, prev
	}
	return reads
}

// joinStep moves s, whose cursor the ring covers, into the walk: at once when
// its cursor is at or above walkedSeq, else after it has read the ring
// positions up to the walk (invariant 4). It returns the positions read.
func (g *Group) joinStep(sink Sink, s *Subscriber, budget int) (reads int) {
	if g.live == 0 {
		// No live subscriber depends on the walk, so it restarts at s.
		// walkedSeq must be the Seq at walkPos-1, not the cursor of s,
		// which a store scan may have moved past the ring's head.
		g.walkPos, g.walkedSeq = s.pos, s.prevSeq
		g.goLive(sink, s)
		return 0
	}
	if s.seq >= g.walkedSeq {
		g.goLive(sink, s)
		return 0
	}

	// Invariant 4 and s.seq < walkedSeq give s.pos < walkPos.
	batch := g.batch[:0]
	pos, prev := s.pos, s.prevSeq
	lapped := false
	for pos < g.walkPos && len(batch) < g.cfg.MaxBatch && reads < budget {
		u, ok := g.ring.read(pos)
		if !ok {
			lapped = true
			break
		}
		pos++
		reads++
		prev = u.Seq
		if u.Seq > s.seq && s.matches(u) {
			batch = append(batch, u)
		}
	}
	g.batch = batch
	defer clear(batch)

	s.pos, s.prevSeq = pos, prev
	last := max(prev, s.seq)
	g.handOver(sink, s, batch, last)
	switch {
	case s.state != StateJoining:
		// Blocked or removed by the sink.
	case lapped:
		g.lap(s)
	case pos == g.walkPos:
		g.goLive(sink, s)
	}
	return reads
}

// walk reads the ring from walkPos up to head, at most Config.MaxBatch
// positions, and delivers each live subscriber its selected updates in one
// batch.
func (g *Group) walk(sink Sink, head uint64) {
	if g.live == 0 || g.walkPos > head {
		return
	}

	// Read the window. Only a failed read of its first position means the
	// live subscribers were lapped. A later failure means the producer
	// overtook the walk while it read, and the next Pump finds the lap.
	end := min(head, g.walkPos+uint64(g.cfg.MaxBatch)-1)
	window := g.window[:0]
	for pos := g.walkPos; pos <= end; pos++ {
		u, ok := g.ring.read(pos)
		if !ok {
			break
		}
		window = append(window, u)
	}
	g.window = window
	defer clear(window)
	if len(window) == 0 {
		g.lapAll()
		return
	}
	walked := window[len(window)-1].Seq

	g.deliverUnfiltered(sink, window, walked)
	g.deliverFiltered(sink, window, walked)

	g.walkPos += uint64(len(window))
	g.walkedSeq = walked
}

// deliverUnfiltered hands every live unfiltered subscriber the part of
// window above its cursor.
func (g *Group) deliverUnfiltered(sink Sink, window []*Update, walked uint64) {
	if len(g.index.unfiltered) == 0 {
		return
	}
	// A Sink may remove subscribers, which reorders the index list.
	list := append(g.scratch[:0], g.index.unfiltered...)
	g.scratch = list
	defer clear(list)

	for _, s := range list {
		if s.state != StateLive {
			continue
		}
		k := 0
		if s.seq >= window[0].Seq {
			// Ahead of the walk after a store resync: skip what it has.
			for k < len(window) && window[k].Seq <= s.seq {
				k++
			}
		}
		if k < len(window) {
			g.handOver(sink, s, window[k:], walked)
		}
	}
}

// deliverFiltered collects, for every live filtered subscriber, the updates
// of window it selects, using the index so that the cost grows with the
// matches, and hands each its batch.
func (g *Group) deliverFiltered(sink Sink, window []*Update, walked uint64) {
	for _, u := range window {
		g.collect(u)
	}
	if len(g.pairs) == 0 {
		return
	}

	// Group the collected pairs by subscriber, keeping Seq order: count,
	// assign offsets, then place.
	offset := 0
	for _, s := range g.touched {
		s.offset = offset
		offset += s.count
		s.count = 0
	}
	flat := slices.Grow(g.flat[:0], len(g.pairs))[:len(g.pairs)]
	for _, p := range g.pairs {
		flat[p.s.offset+p.s.count] = p.u
		p.s.count++
	}
	g.flat = flat

	for _, s := range g.touched {
		batch := flat[s.offset : s.offset+s.count]
		s.count = 0
		s.mark = 0 // a later walk may offer the same update again after a restart
		if s.state == StateLive {
			g.handOver(sink, s, batch, walked)
		}
	}

	clear(g.pairs)
	g.pairs = g.pairs[:0]
	clear(g.touched)
	g.touched = g.touched[:0]
	clear(flat)
}

// offer records u as pending for s if s is live, has not had u, and u passes
// the link restriction.
//
// hot path: once per candidate per walked update.
func (g *Group) offer(s *Subscriber, u *Update) {
	if s.state != StateLive || u.Seq <= s.seq || s.mark == u.Seq {
		return
	}
	if s.link.IsValid() && !sameAddr(u.Link, s.link) {
		return
	}
	s.mark = u.Seq
	if s.count == 0 {
		g.touched = append(g.touched, s)
	}
	s.count++
	g.pairs = append(g.pairs, pending{s: s, u: u})
}

// handOver passes a non-empty batch to the sink and moves the cursor of s:
// to done, the Seq through which the batch's source was considered, when the
// sink took everything, else to the last update it took (invariant 1). A
// sink that took less or reported blocked leaves s blocked. With an empty
// batch it only moves the cursor to done.
func (g *Group) handOver(sink Sink, s *Subscriber, batch []*Update, done uint64) {
	if len(batch) == 0 {
		s.seq = max(s.seq, done)
		return
	}

	written, blocked := sink.Deliver(s, batch)
	written = max(0, min(written, len(batch)))
	g.delivered += uint64(written)

	switch {
	case written == len(batch):
		s.seq = max(s.seq, done)
	case written > 0:
		s.seq = max(s.seq, batch[written-1].Seq)
	}
	if blocked || written < len(batch) {
		g.Block(s)
	}
}

// lapAll sends every live subscriber to a store resync because the walk's
// next position has been overwritten.
func (g *Group) lapAll() {
	for _, s := range g.subs {
		if s.state == StateLive {
			s.seq = max(s.seq, g.walkedSeq)
			g.lap(s)
		}
	}
	g.live = 0
	g.liveCount.Store(0)
}
