package alqdtest

import (
	"errors"
	"testing"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/requestor"
	"github.com/alqd/alqd/requestor/requestortest"
	"github.com/alqd/alqd/server"
)

// secureConfig is alqd in secure mode only: Active Leasequery and bulk
// queries over STARTTLS with mutual TLS, nothing over plaintext.
func secureConfig(t *testing.T, pki *requestortest.PKI) server.Config {
	dir := t.TempDir()
	caFile, _, _ := pki.WriteFiles(t, dir)
	certFile, keyFile := pki.WriteServerFiles(t, dir)
	return server.Config{
		Active:            true,
		ActiveIdleTimeout: testIdleTimeout,
		TLS:               server.TLSConfig{CertFile: certFile, KeyFile: keyFile, ClientCAFile: caFile},
	}
}

func TestAlqdStartTLS(t *testing.T) {
	pki := requestortest.NewPKI(t)
	clock := &fakeClock{t: now}
	st := openStore(t, clock.Now)
	apply(t, st, fixtures...)
	srv, _ := startServer(t, st, secureConfig(t, pki), clock.Now)
	cfg := config(srv.Addr().String())
	cfg.TLS = pki.ClientConfig()

	// A bulk query over TLS.
	conn, err := requestor.Dial(testContext(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var events []requestor.Event
	err = conn.Bulk(testContext(t), requestor.Query{Type: codec.QueryByLinkAddress, Link: linkA}, func(ev requestor.Event) error {
		events = append(events, ev)
		return nil
	})
	conn.Close()
	if err != nil {
		t.Fatalf("Bulk over TLS: %v", err)
	}
	if n := len(targets(events)); n != 3 {
		t.Errorf("got %d bindings over TLS, want 3", n)
	}

	// An active query over TLS, with catch-up.
	req := requestor.WatchRequest{Resume: requestor.Checkpoint{StartTime: codec.DHCPTime(now), Valid: true}}
	w, err := requestor.NewWatcher(cfg, req)
	if err != nil {
		t.Fatal(err)
	}
	caught := 0
	err = w.Run(testContext(t), func(ev requestor.Event) error {
		switch ev.(type) {
		case requestor.Binding:
			caught++
		case requestor.CatchUpComplete:
			return errors.New("done")
		}
		return nil
	})
	if err == nil || err.Error() != "done" {
		t.Fatalf("Watcher over TLS: %v", err)
	}
	if caught != len(fixtures) {
		t.Errorf("catch-up over TLS delivered %d bindings, want %d", caught, len(fixtures))
	}
}

func TestAlqdSecureModeRefusesPlaintext(t *testing.T) {
	pki := requestortest.NewPKI(t)
	clock := &fakeClock{t: now}
	st := openStore(t, clock.Now)
	srv, _ := startServer(t, st, secureConfig(t, pki), clock.Now)

	// Plaintext: the server closes a connection that does not start TLS.
	conn, err := requestor.Dial(testContext(t), config(srv.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	err = conn.Bulk(testContext(t), requestor.Query{Type: codec.QueryByLinkAddress, Link: linkA}, func(requestor.Event) error { return nil })
	conn.Close()
	if err == nil {
		t.Error("plaintext bulk query answered by a server in secure mode only")
	}

	// A server certificate from a CA the requestor does not trust.
	cfg := config(srv.Addr().String())
	cfg.TLS = requestortest.NewPKI(t).ClientConfig()
	if _, err := requestor.Dial(testContext(t), cfg); !errors.Is(err, requestor.ErrTLSHandshake) {
		t.Errorf("Dial with an untrusted server certificate: %v, want ErrTLSHandshake", err)
	}
}

func TestAlqdInsecureRefusesStartTLS(t *testing.T) {
	clock := &fakeClock{t: now}
	st := openStore(t, clock.Now)
	srv, _ := startServer(t, st, activeConfig(), clock.Now)
	cfg := config(srv.Addr().String())
	cfg.TLS = requestortest.NewPKI(t).ClientConfig()
	_, err := requestor.Dial(testContext(t), cfg)
	var te *requestor.TLSError
	if !errors.As(err, &te) || te.Outcome != requestor.TLSRefused {
		t.Fatalf("Dial error = %v, want STARTTLS refused", err)
	}
	if code, _ := requestor.StatusCode(err); code != codec.StatusTLSConnectionRefused {
		t.Errorf("status = %v, want TLSConnectionRefused", code)
	}
}
