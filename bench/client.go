package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/sys/unix"

	"github.com/alqd/alqd/codec"
)

// Latency histograms count microseconds from 1 µs to 100 s with three
// significant digits.
const (
	histMin     = 1
	histMax     = 100_000_000
	histSigFigs = 3
)

func newLatencyHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(histMin, histMax, histSigFigs)
}

// recordLatency adds one latency in nanoseconds to h, clamped to its range.
func recordLatency(h *hdrhistogram.Histogram, ns int64) {
	us := ns / 1000
	if us < histMin {
		us = histMin
	}
	if us > histMax {
		us = histMax
	}
	h.RecordValue(us)
}

// connectArgs is the connect request of a client child: the server, the
// number of connections and how they behave.
type connectArgs struct {
	// Kind is the protocol: kindLQ (ACTIVELEASEQUERY over TCP, for alqd and
	// the raw and goroutine contenders), kindNATS (nats.go subscribers) or
	// kindNATSRaw (NATS protocol subscribers that never read after SUB).
	Kind string `json:"kind"`
	Addr string `json:"addr"` // host:port of the server
	// Conns is the number of connections to open.
	Conns int `json:"conns"`
	// FirstKey is the relay key of the first connection; connection i
	// subscribes to key FirstKey+i when Filtered is set.
	FirstKey uint32 `json:"first_key"`
	Filtered bool   `json:"filtered"`
	// NoQuery connects without sending ACTIVELEASEQUERY: a connection
	// counts as subscribed once connected (idle plaintext connections).
	NoQuery bool `json:"no_query"`
	// StallEvery makes every n-th connection (the first of each n) stop
	// reading once subscribed; 0 stalls none.
	StallEvery int `json:"stall_every"`
	// Source is the local IPv4 address to connect from, "" for any.
	Source string `json:"source"`
	// DecodeEvery fully decodes every n-th message the child receives (at
	// least 1); the others get their framing and message type checked.
	DecodeEvery int `json:"decode_every"`
	// MaxConnecting bounds the connections being established at once.
	MaxConnecting int `json:"max_connecting"`
}

// Connection kinds of connectArgs.Kind.
const (
	kindLQ      = "lq"
	kindNATS    = "nats"
	kindNATSRaw = "nats-raw"
)

// connectResult reports how the connections went.
type connectResult struct {
	Connected  int    `json:"connected"`
	Failed     int    `json:"failed"`
	FirstError string `json:"first_error,omitempty"`
}

// flowStats counts what one class of connections (healthy or stalled)
// received.
type flowStats struct {
	Messages int64 `json:"messages"` // LEASEQUERY-DATA messages (or NATS MSGs)
	Bytes    int64 `json:"bytes"`    // octets, framing included
	Closed   int   `json:"closed"`   // connections the server closed or reset
}

// clientStats is the report of a client child.
type clientStats struct {
	Subscribed       int                    `json:"subscribed"`
	Rejected         int                    `json:"rejected"`     // subscriptions the server rejected with an error status
	ClosedEarly      int                    `json:"closed_early"` // connections the server closed before accepting the subscription
	Healthy          flowStats              `json:"healthy"`
	Stalled          flowStats              `json:"stalled"`
	Other            int64                  `json:"other"` // messages without a binding: keepalives and statuses
	Decoded          int64                  `json:"decoded"`
	DecodeErrors     int64                  `json:"decode_errors"`
	FirstDecodeError string                 `json:"first_decode_error,omitempty"`
	FirstRecv        int64                  `json:"first_recv"` // Unix ns of the first message, 0 for none
	LastRecv         int64                  `json:"last_recv"`  // Unix ns of the last message
	Latency          *hdrhistogram.Snapshot `json:"latency"`    // µs from publish to receipt, sampled messages
}

// merge adds o to s.
func (s *clientStats) merge(o *clientStats) {
	s.Subscribed += o.Subscribed
	s.Rejected += o.Rejected
	s.ClosedEarly += o.ClosedEarly
	s.Healthy.add(o.Healthy)
	s.Stalled.add(o.Stalled)
	s.Other += o.Other
	s.Decoded += o.Decoded
	s.DecodeErrors += o.DecodeErrors
	if s.FirstDecodeError == "" {
		s.FirstDecodeError = o.FirstDecodeError
	}
	if o.FirstRecv != 0 && (s.FirstRecv == 0 || o.FirstRecv < s.FirstRecv) {
		s.FirstRecv = o.FirstRecv
	}
	s.LastRecv = max(s.LastRecv, o.LastRecv)
}

