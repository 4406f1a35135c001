package server

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/alqd/alqd/codec"
)

// connState is where a TCP connection is in its life.
//
//	          LEASEQUERY              last chunk written
//	idle ──────────────────▶ bulk ───────────────────────▶ idle (next queued query, if any)
//	  │                        │
//	  │ error, limit, timeout  │ abort, shutdown, slow consumer
//	  ▼                        ▼
//	closing ◀──────────────────┘   (pending output drained or timed out) ──▶ closed
//
//	          ACTIVELEASEQUERY
//	idle ──────────────────▶ active ──▶ closing (any further message, shutdown,
//	                                     send timeout, store failure)
//
// An active connection is a subscriber in its loop's fanout group (active.go):
// the loop pumps ring updates to it, and it is blocked while gnet holds
// output the kernel refused. One more state belongs to a next step and
// shares this machine: handover (STARTTLS accepted: the socket duplicated
// and served by a crypto/tls goroutine, gnet's copy closed without a close
// reason of its own).
type connState uint8

const (
	stateIdle    connState = iota // reading queries; none running
	stateBulk                     // a bulk query's producer goroutine is streaming
	stateClosing                  // closing once pending output drains
	stateActive                   // an ACTIVELEASEQUERY subscription runs (active.go)
)

func (st connState) String() string {
	switch st {
	case stateIdle:
		return "idle"
	case stateBulk:
		return "bulk"
	case stateClosing:
		return "closing"
	case stateActive:
		return "active"
	}
	return "unknown"
}

// conn is the server's state of one TCP connection. It lives in the gnet
// connection's context and is touched only on its event loop, except for
// the fields a bulkRun documents as its own.
type conn struct {
	srv       *Server
	loop      *loop // nil for a connection rejected in OnOpen
	gc        gnet.Conn
	id        uint64
	peer      netip.AddrPort
	log       *slog.Logger
	requestor *requestor // nil for a connection from outside Allow
	allowed   bool
	openedAt  time.Time

	// unallowedSlot is set when the connection counts in
	// Server.unallowed, until it closes.
	unallowedSlot bool

	state connState
	queue []*request // queries read ahead of the running one

	// ending is set once the connection is to close after the answers it
	// owes: no more input is read (what arrives is dropped), and the
	// connection closes with this reason when the running and queued
	// queries have ended.
	ending CloseReason
	run    *bulkRun
	active *activeQuery // set in stateActive
	reason CloseReason  // close reason decided by the server; zero until then

	gotMessage bool     // a message was received; STARTTLS must come first
	handover   *tlsConn // set once STARTTLS moved the connection to crypto/tls

	lastActive  time.Time // last complete message received or query finished
	lastBacklog int       // pending output at the last check
	progressAt  time.Time // last time pending output was seen to shrink or empty

	warnAt     time.Time // last rate-limited warning
	suppressed int       // warnings left out since warnAt
}

// readFrames takes the complete frames out of gnet's input buffer, as many
// as the pipeline allows; a partial frame stays there until the rest
// arrives. It returns gnet.Close when the connection must close.
func (c *conn) readFrames() gnet.Action {
	cfg := &c.srv.cfg
	for c.state != stateClosing && c.ending == 0 && len(c.queue) < cfg.MaxPipelinedQueries {
		n := c.gc.InboundBuffered()
		if n < codec.FrameHeaderLen {
			break
		}
		head, _ := c.gc.Peek(codec.FrameHeaderLen)
		size := int(head[0])<<8 | int(head[1])
		if size < codec.HeaderLen || size > cfg.MaxMessageSize {
			// RFC 5460 section 5.1 framing cannot resynchronise after a bad
			// msg-size, so the connection ends here.
			return c.violation("frame msg-size out of range", slog.Int("msg_size", size), slog.Int("max", cfg.MaxMessageSize))
		}
		if n < codec.FrameHeaderLen+size {
			break
		}
		frame, _ := c.gc.Peek(codec.FrameHeaderLen + size)
		action := c.handleMessage(frame[codec.FrameHeaderLen:])
		_, _ = c.gc.Discard(codec.FrameHeaderLen + size)
		c.srv.metrics.tcpReceived.Add(float64(codec.FrameHeaderLen + size))
		c.lastActive = time.Now()
		if action != gnet.None {
			return action
		}
	}

	if c.state == stateClosing || c.ending != 0 {
		// Nothing that arrives after the decision to close is read; gnet
		// reads on regardless, so the input is dropped to bound memory
		// while the answers drain.
		_, _ = c.gc.Discard(c.gc.InboundBuffered())
		return gnet.None
	}

	// Input beyond what the pipeline explains is a flood: the requestor
	// does not wait for answers.
	if c.gc.InboundBuffered() > c.inputLimit() {
		return c.flooded()
	}
	return gnet.None
}

