package server

import (
	"slices"
	"strings"
	"time"

	"github.com/alqd/alqd/store"
	"net/netip"
	"testing"

	"github.com/alqd/alqd/codec"
)

func TestBulkByLinkAddress(t *testing.T) {
	st := openStore(t, nil)
	seed(t, st,
		binding("2001:db8:1::10/128", duid(1), "2001:db8:1::1"),
		binding("2001:db8:1::11/128", duid(2), "2001:db8:1::1"),
		binding("2001:db8:2::10/128", duid(3), "2001:db8:2::1"),
	)
	srv := startServer(t, st, testConfig())
	r := dial(t, srv)

	a := r.query(0x010203, byLink("2001:db8:1::1"))
	if a.done == nil {
		t.Fatal("no LEASEQUERY-DONE")
	}
	if got := status(t, a.reply); got != codec.StatusSuccess {
		t.Errorf("REPLY status = %v, want Success", got)
	}
	sid, _ := a.reply.Options.ServerID()
	if string(sid) != string(testServerDUID) {
		t.Errorf("SERVERID = %x, want %x", sid, testServerDUID)
	}
	cid, _ := a.reply.Options.ClientID()
	if string(cid) != string(requestorDUID) {
		t.Errorf("CLIENTID = %x, want the requestor's %x", cid, requestorDUID)
	}
	cds := a.clientData(t)
	if len(cds) != 2 {
		t.Fatalf("got %d OPTION_CLIENT_DATA, want 2", len(cds))
	}
	want := map[netip.Addr]bool{netip.MustParseAddr("2001:db8:1::10"): true, netip.MustParseAddr("2001:db8:1::11"): true}
	for _, cd := range cds {
		if len(cd.Addrs) != 1 || !want[cd.Addrs[0].Addr] {
			t.Errorf("unexpected CLIENT_DATA addresses %+v", cd.Addrs)
			continue
		}
		if cd.Addrs[0].ValidLifetime != 7100 || cd.Addrs[0].PreferredLifetime != 3500 {
			t.Errorf("lifetimes %d/%d, want 3500/7100 (granted minus 100 s)", cd.Addrs[0].PreferredLifetime, cd.Addrs[0].ValidLifetime)
		}
		if !cd.HasCLTTime || cd.CLTTime != 100 {
			t.Errorf("CLT_TIME = %d (present %v), want 100", cd.CLTTime, cd.HasCLTTime)
		}
	}
}

// relayForw returns a RELAY-FORW as stored for OPTION_LQ_RELAY_DATA: no
// OPTION_RELAY_MSG, one OPTION_INTERFACE_ID.
func relayForw(t testing.TB, link, peer string) []byte {
	t.Helper()
	rm := codec.RelayMessage{
		Type:        codec.MsgRelayForw,
		LinkAddress: netip.MustParseAddr(link),
		PeerAddress: netip.MustParseAddr(peer),
	}
	rm.Options.Add(codec.OptInterfaceID, []byte("eth0"))
	b, err := rm.AppendTo(nil)
	if err != nil {
		t.Fatalf("RelayMessage.AppendTo: %v", err)
	}
	return b
}

// queryFixture seeds the bindings the query-type tests select from.
func queryFixture(t testing.TB) *Server {
	relayA := []byte{0x00, 0x02, 0x00, 0x00, 0x9d, 0x10, 'r', 'e', 'l', 'a', 'y', 'A'}
	remote := []byte{0x00, 0x00, 0x0d, 0xe9, 'p', 'o', 'r', 't', '7'}

	c1na := binding("2001:db8:1::10/128", duid(1), "2001:db8:1::1")
	c1pd := binding("2001:db8:100::/56", duid(1), "2001:db8:1::1")
	c1other := binding("2001:db8:2::99/128", duid(1), "2001:db8:2::1")
	c2 := binding("2001:db8:1::20/128", duid(2), "2001:db8:1::1")
	c3 := binding("2001:db8:2::30/128", duid(3), "2001:db8:2::1")
	for _, b := range []*store.Binding{&c1na, &c1pd, &c2} {
		b.RelayID = relayA
		b.RemoteID = remote
		b.RelayPeer = netip.MustParseAddr("fe80::1")
		b.RelayMessage = relayForw(t, "2001:db8:1::1", "fe80::c1")
	}
	released := binding("2001:db8:1::40/128", duid(4), "2001:db8:1::1")
	released.State = store.StateReleased

	st := openStore(t, nil)
	seed(t, st, c1na, c1pd, c1other, c2, c3, released)
	return startServer(t, st, testConfig())
}

