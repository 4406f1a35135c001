package requestor_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/requestor"
	"github.com/alqd/alqd/requestor/requestortest"
)

// TestStartTLSOutcomes runs the four outcomes of RFC 7653 section 8.2 and
// a failed handshake, and checks that a failure never leads to a plaintext
// query on the same connection.
func TestStartTLSOutcomes(t *testing.T) {
	pki := requestortest.NewPKI(t)
	other := requestortest.NewPKI(t) // an authority the requestor does not trust

	tests := []struct {
		name    string
		script  func(c *requestortest.Conn, xid uint32)
		outcome requestor.TLSOutcome
		want    error
	}{
		{"no answer", func(c *requestortest.Conn, xid uint32) {
			c.WaitClosed(5 * time.Second)
		}, requestor.TLSNoAnswer, requestor.ErrTLSRefused},
		{"connection closed", func(c *requestortest.Conn, xid uint32) { c.Close() }, requestor.TLSClosed, requestor.ErrTLSRefused},
		{"TLSConnectionRefused", func(c *requestortest.Conn, xid uint32) {
			c.Send(msg(codec.MsgReply, xid, requestortest.OptServerID(requestortest.ServerDUID), optStatus(codec.StatusTLSConnectionRefused, "insecure mode")))
			c.WaitClosed(5 * time.Second)
		}, requestor.TLSRefused, requestor.ErrTLSRefused},
		{"untrusted server certificate", func(c *requestortest.Conn, xid uint32) {
			c.StartTLS(xid, other.ServerConfig())
		}, requestor.TLSHandshakeFailed, requestor.ErrTLSHandshake},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			afterwards := make(chan error, 1)
			srv := requestortest.NewServer(t, func(c *requestortest.Conn) {
				r, ok := c.Expect(codec.MsgStartTLS)
				if !ok {
					afterwards <- nil
					return
				}
				if len(r.Msg.Options) != 0 {
					t.Errorf("STARTTLS carries %d options, want none", len(r.Msg.Options))
				}
				tc.script(c, r.Msg.TransactionID)
				_, err := c.ReadMessage()
				afterwards <- err
			})
			cfg := testConfig(srv.Addr())
			cfg.StartTLSTimeout = 200 * time.Millisecond
			cfg.TLS = pki.ClientConfig()
			conn, err := requestor.Dial(testContext(t), cfg)
			if err == nil {
				conn.Close()
				t.Fatal("Dial succeeded, want a TLS failure")
			}
			var te *requestor.TLSError
			if !errors.As(err, &te) || te.Outcome != tc.outcome {
				t.Fatalf("Dial error = %v, want outcome %v", err, tc.outcome)
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("errors.Is(%v, %v) = false", err, tc.want)
			}
			if !requestor.Permanent(err) {
				t.Errorf("Permanent(%v) = false, want true", err)
			}
			if err := <-afterwards; err == nil {
				t.Error("requestor sent a message after STARTTLS failed")
			}
		})
	}
}

func TestStartTLSSuccess(t *testing.T) {
	pki := requestortest.NewPKI(t)
	peer := make(chan []*x509.Certificate, 1)
	xids := make(chan uint32, 2)
	srv := requestortest.NewServer(t, func(c *requestortest.Conn) {
		r, ok := c.Expect(codec.MsgStartTLS)
		if !ok {
			return
		}
		xids <- r.Msg.TransactionID
		cfg := pki.ServerConfig()
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			peer <- cs.PeerCertificates
			return nil
		}
		if err := c.StartTLS(r.Msg.TransactionID, cfg); err != nil {
			t.Errorf("server handshake: %v", err)
			return
		}
		q, ok := c.Expect(codec.MsgLeasequery)
		if !ok {
			return
		}
		xids <- q.Msg.TransactionID
		x := q.Msg.TransactionID
		c.Send(msg(codec.MsgLeasequeryReply, x, optBase(100), binding(client1, "2001:db8:1::1", 1, 2, 3)), msg(codec.MsgLeasequeryDone, x))
		c.WaitClosed(5 * time.Second)
	})
	cfg := testConfig(srv.Addr())
	cfg.TLS = pki.ClientConfig()
	conn, err := requestor.Dial(testContext(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if conn.TLSConnectionState() == nil || !conn.TLSConnectionState().HandshakeComplete {
		t.Fatal("connection is not using TLS")
	}
	var rec recorder
	if err := conn.Bulk(testContext(t), linkQuery, rec.add); err != nil {
		t.Fatal(err)
	}
	if n := len(rec.bindings()); n != 1 {
		t.Errorf("got %d bindings over TLS, want 1", n)
	}
	certs := <-peer
	if len(certs) == 0 || certs[0].Subject.CommonName != "alq test requestor" {
		t.Errorf("server saw requestor certificate %v, want the test requestor's", certs)
	}
	if a, b := <-xids, <-xids; a == b {
		t.Errorf("STARTTLS and the query share transaction-id %#06x", a)
	}
}

func TestStartTLSCancelled(t *testing.T) {
	srv := requestortest.NewServer(t, func(c *requestortest.Conn) {
		c.Expect(codec.MsgStartTLS)
		c.WaitClosed(5 * time.Second) // never answers
	})
	cfg := testConfig(srv.Addr())
	cfg.StartTLSTimeout = 10 * time.Second
	cfg.TLS = requestortest.NewPKI(t).ClientConfig()
	ctx, cancel := context.WithCancel(testContext(t))
	time.AfterFunc(50*time.Millisecond, cancel)
	if _, err := requestor.Dial(ctx, cfg); !errors.Is(err, context.Canceled) {
		t.Errorf("Dial error = %v, want context.Canceled", err)
	}
}
