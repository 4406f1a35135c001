package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/fanout"
)

// This file moves a connection from gnet to crypto/tls at STARTTLS and
// serves it there (RFC 7653 sections 8.2 and 9.1). gnet has no TLS, so the
// event loop sends no reply itself: it duplicates the socket, copies the
// bytes it already read past the STARTTLS frame (a requestor may send its
// ClientHello right behind STARTTLS, and gnet may have read it), and closes
// its own descriptor. A goroutine then writes the REPLY, runs the
// handshake and serves the connection with the same query code as the
// event loops: bulk queries through bulkJob, Active Leasequery through a
// fanout group of the connection's own.

// aLongTimeAgo is a deadline in the past: setting it wakes a blocked read
// at once.
var aLongTimeAgo = time.Unix(1, 0)

// pendingReadWindow bounds how long a connection whose bulk query was
// stopped by a shutdown reads the queries pipelined behind it, to reply to
// them with QueryTerminated. The requestor sent them before the reply
// began, so they are already in the socket or in crypto/tls's buffer, and
// the window only has to cover scheduling delays.
const pendingReadWindow = 200 * time.Millisecond

// secureMode applies the connection's first message to secure mode (RFC
// 7653 section 9.1). It reports handled for STARTTLS, which it refuses or
// hands over, and for a plaintext message the configuration does not
// allow, which closes the connection.
func (c *conn) secureMode(msg []byte, first bool) (action gnet.Action, handled bool) {
	s := c.srv
	if codec.MsgType(msg[0]) == codec.MsgStartTLS {
		return c.onStartTLS(msg, first), true
	}
	if s.tls == nil || s.cfg.Insecure {
		return gnet.None, false
	}
	// Secure mode only: a connection that does not begin with STARTTLS is
	// not secured with TLS, and the server must close it.
	c.warn("plaintext message in secure mode; the requestor must send STARTTLS first",
		slog.String("type", codec.MsgType(msg[0]).String()))
	s.metrics.tls.notSecured.Inc()
	return c.closeWith(CloseNotSecured), true
}

// onStartTLS replies to STARTTLS. Without TLS it sends REPLY with
// TLSConnectionRefused and the requestor closes. With TLS it hands the
// connection to a crypto/tls goroutine, which sends the REPLY without
// status code, and returns gnet.Close for gnet's own descriptor.
func (c *conn) onStartTLS(msg []byte, first bool) gnet.Action {
	s := c.srv
	xid := xidOf(msg)
	if s.tls == nil {
		// RFC 7653 section 9.1: a server that will not do TLS answers REPLY
		// with TLSConnectionRefused; the requestor then closes.
		c.writeStartTLSRefusal(xid)
		return gnet.None
	}
	if !first {
		// RFC 7653 section 8.2: STARTTLS is the first message on the
		// connection; after plaintext traffic it cannot secure anything.
		return c.violation("STARTTLS after another message", slog.Uint64("xid", uint64(xid)))
	}

	// The REPLY: SERVERID and the STARTTLS transaction-id, no status code.
	h := replyHead{xid: xid, serverID: s.policy.serverID, framed: true}
	b, start, err := h.begin(c.loop.scratch[:0], codec.MsgReply, s.clock())
	if err == nil {
		b, err = codec.AppendOption(b, codec.OptServerID, h.serverID)
	}
	if err == nil {
		b, err = h.end(b, start)
	}
	if err != nil {
		c.log.Error("encoding the STARTTLS reply failed", "err", err)
		return c.closeWith(CloseTLSHandshake)
	}
	c.loop.scratch = b
	reply := append([]byte(nil), b...)

	// Bytes gnet read past the STARTTLS frame belong to the TLS stream.
	var pending []byte
	if all, err := c.gc.Peek(-1); err == nil && len(all) > codec.FrameHeaderLen+len(msg) {
		pending = append([]byte(nil), all[codec.FrameHeaderLen+len(msg):]...)
	}

	nc, err := dupConn(c.gc)
	if err != nil {
		c.log.Error("handing the connection to TLS failed", "err", err)
		return c.closeWith(CloseTLSHandshake)
	}
	t := newTLSConn(c, nc, pending)
	if !s.tls.add(t) {
		_ = nc.Close()
		return c.closeWith(CloseShutdown)
	}

	// From here the TLS connection owns the connection's counts (total,
	// per requestor, metrics); closed skips them for the gnet side.
	c.handover = t
	c.state = stateClosing
	s.metrics.tls.handovers.Inc()
	c.log.Debug("connection handed over to TLS", "forwarded_bytes", len(pending))
	s.producers.Add(1)
	go t.serve(reply)
	return gnet.Close
}

