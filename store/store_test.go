package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestApplyAssignsSeqAndTime(t *testing.T) {
	clock := newFakeClock()
	s := openTest(t, t.TempDir(), Options{Clock: clock.Now})

	seq := mustApply(t, s, na("2001:db8::1", "c1", "2001:db8::"), na("2001:db8::2", "c2", "2001:db8::"))
	if seq != 2 || s.LastSeq() != 2 {
		t.Fatalf("Apply = %d, LastSeq = %d; want 2, 2", seq, s.LastSeq())
	}
	clock.Advance(time.Second)
	if seq = mustApply(t, s, na("2001:db8::3", "c3", "2001:db8::")); seq != 3 {
		t.Fatalf("second Apply = %d, want 3", seq)
	}

	tests := []struct {
		addr    string
		seq     uint64
		changed time.Time
	}{
		{"2001:db8::1", 1, testEpoch},
		{"2001:db8::2", 2, testEpoch},
		{"2001:db8::3", 3, testEpoch.Add(time.Second)},
	}
	for _, tt := range tests {
		b, ok, err := s.Get(na(tt.addr, "", "").Key)
		if err != nil || !ok {
			t.Fatalf("Get(%s) = %v, %v", tt.addr, ok, err)
		}
		if b.Seq != tt.seq || !b.ChangeTime.Equal(tt.changed) {
			t.Errorf("Get(%s): Seq %d, ChangeTime %s; want %d, %s", tt.addr, b.Seq, b.ChangeTime, tt.seq, tt.changed)
		}
	}
}

func TestApplyClampsClockStepBack(t *testing.T) {
	clock := newFakeClock()
	s := openTest(t, t.TempDir(), Options{Clock: clock.Now})
	mustApply(t, s, na("2001:db8::1", "c1", ""))
	clock.Advance(-time.Hour)
	mustApply(t, s, na("2001:db8::2", "c1", ""))

	b, _, err := s.Get(na("2001:db8::2", "", "").Key)
	if err != nil {
		t.Fatal(err)
	}
	if !b.ChangeTime.Equal(testEpoch) {
		t.Errorf("ChangeTime after the clock stepped back = %s, want %s", b.ChangeTime, testEpoch)
	}
	mustVerify(t, s)
}

func TestApplySkipsIdenticalState(t *testing.T) {
	clock := newFakeClock()
	s := openTest(t, t.TempDir(), Options{Clock: clock.Now})
	var got [][]Binding
	s.Subscribe(func(c []Binding) { got = append(got, c) })

	b := na("2001:db8::1", "c1", "2001:db8::")
	mustApply(t, s, b)
	clock.Advance(time.Minute)

	// Caller-set Seq and ChangeTime are ignored; CLTT in another location is
	// the same instant.
	same := with(b, func(b *Binding) {
		b.Seq, b.ChangeTime = 77, testEpoch.Add(time.Hour)
		b.CLTT = b.CLTT.In(time.FixedZone("x", 3600))
	})
	if seq := mustApply(t, s, same); seq != 1 {
		t.Errorf("Apply of the same state = %d, want LastSeq 1", seq)
	}
	if len(got) != 1 {
		t.Errorf("subscriber calls = %d, want 1", len(got))
	}

	// Within one call: a change and its repeat count once; a change back to
	// the stored state counts.
	changed := with(b, func(b *Binding) { b.ValidLifetime = 1 })
	if seq := mustApply(t, s, changed, changed, b); seq != 3 {
		t.Errorf("Apply(changed, changed, original) = %d, want 3", seq)
	}
	stored, _, _ := s.Get(b.Key)
	if stored.Seq != 3 || stored.ValidLifetime != b.ValidLifetime {
		t.Errorf("stored Seq %d, ValidLifetime %d; want 3, %d", stored.Seq, stored.ValidLifetime, b.ValidLifetime)
	}
	mustVerify(t, s)
}

