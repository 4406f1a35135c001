package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/fanout"
)

// activeServer is the server-wide part of Active Leasequery (RFC 7653): the
// ring that carries committed changes to every event loop, the publisher
// that fills it from the store, and the store scan that lagging connections
// resume from.
type activeServer struct {
	st   ActiveStore
	ring *fanout.Ring
	pub  *publisher
	src  *changeSource
}

// maxDeliverBatch is the fanout batch size: each update takes two writev
// slices (header and body), and writev takes at most 1024.
const maxDeliverBatch = 512

// startActive subscribes to the store and creates the ring. The subscription
// comes first and the ring starts at the store's LastSeq read after it, so
// that no commit falls between the two: commits the subscription sees
// before the ring exists are at or below that LastSeq and are dropped.
func (s *Server) startActive() error {
	st, ok := s.src.(ActiveStore)
	if !ok {
		return fmt.Errorf("%w: Active Leasequery needs a store with Subscribe, LastSeq, ChangedSince and Floor", ErrInvalidConfig)
	}
	enc := newUpdateEncoder(&s.policy)
	pub := &publisher{enc: enc, metrics: s.metrics}
	st.Subscribe(pub.committed)

	ring, err := fanout.NewRing(fanout.Config{Capacity: s.cfg.ActiveRingSize, MaxBatch: maxDeliverBatch}, st.LastSeq())
	if err != nil {
		pub.stopped.Store(true)
		return fmt.Errorf("%w: ActiveRingSize: %w", ErrInvalidConfig, err)
	}
	pub.ring.Store(ring)
	s.active = &activeServer{st: st, ring: ring, pub: pub, src: &changeSource{st: st, enc: enc}}
	s.metrics.active.setStats(ring.Stats)
	return nil
}

// stop makes the store subscription a no-op; the store cannot remove it.
func (a *activeServer) stop() { a.pub.stopped.Store(true) }

// validateActive checks the Active Leasequery settings. RFC 7653 section
// 9.1 keeps Active Leasequery off by default and makes plaintext operation
// a second explicit step, so Active alone has no transport: it needs TLS
// (secure mode), Insecure (plaintext TCP), or both.
func (c *Config) validateActive() error {
	if c.Insecure && !c.Active && !c.TLS.Enabled() {
		return fmt.Errorf("%w: Insecure allows plaintext next to Active Leasequery or TLS and needs one of them", ErrInvalidConfig)
	}
	if c.Active && !c.Insecure && !c.TLS.Enabled() {
		return fmt.Errorf("%w: Active is set, but TLS (secure mode) is not configured and Insecure is not set; configure TLS, or set Insecure to serve Active Leasequery over plaintext TCP", ErrActiveNotAvailable)
	}
	if err := (fanout.Config{Capacity: c.ActiveRingSize}).Validate(); err != nil {
		return fmt.Errorf("%w: ActiveRingSize is %d, want 0 (default) or a power of two: %w", ErrInvalidConfig, c.ActiveRingSize, err)
	}
	return nil
}

// warnShortTimeouts logs the Active Leasequery timeouts set below the RFC
// defaults, which RFC 7653 section 6.4 says should not be used.
func (s *Server) warnShortTimeouts() {
	if s.cfg.ActiveIdleTimeout < DefaultActiveIdleTimeout {
		s.log.Warn("ACTIVE_LQ_IDLE_TIMEOUT below the RFC 7653 default", "timeout", s.cfg.ActiveIdleTimeout, "default", DefaultActiveIdleTimeout)
	}
	if s.cfg.ActiveSendTimeout < DefaultActiveSendTimeout {
		s.log.Warn("ACTIVE_LQ_SEND_TIMEOUT below the RFC 7653 default", "timeout", s.cfg.ActiveSendTimeout, "default", DefaultActiveSendTimeout)
	}
}

// activeQuery is the state of a connection that runs an ACTIVELEASEQUERY:
// its subscriber in the loop's fanout group and what every message it is
// sent carries. It is touched only on the connection's event loop.
type activeQuery struct {
	conn   *conn
	la     *loopActive
	sub    *fanout.Subscriber
	filter fanout.Filter
	head   replyHead // xid, SERVERID, the requestor's CLIENTID, base-time request
	view   int       // viewPlain or viewRelay

	// catchingUp is set while a catch-up from OPTION_LQ_START_TIME runs:
	// CatchUpComplete is still due (RFC 7653 section 9.3). It is sent once
	// the subscriber's cursor reaches catchUpTarget, the ring's last Seq
	// when the query arrived: every change up to it has then been sent or
	// was not selected. The fanout CaughtUp callback is not enough, because
	// a subscriber may join a walk that is still behind the ring's head.
	catchingUp    bool
	catchUpTarget uint64

	// blocked is set while the kernel refuses the connection's output
	// (RFC 7653 section 2); blockedSince is when it started, for
	// ACTIVE_LQ_SEND_TIMEOUT.
	blocked      bool
	blockedSince time.Time

	// lastWrite is when the connection was last sent a message, for the
	// ACTIVE_LQ_IDLE_TIMEOUT keepalive.
	lastWrite time.Time

	// lastBase is the base-time, in Unix seconds, of the last
	// LEASEQUERY-DATA with binding data, or of the REPLY before the first.
	lastBase int64
}