// flooded ends a connection whose requestor sent more than inputLimit
// octets that the server has not read: it does not wait for answers, and
// gnet can not stop reading to let TCP flow control push back. The
// queries already accepted are not dropped silently:
// each queued one gets a LEASEQUERY-REPLY with QueryTerminated, and the
// running one ends with LEASEQUERY-DONE QueryTerminated (RFC 7653 section
// 9.5: a server aborting a query signals it, then closes). The connection
// closes once those are sent.
func (c *conn) flooded() gnet.Action {
	c.log.Warn("protocol violation", "problem", "too much unread input", "buffered", c.gc.InboundBuffered(),
		"limit", c.inputLimit(), "terminated_queries", len(c.queue)+btoi(c.run != nil))
	c.ending = CloseProtocolViolation
	_, _ = c.gc.Discard(c.gc.InboundBuffered())

	c.terminateQueued("the server is closing the connection because the requestor sent more queries than it reads ahead")

	if c.run != nil {
		// runDone closes the connection after the DONE.
		c.run.cancel(errTerminated)
		return gnet.None
	}
	c.closeAfterDrain(c.ending)
	return gnet.None
}

// terminateQueued sends every queued query a LEASEQUERY-REPLY carrying
// QueryTerminated and msg, and empties the queue.
func (c *conn) terminateQueued(msg string) {
	status := &codec.StatusError{Code: codec.StatusQueryTerminated, Msg: msg}
	for i, r := range c.queue {
		c.reply(r.xid, r.clientID, status)
		c.srv.metrics.countQuery(transportTCP, r.query.QueryType, status.Code.String())
		c.queue[i] = nil
	}
	c.queue = c.queue[:0]
}