func TestApplyRejectsInvalid(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	good := na("2001:db8::1", "c1", "")
	tests := []struct {
		name   string
		change Binding
		meta   map[string][]byte
	}{
		{"IPv4 address", with(good, func(b *Binding) { b.Prefix = netip.MustParsePrefix("192.0.2.1/32") }), nil},
		{"link with zone", with(good, func(b *Binding) { b.LinkAddress = netip.MustParseAddr("fe80::1%eth0") }), nil},
		{"IA_NA /64", with(good, func(b *Binding) { b.Prefix = netip.MustParsePrefix("2001:db8::/64") }), nil},
		{"prefix host bits", pd("2001:db8::1/64", "c1", ""), nil},
		{"IA_PD /0", pd("::/0", "c1", ""), nil},
		{"unknown type", with(good, func(b *Binding) { b.Type = 9 }), nil},
		{"no prefix", with(good, func(b *Binding) { b.Prefix = netip.Prefix{} }), nil},
		{"no client DUID", with(good, func(b *Binding) { b.ClientID = nil }), nil},
		{"unknown state", with(good, func(b *Binding) { b.State = 9 }), nil},
		{"IPv4 link", with(good, func(b *Binding) { b.LinkAddress = netip.MustParseAddr("192.0.2.1") }), nil},
		{"relay peer with zone", with(good, func(b *Binding) { b.RelayPeer = netip.MustParseAddr("fe80::1%eth0") }), nil},
		{"huge remote-id", with(good, func(b *Binding) { b.RemoteID = make([]byte, maxFieldLen+1) }), nil},
		{"CLTT beyond 2262", with(good, func(b *Binding) { b.CLTT = time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC) }), nil},
		{"empty meta key", good, map[string][]byte{"": {1}}},
		{"huge meta value", good, map[string][]byte{"pos": make([]byte, MaxMetaValueLen+1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Apply(context.Background(), []Binding{good, tt.change}, tt.meta)
			if !errors.Is(err, ErrInvalidBinding) {
				t.Fatalf("Apply error = %v, want ErrInvalidBinding", err)
			}
			if s.LastSeq() != 0 {
				t.Errorf("LastSeq = %d after a rejected call, want 0", s.LastSeq())
			}
		})
	}
}

// TestApplyRejectsUnleasable checks the addresses, prefixes, CLTTs and
// relay messages that no DHCPv6 server hands out: each fails with
// ErrInvalidBinding and an error naming the field, and the edges of the
// allowed ranges pass.
func TestApplyRejectsUnleasable(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	good := na("2001:db8::1", "c1", "")
	at := func(b Binding, cltt time.Time) Binding { return with(b, func(b *Binding) { b.CLTT = cltt }) }
	addr := func(a string) Binding { return na(a, "c1", "") }
	tests := []struct {
		name   string
		change Binding
		field  string // a word the error must contain; empty for a change that is accepted
	}{
		{"unspecified address", addr("::"), "address"},
		{"loopback address", addr("::1"), "address"},
		{"multicast address", addr("ff02::1"), "address"},
		{"link-local address", addr("fe80::1"), "address"},
		{"IPv4-mapped address", addr("::ffff:192.0.2.1"), "address"},
		{"ended multicast address", released(addr("ff05::1:3")), "address"},
		{"prefix at ::", pd("::/64", "c1", ""), "prefix"},
		{"multicast prefix", pd("ff00::/8", "c1", ""), "prefix"},
		{"prefix covering multicast", pd("fe00::/7", "c1", ""), "prefix"},
		{"prefix covering link-local", pd("fe80::/16", "c1", ""), "prefix"},
		{"CLTT before 2000", at(good, time.Date(1999, 12, 31, 23, 59, 59, 0, time.UTC)), "CLTT"},
		{"CLTT after 2136-02-07T06:28:15Z", at(good, time.Unix(MaxCLTTUnix+1, 0)), "CLTT"},
		{"CLTT in 2200", at(good, time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)), "CLTT"},
		{"relay message over the maximum", with(good, func(b *Binding) {
			b.RelayPeer, b.RelayMessage = netip.MustParseAddr("2001:db8::2"), make([]byte, MaxRelayMessageLen+1)
		}), "relay message"},

		{"unique local address", addr("fd00::1"), ""},
		{"prefix next to link-local", pd("fe40::/10", "c1", ""), ""},
		{"CLTT at 2000-01-01", at(good, time.Unix(MinCLTTUnix, 0)), ""},
		{"CLTT at 2136-02-07T06:28:15Z", at(good, time.Unix(MaxCLTTUnix, 0)), ""},
		{"no CLTT", at(good, time.Time{}), ""},
		{"relay message at the maximum", with(good, func(b *Binding) {
			b.RelayPeer, b.RelayMessage = netip.MustParseAddr("2001:db8::2"), make([]byte, MaxRelayMessageLen)
		}), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Apply(context.Background(), []Binding{tt.change}, nil)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Apply error = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidBinding) {
				t.Fatalf("Apply error = %v, want ErrInvalidBinding", err)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Errorf("Apply error = %q, want it to name %s", err, tt.field)
			}
		})
	}
}

