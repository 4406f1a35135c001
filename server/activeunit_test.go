package server

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/fanout"
	"github.com/alqd/alqd/store"
)

// TestAppendAgedMatchesLaterEncoding checks the premise of encoding once:
// a body encoded at a whole second and moved on by d seconds equals the
// body encoded d seconds later.
func TestAppendAgedMatchesLaterEncoding(t *testing.T) {
	at := testNow
	na := binding("2001:db8:1::10/128", duid(1), "2001:db8:1::1")
	na.CLTT = at.Add(-1500 * time.Millisecond) // not a whole second
	pd := binding("2001:db8:100::/56", duid(2), "2001:db8:1::1")
	pd.CLTT = at.Add(-90 * time.Second)
	forever := na
	forever.PreferredLifetime, forever.ValidLifetime = infinity, infinity
	short := na
	short.PreferredLifetime, short.ValidLifetime = 30, 60
	released := na
	released.State = store.StateReleased
	relayed := pd
	relayed.RelayPeer = netip.MustParseAddr("fe80::1")
	relayed.RelayMessage = relayForwSized("2001:db8:1::1", 7)

	tests := []struct {
		name string
		bd   store.Binding
		view view
	}{
		{"IA_NA", na, view{cltTime: true}},
		{"IA_PD", pd, view{cltTime: true}},
		{"infinite lifetimes", forever, view{cltTime: true}},
		{"lifetimes running out", short, view{cltTime: true}},
		{"released", released, view{cltTime: true}},
		{"relay data", relayed, view{cltTime: true, relayData: true}},
		{"CLT_TIME denied", na, view{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			group := []store.Binding{tt.bd}
			body, err := appendClientData(nil, group, tt.view, at)
			if err != nil {
				t.Fatalf("appendClientData: %v", err)
			}
			for _, d := range []uint32{0, 1, 29, 45, 61, 3600, 100000} {
				want, err := appendClientData(nil, group, tt.view, at.Add(time.Duration(d)*time.Second))
				if err != nil {
					t.Fatalf("appendClientData: %v", err)
				}
				if got := appendAged(nil, body, d); !bytes.Equal(got, want) {
					t.Errorf("aged by %ds:\n got  %x\n want %x", d, got, want)
				}
			}
		})
	}
}

func TestDataBase(t *testing.T) {
	at := func(sec int64) *fanout.Update { return &fanout.Update{ChangeTime: time.Unix(sec, 400_000_000)} }
	tests := []struct {
		name     string
		now      int64
		u, next  *fanout.Update
		upToDate bool
		want     int64
	}{
		{"last message, up to date", 100, at(90), nil, true, 100},
		{"last message, changes still to come", 100, at(90), nil, false, 90},
		{"next change in an earlier second", 100, at(90), at(95), true, 95},
		{"next change in this second", 100, at(90), at(100), false, 100},
		{"server clock behind the store", 80, at(90), nil, true, 90},
		{"server clock behind the next change", 80, at(70), at(90), false, 80},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := dataBase(tt.now, tt.u, tt.next, tt.upToDate); got != tt.want {
				t.Errorf("dataBase = %d, want %d", got, tt.want)
			}
		})
	}
}