// dupConn returns a net.Conn on a duplicate of gc's socket, registered
// with the Go runtime's poller.
func dupConn(gc gnet.Conn) (net.Conn, error) {
	fd, err := gc.Dup()
	if err != nil {
		return nil, fmt.Errorf("duplicating the socket: %w", err)
	}
	f := os.NewFile(uintptr(fd), "tcp")
	nc, err := net.FileConn(f) // duplicates fd again
	_ = f.Close()
	if err != nil {
		return nil, fmt.Errorf("adopting the duplicated socket: %w", err)
	}
	return nc, nil
}

// releaseHandover drops the gnet side of a handed-over connection from its
// loop; gnet calls OnClose for it like for any other close.
func (c *conn) releaseHandover() {
	c.stopDraining()
	if c.loop != nil {
		delete(c.loop.conns, c)
	}
}

// handoverConn is the requestor's socket after the handover, as crypto/tls
// reads and writes it.
type handoverConn struct {
	net.Conn

	// pending holds the bytes gnet read past the STARTTLS frame; Read
	// returns them before reading the socket. Only the TLS reader touches
	// it (crypto/tls serializes reads).
	pending []byte

	// writeTimeout, in nanoseconds, gives each Write its own deadline when
	// positive: crypto/tls writes a record at a time, so a connection is
	// timed out only after a whole record makes no progress for that long.
	// That is the data timeout of a bulk query (BULK_LQ_DATA_TIMEOUT) or
	// ACTIVE_LQ_SEND_TIMEOUT of an active query.
	writeTimeout atomic.Int64
}

func (h *handoverConn) Read(b []byte) (int, error) {
	if len(h.pending) > 0 {
		n := copy(b, h.pending)
		h.pending = h.pending[n:]
		if len(h.pending) == 0 {
			h.pending = nil
		}
		return n, nil
	}
	return h.Conn.Read(b)
}

func (h *handoverConn) Write(b []byte) (int, error) {
	if d := time.Duration(h.writeTimeout.Load()); d > 0 {
		_ = h.Conn.SetWriteDeadline(time.Now().Add(d))
	}
	return h.Conn.Write(b)
}

// tlsConn is a connection served by crypto/tls after STARTTLS. One
// goroutine (serve) reads it and writes bulk answers; while an Active
// Leasequery runs, the query's flusher goroutines write it (tlsoutbox.go).
// shutdown and forceClose may be called from any goroutine.
type tlsConn struct {
	srv       *Server
	id        uint64
	peer      netip.AddrPort
	log       *slog.Logger
	requestor *requestor
	allowed   bool

	raw *handoverConn
	tc  *tls.Conn

	// stopping is set by shutdown. runCancel stops the running bulk query
	// with errShutdown, and active is the running Active Leasequery.
	// draining is set while terminatePending reads, so that shutdown does
	// not move the read deadline into the past. mu guards the three.
	stopping  atomic.Bool
	mu        sync.Mutex
	runCancel context.CancelCauseFunc
	active    *tlsActive
	draining  bool

	runCtx   context.Context // of the running bulk query; serve only
	writeErr error           // the first failed write; only the goroutine that writes touches it
}

func newTLSConn(c *conn, nc net.Conn, pending []byte) *tlsConn {
	raw := &handoverConn{Conn: nc, pending: pending}
	return &tlsConn{
		srv:       c.srv,
		id:        c.id,
		peer:      c.peer,
		log:       c.log.With("tls", true),
		requestor: c.requestor,
		allowed:   c.allowed,
		raw:       raw,
	}
}

// serve runs the connection: REPLY, handshake, then queries until the
// connection ends.
func (t *tlsConn) serve(reply []byte) {
	defer t.srv.producers.Done()
	reason, err := t.handshake(reply)
	if reason == 0 {
		reason, err = t.readLoop()
	}
	t.finish(reason, err)
}