func TestGetAbsent(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	if _, ok, err := s.Get(na("2001:db8::1", "", "").Key); ok || err != nil {
		t.Errorf("Get of an absent key = %v, %v; want false, nil", ok, err)
	}
	if _, _, err := s.Get(Key{}); !errors.Is(err, ErrInvalidQuery) {
		t.Errorf("Get(Key{}) error = %v, want ErrInvalidQuery", err)
	}
}

func TestGetReturnsCopy(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	b := na("2001:db8::1", "client", "")
	mustApply(t, s, b)
	got, _, _ := s.Get(b.Key)
	got.ClientID[0] = 'X'
	again, _, _ := s.Get(b.Key)
	if string(again.ClientID) != "client" {
		t.Errorf("ClientID after modifying an earlier result = %q", again.ClientID)
	}
}

func TestLookupAddress(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	mustApply(t, s,
		na("2001:db8::1", "na-client", ""),
		with(na("2001:db8::2", "ta-client", ""), func(b *Binding) { b.Type = TypeTA }),
		pd("2001:db8:1000::/56", "pd56", ""),
		pd("2001:db8:2000::/48", "pd48-released", ""),
		pd("2001:db8:2000:10::/60", "pd60", ""),
		pd("2001:db8:3000::/64", "pd64-released", ""),
		na("2001:db8:4000::1", "na-released", ""),
		with(na("2001:db8:4000::1", "ta-active", ""), func(b *Binding) { b.Type = TypeTA }),
		pd("2001:db8:5000::/128", "pd128", ""),
	)
	mustApply(t, s,
		released(pd("2001:db8:2000::/48", "pd48-released", "")),
		released(pd("2001:db8:3000::/64", "pd64-released", "")),
		released(na("2001:db8:4000::1", "na-released", "")),
	)

	tests := []struct {
		addr       string
		wantClient string // "" means not found
	}{
		{"2001:db8::1", "na-client"},
		{"2001:db8::2", "ta-client"},
		{"2001:db8:1000::", "pd56"},
		{"2001:db8:1000:ff:ffff:ffff:ffff:ffff", "pd56"},
		{"2001:db8:1000:100::", ""},
		{"2001:db8:2000:10::5", "pd60"},          // active /60 inside a released /48
		{"2001:db8:2000:20::5", "pd48-released"}, // only the released /48 contains it
		{"2001:db8:3000::9", "pd64-released"},
		{"2001:db8:4000::1", "ta-active"}, // the active IA_TA wins over the released IA_NA
		{"2001:db8:5000::", "pd128"},
		{"2001:db8:5000::1", ""},
		{"2001:db8::3", ""},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			b, ok, err := s.LookupAddress(netip.MustParseAddr(tt.addr))
			if err != nil {
				t.Fatal(err)
			}
			if got := string(b.ClientID); ok != (tt.wantClient != "") || got != tt.wantClient {
				t.Errorf("LookupAddress = %q, %v; want %q", got, ok, tt.wantClient)
			}
		})
	}

	if _, _, err := s.LookupAddress(netip.MustParseAddr("192.0.2.1")); !errors.Is(err, ErrInvalidQuery) {
		t.Errorf("LookupAddress(IPv4) error = %v, want ErrInvalidQuery", err)
	}
}