// TestMatchesBindingAgreesWithFilter checks that the store scan's
// pre-filter selects exactly the bindings whose encoded update the fanout
// filter selects, so that a scan drops nothing a subscriber wants.
func TestMatchesBindingAgreesWithFilter(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	enc := newUpdateEncoder(&policy{})
	links := []string{"2001:db8:1::1", "2001:db8:2::1", "::"}
	var bs []store.Binding
	for i := range 60 {
		var b store.Binding
		if i%3 == 0 {
			b = binding(fmt.Sprintf("2001:db8:%x::/48", 0x100+i%5), duid(i%7), links[i%3])
		} else {
			b = binding(fmt.Sprintf("2001:db8:%x::%x/128", 0x100+i%5, i), duid(i%7), links[i%3])
		}
		if i%3 == 2 {
			b.LinkAddress = netip.Addr{} // recorded without a link-address
		}
		if i%2 == 0 {
			b.RelayID = duid(100 + i%3)
			b.RemoteID = []byte{0, 0, 0, 9, byte(i % 4)}
		}
		b.ChangeTime = testNow
		bs = append(bs, b)
	}
	var filters []fanout.Filter
	for range 200 {
		b := &bs[rng.IntN(len(bs))]
		link := netip.Addr{}
		if rng.IntN(2) == 0 {
			link = netip.MustParseAddr(links[rng.IntN(len(links))])
		}
		switch rng.IntN(6) {
		case 0:
			filters = append(filters, fanout.Filter{})
		case 1:
			filters = append(filters, fanout.Filter{Key: fanout.AddressKey(b.Prefix.Addr().Next()), Link: link})
		case 2:
			filters = append(filters, fanout.Filter{Key: fanout.ClientIDKey(b.ClientID), Link: link})
		case 3:
			filters = append(filters, fanout.Filter{Key: fanout.RelayIDKey(duid(100 + rng.IntN(3))), Link: link})
		case 4:
			// QUERY_BY_LINK_ADDRESS needs a link; parseActive rejects ::.
			filters = append(filters, fanout.Filter{Key: fanout.LinkAddressKey(netip.MustParseAddr(links[rng.IntN(2)]))})
		case 5:
			filters = append(filters, fanout.Filter{Key: fanout.RemoteIDKey([]byte{0, 0, 0, 9, byte(rng.IntN(4))}), Link: link})
		}
	}
	for _, f := range filters {
		if err := f.Validate(); err != nil {
			t.Fatalf("filter %+v: %v", f, err)
		}
		for i := range bs {
			u, err := enc.newUpdate(bs[i : i+1])
			if err != nil {
				t.Fatalf("newUpdate: %v", err)
			}
			if got, want := matchesBinding(f, &bs[i]), f.Match(u); got != want {
				t.Errorf("filter %v %x link %v, binding %v link %v: matchesBinding %v, Filter.Match %v",
					f.Key.Kind, f.Key.Value, f.Link, bs[i].Prefix, bs[i].LinkAddress, got, want)
			}
		}
	}
}

