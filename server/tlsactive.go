package server

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/fanout"
)

// tlsActive is an ACTIVELEASEQUERY running on a TLS connection.
type tlsActive struct {
	t      *tlsConn
	hub    *tlsHub
	filter fanout.Filter
	head   replyHead // xid, SERVERID, the requestor's CLIENTID, base-time request
	view   int       // viewPlain or viewRelay
	out    tlsOutbox

	// Hub goroutine only (invariant 4). catchingUp is set while
	// CatchUpComplete is due (RFC 7653 section 9.3): once the cursor reaches
	// catchUpTarget, the ring's last Seq when the query arrived, every change
	// up to it has been sent or was not selected. fanout's CaughtUp alone
	// does not tell, because a subscriber may join a walk that is still
	// behind the ring's head.
	sub           *fanout.Subscriber
	catchingUp    bool
	catchUpTarget uint64

	// lastBase is the base-time, in Unix seconds, of the last
	// LEASEQUERY-DATA with binding data, or of the REPLY before the first
	// (see controlBase). Hub goroutine only, or any goroutine once the hub
	// has stopped.
	lastBase int64

	// Flusher goroutine only (one runs at a time).
	spare []byte // the outbox buffer written last, reused for the next

	flushers  sync.WaitGroup // the running flusher, if any
	lastWrite atomic.Int64   // Unix nanoseconds of the last write, for the keepalive
	idle      *time.Timer    // ACTIVE_LQ_IDLE_TIMEOUT keepalive check
}

// appendUpdate appends u as a LEASEQUERY-DATA: header, base-time base (Unix
// seconds, from batchBases) and the shared body, with lifetimes and
// OPTION_CLT_TIME moved on to base when the body was encoded in an earlier
// second (see updateEncoder).
//
// hot path: once per delivered update.
func (a *tlsActive) appendUpdate(b []byte, u *fanout.Update, base int64) []byte {
	body := u.Bodies[a.view]
	b = appendDataHead(b, a.head.xid, len(body), a.head.baseTime, dhcpSeconds(base))
	elapsed := base - u.ChangeTime.Unix()
	if elapsed <= 0 {
		return append(b, body...)
	}
	return appendAged(b, body, uint32(min(elapsed, infinity)))
}

// statusData returns a builder of a LEASEQUERY-DATA with only status and,
// when forced or requested, OPTION_LQ_BASE_TIME at base-time at.
func (a *tlsActive) statusData(at time.Time, status *codec.StatusError, forceBase bool) func([]byte) ([]byte, error) {
	p := &a.t.srv.policy
	return func(b []byte) ([]byte, error) {
		q := activeQuery{head: a.head}
		return q.appendStatusData(b, at, status, forceBase, p)
	}
}

// controlTime returns the base-time of a message without binding data (see
// controlBase); it runs on the hub goroutine.
func (a *tlsActive) controlTime() time.Time {
	s := a.t.srv
	return controlBase(a.sub, s.active.ring, a.lastBase, s.clock())
}