func (f *flowStats) add(o flowStats) {
	f.Messages += o.Messages
	f.Bytes += o.Bytes
	f.Closed += o.Closed
}

// receiveStats is the counting state shared by every client kind: the stats
// plus the histogram, guarded by mu.
type receiveStats struct {
	mu    sync.Mutex
	stats clientStats
	hist  *hdrhistogram.Histogram
}

func newReceiveStats() *receiveStats {
	return &receiveStats{hist: newLatencyHistogram()}
}

// decodeError counts a malformed message and keeps the first error text.
// The caller holds mu.
func (r *receiveStats) decodeErrorLocked(err error) {
	r.stats.DecodeErrors++
	if r.stats.FirstDecodeError == "" {
		r.stats.FirstDecodeError = err.Error()
	}
}

// decodedLocked decodes a sampled message with d, received at now (Unix
// ns), counts it, and records its latency or its decode error. The caller
// holds mu.
func (r *receiveStats) decodedLocked(d *probeDecoder, msg []byte, now int64) {
	t, _, stamp, hasProbe, err := d.decode(msg)
	r.stats.Decoded++
	switch {
	case err != nil:
		r.decodeErrorLocked(err)
	case t != codec.MsgLeasequeryData:
		r.decodeErrorLocked(fmt.Errorf("received a %v, want LEASEQUERY-DATA", t))
	case hasProbe:
		recordLatency(r.hist, now-stamp)
	}
}

// snapshot returns a copy of the stats with the histogram exported, and
// starts over when reset is set. Subscriptions and closes are never reset.
func (r *receiveStats) snapshot(reset bool) clientStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.stats
	out.Latency = r.hist.Export()
	if reset {
		r.stats = clientStats{
			Subscribed:  r.stats.Subscribed,
			Rejected:    r.stats.Rejected,
			ClosedEarly: r.stats.ClosedEarly,
			Healthy:     flowStats{Closed: r.stats.Healthy.Closed},
			Stalled:     flowStats{Closed: r.stats.Stalled.Closed},
		}
		r.hist.Reset()
	}
	return out
}

// lqConn states.
const (
	lqConnecting = iota
	lqSubscribing
	lqLive
	lqStalled
	lqClosed
)

// lqConn is one client connection of the epoll client.
type lqConn struct {
	fd    int
	index int
	state uint8
	stall bool
	carry []byte // bytes of an incomplete frame
}

// lqClient opens many ACTIVELEASEQUERY connections and reads them from one
// epoll loop. It exists so that the receiving side costs the same for
// every contender and as little CPU as possible on a shared machine.
type lqClient struct {
	args   connectArgs
	addr   unix.SockaddrInet4
	src    *unix.SockaddrInet4
	epfd   int
	conns  map[int]*lqConn // by fd, owned by the loop
	connMu sync.Mutex      // guards conns while the connector adds to it
	slots  chan struct{}   // connection attempts in flight
	rs     *receiveStats
	dec    probeDecoder
	buf    []byte
	closed atomic.Bool
	done   chan struct{}

	connected, failed atomic.Int64
	errMu             sync.Mutex
	firstErr          string
}

// newLQClient prepares a client for args; start connects.
func newLQClient(args connectArgs) (*lqClient, error) {
	ap, err := netip.ParseAddrPort(args.Addr)
	if err != nil || !ap.Addr().Is4() {
		return nil, fmt.Errorf("bench: server address %q is not an IPv4 host:port", args.Addr)
	}
	c := &lqClient{
		args:  args,
		addr:  unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()},
		conns: make(map[int]*lqConn, args.Conns),
		slots: make(chan struct{}, max(args.MaxConnecting, 1)),
		rs:    newReceiveStats(),
		buf:   make([]byte, 256<<10),
		done:  make(chan struct{}),
	}
	if args.Source != "" {
		src, err := netip.ParseAddr(args.Source)
		if err != nil || !src.Is4() {
			return nil, fmt.Errorf("bench: source address %q is not an IPv4 address", args.Source)
		}
		c.src = &unix.SockaddrInet4{Addr: src.As4()}
	}
	if c.args.DecodeEvery < 1 {
		c.args.DecodeEvery = 1
	}
	c.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("bench: epoll_create1: %w", err)
	}
	go c.loop()
	return c, nil
}

