package e2e

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/alqd/alqd/internal/keatest"
	"github.com/alqd/alqd/requestor"
	"github.com/alqd/alqd/store"
)

// These tests run without Kea: they check that the comparisons of the Kea
// end-to-end test find each kind of difference, so that a passing run
// means something.

const fixtureBase = int64(1_800_000_000) // the base-time of every fixture reply

var (
	relayLink = netip.MustParseAddr("2001:db8:2::1")
	relayPeer = netip.MustParseAddr("fe80::1")
)

// fixtureLeases returns Kea leases of every kind the end-to-end test meets.
func fixtureLeases() []keatest.Lease {
	relays := []keatest.RelayInfo{{
		Link:        relayLink,
		Peer:        relayPeer,
		InterfaceID: keatest.InterfaceID(relayLink),
		RemoteID:    keatest.RemoteID([]byte{0, 1, 0, 1, 2, 3, 4}),
		RelayID:     keatest.RelayID(relayLink),
	}}
	return []keatest.Lease{
		{ // direct IA_NA, assigned
			Type: keatest.TypeNA, Address: netip.MustParseAddr("2001:db8:1::1000"), PrefixLen: 128,
			DUID: []byte{0, 1, 0, 1, 0xaa}, IAID: 1, ValidLifetime: 15, PreferredLifetime: 10,
			CLTT: fixtureBase - 5, State: keatest.StateDefault,
		},
		{ // relayed IA_PD, assigned, of a client whose IA_NA is newer
			Type: keatest.TypePD, Address: netip.MustParseAddr("2001:db8:9000::"), PrefixLen: 56,
			DUID: []byte{0, 1, 0, 1, 0xbb}, IAID: 1, ValidLifetime: 15, PreferredLifetime: 10,
			CLTT: fixtureBase - 8, State: keatest.StateDefault, Relays: relays,
		},
		{ // relayed IA_NA of the same client, assigned
			Type: keatest.TypeNA, Address: netip.MustParseAddr("2001:db8:2::1000"), PrefixLen: 128,
			DUID: []byte{0, 1, 0, 1, 0xbb}, IAID: 1, ValidLifetime: 15, PreferredLifetime: 10,
			CLTT: fixtureBase - 2, State: keatest.StateDefault, Relays: relays,
		},
		{ // direct IA_NA, expired and reclaimed
			Type: keatest.TypeNA, Address: netip.MustParseAddr("2001:db8:1::1001"), PrefixLen: 128,
			DUID: []byte{0, 1, 0, 1, 0xcc}, IAID: 1, ValidLifetime: 15, PreferredLifetime: 10,
			CLTT: fixtureBase - 20, State: keatest.StateExpiredReclaimed,
		},
		{ // direct IA_NA whose lifetime ran out this second, not reclaimed yet
			Type: keatest.TypeNA, Address: netip.MustParseAddr("2001:db8:1::1002"), PrefixLen: 128,
			DUID: []byte{0, 1, 0, 1, 0xdd}, IAID: 1, ValidLifetime: 15, PreferredLifetime: 10,
			CLTT: fixtureBase - 15, State: keatest.StateDefault,
		},
	}
}

// faithfulView returns what a correct server reports for leases at
// fixtureBase, as observe would convert it, with every binding in its own
// group.
func faithfulView(t *testing.T, leases []keatest.Lease) map[bindingKey]observed {
	t.Helper()
	view := make(map[bindingKey]observed)
	for _, l := range leases {
		k, err := keaKey(l)
		if err != nil {
			t.Fatal(err)
		}
		o := observed{Key: k, ClientID: l.DUID, Base: fixtureBase, CLTT: l.CLTT, HasCLTT: true}
		if assignedAt(l, fixtureBase-clockSlack) {
			o.ValidEnd = leaseEnd(l)
			o.PreferredEnd = max(l.CLTT+int64(l.PreferredLifetime), fixtureBase)
		} else {
			o.Ended = true
			o.ValidEnd, o.PreferredEnd = fixtureBase, fixtureBase
		}
		if r := keaRelay(l); r != nil {
			o.Relayed, o.Peer, o.Link = true, l.Relays[0].Peer, r.Link
			o.RelayID, o.RemoteID, o.InterfaceID = r.RelayID, r.RemoteID, r.InterfaceID
		}
		view[k] = o
	}
	return view
}