// handshake sends the REPLY to STARTTLS and runs the TLS handshake, both
// within the handshake timeout. It returns a close reason on failure.
func (t *tlsConn) handshake(reply []byte) (CloseReason, error) {
	s := t.srv
	m := &s.metrics.tls
	deadline := time.Now().Add(s.tls.timeout)
	_ = t.raw.SetDeadline(deadline)
	if t.stopping.Load() {
		return CloseShutdown, nil
	}
	n, err := t.raw.Write(reply)
	if err != nil {
		m.handshakes.WithLabelValues("failed").Inc()
		return CloseWriteError, err
	}
	m.sent.Add(float64(n))

	t.tc = tls.Server(t.raw, s.tls.base)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	err = t.tc.HandshakeContext(ctx)
	cancel()
	switch {
	case err == nil:
	case t.stopping.Load():
		return CloseShutdown, err
	case errors.Is(err, errCertNotAllowed):
		m.handshakes.WithLabelValues("not_allowed").Inc()
		t.log.Warn("requestor certificate not on the TLS allow-list", "err", err)
		return CloseNotAllowed, err
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		m.handshakes.WithLabelValues("timeout").Inc()
		t.log.Warn("TLS handshake timed out", "timeout", s.tls.timeout)
		return CloseTLSHandshake, err
	default:
		m.handshakes.WithLabelValues("failed").Inc()
		t.log.Warn("TLS handshake failed", "err", err)
		return CloseTLSHandshake, err
	}
	_ = t.raw.SetDeadline(time.Time{})

	m.handshakes.WithLabelValues("ok").Inc()
	cs := t.tc.ConnectionState()
	leaf := cs.PeerCertificates[0]
	entry, _ := s.tls.match(leaf)
	t.log.Info("TLS established", "version", tls.VersionName(cs.Version),
		"cipher_suite", tls.CipherSuiteName(cs.CipherSuite),
		"subject", leaf.Subject.String(), "allowed_by", entry.String())
	return 0, nil
}

// readLoop reads and serves queries until the connection ends, and
// returns why it ended.
func (t *tlsConn) readLoop() (CloseReason, error) {
	cfg := &t.srv.cfg
	for {
		_ = t.raw.SetReadDeadline(time.Now().Add(cfg.IdleTimeout))
		if t.stopping.Load() {
			// Checked after the deadline is set: shutdown sets stopping
			// before it moves the deadline into the past, so one of the two
			// stops the read.
			return CloseShutdown, nil
		}
		msg, reason, err := t.readMessage()
		if reason != 0 {
			return reason, err
		}
		if reason, err := t.handleMessage(msg); reason != 0 {
			return reason, err
		}
	}
}

// readMessage reads one framed message (RFC 5460 section 5.1). It returns
// the close reason when the connection cannot go on.
func (t *tlsConn) readMessage() ([]byte, CloseReason, error) {
	cfg := &t.srv.cfg
	var head [codec.FrameHeaderLen]byte
	if _, err := io.ReadFull(t.tc, head[:]); err != nil {
		return nil, t.readFailure(err, false), err
	}
	size := int(head[0])<<8 | int(head[1])
	if size < codec.HeaderLen || size > cfg.MaxMessageSize {
		t.log.Warn("protocol violation", "problem", "frame msg-size out of range", "msg_size", size, "max", cfg.MaxMessageSize)
		return nil, CloseProtocolViolation, nil
	}
	msg := make([]byte, size)
	if _, err := io.ReadFull(t.tc, msg); err != nil {
		return nil, t.readFailure(err, true), err
	}
	t.srv.metrics.tls.received.Add(float64(codec.FrameHeaderLen + size))
	return msg, 0, nil
}

// readFailure maps a read error to a close reason; partial is set when the
// error came in the middle of a frame.
func (t *tlsConn) readFailure(err error, partial bool) CloseReason {
	switch {
	case t.stopping.Load():
		return CloseShutdown
	case errors.Is(err, os.ErrDeadlineExceeded):
		return CloseIdle
	case !partial && errors.Is(err, io.EOF):
		return ClosePeerClosed
	}
	return closeReasonFor(err)
}

// handleMessage dispatches one received message. It returns a close reason
// when the connection must end.
func (t *tlsConn) handleMessage(msg []byte) (CloseReason, error) {
	switch codec.MsgType(msg[0]) {
	case codec.MsgLeasequery:
		return t.onLeasequery(msg)
	case codec.MsgActiveLeasequery:
		return t.onActiveLeasequery(msg)
	}
	t.log.Warn("protocol violation", "problem", "unexpected message type", "type", codec.MsgType(msg[0]).String())
	return CloseProtocolViolation, nil
}