// connect opens every connection and returns once each has connected or
// failed, or when deadline passes.
func (c *lqClient) connect(deadline time.Time) connectResult {
	for i := 0; i < c.args.Conns; i++ {
		select {
		case c.slots <- struct{}{}:
		case <-time.After(time.Until(deadline)):
			c.fail(fmt.Errorf("connecting timed out after %d of %d connections", i, c.args.Conns))
			return c.result()
		}
		if err := c.dial(i); err != nil {
			<-c.slots
			c.fail(err)
		}
	}
	for time.Now().Before(deadline) && int(c.connected.Load()+c.failed.Load()) < c.args.Conns {
		time.Sleep(5 * time.Millisecond)
	}
	return c.result()
}

func (c *lqClient) result() connectResult {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return connectResult{Connected: int(c.connected.Load()), Failed: int(c.failed.Load()), FirstError: c.firstErr}
}

func (c *lqClient) fail(err error) {
	c.failed.Add(1)
	c.errMu.Lock()
	if c.firstErr == "" {
		c.firstErr = err.Error()
	}
	c.errMu.Unlock()
}

// dial starts a non-blocking connect for connection i.
func (c *lqClient) dial(i int) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	if c.src != nil {
		// Without IP_BIND_ADDRESS_NO_PORT, bind picks the ephemeral port
		// before the destination is known, and a source address runs out
		// of ports after about 28,000 connections in total.
		unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
		if err := unix.Bind(fd, c.src); err != nil {
			unix.Close(fd)
			return fmt.Errorf("bind %s: %w", c.args.Source, err)
		}
	}
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)

	conn := &lqConn{fd: fd, index: i, stall: c.args.StallEvery > 0 && i%c.args.StallEvery == 0}
	c.connMu.Lock()
	c.conns[fd] = conn
	c.connMu.Unlock()

	err = unix.Connect(fd, &c.addr)
	if err != nil && !errors.Is(err, unix.EINPROGRESS) {
		c.forget(fd)
		return fmt.Errorf("connect %s: %w", c.args.Addr, err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLOUT, Fd: int32(fd)}
	if err := unix.EpollCtl(c.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		c.forget(fd)
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	return nil
}

func (c *lqClient) forget(fd int) {
	c.connMu.Lock()
	delete(c.conns, fd)
	c.connMu.Unlock()
	unix.Close(fd)
}

func (c *lqClient) lookup(fd int) *lqConn {
	c.connMu.Lock()
	defer c.connMu.Unlock()
	return c.conns[fd]
}

// loop is the client's single event loop.
func (c *lqClient) loop() {
	defer close(c.done)
	events := make([]unix.EpollEvent, 256)
	for !c.closed.Load() {
		n, err := unix.EpollWait(c.epfd, events, 100)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			c.fail(fmt.Errorf("epoll_wait: %w", err))
			return
		}
		now := time.Now().UnixNano()
		for _, ev := range events[:n] {
			conn := c.lookup(int(ev.Fd))
			if conn == nil || conn.state == lqClosed {
				continue
			}
			if conn.state == lqConnecting {
				c.connected1(conn)
				continue
			}
			c.read(conn, now)
		}
	}
}