// onActiveLeasequery checks an ACTIVELEASEQUERY and starts it, or rejects it
// with a LEASEQUERY-REPLY carrying the status and closes the connection
// (RFC 7653 section 9.3: an error in the initial processing).
func (c *conn) onActiveLeasequery(msg []byte) gnet.Action {
	m := &c.srv.metrics.active
	r := &request{}
	filter, serr := parseActive(r, append([]byte(nil), msg...), &c.srv.policy)

	if !c.allowed {
		c.reply(r.xid, r.clientID, &codec.StatusError{Code: codec.StatusNotAllowed, Msg: "requestor " + c.peer.Addr().String() + " is not allowed"})
		m.countQuery(filter, codec.StatusNotAllowed.String())
		return c.closeWith(CloseNotAllowed)
	}
	if c.state != stateIdle || len(c.queue) > 0 {
		// RFC 7653 section 9.4: an Active Leasequery is made on a
		// connection with no other request active. Section 9.3: an error
		// in its initial processing gets a LEASEQUERY-REPLY with the
		// status, and the connection closes after it. The bulk queries
		// accepted before it are still answered in full, rather than
		// aborted with QueryTerminated (section 9.5); nothing after it is
		// read.
		c.reply(r.xid, r.clientID, &codec.StatusError{Code: codec.StatusNotAllowed, Msg: "a bulk query is running on this connection; send ACTIVELEASEQUERY on a connection of its own"})
		m.countQuery(filter, codec.StatusNotAllowed.String())
		c.warn("ACTIVELEASEQUERY while a bulk query runs", slog.Uint64("xid", uint64(r.xid)))
		c.endAfterQueries(CloseProtocolViolation)
		return gnet.None
	}
	if serr != nil {
		c.reply(r.xid, r.clientID, serr)
		m.countQuery(filter, serr.Code.String())
		c.warn("active query rejected", slog.String("status", serr.Code.String()), slog.String("detail", serr.Msg))
		return c.closeWith(CloseQueryRejected)
	}
	return c.startActive(r, filter)
}

// parseActive decodes and checks an ACTIVELEASEQUERY like a bulk LEASEQUERY
// (RFC 7653 section 6.2.1 allows the same options), except that
// OPTION_LQ_QUERY is optional (without it every binding change is sent) and
// OPTION_CLIENTID is echoed when present but not required. raw is taken
// over by r.
func parseActive(r *request, raw []byte, p *policy) (fanout.Filter, *codec.StatusError) {
	r.raw = raw
	r.xid = xidOf(raw)
	malformed := func(msg string) (fanout.Filter, *codec.StatusError) {
		return fanout.Filter{}, &codec.StatusError{Code: codec.StatusMalformedQuery, Msg: msg}
	}
	if err := r.msg.Decode(raw); err != nil {
		return malformed("the message does not decode: " + err.Error())
	}
	r.clientID, _ = r.msg.Options.ClientID()
	if sid, ok := r.msg.Options.ServerID(); ok && string(sid) != string(p.serverID) {
		return fanout.Filter{}, &codec.StatusError{Code: codec.StatusNotAllowed, Msg: "OPTION_SERVERID names another server"}
	}

	found, err := r.msg.Options.LQQuery(&r.query)
	if err != nil {
		return malformed("OPTION_LQ_QUERY does not decode: " + err.Error())
	}
	if found {
		if err := r.query.Validate(); err != nil {
			var serr *codec.StatusError
			if errors.As(err, &serr) {
				return fanout.Filter{}, serr
			}
			return malformed(err.Error())
		}
		if serr := r.checkKey(p); serr != nil {
			return fanout.Filter{}, serr
		}
	}
	if serr := r.readWants(transportTCP, p); serr != nil {
		return fanout.Filter{}, serr
	}
	if r.hasEnd {
		// RFC 7653 section 9.3: OPTION_LQ_END_TIME makes an Active
		// Leasequery malformed.
		return malformed("OPTION_LQ_END_TIME is not allowed in ACTIVELEASEQUERY")
	}
	if !found {
		return fanout.Filter{}, nil
	}
	filter := activeFilter(r)
	if err := filter.Validate(); err != nil {
		// QUERY_BY_LINK_ADDRESS with link-address :: names no link.
		return malformed("OPTION_LQ_QUERY selects nothing to follow: " + err.Error())
	}
	return filter, nil
}

