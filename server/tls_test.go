package server

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
)

// testPKI is a throw-away certificate authority with ECDSA P-256 keys.
type testPKI struct {
	t    testing.TB
	ca   *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestPKI(t testing.TB, name string) *testPKI {
	t.Helper()
	key := newECDSAKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("creating CA certificate: %v", err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parsing CA certificate: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &testPKI{t: t, ca: ca, key: key, pool: pool}
}

func newECDSAKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generating a P-256 key: %v", err)
	}
	return k
}

// certSpec describes a certificate to issue. Zero times mean valid from a
// minute ago for an hour.
type certSpec struct {
	cn                  string
	dns                 []string
	ips                 []net.IP
	uris                []string
	usage               x509.ExtKeyUsage
	notBefore, notAfter time.Time
	key                 *ecdsa.PrivateKey // nil draws a new key
}

func (p *testPKI) issue(spec certSpec) tls.Certificate {
	p.t.Helper()
	key := spec.key
	if key == nil {
		key = newECDSAKey(p.t)
	}
	if spec.notBefore.IsZero() {
		spec.notBefore = time.Now().Add(-time.Minute)
	}
	if spec.notAfter.IsZero() {
		spec.notAfter = time.Now().Add(time.Hour)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		p.t.Fatalf("drawing a serial number: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: spec.cn},
		NotBefore:    spec.notBefore,
		NotAfter:     spec.notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{spec.usage},
		DNSNames:     spec.dns,
		IPAddresses:  spec.ips,
	}
	for _, s := range spec.uris {
		u, err := url.Parse(s)
		if err != nil {
			p.t.Fatalf("URI %q: %v", s, err)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.key)
	if err != nil {
		p.t.Fatalf("issuing certificate %q: %v", spec.cn, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		p.t.Fatalf("parsing certificate %q: %v", spec.cn, err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// serverCert issues a server certificate for the loopback addresses.
func (p *testPKI) serverCert() tls.Certificate {
	return p.issue(certSpec{
		cn:    "alqd test server",
		dns:   []string{"localhost"},
		ips:   []net.IP{net.IPv6loopback, net.IPv4(127, 0, 0, 1)},
		usage: x509.ExtKeyUsageServerAuth,
	})
}

// clientCert issues a requestor certificate with common name cn.
func (p *testPKI) clientCert(cn string) tls.Certificate {
	return p.issue(certSpec{cn: cn, usage: x509.ExtKeyUsageClientAuth})
}

func writePEMFile(t testing.TB, path, kind string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatalf("writing %s: %v", path, err)
	}
}

// writeKeyPair writes cert and its key as PEM files.
func writeKeyPair(t testing.TB, certFile, keyFile string, cert tls.Certificate) {
	t.Helper()
	writePEMFile(t, certFile, "CERTIFICATE", cert.Certificate[0])
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatalf("encoding key: %v", err)
	}
	writePEMFile(t, keyFile, "PRIVATE KEY", der)
}

// tlsFixture is a server PKI and the files of a secure-mode Config.
type tlsFixture struct {
	pki    *testPKI
	files  TLSConfig
	server tls.Certificate
	client tls.Certificate // a requestor certificate the server accepts
}

func newTLSFixture(t testing.TB) *tlsFixture {
	t.Helper()
	dir := t.TempDir()
	f := &tlsFixture{pki: newTestPKI(t, "alqd test CA")}
	f.files = TLSConfig{
		CertFile:         filepath.Join(dir, "server.pem"),
		KeyFile:          filepath.Join(dir, "server-key.pem"),
		ClientCAFile:     filepath.Join(dir, "ca.pem"),
		HandshakeTimeout: 5 * time.Second,
	}
	f.server = f.pki.serverCert()
	writeKeyPair(t, f.files.CertFile, f.files.KeyFile, f.server)
	writePEMFile(t, f.files.ClientCAFile, "CERTIFICATE", f.pki.ca.Raw)
	f.client = f.pki.clientCert("requestor-1")
	return f
}

// config returns the test configuration in secure mode only.
func (f *tlsFixture) config() Config {
	cfg := testConfig()
	cfg.TLS = f.files
	return cfg
}

// clientConfig returns a requestor TLS configuration that trusts the
// fixture's CA and presents cert.
func (f *tlsFixture) clientConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		RootCAs:      f.pki.pool,
		Certificates: []tls.Certificate{cert},
		ServerName:   "::1",
		MinVersion:   tls.VersionTLS12,
	}
}

// startTLSMessage returns a STARTTLS message (RFC 7653 section 6.2.2: no
// options).
func startTLSMessage(xid uint32) []byte {
	b, err := (&codec.Message{Type: codec.MsgStartTLS, TransactionID: xid}).AppendTo(nil)
	if err != nil {
		panic(err)
	}
	return b
}

// startTLS sends STARTTLS and checks that the REPLY accepts it.
func (r *testRequestor) startTLS(xid uint32) {
	r.t.Helper()
	r.send(startTLSMessage(xid))
	m := r.next()
	if m.Type != codec.MsgReply || m.TransactionID != xid {
		r.t.Fatalf("answer to STARTTLS = %v xid %#x, want REPLY xid %#x", m.Type, m.TransactionID, xid)
	}
	if _, ok, _ := m.Options.Status(); ok {
		r.t.Fatalf("REPLY to STARTTLS carries status %v, want none", status(r.t, m))
	}
	if id, ok := m.Options.ServerID(); !ok || !bytes.Equal(id, testServerDUID) {
		r.t.Fatalf("REPLY to STARTTLS has SERVERID %x, want %x", id, testServerDUID)
	}
}

// handshake runs the TLS handshake over r's connection and returns a
// requestor that speaks through TLS.
func (r *testRequestor) handshake(cfg *tls.Config) (*testRequestor, error) {
	tc := tls.Client(r.conn, cfg)
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		return nil, err
	}
	_ = tc.SetDeadline(time.Time{})
	return &testRequestor{t: r.t, conn: tc, fr: codec.NewFrameReader(tc, 0)}, nil
}

// dialTLS opens a connection, sends STARTTLS and completes the handshake.
func dialTLS(t testing.TB, srv *Server, cfg *tls.Config) *testRequestor {
	t.Helper()
	r := dial(t, srv)
	r.startTLS(0x5a5a5a)
	tr, err := r.handshake(cfg)
	if err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	return tr
}

// readFailure reads from r until an error and returns it; nil means the
// connection stayed open for timeout.
func (r *testRequestor) readFailure(timeout time.Duration) error {
	_ = r.conn.SetReadDeadline(time.Now().Add(timeout))
	_, err := io.Copy(io.Discard, r.conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	if err == nil {
		err = io.EOF
	}
	return err
}

func TestTLSBulk(t *testing.T) {
	st := openStore(t, nil)
	seed(t, st,
		binding("2001:db8:1::10/128", duid(1), "2001:db8:1::1"),
		binding("2001:db8:1::11/128", duid(2), "2001:db8:1::1"),
	)
	f := newTLSFixture(t)
	m := newTestMetrics(t)
	srv := startServer(t, st, f.config(), WithMetrics(m))

	r := dialTLS(t, srv, f.clientConfig(f.client))
	cs := r.conn.(*tls.Conn).ConnectionState()
	if cs.Version != tls.VersionTLS13 {
		t.Errorf("negotiated %s, want TLS 1.3", tls.VersionName(cs.Version))
	}
	if got := cs.PeerCertificates[0].SerialNumber; got.Cmp(f.server.Leaf.SerialNumber) != 0 {
		t.Errorf("server presented serial %v, want %v", got, f.server.Leaf.SerialNumber)
	}

	// Two queries, the second pipelined behind the first.
	r.send(leasequery(0x10, byLink("2001:db8:1::1")))
	r.send(leasequery(0x11, byAddress("2001:db8:1::11")))
	answers := r.readAnswers(0x10, 0x11)
	if n := len(answers[0x10].clientData(t)); n != 2 || answers[0x10].done == nil {
		t.Errorf("link query: %d clients, DONE %v; want 2 and a DONE", n, answers[0x10].done != nil)
	}
	if n := len(answers[0x11].clientData(t)); n != 1 {
		t.Errorf("address query: %d clients, want 1", n)
	}

	if got := counterValue(m.tls.handshakes.WithLabelValues("ok")); got != 1 {
		t.Errorf("successful handshakes = %v, want 1", got)
	}
	if got := counterValue(m.tls.received); got == 0 {
		t.Error("no received octets counted for TLS")
	}
	if got := counterValue(m.queries.WithLabelValues("tcp", "QUERY_BY_LINK_ADDRESS", "Success")); got != 1 {
		t.Errorf("link queries counted = %v, want 1", got)
	}
}

func TestTLS12CipherSuites(t *testing.T) {
	f := newTLSFixture(t)
	srv := startServer(t, openStore(t, nil), f.config())

	// A TLS 1.2 client offering only a CBC suite gets no connection: RFC
	// 7525 section 4.2 leaves only ECDHE with an AEAD cipher.
	cfg := f.clientConfig(f.client)
	cfg.MaxVersion = tls.VersionTLS12
	cfg.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}
	r := dial(t, srv)
	r.startTLS(1)
	if _, err := r.handshake(cfg); err == nil {
		t.Fatal("handshake with a CBC-only TLS 1.2 client succeeded")
	}

	cfg.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}
	tr := dialTLS(t, srv, cfg)
	cs := tr.conn.(*tls.Conn).ConnectionState()
	if cs.Version != tls.VersionTLS12 || cs.CipherSuite != tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 {
		t.Errorf("negotiated %s %s, want TLS 1.2 with ChaCha20-Poly1305",
			tls.VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite))
	}
}

