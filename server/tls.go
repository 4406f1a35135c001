package server

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultHandshakeTimeout bounds the REPLY to STARTTLS and the TLS handshake
// after it. RFC 7653 gives no value. Ten seconds is ample for a mutual-TLS
// handshake, and short enough that a requestor stalling mid-handshake does
// not hold a connection slot for long.
const DefaultHandshakeTimeout = 10 * time.Second

// TLSConfig configures secure mode (RFC 7653 section 9.1): the server
// replies to STARTTLS with a REPLY without status code and then runs a TLS
// handshake in which the requestor must present a certificate that
// ClientCAFile verifies and that Allow accepts. The zero value disables
// TLS, and STARTTLS then gets TLSConnectionRefused.
//
// Whether plaintext queries are still served next to TLS is
// Config.Insecure. The address allow-list (Config.Allow) and every limit
// and timeout apply to TLS connections as to plaintext ones.
type TLSConfig struct {
	// CertFile and KeyFile are the PEM files of the server certificate
	// (with any intermediate certificates after it) and its private key.
	CertFile string
	KeyFile  string

	// ClientCAFile is a PEM file of the CA certificates that verify
	// requestor certificates. Every requestor must present a certificate
	// that chains to one of them (RFC 7653 section 9.1 requires mutual
	// authentication).
	ClientCAFile string

	// Allow lists the requestor certificates that may connect, matched
	// against the leaf certificate after it has been verified. Empty means
	// every certificate that ClientCAFile verifies: the CA is then the
	// allow-list. A certificate that matches no entry aborts the handshake,
	// as RFC 7653 section 9.1 requires for unacceptable requestors.
	Allow []CertPattern

	// HandshakeTimeout bounds the REPLY to STARTTLS and the TLS handshake.
	// Zero means DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
}

// Enabled reports whether any TLS file is set, that is, whether the server
// is meant to offer secure mode.
func (c *TLSConfig) Enabled() bool {
	return c.CertFile != "" || c.KeyFile != "" || c.ClientCAFile != ""
}

// validate checks the TLS part of a Config. The files themselves are read
// by New.
func (c *TLSConfig) validate() error {
	if !c.Enabled() {
		if len(c.Allow) > 0 {
			return fmt.Errorf("%w: TLS.Allow lists %d certificates but no TLS certificate, key and client CA are set", ErrInvalidConfig, len(c.Allow))
		}
		return nil
	}
	for _, f := range []struct{ name, value string }{
		{"TLS.CertFile", c.CertFile},
		{"TLS.KeyFile", c.KeyFile},
		{"TLS.ClientCAFile", c.ClientCAFile},
	} {
		if f.value == "" {
			return fmt.Errorf("%w: %s is empty; secure mode needs the server certificate, its key and the client CA file", ErrInvalidConfig, f.name)
		}
	}
	if c.HandshakeTimeout < 0 {
		return fmt.Errorf("%w: TLS.HandshakeTimeout is %v, want 0 (default) or more", ErrInvalidConfig, c.HandshakeTimeout)
	}
	for _, p := range c.Allow {
		if p.Kind < CertCommonName || p.Kind > CertSPKISHA256 || p.Value == "" {
			return fmt.Errorf("%w: TLS.Allow entry %q is invalid; build entries with ParseCertPattern", ErrInvalidConfig, p.String())
		}
	}
	return nil
}

// CertPatternKind selects the part of a certificate that a CertPattern
// matches.
type CertPatternKind uint8

// Certificate pattern kinds, with the prefix ParseCertPattern takes.
const (
	CertCommonName CertPatternKind = iota + 1 // "cn:" the subject common name
	CertDNSName                               // "dns:" a DNS name in the subject alternative names
	CertIPAddress                             // "ip:" an IP address in the subject alternative names
	CertURI                                   // "uri:" a URI in the subject alternative names
	CertSPKISHA256                            // "sha256:" the SHA-256 of the DER SubjectPublicKeyInfo, in hex
)