// activeFilter returns the fanout filter of a checked OPTION_LQ_QUERY.
func activeFilter(r *request) fanout.Filter {
	link := r.query.LinkAddress
	switch r.query.QueryType {
	case codec.QueryByAddress:
		return fanout.Filter{Key: fanout.AddressKey(r.addr), Link: link}
	case codec.QueryByClientID:
		return fanout.Filter{Key: fanout.ClientIDKey(r.key), Link: link}
	case codec.QueryByRelayID:
		return fanout.Filter{Key: fanout.RelayIDKey(r.key), Link: link}
	case codec.QueryByLinkAddress:
		return fanout.Filter{Key: fanout.LinkAddressKey(link)}
	case codec.QueryByRemoteID:
		return fanout.Filter{Key: fanout.RemoteIDKey(r.key), Link: link}
	}
	// parseActive lets only the five known types through.
	panic("server: active filter for unchecked query-type " + r.query.QueryType.String())
}

// startActive sends an accepted ACTIVELEASEQUERY its
// LEASEQUERY-REPLY and subscribes the connection: from a catch-up cursor
// when the query has OPTION_LQ_START_TIME that the history still covers,
// else from the ring's last change.
func (c *conn) startActive(r *request, filter fanout.Filter) gnet.Action {
	s := c.srv
	a, la := s.active, c.loop.active
	m := &s.metrics.active
	now := s.clock()
	q := &activeQuery{
		conn:   c,
		la:     la,
		filter: filter,
		head:   replyHead{xid: r.xid, serverID: s.policy.serverID, clientID: r.clientID, framed: true, baseTime: r.wantBaseTime},
	}
	if r.wantRelayData {
		q.view = viewRelay
	}
	q.lastBase = now.Unix()

	// Catch-up cursor.
	after := a.ring.LastSeq()
	q.catchUpTarget = after
	var status *codec.StatusError
	if r.hasStart {
		start := codec.TimeFromDHCPNear(r.start, now)
		began := time.Now()
		seq, missing, err := seqBefore(a.st, start)
		s.metrics.observeStore("catch_up_start", began)
		switch {
		case err != nil:
			c.log.Error("finding the catch-up start failed", "start", start, "err", err)
			c.reply(r.xid, r.clientID, &codec.StatusError{Code: codec.StatusUnspecFail, Msg: "the binding store failed"})
			m.countQuery(filter, codec.StatusUnspecFail.String())
			return c.closeWith(CloseQueryAborted)
		case missing:
			// RFC 7653 section 8.4.1: DataMissing in the REPLY, with the
			// current base-time; only live changes follow.
			status = &codec.StatusError{Code: codec.StatusDataMissing, Msg: "the history does not reach back to the start time; recover with a Bulk Leasequery"}
			m.dataMissing.WithLabelValues("reply").Inc()
			c.warn("catch-up start below the history floor", slog.Time("start", start))
		default:
			after = seq
			q.catchingUp = true
			m.catchUpsStarted.Inc()
		}
	}

	// The REPLY goes out before the subscription can deliver anything.
	head := q.head
	if status != nil {
		head.baseTime = !s.policy.deny.has(codec.OptLQBaseTime)
	}
	b, err := head.appendStatusReply(c.loop.scratch[:0], now, status)
	if err != nil {
		c.log.Error("encoding the active query reply failed", "err", err)
		return c.closeWith(CloseQueryAborted)
	}
	c.loop.scratch = b

	sub, err := la.group.Subscribe(filter, after, c)
	if errors.Is(err, fanout.ErrGroupClosed) {
		c.reply(r.xid, r.clientID, &codec.StatusError{Code: codec.StatusUnspecFail, Msg: "the server is shutting down"})
		return c.closeWith(CloseShutdown)
	}
	if err != nil {
		// parseActive checked the filter, so this is an internal error.
		c.log.Error("subscribing an active query failed", "filter", describeFilter(filter), "err", err)
		c.reply(r.xid, r.clientID, &codec.StatusError{Code: codec.StatusUnspecFail, Msg: "the server could not start the query"})
		return c.closeWith(CloseQueryAborted)
	}
	q.sub = sub
	c.active = q
	c.state = stateActive
	m.connections.Inc()
	m.countQuery(filter, statusLabel(status))
	c.log.Info("active query started", "xid", r.xid, "filter", describeFilter(filter),
		"catch_up", q.catchingUp, "after_seq", after)

	q.writeControl(c, b)
	if q.catchingUp {
		la.catching = append(la.catching, q)
		q.checkCatchUp()
	}
	return gnet.None
}