// onLeasequery answers one LEASEQUERY: a status reply for a query that
// fails its checks, else the bulk answer streamed on this goroutine.
// Queries pipelined behind it wait in the socket until it is done. When a
// shutdown stops it, terminatePending replies to them.
func (t *tlsConn) onLeasequery(msg []byte) (CloseReason, error) {
	s := t.srv
	r := &request{}
	verdict, serr := r.parse(msg, transportTCP, &s.policy)

	if !t.allowed {
		// RFC 5007 section 4.3.3 lets a server answer NotAllowed; the
		// address allow-list applies inside TLS as outside.
		t.reply(r.xid, r.clientID, &codec.StatusError{Code: codec.StatusNotAllowed, Msg: "requestor " + t.peer.Addr().String() + " is not allowed"})
		s.metrics.countQuery(transportTCP, r.query.QueryType, codec.StatusNotAllowed.String())
		return CloseNotAllowed, nil
	}
	if verdict != verdictAnswer {
		t.reply(r.xid, r.clientID, serr)
		s.metrics.countQuery(transportTCP, r.query.QueryType, statusLabel(serr))
		t.log.Warn("query rejected", "status", serr.Code.String(), "detail", serr.Msg)
		if t.writeErr != nil {
			return t.writeFailure(), t.writeErr
		}
		return 0, nil
	}
	return t.runBulk(r)
}

// runBulk streams the answer to r and returns a close reason when the
// connection must end after it.
func (t *tlsConn) runBulk(r *request) (CloseReason, error) {
	s := t.srv
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	t.mu.Lock()
	t.runCtx, t.runCancel = ctx, cancel
	t.mu.Unlock()
	if t.stopping.Load() {
		cancel(errShutdown)
	}
	defer func() {
		t.mu.Lock()
		t.runCancel = nil
		t.mu.Unlock()
	}()
	t.raw.writeTimeout.Store(int64(s.cfg.DataTimeout))

	job := newBulkJob(r, &s.policy, s.src, s.clock, s.cfg.ChunkSize, s.metrics)
	buf := make([]byte, 0, s.cfg.ChunkSize+s.cfg.ChunkSize/4)
	var out bulkOutcome
	if err := t.requestor.acquire(ctx); err != nil {
		out = job.abort(ctx, buf, false, err, t.emit)
	} else {
		out = job.run(ctx, buf, t.emit)
		t.requestor.release()
	}
	s.metrics.countQuery(transportTCP, r.query.QueryType, out.status)
	s.noteEncodeTrouble(t.log, r.xid, &out)

	switch {
	case t.writeErr != nil:
		return t.writeFailure(), t.writeErr
	case errors.Is(out.err, errShutdown):
		t.terminatePending()
		return CloseShutdown, nil
	case out.abort:
		// RFC 7653 section 9.5: a server that aborts a query closes the
		// connection after the LEASEQUERY-DONE.
		t.log.Error("bulk query failed", "xid", r.xid, "type", queryLabel(r.query.QueryType), "err", out.err)
		return CloseQueryAborted, out.err
	}
	t.log.Debug("bulk query done", "xid", r.xid, "type", queryLabel(r.query.QueryType),
		"bindings", out.bindings, "status", out.status)
	return 0, nil
}

// terminatePending replies to each query pipelined behind a bulk query
// that a shutdown stopped with a LEASEQUERY-REPLY carrying QueryTerminated,
// as the event loops do for the queries they read ahead.
// It reads for at most pendingReadWindow and at most MaxPipelinedQueries
// messages, and stops at anything but a query: the connection closes next.
func (t *tlsConn) terminatePending() {
	s := t.srv
	t.mu.Lock()
	t.draining = true
	_ = t.raw.SetReadDeadline(time.Now().Add(pendingReadWindow))
	t.mu.Unlock()

	status := &codec.StatusError{Code: codec.StatusQueryTerminated, Msg: "the server is shutting down"}
	for range s.cfg.MaxPipelinedQueries {
		msg, reason, _ := t.readMessage()
		if reason != 0 {
			return
		}
		switch codec.MsgType(msg[0]) {
		case codec.MsgLeasequery:
			r := &request{}
			_, _ = r.parse(msg, transportTCP, &s.policy)
			t.reply(r.xid, r.clientID, status)
			s.metrics.countQuery(transportTCP, r.query.QueryType, status.Code.String())
		case codec.MsgActiveLeasequery:
			t.reply(xidOf(msg), nil, status)
			s.metrics.active.countQuery(fanout.Filter{}, status.Code.String())
		default:
			return
		}
		if t.writeErr != nil {
			return
		}
	}
}

