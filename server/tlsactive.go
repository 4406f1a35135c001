package server

import (
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/fanout"
)

// Active Leasequery on TLS connections.
//
// A TLS connection is written by its own goroutine, and a crypto/tls write
// blocks: it cannot be tried and left pending the way a gnet write can, and
// a write deadline that fires leaves the TLS stream unusable. So a TLS
// connection cannot take updates straight from a shared Pump. It subscribes
// through a tlsHub instead: a fanout group with a goroutine of its own whose
// Sink copies each connection's updates into that connection's outbox, a
// bounded buffer that the connection's goroutine writes through TLS.
//
// Invariants:
//
//  1. Order: everything a connection sends after its LEASEQUERY-REPLY goes
//     through its outbox in order: updates and CatchUpComplete or
//     DataMissing from the hub, keepalives and the final LEASEQUERY-DONE
//     from the connection's goroutine.
//  2. Blocked: a Deliver that leaves the outbox at tlsOutboxLimit octets or
//     more reports the subscriber blocked (RFC 7653 section 2: the
//     connection takes no more). The connection's goroutine asks the hub
//     to unblock it once it has handed the outbox to TLS and the outbox is
//     below the limit again. So an outbox holds at most the limit plus one
//     batch, and a requestor that reads slowly resumes from the store's
//     last-change index (fanout invariant 5) without the server queueing
//     its backlog.
//  3. Send timeout: every TLS record write has ACTIVE_LQ_SEND_TIMEOUT as its
//     deadline, so a requestor that takes nothing for that long is closed
//     as a slow consumer (RFC 7653 section 9.3).
//  4. Ownership: the subscriber, catchingUp and the hub's times belong to
//     the hub goroutine; the connection's goroutine reaches them only
//     through tlsHub.do. The outbox is shared under its mutex.
//
// Rejected alternative: a fanout group per TLS connection. It would let
// the connection's goroutine pump and write itself, but every group walks
// the ring on its own, so a filtered subscriber would cost a walk of every
// update instead of an index lookup for its matches (the reason for the
// per-loop filter index), and every Publish would wake every TLS
// connection's group.

// tlsOutboxLimit is the pending output, in octets, at which a TLS Active
// Leasequery connection is blocked: about one TLS record's worth of updates
// beyond the kernel's TCP_NOTSENT_LOWAT share.
const tlsOutboxLimit = 64 << 10

// maxOutboxRetained caps the outbox buffer a connection keeps between
// writes, so that a burst does not pin memory on an idle connection.
const maxOutboxRetained = 256 << 10

// tlsHub is a fanout group for TLS connections, pumped by its own
// goroutine, which also runs the group's Sink.
type tlsHub struct {
	srv   *Server
	group *fanout.Group
	wakeC chan struct{} // one pending Pump at most
	ctl   chan func()   // work for the hub goroutine
	stop  chan struct{}
	done  chan struct{}

	// Times taken once per Pump: the server clock and its DHCP second.
	now    time.Time
	nowSec uint32

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
			h.now = h.srv.clock()
			h.nowSec = codec.DHCPTime(h.now)
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
	for _, u := range batch {
		if len(u.Bodies) <= a.view {
			continue // a placeholder from a store scan or an unencodable binding
		}
		o.buf = a.appendUpdate(o.buf, u, h.nowSec)
	}
	blocked := len(o.buf) >= tlsOutboxLimit
	o.blocked = o.blocked || blocked
	o.mu.Unlock()
	o.notify()
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
	a.finish(CloseQueryAborted, "the binding store failed")
}

// tlsOutbox is the output of a TLS Active Leasequery connection waiting for
// its goroutine to write it.
type tlsOutbox struct {
	mu      sync.Mutex
	buf     []byte      // framed messages not yet handed to TLS
	closed  bool        // the final message is in buf; nothing more is added
	reason  CloseReason // set with closed: why the connection ends
	blocked bool        // a Deliver reported the subscriber blocked
	ready   chan struct{}
}

// notify wakes the connection's goroutine.
func (o *tlsOutbox) notify() {
	select {
	case o.ready <- struct{}{}:
	default:
	}
}

