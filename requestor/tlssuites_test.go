package requestor_test

import (
	"crypto/tls"
	"errors"
	"testing"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/requestor"
	"github.com/alqd/alqd/requestor/requestortest"
)

// TestStartTLSCipherSuites checks that a requestor offers only the RFC
// 7525 ECDHE AEAD suites for TLS 1.2 unless its Config.TLS names others.
func TestStartTLSCipherSuites(t *testing.T) {
	pki := requestortest.NewPKI(t)
	tests := []struct {
		name   string
		server uint16 // the only suite the TLS 1.2 server accepts
		client []uint16
		ok     bool
	}{
		{"AES-GCM", tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, nil, true},
		{"ChaCha20-Poly1305", tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, nil, true},
		{"CBC by default", tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, nil, false},
		{"CBC when configured", tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := requestortest.NewServer(t, func(c *requestortest.Conn) {
				r, ok := c.Expect(codec.MsgStartTLS)
				if !ok {
					return
				}
				cfg := pki.ServerConfig()
				cfg.MaxVersion = tls.VersionTLS12
				cfg.CipherSuites = []uint16{tc.server}
				_ = c.StartTLS(r.Msg.TransactionID, cfg)
			})
			cfg := testConfig(srv.Addr())
			cfg.TLS = pki.ClientConfig()
			cfg.TLS.CipherSuites = tc.client
			conn, err := requestor.Dial(testContext(t), cfg)
			if !tc.ok {
				if err == nil {
					conn.Close()
					t.Fatal("handshake succeeded on a suite RFC 7525 does not recommend")
				}
				if !errors.Is(err, requestor.ErrTLSHandshake) {
					t.Errorf("Dial error = %v, want ErrTLSHandshake", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer conn.Close()
			if got := conn.TLSConnectionState().CipherSuite; got != tc.server {
				t.Errorf("negotiated %s, want %s", tls.CipherSuiteName(got), tls.CipherSuiteName(tc.server))
			}
		})
	}
}
