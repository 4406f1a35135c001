package requestor

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/alqd/alqd/codec"
)

// xidSpace is the number of 24-bit transaction-ids.
const xidSpace = 1 << 24

// maxCompleted bounds how many finished transaction-ids a Conn remembers
// to recognise a late message for a query that already completed.
const maxCompleted = 64

// aLongTimeAgo is a deadline in the past: setting it wakes a blocked read
// or write at once.
var aLongTimeAgo = time.Unix(1, 0)

// Conn is one TCP connection to a leasequery server, in insecure mode or,
// after STARTTLS, over TLS. It runs one query at a time: Bulk and
// BulkPipelined may follow each other on one Conn (RFC 7653 section 8.7),
// Active runs until the connection ends. A Conn is not safe for concurrent
// use, except Close, which may be called from any goroutine. The first
// error that leaves the byte stream unusable is sticky: every later call
// returns it.
type Conn struct {
	cfg    Config
	server string

	raw    net.Conn // the TCP connection
	nc     net.Conn // raw, or TLS over it after STARTTLS
	frames *codec.FrameReader
	dec    messageDecoder
	wbuf   []byte

	xidNext   uint32
	xidUsed   int
	completed []uint32 // transaction-ids of recently finished queries, oldest first

	serverID []byte
	tlsState *tls.ConnectionState
	received bool // a whole message has arrived since the connection was secured

	mu  sync.Mutex // guards err
	err error
}

// Dial opens a TCP connection to cfg.Server and, when cfg.TLS is set, runs
// STARTTLS on it. Unreachable servers give an error wrapping ErrUnreachable;
// a failed STARTTLS gives a *TLSError. With TLS 1.3 a server that rejects
// the requestor certificate is only seen at the first read, so the first
// query on the Conn returns that *TLSError. The context bounds the whole
// setup.
func Dial(ctx context.Context, cfg Config) (*Conn, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return dial(ctx, cfg.withDefaults(), &skewEstimator{})
}

