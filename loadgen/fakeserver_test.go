package loadgen

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
)

// fakeServer is a scripted Active Leasequery server on loopback: it reads
// one ACTIVELEASEQUERY per connection (after STARTTLS when it has a TLS
// configuration), records it, and hands the connection to the script.
type fakeServer struct {
	t      *testing.T
	ln     net.Listener
	script func(c *fakeConn)
	tls    *tls.Config // nil: STARTTLS is refused with TLSConnectionRefused

	mu      sync.Mutex
	queries []fakeQuery
	conns   []net.Conn
	blocked map[int]bool // connections whose writes timed out, by query index
	wg      sync.WaitGroup
}

// fakeQuery is what one connection sent.
type fakeQuery struct {
	remote    netip.Addr
	msgType   codec.MsgType
	xid       uint32
	relayID   []byte // key of the OPTION_LQ_QUERY; nil without one
	relayData bool   // OPTION_LQ_RELAY_DATA requested in the matching ORO
	tls       bool
}

// fakeConn is the script's handle on one connection.
type fakeConn struct {
	srv   *fakeServer
	index int
	conn  net.Conn
	xid   uint32
	err   error // first write error
}

func startFakeServer(t *testing.T, tlsConfig *tls.Config, script func(c *fakeConn)) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{t: t, ln: ln, script: script, tls: tlsConfig, blocked: make(map[int]bool)}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(s.close)
	return s
}

func (s *fakeServer) addr() string { return s.ln.Addr().String() }

func (s *fakeServer) close() {
	s.ln.Close()
	s.mu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *fakeServer) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns = append(s.conns, c)
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			s.serve(c)
		}()
	}
}

func (s *fakeServer) serve(c net.Conn) {
	q := fakeQuery{remote: c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()}
	frame, err := readFrame(c)
	if err != nil {
		return
	}
	var m codec.Message
	if err := m.Decode(frame); err != nil {
		s.t.Errorf("fake server: first message does not decode: %v", err)
		return
	}
	if m.Type == codec.MsgStartTLS {
		if c, err = s.startTLS(c, m.TransactionID); err != nil {
			return
		}
		q.tls = true
		if frame, err = readFrame(c); err != nil {
			return
		}
		if err := m.Decode(frame); err != nil {
			s.t.Errorf("fake server: query after STARTTLS does not decode: %v", err)
			return
		}
	}
	q.msgType, q.xid = m.Type, m.TransactionID
	var lq codec.LQQuery
	if ok, err := m.Options.LQQuery(&lq); err != nil {
		s.t.Errorf("fake server: OPTION_LQ_QUERY does not decode: %v", err)
	} else if ok {
		id, _ := lq.Options.RelayID()
		q.relayID = append([]byte(nil), id...)
		q.relayData = lq.Options.Requests(codec.OptLQRelayData)
	} else {
		q.relayData = m.Options.Requests(codec.OptLQRelayData)
	}

	s.mu.Lock()
	index := len(s.queries)
	s.queries = append(s.queries, q)
	s.mu.Unlock()
	s.script(&fakeConn{srv: s, index: index, conn: c, xid: m.TransactionID})
}

// startTLS sends the REPLY to STARTTLS and runs the server handshake, or
// rejects TLS with TLSConnectionRefused when the server has no TLS
// configuration.
func (s *fakeServer) startTLS(c net.Conn, xid uint32) (net.Conn, error) {
	b, _ := codec.AppendHeader(nil, codec.MsgReply, xid)
	if s.tls == nil {
		b, _ = codec.AppendStatusCode(b, codec.StatusTLSConnectionRefused, "no TLS here")
	}
	if err := writeFrame(c, b); err != nil || s.tls == nil {
		return nil, errors.New("TLS refused")
	}
	tc := tls.Server(c, s.tls)
	if err := tc.Handshake(); err != nil {
		return nil, err
	}
	return tc, nil
}

func (s *fakeServer) recorded() []fakeQuery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]fakeQuery(nil), s.queries...)
}

func (s *fakeServer) wasBlocked(index int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.blocked[index]
}

func readFrame(r io.Reader) ([]byte, error) {
	var size [2]byte
	if _, err := io.ReadFull(r, size[:]); err != nil {
		return nil, err
	}
	frame := make([]byte, int(size[0])<<8|int(size[1]))
	_, err := io.ReadFull(r, frame)
	return frame, err
}

func writeFrame(w io.Writer, msg []byte) error {
	b, err := codec.AppendFrame(nil, msg)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// send writes one message, with a write deadline of timeout when it is not
// zero. A write that times out marks the connection blocked.
func (c *fakeConn) send(msg []byte, timeout time.Duration) error {
	if c.err != nil {
		return c.err
	}
	if timeout > 0 {
		c.conn.SetWriteDeadline(time.Now().Add(timeout))
	}
	if c.err = writeFrame(c.conn, msg); c.err != nil {
		var ne net.Error
		if errors.As(c.err, &ne) && ne.Timeout() {
			c.srv.mu.Lock()
			c.srv.blocked[c.index] = true
			c.srv.mu.Unlock()
		}
	}
	return c.err
}

// reply sends LEASEQUERY-REPLY with OPTION_LQ_BASE_TIME and, unless
// status is Success, a status code.
func (c *fakeConn) reply(status codec.StatusCode) error {
	b, _ := codec.AppendHeader(nil, codec.MsgLeasequeryReply, c.xid)
	if status != codec.StatusSuccess {
		b, _ = codec.AppendStatusCode(b, status, "scripted status")
	}
	b = codec.AppendUint32Option(b, codec.OptLQBaseTime, codec.DHCPTime(time.Now()))
	return c.send(b, 0)
}

// update returns a LEASEQUERY-DATA holding one binding of client n, with
// the DUID stamped with the current time when stamped is set.
func (c *fakeConn) update(n uint32, stamped bool) []byte {
	stamp := uint64(0)
	if stamped {
		stamp = stampValue(time.Now())
	}
	d := codec.ClientData{
		ClientID: appendClientDUID(nil, n, stamp),
		Addrs:    []codec.IAAddr{{Addr: naAddress(n, 0), PreferredLifetime: 1800, ValidLifetime: 3600}},
	}
	b, _ := codec.AppendHeader(nil, codec.MsgLeasequeryData, c.xid)
	b, err := d.AppendTo(b)
	if err != nil {
		c.srv.t.Errorf("fake server: encoding client data: %v", err)
	}
	return codec.AppendUint32Option(b, codec.OptLQBaseTime, codec.DHCPTime(time.Now()))
}

// keepalive returns a LEASEQUERY-DATA without client data.
func (c *fakeConn) keepalive() []byte {
	b, _ := codec.AppendHeader(nil, codec.MsgLeasequeryData, c.xid)
	return codec.AppendUint32Option(b, codec.OptLQBaseTime, codec.DHCPTime(time.Now()))
}

// corrupt returns a LEASEQUERY-DATA whose only option claims more octets
// than the message holds.
func (c *fakeConn) corrupt() []byte {
	b, _ := codec.AppendHeader(nil, codec.MsgLeasequeryData, c.xid)
	return append(b, 0, byte(codec.OptClientData), 0, 50, 1, 2, 3)
}

// waitClosed reads until the requestor closes the connection.
func (c *fakeConn) waitClosed() {
	io.Copy(io.Discard, c.conn)
}

// testTLSConfigs returns a server configuration with a fresh self-signed
// certificate for 127.0.0.1 and a client configuration that trusts it.
func testTLSConfigs(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "loadgen test server"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
	client = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	return server, client
}