var certPatternPrefixes = [...]string{
	CertCommonName: "cn:",
	CertDNSName:    "dns:",
	CertIPAddress:  "ip:",
	CertURI:        "uri:",
	CertSPKISHA256: "sha256:",
}

// CertPattern is one entry of the certificate allow-list: a requestor
// whose leaf certificate carries Value in the place Kind names. Build it
// with ParseCertPattern, which puts Value in the canonical form Match
// compares against.
type CertPattern struct {
	Kind  CertPatternKind
	Value string
}

// ParseCertPattern parses an allow-list entry: "cn:NAME" (subject common
// name, exact), "dns:NAME" (DNS subject alternative name, exact, case
// insensitive, no wildcards), "ip:ADDRESS" (IP subject alternative name),
// "uri:URI" (URI subject alternative name, exact) or "sha256:HEX" (SHA-256
// of the certificate's SubjectPublicKeyInfo, 64 hex digits, colons
// allowed; it survives certificate renewal with the same key).
func ParseCertPattern(s string) (CertPattern, error) {
	for kind, prefix := range certPatternPrefixes {
		if prefix == "" || !strings.HasPrefix(strings.ToLower(s), prefix) {
			continue
		}
		p := CertPattern{Kind: CertPatternKind(kind), Value: s[len(prefix):]}
		if err := p.canonicalize(); err != nil {
			return CertPattern{}, err
		}
		return p, nil
	}
	return CertPattern{}, fmt.Errorf("%w: certificate pattern %q has no known prefix; use one of cn:, dns:, ip:, uri: or sha256: followed by the value", ErrInvalidConfig, s)
}

// canonicalize checks p.Value and rewrites it into the form Match uses.
func (p *CertPattern) canonicalize() error {
	if p.Value == "" {
		return fmt.Errorf("%w: certificate pattern %q has nothing after the prefix", ErrInvalidConfig, p.String())
	}
	switch p.Kind {
	case CertDNSName:
		p.Value = strings.ToLower(strings.TrimSuffix(p.Value, "."))
		if p.Value == "" {
			return fmt.Errorf("%w: certificate pattern %q has no DNS name", ErrInvalidConfig, p.String())
		}
	case CertIPAddress:
		a, err := netip.ParseAddr(p.Value)
		if err != nil || a.Zone() != "" {
			return fmt.Errorf("%w: certificate pattern %q: %q is not an IP address", ErrInvalidConfig, p.String(), p.Value)
		}
		p.Value = a.Unmap().String()
	case CertSPKISHA256:
		h := strings.ToLower(strings.ReplaceAll(p.Value, ":", ""))
		if b, err := hex.DecodeString(h); err != nil || len(b) != sha256.Size {
			return fmt.Errorf("%w: certificate pattern %q: want 64 hex digits of a SHA-256 digest", ErrInvalidConfig, p.String())
		}
		p.Value = h
	}
	return nil
}

// String returns the pattern in the form ParseCertPattern takes.
func (p CertPattern) String() string {
	if int(p.Kind) < len(certPatternPrefixes) && p.Kind != 0 {
		return certPatternPrefixes[p.Kind] + p.Value
	}
	return fmt.Sprintf("CertPatternKind(%d):%s", p.Kind, p.Value)
}

// Match reports whether cert carries the pattern's value. It expects the
// canonical Value that ParseCertPattern produces.
func (p CertPattern) Match(cert *x509.Certificate) bool {
	switch p.Kind {
	case CertCommonName:
		return cert.Subject.CommonName == p.Value
	case CertDNSName:
		for _, name := range cert.DNSNames {
			if strings.ToLower(strings.TrimSuffix(name, ".")) == p.Value {
				return true
			}
		}
	case CertIPAddress:
		for _, ip := range cert.IPAddresses {
			if a, ok := netip.AddrFromSlice(ip); ok && a.Unmap().String() == p.Value {
				return true
			}
		}
	case CertURI:
		for _, u := range cert.URIs {
			if u.String() == p.Value {
				return true
			}
		}
	case CertSPKISHA256:
		sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
		return hex.EncodeToString(sum[:]) == p.Value
	}
	return false
}

