package requestortest

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
)

// Server is a scripted TCP leasequery server on 127.0.0.1. Each accepted
// connection runs the handler on its own goroutine; the connection is
// closed when the handler returns. Close (also run by t.Cleanup) stops
// accepting, closes every connection and waits for the handlers.
type Server struct {
	t       testing.TB
	ln      net.Listener
	handler func(*Conn)

	mu      sync.Mutex
	accepts []time.Time
	conns   map[*Conn]struct{}
	closed  bool
	wg      sync.WaitGroup
}

// NewServer starts a Server whose connections run handler.
func NewServer(t testing.TB, handler func(*Conn)) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("requestortest: listen on 127.0.0.1:0: %v", err)
	}
	s := &Server{t: t, ln: ln, handler: handler, conns: make(map[*Conn]struct{})}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(s.Close)
	return s
}

// Addr returns the host:port the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Accepts returns the times at which connections were accepted, in order.
func (s *Server) Accepts() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.accepts...)
}

// Close stops the server and waits for every handler to return.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	for c := range s.conns {
		c.raw.Close()
	}
	s.mu.Unlock()
	s.ln.Close()
	s.wg.Wait()
}

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		c := &Conn{t: s.t, raw: nc, rw: nc}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return
		}
		s.accepts = append(s.accepts, time.Now())
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
			s.handler(c)
		}()
	}
}

// Conn is the server side of one connection. Its methods report I/O
// errors by returning them, so that a handler can stop quietly when the
// requestor hangs up; Expect reports a wrong message with t.Errorf.
type Conn struct {
	t   testing.TB
	raw net.Conn      // the TCP connection
	rw  io.ReadWriter // raw, or the TLS connection after StartTLS

	closeOnce sync.Once
}

// Received is one message read from the requestor.
type Received struct {
	Raw []byte        // the message without its msg-size
	Msg codec.Message // Raw decoded; its options alias Raw
	Err error         // the decode error, if it did not decode
}

// ReadMessage reads one framed message.
func (c *Conn) ReadMessage() (Received, error) {
	var size [2]byte
	if _, err := io.ReadFull(c.rw, size[:]); err != nil {
		return Received{}, err
	}
	raw := make([]byte, binary.BigEndian.Uint16(size[:]))
	if _, err := io.ReadFull(c.rw, raw); err != nil {
		return Received{}, err
	}
	r := Received{Raw: raw}
	r.Err = r.Msg.Decode(raw)
	return r, nil
}

// Expect reads one message and reports a test error unless it decodes and
// has type want. ok is false when nothing could be read or the check failed.
func (c *Conn) Expect(want codec.MsgType) (r Received, ok bool) {
	r, err := c.ReadMessage()
	if err != nil {
		c.t.Errorf("requestortest: reading the requestor's %s: %v", want, err)
		return r, false
	}
	if r.Err != nil {
		c.t.Errorf("requestortest: requestor sent a message that does not decode: %v (% x)", r.Err, r.Raw)
		return r, false
	}
	if r.Msg.Type != want {
		c.t.Errorf("requestortest: requestor sent %s, want %s", r.Msg.Type, want)
		return r, false
	}
	return r, true
}

// Send frames each message with its msg-size and writes them all at once.
func (c *Conn) Send(msgs ...[]byte) error {
	var b []byte
	for _, m := range msgs {
		var err error
		if b, err = codec.AppendFrame(b, m); err != nil {
			return fmt.Errorf("requestortest: framing % x: %w", m, err)
		}
	}
	return c.Write(b)
}

// Write writes raw bytes, already framed or deliberately not.
func (c *Conn) Write(b []byte) error {
	_, err := c.rw.Write(b)
	return err
}

// WriteSplit writes b in pieces of chunk octets, pausing between them, so
// that the requestor sees frames, and even msg-size fields, split across
// reads.
func (c *Conn) WriteSplit(b []byte, chunk int, pause time.Duration) error {
	for len(b) > 0 {
		n := min(chunk, len(b))
		if err := c.Write(b[:n]); err != nil {
			return err
		}
		b = b[n:]
		if pause > 0 && len(b) > 0 {
			time.Sleep(pause)
		}
	}
	return nil
}

// WaitClosed waits up to d for the requestor to close the connection,
// discarding whatever it sends, and reports whether it did.
func (c *Conn) WaitClosed(d time.Duration) bool {
	c.raw.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c.rw)
	return err == nil || !isTimeout(err)
}

// StartTLS sends the REPLY that accepts STARTTLS with transaction-id xid
// and runs the TLS server handshake with cfg. After it returns nil, every
// method of c runs over TLS.
func (c *Conn) StartTLS(xid uint32, cfg *tls.Config) error {
	if err := c.Send(Msg(codec.MsgReply, xid, OptServerID(ServerDUID))); err != nil {
		return err
	}
	tc := tls.Server(c.raw, cfg)
	c.raw.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		return err
	}
	c.raw.SetDeadline(time.Time{})
	c.rw = tc
	return nil
}

// Close closes the connection.
func (c *Conn) Close() {
	c.closeOnce.Do(func() { c.raw.Close() })
}

// CloseWrite half-closes the TCP connection, so that the requestor reads
// end of stream while the server can still read.
func (c *Conn) CloseWrite() error {
	if tc, ok := c.raw.(*net.TCPConn); ok {
		return tc.CloseWrite()
	}
	return c.raw.Close()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// SetReadBuffer shrinks the kernel receive buffer of the connection, so
// that a server that stops reading blocks the requestor's writes sooner.
func (c *Conn) SetReadBuffer(n int) error {
	if tc, ok := c.raw.(*net.TCPConn); ok {
		return tc.SetReadBuffer(n)
	}
	return nil
}