// TestTLSRejectedCertificates checks that a requestor certificate the
// server cannot accept ends the connection before any query is answered.
func TestTLSRejectedCertificates(t *testing.T) {
	f := newTLSFixture(t)
	other := newTestPKI(t, "another CA")
	allowed := f.pki.clientCert("requestor-1")
	cfg := f.config()
	cfg.TLS.Allow = []CertPattern{
		{Kind: CertCommonName, Value: "requestor-1"},
		{Kind: CertDNSName, Value: "relay.example.net"},
	}
	m := newTestMetrics(t)
	srv := startServer(t, openStore(t, nil), cfg, WithMetrics(m))

	tests := []struct {
		name   string
		cert   tls.Certificate
		reason CloseReason
	}{
		{"other CA", other.clientCert("requestor-1"), CloseTLSHandshake},
		{"expired", f.pki.issue(certSpec{cn: "requestor-1", usage: x509.ExtKeyUsageClientAuth,
			notBefore: time.Now().Add(-2 * time.Hour), notAfter: time.Now().Add(-time.Hour)}), CloseTLSHandshake},
		{"not yet valid", f.pki.issue(certSpec{cn: "requestor-1", usage: x509.ExtKeyUsageClientAuth,
			notBefore: time.Now().Add(time.Hour), notAfter: time.Now().Add(2 * time.Hour)}), CloseTLSHandshake},
		{"server usage only", f.pki.issue(certSpec{cn: "requestor-1", usage: x509.ExtKeyUsageServerAuth}), CloseTLSHandshake},
		{"not on allow-list", f.pki.clientCert("requestor-2"), CloseNotAllowed},
		{"no certificate", tls.Certificate{}, CloseTLSHandshake},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := closedCount(m, tc.reason)
			r := dial(t, srv)
			r.startTLS(7)
			ccfg := f.clientConfig(tc.cert)
			if tc.cert.Certificate == nil {
				ccfg.Certificates = nil
			}
			tr, err := r.handshake(ccfg)
			if err == nil {
				// TLS 1.3: the client finishes before the server has checked
				// its certificate, so the rejection arrives as an alert on the
				// first read. No query may be answered.
				tr.send(leasequery(8, byLink("2001:db8:1::1")))
				err = tr.readFailure(5 * time.Second)
				if err == nil {
					t.Fatal("connection still open after the certificate was rejected")
				}
			}
			if !strings.Contains(err.Error(), "tls") && !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("error = %v, want a TLS alert or a closed connection", err)
			}
			eventually(t, 5*time.Second, "close counted as "+tc.reason.String(), func() bool {
				return closedCount(m, tc.reason) == before+1
			})
		})
	}

	// The certificate on the allow-list, by DNS name this time.
	byDNS := f.pki.issue(certSpec{cn: "whatever", dns: []string{"Relay.Example.Net"}, usage: x509.ExtKeyUsageClientAuth})
	for _, cert := range []tls.Certificate{allowed, byDNS} {
		r := dialTLS(t, srv, f.clientConfig(cert))
		if a := r.query(9, byLink("2001:db8:1::1")); status(t, a.reply) != codec.StatusSuccess {
			t.Errorf("allowed requestor %q got %v", cert.Leaf.Subject.CommonName, status(t, a.reply))
		}
	}
}