// connected1 finishes the connect of conn and sends its query.
func (c *lqClient) connected1(conn *lqConn) {
	defer func() { <-c.slots }()
	soerr, err := unix.GetsockoptInt(conn.fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err == nil && soerr != 0 {
		err = unix.Errno(soerr)
	}
	if err != nil {
		c.fail(fmt.Errorf("connect %s: %w", c.args.Addr, err))
		c.closeConn(conn, false)
		return
	}
	c.connected.Add(1)
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(conn.fd)}
	if c.args.NoQuery {
		conn.state = lqLive
		c.subscribed(conn)
	} else {
		q := activeQuery(uint32(conn.index), c.args.Filtered, c.args.FirstKey+uint32(conn.index))
		if n, err := unix.Write(conn.fd, q); err != nil || n != len(q) {
			c.fail(fmt.Errorf("sending ACTIVELEASEQUERY: wrote %d of %d octets: %v", n, len(q), err))
			c.closeConn(conn, false)
			return
		}
		conn.state = lqSubscribing
	}
	if conn.state == lqStalled {
		unix.EpollCtl(c.epfd, unix.EPOLL_CTL_DEL, conn.fd, nil)
		return
	}
	unix.EpollCtl(c.epfd, unix.EPOLL_CTL_MOD, conn.fd, &ev)
}

// subscribed marks conn as accepted by the server; a connection chosen to
// stall stops reading here.
func (c *lqClient) subscribed(conn *lqConn) {
	c.rs.mu.Lock()
	c.rs.stats.Subscribed++
	c.rs.mu.Unlock()
	if conn.stall {
		conn.state = lqStalled
	}
}

// read drains what the kernel has for conn and handles every complete frame.
func (c *lqClient) read(conn *lqConn, now int64) {
	n, err := unix.Read(conn.fd, c.buf)
	switch {
	case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR):
		return
	case err != nil || n == 0:
		c.closeConn(conn, true)
		return
	}
	data := c.buf[:n]

	c.rs.mu.Lock()
	defer c.rs.mu.Unlock()
	// Complete a frame split across reads first, copying only its bytes.
	for len(conn.carry) > 0 && len(data) > 0 {
		take := min(frameNeed(conn.carry), len(data))
		conn.carry = append(conn.carry, data[:take]...)
		data = data[take:]
		if frameNeed(conn.carry) > 0 {
			continue
		}
		if _, err := c.frames(conn, conn.carry, now); err != nil {
			c.closeConnLocked(conn, true)
			return
		}
		conn.carry = conn.carry[:0]
	}
	if len(conn.carry) > 0 {
		return
	}
	if cap(conn.carry) > 4<<10 {
		conn.carry = nil
	}

	rest, err := c.frames(conn, data, now)
	if err != nil {
		c.closeConnLocked(conn, true)
		return
	}
	conn.carry = append(conn.carry, rest...)
	if conn.state == lqStalled {
		unix.EpollCtl(c.epfd, unix.EPOLL_CTL_DEL, conn.fd, nil)
	}
}

// frameNeed returns how many more octets b, the start of a frame, needs to
// hold the whole frame.
func frameNeed(b []byte) int {
	if len(b) < codec.FrameHeaderLen {
		return codec.FrameHeaderLen - len(b)
	}
	return max(codec.FrameHeaderLen+int(binary.BigEndian.Uint16(b))-len(b), 0)
}

// frames handles the complete frames at the start of data and returns the
// incomplete rest. A framing error is counted as a decode error and ends the
// connection. The caller holds rs.mu.
func (c *lqClient) frames(conn *lqConn, data []byte, now int64) ([]byte, error) {
	st := &c.rs.stats
	flow := &st.Healthy
	if conn.stall {
		flow = &st.Stalled
	}
	for len(data) >= codec.FrameHeaderLen {
		size := int(binary.BigEndian.Uint16(data))
		if size < codec.HeaderLen {
			err := fmt.Errorf("frame with msg-size %d on connection %d", size, conn.index)
			c.rs.decodeErrorLocked(err)
			return nil, err
		}
		if len(data) < codec.FrameHeaderLen+size {
			break
		}
		msg := data[codec.FrameHeaderLen : codec.FrameHeaderLen+size]
		data = data[codec.FrameHeaderLen+size:]

		if conn.state == lqSubscribing {
			if err := c.subscribeReply(conn, msg); err != nil {
				return nil, err
			}
			continue
		}
		if !hasClientData(msg) {
			// A keepalive (RFC 7653 section 6.4) or a status carries no
			// binding and is no delivery.
			st.Other++
			continue
		}
		flow.Messages++
		flow.Bytes += int64(codec.FrameHeaderLen + size)
		if st.FirstRecv == 0 {
			st.FirstRecv = now
		}
		st.LastRecv = now
		// Sampling counts messages of the whole client, so that
		// connections that get few messages (filtered runs) are sampled
		// too.
		if flow.Messages%int64(c.args.DecodeEvery) != 0 {
			if t := codec.MsgType(msg[0]); t != codec.MsgLeasequeryData {
				c.rs.decodeErrorLocked(fmt.Errorf("connection %d received a %v, want LEASEQUERY-DATA", conn.index, t))
			}
			continue
		}
		c.decodeLocked(msg, now)
	}
	return data, nil
}

