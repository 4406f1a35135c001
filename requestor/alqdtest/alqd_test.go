// Package alqdtest runs the requestor and the mirror against the
// alqd server started in-process on loopback, with a store in a temporary
// directory.
package alqdtest

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/requestor"
	"github.com/alqd/alqd/requestor/requestortest"
	"github.com/alqd/alqd/server"
	"github.com/alqd/alqd/store"
)

func TestMain(m *testing.M) { requestortest.Main(m) }

// now is the server's clock in every test: 2026-01-01 00:00:00 UTC.
var now = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

var (
	relayA   = []byte{0, 2, 0, 0, 0x7e, 0xd9, 'r', 'e', 'l', 'a', 'y', '-', 'a'}
	remote7  = append([]byte{0, 0, 0x7e, 0xd9}, "port-7"...)
	linkA    = netip.MustParseAddr("2001:db8:1::1")
	linkB    = netip.MustParseAddr("2001:db8:2::1")
	client1  = requestortest.DUIDLL(1)
	client2  = requestortest.DUIDLL(2)
	client3  = requestortest.DUIDLL(3)
	fixtures = []store.Binding{
		bind("2001:db8:1::10/128", client1, linkA, relayA, remote7),
		bind("2001:db8:100:1200::/56", client1, linkA, relayA, remote7),
		bind("2001:db8:1::11/128", client2, linkA, relayA, nil),
		bind("2001:db8:2::10/128", client3, linkB, nil, nil),
	}
)

// bind returns an active binding granted 1800/3600 s a minute before now.
func bind(prefix string, client []byte, link netip.Addr, relayID, remoteID []byte) store.Binding {
	p := netip.MustParsePrefix(prefix)
	typ := store.TypeNA
	if p.Bits() != 128 {
		typ = store.TypePD
	}
	return store.Binding{
		Key:               store.Key{Type: typ, Prefix: p},
		ClientID:          client,
		IAID:              7,
		PreferredLifetime: 1800,
		ValidLifetime:     3600,
		State:             store.StateActive,
		CLTT:              now.Add(-time.Minute),
		LinkAddress:       link,
		RelayID:           relayID,
		RemoteID:          remoteID,
	}
}

// startAlqd starts alqd on [::1] with the fixtures, allowing ::1, and
// returns its TCP and UDP addresses.
func startAlqd(t *testing.T) (tcp, udp string) {
	t.Helper()
	return startAlqdAllowing(t, netip.MustParsePrefix("::1/128"))
}

// startAlqdAllowing starts alqd with the fixtures, allowing the requestors
// in allow.
func startAlqdAllowing(t *testing.T, allow netip.Prefix) (tcp, udp string) {
	t.Helper()
	clock := func() time.Time { return now }
	st := openStore(t, clock)
	if _, err := st.Apply(context.Background(), fixtures, nil); err != nil {
		t.Fatal(err)
	}
	srv, _ := startServer(t, st, server.Config{Allow: []netip.Prefix{allow}}, clock)
	return srv.Addr().String(), srv.UDPAddr().String()
}