func TestBulkQueryTypes(t *testing.T) {
	srv := queryFixture(t)
	relayID := func(id []byte, link string) codec.LQQuery {
		q := codec.LQQuery{QueryType: codec.QueryByRelayID, LinkAddress: netip.MustParseAddr(link)}
		q.Options.Add(codec.OptRelayID, id)
		return q
	}
	remoteID := func(id []byte) codec.LQQuery {
		q := codec.LQQuery{QueryType: codec.QueryByRemoteID, LinkAddress: netip.IPv6Unspecified()}
		q.Options.Add(codec.OptRemoteID, id)
		return q
	}
	relayA := []byte{0x00, 0x02, 0x00, 0x00, 0x9d, 0x10, 'r', 'e', 'l', 'a', 'y', 'A'}

	tests := []struct {
		name  string
		query codec.LQQuery
		want  []string // per OPTION_CLIENT_DATA: its addresses and prefixes, sorted as sent
	}{
		{"address inside delegated prefix", byAddress("2001:db8:100:5::1"), []string{"2001:db8:1::10 2001:db8:100::/56"}},
		{"address of IA_NA", byAddress("2001:db8:1::20"), []string{"2001:db8:1::20"}},
		{"address unbound", byAddress("2001:db8:1::77"), nil},
		{"address released", byAddress("2001:db8:1::40"), nil},
		{"client all links", byClientID(duid(1), "::"), []string{"2001:db8:1::10 2001:db8:100::/56", "2001:db8:2::99"}},
		{"client one link", byClientID(duid(1), "2001:db8:2::1"), []string{"2001:db8:2::99"}},
		{"client unknown", byClientID(duid(9), "::"), nil},
		// The relay-id, link and remote-id indexes are in address order, so
		// one client's address and prefix are not adjacent there and go in
		// separate OPTION_CLIENT_DATA.
		{"relay-id", relayID(relayA, "::"), []string{"2001:db8:1::10", "2001:db8:100::/56", "2001:db8:1::20"}},
		{"relay-id other link", relayID(relayA, "2001:db8:2::1"), nil},
		{"link-address", byLink("2001:db8:2::1"), []string{"2001:db8:2::99", "2001:db8:2::30"}},
		{"remote-id", remoteID([]byte{0x00, 0x00, 0x0d, 0xe9, 'p', 'o', 'r', 't', '7'}), []string{"2001:db8:1::10", "2001:db8:100::/56", "2001:db8:1::20"}},
	}
	r := dial(t, srv)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := r.query(uint32(0x100+i), tt.query)
			if got := status(t, a.reply); got != codec.StatusSuccess {
				t.Fatalf("status %v, want Success", got)
			}
			got := describe(a.clientData(t))
			if !equalUnordered(got, tt.want) {
				t.Errorf("CLIENT_DATA = %q, want %q", got, tt.want)
			}
			if len(tt.want) == 0 && (a.done != nil || len(a.data) > 0) {
				t.Errorf("a query without match got DATA or DONE")
			}
			if len(tt.want) > 0 && a.done == nil {
				t.Errorf("no LEASEQUERY-DONE")
			}
		})
	}
}

// describe lists the addresses and prefixes of each OPTION_CLIENT_DATA.
func describe(cds []codec.ClientData) []string {
	var out []string
	for _, cd := range cds {
		var parts []string
		for _, a := range cd.Addrs {
			parts = append(parts, a.Addr.String())
		}
		for _, p := range cd.Prefixes {
			parts = append(parts, p.Prefix.String())
		}
		out = append(out, strings.Join(parts, " "))
	}
	return out
}