// TestTLSUntrustedServer checks the requestor side of a failed
// verification: the server's handshake fails and the connection closes.
func TestTLSUntrustedServer(t *testing.T) {
	f := newTLSFixture(t)
	m := newTestMetrics(t)
	srv := startServer(t, openStore(t, nil), f.config(), WithMetrics(m))

	cfg := f.clientConfig(f.client)
	cfg.RootCAs = newTestPKI(t, "unrelated CA").pool
	r := dial(t, srv)
	r.startTLS(3)
	if _, err := r.handshake(cfg); err == nil {
		t.Fatal("handshake succeeded with a server the requestor does not trust")
	}
	eventually(t, 5*time.Second, "failed handshake counted", func() bool {
		return counterValue(m.tls.handshakes.WithLabelValues("failed")) == 1
	})
}

func TestStartTLSInsecureOnly(t *testing.T) {
	cfg := testConfig()
	cfg.Active, cfg.Insecure = true, true
	srv := startServer(t, openStore(t, nil), cfg)

	r := dial(t, srv)
	r.send(startTLSMessage(0x0a0b0c))
	m := r.next()
	if m.Type != codec.MsgReply || m.TransactionID != 0x0a0b0c {
		t.Fatalf("answer = %v xid %#x, want REPLY xid 0x0a0b0c", m.Type, m.TransactionID)
	}
	if got := status(t, m); got != codec.StatusTLSConnectionRefused {
		t.Errorf("status = %v, want TLSConnectionRefused", got)
	}
	// The connection stays usable in plaintext; the requestor decides to
	// close it (RFC 7653 section 8.2).
	if a := r.query(2, byLink("2001:db8:1::1")); status(t, a.reply) != codec.StatusSuccess {
		t.Errorf("plaintext query after the refusal got %v", status(t, a.reply))
	}
}