// indexFixture is a population that every query type can tell apart.
func indexFixture() []Binding {
	linkA, linkB := "2001:db8:a::1", "2001:db8:b::1"
	relay := func(b Binding, relayID, remoteID string) Binding {
		return with(b, func(b *Binding) {
			if relayID != "" {
				b.RelayID = []byte(relayID)
			}
			if remoteID != "" {
				b.RemoteID = []byte(remoteID)
			}
		})
	}
	return []Binding{
		relay(na("2001:db8::1", "alice", linkA), "relay-a", "port-1"),
		relay(na("2001:db8::2", "alice", linkB), "relay-b", "port-2"),
		relay(pd("2001:db8:100::/56", "alice", linkB), "relay-b", "port-2"),
		relay(na("2001:db8::3", "bob", linkA), "relay-a", ""),
		relay(na("2001:db8::4", "carol", linkA), "", "port-1"),
		na("2001:db8::5", "dave", ""),
		// A client DUID that is a byte prefix of another must not match it.
		na("2001:db8::6", "alice2", linkA),
		released(relay(na("2001:db8::7", "erin", linkA), "relay-a", "port-1")),
	}
}

func TestIndexQueries(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	mustApply(t, s, indexFixture()...)
	linkA, linkB := netip.MustParseAddr("2001:db8:a::1"), netip.MustParseAddr("2001:db8:b::1")
	none := netip.Addr{}

	tests := []struct {
		name string
		it   func() Iterator
		want []string
	}{
		{"client all links", func() Iterator { return s.ByClientID([]byte("alice"), none) },
			[]string{"2001:db8::1/128", "2001:db8::2/128", "2001:db8:100::/56"}},
		{"client link ::", func() Iterator { return s.ByClientID([]byte("alice"), netip.IPv6Unspecified()) },
			[]string{"2001:db8::1/128", "2001:db8::2/128", "2001:db8:100::/56"}},
		{"client on link B", func() Iterator { return s.ByClientID([]byte("alice"), linkB) },
			[]string{"2001:db8::2/128", "2001:db8:100::/56"}},
		{"client on another link", func() Iterator { return s.ByClientID([]byte("bob"), linkB) }, nil},
		{"unknown client", func() Iterator { return s.ByClientID([]byte("zed"), none) }, nil},
		{"client without link", func() Iterator { return s.ByClientID([]byte("dave"), none) }, []string{"2001:db8::5/128"}},
		{"relay-id all links", func() Iterator { return s.ByRelayID([]byte("relay-a"), none) },
			[]string{"2001:db8::1/128", "2001:db8::3/128", "2001:db8::7/128"}},
		{"relay-id on link B", func() Iterator { return s.ByRelayID([]byte("relay-b"), linkB) },
			[]string{"2001:db8::2/128", "2001:db8:100::/56"}},
		{"relay-id on wrong link", func() Iterator { return s.ByRelayID([]byte("relay-b"), linkA) }, nil},
		{"remote-id", func() Iterator { return s.ByRemoteID([]byte("port-1"), none) },
			[]string{"2001:db8::1/128", "2001:db8::4/128", "2001:db8::7/128"}},
		{"remote-id on link B", func() Iterator { return s.ByRemoteID([]byte("port-2"), linkB) },
			[]string{"2001:db8::2/128", "2001:db8:100::/56"}},
		{"link A", func() Iterator { return s.ByLinkAddress(linkA) },
			[]string{"2001:db8::1/128", "2001:db8::3/128", "2001:db8::4/128", "2001:db8::6/128", "2001:db8::7/128"}},
		{"link B", func() Iterator { return s.ByLinkAddress(linkB) }, []string{"2001:db8::2/128", "2001:db8:100::/56"}},
		{"link :: holds bindings without link", func() Iterator { return s.ByLinkAddress(netip.IPv6Unspecified()) },
			[]string{"2001:db8::5/128"}},
		{"all", func() Iterator { return s.All() }, []string{
			"2001:db8::1/128", "2001:db8::2/128", "2001:db8::3/128", "2001:db8::4/128",
			"2001:db8::5/128", "2001:db8::6/128", "2001:db8::7/128", "2001:db8:100::/56"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := sortedPrefixes(collect(t, tt.it()))
			want := slices.Clone(tt.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("got %v, want %v", got, want)
			}
		})
	}
}