func TestPublisherEncodesViews(t *testing.T) {
	relayed := binding("2001:db8:1::10/128", duid(1), "2001:db8:1::1")
	relayed.RelayID = duid(50)
	relayed.RemoteID = []byte{0, 0, 0, 9, 'x'}
	relayed.RelayPeer = netip.MustParseAddr("fe80::1")
	relayed.RelayMessage = relayForwSized("2001:db8:1::1", 3)
	plain := binding("2001:db8:1::11/128", duid(2), "2001:db8:1::1")
	plain.LinkAddress = netip.Addr{}
	plain.CLTT = time.Time{}

	tests := []struct {
		name      string
		deny      []codec.OptionCode
		wantRelay bool
		wantCLT   bool
	}{
		{"full", nil, true, true},
		{"relay data denied", []codec.OptionCode{codec.OptLQRelayData}, false, true},
		{"CLT_TIME denied", []codec.OptionCode{codec.OptCLTTime}, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ring, err := fanout.NewRing(fanout.Config{Capacity: 16}, 0)
			if err != nil {
				t.Fatal(err)
			}
			m, _ := NewMetrics(nil)
			p := &publisher{enc: newUpdateEncoder(&policy{deny: newOptionSet(tt.deny)}), metrics: m}
			p.ring.Store(ring)
			committed := []store.Binding{relayed, plain}
			for i := range committed {
				committed[i].Seq, committed[i].ChangeTime = uint64(i+1), testNow
			}
			p.committed(committed)
			if ring.LastSeq() != 2 {
				t.Fatalf("ring LastSeq %d after publishing Seq 1 and 2", ring.LastSeq())
			}

			// Read the updates back through a subscriber.
			updates := collectUpdates(t, ring)
			if len(updates) != 2 {
				t.Fatalf("%d updates, want 2", len(updates))
			}
			u := updates[0]
			wantKeys := []fanout.FilterKey{fanout.ClientIDKey(duid(1)), fanout.RelayIDKey(duid(50)), fanout.RemoteIDKey([]byte{0, 0, 0, 9, 'x'})}
			if fmt.Sprint(u.Keys) != fmt.Sprint(wantKeys) {
				t.Errorf("keys %v, want %v", u.Keys, wantKeys)
			}
			if u.Link != netip.MustParseAddr("2001:db8:1::1") || u.Prefix != relayed.Prefix {
				t.Errorf("link %v prefix %v", u.Link, u.Prefix)
			}
			if updates[1].Link != netip.IPv6Unspecified() {
				t.Errorf("binding without link-address has update link %v, want ::", updates[1].Link)
			}
			for v, body := range u.Bodies {
				var cd codec.ClientData
				if err := cd.Decode(body[codec.OptionHeaderLen:]); err != nil {
					t.Fatalf("body %d: %v", v, err)
				}
				if want := v == viewRelay && tt.wantRelay; cd.HasRelayData != want {
					t.Errorf("view %d relay data %v, want %v", v, cd.HasRelayData, want)
				}
				if cd.HasCLTTime != tt.wantCLT {
					t.Errorf("view %d CLT_TIME %v, want %v", v, cd.HasCLTTime, tt.wantCLT)
				}
			}
			if &updates[1].Bodies[viewPlain][0] != &updates[1].Bodies[viewRelay][0] {
				t.Errorf("a binding without relay data has two encodings")
			}

			// A binding without CLTT counts its lifetimes from its change,
			// so that moving the body on stays exact.
			var cd codec.ClientData
			if err := cd.Decode(updates[1].Bodies[viewPlain][codec.OptionHeaderLen:]); err != nil {
				t.Fatal(err)
			}
			if tt.wantCLT && (!cd.HasCLTTime || cd.CLTTime != 0) {
				t.Errorf("binding without CLTT: CLT_TIME %d (present %v), want 0 at its change time", cd.CLTTime, cd.HasCLTTime)
			}
		})
	}
}

// collectUpdates returns the updates a new unfiltered subscriber from Seq
// 0 receives from ring.
func collectUpdates(t *testing.T, ring *fanout.Ring) []*fanout.Update {
	t.Helper()
	var woken bool
	g, err := ring.NewGroup(emptySource{}, func() { woken = true })
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	sink := &recordingSink{}
	if _, err := g.Subscribe(fanout.Filter{}, 0, nil); err != nil {
		t.Fatal(err)
	}
	for woken {
		woken = false
		g.Pump(sink)
	}
	return sink.updates
}

type recordingSink struct{ updates []*fanout.Update }

func (r *recordingSink) Deliver(_ *fanout.Subscriber, batch []*fanout.Update) (int, bool) {
	r.updates = append(r.updates, batch...)
	return len(batch), false
}
func (r *recordingSink) CaughtUp(*fanout.Subscriber)      {}
func (r *recordingSink) Failed(*fanout.Subscriber, error) {}

type emptySource struct{}

func (emptySource) ChangedSince(uint64, fanout.Filter) fanout.Iterator { return &changeIter{} }

func TestAppendDataHead(t *testing.T) {
	tests := []struct {
		name     string
		withBase bool
		want     []byte
	}{
		{"without base-time", false, []byte{
			0x00, 0x0e, // msg-size: 4 + 10
			0x11,             // LEASEQUERY-DATA
			0x12, 0x34, 0x56, // transaction-id
		}},
		{"with base-time", true, []byte{
			0x00, 0x16, // msg-size: 4 + 8 + 10
			0x11,             // LEASEQUERY-DATA
			0x12, 0x34, 0x56, // transaction-id
			0x00, 0x64, 0x00, 0x04, // OPTION_LQ_BASE_TIME, length 4
			0x30, 0xc9, 0x8f, 0x80, // base-time
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := appendDataHead(nil, 0x123456, 10, tt.withBase, 0x30c98f80)
			if !bytes.Equal(got, tt.want) {
				t.Errorf("got %x, want %x", got, tt.want)
			}
		})
	}
}