func TestPlaintextInSecureMode(t *testing.T) {
	f := newTLSFixture(t)
	m := newTestMetrics(t)
	srv := startServer(t, openStore(t, nil), f.config(), WithMetrics(m))

	for _, msg := range [][]byte{
		leasequery(1, byLink("2001:db8:1::1")),
		activeLeasequeryMessage(2),
	} {
		r := dial(t, srv)
		r.send(msg)
		if reply, err := r.tryNext(5 * time.Second); err == nil {
			t.Errorf("%v in plaintext got %v, want the connection closed", codec.MsgType(msg[0]), reply.Type)
		}
	}
	eventually(t, 5*time.Second, "two not_secured closes", func() bool {
		return closedCount(m, CloseNotSecured) == 2
	})
}

// activeLeasequeryMessage returns an ACTIVELEASEQUERY for every binding.
func activeLeasequeryMessage(xid uint32) []byte {
	var opts codec.Options
	opts.Add(codec.OptClientID, requestorDUID)
	b, err := (&codec.Message{Type: codec.MsgActiveLeasequery, TransactionID: xid, Options: opts}).AppendTo(nil)
	if err != nil {
		panic(err)
	}
	return b
}

func TestTLSAndPlaintext(t *testing.T) {
	st := openStore(t, nil)
	seed(t, st, binding("2001:db8:1::10/128", duid(1), "2001:db8:1::1"))
	f := newTLSFixture(t)
	cfg := f.config()
	cfg.Insecure = true
	srv := startServer(t, st, cfg)

	plain := dial(t, srv)
	if a := plain.query(1, byLink("2001:db8:1::1")); len(a.clientData(t)) != 1 {
		t.Error("plaintext query with Insecure set returned no binding")
	}
	secure := dialTLS(t, srv, f.clientConfig(f.client))
	if a := secure.query(2, byLink("2001:db8:1::1")); len(a.clientData(t)) != 1 {
		t.Error("TLS query returned no binding")
	}

	// STARTTLS is only valid as the first message.
	plain.send(startTLSMessage(3))
	plain.waitClosed(5 * time.Second)
}

// logBuffer collects a server's log lines for a test.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// pipelinedConn puts the STARTTLS frame in front of the ClientHello, so
// that both leave in one write, and takes the REPLY off the stream before
// crypto/tls reads the ServerHello.
type pipelinedConn struct {
	net.Conn
	startTLS []byte
	reply    []byte
}

