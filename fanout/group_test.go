package fanout

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
)

func TestFilterValidate(t *testing.T) {
	addr := netip.MustParseAddr("2001:db8::1")
	tests := []struct {
		name string
		f    Filter
		ok   bool
	}{
		{"all", Filter{}, true},
		{"address", Filter{Key: AddressKey(addr)}, true},
		{"address on link", Filter{Key: AddressKey(addr), Link: linkAddr(1)}, true},
		{"client-id", Filter{Key: ClientIDKey([]byte{0, 1, 2})}, true},
		{"relay-id", Filter{Key: RelayIDKey(relayID(1))}, true},
		{"remote-id", Filter{Key: RemoteIDKey([]byte{0, 0, 0, 9, 'x'})}, true},
		{"link-address", Filter{Key: LinkAddressKey(linkAddr(1))}, true},
		{"all with unspecified link", Filter{Link: netip.IPv6Unspecified()}, true},
		{"all with value", Filter{Key: FilterKey{Value: "x"}}, false},
		{"all with link", Filter{Link: linkAddr(1)}, false},
		{"link-address with link", Filter{Key: LinkAddressKey(linkAddr(1)), Link: linkAddr(2)}, false},
		{"link-address unspecified", Filter{Key: LinkAddressKey(netip.IPv6Unspecified())}, false},
		{"address short", Filter{Key: FilterKey{Kind: FilterByAddress, Value: "abc"}}, false},
		{"relay-id empty", Filter{Key: FilterKey{Kind: FilterByRelayID}}, false},
		{"unknown kind", Filter{Key: FilterKey{Kind: 9, Value: "x"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.f.Validate()
			if tt.ok && err != nil {
				t.Errorf("Validate: %v, want nil", err)
			}
			if !tt.ok && !errors.Is(err, ErrInvalidFilter) {
				t.Errorf("Validate: %v, want ErrInvalidFilter", err)
			}
		})
	}
}

func TestFilterMatch(t *testing.T) {
	u := binding{id: 3, relay: 7, link: 2, prefix: netip.MustParsePrefix("2001:db8:0:300::/56")}.update()
	tests := []struct {
		name string
		f    Filter
		want bool
	}{
		{"all", Filter{}, true},
		{"relay-id", Filter{Key: RelayIDKey(relayID(7))}, true},
		{"other relay-id", Filter{Key: RelayIDKey(relayID(8))}, false},
		{"relay-id on its link", Filter{Key: RelayIDKey(relayID(7)), Link: linkAddr(2)}, true},
		{"relay-id on another link", Filter{Key: RelayIDKey(relayID(7)), Link: linkAddr(3)}, false},
		{"relay-id any link", Filter{Key: RelayIDKey(relayID(7)), Link: netip.IPv6Unspecified()}, true},
		{"client-id", Filter{Key: ClientIDKey([]byte{0, 1, 0, 3})}, true},
		{"link-address", Filter{Key: LinkAddressKey(linkAddr(2))}, true},
		{"other link-address", Filter{Key: LinkAddressKey(linkAddr(4))}, false},
		{"address inside the prefix", Filter{Key: AddressKey(netip.MustParseAddr("2001:db8:0:3ab::9"))}, true},
		{"prefix's first address", Filter{Key: AddressKey(netip.MustParseAddr("2001:db8:0:300::"))}, true},
		{"address past the prefix", Filter{Key: AddressKey(netip.MustParseAddr("2001:db8:0:400::"))}, false},
		{"remote-id absent", Filter{Key: RemoteIDKey([]byte{0, 0, 0, 9})}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.f.Match(u); got != tt.want {
				t.Errorf("Match = %v, want %v", got, tt.want)
			}
			s := &Subscriber{filter: tt.f}
			if restrictsLink(tt.f.Link) {
				s.link = tt.f.Link
			}
			if tt.f.Key.Kind == FilterByAddress {
				s.addr = toAddr128(addrOf(tt.f.Key.Value))
			}
			if got := s.matches(u); got != tt.want {
				t.Errorf("Subscriber.matches = %v, want %v (disagrees with Filter.Match)", got, tt.want)
			}
		})
	}
}

