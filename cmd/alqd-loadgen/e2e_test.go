package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/alqd/alqd/ingest"
	"github.com/alqd/alqd/loadgen"
)

// alqdBinaryEnv names an alqd binary for the end-to-end test to run
// instead of building ./cmd/alqd.
const alqdBinaryEnv = "ALQD_LOADGEN_E2E_ALQD"

// TestEndToEnd runs a swarm against a real alqd with Active Leasequery on
// loopback while churn feeds it through the ingest API, over plaintext TCP
// and over TLS after STARTTLS with client certificates. Every update must
// decode and carry its stamp. Unfiltered connections must receive the
// changes, and a connection filtered by relay-id only its relay's share.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts alqd; skipped with -short")
	}
	bin := alqdBinary(t)
	t.Run("plaintext", func(t *testing.T) {
		runEndToEnd(t, bin, []string{"--insecure"}, nil)
	})
	t.Run("STARTTLS", func(t *testing.T) {
		pki := writeTestPKI(t)
		args := []string{"--tls-cert", pki.serverCert, "--tls-key", pki.serverKey, "--tls-client-ca", pki.ca}
		// NOTE: alqd rejects --active with the TLS files but without
		// --insecure ("no transport"), so the test adds --insecure, which
		// allows plaintext next to TLS. The swarm still runs STARTTLS on
		// every connection and fails any that alqd does not upgrade.
		runEndToEnd(t, bin, append(args, "--insecure"), pki.client)
	})
}

func runEndToEnd(t *testing.T, bin string, alqdArgs []string, clientTLS *tls.Config) {
	listen, ingestAddr := freeLoopbackPort(t), freeLoopbackPort(t)
	stop := startAlqd(t, bin, listen, ingestAddr, alqdArgs)
	defer stop()

	// Start the swarm and wait until every connection is subscribed.
	const connections, changes = 4, 300
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var last loadgen.SwarmProgress
	type result struct {
		sum *loadgen.SwarmSummary
		err error
	}
	done := make(chan result, 1)
	go func() {
		sum, err := loadgen.RunSwarm(ctx, loadgen.SwarmConfig{
			Server:      listen,
			Connections: connections,
			Filtered:    1,
			TLS:         clientTLS,
			Duration:    time.Minute,
			IncludeRaw:  true,
			Progress: func(p loadgen.SwarmProgress) {
				mu.Lock()
				last = p
				mu.Unlock()
			},
		})
		done <- result{sum, err}
	}()
	progress := func() loadgen.SwarmProgress {
		mu.Lock()
		defer mu.Unlock()
		return last
	}
	waitUntil(t, 10*time.Second, "the swarm to connect", func() bool { return progress().Established == connections })

	// Churn through the ingest API.
	client, err := ingest.NewClient(ingest.ClientConfig{URL: "http://" + ingestAddr})
	if err != nil {
		t.Fatal(err)
	}
	sink, err := loadgen.NewIngestSink(ctx, client, loadgen.LaneConfig{})
	if err != nil {
		t.Fatal(err)
	}
	churn, err := loadgen.NewChurn(loadgen.ChurnConfig{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	csum, err := loadgen.RunChurn(ctx, churn, sink, loadgen.RunConfig{Rate: 2000, Count: changes})
	if err != nil || csum.Errors != 0 || csum.Changes != changes {
		t.Fatalf("churn: %v, summary %+v", err, csum)
	}

	// Stop the swarm once the updates stop coming.
	var updates int64 = -1
	waitUntil(t, 20*time.Second, "the updates to settle", func() bool {
		p := progress()
		settled := p.Updates > 0 && p.Updates == updates
		updates = p.Updates
		if !settled {
			time.Sleep(time.Second)
		}
		return settled
	})
	cancel()
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	sum := res.sum
	t.Logf("%d updates, latency %+v", sum.Updates, sum.Latency)
	for _, r := range sum.Results {
		t.Logf("connection %d filtered %v: %d messages", r.Index, r.Filtered, r.Messages)
	}

	if sum.DecodeFailures != 0 || sum.Errors != 0 || sum.Unstamped != 0 {
		t.Errorf("decode failures %d, errors %d (%s), unstamped %d: want none", sum.DecodeFailures, sum.Errors, sum.FirstError, sum.Unstamped)
	}
	if sum.Latency.Count != sum.Updates || sum.Latency.Max <= 0 {
		t.Errorf("latency %+v for %d updates: want one per update", sum.Latency, sum.Updates)
	}
	for _, r := range sum.Results {
		switch {
		case r.Filtered && (r.Messages < 2 || r.Messages > changes/4):
			t.Errorf("filtered connection %d got %d messages, want its relay's share of %d changes", r.Index, r.Messages, changes)
		case !r.Filtered && (r.Messages < changes*9/10 || r.Messages > changes+1):
			// The server may send a binding changed twice only once, in its
			// current state (RFC 7653 section 7), so a few may be missing.
			t.Errorf("connection %d got %d messages, want about %d (one per change and the reply)", r.Index, r.Messages, changes+1)
		}
	}
}

func alqdBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv(alqdBinaryEnv); bin != "" {
		return bin
	}
	bin := filepath.Join(t.TempDir(), "alqd")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/alqd")
	cmd.Dir = filepath.Join("..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/alqd failed (set %s to use a built alqd): %v\n%s", alqdBinaryEnv, err, out)
	}
	return bin
}

