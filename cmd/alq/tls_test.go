package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/requestor/requestortest"
)

// TestTLSClientCertificateRejected checks that every command stops with
// exit code 4 after one connection when the server rejects the requestor
// certificate. With TLS 1.3 the server's alert arrives only after alq has
// sent its query, so this is not a lost connection to retry.
func TestTLSClientCertificateRejected(t *testing.T) {
	pki := requestortest.NewPKI(t)
	caFile, _, _ := pki.WriteFiles(t, t.TempDir())
	_, otherCert, otherKey := requestortest.NewPKI(t).WriteFiles(t, t.TempDir())
	link := []string{"--link", "2001:db8:1::1"}
	retry := []string{"--max-attempts", "3", "--retry-interval", "10ms"}

	tests := []struct {
		name string
		args []string
	}{
		{"bulk without certificate", append([]string{"bulk", "--tls-ca", caFile}, link...)},
		{"bulk with another CA's certificate", append([]string{"bulk", "--tls-ca", caFile, "--tls-cert", otherCert, "--tls-key", otherKey}, link...)},
		{"watch without certificate", append([]string{"watch", "--tls-ca", caFile}, retry...)},
		{"mirror without certificate", append([]string{"mirror", "--tls-ca", caFile, "--db", filepath.Join(t.TempDir(), "db")}, retry...)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := requestortest.NewServer(t, func(c *requestortest.Conn) {
				r, ok := c.Expect(codec.MsgStartTLS)
				if !ok {
					return
				}
				if err := c.StartTLS(r.Msg.TransactionID, pki.ServerConfig()); err == nil {
					t.Error("the server handshake accepted a certificate it should reject")
				}
			})
			code, _, stderr := alq(t, append(tc.args, "--server", srv.Addr())...)
			if code != exitTLS {
				t.Errorf("exit code = %d, want %d; stderr %q", code, exitTLS, stderr)
			}
			if !strings.Contains(stderr, "TLS handshake") {
				t.Errorf("stderr = %q, want it to say that the TLS handshake failed", stderr)
			}
			if n := len(srv.Accepts()); n != 1 {
				t.Errorf("alq opened %d connections, want 1: a rejected certificate is not retried", n)
			}
		})
	}
}