// TestDeliverPathAllocs checks that building the messages of a batch
// allocates nothing once the loop's buffers have grown.
func TestDeliverPathAllocs(t *testing.T) {
	la := &loopActive{nowUnix: testNow.Unix() + 5, pumps: 1}
	u, err := newUpdateEncoder(&policy{}).newUpdate([]store.Binding{activeBinding("2001:db8:1::1/128", duid(1), "2001:db8:1::1", testNow)})
	if err != nil {
		t.Fatal(err)
	}
	u.ChangeTime = testNow
	heads := make([]byte, 0, 64)
	build := func() {
		base := dataBase(la.nowUnix, u, nil, true)
		body := la.bodyAt(u, viewPlain, base)
		heads = appendDataHead(heads[:0], 0x42, len(body), true, dhcpSeconds(base))
	}
	build()
	if n := testing.AllocsPerRun(100, build); n != 0 {
		t.Errorf("%v allocations per message, want 0", n)
	}
	if got := binary.BigEndian.Uint32(heads[10:]); got != codec.DHCPTime(testNow)+5 {
		t.Errorf("base-time %d, want %d", got, codec.DHCPTime(testNow)+5)
	}
}

// FuzzParseActive feeds arbitrary messages to the ACTIVELEASEQUERY checks:
// they must not panic, an accepted query must give a filter the fanout
// group accepts, and no accepted query may carry OPTION_LQ_END_TIME.
func FuzzParseActive(f *testing.F) {
	q := byRelayID(duid(1), "::")
	f.Add(activeleasequery(1, nil))
	f.Add(activeleasequery(2, &q, oro(codec.OptLQBaseTime), startTime(testNow)))
	f.Add(activeleasequery(3, ptr(byAddress("2001:db8::1"))))
	f.Add(activeleasequery(4, nil, uint32Option(codec.OptLQEndTime, 5)))
	p := &policy{serverID: testServerDUID}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) == 0 {
			return
		}
		r := &request{}
		filter, serr := parseActive(r, raw, p)
		if serr != nil {
			return
		}
		if err := filter.Validate(); err != nil {
			t.Fatalf("accepted query gives an invalid filter %+v: %v", filter, err)
		}
		if r.hasEnd {
			t.Fatalf("query with OPTION_LQ_END_TIME accepted")
		}
	})
}

// FuzzAppendAged checks that moving a body on in two steps equals one step
// of the sum, on any bytes, and that the length never changes.
func FuzzAppendAged(f *testing.F) {
	body, _ := appendClientData(nil, []store.Binding{binding("2001:db8:1::1/128", duid(1), "2001:db8:1::1")}, view{cltTime: true}, testNow)
	f.Add(body, uint32(5), uint32(7))
	f.Add([]byte{0, 45, 0, 8, 0, 46, 0, 4, 0xff, 0xff, 0xff, 0xf0}, uint32(100), uint32(0))
	f.Fuzz(func(t *testing.T, body []byte, d1, d2 uint32) {
		d1, d2 = d1%(1<<30), d2%(1<<30)
		once := appendAged(nil, body, d1+d2)
		twice := appendAged(nil, appendAged(nil, body, d1), d2)
		if len(once) != len(body) {
			t.Fatalf("length %d, want %d", len(once), len(body))
		}
		if !bytes.Equal(once, twice) {
			t.Fatalf("aged by %d: %x, by %d then %d: %x", d1+d2, once, d1, d2, twice)
		}
	})
}