func (p *pipelinedConn) Write(b []byte) (int, error) {
	if p.startTLS == nil {
		return p.Conn.Write(b)
	}
	one := append(p.startTLS, b...)
	p.startTLS = nil
	if _, err := p.Conn.Write(one); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (p *pipelinedConn) Read(b []byte) (int, error) {
	if p.reply == nil {
		var size [codec.FrameHeaderLen]byte
		if _, err := io.ReadFull(p.Conn, size[:]); err != nil {
			return 0, err
		}
		p.reply = make([]byte, int(size[0])<<8|int(size[1]))
		if _, err := io.ReadFull(p.Conn, p.reply); err != nil {
			return 0, err
		}
	}
	return p.Conn.Read(b)
}

func TestStartTLSPipelinedClientHello(t *testing.T) {
	st := openStore(t, nil)
	seed(t, st, binding("2001:db8:1::10/128", duid(1), "2001:db8:1::1"))
	f := newTLSFixture(t)
	var logs logBuffer
	srv := startServer(t, st, f.config(), WithLogger(logs.logger()))

	raw, err := net.DialTimeout("tcp", srv.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	pc := &pipelinedConn{Conn: raw, startTLS: frame(startTLSMessage(0x112233))}
	tc := tls.Client(pc, f.clientConfig(f.client))
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake behind a pipelined STARTTLS: %v", err)
	}
	var reply codec.Message
	if err := reply.Decode(pc.reply); err != nil || reply.Type != codec.MsgReply || reply.TransactionID != 0x112233 {
		t.Fatalf("REPLY to STARTTLS = %v xid %#x (%v)", reply.Type, reply.TransactionID, err)
	}

	r := &testRequestor{t: t, conn: tc, fr: codec.NewFrameReader(tc, 0)}
	if a := r.query(1, byLink("2001:db8:1::1")); len(a.clientData(t)) != 1 {
		t.Error("query over the pipelined TLS connection returned no binding")
	}
	got := regexp.MustCompile(`forwarded_bytes=(\d+)`).FindStringSubmatch(logs.String())
	if got == nil {
		t.Fatal("no handover logged")
	}
	if n, _ := strconv.Atoi(got[1]); n == 0 {
		t.Error("handover forwarded no bytes; the ClientHello did not arrive with STARTTLS")
	}
}

func TestTLSHandshakeTimeout(t *testing.T) {
	f := newTLSFixture(t)
	cfg := f.config()
	cfg.TLS.HandshakeTimeout = 200 * time.Millisecond
	m := newTestMetrics(t)
	srv := startServer(t, openStore(t, nil), cfg, WithMetrics(m))

	// One requestor sends nothing after STARTTLS, one half a ClientHello.
	silent := dial(t, srv)
	silent.startTLS(1)
	partial := dial(t, srv)
	partial.startTLS(2)
	partial.write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01}) // a handshake record header and one octet

	start := time.Now()
	for _, r := range []*testRequestor{silent, partial} {
		if err := r.readFailure(5 * time.Second); err == nil {
			t.Fatal("stalled handshake still open after 5 s")
		}
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("closed after %v, before the 200 ms handshake timeout", d)
	}
	eventually(t, 5*time.Second, "two handshake timeouts counted", func() bool {
		return counterValue(m.tls.handshakes.WithLabelValues("timeout")) == 2 && closedCount(m, CloseTLSHandshake) == 2
	})
}

func TestTLSIdleTimeout(t *testing.T) {
	f := newTLSFixture(t)
	cfg := f.config()
	cfg.IdleTimeout = 200 * time.Millisecond
	m := newTestMetrics(t)
	srv := startServer(t, openStore(t, nil), cfg, WithMetrics(m))

	r := dialTLS(t, srv, f.clientConfig(f.client))
	if err := r.readFailure(5 * time.Second); err == nil {
		t.Fatal("idle TLS connection still open after 5 s")
	}
	eventually(t, 5*time.Second, "idle close counted", func() bool { return closedCount(m, CloseIdle) == 1 })
}