func equalUnordered(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func TestBulkNoMatchThenNextQuery(t *testing.T) {
	srv := queryFixture(t)
	r := dial(t, srv)

	a := r.query(1, byLink("2001:db8:9::1"))
	if a.reply.Options.Has(codec.OptStatusCode) || a.reply.Options.Has(codec.OptClientData) {
		t.Errorf("no-match REPLY carries status or CLIENT_DATA: %v", a.reply.Options)
	}
	a = r.query(2, byLink("2001:db8:2::1"))
	if len(a.clientData(t)) != 2 || a.done == nil {
		t.Errorf("second query on the connection: %d CLIENT_DATA, DONE %v", len(a.clientData(t)), a.done != nil)
	}
}

func TestBulkBaseTimeAndRelayData(t *testing.T) {
	tests := []struct {
		name      string
		deny      []codec.OptionCode
		wantBase  bool
		wantRelay bool
		wantCLT   bool
	}{
		{"requested", nil, true, true, true},
		{"denied", []codec.OptionCode{codec.OptLQBaseTime, codec.OptLQRelayData, codec.OptCLTTime}, false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := openStore(t, nil)
			b := binding("2001:db8:1::10/128", duid(1), "2001:db8:1::1")
			b.RelayPeer = netip.MustParseAddr("fe80::1")
			b.RelayMessage = relayForw(t, "2001:db8:1::1", "fe80::c1")
			seed(t, st, b, binding("2001:db8:1::11/128", duid(2), "2001:db8:1::1"))
			cfg := testConfig()
			cfg.DenyOptions = tt.deny
			r := dial(t, startServer(t, st, cfg))

			q := byLink("2001:db8:1::1")
			q.Options = append(q.Options, oro(codec.OptLQRelayData))
			a := r.query(7, q, oro(codec.OptLQBaseTime))

			for _, m := range append([]*codec.Message{a.reply, a.done}, a.data...) {
				base, ok := m.Options.BaseTime()
				if ok != tt.wantBase {
					t.Errorf("%v has OPTION_LQ_BASE_TIME %v, want %v", m.Type, ok, tt.wantBase)
				}
				if ok && base != codec.DHCPTime(testNow) {
					t.Errorf("%v base time %d, want %d", m.Type, base, codec.DHCPTime(testNow))
				}
			}
			relayed := 0
			for _, cd := range a.clientData(t) {
				if cd.HasCLTTime != tt.wantCLT {
					t.Errorf("CLT_TIME present %v, want %v", cd.HasCLTTime, tt.wantCLT)
				}
				if cd.HasRelayData {
					relayed++
					if cd.RelayData.PeerAddress != netip.MustParseAddr("fe80::1") {
						t.Errorf("relay peer %v, want fe80::1", cd.RelayData.PeerAddress)
					}
				}
			}
			if want := map[bool]int{true: 1, false: 0}[tt.wantRelay]; relayed != want {
				t.Errorf("%d CLIENT_DATA with LQ_RELAY_DATA, want %d", relayed, want)
			}
		})
	}
}

func TestBulkTimeRange(t *testing.T) {
	now := testNow
	clock := func() time.Time { return now }
	st := openStore(t, clock)

	now = testNow.Add(-3 * time.Hour)
	seed(t, st, binding("2001:db8:1::1/128", duid(1), "2001:db8:1::1"))
	now = testNow.Add(-2 * time.Hour)
	seed(t, st, binding("2001:db8:1::2/128", duid(2), "2001:db8:1::1"))
	now = testNow.Add(-1 * time.Hour)
	gone := binding("2001:db8:1::3/128", duid(3), "2001:db8:1::1")
	seed(t, st, gone)
	gone.State = store.StateReleased
	seed(t, st, gone)
	now = testNow

	r := dial(t, startServer(t, st, testConfig()))
	at := func(d time.Duration) uint32 { return codec.DHCPTime(testNow.Add(d)) }
	tests := []struct {
		name  string
		extra []codec.Option
		want  []string
	}{
		{"start", []codec.Option{uint32Option(codec.OptLQStartTime, at(-150*time.Minute))}, []string{"2001:db8:1::2", "2001:db8:1::3"}},
		{"end", []codec.Option{uint32Option(codec.OptLQEndTime, at(-150*time.Minute))}, []string{"2001:db8:1::1"}},
		{"both", []codec.Option{uint32Option(codec.OptLQStartTime, at(-150*time.Minute)), uint32Option(codec.OptLQEndTime, at(-90*time.Minute))}, []string{"2001:db8:1::2"}},
		{"end second included", []codec.Option{uint32Option(codec.OptLQEndTime, at(-2*time.Hour))}, []string{"2001:db8:1::1", "2001:db8:1::2"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := r.query(uint32(0x200+i), byLink("2001:db8:1::1"), tt.extra...)
			cds := a.clientData(t)
			if got := describe(cds); !equalUnordered(got, tt.want) {
				t.Fatalf("CLIENT_DATA = %q, want %q", got, tt.want)
			}
			for _, cd := range cds {
				if cd.Addrs[0].Addr == netip.MustParseAddr("2001:db8:1::3") && (cd.Addrs[0].ValidLifetime != 0 || cd.Addrs[0].PreferredLifetime != 0) {
					t.Errorf("released binding lifetimes %d/%d, want 0/0", cd.Addrs[0].PreferredLifetime, cd.Addrs[0].ValidLifetime)
				}
			}
		})
	}

	a := r.query(0x2ff, byLink("2001:db8:1::1"),
		uint32Option(codec.OptLQStartTime, at(-time.Hour)), uint32Option(codec.OptLQEndTime, at(-2*time.Hour)))
	if got := status(t, a.reply); got != codec.StatusMalformedQuery {
		t.Errorf("start after end: status %v, want MalformedQuery", got)
	}
}