// subscribeReply handles the first message of a connection: the
// LEASEQUERY-REPLY that accepts or rejects the ACTIVELEASEQUERY.
func (c *lqClient) subscribeReply(conn *lqConn, msg []byte) error {
	t, _, _, _, err := c.dec.decode(msg)
	var status *codec.StatusError
	switch {
	case errors.As(err, &status):
		c.rs.stats.Rejected++
		if c.rs.stats.FirstDecodeError == "" {
			c.rs.stats.FirstDecodeError = fmt.Sprintf("subscription rejected: %v", status)
		}
		return err
	case err != nil:
		c.rs.decodeErrorLocked(err)
		return err
	case t != codec.MsgLeasequeryReply:
		err := fmt.Errorf("connection %d got a %v before LEASEQUERY-REPLY", conn.index, t)
		c.rs.decodeErrorLocked(err)
		return err
	}
	conn.state = lqLive
	c.rs.stats.Subscribed++
	if conn.stall {
		conn.state = lqStalled
	}
	return nil
}

// hasClientData reports whether msg, a client/server message, has an
// OPTION_CLIENT_DATA among its top-level options. It walks only the option
// headers, so that every message can be told from a keepalive cheaply.
func hasClientData(msg []byte) bool {
	for b := msg[codec.HeaderLen:]; len(b) >= codec.OptionHeaderLen; {
		code := codec.OptionCode(binary.BigEndian.Uint16(b))
		size := int(binary.BigEndian.Uint16(b[2:]))
		if code == codec.OptClientData {
			return true
		}
		if len(b) < codec.OptionHeaderLen+size {
			return false
		}
		b = b[codec.OptionHeaderLen+size:]
	}
	return false
}

// decodeLocked fully decodes one message and records its latency. The
// caller holds rs.mu.
func (c *lqClient) decodeLocked(msg []byte, now int64) {
	c.rs.decodedLocked(&c.dec, msg, now)
}

// closeConn closes conn; byServer counts it as closed by the server.
func (c *lqClient) closeConn(conn *lqConn, byServer bool) {
	c.rs.mu.Lock()
	defer c.rs.mu.Unlock()
	c.closeConnLocked(conn, byServer)
}

// closeConnLocked is closeConn for a caller that holds rs.mu.
func (c *lqClient) closeConnLocked(conn *lqConn, byServer bool) {
	if conn.state == lqClosed {
		return
	}
	subscribed := conn.state == lqLive || conn.state == lqStalled
	conn.state = lqClosed
	unix.EpollCtl(c.epfd, unix.EPOLL_CTL_DEL, conn.fd, nil)
	unix.Close(conn.fd)
	c.connMu.Lock()
	delete(c.conns, conn.fd)
	c.connMu.Unlock()
	switch {
	case !byServer:
	case !subscribed:
		c.rs.stats.ClosedEarly++
	case conn.stall:
		c.rs.stats.Stalled.Closed++
	default:
		c.rs.stats.Healthy.Closed++
	}
}

// stats returns the counters, starting them over when reset is set.
func (c *lqClient) stats(reset bool) clientStats { return c.rs.snapshot(reset) }

// close stops the loop and closes every connection.
func (c *lqClient) close() {
	if c.closed.Swap(true) {
		return
	}
	<-c.done
	c.connMu.Lock()
	for fd := range c.conns {
		unix.Close(fd)
	}
	c.conns = nil
	c.connMu.Unlock()
	unix.Close(c.epfd)
}