func TestCompareViewDifferences(t *testing.T) {
	leases := fixtureLeases()
	snap, err := newKeaSnapshot(leases)
	if err != nil {
		t.Fatal(err)
	}
	keyOf := func(i int) bindingKey {
		k, err := keaKey(leases[i])
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	everything := func(keatest.Lease) bool { return true }

	cases := []struct {
		name   string
		mutate func(view map[bindingKey]observed)
		want   string // a substring of the only problem; empty for none
	}{
		{"faithful view", func(map[bindingKey]observed) {}, ""},
		{"missing binding", func(v map[bindingKey]observed) { delete(v, keyOf(0)) }, "missing"},
		{"wrong DUID", func(v map[bindingKey]observed) { o := v[keyOf(0)]; o.ClientID = []byte{9}; v[keyOf(0)] = o }, "DUID"},
		{"valid end 2 s late", func(v map[bindingKey]observed) { o := v[keyOf(0)]; o.ValidEnd += 2; v[keyOf(0)] = o }, "valid until"},
		{"valid end 1 s late", func(v map[bindingKey]observed) { o := v[keyOf(0)]; o.ValidEnd++; v[keyOf(0)] = o }, ""},
		{"preferred end 2 s early", func(v map[bindingKey]observed) { o := v[keyOf(0)]; o.PreferredEnd -= 2; v[keyOf(0)] = o }, "preferred until"},
		{"CLTT older than the lease's", func(v map[bindingKey]observed) { o := v[keyOf(0)]; o.CLTT -= 2; v[keyOf(0)] = o }, "CLTT"},
		{"CLTT newer than the client's latest", func(v map[bindingKey]observed) { o := v[keyOf(2)]; o.CLTT += 2; v[keyOf(2)] = o }, "CLTT"},
		{"CLTT of the client's newer lease", func(v map[bindingKey]observed) { o := v[keyOf(1)]; o.CLTT = leases[2].CLTT; v[keyOf(1)] = o }, ""},
		{"active binding without CLTT", func(v map[bindingKey]observed) { o := v[keyOf(0)]; o.HasCLTT = false; v[keyOf(0)] = o }, "OPTION_CLT_TIME"},
		{"active where Kea reclaimed", func(v map[bindingKey]observed) {
			o := v[keyOf(3)]
			o.Ended, o.ValidEnd = false, fixtureBase+5
			v[keyOf(3)] = o
		}, "reclaimed"},
		{"ended where Kea holds it valid", func(v map[bindingKey]observed) { o := v[keyOf(0)]; o.Ended = true; v[keyOf(0)] = o }, "Kea holds it valid"},
		{"ended as its lifetime ran out", func(v map[bindingKey]observed) {}, ""},
		{"wrong relay-id", func(v map[bindingKey]observed) { o := v[keyOf(1)]; o.RelayID = []byte{0, 3, 0, 1, 9}; v[keyOf(1)] = o }, "relay-id"},
		{"wrong remote-id", func(v map[bindingKey]observed) { o := v[keyOf(1)]; o.RemoteID = []byte{0, 0, 0, 1, 9}; v[keyOf(1)] = o }, "remote-id"},
		{"wrong link", func(v map[bindingKey]observed) {
			o := v[keyOf(1)]
			o.Link = netip.MustParseAddr("2001:db8:3::1")
			v[keyOf(1)] = o
		}, "link-address"},
		{"relay data missing", func(v map[bindingKey]observed) { o := v[keyOf(1)]; o.Relayed = false; v[keyOf(1)] = o }, "no OPTION_LQ_RELAY_DATA"},
		{"relay data on a direct client", func(v map[bindingKey]observed) { o := v[keyOf(0)]; o.Relayed = true; v[keyOf(0)] = o }, "no relay"},
		{"extra active binding", func(v map[bindingKey]observed) {
			k := bindingKey{Type: requestor.TypeNA, Prefix: netip.MustParsePrefix("2001:db8:1::1fff/128")}
			v[k] = observed{Key: k, ClientID: []byte{7}, Base: fixtureBase, ValidEnd: fixtureBase + 9}
		}, "Kea has no such lease"},
		{"ended binding Kea released", func(v map[bindingKey]observed) {
			k := bindingKey{Type: requestor.TypeNA, Prefix: netip.MustParsePrefix("2001:db8:1::1fff/128")}
			v[k] = observed{Key: k, ClientID: []byte{7}, Base: fixtureBase, Ended: true}
		}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			view := faithfulView(t, leases)
			c.mutate(view)
			res := snap.compareView(view, everything, false, fixtureBase)
			switch {
			case c.want == "" && len(res.Problems) > 0:
				t.Errorf("compareView found %d problems, want none:\n%s", len(res.Problems), strings.Join(res.Problems, "\n"))
			case c.want != "" && len(res.Problems) != 1:
				t.Errorf("compareView found %d problems, want 1 mentioning %q:\n%s", len(res.Problems), c.want, strings.Join(res.Problems, "\n"))
			case c.want != "" && !strings.Contains(res.Problems[0], c.want):
				t.Errorf("compareView found %q, want a problem mentioning %q", res.Problems[0], c.want)
			}
		})
	}
}