// keepalive queues a LEASEQUERY-DATA without binding data, which tells an
// idle requestor that the connection is alive (RFC 7653 section 8.4); it
// runs on the hub goroutine.
func (a *tlsActive) keepalive() {
	if err := a.add(a.statusData(a.controlTime(), nil, false), false, 0); err != nil {
		a.t.log.Error("encoding a keepalive failed", "err", err)
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
	if err := a.add(a.statusData(a.controlTime(), status, false), false, 0); err != nil {
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
	now := h.srv.clock()
	if err := a.add(a.statusData(now, status, true), false, 0); err != nil {
		a.t.log.Error("encoding DataMissing failed", "err", err)
	}
	a.lastBase = now.Unix()
	h.group.Remove(a.sub)
	a.sub, a.catchingUp = nil, false
	sub, err := h.group.Subscribe(a.filter, h.srv.active.ring.LastSeq(), a)
	if err != nil {
		a.finishOnHub(CloseShutdown, "the server is shutting down")
		return
	}
	a.sub = sub
	h.srv.metrics.active.dataMissing.WithLabelValues("data").Inc()
	a.t.log.Warn("active query data missing", "xid", a.head.xid)
}

// finish closes the outbox behind a LEASEQUERY-DONE with QueryTerminated
// and the base-time (RFC 7653 sections 8.4 and 9.5). The connection's
// goroutine writes it and then closes with reason. Safe from any goroutine
// but the hub's, which calls finishOnHub: the base-time is chosen on the
// hub goroutine, which owns the subscriber, and the outbox is closed when
// finish returns. Once the hub has stopped, the base-time is lastBase.
func (a *tlsActive) finish(reason CloseReason, msg string) {
	if !a.hub.doWait(func() { a.finishOnHub(reason, msg) }) {
		a.finishAt(time.Unix(a.lastBase, 0), reason, msg)
	}
}

// finishOnHub is finish on the hub goroutine.
func (a *tlsActive) finishOnHub(reason CloseReason, msg string) {
	a.finishAt(a.controlTime(), reason, msg)
}

// finishAt is finish with the base-time at.
func (a *tlsActive) finishAt(at time.Time, reason CloseReason, msg string) {
	s := a.t.srv
	head := a.head
	head.baseTime = !s.policy.deny.has(codec.OptLQBaseTime)
	status := &codec.StatusError{Code: codec.StatusQueryTerminated, Msg: msg}
	err := a.add(func(b []byte) ([]byte, error) { return head.appendDone(b, at, status) }, true, reason)
	if err != nil {
		a.t.log.Error("encoding LEASEQUERY-DONE failed", "err", err)
	}
}

// stop ends the query for a shutdown. Safe from any goroutine.
func (a *tlsActive) stop() { a.finish(CloseShutdown, "the server is shutting down") }

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

	a.lastBase = now.Unix()
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
	if err := a.add(func(b []byte) ([]byte, error) { return head.appendStatusReply(b, now, status) }, false, 0); err != nil {
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

// runActive reads the requestor's messages while the query runs, and
// returns why the connection ends. A requestor sends nothing in that time
// unless it breaks the rules (onMessageWhileActive), so the usual end is
// the requestor closing, a failed write, or the final LEASEQUERY-DONE that
// finish queued: the flusher that writes it wakes this read.
func (t *tlsConn) runActive(a *tlsActive) (CloseReason, error) {
	s := t.srv
	t.raw.writeTimeout.Store(int64(s.cfg.ActiveSendTimeout))
	// An active connection has no idle timeout on the requestor's side: the
	// requestor waits for updates.
	_ = t.raw.SetReadDeadline(time.Time{})
	a.lastWrite.Store(time.Now().UnixNano())
	a.out.mu.Lock()
	a.idle = time.AfterFunc(s.cfg.ActiveIdleTimeout, a.checkIdle)
	a.out.mu.Unlock()
	defer a.release()

	for {
		// A flusher that ended the connection before the read deadline was
		// cleared above is caught here. One that ends it later moves the
		// deadline into the past, which wakes the read.
		if r, e, ok := a.ended(); ok {
			return r, e
		}
		msg, reason, err := t.readMessage()
		if r, e, ok := a.ended(); ok {
			return r, e
		}
		if reason != 0 {
			return reason, err
		}
		a.onMessageWhileActive(msg)
	}
}

// onMessageWhileActive replies to a message on a connection that runs an
// active query. RFC 7653 section 9.4 allows no other request on it, so a
// query gets a LEASEQUERY-REPLY with NotAllowed. The active query then ends
// with LEASEQUERY-DONE, and the connection closes (section 9.5).
func (a *tlsActive) onMessageWhileActive(msg []byte) {
	s := a.t.srv
	typ, xid := codec.MsgType(msg[0]), xidOf(msg)
	if typ == codec.MsgLeasequery || typ == codec.MsgActiveLeasequery {
		h := replyHead{xid: xid, serverID: s.policy.serverID, framed: true}
		status := &codec.StatusError{Code: codec.StatusNotAllowed, Msg: "an Active Leasequery runs on this connection; send other queries on another connection"}
		_ = a.add(func(b []byte) ([]byte, error) { return h.appendStatusReply(b, s.clock(), status) }, false, 0)
		s.metrics.active.countQuery(fanout.Filter{}, "conflict")
	}
	a.t.log.Warn("message on an Active Leasequery connection", "type", typ.String(), "xid", xid)
	a.finish(CloseProtocolViolation, "a second request arrived on the Active Leasequery connection")
}

// release closes the outbox, waits for its last write, stops the keepalive
// and removes the subscriber from its hub.
func (a *tlsActive) release() {
	o := &a.out
	o.mu.Lock()
	o.closed = true
	a.idle.Stop()
	o.mu.Unlock()
	select {
	case o.ready <- struct{}{}: // a lingering flusher exits at once
	default:
	}
	a.flushers.Wait()
	a.hub.do(func() {
		if a.sub != nil {
			a.hub.group.Remove(a.sub)
			a.sub = nil
		}
	})
}
