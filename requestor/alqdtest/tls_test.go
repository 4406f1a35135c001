package alqdtest

import (
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/requestor"
	"github.com/alqd/alqd/requestor/requestortest"
	"github.com/alqd/alqd/server"
)

// secureConfig returns cfg in secure mode with the PKI's server
// certificate, its CA as the client CA, and allow as the certificate
// allow-list.
func secureConfig(t *testing.T, pki *requestortest.PKI, cfg server.Config, allow ...string) server.Config {
	t.Helper()
	dir := t.TempDir()
	caFile, _, _ := pki.WriteFiles(t, dir)
	certFile, keyFile := pki.WriteServerFiles(t, dir)
	cfg.TLS = server.TLSConfig{CertFile: certFile, KeyFile: keyFile, ClientCAFile: caFile}
	for _, a := range allow {
		p, err := server.ParseCertPattern(a)
		if err != nil {
			t.Fatal(err)
		}
		cfg.TLS.Allow = append(cfg.TLS.Allow, p)
	}
	return cfg
}

// secureRequestor returns the requestor configuration for addr in secure
// mode with the PKI's requestor certificate.
func secureRequestor(addr string, pki *requestortest.PKI) requestor.Config {
	cfg := config(addr)
	cfg.TLS = pki.ClientConfig()
	cfg.StartTLSTimeout = 5 * time.Second
	return cfg
}

func TestAlqdTLSBulk(t *testing.T) {
	pki := requestortest.NewPKI(t)
	clock := func() time.Time { return now }
	st := openStore(t, clock)
	apply(t, st, fixtures...)
	srv, _ := startServer(t, st, secureConfig(t, pki, server.Config{}, "cn:alq test requestor"), clock)

	conn, err := requestor.Dial(testContext(t), secureRequestor(srv.Addr().String(), pki))
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer conn.Close()
	if cs := conn.TLSConnectionState(); cs == nil || cs.Version != tls.VersionTLS13 {
		t.Fatalf("connection state %+v, want TLS 1.3", cs)
	}
	var events []requestor.Event
	q := requestor.Query{Type: codec.QueryByLinkAddress, Link: linkA}
	if err := conn.Bulk(testContext(t), q, func(ev requestor.Event) error { events = append(events, ev); return nil }); err != nil {
		t.Fatalf("Bulk over TLS: %v", err)
	}
	if got := targets(events); len(got) != 3 {
		t.Errorf("bulk over TLS returned %v, want the 3 bindings on %v", got, linkA)
	}
}

func TestAlqdTLSWatch(t *testing.T) {
	pki := requestortest.NewPKI(t)
	clock := &fakeClock{t: now}
	st := openStore(t, clock.Now)
	apply(t, st, fixtures...)
	cfg := server.Config{Active: true, ActiveIdleTimeout: testIdleTimeout}
	srv, _ := startServer(t, st, secureConfig(t, pki, cfg), clock.Now)

	start := codec.DHCPTime(now) - 10
	w, err := requestor.NewWatcher(secureRequestor(srv.Addr().String(), pki), requestor.WatchRequest{Resume: requestor.Checkpoint{StartTime: start, Valid: true}})
	if err != nil {
		t.Fatal(err)
	}
	fresh := bind("2001:db8:1::99/128", client3, linkA, nil, nil)
	var catchUp int
	var live []requestor.Binding
	err = w.Run(testContext(t), func(ev requestor.Event) error {
		switch e := ev.(type) {
		case requestor.Binding:
			if e.CatchUp {
				catchUp++
				return nil
			}
			live = append(live, e)
			return errors.New("done")
		case requestor.CatchUpComplete:
			clock.Advance(10 * time.Second)
			apply(t, st, fresh)
		}
		return nil
	})
	if err == nil || err.Error() != "done" {
		t.Fatalf("Run: %v", err)
	}
	if catchUp != len(fixtures) {
		t.Errorf("catch-up over TLS delivered %d bindings, want %d", catchUp, len(fixtures))
	}
	if len(live) != 1 || live[0].Addr != fresh.Prefix.Addr() {
		t.Errorf("live bindings over TLS = %v, want %v", live, fresh.Prefix)
	}
}