func TestBulkPipelinedAndSplit(t *testing.T) {
	srv := queryFixture(t)

	t.Run("pipelined", func(t *testing.T) {
		r := dial(t, srv)
		var all []byte
		xids := []uint32{0xb10c01, 0xb10c02, 0xb10c03, 0xb10c04}
		queries := []codec.LQQuery{byLink("2001:db8:1::1"), byLink("2001:db8:9::1"), {QueryType: 77}, byClientID(duid(1), "::")}
		for i, q := range queries {
			all, _ = codec.AppendFrame(all, leasequery(xids[i], q))
		}
		r.write(all)
		got := r.readAnswers(xids...)
		if n := len(got[0xb10c01].clientData(t)); n != 3 {
			t.Errorf("xid b10c01: %d CLIENT_DATA, want 3", n)
		}
		if got[0xb10c02].reply.Options.Has(codec.OptClientData) {
			t.Errorf("xid b10c02 should match nothing")
		}
		if s := status(t, got[0xb10c03].reply); s != codec.StatusUnknownQueryType {
			t.Errorf("xid b10c03 status %v, want UnknownQueryType", s)
		}
		if n := len(got[0xb10c04].clientData(t)); n != 2 {
			t.Errorf("xid b10c04: %d CLIENT_DATA, want 2", n)
		}
	})

	t.Run("byte by byte", func(t *testing.T) {
		r := dial(t, srv)
		var all []byte
		all, _ = codec.AppendFrame(all, leasequery(0x51, byLink("2001:db8:2::1")))
		all, _ = codec.AppendFrame(all, leasequery(0x52, byAddress("2001:db8:1::20")))
		for i := range all {
			r.write(all[i : i+1])
			time.Sleep(time.Millisecond)
		}
		got := r.readAnswers(0x51, 0x52)
		if n := len(got[0x51].clientData(t)); n != 2 {
			t.Errorf("xid 51: %d CLIENT_DATA, want 2", n)
		}
		if n := len(got[0x52].clientData(t)); n != 1 {
			t.Errorf("xid 52: %d CLIENT_DATA, want 1", n)
		}
	})

	t.Run("duplicate xid", func(t *testing.T) {
		r := dial(t, srv)
		var all []byte
		all, _ = codec.AppendFrame(all, leasequery(0x61, byLink("2001:db8:1::1")))
		all, _ = codec.AppendFrame(all, leasequery(0x61, byLink("2001:db8:2::1")))
		all, _ = codec.AppendFrame(all, leasequery(0x62, byLink("2001:db8:2::1")))
		r.write(all)
		got := r.readAnswers(0x61, 0x62)
		if n := len(got[0x61].clientData(t)); n != 3 {
			t.Errorf("first xid 61: %d CLIENT_DATA, want the 3 of its own link", n)
		}
		if m, err := r.tryNext(200 * time.Millisecond); err == nil {
			t.Errorf("the duplicate got an answer: %v xid %#x", m.Type, m.TransactionID)
		}
	})
}
