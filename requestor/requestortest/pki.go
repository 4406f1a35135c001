package requestortest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// PKI is a throw-away certificate authority with one server certificate
// for 127.0.0.1, ::1 and localhost, and one requestor (client)
// certificate, all valid for one hour.
type PKI struct {
	CAPool *x509.CertPool
	CA     *x509.Certificate
	Server tls.Certificate
	Client tls.Certificate
	caKey  *ecdsa.PrivateKey
}

// NewPKI creates the authority and both certificates.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	caKey := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "requestortest CA"},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatalf("requestortest: CA certificate: %v", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatalf("requestortest: CA certificate: %v", err)
	}
	p := &PKI{CAPool: x509.NewCertPool(), CA: ca, caKey: caKey}
	p.CAPool.AddCert(ca)
	p.Server = p.Issue(t, "alqd test server", x509.ExtKeyUsageServerAuth)
	p.Client = p.Issue(t, "alq test requestor", x509.ExtKeyUsageClientAuth)
	return p
}

// Issue returns a new certificate signed by the authority for 127.0.0.1,
// ::1 and localhost with the given usage.
func (p *PKI) Issue(t testing.TB, name string, usage x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	key := newKey(t)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.CA, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatalf("requestortest: certificate %q: %v", name, err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// ServerConfig returns a TLS server configuration that presents the server
// certificate and requires a client certificate from the authority, as RFC
// 7653 section 9.1 requires mutual authentication.
func (p *PKI) ServerConfig() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{p.Server},
		ClientCAs:    p.CAPool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}
}

// ClientConfig returns a TLS client configuration that trusts the
// authority and presents the requestor certificate.
func (p *PKI) ClientConfig() *tls.Config {
	return &tls.Config{RootCAs: p.CAPool, Certificates: []tls.Certificate{p.Client}}
}

// WriteFiles writes the CA certificate and the requestor certificate and
// key as PEM files into dir, for programs that take file names.
func (p *PKI) WriteFiles(t testing.TB, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	caFile = filepath.Join(dir, "ca.pem")
	certFile = filepath.Join(dir, "requestor.pem")
	keyFile = filepath.Join(dir, "requestor-key.pem")
	writePEM(t, caFile, "CERTIFICATE", p.CA.Raw)
	writePEM(t, certFile, "CERTIFICATE", p.Client.Certificate[0])
	keyDER, err := x509.MarshalPKCS8PrivateKey(p.Client.PrivateKey)
	if err != nil {
		t.Fatalf("requestortest: key: %v", err)
	}
	writePEM(t, keyFile, "PRIVATE KEY", keyDER)
	return caFile, certFile, keyFile
}

func writePEM(t testing.TB, path, kind string, der []byte) {
	t.Helper()
	data := pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatalf("requestortest: %v", err)
	}
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("requestortest: key: %v", err)
	}
	return k
}

// WriteServerFiles writes the server certificate and key as PEM files into
// dir, for servers that take file names.
func (p *PKI) WriteServerFiles(t testing.TB, dir string) (certFile, keyFile string) {
	t.Helper()
	certFile = filepath.Join(dir, "server.pem")
	keyFile = filepath.Join(dir, "server-key.pem")
	writePEM(t, certFile, "CERTIFICATE", p.Server.Certificate[0])
	keyDER, err := x509.MarshalPKCS8PrivateKey(p.Server.PrivateKey)
	if err != nil {
		t.Fatalf("requestortest: key: %v", err)
	}
	writePEM(t, keyFile, "PRIVATE KEY", keyDER)
	return certFile, keyFile
}