// TestAlqdTLSFailures checks that every failed secure-mode setup ends in an
// error and never in a reply over plaintext.
func TestAlqdTLSFailures(t *testing.T) {
	pki := requestortest.NewPKI(t)
	clock := func() time.Time { return now }
	st := openStore(t, clock)
	apply(t, st, fixtures...)
	insecure, _ := startServer(t, st, server.Config{Active: true, Insecure: true}, clock)
	secure, _ := startServer(t, st, secureConfig(t, pki, server.Config{}), clock)
	listed, _ := startServer(t, st, secureConfig(t, pki, server.Config{}, "cn:another requestor"), clock)
	untrusted := requestortest.NewPKI(t)

	tests := []struct {
		name string
		cfg  requestor.Config
		want error
	}{
		{"insecure server", secureRequestor(insecure.Addr().String(), pki), requestor.ErrTLSRefused},
		{"plaintext to a secure server", config(secure.Addr().String()), requestor.ErrConnectionLost},
		{"untrusted server certificate", secureRequestor(secure.Addr().String(), untrusted), requestor.ErrTLSHandshake},
		{"certificate not on the allow-list", secureRequestor(listed.Addr().String(), pki), requestor.ErrTLSHandshake},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := requestor.Query{Type: codec.QueryByLinkAddress, Link: linkA}
			conn, err := requestor.Dial(testContext(t), tc.cfg)
			if err == nil {
				// Failures the requestor detects only once it reads: a closed
				// plaintext connection, or a TLS 1.3 alert for its
				// certificate after its side of the handshake finished,
				// which the first read reports as a failed handshake.
				err = conn.Bulk(testContext(t), q, func(requestor.Event) error {
					t.Error("a binding arrived over a connection that should have failed")
					return nil
				})
				conn.Close()
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("error = %v, want %v", err, tc.want)
			}
			var te *requestor.TLSError
			if errors.Is(tc.want, requestor.ErrTLSRefused) && (!errors.As(err, &te) || te.Status == nil || te.Status.Code != codec.StatusTLSConnectionRefused) {
				t.Errorf("error = %v, want a REPLY with TLSConnectionRefused", err)
			}
		})
	}
}

// certificateRejections returns, for each way alqd rejects a requestor
// certificate, the server to connect to and the requestor configuration
// capped at TLS version maxVersion.
func certificateRejections(t *testing.T, maxVersion uint16) []struct {
	name string
	cfg  requestor.Config
} {
	t.Helper()
	pki := requestortest.NewPKI(t)
	other := requestortest.NewPKI(t) // an authority alqd does not trust for client certificates
	clock := func() time.Time { return now }
	st := openStore(t, clock)
	apply(t, st, fixtures...)
	cfg := server.Config{Active: true, ActiveIdleTimeout: testIdleTimeout}
	secure, _ := startServer(t, st, secureConfig(t, pki, cfg), clock)
	listed, _ := startServer(t, st, secureConfig(t, pki, cfg, "cn:another requestor"), clock)

	withTLS := func(addr string, certs ...tls.Certificate) requestor.Config {
		c := secureRequestor(addr, pki)
		c.TLS = &tls.Config{RootCAs: pki.CAPool, Certificates: certs, MaxVersion: maxVersion}
		c.RetryInterval = 10 * time.Millisecond
		return c
	}
	return []struct {
		name string
		cfg  requestor.Config
	}{
		{"no client certificate", withTLS(secure.Addr().String())},
		{"certificate from another CA", withTLS(secure.Addr().String(), other.Client)},
		{"certificate not on the allow-list", withTLS(listed.Addr().String(), pki.Client)},
	}
}