// add appends one message built by build, unless the outbox is closed.
// final closes the outbox behind it with reason.
func (o *tlsOutbox) add(build func([]byte) ([]byte, error), final bool, reason CloseReason) error {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return nil
	}
	b, err := build(o.buf)
	if err == nil {
		o.buf = b
	}
	if final {
		o.closed, o.reason = true, reason
	}
	o.mu.Unlock()
	o.notify()
	return err
}

// tlsActive is an ACTIVELEASEQUERY running on a TLS connection.
type tlsActive struct {
	t      *tlsConn
	hub    *tlsHub
	filter fanout.Filter
	head   replyHead // xid, SERVERID, the requestor's CLIENTID, base-time request
	view   int       // viewPlain or viewRelay
	out    tlsOutbox
	stopC  chan struct{} // a shutdown requests the final DONE

	// Hub goroutine only (invariant 4). catchingUp is set while
	// CatchUpComplete is due (RFC 7653 section 9.3): once the cursor reaches
	// catchUpTarget, the ring's last Seq when the query arrived, every change
	// up to it has been sent or was not selected. fanout's CaughtUp alone
	// does not tell, because a subscriber may join a walk that is still
	// behind the ring's head.
	sub           *fanout.Subscriber
	catchingUp    bool
	catchUpTarget uint64

	// Connection goroutine only.
	spare     []byte // the outbox buffer written last, reused for the next
	lastWrite time.Time
}

// appendUpdate appends u as a LEASEQUERY-DATA: header, base-time and the
// shared body, with lifetimes and OPTION_CLT_TIME moved on to nowSec when
// the body was encoded in an earlier second (see updateEncoder).
//
// hot path: once per delivered update.
func (a *tlsActive) appendUpdate(b []byte, u *fanout.Update, nowSec uint32) []byte {
	body := u.Bodies[a.view]
	encoded := codec.DHCPTime(u.ChangeTime)
	elapsed := int32(nowSec - encoded) // modulo 2^32, like the times themselves
	if elapsed <= 0 {
		b = appendDataHead(b, a.head.xid, len(body), a.head.baseTime, encoded)
		return append(b, body...)
	}
	b = appendDataHead(b, a.head.xid, len(body), a.head.baseTime, nowSec)
	return appendAged(b, body, uint32(elapsed))
}

// statusData returns a builder of a LEASEQUERY-DATA with only status and,
// when forced or requested, OPTION_LQ_BASE_TIME.
func (a *tlsActive) statusData(status *codec.StatusError, forceBase bool) func([]byte) ([]byte, error) {
	s := a.t.srv
	return func(b []byte) ([]byte, error) {
		q := activeQuery{head: a.head}
		return q.appendStatusData(b, s.clock(), status, forceBase, &s.policy)
	}
}

// checkCatchUp sends CatchUpComplete once the cursor has passed the
// catch-up target; it runs on the hub goroutine.
func (a *tlsActive) checkCatchUp(h *tlsHub) {
	if a.catchingUp && a.sub != nil && a.sub.Seq() >= a.catchUpTarget {
		a.catchUpComplete(h)
	}
}

// catchUpComplete ends the catch-up phase; it runs on the hub goroutine.
func (a *tlsActive) catchUpComplete(h *tlsHub) {
	a.catchingUp = false
	status := &codec.StatusError{Code: codec.StatusCatchUpComplete, Msg: "every binding changed since the start time has been sent"}
	if err := a.out.add(a.statusData(status, false), false, 0); err != nil {
		a.t.log.Error("encoding CatchUpComplete failed", "err", err)
		return
	}
	h.srv.metrics.active.catchUpsCompleted.Inc()
	a.t.log.Info("catch-up complete", "xid", a.head.xid)
}