// dial is Dial for a Config that already has its defaults, sharing skew.
func dial(ctx context.Context, cfg Config, skew *skewEstimator) (*Conn, error) {
	addr, err := cfg.serverAddr()
	if err != nil {
		return nil, err
	}
	d := net.Dialer{Timeout: cfg.DialTimeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: TCP connection to %s failed: %w", ErrUnreachable, addr, err)
	}

	c := &Conn{cfg: cfg, server: addr, raw: nc, nc: nc}
	c.dec.skew = skew
	var x [4]byte
	_, _ = rand.Read(x[:])
	c.xidNext = binary.BigEndian.Uint32(x[:]) % xidSpace
	if cfg.TLS == nil {
		c.frames = codec.NewFrameReader(nc, cfg.MaxMessageSize)
		return c, nil
	}
	if err := c.startTLS(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

// Server returns the host:port the connection was opened to.
func (c *Conn) Server() string { return c.server }

// ServerID returns the server DUID from the last LEASEQUERY-REPLY or REPLY
// that carried OPTION_SERVERID, or nil. The caller must not modify it.
func (c *Conn) ServerID() []byte { return c.serverID }

// TLSConnectionState returns the state of the TLS connection, or nil in
// insecure mode.
func (c *Conn) TLSConnectionState() *tls.ConnectionState { return c.tlsState }

// Skew returns the current estimate of the local clock minus the server
// clock, from the base-times received so far (0 before the first).
func (c *Conn) Skew() time.Duration { return c.dec.skew.estimate() }

// Close closes the connection. Queries running on it fail with ErrClosed.
func (c *Conn) Close() error {
	c.fail(ErrClosed)
	return nil
}

// Err returns the error that ended the connection, or nil while it is
// usable.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// fail records err as the connection's sticky error, if it is the first,
// closes the socket, and returns the sticky error.
func (c *Conn) fail(err error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
		c.nc.Close()
	}
	return c.err
}

// nextXID returns a transaction-id not used before on this connection
// (RFC 7653 section 8.1). The ids count up from a random start modulo 2^24,
// so they stay unique for 2^24 queries; after that the connection is
// retired.
func (c *Conn) nextXID() (uint32, error) {
	if c.xidUsed >= xidSpace {
		return 0, ErrTransactionIDs
	}
	xid := c.xidNext
	c.xidNext = (c.xidNext + 1) % xidSpace
	c.xidUsed++
	return xid, nil
}

// finished remembers xid as a completed query.
func (c *Conn) finished(xid uint32) {
	if len(c.completed) == maxCompleted {
		c.completed = append(c.completed[:0], c.completed[1:]...)
	}
	c.completed = append(c.completed, xid)
}

// wasCompleted reports whether xid belongs to a query that already ended.
func (c *Conn) wasCompleted(xid uint32) bool {
	for _, x := range c.completed {
		if x == xid {
			return true
		}
	}
	return false
}

// watch makes a cancelled ctx wake any blocked read or write; call the
// returned function when the operation is over. It sets the deadline on the
// TCP connection, which a TLS connection on top of it obeys too, because
// c.nc changes during STARTTLS.
func (c *Conn) watch(ctx context.Context) (stop func() bool) {
	return context.AfterFunc(ctx, func() { c.raw.SetDeadline(aLongTimeAgo) })
}

// write sends b, giving up after BulkDataTimeout (RFC 7653 section 8.3).
func (c *Conn) write(ctx context.Context, b []byte) error {
	if err := c.Err(); err != nil {
		return err
	}
	c.nc.SetWriteDeadline(time.Now().Add(c.cfg.BulkDataTimeout))
	if err := ctx.Err(); err != nil {
		// Setting the deadline undid the past one that watch sets when
		// ctx is cancelled, so an earlier cancel is caught here.
		return c.fail(err)
	}
	_, err := c.nc.Write(b)
	if err == nil {
		return nil
	}
	switch {
	case ctx.Err() != nil:
		err = ctx.Err()
	case errors.Is(err, os.ErrDeadlineExceeded):
		err = fmt.Errorf("%w: nothing written to %s for %v", ErrSendTimeout, c.server, c.cfg.BulkDataTimeout)
	default:
		err = fmt.Errorf("%w: writing to %s: %w", ErrConnectionLost, c.server, err)
	}
	return c.fail(err)
}

// read returns the next message and the local time it was read, waiting at
// most timeout for it. Any error ends the connection.
func (c *Conn) read(ctx context.Context, timeout time.Duration) ([]byte, time.Time, error) {
	if err := c.Err(); err != nil {
		return nil, time.Time{}, err
	}
	c.nc.SetReadDeadline(time.Now().Add(timeout))
	if err := ctx.Err(); err != nil {
		// Setting the deadline undid the past one that watch sets when
		// ctx is cancelled, so an earlier cancel is caught here. ctx.Err is
		// set before watch's function runs, so a later cancel still moves
		// the deadline into the past.
		return nil, time.Time{}, c.fail(err)
	}
	frame, err := c.frames.ReadFrame()
	if err == nil {
		c.received = true
		return frame, time.Now(), nil
	}

	var fe *codec.FrameError
	var opErr *net.OpError
	switch {
	case ctx.Err() != nil:
		err = ctx.Err()
	case c.Err() != nil:
		err = c.Err()
	case errors.Is(err, os.ErrDeadlineExceeded):
		err = fmt.Errorf("%w: nothing from %s for %v", ErrReceiveTimeout, c.server, timeout)
	case err == io.EOF:
		err = fmt.Errorf("%w: %s closed the connection", ErrConnectionLost, c.server)
	case errors.As(err, &fe) && errors.Is(err, io.ErrUnexpectedEOF):
		err = fmt.Errorf("%w: %s closed the connection in the middle of a message: %w", ErrConnectionLost, c.server, err)
	case errors.As(err, &fe):
		err = &ProtocolError{Reason: "invalid TCP frame", Err: err}
	case c.tlsState != nil && !c.received && errors.As(err, &opErr) && opErr.Op == "remote error":
		// In TLS 1.3 the server checks the client certificate after the
		// client has finished its handshake, so a rejection arrives as an
		// alert before the first message. crypto/tls reports a received
		// alert as a *net.OpError with this Op.
		err = &TLSError{Server: c.server, Outcome: TLSHandshakeFailed, Err: err}
	default:
		err = fmt.Errorf("%w: reading from %s: %w", ErrConnectionLost, c.server, err)
	}
	return nil, time.Time{}, c.fail(err)
}

// startTLS runs the STARTTLS exchange of RFC 7653 section 8.2 and the TLS
// handshake. On any failure the caller closes the TCP connection: there is
// no fallback to plaintext.
func (c *Conn) startTLS(ctx context.Context) error {
	stop := c.watch(ctx)
	defer stop()
	tlsErr := func(o TLSOutcome, status *codec.StatusError, err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &TLSError{Server: c.server, Outcome: o, Status: status, Err: err}
	}

	// STARTTLS is the first message and carries no options (section 6.2.2).
	xid, err := c.nextXID()
	if err != nil {
		return err
	}
	b, start := codec.BeginFrame(c.wbuf[:0])
	b, _ = codec.AppendHeader(b, codec.MsgStartTLS, xid)
	b, _ = codec.EndFrame(b, start)
	c.nc.SetDeadline(time.Now().Add(c.cfg.StartTLSTimeout))
	if err := ctx.Err(); err != nil {
		return err // setting the deadline undid the one watch sets on cancel
	}
	if _, err := c.nc.Write(b); err != nil {
		return tlsErr(TLSClosed, nil, err)
	}

	// The REPLY is read byte-exact, without read-ahead, because the TLS
	// handshake follows it on the same stream.
	reply, err := c.readExact()
	switch {
	case errors.Is(err, ErrProtocol):
		return err
	case errors.Is(err, os.ErrDeadlineExceeded):
		return tlsErr(TLSNoAnswer, nil, nil)
	case err != nil:
		return tlsErr(TLSClosed, nil, err)
	}
	var msg codec.Message
	if err := msg.Decode(reply); err != nil {
		return &ProtocolError{Reason: "answer to STARTTLS does not decode", Err: err}
	}
	if msg.Type != codec.MsgReply || msg.TransactionID != xid {
		return &ProtocolError{Type: msg.Type, TransactionID: msg.TransactionID, Reason: fmt.Sprintf("STARTTLS xid 0x%06x answered by something other than its REPLY", xid)}
	}
	if id, ok := msg.Options.ServerID(); ok {
		c.serverID = append([]byte(nil), id...)
	}
	status, ok, err := msg.Options.Status()
	if err != nil {
		return &ProtocolError{Type: msg.Type, TransactionID: xid, Reason: "status code does not decode", Err: err}
	}
	if ok && status.Code != codec.StatusSuccess {
		return tlsErr(TLSRefused, &codec.StatusError{Code: status.Code, Msg: string(status.Message)}, nil)
	}

	// A REPLY without an error status: handshake, verifying the server.
	cfg := c.cfg.TLS.Clone()
	if cfg.ServerName == "" {
		host, _, _ := net.SplitHostPort(c.server)
		cfg.ServerName = host
	}
	if cfg.MinVersion == 0 {
		cfg.MinVersion = tls.VersionTLS12 // RFC 7525 section 3.1.1
	}
	if cfg.CipherSuites == nil {
		cfg.CipherSuites = tlsCipherSuites
	}
	// NOTE: in TLS 1.3 the client finishes its handshake before the server
	// has checked the client certificate, so a server that rejects it is
	// only seen at the first read, which reports it as a *TLSError.
	tc := tls.Client(c.nc, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return tlsErr(TLSHandshakeFailed, nil, err)
	}
	c.nc.SetDeadline(time.Time{})
	state := tc.ConnectionState()
	c.tlsState = &state
	c.nc = tc
	c.frames = codec.NewFrameReader(tc, c.cfg.MaxMessageSize)
	return nil
}

// readExact reads one framed message from the raw connection without
// reading past it.
func (c *Conn) readExact() ([]byte, error) {
	var size [codec.FrameHeaderLen]byte
	if _, err := io.ReadFull(c.nc, size[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(size[:]))
	if n < codec.HeaderLen || n > c.cfg.MaxMessageSize {
		return nil, &ProtocolError{Reason: fmt.Sprintf("frame msg-size %d outside %d to %d", n, codec.HeaderLen, c.cfg.MaxMessageSize)}
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(c.nc, msg); err != nil {
		return nil, err
	}
	return msg, nil
}