// freeLoopbackPort returns 127.0.0.1:port for a port that was free a
// moment ago; alqd serves TCP and UDP on its listen port, so both are
// checked.
func freeLoopbackPort(t *testing.T) string {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		pc, err := net.ListenPacket("udp", addr)
		ln.Close()
		if err == nil {
			pc.Close()
			return addr
		}
	}
	t.Fatal("no loopback port free for TCP and UDP after 20 tries")
	return ""
}

// startAlqd starts alqd with Active Leasequery, the ingest API and the
// extra arguments, and waits until both accept connections. The returned
// function stops it.
func startAlqd(t *testing.T, bin, listen, ingestAddr string, extra []string) (stop func()) {
	t.Helper()
	dir := t.TempDir()
	logFile, err := os.Create(filepath.Join(dir, "alqd.log"))
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{
		"--listen", listen,
		"--allow", "127.0.0.0/8",
		"--data-dir", filepath.Join(dir, "store"),
		"--active",
		"--ingest-listen", ingestAddr,
		"--max-conns-per-requestor", strconv.Itoa(100),
	}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop = func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("alqd did not exit within 15 s of SIGTERM")
		}
		logFile.Close()
		if t.Failed() {
			if log, err := os.ReadFile(logFile.Name()); err == nil {
				t.Logf("alqd log:\n%s", log)
			}
		}
	}

	waitUntil(t, 20*time.Second, "alqd to listen", func() bool {
		select {
		case err := <-exited:
			exited <- err
			stop()
			t.Fatalf("alqd exited at start: %v", err)
		default:
		}
		c, err := net.DialTimeout("tcp", listen, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		resp, err := http.Get("http://" + ingestAddr + ingest.BindingsPath)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	})
	return stop
}

// waitUntil polls cond every 50 ms until it holds or timeout passes.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// testPKI is a CA with a server certificate for 127.0.0.1 and a client
// certificate, written as PEM files, and the client's TLS configuration.
type testPKI struct {
	ca, serverCert, serverKey string
	client                    *tls.Config
}

func writeTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "alqd-loadgen test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(serial int64, name string, usage x509.ExtKeyUsage, ips []net.IP) ([]byte, *ecdsa.PrivateKey) {
		key := newKey(t)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: name},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  ips,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, key
	}
	serverDER, serverKey := issue(2, "alqd", x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1)})
	clientDER, clientKey := issue(3, "swarm", x509.ExtKeyUsageClientAuth, nil)

	p := testPKI{
		ca:         writePEM(t, dir, "ca.pem", "CERTIFICATE", caDER),
		serverCert: writePEM(t, dir, "server.pem", "CERTIFICATE", serverDER),
		serverKey:  writePEM(t, dir, "server.key", "PRIVATE KEY", marshalKey(t, serverKey)),
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	p.client = &tls.Config{
		RootCAs:      pool,
		ServerName:   "127.0.0.1",
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{{Certificate: [][]byte{clientDER}, PrivateKey: clientKey}},
	}
	return p
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func marshalKey(t *testing.T, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func writePEM(t *testing.T, dir, name, blockType string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