// BenchmarkPublishCommit measures the store subscription's work per commit
// group of 64 changes: encoding both views of each binding once and
// publishing them to the ring.
func BenchmarkPublishCommit(b *testing.B) {
	ring, err := fanout.NewRing(fanout.Config{}, 0)
	if err != nil {
		b.Fatal(err)
	}
	m, _ := NewMetrics(nil)
	p := &publisher{enc: newUpdateEncoder(&policy{}), metrics: m}
	p.ring.Store(ring)
	group := make([]store.Binding, 64)
	for i := range group {
		group[i] = activeBinding(fmt.Sprintf("2001:db8:1::%x/128", 0x1000+i), duid(i), "2001:db8:1::1", testNow)
		group[i].RelayID = duid(1000 + i%8)
		group[i].RelayPeer = netip.MustParseAddr("fe80::1")
		group[i].RelayMessage = relayForwSized("2001:db8:1::1", 8)
		group[i].ChangeTime = testNow
	}
	seq := uint64(0)
	b.ReportAllocs()
	for b.Loop() {
		for i := range group {
			seq++
			group[i].Seq = seq
		}
		p.committed(group)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(group)), "ns/binding")
}

// BenchmarkDeliverBatch measures building the writev slices of one full
// batch for one connection: base-times, bodies and headers. With changes
// in one second every body is the shared encoding; with each change a
// second after the previous one, every message's base-time is the next
// change's second, so every body is moved on by a second (appendAged).
func BenchmarkDeliverBatch(b *testing.B) {
	enc := newUpdateEncoder(&policy{})
	for _, spread := range []bool{false, true} {
		batch := make([]*fanout.Update, maxDeliverBatch)
		for i := range batch {
			at := testNow
			if spread {
				at = testNow.Add(time.Duration(i) * time.Second)
			}
			bd := activeBinding(fmt.Sprintf("2001:db8:1::%x/128", 0x1000+i), duid(i), "2001:db8:1::1", testNow)
			bd.Seq, bd.ChangeTime = uint64(i+1), at
			u, err := enc.newUpdate([]store.Binding{bd})
			if err != nil {
				b.Fatal(err)
			}
			batch[i] = u
		}
		name := "changes=same-second"
		if spread {
			name = "changes=a-second-apart"
		}
		b.Run(name, func(b *testing.B) {
			la := &loopActive{nowUnix: testNow.Unix() + maxDeliverBatch}
			heads := make([]byte, 0, maxDeliverBatch*(frameHeadLen+baseTimeOptionLen))
			iov := make([][]byte, 0, 2*maxDeliverBatch)
			aged := 0
			b.ReportAllocs()
			for b.Loop() {
				la.pumps++
				la.aged = la.aged[:0]
				heads, iov = heads[:0], iov[:0]
				for i, u := range batch {
					var next *fanout.Update
					if i < len(batch)-1 {
						next = batch[i+1]
					}
					base := dataBase(la.nowUnix, u, next, true)
					body := la.bodyAt(u, viewPlain, base)
					if &body[0] != &u.Bodies[viewPlain][0] {
						aged++
					}
					start := len(heads)
					heads = appendDataHead(heads, 0x42, len(body), true, dhcpSeconds(base))
					iov = append(iov, heads[start:], body)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/update")
			b.ReportMetric(float64(aged)/float64(b.N*len(batch)), "aged/update")
		})
	}
}

func TestActiveMetricsRegistered(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatalf("NewMetrics: %v", err)
	}
	m.active.setStats(func() fanout.Stats { return fanout.Stats{Delivered: 7, Blocked: 2, Lapped: 1} })
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, mt := range f.GetMetric() {
			got[f.GetName()] += mt.GetCounter().GetValue() + mt.GetGauge().GetValue()
		}
	}
	want := map[string]float64{
		"alqd_active_connections":               0,
		"alqd_active_keepalives_total":          0,
		"alqd_active_catch_ups_started_total":   0,
		"alqd_active_catch_ups_completed_total": 0,
		"alqd_active_data_missing_total":        0,
		"alqd_active_updates_delivered_total":   7,
		"alqd_active_blocked_total":             2,
		"alqd_active_lapped_total":              1,
		"alqd_active_resyncs_total":             0,
	}
	for name, v := range want {
		if g, ok := got[name]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", name, g, ok, v)
		}
	}
}
