package requestor

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/requestor/requestortest"
)

// scriptedConn is a net.Conn that accepts every write and returns the
// byte chunks of reads in order, then readErr.
type scriptedConn struct {
	net.Conn // nil: only the methods below are called
	reads    [][]byte
	readErr  error
}

func (s *scriptedConn) Read(b []byte) (int, error) {
	if len(s.reads) == 0 {
		return 0, s.readErr
	}
	n := copy(b, s.reads[0])
	if s.reads[0] = s.reads[0][n:]; len(s.reads[0]) == 0 {
		s.reads = s.reads[1:]
	}
	return n, nil
}

func (s *scriptedConn) Write(b []byte) (int, error)      { return len(b), nil }
func (s *scriptedConn) Close() error                     { return nil }
func (s *scriptedConn) SetDeadline(time.Time) error      { return nil }
func (s *scriptedConn) SetReadDeadline(time.Time) error  { return nil }
func (s *scriptedConn) SetWriteDeadline(time.Time) error { return nil }

// TestReadTLSAlert checks which read errors of a secured connection mean
// that the server rejected the TLS session: only a TLS alert received
// before the first message. crypto/tls reports a received alert as a
// *net.OpError with Op "remote error" and one it sent as "local error".
func TestReadTLSAlert(t *testing.T) {
	const xid = 0x123456
	framed := func(msg []byte) []byte {
		b, err := codec.AppendFrame(nil, msg)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// A REPLY with one binding: the query stays open for more.
	reply := framed(requestortest.Msg(codec.MsgLeasequeryReply, xid,
		requestortest.OptBaseTime(100), requestortest.Binding(fixtureDUID, "2001:db8:1::1", 1, 2, 3)))
	alert := func(op string) error {
		return &net.OpError{Op: op, Net: "tcp", Err: tls.AlertError(42)} // bad_certificate
	}

	tests := []struct {
		name    string
		secured bool
		reads   [][]byte
		readErr error
		wantTLS bool // a *TLSError with TLSHandshakeFailed, else ErrConnectionLost
	}{
		{"alert before any message", true, nil, alert("remote error"), true},
		{"alert after a message", true, [][]byte{reply}, alert("remote error"), false},
		{"alert after part of a frame header", true, [][]byte{reply[:1]}, alert("remote error"), true},
		{"alert sent by the requestor", true, nil, alert("local error"), false},
		{"reset before any message", true, nil, &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, false},
		{"remote error without TLS", false, nil, alert("remote error"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			nc := &scriptedConn{reads: tc.reads, readErr: tc.readErr}
			c := &Conn{cfg: Config{Server: "[::1]:547", ClientID: fixtureDUID}.withDefaults(), server: "[::1]:547", raw: nc, nc: nc, xidNext: xid}
			c.dec.skew = &skewEstimator{}
			c.frames = codec.NewFrameReader(nc, c.cfg.MaxMessageSize)
			if tc.secured {
				c.tlsState = &tls.ConnectionState{Version: tls.VersionTLS13, HandshakeComplete: true}
			}

			q := Query{Type: codec.QueryByLinkAddress, Link: fixtureLink}
			err := c.Bulk(context.Background(), q, func(Event) error { return nil })
			var te *TLSError
			isTLS := errors.As(err, &te) && te.Outcome == TLSHandshakeFailed
			if isTLS != tc.wantTLS {
				t.Fatalf("error = %v; *TLSError with TLSHandshakeFailed: %v, want %v", err, isTLS, tc.wantTLS)
			}
			if !errors.Is(err, tc.readErr) {
				t.Errorf("error = %v, want it to wrap the read error %v", err, tc.readErr)
			}
			if Permanent(err) != tc.wantTLS {
				t.Errorf("Permanent(%v) = %v, want %v", err, Permanent(err), tc.wantTLS)
			}
			if tc.wantTLS {
				if !errors.Is(err, ErrTLSHandshake) {
					t.Errorf("errors.Is(%v, ErrTLSHandshake) = false", err)
				}
				if te.Server != "[::1]:547" {
					t.Errorf("TLSError.Server = %q, want [::1]:547", te.Server)
				}
				return
			}
			if !errors.Is(err, ErrConnectionLost) {
				t.Errorf("errors.Is(%v, ErrConnectionLost) = false", err)
			}
		})
	}
}
