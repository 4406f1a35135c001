package server

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/store"
)

// activeConfig is testConfig with plaintext Active Leasequery on.
func activeConfig() Config {
	cfg := testConfig()
	cfg.Active = true
	cfg.Insecure = true
	return cfg
}

// activeleasequery builds an ACTIVELEASEQUERY with the requestor's CLIENTID,
// q as OPTION_LQ_QUERY when not nil, and the extra message options.
func activeleasequery(xid uint32, q *codec.LQQuery, extra ...codec.Option) []byte {
	var opts codec.Options
	opts.Add(codec.OptClientID, requestorDUID)
	if q != nil {
		lq, err := q.AppendTo(nil)
		if err != nil {
			panic(err)
		}
		opts.Add(codec.OptLQQuery, lq[codec.OptionHeaderLen:])
	}
	opts = append(opts, extra...)
	m := codec.Message{Type: codec.MsgActiveLeasequery, TransactionID: xid, Options: opts}
	b, err := m.AppendTo(nil)
	if err != nil {
		panic(err)
	}
	return b
}

// byRelayID and byRemoteID build the RFC 5460 query types.
func byRelayID(id []byte, link string) codec.LQQuery {
	q := codec.LQQuery{QueryType: codec.QueryByRelayID, LinkAddress: netip.MustParseAddr(link)}
	q.Options.Add(codec.OptRelayID, id)
	return q
}

func byRemoteID(id []byte, link string) codec.LQQuery {
	q := codec.LQQuery{QueryType: codec.QueryByRemoteID, LinkAddress: netip.MustParseAddr(link)}
	q.Options.Add(codec.OptRemoteID, id)
	return q
}

// leaseState is what a requestor knows about one binding, rebuilt from
// OPTION_CLIENT_DATA: every field the wire carries, with lifetimes and
// OPTION_CLT_TIME turned into absolute server times through the message's
// base-time, so that states sent at different times compare equal.
type leaseState struct {
	client      string
	prefix      netip.Prefix
	ended       bool      // both lifetimes 0
	validUntil  time.Time // base-time + valid lifetime; zero when infinite or ended
	prefUntil   time.Time
	lastContact time.Time // base-time - OPTION_CLT_TIME
	relayPeer   netip.Addr
	relayMsg    string
}

func (l leaseState) String() string {
	return fmt.Sprintf("%s client=%x ended=%v valid<%s pref<%s clt=%s relay=%v/%x",
		l.prefix, l.client, l.ended, l.validUntil.Format(time.TimeOnly), l.prefUntil.Format(time.TimeOnly),
		l.lastContact.Format(time.TimeOnly), l.relayPeer, l.relayMsg)
}

// until returns base plus a remaining lifetime, zero for infinity.
func until(base time.Time, lifetime uint32) time.Time {
	if lifetime == infinity {
		return time.Time{}
	}
	return base.Add(time.Duration(lifetime) * time.Second)
}

// expectedState is the leaseState a requestor must end with for bd.
func expectedState(bd *store.Binding, relay bool) leaseState {
	l := leaseState{client: string(bd.ClientID), prefix: bd.Prefix}
	cltt := bd.CLTT.Truncate(time.Second)
	if bd.State != store.StateActive {
		l.ended = true
	} else {
		l.validUntil = until(cltt, bd.ValidLifetime)
		l.prefUntil = until(cltt, bd.PreferredLifetime)
	}
	l.lastContact = cltt
	if relay && len(bd.RelayMessage) > 0 {
		l.relayPeer = bd.RelayPeer
		if !l.relayPeer.IsValid() {
			l.relayPeer = netip.IPv6Unspecified()
		}
		l.relayMsg = string(bd.RelayMessage)
	}
	return l
}

// activeEvent is one message of an active query, decoded.
type activeEvent struct {
	msg      *codec.Message
	status   codec.StatusCode
	hasBase  bool
	base     uint32
	bindings []leaseState
}

// activeRequestor runs one Active Leasequery over a real socket and keeps
// the view it builds from the answers.
type activeRequestor struct {
	*testRequestor
	xid     uint32
	pending []byte // received bytes not yet framed
	buf     []byte

	view       map[netip.Prefix]leaseState
	replies    int
	data       int
	keepalives int
	statuses   []codec.StatusCode // status codes seen, in order
	lastBase   uint32
	done       *codec.Message
}

func dialActive(t testing.TB, srv *Server) *activeRequestor {
	t.Helper()
	return &activeRequestor{testRequestor: dial(t, srv), view: make(map[netip.Prefix]leaseState)}
}

// start sends an ACTIVELEASEQUERY.
func (a *activeRequestor) start(xid uint32, q *codec.LQQuery, extra ...codec.Option) {
	a.t.Helper()
	a.xid = xid
	a.send(activeleasequery(xid, q, extra...))
}