func TestCompareViewActiveOnly(t *testing.T) {
	leases := fixtureLeases()
	snap, err := newKeaSnapshot(leases)
	if err != nil {
		t.Fatal(err)
	}
	everything := func(keatest.Lease) bool { return true }

	// A plain bulk reply holds only the bindings with lifetime left.
	view := faithfulView(t, leases)
	for k, o := range view {
		if o.Ended {
			delete(view, k)
		}
	}
	res := snap.compareView(view, everything, true, fixtureBase)
	if len(res.Problems) > 0 {
		t.Errorf("compareView found problems in a plain bulk reply:\n%s", strings.Join(res.Problems, "\n"))
	}
	if res.Active != 3 || res.Expected != 3 {
		t.Errorf("compareView compared %d active of %d expected bindings, want 3 of 3", res.Active, res.Expected)
	}

	// A relay-id reply must not contain the direct client, which this view does.
	byRelay := func(l keatest.Lease) bool { return keaRelay(l) != nil }
	res = snap.compareView(view, byRelay, true, fixtureBase)
	if len(res.Problems) != 1 || !strings.Contains(res.Problems[0], "outside the query's selection") {
		t.Errorf("compareView with a relay filter found %q, want one binding outside the selection", res.Problems)
	}
}

func TestCompareViewsRanOut(t *testing.T) {
	leases := fixtureLeases()
	active := faithfulView(t, leases)
	bulk := faithfulView(t, leases)

	// The active requestor got the binding while it was valid; the bulk
	// reply came after its lifetime ran out.
	k, err := keaKey(leases[4])
	if err != nil {
		t.Fatal(err)
	}
	o := active[k]
	o.Ended, o.Base, o.ValidEnd = false, fixtureBase-10, leaseEnd(leases[4])
	active[k] = o
	if p := compareViews(active, bulk); len(p) > 0 {
		t.Errorf("compareViews found %q for a binding that ran out between the replies", p)
	}

	// A binding that still had 5 s left must not be reported ended.
	k, err = keaKey(leases[0])
	if err != nil {
		t.Fatal(err)
	}
	o = bulk[k]
	o.Ended = true
	bulk[k] = o
	if p := compareViews(active, bulk); len(p) != 1 || !strings.Contains(p[0], "ended") {
		t.Errorf("compareViews found %q, want one difference in the ended state", p)
	}

	delete(bulk, k)
	if p := compareViews(active, bulk); len(p) != 1 || !strings.Contains(p[0], "only in the first view") {
		t.Errorf("compareViews found %q, want one binding only in the first view", p)
	}
}

func TestCompareStored(t *testing.T) {
	leases := fixtureLeases()
	stored := func(l keatest.Lease) store.Binding {
		k, err := keaKey(l)
		if err != nil {
			t.Fatal(err)
		}
		b := store.Binding{
			Key:               store.Key{Type: store.TypeNA, Prefix: k.Prefix},
			ClientID:          l.DUID,
			IAID:              l.IAID,
			PreferredLifetime: l.PreferredLifetime,
			ValidLifetime:     l.ValidLifetime,
			CLTT:              time.Unix(l.CLTT, 0),
		}
		if l.Type == keatest.TypePD {
			b.Type = store.TypePD
		}
		if l.State == keatest.StateExpiredReclaimed {
			b.State = store.StateExpired
			b.PreferredLifetime, b.ValidLifetime = 0, 0
		}
		if len(l.Relays) > 0 {
			r := keaRelay(l)
			b.LinkAddress, b.RelayPeer = r.Link, l.Relays[0].Peer
			b.RelayID, b.RemoteID, b.InterfaceID = r.RelayID, r.RemoteID, r.InterfaceID
			b.RelayMessage = []byte{12}
		}
		return b
	}

	cases := []struct {
		name   string
		lease  int
		mutate func(b *store.Binding)
		want   string
	}{
		{"equal direct", 0, func(*store.Binding) {}, ""},
		{"equal relayed", 1, func(*store.Binding) {}, ""},
		{"equal reclaimed", 3, func(*store.Binding) {}, ""},
		{"wrong IAID", 0, func(b *store.Binding) { b.IAID = 2 }, "IAID"},
		{"CLTT 1 s off", 0, func(b *store.Binding) { b.CLTT = b.CLTT.Add(time.Second) }, "CLTT"},
		{"granted lifetime", 0, func(b *store.Binding) { b.ValidLifetime = 14 }, "lifetimes"},
		{"lifetimes kept on expiry", 3, func(b *store.Binding) { b.ValidLifetime = 15 }, "lifetimes"},
		{"released where Kea holds it", 0, func(b *store.Binding) { b.State = store.StateReleased }, "state"},
		{"active where Kea reclaimed", 3, func(b *store.Binding) { b.State = store.StateActive }, "state"},
		{"wrong relay peer", 1, func(b *store.Binding) { b.RelayPeer = relayLink }, "peer-address"},
		{"relay data on a direct client", 0, func(b *store.Binding) { b.RelayID = []byte{1} }, "no relay"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := stored(leases[c.lease])
			c.mutate(&b)
			diffs := compareStored(b, leases[c.lease])
			switch {
			case c.want == "" && len(diffs) > 0:
				t.Errorf("compareStored found %q, want nothing", diffs)
			case c.want != "" && (len(diffs) != 1 || !strings.Contains(diffs[0], c.want)):
				t.Errorf("compareStored found %q, want one difference mentioning %q", diffs, c.want)
			}
		})
	}
}