// SPKIFingerprint returns the "sha256:" allow-list entry for cert.
func SPKIFingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return certPatternPrefixes[CertSPKISHA256] + hex.EncodeToString(sum[:])
}

// errCertNotAllowed is returned by the handshake when the requestor's
// verified certificate matches no TLSConfig.Allow entry.
var errCertNotAllowed = errors.New("server: requestor certificate is not on the TLS allow-list")

// tlsCipherSuites are the TLS 1.2 cipher suites RFC 7525 section 4.2
// recommends, plus their ChaCha20-Poly1305 counterparts (RFC 7905): ECDHE
// key exchange (forward secrecy) with an AEAD cipher only. TLS 1.3 suites
// are all AEAD and crypto/tls does not let them be configured.
var tlsCipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// tlsServer is the secure-mode state of a Server: the TLS configuration,
// swapped whole on reload, and the connections that were handed over to
// crypto/tls, for shutdown.
//
// Reload swaps a pointer that the base configuration's GetConfigForClient
// loads for every new handshake, so a reload never touches a running
// connection, and a handshake uses either the old certificate, key and
// client CA pool or the new ones, never a mix. Session tickets are off: a
// resumed TLS 1.3 session would skip verification against the client CA
// pool in force, and long-lived requestor connections gain little from
// resumption.
type tlsServer struct {
	files   TLSConfig // copied at New; reload reads the same paths
	timeout time.Duration

	current atomic.Pointer[tls.Config]
	base    *tls.Config // passed to tls.Server; delegates to current

	reloadMu sync.Mutex // serializes ReloadTLS calls

	mu       sync.Mutex
	conns    map[*tlsConn]struct{}
	hubs     []*tlsHub // Active Leasequery groups, started on first use
	stopping bool
}

// newTLSServer loads the files of cfg, or returns nil when TLS is off.
func newTLSServer(cfg *TLSConfig) (*tlsServer, error) {
	if !cfg.Enabled() {
		return nil, nil
	}
	t := &tlsServer{
		files:   *cfg,
		timeout: cfg.HandshakeTimeout,
		conns:   make(map[*tlsConn]struct{}),
	}
	t.files.Allow = append([]CertPattern(nil), cfg.Allow...)
	if t.timeout == 0 {
		t.timeout = DefaultHandshakeTimeout
	}
	t.base = &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return t.current.Load(), nil
		},
	}
	if err := t.reload(time.Now()); err != nil {
		return nil, err
	}
	return t, nil
}

// reload reads the certificate, key and client CA files and, when they are
// usable at now, makes them the configuration of new handshakes.
func (t *tlsServer) reload(now time.Time) error {
	t.reloadMu.Lock()
	defer t.reloadMu.Unlock()

	f := &t.files
	pair, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return fmt.Errorf("server: loading TLS certificate %s and key %s: %w", f.CertFile, f.KeyFile, err)
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return fmt.Errorf("server: parsing TLS certificate %s: %w", f.CertFile, err)
		}
	}
	if now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
		return fmt.Errorf("server: TLS certificate %s is valid from %v to %v, not now (%v); renew it",
			f.CertFile, leaf.NotBefore.UTC(), leaf.NotAfter.UTC(), now.UTC())
	}

	pemData, err := os.ReadFile(f.ClientCAFile)
	if err != nil {
		return fmt.Errorf("server: reading TLS client CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		return fmt.Errorf("server: TLS client CA file %s contains no PEM certificate", f.ClientCAFile)
	}

	t.current.Store(&tls.Config{
		Certificates:           []tls.Certificate{pair},
		ClientAuth:             tls.RequireAndVerifyClientCert, // RFC 7653 section 9.1: mutual authentication
		ClientCAs:              pool,
		MinVersion:             tls.VersionTLS12, // RFC 7525 section 3.1.1: no TLS 1.0 or 1.1
		CipherSuites:           tlsCipherSuites,
		SessionTicketsDisabled: true,
		VerifyConnection:       t.verifyConnection,
	})
	return nil
}