// writeControl writes a message the connection gets outside Deliver. When
// the kernel leaves part of it buffered, the subscriber is blocked like
// after a Deliver (the fanout.Group.Block contract).
func (q *activeQuery) writeControl(c *conn, b []byte) {
	c.write(b)
	now := time.Now()
	q.lastWrite = now
	if c.gc.OutboundBuffered() > 0 && q.sub != nil && !q.blocked {
		q.la.group.Block(q.sub)
		q.markBlocked(c, now)
	}
}

// markBlocked records that the kernel refused output and puts the
// connection on its loop's drain list, whose checks unblock it.
func (q *activeQuery) markBlocked(c *conn, now time.Time) {
	if !q.blocked {
		q.blocked, q.blockedSince = true, now
	}
	c.startDraining()
}

// controlTime returns the base-time of a message without binding data
// (see controlBase).
func (q *activeQuery) controlTime(now time.Time) time.Time {
	return controlBase(q.sub, q.conn.srv.active.ring, q.lastBase, now)
}

// appendStatusData appends a LEASEQUERY-DATA that carries only status and,
// when forced or requested, OPTION_LQ_BASE_TIME.
func (q *activeQuery) appendStatusData(b []byte, now time.Time, status *codec.StatusError, forceBase bool, p *policy) ([]byte, error) {
	head := q.head
	if forceBase {
		head.baseTime = !p.deny.has(codec.OptLQBaseTime)
	}
	b, start, err := head.begin(b, codec.MsgLeasequeryData, now)
	if err != nil {
		return b, err
	}
	if status != nil {
		if b, err = status.AppendOption(b); err != nil {
			return b[:start], err
		}
	}
	return head.end(b, start)
}

// checkCatchUp sends CatchUpComplete once the cursor has passed the
// catch-up target.
func (q *activeQuery) checkCatchUp() {
	if q.catchingUp && q.sub != nil && q.sub.Seq() >= q.catchUpTarget {
		q.catchUpComplete(q.conn)
	}
}

// catchUpComplete ends the catch-up phase with a LEASEQUERY-DATA carrying
// CatchUpComplete (RFC 7653 section 9.3).
func (q *activeQuery) catchUpComplete(c *conn) {
	q.catchingUp = false
	status := &codec.StatusError{Code: codec.StatusCatchUpComplete, Msg: "every binding changed since the start time has been sent"}
	b, err := q.appendStatusData(c.loop.scratch[:0], q.controlTime(c.srv.clock()), status, false, &c.srv.policy)
	if err != nil {
		c.log.Error("encoding CatchUpComplete failed", "err", err)
		return
	}
	c.loop.scratch = b
	c.srv.metrics.active.catchUpsCompleted.Inc()
	c.log.Info("catch-up complete", "xid", q.head.xid)
	q.writeControl(c, b)
}

// dataMissing handles a store scan that started below the history floor:
// the connection gets a LEASEQUERY-DATA with DataMissing and the current
// base-time, which ends a running catch-up (RFC 7653 section 8.4.1), and
// goes on with live changes only. The requestor recovers the gap with a
// Bulk Leasequery from its start time to that base-time.
func (q *activeQuery) dataMissing(c *conn) {
	la := q.la
	status := &codec.StatusError{Code: codec.StatusDataMissing, Msg: "the history was trimmed below this connection's position; recover with a Bulk Leasequery"}
	now := c.srv.clock()
	b, err := q.appendStatusData(c.loop.scratch[:0], now, status, true, &c.srv.policy)
	if err != nil {
		c.log.Error("encoding DataMissing failed", "err", err)
		return
	}
	c.loop.scratch = b
	q.lastBase = now.Unix()

	la.group.Remove(q.sub)
	q.sub = nil
	q.blocked = false
	sub, err := la.group.Subscribe(q.filter, c.srv.active.ring.LastSeq(), c)
	if err != nil {
		q.terminate(c, CloseShutdown, "the server is shutting down")
		return
	}
	q.sub = sub
	q.catchingUp = false
	c.srv.metrics.active.dataMissing.WithLabelValues("data").Inc()
	c.warn("active query data missing", slog.Uint64("xid", uint64(q.head.xid)))
	q.writeControl(c, b)
}