// dataMissing sends DataMissing with the current base-time and goes on
// with live changes only, as activeQuery.dataMissing does on the event
// loops. It runs on the hub goroutine.
func (a *tlsActive) dataMissing(h *tlsHub) {
	status := &codec.StatusError{Code: codec.StatusDataMissing, Msg: "the history was trimmed below this connection's position; recover with a Bulk Leasequery"}
	if err := a.out.add(a.statusData(status, true), false, 0); err != nil {
		a.t.log.Error("encoding DataMissing failed", "err", err)
	}
	h.group.Remove(a.sub)
	a.sub, a.catchingUp = nil, false
	sub, err := h.group.Subscribe(a.filter, h.srv.active.ring.LastSeq(), a)
	if err != nil {
		a.finish(CloseShutdown, "the server is shutting down")
		return
	}
	a.sub = sub
	h.srv.metrics.active.dataMissing.WithLabelValues("data").Inc()
	a.t.log.Warn("active query data missing", "xid", a.head.xid)
}

// finish closes the outbox behind a LEASEQUERY-DONE with QueryTerminated
// and the base-time (RFC 7653 sections 8.4 and 9.5). The connection's
// goroutine writes it and then closes with reason. Safe from any goroutine.
func (a *tlsActive) finish(reason CloseReason, msg string) {
	s := a.t.srv
	head := a.head
	head.baseTime = !s.policy.deny.has(codec.OptLQBaseTime)
	status := &codec.StatusError{Code: codec.StatusQueryTerminated, Msg: msg}
	err := a.out.add(func(b []byte) ([]byte, error) { return head.appendDone(b, s.clock(), status) }, true, reason)
	if err != nil {
		a.t.log.Error("encoding LEASEQUERY-DONE failed", "err", err)
	}
}

// stop requests the connection's goroutine to end the query for a
// shutdown.
// Safe from any goroutine.
func (a *tlsActive) stop() {
	select {
	case a.stopC <- struct{}{}:
	default:
	}
}

// onActiveLeasequery checks an ACTIVELEASEQUERY on a TLS connection and
// runs it until the connection ends, or rejects it with a LEASEQUERY-REPLY
// carrying the status (RFC 7653 section 9.3: an error in the initial
// processing closes the connection).
func (t *tlsConn) onActiveLeasequery(msg []byte) (CloseReason, error) {
	s := t.srv
	if s.active == nil {
		// RFC 7653 section 9.2: a server without Active Leasequery replies
		// with NotSupported and then closes the connection.
		t.reply(xidOf(msg), nil, &codec.StatusError{Code: codec.StatusNotSupported, Msg: "this server does not support Active Leasequery"})
		s.metrics.countQuery(transportTCP, 0, codec.StatusNotSupported.String())
		return CloseNotSupported, nil
	}

	m := &s.metrics.active
	r := &request{}
	filter, serr := parseActive(r, msg, &s.policy)
	if !t.allowed {
		t.reply(r.xid, r.clientID, &codec.StatusError{Code: codec.StatusNotAllowed, Msg: "requestor " + t.peer.Addr().String() + " is not allowed"})
		m.countQuery(filter, codec.StatusNotAllowed.String())
		return CloseNotAllowed, nil
	}
	if serr != nil {
		t.reply(r.xid, r.clientID, serr)
		m.countQuery(filter, serr.Code.String())
		t.log.Warn("active query rejected", "status", serr.Code.String(), "detail", serr.Msg)
		return CloseQueryRejected, nil
	}

	hub := s.tls.hub(s, t.id)
	if hub == nil {
		t.reply(r.xid, r.clientID, &codec.StatusError{Code: codec.StatusUnspecFail, Msg: "the server is shutting down"})
		return CloseShutdown, nil
	}
	a := &tlsActive{
		t:      t,
		hub:    hub,
		filter: filter,
		head:   replyHead{xid: r.xid, serverID: s.policy.serverID, clientID: r.clientID, framed: true, baseTime: r.wantBaseTime},
		out:    tlsOutbox{ready: make(chan struct{}, 1)},
		stopC:  make(chan struct{}, 1),
	}
	if r.wantRelayData {
		a.view = viewRelay
	}
	if reason := a.start(r); reason != 0 {
		return reason, nil
	}

	t.mu.Lock()
	t.active = a
	t.mu.Unlock()
	if t.stopping.Load() {
		a.stop()
	}
	m.connections.Inc()
	defer m.connections.Dec()
	return t.runActive(a)
}