// openStore opens a store in a temporary directory with the given clock.
func openStore(t *testing.T, clock func() time.Time) *store.Store {
	t.Helper()
	st, err := store.Open(t.TempDir(), store.Options{NoSync: true, TrimInterval: -1, Clock: clock, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// startServer runs alqd on [::1] port 0 (TCP and UDP) with cfg. The
// returned stop shuts it down; the test's cleanup calls it too.
func startServer(t *testing.T, st *store.Store, cfg server.Config, clock func() time.Time) (*server.Server, func()) {
	t.Helper()
	cfg.Listen, cfg.ListenUDP, cfg.EventLoops = "[::1]:0", "[::1]:0", 1
	if cfg.Allow == nil {
		cfg.Allow = []netip.Prefix{netip.MustParsePrefix("::1/128")}
	}
	srv, err := server.New(cfg, st, server.WithClock(clock), server.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- srv.Run() }()
	select {
	case <-srv.Ready():
	case err := <-runErr:
		t.Fatalf("alqd: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("alqd not ready after 10 s")
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				t.Errorf("alqd shutdown: %v", err)
			}
			<-runErr
		})
	}
	t.Cleanup(stop)
	return srv, stop
}

func config(addr string) requestor.Config {
	return requestor.Config{Server: addr, ClientID: requestortest.DUIDLL(0xaa), BulkDataTimeout: 5 * time.Second, LQTimeout: 100 * time.Millisecond}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// targets returns the sorted addresses and prefixes of the bindings.
func targets(events []requestor.Event) []string {
	var out []string
	for _, ev := range events {
		if b, ok := ev.(requestor.Binding); ok {
			if b.Type == requestor.TypePD {
				out = append(out, b.Prefix.String())
			} else {
				out = append(out, b.Addr.String())
			}
		}
	}
	slices.Sort(out)
	return out
}

func TestAlqdBulkQueryTypes(t *testing.T) {
	addr, _ := startAlqd(t)
	tests := []struct {
		name  string
		query requestor.Query
		want  []string
	}{
		{"link-address", requestor.Query{Type: codec.QueryByLinkAddress, Link: linkA},
			[]string{"2001:db8:100:1200::/56", "2001:db8:1::10", "2001:db8:1::11"}},
		{"address", requestor.Query{Type: codec.QueryByAddress, Address: netip.MustParseAddr("2001:db8:2::10")},
			[]string{"2001:db8:2::10"}},
		{"client-id", requestor.Query{Type: codec.QueryByClientID, ClientID: client1},
			[]string{"2001:db8:100:1200::/56", "2001:db8:1::10"}},
		{"relay-id", requestor.Query{Type: codec.QueryByRelayID, RelayID: relayA},
			[]string{"2001:db8:100:1200::/56", "2001:db8:1::10", "2001:db8:1::11"}},
		{"remote-id", requestor.Query{Type: codec.QueryByRemoteID, RemoteID: codec.RemoteID{EnterpriseNumber: 32473, ID: []byte("port-7")}},
			[]string{"2001:db8:100:1200::/56", "2001:db8:1::10"}},
		{"relay-id on another link", requestor.Query{Type: codec.QueryByRelayID, RelayID: relayA, Link: linkB}, nil},
		{"no match", requestor.Query{Type: codec.QueryByClientID, ClientID: requestortest.DUIDLL(0x99)}, nil},
	}
	conn, err := requestor.Dial(testContext(t), config(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var events []requestor.Event
			err := conn.Bulk(testContext(t), tc.query, func(ev requestor.Event) error { events = append(events, ev); return nil })
			if err != nil {
				t.Fatalf("Bulk: %v", err)
			}
			if got := targets(events); !slices.Equal(got, tc.want) {
				t.Errorf("bindings = %v, want %v", got, tc.want)
			}
			if d, ok := events[len(events)-1].(requestor.Done); !ok || d.Err() != nil {
				t.Errorf("last event = %#v, want a successful Done", events[len(events)-1])
			}
		})
	}
}

func TestAlqdBindingFields(t *testing.T) {
	addr, _ := startAlqd(t)
	conn, err := requestor.Dial(testContext(t), config(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var got []requestor.Binding
	q := requestor.Query{Type: codec.QueryByAddress, Address: netip.MustParseAddr("2001:db8:1::10"), RelayData: true}
	if err := conn.Bulk(testContext(t), q, func(ev requestor.Event) error {
		if b, ok := ev.(requestor.Binding); ok {
			got = append(got, b)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// QUERY_BY_ADDRESS answers with every binding of the client on the link
	// (RFC 5007 section 4.1.2.2): the address and the prefix.
	if len(got) != 2 {
		t.Fatalf("got %d bindings, want the client's 2", len(got))
	}
	b := got[0]
	if b.Type != requestor.TypeNA {
		b = got[1]
	}
	if b.Addr != q.Address {
		t.Fatalf("bindings %v and %v, want one for %v", got[0].Addr, got[1].Addr, q.Address)
	}
	if !bytes.Equal(b.ClientID, client1) || b.State != requestor.StateActive {
		t.Errorf("binding = client %x %v, want client 1 active", b.ClientID, b.State)
	}
	if !b.HasBaseTime || b.BaseTime != codec.DHCPTime(now) {
		t.Errorf("base-time = %d (present %v), want the server clock %d", b.BaseTime, b.HasBaseTime, codec.DHCPTime(now))
	}
	// Granted 3600 s a minute before the base-time: 3540 s remain.
	if b.ValidLifetime != 3540 || b.PreferredLifetime != 1740 {
		t.Errorf("lifetimes = %d/%d, want the remaining 1740/3540", b.PreferredLifetime, b.ValidLifetime)
	}
	if !b.HasCLTTime || b.CLTTime != 60 {
		t.Errorf("CLT_TIME = %d (present %v), want 60", b.CLTTime, b.HasCLTTime)
	}
	if !bytes.Equal(conn.ServerID(), nil) && len(conn.ServerID()) < codec.MinDUIDLen {
		t.Errorf("server DUID %x is too short", conn.ServerID())
	}
}

func TestAlqdPipelined(t *testing.T) {
	addr, _ := startAlqd(t)
	conn, err := requestor.Dial(testContext(t), config(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	queries := []requestor.Query{
		{Type: codec.QueryByLinkAddress, Link: linkA},
		{Type: codec.QueryByLinkAddress, Link: linkB},
		{Type: codec.QueryByClientID, ClientID: client2},
	}
	perQuery := make([][]requestor.Event, len(queries))
	err = conn.BulkPipelined(testContext(t), queries, func(ev requestor.Event) error {
		i := ev.Info().Query
		perQuery[i] = append(perQuery[i], ev)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{3, 1, 1} {
		if n := len(targets(perQuery[i])); n != want {
			t.Errorf("query %d: %d bindings, want %d", i, n, want)
		}
	}
}

func TestAlqdUDP(t *testing.T) {
	_, udp := startAlqd(t)
	var events []requestor.Event
	q := requestor.Query{Type: codec.QueryByAddress, Address: netip.MustParseAddr("2001:db8:1::11")}
	if err := requestor.QueryUDP(testContext(t), config(udp), q, func(ev requestor.Event) error { events = append(events, ev); return nil }); err != nil {
		t.Fatal(err)
	}
	if got := targets(events); !slices.Equal(got, []string{"2001:db8:1::11"}) {
		t.Errorf("bindings = %v, want [2001:db8:1::11]", got)
	}
}

func TestAlqdActiveNotEnabled(t *testing.T) {
	addr, _ := startAlqd(t)
	conn, err := requestor.Dial(testContext(t), config(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// RFC 7653 section 9.1: Active Leasequery is off unless configured.
	err = conn.Active(testContext(t), requestor.ActiveQuery{}, func(requestor.Event) error { return nil })
	if code, ok := requestor.StatusCode(err); !ok || code != codec.StatusNotSupported {
		t.Errorf("Active error = %v, want NotSupported", err)
	}
	if !requestor.Permanent(err) {
		t.Errorf("Permanent(%v) = false", err)
	}
}

func TestAlqdNotAllowed(t *testing.T) {
	addr, _ := startAlqdAllowing(t, netip.MustParsePrefix("2001:db8::/32"))
	conn, err := requestor.Dial(testContext(t), config(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	err = conn.Bulk(testContext(t), requestor.Query{Type: codec.QueryByLinkAddress, Link: linkA}, func(requestor.Event) error { return nil })
	if code, ok := requestor.StatusCode(err); !ok || code != codec.StatusNotAllowed {
		t.Errorf("Bulk from ::1 to a server allowing 2001:db8::/32: %v, want NotAllowed", err)
	}
}