// decodeActive decodes m into an event; a base-time missing from the
// message makes the bindings relative to fallback.
func decodeActive(t testing.TB, m *codec.Message, fallback time.Time) activeEvent {
	t.Helper()
	ev := activeEvent{msg: m, status: status(t, m)}
	ev.base, ev.hasBase = m.Options.BaseTime()
	base := fallback
	if ev.hasBase {
		base = codec.TimeFromDHCPNear(ev.base, fallback)
	}
	for _, o := range m.Options {
		if o.Code != codec.OptClientData {
			continue
		}
		var cd codec.ClientData
		if err := cd.Decode(o.Data); err != nil {
			t.Fatalf("decoding OPTION_CLIENT_DATA: %v", err)
		}
		add := func(p netip.Prefix, preferred, valid uint32) {
			l := leaseState{client: string(cd.ClientID), prefix: p, ended: preferred == 0 && valid == 0}
			if !l.ended {
				l.validUntil, l.prefUntil = until(base, valid), until(base, preferred)
			}
			if cd.HasCLTTime {
				l.lastContact = base.Add(-time.Duration(cd.CLTTime) * time.Second)
			}
			if cd.HasRelayData {
				l.relayPeer, l.relayMsg = cd.RelayData.PeerAddress, string(cd.RelayData.Message)
			}
			ev.bindings = append(ev.bindings, l)
		}
		for _, ia := range cd.Addrs {
			add(netip.PrefixFrom(ia.Addr, 128), ia.PreferredLifetime, ia.ValidLifetime)
		}
		for _, ip := range cd.Prefixes {
			add(ip.Prefix, ip.PreferredLifetime, ip.ValidLifetime)
		}
	}
	return ev
}

// readMsg reads and decodes the next message. Unlike testRequestor.next it
// survives a read timeout, which quiet relies on: the bytes of a partial
// frame stay buffered.
func (a *activeRequestor) readMsg(timeout time.Duration) (*codec.Message, error) {
	deadline := time.Now().Add(timeout)
	for {
		if len(a.pending) >= codec.FrameHeaderLen {
			n := int(a.pending[0])<<8 | int(a.pending[1])
			if len(a.pending) >= codec.FrameHeaderLen+n {
				msg := append([]byte(nil), a.pending[codec.FrameHeaderLen:codec.FrameHeaderLen+n]...)
				a.pending = a.pending[codec.FrameHeaderLen+n:]
				m := &codec.Message{}
				if err := m.Decode(msg); err != nil {
					return nil, fmt.Errorf("decoding a reply: %w", err)
				}
				return m, nil
			}
		}
		_ = a.conn.SetReadDeadline(deadline)
		if a.buf == nil {
			a.buf = make([]byte, 64<<10)
		}
		k, err := a.conn.Read(a.buf)
		a.pending = append(a.pending, a.buf[:k]...)
		if err != nil {
			return nil, err
		}
	}
}

// nextEvent reads the next message of the active query and applies it to
// the view.
func (a *activeRequestor) nextEvent(timeout time.Duration) (activeEvent, error) {
	m, err := a.readMsg(timeout)
	if err != nil {
		return activeEvent{}, err
	}
	ev := decodeActive(a.t, m, testNow)
	if m.TransactionID != a.xid {
		return ev, fmt.Errorf("%v with xid %#x, want %#x", m.Type, m.TransactionID, a.xid)
	}
	switch m.Type {
	case codec.MsgLeasequeryReply:
		a.replies++
	case codec.MsgLeasequeryData:
		a.data++
		if len(ev.bindings) == 0 && !m.Options.Has(codec.OptStatusCode) {
			a.keepalives++
		}
	case codec.MsgLeasequeryDone:
		a.done = m
	default:
		return ev, fmt.Errorf("unexpected %v", m.Type)
	}
	if m.Options.Has(codec.OptStatusCode) {
		a.statuses = append(a.statuses, ev.status)
	}
	if ev.hasBase {
		a.lastBase = ev.base
	}
	for _, l := range ev.bindings {
		a.view[l.prefix] = l
	}
	return ev, nil
}

// expect reads one event and fails unless it is a message of type t with
// status want.
func (a *activeRequestor) expect(t codec.MsgType, want codec.StatusCode) activeEvent {
	a.t.Helper()
	ev, err := a.nextEvent(10 * time.Second)
	if err != nil {
		a.t.Fatalf("waiting for %v: %v", t, err)
	}
	if ev.msg.Type != t || ev.status != want {
		a.t.Fatalf("got %v status %v, want %v status %v", ev.msg.Type, ev.status, t, want)
	}
	return ev
}

// readUntil reads events until cond holds on the view, failing after
// timeout.
func (a *activeRequestor) readUntil(timeout time.Duration, what string, cond func() bool) {
	a.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		left := time.Until(deadline)
		if left <= 0 {
			a.t.Fatalf("%s: not reached after %v; view:\n%s", what, timeout, describeView(a.view))
		}
		if _, err := a.nextEvent(left); err != nil {
			a.t.Fatalf("%s: %v; view:\n%s", what, err, describeView(a.view))
		}
	}
}