// emit is the emitFunc of a bulk query on a TLS connection: it writes the
// chunk before returning, so the buffer is free again at once. Flow
// control is the blocking write; the data timeout is the per-record write
// deadline of handoverConn.
func (t *tlsConn) emit(chunk []byte, last bool) ([]byte, error) {
	cause := context.Cause(t.runCtx)
	if cause != nil && !errors.Is(cause, errShutdown) {
		return chunk[:0], cause
	}
	if err := t.write(chunk); err != nil {
		return chunk[:0], &connError{err: err}
	}
	if cause != nil {
		// A shutdown: the chunk went out, and the job ends with DONE.
		return chunk[:0], errShutdown
	}
	return chunk[:0], nil
}

// write writes b through TLS and records the first failure.
func (t *tlsConn) write(b []byte) error {
	if t.writeErr != nil {
		return t.writeErr
	}
	n, err := t.tc.Write(b)
	t.srv.metrics.tls.sent.Add(float64(n))
	if err != nil {
		t.writeErr = err
	}
	return err
}

// writeFailure returns the close reason of the recorded write error: a
// requestor that stopped reading for the write timeout is a slow consumer.
func (t *tlsConn) writeFailure() CloseReason {
	if errors.Is(t.writeErr, os.ErrDeadlineExceeded) {
		t.log.Warn("requestor stopped reading", "timeout", time.Duration(t.raw.writeTimeout.Load()))
		return CloseSlowConsumer
	}
	if t.stopping.Load() {
		return CloseShutdown
	}
	return CloseWriteError
}

// reply writes a LEASEQUERY-REPLY carrying status and nothing else.
func (t *tlsConn) reply(xid uint32, clientID []byte, status *codec.StatusError) {
	s := t.srv
	h := replyHead{xid: xid, serverID: s.policy.serverID, clientID: clientID, framed: true}
	b, err := h.appendStatusReply(nil, s.clock(), status)
	if err != nil {
		t.log.Error("encoding a status reply failed", "err", err)
		return
	}
	t.raw.writeTimeout.Store(int64(s.cfg.DataTimeout))
	_ = t.write(b)
}

// shutdown stops the connection for a server shutdown: a running bulk
// query ends with QueryTerminated, an active one with LEASEQUERY-DONE, and
// an idle connection or one still in its handshake closes at once. Safe
// from any goroutine.
func (t *tlsConn) shutdown() {
	t.stopping.Store(true)
	t.mu.Lock()
	if t.runCancel != nil {
		t.runCancel(errShutdown)
	}
	a := t.active
	t.mu.Unlock()
	if a != nil {
		// The DONE must be queued before the read wakes up.
		a.stop()
	}
	t.mu.Lock()
	if !t.draining {
		_ = t.raw.SetReadDeadline(aLongTimeAgo)
	}
	t.mu.Unlock()
}

// forceClose closes the socket, which fails every blocked read and write.
// Safe from any goroutine.
func (t *tlsConn) forceClose() {
	t.stopping.Store(true)
	_ = t.raw.Close()
}

// finish closes the connection and releases what it holds: the counts it
// took over from the gnet side, and its TLS registration.
func (t *tlsConn) finish(reason CloseReason, err error) {
	s := t.srv
	if t.tc != nil && reason != CloseSlowConsumer && reason != CloseWriteError {
		// Close sends close_notify under a deadline of its own; a per-write
		// deadline would replace it.
		t.raw.writeTimeout.Store(0)
		_ = t.tc.Close()
	} else {
		_ = t.raw.Close()
	}

	s.tls.remove(t)
	if t.requestor != nil {
		s.requestors.close(t.peer.Addr(), t.requestor)
	}
	s.conns.Add(-1)
	s.metrics.connections.Dec()
	s.metrics.closed.WithLabelValues(reason.String()).Inc()
	if reason == ClosePeerClosed {
		t.log.Debug("connection closed", "reason", reason.String(), "err", err)
		return
	}
	t.log.Info("connection closed", "reason", reason.String(), "err", err)
}