// checkRejected checks that err reports alqd's rejection of the requestor
// certificate as a failed handshake that no retry can change.
func checkRejected(t *testing.T, err error) {
	t.Helper()
	var te *requestor.TLSError
	if !errors.As(err, &te) || te.Outcome != requestor.TLSHandshakeFailed {
		t.Fatalf("error = %v, want a *TLSError with outcome %v", err, requestor.TLSHandshakeFailed)
	}
	if !errors.Is(err, requestor.ErrTLSHandshake) {
		t.Errorf("errors.Is(%v, ErrTLSHandshake) = false", err)
	}
	if errors.Is(err, requestor.ErrConnectionLost) {
		t.Errorf("errors.Is(%v, ErrConnectionLost) = true, want a TLS failure only", err)
	}
	var opErr *net.OpError
	if !errors.As(err, &opErr) || opErr.Op != "remote error" {
		t.Errorf("error = %v, want it to wrap the alert alqd sent", err)
	}
	if !requestor.Permanent(err) {
		t.Errorf("Permanent(%v) = false, want true", err)
	}
}

var tlsVersions = []struct {
	name    string
	version uint16
}{
	{"TLS 1.3", tls.VersionTLS13},
	{"TLS 1.2", tls.VersionTLS12},
}

// TestAlqdTLSCertificateRejectedBulk checks that a bulk query fails with a
// TLS handshake error when alqd rejects the requestor certificate. With
// TLS 1.3 the rejection arrives only after the requestor sent its query.
func TestAlqdTLSCertificateRejectedBulk(t *testing.T) {
	for _, v := range tlsVersions {
		for _, tc := range certificateRejections(t, v.version) {
			t.Run(v.name+"/"+tc.name, func(t *testing.T) {
				conn, err := requestor.Dial(testContext(t), tc.cfg)
				if v.version == tls.VersionTLS13 && err != nil {
					// crypto/tls ends a TLS 1.3 client handshake without
					// waiting for the server's verdict on the certificate.
					t.Errorf("Dial: %v, want success and the rejection at the first read", err)
				}
				if err == nil {
					q := requestor.Query{Type: codec.QueryByLinkAddress, Link: linkA}
					err = conn.Bulk(testContext(t), q, func(requestor.Event) error {
						t.Error("an event arrived although alqd rejected the certificate")
						return nil
					})
					if again := conn.Bulk(testContext(t), q, func(requestor.Event) error { return nil }); again != err {
						t.Errorf("second Bulk error = %v, want the sticky %v", again, err)
					}
					conn.Close()
				}
				checkRejected(t, err)
			})
		}
	}
}

// TestAlqdTLSCertificateRejectedWatch checks that a Watcher stops after
// the first connection when alqd rejects the requestor certificate,
// instead of reconnecting until MaxAttempts.
func TestAlqdTLSCertificateRejectedWatch(t *testing.T) {
	for _, v := range tlsVersions {
		for _, tc := range certificateRejections(t, v.version) {
			t.Run(v.name+"/"+tc.name, func(t *testing.T) {
				w, err := requestor.NewWatcher(tc.cfg, requestor.WatchRequest{MaxAttempts: 3})
				if err != nil {
					t.Fatal(err)
				}
				var disconnects []requestor.Disconnected
				err = w.Run(testContext(t), func(ev requestor.Event) error {
					switch e := ev.(type) {
					case requestor.Connected:
						if e.Attempt != 1 {
							t.Errorf("connection attempt %d, want only the first", e.Attempt)
						}
					case requestor.Disconnected:
						disconnects = append(disconnects, e)
					case requestor.Binding:
						t.Error("a binding arrived although alqd rejected the certificate")
					}
					return nil
				})
				checkRejected(t, err)
				if len(disconnects) != 1 {
					t.Fatalf("%d Disconnected events, want 1", len(disconnects))
				}
				if !disconnects[0].RetryAt.IsZero() {
					t.Errorf("Disconnected.RetryAt = %v, want zero: no retry after a TLS failure", disconnects[0].RetryAt)
				}
			})
		}
	}
}