// endAfterQueries makes the connection close with reason once the running
// and queued queries are answered, reading nothing more.
func (c *conn) endAfterQueries(reason CloseReason) {
	c.ending = reason
	_, _ = c.gc.Discard(c.gc.InboundBuffered())
	if c.run == nil && len(c.queue) == 0 {
		c.closeAfterDrain(reason)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// inputLimit is the unread input a connection may hold: a full pipeline of
// the largest messages, and at least one read buffer.
func (c *conn) inputLimit() int {
	cfg := &c.srv.cfg
	return max(cfg.MaxPipelinedQueries*(codec.FrameHeaderLen+cfg.MaxMessageSize), 64<<10)
}

// handleMessage dispatches one received message. msg is valid only during
// the call.
func (c *conn) handleMessage(msg []byte) gnet.Action {
	if c.state == stateActive {
		return c.onMessageWhileActive(msg)
	}
	first := !c.gotMessage
	c.gotMessage = true
	if !c.allowed && codec.MsgType(msg[0]) == codec.MsgStartTLS {
		// RFC 7653 section 9.1: a server configured not to take TLS from
		// this requestor answers TLSConnectionRefused. The handshake would
		// only lead to NotAllowed.
		c.refuseStartTLS(xidOf(msg), "requestor "+c.peer.Addr().String()+" is not allowed")
		return c.closeWith(CloseNotAllowed)
	}
	if action, handled := c.secureMode(msg, first); handled {
		return action
	}
	switch codec.MsgType(msg[0]) {
	case codec.MsgLeasequery:
		return c.onLeasequery(msg)
	case codec.MsgActiveLeasequery:
		if c.srv.active != nil {
			return c.onActiveLeasequery(msg)
		}
		// RFC 7653 section 9.2: a server without Active Leasequery answers
		// NotSupported and then closes the connection.
		c.reply(xidOf(msg), nil, &codec.StatusError{Code: codec.StatusNotSupported, Msg: "this server does not support Active Leasequery"})
		c.srv.metrics.countQuery(transportTCP, 0, codec.StatusNotSupported.String())
		return c.closeWith(CloseNotSupported)
	}
	return c.violation("unexpected message type", slog.String("type", codec.MsgType(msg[0]).String()))
}

// onLeasequery checks a LEASEQUERY and queues it, or answers it at once
// when it fails a check.
func (c *conn) onLeasequery(msg []byte) gnet.Action {
	r := &request{}
	verdict, serr := r.parse(append([]byte(nil), msg...), transportTCP, &c.srv.policy)

	if !c.allowed {
		// RFC 5007 section 4.3.3 lets a server answer NotAllowed; over TCP
		// the requestor gets the status and the connection ends.
		c.reply(r.xid, r.clientID, &codec.StatusError{Code: codec.StatusNotAllowed, Msg: "requestor " + c.peer.Addr().String() + " is not allowed"})
		c.srv.metrics.countQuery(transportTCP, r.query.QueryType, codec.StatusNotAllowed.String())
		return c.closeWith(CloseNotAllowed)
	}
	if verdict != verdictAnswer {
		c.reply(r.xid, r.clientID, serr)
		c.srv.metrics.countQuery(transportTCP, r.query.QueryType, statusLabel(serr))
		c.warn("query rejected", slog.String("status", serr.Code.String()), slog.String("detail", serr.Msg))
		return gnet.None
	}
	if c.xidInFlight(r.xid) {
		// RFC 5460 section 7: a transaction-id is unique among the queries
		// on a connection. A reply under the same id could not be told
		// apart from the running query's, so the duplicate gets none.
		c.srv.metrics.countQuery(transportTCP, r.query.QueryType, "duplicate_xid")
		c.warn("duplicate transaction-id dropped", slog.Uint64("xid", uint64(r.xid)))
		return gnet.None
	}

	c.queue = append(c.queue, r)
	if c.state == stateIdle {
		c.startNext()
	}
	return gnet.None
}

// xidInFlight reports whether a running or queued query uses xid.
func (c *conn) xidInFlight(xid uint32) bool {
	if c.run != nil && c.run.job.req.xid == xid {
		return true
	}
	for _, q := range c.queue {
		if q.xid == xid {
			return true
		}
	}
	return false
}

// startNext starts the first queued query.
func (c *conn) startNext() {
	r := c.queue[0]
	c.queue[0] = nil
	c.queue = c.queue[1:]
	c.state = stateBulk
	c.run = startBulkRun(c, r)
}

// runDone is called on the loop when the last chunk of c.run was written.
func (c *conn) runDone(run *bulkRun) {
	if c.run != run || c.state == stateClosing {
		return
	}
	c.run = nil
	c.stopDraining()
	if errors.Is(context.Cause(run.ctx), errShutdown) {
		// The queries read ahead of the one that just ended with
		// QueryTerminated are not dropped silently either.
		c.terminateQueued("the server is shutting down")
	}
	if c.ending != 0 && (run.shutdown || run.job.aborted || len(c.queue) == 0) {
		c.closeAfterDrain(c.ending)
		return
	}
	if run.shutdown {
		c.closeAfterDrain(CloseShutdown)
		return
	}
	if run.job.aborted {
		// RFC 7653 section 9.5: a server that aborts a query closes the
		// connection after the LEASEQUERY-DONE.
		c.closeAfterDrain(CloseQueryAborted)
		return
	}

	c.state = stateIdle
	c.lastActive = time.Now()
	if len(c.queue) > 0 {
		c.startNext()
	}
	// Frames left unread while the pipeline was full are read now.
	if c.readFrames() != gnet.None {
		c.closeNow()
	}
}

// reply writes a LEASEQUERY-REPLY carrying status and nothing else.
func (c *conn) reply(xid uint32, clientID []byte, status *codec.StatusError) {
	h := replyHead{xid: xid, serverID: c.srv.policy.serverID, clientID: clientID, framed: true}
	b, err := h.appendStatusReply(c.loop.scratch[:0], c.srv.clock(), status)
	if err != nil {
		c.log.Error("encoding a status reply failed", "err", err)
		return
	}
	c.loop.scratch = b
	c.write(b)
}

// writeStartTLSRefusal writes the REPLY with TLSConnectionRefused of a
// server without TLS.
func (c *conn) writeStartTLSRefusal(xid uint32) {
	c.refuseStartTLS(xid, "TLS is not available on this server")
}

// refuseStartTLS writes the REPLY with TLSConnectionRefused and why.
func (c *conn) refuseStartTLS(xid uint32, why string) {
	h := replyHead{xid: xid, serverID: c.srv.policy.serverID, framed: true}
	b, start, err := h.begin(c.loop.scratch[:0], codec.MsgReply, c.srv.clock())
	if err == nil {
		b, err = codec.AppendOption(b, codec.OptServerID, h.serverID)
	}
	if err == nil {
		b, err = (&codec.StatusError{Code: codec.StatusTLSConnectionRefused, Msg: why}).AppendOption(b)
	}
	if err == nil {
		b, err = h.end(b, start)
	}
	if err != nil {
		c.log.Error("encoding a STARTTLS reply failed", "err", err)
		return
	}
	c.loop.scratch = b
	c.write(b)
}

// write writes b now; gnet copies what the kernel does not take, so b may
// be reused at once.
func (c *conn) write(b []byte) {
	n, err := c.gc.Write(b)
	if err != nil {
		c.reason = CloseWriteError
		return
	}
	c.srv.metrics.tcpSent.Add(float64(n))
}

// xidOf returns the transaction-id of a client/server message header, or 0
// for a message too short to hold one.
func xidOf(msg []byte) uint32 {
	if len(msg) < codec.HeaderLen {
		return 0
	}
	return uint32(msg[1])<<16 | uint32(msg[2])<<8 | uint32(msg[3])
}

// violation logs a protocol violation and closes the connection.
func (c *conn) violation(what string, attrs ...slog.Attr) gnet.Action {
	args := make([]any, 0, len(attrs)+1)
	args = append(args, slog.String("problem", what))
	for _, a := range attrs {
		args = append(args, a)
	}
	c.log.Warn("protocol violation", args...)
	return c.closeWith(CloseProtocolViolation)
}

// closeWith records reason and returns gnet.Close, for callbacks that close
// by their return value.
func (c *conn) closeWith(reason CloseReason) gnet.Action {
	if c.reason == 0 {
		c.reason = reason
	}
	c.state = stateClosing
	return gnet.Close
}

// closeNow closes the connection from loop code outside OnTraffic.
func (c *conn) closeNow() {
	c.state = stateClosing
	_ = c.gc.Close()
}

// closeAfterDrain closes the connection once its pending output is sent.
// The sweep closes it when the output drains, or as a slow consumer when
// the output stops shrinking.
func (c *conn) closeAfterDrain(reason CloseReason) {
	if c.reason == 0 {
		c.reason = reason
	}
	c.state = stateClosing
	if c.gc.OutboundBuffered() == 0 {
		_ = c.gc.Close()
	}
}

// shutdown stops the connection for a server shutdown: a running query
// ends with QueryTerminated and the connection closes after it; an idle
// connection closes now.
func (c *conn) shutdown() {
	if c.reason == 0 {
		c.reason = CloseShutdown
	}
	if c.run != nil {
		c.run.cancel(errShutdown)
		return
	}
	if c.active != nil {
		// RFC 7653 section 8.4: LEASEQUERY-DONE with QueryTerminated and
		// the base-time is the last message before the close.
		c.active.terminate(c, CloseShutdown, "the server is shutting down")
		return
	}
	c.closeAfterDrain(CloseShutdown)
}

// checkTimeouts enforces the data timeout (no write progress) and the
// idle timeout (nothing received while no query runs).
func (c *conn) checkTimeouts(now time.Time) {
	cfg := &c.srv.cfg
	if c.state == stateActive {
		c.active.checkTimeouts(c, now)
		return
	}
	backlog := c.gc.OutboundBuffered()
	c.notePending(backlog, now)

	switch {
	case !c.allowed && now.Sub(c.openedAt) >= cfg.UnallowedTimeout:
		c.reason = CloseNotAllowed
		c.closeNow()
	case backlog > 0 && now.Sub(c.progressAt) >= cfg.DataTimeout:
		c.warn("requestor stopped reading", slog.Int("pending", backlog), slog.Duration("timeout", cfg.DataTimeout))
		c.reason = CloseSlowConsumer
		c.closeNow()
	case c.state == stateClosing && backlog == 0:
		c.closeNow()
	case c.state == stateIdle && len(c.queue) == 0 && backlog == 0 && now.Sub(c.lastActive) >= cfg.IdleTimeout:
		c.reason = CloseIdle
		c.closeNow()
	}
}

// notePending records write progress: pending output that shrank or
// emptied since the last look.
func (c *conn) notePending(backlog int, now time.Time) {
	if backlog == 0 || c.lastBacklog == 0 || backlog < c.lastBacklog {
		c.progressAt = now
	}
	c.lastBacklog = backlog
}

// checkDrain gives the running query its credit back once the pending
// output fell to the low-water mark.
func (c *conn) checkDrain(now time.Time) {
	if c.active != nil {
		c.active.checkWritable(c)
		return
	}
	backlog := c.gc.OutboundBuffered()
	c.notePending(backlog, now)
	if backlog > creditBacklog*c.srv.cfg.ChunkSize {
		return
	}
	c.stopDraining()
	if c.run != nil {
		c.run.giveCredit()
	}
}

// startDraining puts c on its loop's drain list.
func (c *conn) startDraining() {
	if _, ok := c.loop.draining[c]; ok {
		return
	}
	c.loop.draining[c] = struct{}{}
	if c.srv.drainWaiters.Add(1) == 1 {
		select {
		case c.srv.drainWake <- struct{}{}:
		default:
		}
	}
}

func (c *conn) stopDraining() {
	if c.loop == nil {
		return
	}
	if _, ok := c.loop.draining[c]; ok {
		delete(c.loop.draining, c)
		c.srv.drainWaiters.Add(-1)
	}
}

// closed releases everything the connection holds; gnet calls it through
// OnClose for every connection, including those rejected in OnOpen.
func (c *conn) closed(err error) {
	if c.handover != nil {
		c.releaseHandover()
		return
	}
	s := c.srv
	reason := c.reason
	if reason == 0 {
		reason = closeReasonFor(err)
	}
	if c.run != nil {
		c.run.cancel(errConnClosed)
		c.run = nil
	}
	if c.active != nil {
		c.active.release(c)
	}
	c.stopDraining()
	if c.loop != nil {
		delete(c.loop.conns, c)
	}
	if c.requestor != nil {
		s.requestors.close(c.peer.Addr(), c.requestor)
	}
	if c.unallowedSlot {
		s.unallowed.Add(-1)
	}
	s.conns.Add(-1)
	s.metrics.connections.Dec()
	s.metrics.closed.WithLabelValues(reason.String()).Inc()

	switch {
	case c.loop == nil:
		// Rejected in OnOpen, which logged why.
	case reason == ClosePeerClosed, !c.allowed:
		// Connections from outside Allow come and go at a peer's will;
		// OnOpen warned about the address.
		c.log.Debug("connection closed", "reason", reason.String(), "err", err)
	default:
		c.log.Info("connection closed", "reason", reason.String(), "err", err)
	}
}

// warn logs a warning about the connection at most once per WarnInterval;
// the next warning reports how many were left out.
func (c *conn) warn(msg string, attrs ...slog.Attr) {
	now := time.Now()
	if !c.warnAt.IsZero() && now.Sub(c.warnAt) < c.srv.cfg.WarnInterval {
		c.suppressed++
		return
	}
	args := make([]any, 0, len(attrs)+1)
	for _, a := range attrs {
		args = append(args, a)
	}
	if c.suppressed > 0 {
		args = append(args, slog.Int("suppressed", c.suppressed))
	}
	c.warnAt, c.suppressed = now, 0
	c.log.Warn(msg, args...)
}