// start queues the LEASEQUERY-REPLY and subscribes a on its hub: from a
// catch-up cursor when the query has OPTION_LQ_START_TIME that the history
// still covers, else from the ring's last change. It returns a close
// reason when the query cannot start.
func (a *tlsActive) start(r *request) CloseReason {
	t, s := a.t, a.t.srv
	m := &s.metrics.active
	now := s.clock()

	after := s.active.ring.LastSeq()
	a.catchUpTarget = after
	var status *codec.StatusError
	if r.hasStart {
		start := codec.TimeFromDHCPNear(r.start, now)
		began := time.Now()
		seq, missing, err := seqBefore(s.active.st, start)
		s.metrics.observeStore("catch_up_start", began)
		switch {
		case err != nil:
			t.log.Error("finding the catch-up start failed", "start", start, "err", err)
			t.reply(r.xid, r.clientID, &codec.StatusError{Code: codec.StatusUnspecFail, Msg: "the binding store failed"})
			m.countQuery(a.filter, codec.StatusUnspecFail.String())
			return CloseQueryAborted
		case missing:
			// RFC 7653 section 8.4.1: DataMissing in the REPLY, with the
			// current base-time; only live changes follow.
			status = &codec.StatusError{Code: codec.StatusDataMissing, Msg: "the history does not reach back to the start time; recover with a Bulk Leasequery"}
			m.dataMissing.WithLabelValues("reply").Inc()
			t.log.Warn("catch-up start below the history floor", slog.Time("start", start))
		default:
			after = seq
			a.catchingUp = true
			m.catchUpsStarted.Inc()
		}
	}

	catchingUp := a.catchingUp // the hub owns it once subscribed

	// The REPLY is the first message in the outbox, ahead of any update.
	head := a.head
	if status != nil {
		head.baseTime = !s.policy.deny.has(codec.OptLQBaseTime)
	}
	if err := a.out.add(func(b []byte) ([]byte, error) { return head.appendStatusReply(b, now, status) }, false, 0); err != nil {
		t.log.Error("encoding the active query reply failed", "err", err)
		return CloseQueryAborted
	}

	subscribed := a.hub.doWait(func() {
		sub, err := a.hub.group.Subscribe(a.filter, after, a)
		if err != nil {
			return // the hub is closing for a shutdown
		}
		a.sub = sub
		if a.catchingUp {
			a.hub.catching = append(a.hub.catching, a)
			a.checkCatchUp(a.hub)
		}
	})
	if !subscribed {
		a.finish(CloseShutdown, "the server is shutting down")
	}
	m.countQuery(a.filter, statusLabel(status))
	t.log.Info("active query started", "xid", r.xid, "filter", describeFilter(a.filter),
		"catch_up", catchingUp, "after_seq", after)
	return 0
}

// runActive writes the outbox until the query ends, sends the
// ACTIVE_LQ_IDLE_TIMEOUT keepalive, and hands any further message from the
// requestor to onMessageWhileActive. It returns why the connection ends.
func (t *tlsConn) runActive(a *tlsActive) (CloseReason, error) {
	s := t.srv
	t.raw.writeTimeout.Store(int64(s.cfg.ActiveSendTimeout))
	defer a.release()

	msgs := make(chan []byte)
	ended := make(chan readEnd, 1)
	quit := make(chan struct{})
	defer close(quit)
	s.producers.Add(1)
	go t.readWhileActive(msgs, ended, quit)

	idle := time.NewTimer(s.cfg.ActiveIdleTimeout)
	defer idle.Stop()
	a.lastWrite = time.Now()
	for {
		select {
		case <-a.out.ready:
		case <-idle.C:
			a.keepalive()
		case msg := <-msgs:
			a.onMessageWhileActive(msg)
		case <-a.stopC:
			a.finish(CloseShutdown, "the server is shutting down")
		case end := <-ended:
			if !t.stopping.Load() {
				return end.reason, end.err
			}
			a.finish(CloseShutdown, "the server is shutting down")
		}

		done, reason, err := a.flush()
		if reason != 0 || done {
			return reason, err
		}
		idle.Reset(max(s.cfg.ActiveIdleTimeout-time.Since(a.lastWrite), 0))
	}
}