func TestPrefixRange(t *testing.T) {
	tests := []struct {
		prefix, lo, hi string
	}{
		{"2001:db8::1/128", "2001:db8::1", "2001:db8::1"},
		{"2001:db8:0:300::/56", "2001:db8:0:300::", "2001:db8:0:3ff:ffff:ffff:ffff:ffff"},
		{"2001:db8::/64", "2001:db8::", "2001:db8::ffff:ffff:ffff:ffff"},
		{"2001:db8::/32", "2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"},
		{"::/0", "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
		{"2001:db8::5/120", "2001:db8::", "2001:db8::ff"},
		{"192.0.2.0/24", "::ffff:192.0.2.0", "::ffff:192.0.2.255"},
	}
	for _, tt := range tests {
		lo, hi := prefixRange(netip.MustParsePrefix(tt.prefix))
		if want := toAddr128(netip.MustParseAddr(tt.lo)); lo != want {
			t.Errorf("prefixRange(%s) low = %x, want %x", tt.prefix, lo, want)
		}
		if want := toAddr128(netip.MustParseAddr(tt.hi)); hi != want {
			t.Errorf("prefixRange(%s) high = %x, want %x", tt.prefix, hi, want)
		}
	}
}

func TestNewGroupNilArguments(t *testing.T) {
	r := newRing(t, 8, 0)
	if _, err := r.NewGroup(nil, func() {}); !errors.Is(err, ErrNilArgument) {
		t.Errorf("NewGroup(nil source): %v, want ErrNilArgument", err)
	}
	if _, err := r.NewGroup(newFakeStore(), nil); !errors.Is(err, ErrNilArgument) {
		t.Errorf("NewGroup(nil wake): %v, want ErrNilArgument", err)
	}
}

func TestSubscribeInvalidFilter(t *testing.T) {
	_, _, g, _ := newTestGroup(t, Config{Capacity: 8})
	_, err := g.Subscribe(Filter{Key: FilterKey{Kind: FilterByRelayID}}, 0, nil)
	if !errors.Is(err, ErrInvalidFilter) {
		t.Errorf("Subscribe: %v, want ErrInvalidFilter", err)
	}
	if g.Len() != 0 {
		t.Errorf("Len = %d after a rejected Subscribe, want 0", g.Len())
	}
}

func TestGroupDeliversLive(t *testing.T) {
	r, fs, g, _ := newTestGroup(t, Config{Capacity: 64})
	sink := newRecordingSink(t)
	s := mustSubscribe(t, g, Filter{}, r.LastSeq(), "all")
	if s.CatchingUp() {
		t.Errorf("CatchingUp = true for a subscription from the last Seq")
	}
	pumpUntilIdle(t, g, sink)

	for id := range 5 {
		fs.commit(id, 0, 0)
	}
	fs.publish(r)
	pumpUntilIdle(t, g, sink)

	st := sink.stream(s)
	if want := []uint64{1, 2, 3, 4, 5}; !slices.Equal(st.seqs, want) {
		t.Errorf("delivered %v, want %v", st.seqs, want)
	}
	if sink.order[0] != "deliver" || len(sink.order) != 1 {
		t.Errorf("events %v, want a single Deliver with all five updates", sink.order)
	}
	if s.Seq() != 5 || s.State() != StateLive {
		t.Errorf("Seq, State = %d, %v; want 5, live", s.Seq(), s.State())
	}
	if got := g.Stats().Delivered; got != 5 {
		t.Errorf("Stats.Delivered = %d, want 5", got)
	}
}

func TestGroupBatchLimit(t *testing.T) {
	r, fs, g, _ := newTestGroup(t, Config{Capacity: 64, MaxBatch: 4})
	var sizes []int
	sink := newRecordingSink(t)
	sink.policy = func(_ *Subscriber, batch []*Update) (int, bool) {
		sizes = append(sizes, len(batch))
		return len(batch), false
	}
	s := mustSubscribe(t, g, Filter{}, r.LastSeq(), "all")
	pumpUntilIdle(t, g, sink)

	for id := range 10 {
		fs.commit(id, 0, 0)
	}
	fs.publish(r)
	pumpUntilIdle(t, g, sink)

	if want := []int{4, 4, 2}; !slices.Equal(sizes, want) {
		t.Errorf("batch sizes %v, want %v", sizes, want)
	}
	if n := len(sink.stream(s).seqs); n != 10 {
		t.Errorf("delivered %d updates, want 10", n)
	}
}

// TestGroupIndex checks that every filter kind receives exactly the updates
// it selects.
func TestGroupIndex(t *testing.T) {
	r, fs, g, _ := newTestGroup(t, Config{Capacity: 64})
	sink := newRecordingSink(t)
	after := r.LastSeq()

	// Binding 5 is a /56 at 2001:db8:0:0500::/56; binding 4 is 2001:db8:0:400::1.
	subs := map[string]*Subscriber{
		"all":            mustSubscribe(t, g, Filter{}, after, "all"),
		"relay 1":        mustSubscribe(t, g, Filter{Key: RelayIDKey(relayID(1))}, after, "relay 1"),
		"relay 2":        mustSubscribe(t, g, Filter{Key: RelayIDKey(relayID(2))}, after, "relay 2"),
		"relay 1 link 1": mustSubscribe(t, g, Filter{Key: RelayIDKey(relayID(1)), Link: linkAddr(1)}, after, "relay 1 link 1"),
		"link 2":         mustSubscribe(t, g, Filter{Key: LinkAddressKey(linkAddr(2))}, after, "link 2"),
		"client 4":       mustSubscribe(t, g, Filter{Key: ClientIDKey([]byte{0, 1, 0, 4})}, after, "client 4"),
		"address in 5":   mustSubscribe(t, g, Filter{Key: AddressKey(netip.MustParseAddr("2001:db8:0:5aa::1"))}, after, "address in 5"),
		"address 4":      mustSubscribe(t, g, Filter{Key: AddressKey(netip.MustParseAddr("2001:db8:0:400::1"))}, after, "address 4"),
		"address none":   mustSubscribe(t, g, Filter{Key: AddressKey(netip.MustParseAddr("2001:db8:ffff::1"))}, after, "address none"),
	}
	pumpUntilIdle(t, g, sink)

	// id, relay, link
	changes := [][3]int{{1, 1, 1}, {2, 2, 2}, {3, 1, 2}, {4, 3, 3}, {5, 2, 1}}
	for _, c := range changes {
		fs.commit(c[0], c[1], c[2])
	}
	fs.publish(r)
	pumpUntilIdle(t, g, sink)

	want := map[string][]uint64{
		"all":            {1, 2, 3, 4, 5},
		"relay 1":        {1, 3},
		"relay 2":        {2, 5},
		"relay 1 link 1": {1},
		"link 2":         {2, 3},
		"client 4":       {4},
		"address in 5":   {5},
		"address 4":      {4},
		"address none":   nil,
	}
	for name, s := range subs {
		if got := sink.stream(s).seqs; !slices.Equal(got, want[name]) {
			t.Errorf("%s received %v, want %v", name, got, want[name])
		}
	}
}

// TestGroupIndexDuplicateKeys checks that an update carrying the same key
// twice reaches a subscriber once.
func TestGroupIndexDuplicateKeys(t *testing.T) {
	r, _, g, _ := newTestGroup(t, Config{Capacity: 8})
	sink := newRecordingSink(t)
	key := RelayIDKey(relayID(1))
	s := mustSubscribe(t, g, Filter{Key: key}, r.LastSeq(), "relay 1")
	pumpUntilIdle(t, g, sink)

	u := binding{id: 1, version: 1, seq: 1, relay: 1, prefix: prefixFor(1)}.update()
	u.Keys = append(u.Keys, key)
	r.Publish(u)
	pumpUntilIdle(t, g, sink)

	if got := sink.stream(s).seqs; !slices.Equal(got, []uint64{1}) {
		t.Errorf("received %v, want [1]", got)
	}
}

func TestGroupRemove(t *testing.T) {
	tests := []struct {
		name string
		f    Filter
	}{
		{"all", Filter{}},
		{"relay-id", Filter{Key: RelayIDKey(relayID(1))}},
		{"link-address", Filter{Key: LinkAddressKey(linkAddr(1))}},
		{"address", Filter{Key: AddressKey(prefixFor(2).Addr())}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, fs, g, _ := newTestGroup(t, Config{Capacity: 8})
			sink := newRecordingSink(t)
			keep := mustSubscribe(t, g, tt.f, r.LastSeq(), "keep")
			gone := mustSubscribe(t, g, tt.f, r.LastSeq(), "gone")
			pumpUntilIdle(t, g, sink)

			fs.commit(2, 1, 1)
			fs.publish(r)
			pumpUntilIdle(t, g, sink)
			g.Remove(gone)
			g.Remove(gone) // a second Remove is a no-op
			fs.commit(2, 1, 1)
			fs.publish(r)
			pumpUntilIdle(t, g, sink)

			if got := sink.stream(keep).seqs; !slices.Equal(got, []uint64{1, 2}) {
				t.Errorf("kept subscriber received %v, want [1 2]", got)
			}
			if got := sink.stream(gone).seqs; !slices.Equal(got, []uint64{1}) {
				t.Errorf("removed subscriber received %v, want [1]", got)
			}
			if gone.State() != StateRemoved || g.Len() != 1 {
				t.Errorf("after Remove: State %v, Len %d; want removed, 1", gone.State(), g.Len())
			}

			g.Remove(keep)
			if n := indexSize(&g.index); n != 0 {
				t.Errorf("index holds %d entries after every subscriber was removed", n)
			}
		})
	}
}