// keepalive sends a LEASEQUERY-DATA without binding data, which tells an
// idle requestor that the connection is alive (RFC 7653 section 8.4).
func (q *activeQuery) keepalive(c *conn) {
	b, err := q.appendStatusData(c.loop.scratch[:0], q.controlTime(c.srv.clock()), nil, false, &c.srv.policy)
	if err != nil {
		c.log.Error("encoding a keepalive failed", "err", err)
		return
	}
	c.loop.scratch = b
	c.srv.metrics.active.keepalives.Inc()
	q.writeControl(c, b)
}

// terminate ends the active query with a LEASEQUERY-DONE carrying
// QueryTerminated and the base-time, and closes the connection once that is
// sent (RFC 7653 sections 8.4 and 9.5).
func (q *activeQuery) terminate(c *conn, reason CloseReason, msg string) {
	at := q.controlTime(c.srv.clock())
	q.release(c)
	head := q.head
	head.baseTime = !c.srv.policy.deny.has(codec.OptLQBaseTime)
	status := &codec.StatusError{Code: codec.StatusQueryTerminated, Msg: msg}
	b, err := head.appendDone(c.loop.scratch[:0], at, status)
	if err == nil {
		c.loop.scratch = b
		c.write(b)
	} else {
		c.log.Error("encoding LEASEQUERY-DONE failed", "err", err)
	}
	c.closeAfterDrain(reason)
}

// release removes the subscriber; the connection no longer runs an active
// query.
func (q *activeQuery) release(c *conn) {
	if q.sub != nil {
		q.la.group.Remove(q.sub)
		q.sub = nil
	}
	if c.active == q {
		c.active = nil
		c.srv.metrics.active.connections.Dec()
	}
}

// onMessageWhileActive handles any message on a connection that runs an
// active query. RFC 7653 section 9.4 allows no other request on it, so a
// query gets a LEASEQUERY-REPLY with NotAllowed, and the active query ends
// with LEASEQUERY-DONE and the connection (section 9.5: a server that
// aborts a request closes the connection).
func (c *conn) onMessageWhileActive(msg []byte) gnet.Action {
	t := codec.MsgType(msg[0])
	if t == codec.MsgLeasequery || t == codec.MsgActiveLeasequery {
		c.reply(xidOf(msg), nil, &codec.StatusError{Code: codec.StatusNotAllowed, Msg: "an Active Leasequery runs on this connection; send other queries on another connection"})
		c.srv.metrics.active.countQuery(fanout.Filter{}, "conflict")
	}
	c.warn("message on an Active Leasequery connection", slog.String("type", t.String()), slog.Uint64("xid", uint64(xidOf(msg))))
	c.active.terminate(c, CloseProtocolViolation, "a second request arrived on the Active Leasequery connection")
	return gnet.None
}

// checkActiveTimeouts runs from the loop's sweep: it closes a connection
// blocked for ACTIVE_LQ_SEND_TIMEOUT (RFC 7653 section 9.3) and sends the
// keepalive to one idle for ACTIVE_LQ_IDLE_TIMEOUT.
func (q *activeQuery) checkTimeouts(c *conn, now time.Time) {
	cfg := &c.srv.cfg
	if q.blocked {
		if now.Sub(q.blockedSince) >= cfg.ActiveSendTimeout {
			c.warn("requestor stopped reading", slog.Int("pending", c.gc.OutboundBuffered()), slog.Duration("timeout", cfg.ActiveSendTimeout))
			q.release(c)
			c.reason = CloseSlowConsumer
			c.closeNow()
		}
		return
	}
	if now.Sub(q.lastWrite) >= cfg.ActiveIdleTimeout {
		q.keepalive(c)
	}
}

// checkWritable runs from the loop's drain checks while the connection is
// blocked: once gnet has handed all pending output to the kernel, the
// subscriber resumes (fanout.Group.Unblock).
func (q *activeQuery) checkWritable(c *conn) {
	if c.gc.OutboundBuffered() > 0 {
		return
	}
	c.stopDraining()
	if !q.blocked {
		return
	}
	q.blocked, q.blockedSince = false, time.Time{}
	if q.sub != nil {
		q.la.group.Unblock(q.sub)
	}
}

// describeFilter returns the filter as a log attribute value.
func describeFilter(f fanout.Filter) string {
	if f.Key.Kind == fanout.FilterAll {
		return "all"
	}
	s := f.Key.Kind.String()
	if f.Link.IsValid() && f.Link != netip.IPv6Unspecified() {
		s += " on " + f.Link.String()
	}
	return s
}