// flush hands the outbox to TLS. It reports whether the outbox was closed
// and fully written (done, with the close reason), or the close reason of
// a failed write.
func (a *tlsActive) flush() (done bool, reason CloseReason, err error) {
	t := a.t
	o := &a.out
	o.mu.Lock()
	b := o.buf
	o.buf = a.spare[:0]
	closed, closeReason := o.closed, o.reason
	o.mu.Unlock()

	if len(b) > 0 {
		if werr := t.write(b); werr != nil {
			return false, t.writeFailure(), werr
		}
		a.lastWrite = time.Now()
	}
	a.spare = b[:0]
	if cap(a.spare) > maxOutboxRetained {
		a.spare = nil
	}
	if closed {
		return true, closeReason, nil
	}

	// Invariant 2: resume a blocked subscriber once its output is in TLS.
	o.mu.Lock()
	unblock := o.blocked && len(o.buf) < tlsOutboxLimit
	if unblock {
		o.blocked = false
	}
	o.mu.Unlock()
	if unblock {
		a.hub.do(func() {
			if a.sub != nil {
				a.hub.group.Unblock(a.sub)
			}
		})
	}
	return false, 0, nil
}

// keepalive queues a LEASEQUERY-DATA without binding data for a requestor
// that was sent nothing for ACTIVE_LQ_IDLE_TIMEOUT (RFC 7653 section 8.4).
func (a *tlsActive) keepalive() {
	if time.Since(a.lastWrite) < a.t.srv.cfg.ActiveIdleTimeout {
		return
	}
	if err := a.out.add(a.statusData(nil, false), false, 0); err != nil {
		a.t.log.Error("encoding a keepalive failed", "err", err)
		return
	}
	a.t.srv.metrics.active.keepalives.Inc()
}

// onMessageWhileActive replies to a message on a connection that runs an
// active query: RFC 7653 section 9.4 allows no other request on it, so a
// query gets a LEASEQUERY-REPLY with NotAllowed, and the active query ends
// with LEASEQUERY-DONE and the connection (section 9.5).
func (a *tlsActive) onMessageWhileActive(msg []byte) {
	s := a.t.srv
	typ, xid := codec.MsgType(msg[0]), xidOf(msg)
	if typ == codec.MsgLeasequery || typ == codec.MsgActiveLeasequery {
		h := replyHead{xid: xid, serverID: s.policy.serverID, framed: true}
		status := &codec.StatusError{Code: codec.StatusNotAllowed, Msg: "an Active Leasequery runs on this connection; send other queries on another connection"}
		_ = a.out.add(func(b []byte) ([]byte, error) { return h.appendStatusReply(b, s.clock(), status) }, false, 0)
		s.metrics.active.countQuery(fanout.Filter{}, "conflict")
	}
	a.t.log.Warn("message on an Active Leasequery connection", "type", typ.String(), "xid", xid)
	a.finish(CloseProtocolViolation, "a second request arrived on the Active Leasequery connection")
}

// release removes the subscriber from its hub.
func (a *tlsActive) release() {
	a.out.mu.Lock()
	a.out.closed = true
	a.out.mu.Unlock()
	a.hub.do(func() {
		if a.sub != nil {
			a.hub.group.Remove(a.sub)
			a.sub = nil
		}
	})
}

// readEnd is the close reason and error that stopped a read loop.
type readEnd struct {
	reason CloseReason
	err    error
}

// readWhileActive reads the requestor's messages while an active query
// runs and passes them on. A requestor sends nothing in that time unless it
// breaks the rules, so the usual outcome is the end of the connection. It
// stops when quit is closed.
func (t *tlsConn) readWhileActive(msgs chan<- []byte, ended chan<- readEnd, quit <-chan struct{}) {
	defer t.srv.producers.Done()
	// An active connection has no idle timeout on the requestor's side:
	// the requestor waits for updates.
	_ = t.raw.SetReadDeadline(time.Time{})
	for {
		msg, reason, err := t.readMessage()
		if reason != 0 {
			ended <- readEnd{reason: reason, err: err}
			return
		}
		select {
		case msgs <- msg:
		case <-quit:
			return
		}
	}
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