// indexSize counts every entry of x, map keys included, so that a test can
// see that removal leaves nothing behind.
func indexSize(x *index) int {
	n := len(x.unfiltered) + len(x.addrs)
	for _, m := range x.keys {
		n += len(m)
		for _, list := range m {
			n += len(list)
		}
	}
	return n
}

// TestGroupRemoveDuringDeliver removes other subscribers from inside Deliver,
// which reorders the index lists the pump is walking.
func TestGroupRemoveDuringDeliver(t *testing.T) {
	r, fs, g, _ := newTestGroup(t, Config{Capacity: 64})
	sink := newRecordingSink(t)
	var subs []*Subscriber
	for i := range 6 {
		subs = append(subs, mustSubscribe(t, g, Filter{}, r.LastSeq(), i))
	}
	pumpUntilIdle(t, g, sink)
	sink.policy = func(s *Subscriber, batch []*Update) (int, bool) {
		if s == subs[0] {
			g.Remove(subs[5])
			g.Remove(subs[0])
		}
		return len(batch), false
	}

	fs.commit(1, 0, 0)
	fs.publish(r)
	pumpUntilIdle(t, g, sink)

	for i, s := range subs[1:5] {
		if got := sink.stream(s).seqs; !slices.Equal(got, []uint64{1}) {
			t.Errorf("subscriber %d received %v, want [1]", i+1, got)
		}
	}
	if got := len(sink.stream(subs[5]).seqs); got != 0 {
		t.Errorf("subscriber removed before its turn received %d updates", got)
	}
}

