package server

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/store"
)

// grownRelayStore serves the bindings of a real store with the relay message
// of one address replaced by a much longer one. The store rejects such a
// message today, but an older alqd may have stored it, and the server must
// still report the binding.
type grownRelayStore struct {
	*store.Store
	addr    netip.Addr
	message []byte
}

func (s *grownRelayStore) grow(b *store.Binding) {
	if b.Prefix.Addr() == s.addr {
		b.RelayMessage = s.message
	}
}

func (s *grownRelayStore) LookupAddress(a netip.Addr) (store.Binding, bool, error) {
	b, ok, err := s.Store.LookupAddress(a)
	s.grow(&b)
	return b, ok, err
}

func (s *grownRelayStore) ByLinkAddress(link netip.Addr) store.Iterator {
	return &grownRelayIterator{Iterator: s.Store.ByLinkAddress(link), s: s}
}

func (s *grownRelayStore) ByClientID(duid []byte, link netip.Addr) store.Iterator {
	return &grownRelayIterator{Iterator: s.Store.ByClientID(duid, link), s: s}
}

type grownRelayIterator struct {
	store.Iterator
	s   *grownRelayStore
	cur store.Binding
}

func (it *grownRelayIterator) Binding() *store.Binding {
	it.cur = *it.Iterator.Binding()
	it.s.grow(&it.cur)
	return &it.cur
}

// relayFitFixture serves three bindings on link 2001:db8:1::1, all relayed;
// the relay message of 2001:db8:1::11 is relayLen octets long.
func relayFitFixture(t *testing.T, relayLen int, logs *logBuffer) (*Server, *Metrics) {
	t.Helper()
	st := openStore(t, nil)
	var seeded []store.Binding
	for i, addr := range []string{"2001:db8:1::10", "2001:db8:1::11", "2001:db8:1::12"} {
		b := binding(addr+"/128", duid(i+1), "2001:db8:1::1")
		b.RelayPeer = netip.MustParseAddr("fe80::1")
		b.RelayMessage = relayForw(t, "2001:db8:1::1", "fe80::c1")
		seeded = append(seeded, b)
	}
	seed(t, st, seeded...)

	// relayForwSized(link, n) is 34 + 4 + n + 1 octets long.
	grown := &grownRelayStore{Store: st, addr: netip.MustParseAddr("2001:db8:1::11"), message: relayForwSized("2001:db8:1::1", relayLen-39)}
	m := newTestMetrics(t)
	return startServer(t, grown, testConfig(), WithMetrics(m), WithLogger(logs.logger())), m
}

// TestBulkRelayDataTooLong checks that a binding whose OPTION_LQ_RELAY_DATA
// would not fit in a message is still reported, without the relay data,
// and that this is counted and logged.
func TestBulkRelayDataTooLong(t *testing.T) {
	// OPTION_CLIENT_DATA holds 70 octets besides the relay message: the
	// client DUID, OPTION_IAADDR, OPTION_CLT_TIME and the header and
	// peer-address of OPTION_LQ_RELAY_DATA.
	var logs logBuffer
	srv, m := relayFitFixture(t, 65535-70+1, &logs)
	r := dial(t, srv)

	q := byLink("2001:db8:1::1")
	q.Options = append(q.Options, oro(codec.OptLQRelayData))
	a := r.query(7, q)

	if got := status(t, a.done); got != codec.StatusSuccess {
		t.Errorf("LEASEQUERY-DONE status %v, want Success", got)
	}
	withRelay := map[netip.Addr]bool{}
	for _, cd := range a.clientData(t) {
		for _, addr := range cd.Addrs {
			withRelay[addr.Addr] = cd.HasRelayData
		}
	}
	want := map[netip.Addr]bool{
		netip.MustParseAddr("2001:db8:1::10"): true,
		netip.MustParseAddr("2001:db8:1::11"): false,
		netip.MustParseAddr("2001:db8:1::12"): true,
	}
	for addr, relayed := range want {
		got, ok := withRelay[addr]
		if !ok {
			t.Errorf("binding %v missing from the answer", addr)
			continue
		}
		if got != relayed {
			t.Errorf("binding %v has OPTION_LQ_RELAY_DATA %v, want %v", addr, got, relayed)
		}
	}
	if n := counterValue(m.tcpRelayOmitted); n != 1 {
		t.Errorf("relay data omitted counter = %v, want 1", n)
	}
	if n := counterValue(m.encodeErrors); n != 0 {
		t.Errorf("encode errors = %v, want 0", n)
	}
	// The server logs after it has sent LEASEQUERY-DONE.
	eventually(t, 5*time.Second, "the warning in the log", func() bool {
		return strings.Contains(logs.String(), "bindings did not fit in a reply")
	})
}

// TestUDPRelayDataTooLong checks that a UDP reply that would not fit in a
// datagram with its OPTION_LQ_RELAY_DATA goes out without it, and that a
// reply with relay data that fits keeps it.
func TestUDPRelayDataTooLong(t *testing.T) {
	// The reply holds 106 octets besides the relay message: header,
	// OPTION_SERVERID, OPTION_CLIENTID, OPTION_CLIENT_DATA and the header
	// and peer-address of OPTION_LQ_RELAY_DATA.
	tests := []struct {
		name      string
		relayLen  int
		wantRelay bool
	}{
		{"fits", 60000, true},
		{"fills an IPv6 datagram", maxUDPPayload6 - 106, true},
		{"over an IPv6 datagram", maxUDPPayload6 - 106 + 1, false},
		{"over an option", 65535 - 16 + 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs logBuffer
			srv, m := relayFitFixture(t, tt.relayLen, &logs)
			pkt := leasequery(9, byAddress("2001:db8:1::11"), oro(codec.OptLQRelayData))
			reply := decodeReply(t, udpExchange(t, srv, pkt))

			if code := status(t, reply); code != codec.StatusSuccess {
				t.Fatalf("reply status %v, want Success", code)
			}
			if !reply.Options.Has(codec.OptClientData) {
				t.Fatal("reply without OPTION_CLIENT_DATA")
			}
			if hasRelay := reply.Options.Has(codec.OptLQRelayData); hasRelay != tt.wantRelay {
				t.Errorf("reply has OPTION_LQ_RELAY_DATA %v, want %v", hasRelay, tt.wantRelay)
			}
			wantCount := map[bool]float64{true: 0, false: 1}[tt.wantRelay]
			if n := counterValue(m.udpRelayOmitted); n != wantCount {
				t.Errorf("relay data omitted counter = %v, want %v", n, wantCount)
			}
		})
	}
}