// verifyConnection applies the allow-list. crypto/tls calls it after it
// verified the requestor's chain against the client CA pool, and an error
// aborts the handshake (RFC 7653 section 9.1 requires that for an
// unacceptable certificate).
func (t *tlsServer) verifyConnection(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errCertNotAllowed // RequireAndVerifyClientCert already rejects this
	}
	if _, ok := t.match(cs.PeerCertificates[0]); !ok {
		leaf := cs.PeerCertificates[0]
		return fmt.Errorf("%w: subject %q, %s", errCertNotAllowed, leaf.Subject.String(), SPKIFingerprint(leaf))
	}
	return nil
}

// match returns the allow-list entry cert matches; an empty allow-list
// accepts every certificate with the zero CertPattern.
func (t *tlsServer) match(cert *x509.Certificate) (CertPattern, bool) {
	if len(t.files.Allow) == 0 {
		return CertPattern{}, true
	}
	for _, p := range t.files.Allow {
		if p.Match(cert) {
			return p, true
		}
	}
	return CertPattern{}, false
}

// add registers a handed-over connection; it reports false once shutdown
// has begun, and the caller then closes the connection.
func (t *tlsServer) add(c *tlsConn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopping {
		return false
	}
	t.conns[c] = struct{}{}
	return true
}

func (t *tlsServer) remove(c *tlsConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.conns, c)
}

// shutdown stops every TLS connection the way Server.Shutdown stops gnet
// connections, and refuses later handovers. A nil t does nothing.
func (t *tlsServer) shutdown() {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopping = true
	for c := range t.conns {
		c.shutdown()
	}
}

// closeAll closes every TLS connection's socket at once and stops the
// Active Leasequery hubs, for a shutdown whose deadline passed or an
// engine that stopped. A nil t does nothing.
func (t *tlsServer) closeAll() {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopping = true
	for c := range t.conns {
		c.forceClose()
	}
	t.stopHubsLocked()
}

// ReloadTLS reads the TLS certificate, key and client CA files again and
// uses them for every handshake from now on; established connections keep
// running. On error the configuration in force stays. It returns nil
// without doing anything when TLS is off. Safe for concurrent use; cmd/alqd
// calls it on SIGHUP.
func (s *Server) ReloadTLS() error {
	if s.tls == nil {
		return nil
	}
	if err := s.tls.reload(time.Now()); err != nil {
		return err
	}
	s.log.Info("TLS certificate and client CA reloaded", "cert", s.tls.files.CertFile, "client_ca", s.tls.files.ClientCAFile)
	return nil
}

// tlsMetrics are the secure-mode collectors of Metrics.
type tlsMetrics struct {
	handovers  prometheus.Counter
	handshakes *prometheus.CounterVec
	notSecured prometheus.Counter

	// sent and received are the "tls" series of alqd_sent_bytes_total and
	// alqd_received_bytes_total.
	sent, received prometheus.Counter
}

// newTLSMetrics creates the secure-mode collectors; bytesSent and
// bytesRecv are the transport-labelled byte counters of Metrics.
func newTLSMetrics(bytesSent, bytesRecv *prometheus.CounterVec) tlsMetrics {
	m := tlsMetrics{
		handovers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "alqd_tls_handovers_total",
			Help: "Connections handed from the event loops to crypto/tls after STARTTLS.",
		}),
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alqd_tls_handshakes_total",
			Help: "TLS handshakes after STARTTLS, by result (ok, failed, timeout, not_allowed: the certificate is not on the allow-list).",
		}, []string{"result"}),
		notSecured: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "alqd_tls_required_closes_total",
			Help: "Connections closed because their first message was not STARTTLS while plaintext is off.",
		}),
		sent:     bytesSent.WithLabelValues("tls"),
		received: bytesRecv.WithLabelValues("tls"),
	}
	for _, r := range []string{"ok", "failed", "timeout", "not_allowed"} {
		m.handshakes.WithLabelValues(r)
	}
	return m
}

// collectors returns the collectors NewMetrics registers.
func (m *tlsMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.handovers, m.handshakes, m.notSecured}
}