func TestGroupWakeCoalescing(t *testing.T) {
	r, fs, g, w := newTestGroup(t, Config{Capacity: 1024})
	sink := newRecordingSink(t)

	// Publishing with no live subscriber wakes no group.
	fs.commit(1, 0, 0)
	fs.publish(r)
	if w.n != 0 {
		t.Errorf("%d wakes with no subscriber, want 0", w.n)
	}

	s := mustSubscribe(t, g, Filter{}, r.LastSeq(), "all")
	if w.n != 1 {
		t.Errorf("%d wakes after Subscribe, want 1", w.n)
	}
	g.Pump(sink)

	// Many publishes before the pump: one wake.
	for id := range 100 {
		fs.commit(id, 0, 0)
		fs.publish(r)
	}
	if w.n != 2 {
		t.Errorf("%d wakes after 100 publishes, want 2", w.n)
	}
	g.Pump(sink)
	if w.n != 2 {
		t.Errorf("the pump that drained everything woke the group again (%d wakes)", w.n)
	}

	// After the pump, the next publish wakes again.
	fs.commit(1, 0, 0)
	fs.publish(r)
	if w.n != 3 {
		t.Errorf("%d wakes after a publish following the pump, want 3", w.n)
	}
	g.Pump(sink)

	if got := len(sink.stream(s).seqs); got != 101 {
		t.Errorf("delivered %d updates, want 101", got)
	}
	if got := g.Stats().Wakes; got != uint64(w.n) {
		t.Errorf("Stats.Wakes = %d, want %d", got, w.n)
	}

	// A blocked group has no live subscriber, so it is not woken.
	g.Block(s)
	fs.commit(1, 0, 0)
	fs.publish(r)
	if w.n != 3 {
		t.Errorf("%d wakes with the only subscriber blocked, want 3", w.n)
	}
}