// TestTLSSlowConsumer checks BULK_LQ_DATA_TIMEOUT on a TLS connection whose
// requestor stops reading in the middle of a bulk answer.
func TestTLSSlowConsumer(t *testing.T) {
	st := openStore(t, nil)
	seedLink(t, st, 20000)
	f := newTLSFixture(t)
	cfg := f.config()
	cfg.DataTimeout = 300 * time.Millisecond
	cfg.NotSentLowWater = 16 << 10
	m := newTestMetrics(t)
	srv := startServer(t, st, cfg, WithMetrics(m))

	r := dialSmallBuffer(t, srv, 4096)
	r.startTLS(1)
	tr, err := r.handshake(f.clientConfig(f.client))
	if err != nil {
		t.Fatal(err)
	}
	tr.send(leasequery(2, byLink("2001:db8:1::1")))
	// Read nothing: the server fills the socket buffers, then its writes
	// stop making progress.
	eventually(t, 10*time.Second, "slow consumer closed", func() bool { return closedCount(m, CloseSlowConsumer) == 1 })
}

func TestTLSReload(t *testing.T) {
	st := openStore(t, nil)
	seed(t, st, binding("2001:db8:1::10/128", duid(1), "2001:db8:1::1"))
	f := newTLSFixture(t)
	srv := startServer(t, st, f.config())

	before := dialTLS(t, srv, f.clientConfig(f.client))

	// A new server certificate and a new client CA: requestors of the old
	// CA are refused from now on, established connections stay.
	newPKI := newTestPKI(t, "alqd test CA 2")
	newServer := newPKI.serverCert()
	writeKeyPair(t, f.files.CertFile, f.files.KeyFile, newServer)
	writePEMFile(t, f.files.ClientCAFile, "CERTIFICATE", newPKI.ca.Raw)
	if err := srv.ReloadTLS(); err != nil {
		t.Fatalf("ReloadTLS: %v", err)
	}

	if a := before.query(1, byLink("2001:db8:1::1")); len(a.clientData(t)) != 1 {
		t.Error("connection established before the reload lost its answer")
	}
	newClient := &tlsFixture{pki: newPKI}
	after := dialTLS(t, srv, newClient.clientConfig(newPKI.clientCert("requestor-1")))
	serial := after.conn.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber
	if serial.Cmp(newServer.Leaf.SerialNumber) != 0 {
		t.Errorf("after reload the server presented serial %v, want %v", serial, newServer.Leaf.SerialNumber)
	}
	old := dial(t, srv)
	old.startTLS(2)
	if tr, err := old.handshake(f.clientConfig(f.client)); err == nil {
		tr.send(leasequery(3, byLink("2001:db8:1::1")))
		if tr.readFailure(5*time.Second) == nil {
			t.Error("a requestor of the replaced CA was accepted after the reload")
		}
	}

	// A broken file keeps the configuration in force.
	if err := os.WriteFile(f.files.KeyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := srv.ReloadTLS(); err == nil {
		t.Error("ReloadTLS accepted a broken key file")
	}
	again := dialTLS(t, srv, newClient.clientConfig(newPKI.clientCert("requestor-1")))
	if a := again.query(4, byLink("2001:db8:1::1")); len(a.clientData(t)) != 1 {
		t.Error("a failed reload broke new connections")
	}
}

// TestTLSConnectionLimits checks that a handed-over connection keeps its
// place in the per-requestor connection count until it closes.
func TestTLSConnectionLimits(t *testing.T) {
	f := newTLSFixture(t)
	cfg := f.config()
	cfg.MaxConnsPerRequestor = 1
	m := newTestMetrics(t)
	srv := startServer(t, openStore(t, nil), cfg, WithMetrics(m))

	first := dialTLS(t, srv, f.clientConfig(f.client))
	second := dial(t, srv)
	second.waitClosed(5 * time.Second)
	if got := closedCount(m, CloseTooManyConnections); got != 1 {
		t.Errorf("too_many_connections closes = %v, want 1", got)
	}

	_ = first.conn.Close()
	eventually(t, 5*time.Second, "TLS close counted", func() bool { return closedCount(m, ClosePeerClosed) == 1 })
	third := dialTLS(t, srv, f.clientConfig(f.client))
	if a := third.query(1, byLink("2001:db8:1::1")); status(t, a.reply) != codec.StatusSuccess {
		t.Errorf("query after the first connection closed got %v", status(t, a.reply))
	}
}

// TestTLSShutdown checks that Shutdown ends a bulk query on a TLS
// connection with QueryTerminated, replies QueryTerminated to the queries
// pipelined behind it, and closes idle TLS connections.
func TestTLSShutdown(t *testing.T) {
	const bindings = 20000
	srv, f, runErr := startTLSServerWithLink(t, bindings)

	idle := dialTLS(t, srv, f.clientConfig(f.client))
	busy := dialTLS(t, srv, f.clientConfig(f.client))
	// Two queries wait behind the first, unread by the server while the
	// first one streams.
	busy.send(leasequery(1, byLink("2001:db8:1::1")))
	busy.send(leasequery(2, byLink("2001:db8:1::1")))
	busy.send(leasequery(3, byAddress("2001:db8:1::5")))
	if m := busy.next(); m.Type != codec.MsgLeasequeryReply || m.TransactionID != 1 {
		t.Fatalf("first answer %v xid %#x, want LEASEQUERY-REPLY xid 0x1", m.Type, m.TransactionID)
	}

	last, pending, count, shutdownErr := shutdownDuringBulk(t, srv, busy)
	if last == nil || last.Type != codec.MsgLeasequeryDone || status(t, last) != codec.StatusQueryTerminated {
		t.Errorf("bulk query over TLS ended with %v, want LEASEQUERY-DONE QueryTerminated", describeMsg(t, last))
	}
	if count-2 >= bindings {
		t.Errorf("all %d bindings were sent before the shutdown took effect; the test proves nothing", count-2)
	}
	if len(pending) != 2 {
		t.Fatalf("%d messages for the pipelined queries, want 2", len(pending))
	}
	for i, m := range pending {
		if want := uint32(2 + i); m.TransactionID != want || m.Type != codec.MsgLeasequeryReply || status(t, m) != codec.StatusQueryTerminated {
			t.Errorf("pipelined query %d: %v xid %#x, want LEASEQUERY-REPLY QueryTerminated xid %#x", i+1, describeMsg(t, m), m.TransactionID, want)
		}
	}
	if err := idle.readFailure(5 * time.Second); err == nil {
		t.Error("idle TLS connection still open after Shutdown")
	}
	if shutdownErr != nil {
		t.Errorf("Shutdown: %v", shutdownErr)
	}
	if err := <-runErr; err != nil {
		t.Errorf("Run: %v", err)
	}
}

func TestParseCertPattern(t *testing.T) {
	pki := newTestPKI(t, "pattern CA")
	cert := pki.issue(certSpec{
		cn:    "relay-7",
		dns:   []string{"relay7.example.net"},
		ips:   []net.IP{net.ParseIP("2001:db8::7"), net.IPv4(192, 0, 2, 7)},
		uris:  []string{"spiffe://example.net/relay/7"},
		usage: x509.ExtKeyUsageClientAuth,
	}).Leaf
	fingerprint := SPKIFingerprint(cert)

	tests := []struct {
		in    string
		want  CertPattern
		match bool
	}{
		{"cn:relay-7", CertPattern{CertCommonName, "relay-7"}, true},
		{"CN:relay-7", CertPattern{CertCommonName, "relay-7"}, true},
		{"cn:relay-8", CertPattern{CertCommonName, "relay-8"}, false},
		{"dns:RELAY7.example.net.", CertPattern{CertDNSName, "relay7.example.net"}, true},
		{"dns:example.net", CertPattern{CertDNSName, "example.net"}, false},
		{"ip:2001:db8:0::7", CertPattern{CertIPAddress, "2001:db8::7"}, true},
		{"ip:192.0.2.7", CertPattern{CertIPAddress, "192.0.2.7"}, true},
		{"ip:::ffff:192.0.2.7", CertPattern{CertIPAddress, "192.0.2.7"}, true},
		{"uri:spiffe://example.net/relay/7", CertPattern{CertURI, "spiffe://example.net/relay/7"}, true},
		{"uri:spiffe://example.net/relay/8", CertPattern{CertURI, "spiffe://example.net/relay/8"}, false},
		{strings.ToUpper(fingerprint), CertPattern{CertSPKISHA256, strings.TrimPrefix(fingerprint, "sha256:")}, true},
		{"sha256:" + strings.Repeat("ab", 32), CertPattern{CertSPKISHA256, strings.Repeat("ab", 32)}, false},
	}
	for _, tc := range tests {
		got, err := ParseCertPattern(tc.in)
		if err != nil {
			t.Errorf("ParseCertPattern(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("ParseCertPattern(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
		if m := got.Match(cert); m != tc.match {
			t.Errorf("%v.Match = %v, want %v", got, m, tc.match)
		}
		if again, err := ParseCertPattern(got.String()); err != nil || again != got {
			t.Errorf("ParseCertPattern(%q) = %+v, %v; want the same pattern back", got.String(), again, err)
		}
	}

	// A colon-separated fingerprint is the same entry.
	hexDigits := strings.TrimPrefix(fingerprint, "sha256:")
	var pairs []string
	for i := 0; i < len(hexDigits); i += 2 {
		pairs = append(pairs, hexDigits[i:i+2])
	}
	if p, err := ParseCertPattern("sha256:" + strings.Join(pairs, ":")); err != nil || !p.Match(cert) {
		t.Errorf("colon-separated fingerprint: %+v, %v", p, err)
	}

	for _, bad := range []string{"", "relay-7", "cn:", "dns:.", "ip:not-an-address", "ip:fe80::1%eth0", "sha256:abcd", "sha256:" + strings.Repeat("zz", 32), "email:a@example.net"} {
		if p, err := ParseCertPattern(bad); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("ParseCertPattern(%q) = %+v, %v; want ErrInvalidConfig", bad, p, err)
		}
	}
}

func TestTLSConfigValidate(t *testing.T) {
	f := newTLSFixture(t)
	tests := []struct {
		name string
		edit func(*Config)
		ok   bool
	}{
		{"secure mode", func(*Config) {}, true},
		{"secure and insecure", func(c *Config) { c.Insecure = true }, true},
		{"missing key", func(c *Config) { c.TLS.KeyFile = "" }, false},
		{"missing client CA", func(c *Config) { c.TLS.ClientCAFile = "" }, false},
		{"allow-list without TLS", func(c *Config) {
			c.TLS = TLSConfig{Allow: []CertPattern{{CertCommonName, "x"}}}
		}, false},
		{"negative handshake timeout", func(c *Config) { c.TLS.HandshakeTimeout = -time.Second }, false},
		{"unparsed allow entry", func(c *Config) { c.TLS.Allow = []CertPattern{{Kind: 99, Value: "x"}} }, false},
	}
	for _, tc := range tests {
		cfg := f.config()
		tc.edit(&cfg)
		err := cfg.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v, want ok %v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: error %v does not wrap ErrInvalidConfig", tc.name, err)
		}
	}
}

func TestNewTLSFiles(t *testing.T) {
	f := newTLSFixture(t)
	dir := t.TempDir()
	expired := f.pki.issue(certSpec{cn: "old server", usage: x509.ExtKeyUsageServerAuth,
		notBefore: time.Now().Add(-2 * time.Hour), notAfter: time.Now().Add(-time.Hour)})
	expiredCert, expiredKey := filepath.Join(dir, "old.pem"), filepath.Join(dir, "old-key.pem")
	writeKeyPair(t, expiredCert, expiredKey, expired)
	emptyCA := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(emptyCA, []byte("no PEM here\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		edit func(*TLSConfig)
		want string
	}{
		{"missing certificate file", func(c *TLSConfig) { c.CertFile = filepath.Join(dir, "absent.pem") }, "absent.pem"},
		{"expired server certificate", func(c *TLSConfig) { c.CertFile, c.KeyFile = expiredCert, expiredKey }, "renew"},
		{"client CA without certificates", func(c *TLSConfig) { c.ClientCAFile = emptyCA }, "no PEM certificate"},
		{"key of another certificate", func(c *TLSConfig) { c.KeyFile = expiredKey }, "key"},
	}
	for _, tc := range tests {
		cfg := f.config()
		tc.edit(&cfg.TLS)
		_, err := New(cfg, openStore(t, nil))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: New() error = %v, want one mentioning %q", tc.name, err, tc.want)
		}
	}
}

// FuzzParseCertPattern checks that every pattern ParseCertPattern accepts
// prints to a string it parses back to the same pattern.
func FuzzParseCertPattern(f *testing.F) {
	for _, s := range []string{"cn:relay-1", "DNS:Relay.Example.NET.", "ip:::ffff:192.0.2.1", "uri:spiffe://x/y",
		"sha256:" + strings.Repeat("AB:", 31) + "AB", "ip:fe80::1%eth0", "cn:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseCertPattern(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("ParseCertPattern(%q) error %v does not wrap ErrInvalidConfig", s, err)
			}
			return
		}
		again, err := ParseCertPattern(p.String())
		if err != nil || again != p {
			t.Fatalf("ParseCertPattern(%q) = %+v; its String %q parses to %+v, %v", s, p, p.String(), again, err)
		}
	})
}
