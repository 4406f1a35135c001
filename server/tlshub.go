package server

import (
	"errors"

	"github.com/alqd/alqd/fanout"
)

// Active Leasequery on TLS connections.
//
// A crypto/tls write blocks: it cannot be tried and left pending the way a
// gnet write can, and a write deadline that fires leaves the TLS stream
// unusable. So a TLS connection cannot take updates straight from a shared
// Pump. It subscribes through a tlsHub instead: a fanout group with a
// goroutine of its own whose Sink copies each connection's updates into
// that connection's outbox (tlsoutbox.go), a bounded buffer that a flusher
// goroutine writes through TLS. The connection's own goroutine only reads.
//
// Invariants:
//
//  1. Order: everything a connection sends after its LEASEQUERY-REPLY goes
//     through its outbox in order: updates, CatchUpComplete, DataMissing
//     and keepalives from the hub (the keepalive timer asks the hub), and
//     the final LEASEQUERY-DONE from the hub on behalf of whichever
//     goroutine ends the query (from that goroutine once the hub has
//     stopped).
//  2. Blocked: a Deliver that leaves the outbox at tlsOutboxLimit octets or
//     more reports the subscriber blocked (RFC 7653 section 2: the
//     connection takes no more). The flusher requests the hub to unblock it
//     once it has handed the outbox to TLS and the outbox is below the
//     limit again. So an outbox holds at most the limit plus one batch, and
//     a requestor that reads slowly resumes from the store's last-change
//     index (fanout invariant 5) without the server queueing its backlog.
//  3. Send timeout: every TLS record write has ACTIVE_LQ_SEND_TIMEOUT as its
//     deadline, so a requestor that takes nothing for that long is closed
//     as a slow consumer (RFC 7653 section 9.3).
//  4. Ownership: the subscriber, catchingUp, lastBase and the hub's time
//     belong to the hub goroutine; other goroutines reach them only through
//     tlsHub.do, or after the hub has stopped. The outbox is shared under
//     its mutex.
//  5. Base-times: the hub gives every message the base-time a plaintext
//     connection would get (batchBases, controlBase), so that resuming
//     from the last one received loses no change.
//
// Rejected alternative: a fanout group per TLS connection. It would let
// the connection's goroutine pump and write itself, but every group walks
// the ring on its own, so a filtered subscriber would cost a walk of every
// update instead of an index lookup for its matches (the reason for the
// per-loop filter index), and every Publish would wake every TLS
// connection's group.

// tlsHub is a fanout group for TLS connections, pumped by its own
// goroutine, which also runs the group's Sink.
type tlsHub struct {
	srv   *Server
	group *fanout.Group
	wakeC chan struct{} // one pending Pump at most
	ctl   chan func()   // work for the hub goroutine
	stop  chan struct{}
	done  chan struct{}

	// nowUnix is the server clock, in Unix seconds, taken once per Pump.
	nowUnix int64

	// catching lists the queries whose catch-up may still need
	// CatchUpComplete.
	catching []*tlsActive
}