// TestGroupPumpRequeues checks that a Pump that could not finish asks for
// another one.
func TestGroupPumpRequeues(t *testing.T) {
	r, fs, g, w := newTestGroup(t, Config{Capacity: 64, MaxBatch: 2})
	sink := newRecordingSink(t)
	mustSubscribe(t, g, Filter{}, r.LastSeq(), "all")
	g.Pump(sink)
	for id := range 5 {
		fs.commit(id, 0, 0)
	}
	fs.publish(r)

	wakes := w.n
	g.Pump(sink)
	if w.n != wakes+1 {
		t.Errorf("a Pump that left 3 of 5 updates did not request another (%d wakes, want %d)", w.n, wakes+1)
	}
}

func TestGroupClose(t *testing.T) {
	r, fs, g, w := newTestGroup(t, Config{Capacity: 8})
	sink := newRecordingSink(t)
	s := mustSubscribe(t, g, Filter{}, r.LastSeq(), "all")
	g.Pump(sink)
	fs.commit(1, 0, 0)
	fs.publish(r)
	g.Pump(sink)

	g.Close()
	g.Close()
	if s.State() != StateRemoved {
		t.Errorf("State after Close = %v, want removed", s.State())
	}
	wakes := w.n
	fs.commit(1, 0, 0)
	fs.publish(r)
	if w.n != wakes {
		t.Errorf("a closed group was woken")
	}
	if _, err := g.Subscribe(Filter{}, 0, nil); !errors.Is(err, ErrGroupClosed) {
		t.Errorf("Subscribe after Close: %v, want ErrGroupClosed", err)
	}
	if got := r.Stats().Delivered; got != 1 {
		t.Errorf("ring Stats.Delivered after Close = %d, want the closed group's 1", got)
	}
}

// TestGroupRewalkAfterSkippedDelivery blocks a subscriber after the walk
// collected an update for it but before its turn, then restarts the walk
// behind that update: the update must still reach it.
func TestGroupRewalkAfterSkippedDelivery(t *testing.T) {
	r, fs, g, _ := newTestGroup(t, Config{Capacity: 64})
	sink := newRecordingSink(t)
	f := Filter{Key: RelayIDKey(relayID(1))}
	a := mustSubscribe(t, g, f, r.LastSeq(), "a")
	b := mustSubscribe(t, g, f, r.LastSeq(), "b")
	pumpUntilIdle(t, g, sink)

	sink.policy = func(s *Subscriber, batch []*Update) (int, bool) {
		if s == a {
			g.Block(b)
			return len(batch), true
		}
		return len(batch), false
	}
	fs.commit(1, 1, 0)
	fs.publish(r)
	pumpUntilIdle(t, g, sink)
	if len(sink.stream(b).seqs) != 0 || b.State() != StateBlocked || g.live != 0 {
		t.Fatalf("setup: b received %v in state %v with %d live", sink.stream(b).seqs, b.State(), g.live)
	}

	sink.policy = nil
	g.Unblock(b)
	pumpUntilIdle(t, g, sink)
	if got := sink.stream(b).seqs; !slices.Equal(got, []uint64{1}) {
		t.Errorf("b received %v, want [1]", got)
	}
}