// quiet reports whether nothing arrives for d.
func (a *activeRequestor) quiet(d time.Duration) error {
	ev, err := a.nextEvent(d)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	if err != nil {
		return err
	}
	return fmt.Errorf("unexpected %v status %v with %d bindings", ev.msg.Type, ev.status, len(ev.bindings))
}

// readClosed reads until the server closes the connection, applying what
// arrives, and fails after timeout.
func (a *activeRequestor) readClosed(timeout time.Duration) {
	a.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			a.t.Fatalf("connection still open after %v", timeout)
		}
		_, err := a.nextEvent(left)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			a.t.Fatalf("connection still open after %v", timeout)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, new(*net.OpError)) {
			return
		}
		a.t.Fatalf("reading until close: %v", err)
	}
}

func describeView(view map[netip.Prefix]leaseState) string {
	var lines []string
	for _, l := range view {
		lines = append(lines, "  "+l.String())
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// diffViews lists the differences between got and want.
func diffViews(got, want map[netip.Prefix]leaseState) []string {
	var out []string
	for p, w := range want {
		g, ok := got[p]
		switch {
		case !ok:
			out = append(out, "missing "+w.String())
		case g != w:
			out = append(out, "got  "+g.String()+"\n    want "+w.String())
		}
	}
	for p, g := range got {
		if _, ok := want[p]; !ok {
			out = append(out, "extra "+g.String())
		}
	}
	sort.Strings(out)
	return out
}

// storeView is the view a requestor following every binding (or those
// match selects) must end with.
func storeView(t testing.TB, st *store.Store, relay bool, match func(*store.Binding) bool) map[netip.Prefix]leaseState {
	t.Helper()
	it := st.All()
	defer it.Close()
	view := make(map[netip.Prefix]leaseState)
	for it.Next() {
		bd := it.Binding()
		if match == nil || match(bd) {
			view[bd.Prefix] = expectedState(bd, relay)
		}
	}
	if err := it.Err(); err != nil {
		t.Fatalf("store.All: %v", err)
	}
	return view
}

// gaugeValue returns the value of a gauge.
func gaugeValue(g prometheus.Gauge) float64 {
	var out dto.Metric
	if err := g.Write(&out); err != nil {
		panic(err)
	}
	return out.GetGauge().GetValue()
}

// testClock is a settable clock shared by a store and a server.
type testClock struct{ ns atomic.Int64 }

func newTestClock(t time.Time) *testClock {
	c := &testClock{}
	c.set(t)
	return c
}

func (c *testClock) now() time.Time      { return time.Unix(0, c.ns.Load()).UTC() }
func (c *testClock) set(t time.Time)     { c.ns.Store(t.UnixNano()) }
func (c *testClock) add(d time.Duration) { c.ns.Add(int64(d)) }

// openStoreAt opens the store in dir with clock and retention (the store
// default when zero), without background trims.
func openStoreAt(t testing.TB, dir string, clock *testClock, retention time.Duration) *store.Store {
	t.Helper()
	st, err := store.Open(dir, store.Options{
		NoSync:       true,
		TrimInterval: -1,
		Retention:    retention,
		ServerDUID:   testServerDUID,
		Clock:        clock.now,
		Logger:       discardLogger(),
	})
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	return st
}

// startServerAt is startServer with the server clock set to clock.
func startServerAt(t testing.TB, st Store, cfg Config, clock *testClock, opts ...Option) *Server {
	t.Helper()
	return startServer(t, st, cfg, append([]Option{WithClock(clock.now)}, opts...)...)
}

// startTime returns OPTION_LQ_START_TIME for t.
func startTime(t time.Time) codec.Option {
	return uint32Option(codec.OptLQStartTime, codec.DHCPTime(t))
}

// activeBinding returns a binding like binding() with its CLTT at a whole
// second and lifetimes long enough to outlast any test.
func activeBinding(prefix string, client []byte, link string, cltt time.Time) store.Binding {
	b := binding(prefix, client, link)
	b.CLTT = cltt.Truncate(time.Second)
	b.PreferredLifetime, b.ValidLifetime = 40000, 80000
	return b
}

// closeAtEnd closes st when the test ends, after the servers started later
// have shut down.
func closeAtEnd(t testing.TB, st *store.Store) {
	t.Helper()
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("store.Close: %v", err)
		}
	})
}

// dialSmallBuffer connects with a receive buffer of rcvbuf octets, set
// before the handshake so that the advertised window stays small: a
// requestor that stops reading then blocks the server after a few KiB.
func dialSmallBuffer(t testing.TB, srv *Server, rcvbuf int) *testRequestor {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	c, err := d.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatalf("dial %v: %v", srv.Addr(), err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &testRequestor{t: t, conn: c, fr: codec.NewFrameReader(c, 0)}
}

// isTimeout reports whether err is a read deadline expiring.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// drain reads and applies messages until none arrives for idle.
func (a *activeRequestor) drain(idle time.Duration) {
	a.t.Helper()
	for {
		_, err := a.nextEvent(idle)
		if isTimeout(err) {
			return
		}
		if err != nil {
			a.t.Fatalf("draining: %v", err)
		}
	}
}