func newTLSHub(s *Server) *tlsHub {
	h := &tlsHub{
		srv:   s,
		wakeC: make(chan struct{}, 1),
		ctl:   make(chan func(), 64),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	g, err := s.active.ring.NewGroup(s.active.src, h.wake)
	if err != nil {
		// NewGroup fails only for a nil source or wake function.
		panic("server: " + err.Error())
	}
	h.group = g
	return h
}

// wake schedules a Pump; it runs on the store's writer goroutine (through
// Ring.Publish) or on the hub goroutine, and never blocks.
func (h *tlsHub) wake() {
	select {
	case h.wakeC <- struct{}{}:
	default:
	}
}

// run is the hub goroutine. It closes the group when stopped.
func (h *tlsHub) run() {
	defer close(h.done)
	for {
		select {
		case <-h.wakeC:
			h.nowUnix = h.srv.clock().Unix()
			h.group.Pump(h)
			h.checkCatchUps()
		case fn := <-h.ctl:
			fn()
		case <-h.stop:
			h.group.Close()
			return
		}
	}
}

// do runs fn on the hub goroutine and reports false when the hub has
// stopped, in which case fn may not run.
func (h *tlsHub) do(fn func()) bool {
	select {
	case h.ctl <- fn:
		return true
	case <-h.done:
		return false
	}
}

// doWait runs fn on the hub goroutine and waits for it; false means the
// hub stopped first.
func (h *tlsHub) doWait(fn func()) bool {
	ran := make(chan struct{})
	if !h.do(func() { fn(); close(ran) }) {
		return false
	}
	select {
	case <-ran:
		return true
	case <-h.done:
		return false
	}
}

// activeOf returns the TLS query that owns s, or nil when s is stale.
func activeOf(s *fanout.Subscriber) *tlsActive {
	a, _ := s.Owner().(*tlsActive)
	if a == nil || a.sub != s {
		return nil
	}
	return a
}

// Deliver copies batch into the connection's outbox, each update behind
// its own LEASEQUERY-DATA header, and reports the subscriber blocked when
// the outbox reached tlsOutboxLimit (fanout.Sink; invariant 2).
//
// hot path: once per TLS connection with pending updates per Pump.
func (h *tlsHub) Deliver(s *fanout.Subscriber, batch []*fanout.Update) (int, bool) {
	a := activeOf(s)
	if a == nil {
		return len(batch), false
	}
	o := &a.out
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return len(batch), false
	}
	bases := newBatchBases(h.nowUnix, s, h.srv.active.ring, batch)
	for i, u := range batch {
		if len(u.Bodies) <= a.view {
			continue // a placeholder from a store scan or an unencodable binding
		}
		base := bases.at(i)
		o.buf = a.appendUpdate(o.buf, u, base)
		a.lastBase = base
	}
	blocked := len(o.buf) >= tlsOutboxLimit
	o.blocked = o.blocked || blocked
	a.kickLocked()
	o.mu.Unlock()
	return len(batch), blocked
}

// CaughtUp checks whether a catch-up from OPTION_LQ_START_TIME is complete
// (fanout.Sink); the end of a later resync sends nothing.
func (h *tlsHub) CaughtUp(s *fanout.Subscriber) {
	if a := activeOf(s); a != nil {
		a.checkCatchUp(h)
	}
}

// checkCatchUps sends CatchUpComplete to the queries whose cursor the Pump
// moved past their catch-up target, and drops the finished ones.
func (h *tlsHub) checkCatchUps() {
	if len(h.catching) == 0 {
		return
	}
	kept := h.catching[:0]
	for _, a := range h.catching {
		a.checkCatchUp(h)
		if a.catchingUp && a.sub != nil {
			kept = append(kept, a)
		}
	}
	clear(h.catching[len(kept):])
	h.catching = kept
}

// Failed handles a failed store scan: DataMissing when the history below
// the subscriber was trimmed, else the end of the query with
// QueryTerminated (fanout.Sink; RFC 7653 sections 8.4 and 9.3).
func (h *tlsHub) Failed(s *fanout.Subscriber, err error) {
	a := activeOf(s)
	if a == nil {
		h.group.Remove(s)
		return
	}
	if errors.Is(err, errHistoryTrimmed) {
		a.dataMissing(h)
		return
	}
	a.t.log.Error("active query store scan failed", "xid", a.head.xid, "err", err)
	h.group.Remove(s)
	a.sub = nil
	a.finishOnHub(CloseQueryAborted, "the binding store failed")
}

// hub returns the TLS hub for the connection id, starting the hubs on
// first use; nil once shutdown has begun.
func (t *tlsServer) hub(s *Server, id uint64) *tlsHub {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopping {
		return nil
	}
	if t.hubs == nil {
		n := max(s.cfg.EventLoops, 1)
		t.hubs = make([]*tlsHub, n)
		for i := range t.hubs {
			t.hubs[i] = newTLSHub(s)
			go t.hubs[i].run()
		}
	}
	return t.hubs[id%uint64(len(t.hubs))]
}

// stopHubsLocked stops every hub and waits for its goroutine; t.mu is held.
func (t *tlsServer) stopHubsLocked() {
	for _, h := range t.hubs {
		close(h.stop)
		<-h.done
	}
	t.hubs = nil
}
