package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/internal/leaktest"
	"github.com/alqd/alqd/store"
)

// testNow is the fixed server time of every test: 2026-01-01 00:00:00 UTC.
var testNow = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// testServerDUID is the server identity of every test store (a DUID-LL).
var testServerDUID = []byte{0x00, 0x03, 0x00, 0x01, 0x02, 0x00, 0x5e, 0x00, 0x53, 0x01}

func TestMain(m *testing.M) {
	runDumpClientIfAsked()
	runIfChild(fanoutClientEnv, "fanout client", fanoutClient)
	runIfChild(activeBenchEnv, "active benchmark requestor", activeBenchClient)
	code := m.Run()
	if code == 0 {
		if leaked := leaktest.Check(5*time.Second, []string{"alqd/alqd/server.", "panjf2000/gnet"}); leaked != "" {
			fmt.Fprintf(os.Stderr, "leaked goroutines:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// runIfChild calls run and exits when env is set, which means that a
// benchmark started the test binary as its child process. env contains
// run's arguments as JSON, and run talks to the benchmark over standard
// input and output.
func runIfChild[A any](env, name string, run func(A, io.Reader, io.Writer) error) {
	arg := os.Getenv(env)
	if arg == "" {
		return
	}
	var a A
	err := json.Unmarshal([]byte(arg), &a)
	if err == nil {
		err = run(a, os.Stdin, os.Stdout)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// duid returns a DUID-LL built from n, unique per n.
func duid(n int) []byte {
	return []byte{0x00, 0x03, 0x00, 0x01, 0x02, 0x00, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
}

// binding returns an active binding: an IA_NA address when prefix is a
// /128, else an IA_PD prefix; granted 3600/7200 s at testNow minus 100 s.
func binding(prefix string, client []byte, link string) store.Binding {
	p := netip.MustParsePrefix(prefix)
	typ := store.TypeNA
	if p.Bits() != 128 {
		typ = store.TypePD
	}
	return store.Binding{
		Key:               store.Key{Type: typ, Prefix: p},
		ClientID:          client,
		IAID:              1,
		PreferredLifetime: 3600,
		ValidLifetime:     7200,
		State:             store.StateActive,
		CLTT:              testNow.Add(-100 * time.Second),
		LinkAddress:       netip.MustParseAddr(link),
	}
}

// openStore opens a store in a temporary directory whose change times come
// from clock (testNow when nil), and closes it at the end of the test.
func openStore(t testing.TB, clock func() time.Time) *store.Store {
	t.Helper()
	if clock == nil {
		clock = func() time.Time { return testNow }
	}
	st, err := store.Open(t.TempDir(), store.Options{
		NoSync:       true,
		TrimInterval: -1,
		ServerDUID:   testServerDUID,
		Clock:        clock,
		Logger:       slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("store.Close: %v", err)
		}
	})
	return st
}

func seed(t testing.TB, st *store.Store, bs ...store.Binding) {
	t.Helper()
	if _, err := st.Apply(context.Background(), bs, nil); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

// testConfig is the base configuration of the tests: loopback, ::1 allowed.
func testConfig() Config {
	return Config{
		Listen:     "[::1]:0",
		ListenUDP:  "[::1]:0",
		Allow:      []netip.Prefix{netip.MustParsePrefix("::1/128")},
		EventLoops: 2,
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// startServer runs a server on st and shuts it down at the end of the test.
func startServer(t testing.TB, st Store, cfg Config, opts ...Option) *Server {
	t.Helper()
	opts = append([]Option{
		WithClock(func() time.Time { return testNow }),
		WithLogger(slog.New(slog.DiscardHandler)),
	}, opts...)
	srv, err := New(cfg, st, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- srv.Run() }()
	select {
	case <-srv.Ready():
	case err := <-runErr:
		t.Fatalf("Run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("server not ready after 10 s")
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-runErr; err != nil {
			t.Errorf("Run returned %v after Shutdown", err)
		}
	})
	return srv
}

// testRequestor is a Bulk Leasequery requestor over a real socket.
type testRequestor struct {
	t    testing.TB
	conn net.Conn
	fr   *codec.FrameReader
}

func dial(t testing.TB, srv *Server) *testRequestor {
	t.Helper()
	c, err := net.DialTimeout("tcp", srv.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatalf("dial %v: %v", srv.Addr(), err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &testRequestor{t: t, conn: c, fr: codec.NewFrameReader(c, 0)}
}

// requestorDUID is the DUID the test requestor sends in OPTION_CLIENTID.
var requestorDUID = []byte{0x00, 0x03, 0x00, 0x01, 0x02, 0x00, 0x5e, 0x00, 0x53, 0xaa}

// leasequery builds a LEASEQUERY with the requestor's CLIENTID, q, and the
// extra message options.
func leasequery(xid uint32, q codec.LQQuery, extra ...codec.Option) []byte {
	var opts codec.Options
	opts.Add(codec.OptClientID, requestorDUID)
	lq, err := q.AppendTo(nil)
	if err != nil {
		panic(err)
	}
	opts.Add(codec.OptLQQuery, lq[codec.OptionHeaderLen:])
	opts = append(opts, extra...)
	m := codec.Message{Type: codec.MsgLeasequery, TransactionID: xid, Options: opts}
	b, err := m.AppendTo(nil)
	if err != nil {
		panic(err)
	}
	return b
}

func byLink(link string) codec.LQQuery {
	return codec.LQQuery{QueryType: codec.QueryByLinkAddress, LinkAddress: netip.MustParseAddr(link)}
}

func byAddress(addr string) codec.LQQuery {
	ia, _ := (&codec.IAAddr{Addr: netip.MustParseAddr(addr)}).AppendTo(nil)
	q := codec.LQQuery{QueryType: codec.QueryByAddress, LinkAddress: netip.IPv6Unspecified()}
	q.Options.Add(codec.OptIAAddr, ia[codec.OptionHeaderLen:])
	return q
}

func byClientID(client []byte, link string) codec.LQQuery {
	q := codec.LQQuery{QueryType: codec.QueryByClientID, LinkAddress: netip.MustParseAddr(link)}
	q.Options.Add(codec.OptClientID, client)
	return q
}

func oro(codes ...codec.OptionCode) codec.Option {
	b, _ := codec.ORO(codes).AppendTo(nil)
	return codec.Option{Code: codec.OptORO, Data: b[codec.OptionHeaderLen:]}
}

func uint32Option(code codec.OptionCode, v uint32) codec.Option {
	return codec.Option{Code: code, Data: []byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}}
}

// send writes msg behind its msg-size.
func (r *testRequestor) send(msg []byte) {
	r.t.Helper()
	b, err := codec.AppendFrame(nil, msg)
	if err != nil {
		r.t.Fatalf("AppendFrame: %v", err)
	}
	r.write(b)
}

func (r *testRequestor) write(b []byte) {
	r.t.Helper()
	_ = r.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := r.conn.Write(b); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// next reads and decodes the next message; the result owns its bytes.
func (r *testRequestor) next() *codec.Message {
	r.t.Helper()
	m, err := r.tryNext(10 * time.Second)
	if err != nil {
		r.t.Fatalf("reading a reply: %v", err)
	}
	return m
}

func (r *testRequestor) tryNext(timeout time.Duration) (*codec.Message, error) {
	_ = r.conn.SetReadDeadline(time.Now().Add(timeout))
	b, err := r.fr.ReadFrame()
	if err != nil {
		return nil, err
	}
	m := &codec.Message{}
	if err := m.Decode(append([]byte(nil), b...)); err != nil {
		return nil, fmt.Errorf("decoding a reply: %w", err)
	}
	return m, nil
}

// answer is the reply stream of one query.
type answer struct {
	reply *codec.Message
	data  []*codec.Message
	done  *codec.Message
}

// complete reports whether the stream is complete: a REPLY with a status
// or without OPTION_CLIENT_DATA, or a DONE.
func (a *answer) complete() bool {
	if a.done != nil {
		return true
	}
	if a.reply == nil {
		return false
	}
	_, hasStatus, _ := a.reply.Options.Status()
	return hasStatus || !a.reply.Options.Has(codec.OptClientData)
}

// readAnswers reads until the answers for every xid are complete.
func (r *testRequestor) readAnswers(xids ...uint32) map[uint32]*answer {
	r.t.Helper()
	out := make(map[uint32]*answer)
	for _, x := range xids {
		out[x] = &answer{}
	}
	pending := len(xids)
	for pending > 0 {
		m := r.next()
		a := out[m.TransactionID]
		if a == nil {
			r.t.Fatalf("reply %v for unknown xid %#x", m.Type, m.TransactionID)
		}
		if a.complete() {
			r.t.Fatalf("%v for xid %#x after its answer was complete", m.Type, m.TransactionID)
		}
		switch m.Type {
		case codec.MsgLeasequeryReply:
			if a.reply != nil {
				r.t.Fatalf("second LEASEQUERY-REPLY for xid %#x", m.TransactionID)
			}
			a.reply = m
		case codec.MsgLeasequeryData:
			if a.reply == nil {
				r.t.Fatalf("LEASEQUERY-DATA before LEASEQUERY-REPLY for xid %#x", m.TransactionID)
			}
			a.data = append(a.data, m)
		case codec.MsgLeasequeryDone:
			if a.reply == nil {
				r.t.Fatalf("LEASEQUERY-DONE before LEASEQUERY-REPLY for xid %#x", m.TransactionID)
			}
			a.done = m
		default:
			r.t.Fatalf("unexpected %v", m.Type)
		}
		if a.complete() {
			pending--
		}
	}
	return out
}

// query sends one LEASEQUERY and reads its whole answer.
func (r *testRequestor) query(xid uint32, q codec.LQQuery, extra ...codec.Option) *answer {
	r.t.Helper()
	r.send(leasequery(xid, q, extra...))
	return r.readAnswers(xid)[xid]
}

// clientData decodes every OPTION_CLIENT_DATA of the answer, in order.
func (a *answer) clientData(t testing.TB) []codec.ClientData {
	t.Helper()
	var out []codec.ClientData
	for _, m := range append([]*codec.Message{a.reply}, a.data...) {
		data, ok := m.Options.ClientData()
		if !ok {
			continue
		}
		var cd codec.ClientData
		if err := cd.Decode(data); err != nil {
			t.Fatalf("decoding OPTION_CLIENT_DATA: %v", err)
		}
		out = append(out, cd)
	}
	return out
}

// status returns the status code of m, Success when it has none.
func status(t testing.TB, m *codec.Message) codec.StatusCode {
	t.Helper()
	s, ok, err := m.Options.Status()
	if err != nil {
		t.Fatalf("decoding OPTION_STATUS_CODE: %v", err)
	}
	if !ok {
		return codec.StatusSuccess
	}
	return s.Code
}

// waitClosed reads until the server closes the connection, discarding
// what arrives, and fails after timeout.
func (r *testRequestor) waitClosed(timeout time.Duration) {
	r.t.Helper()
	_ = r.conn.SetReadDeadline(time.Now().Add(timeout))
	_, err := io.Copy(io.Discard, r.conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		r.t.Fatalf("connection still open after %v", timeout)
	}
}

// eventually polls cond every 10 ms until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %v", what, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