func TestIndexQueriesRejectBadArguments(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	tests := []struct {
		name string
		it   Iterator
	}{
		{"empty client DUID", s.ByClientID(nil, netip.Addr{})},
		{"client on IPv4 link", s.ByClientID([]byte("a"), netip.MustParseAddr("192.0.2.1"))},
		{"empty relay-id", s.ByRelayID(nil, netip.Addr{})},
		{"oversized remote-id", s.ByRemoteID(make([]byte, maxIDLen+1), netip.Addr{})},
		{"invalid link", s.ByLinkAddress(netip.Addr{})},
		{"link with zone", s.ByLinkAddress(netip.MustParseAddr("fe80::1%eth0"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.it.Next() {
				t.Error("Next = true")
			}
			if err := tt.it.Close(); !errors.Is(err, ErrInvalidQuery) {
				t.Errorf("Close = %v, want ErrInvalidQuery", err)
			}
		})
	}
}

func TestIndexMovesOnFieldChange(t *testing.T) {
	linkA, linkB := netip.MustParseAddr("2001:db8:a::1"), netip.MustParseAddr("2001:db8:b::1")
	base := with(na("2001:db8::1", "alice", "2001:db8:a::1"), func(b *Binding) {
		b.RelayID, b.RemoteID = []byte("relay-a"), []byte("port-1")
	})

	// count returns how many bindings a query yields.
	type query func(s *Store) Iterator
	byClient := func(duid string, link netip.Addr) query {
		return func(s *Store) Iterator { return s.ByClientID([]byte(duid), link) }
	}
	byRelay := func(id string) query { return func(s *Store) Iterator { return s.ByRelayID([]byte(id), netip.Addr{}) } }
	byRemote := func(id string) query {
		return func(s *Store) Iterator { return s.ByRemoteID([]byte(id), netip.Addr{}) }
	}
	byLink := func(link netip.Addr) query { return func(s *Store) Iterator { return s.ByLinkAddress(link) } }

	tests := []struct {
		name      string
		change    func(*Binding)
		gone, hit []query
	}{
		{"link changes", func(b *Binding) { b.LinkAddress = linkB },
			[]query{byLink(linkA), byClient("alice", linkA)},
			[]query{byLink(linkB), byClient("alice", linkB), byRelay("relay-a"), byRemote("port-1")}},
		{"link removed", func(b *Binding) { b.LinkAddress = netip.Addr{} },
			[]query{byLink(linkA)},
			[]query{byLink(netip.IPv6Unspecified()), byClient("alice", netip.Addr{})}},
		{"client changes", func(b *Binding) { b.ClientID = []byte("bob") },
			[]query{byClient("alice", netip.Addr{})},
			[]query{byClient("bob", linkA), byLink(linkA)}},
		{"relay-id changes", func(b *Binding) { b.RelayID = []byte("relay-z") },
			[]query{byRelay("relay-a")}, []query{byRelay("relay-z")}},
		{"relay-id removed", func(b *Binding) { b.RelayID = nil },
			[]query{byRelay("relay-a")}, []query{byRemote("port-1")}},
		{"remote-id changes", func(b *Binding) { b.RemoteID = []byte("port-9") },
			[]query{byRemote("port-1")}, []query{byRemote("port-9")}},
		{"released keeps entries", func(b *Binding) { b.State = StateReleased },
			nil, []query{byClient("alice", linkA), byRelay("relay-a"), byRemote("port-1"), byLink(linkA)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTest(t, t.TempDir(), Options{})
			mustApply(t, s, base)
			mustApply(t, s, with(base, tt.change))
			for i, q := range tt.gone {
				if got := collect(t, q(s)); len(got) != 0 {
					t.Errorf("old query %d yields %v, want nothing", i, prefixes(got))
				}
			}
			for i, q := range tt.hit {
				got := collect(t, q(s))
				if len(got) != 1 || got[0].Seq != 2 {
					t.Errorf("new query %d yields %d bindings (%v), want the one at seq 2", i, len(got), prefixes(got))
				}
			}
			mustVerify(t, s)
		})
	}
}

func TestClientOnSeveralLinks(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	mustApply(t, s, indexFixture()...)

	tests := []struct {
		duid string
		want []string
	}{
		{"alice", []string{"2001:db8:a::1", "2001:db8:b::1"}},
		{"bob", []string{"2001:db8:a::1"}},
		{"dave", []string{"::"}},
		{"nobody", nil},
	}
	for _, tt := range tests {
		t.Run(tt.duid, func(t *testing.T) {
			links, err := s.ClientLinks([]byte(tt.duid))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, l := range links {
				got = append(got, l.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("ClientLinks = %v, want %v", got, tt.want)
			}
		})
	}

	// Moving the last binding off link A leaves one link.
	b := indexFixture()[0]
	mustApply(t, s, with(b, func(b *Binding) { b.LinkAddress = netip.MustParseAddr("2001:db8:b::1") }))
	links, err := s.ClientLinks([]byte("alice"))
	if err != nil || len(links) != 1 || links[0] != netip.MustParseAddr("2001:db8:b::1") {
		t.Errorf("ClientLinks after the move = %v, %v; want [2001:db8:b::1]", links, err)
	}
	if _, err := s.ClientLinks(nil); !errors.Is(err, ErrInvalidQuery) {
		t.Errorf("ClientLinks(nil) error = %v, want ErrInvalidQuery", err)
	}
}

func TestMetaCommittedWithChanges(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	if v, err := s.Meta("pos"); v != nil || err != nil {
		t.Fatalf("Meta of an absent key = %q, %v", v, err)
	}
	meta := map[string][]byte{"pos": []byte("100"), "empty": {}}
	if _, err := s.Apply(context.Background(), []Binding{na("2001:db8::1", "c", "")}, meta); err != nil {
		t.Fatal(err)
	}
	meta["pos"][0] = 'X' // Apply copied it
	if v, _ := s.Meta("pos"); string(v) != "100" {
		t.Errorf("Meta(pos) = %q, want 100", v)
	}
	if v, err := s.Meta("empty"); v == nil || len(v) != 0 || err != nil {
		t.Errorf("Meta(empty) = %#v, %v; want an empty non-nil value", v, err)
	}

	// Meta alone, and deletion by nil.
	if _, err := s.Apply(context.Background(), nil, map[string][]byte{"pos": []byte("200"), "empty": nil}); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.Meta("pos"); string(v) != "200" {
		t.Errorf("Meta(pos) = %q, want 200", v)
	}
	if v, _ := s.Meta("empty"); v != nil {
		t.Errorf("Meta(empty) after deletion = %q, want nil", v)
	}
	if s.LastSeq() != 1 {
		t.Errorf("LastSeq = %d after a metadata-only Apply, want 1", s.LastSeq())
	}
}

func TestSubscribeOrderAndContent(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	var mu sync.Mutex
	var seqs []uint64
	s.Subscribe(func(committed []Binding) {
		mu.Lock()
		defer mu.Unlock()
		for _, b := range committed {
			if b.ChangeTime.IsZero() {
				t.Errorf("committed binding %s has no ChangeTime", b.Prefix)
			}
			// The change is readable (synced and published) when the
			// subscriber runs.
			if s.LastSeq() < b.Seq {
				t.Errorf("subscriber saw seq %d before LastSeq %d reached it", b.Seq, s.LastSeq())
			}
			seqs = append(seqs, b.Seq)
		}
	})

	const writers, perWriter = 8, 25
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				addr := fmt.Sprintf("2001:db8::%x:%x", w+1, i+1)
				if _, err := s.Apply(context.Background(), []Binding{na(addr, "c", "")}, nil); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	if len(seqs) != writers*perWriter {
		t.Fatalf("subscriber saw %d changes, want %d", len(seqs), writers*perWriter)
	}
	for i, seq := range seqs {
		if seq != uint64(i+1) {
			t.Fatalf("subscriber change %d has seq %d, want %d", i, seq, i+1)
		}
	}
	mustVerify(t, s)
}

func TestApplyContextDone(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Apply(ctx, []Binding{na("2001:db8::1", "c", "")}, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Apply with a cancelled context = %v, want context.Canceled", err)
	}
	if s.LastSeq() != 0 {
		t.Errorf("LastSeq = %d, want 0", s.LastSeq())
	}
}

func TestIteratorSeesOneView(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	link := netip.MustParseAddr("2001:db8:a::1")
	for i := range 10 {
		mustApply(t, s, na(fmt.Sprintf("2001:db8::%x", i+1), "c", link.String()))
	}

	it := s.ByLinkAddress(link)
	defer it.Close()
	if !it.Next() {
		t.Fatalf("Next = false: %v", it.Err())
	}
	// Move every binding off the link and add new ones while iterating.
	for i := range 10 {
		mustApply(t, s, na(fmt.Sprintf("2001:db8::%x", i+1), "c", "2001:db8:b::1"))
		mustApply(t, s, na(fmt.Sprintf("2001:db8::1:%x", i+1), "c", link.String()))
	}
	n := 1
	for it.Next() {
		if it.Binding().LinkAddress != link || it.Binding().Seq > 10 {
			t.Errorf("iterator yields %s at seq %d from a later view", it.Binding().Prefix, it.Binding().Seq)
		}
		n++
	}
	if err := it.Close(); err != nil || n != 10 {
		t.Errorf("iterator yields %d bindings, %v; want 10", n, err)
	}
}

func TestBindingSlicesSurviveNext(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	mustApply(t, s, na("2001:db8::1", "first", ""), na("2001:db8::2", "second", ""))
	it := s.All()
	defer it.Close()
	it.Next()
	kept := *it.Binding()
	it.Next()
	if string(kept.ClientID) != "first" {
		t.Errorf("kept ClientID = %q after Next, want first", kept.ClientID)
	}
}

func TestClosedStore(t *testing.T) {
	s, err := Open(t.TempDir(), Options{TrimInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if _, err := s.Apply(context.Background(), []Binding{na("2001:db8::1", "c", "")}, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Apply = %v, want ErrClosed", err)
	}
	if _, _, err := s.Get(na("2001:db8::1", "c", "").Key); !errors.Is(err, ErrClosed) {
		t.Errorf("Get = %v, want ErrClosed", err)
	}
	if err := s.All().Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("All().Close = %v, want ErrClosed", err)
	}
	if err := s.Trim(time.Now()); !errors.Is(err, ErrClosed) {
		t.Errorf("Trim = %v, want ErrClosed", err)
	}
	if err := s.Verify(); !errors.Is(err, ErrClosed) {
		t.Errorf("Verify = %v, want ErrClosed", err)
	}
}

func TestServerDUID(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	duid := s.ServerDUID()
	if len(duid) != 18 || !bytes.Equal(duid[:2], []byte{0, 4}) || duid[8]>>4 != 4 {
		t.Errorf("generated DUID %x is not a DUID-UUID with a version 4 UUID", duid)
	}

	configured := []byte{0, 2, 0, 0, 0x9d, 0x10, 'a', 'l', 'q'}
	s2 := openTest(t, t.TempDir(), Options{ServerDUID: configured})
	if !bytes.Equal(s2.ServerDUID(), configured) {
		t.Errorf("ServerDUID = %x, want the configured %x", s2.ServerDUID(), configured)
	}
}
