package server

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/store"
)

func TestRemainingLifetimes(t *testing.T) {
	tests := []struct {
		name                 string
		state                store.State
		preferred, valid     uint32
		elapsed              time.Duration
		wantPreferred, wantV uint32
	}{
		{"fresh", store.StateActive, 3600, 7200, 0, 3600, 7200},
		{"run down", store.StateActive, 3600, 7200, 100 * time.Second, 3500, 7100},
		{"preferred over", store.StateActive, 3600, 7200, 5000 * time.Second, 0, 2200},
		{"both over", store.StateActive, 3600, 7200, 9000 * time.Second, 0, 0},
		{"infinity stays", store.StateActive, infinity, infinity, 9000 * time.Second, infinity, infinity},
		{"fraction of a second ignored", store.StateActive, 10, 20, 1500 * time.Millisecond, 9, 19},
		{"CLTT in the future", store.StateActive, 10, 20, -time.Hour, 10, 20},
		{"released", store.StateReleased, 3600, 7200, 0, 0, 0},
		{"expired", store.StateExpired, 3600, 7200, 0, 0, 0},
		{"declined", store.StateDeclined, 3600, 7200, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bd := store.Binding{State: tt.state, PreferredLifetime: tt.preferred, ValidLifetime: tt.valid, CLTT: testNow.Add(-tt.elapsed)}
			p, v := remainingLifetimes(&bd, testNow)
			if p != tt.wantPreferred || v != tt.wantV {
				t.Errorf("got %d/%d, want %d/%d", p, v, tt.wantPreferred, tt.wantV)
			}
		})
	}
}

func TestAppendClientDataBytes(t *testing.T) {
	bd := binding("2001:db8::1/128", []byte{0x00, 0x03, 0x00, 0x01, 0xaa, 0xbb}, "2001:db8::ff")
	got, err := appendClientData(nil, []store.Binding{bd}, view{cltTime: true}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{
		0x00, 0x2d, 0x00, 0x2e, // OPTION_CLIENT_DATA, option-len 46
		0x00, 0x01, 0x00, 0x06, // OPTION_CLIENTID, option-len 6
		0x00, 0x03, 0x00, 0x01, 0xaa, 0xbb, // DUID-LL, Ethernet, aa:bb
		0x00, 0x2e, 0x00, 0x04, // OPTION_CLT_TIME, option-len 4
		0x00, 0x00, 0x00, 0x64, // 100 seconds since the client was heard
		0x00, 0x05, 0x00, 0x18, // OPTION_IAADDR, option-len 24
		0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // 2001:db8::1
		0x00, 0x00, 0x0d, 0xac, // preferred-lifetime 3500
		0x00, 0x00, 0x1b, 0xbc, // valid-lifetime 7100
	}
	if !bytes.Equal(got, want) {
		t.Errorf("got  %x\nwant %x", got, want)
	}
}

func TestAppendBindingsNoAllocs(t *testing.T) {
	group := []store.Binding{
		binding("2001:db8::1/128", duid(1), "2001:db8::ff"),
		binding("2001:db8:100::/56", duid(1), "2001:db8::ff"),
	}
	group[0].RelayMessage = relayForw(t, "2001:db8::ff", "fe80::1")
	h := replyHead{xid: 1, serverID: testServerDUID, clientID: requestorDUID, framed: true, baseTime: true}
	buf := make([]byte, 0, 4096)
	allocs := testing.AllocsPerRun(100, func() {
		b, err := h.appendBindings(buf[:0], false, group, view{relayData: true, cltTime: true}, testNow)
		if err != nil || len(b) == 0 {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("appendBindings allocates %v times per message, want 0", allocs)
	}
}

func BenchmarkAppendBindings(b *testing.B) {
	group := []store.Binding{binding("2001:db8::1/128", duid(1), "2001:db8::ff")}
	h := replyHead{xid: 1, serverID: testServerDUID, framed: true}
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		out, err := h.appendBindings(buf[:0], false, group, view{cltTime: true}, testNow)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(out)))
	}
}

func FuzzParseRequest(f *testing.F) {
	f.Add(leasequery(1, byLink("2001:db8:1::1")), true)
	f.Add(leasequery(2, byAddress("2001:db8::1"), oro(codec.OptLQBaseTime)), false)
	f.Add(leasequery(3, byClientID(duid(1), "::"), uint32Option(codec.OptLQStartTime, 5), uint32Option(codec.OptLQEndTime, 4)), true)
	f.Add([]byte{14, 0, 0, 1}, true)
	p := &policy{serverID: testServerDUID, served: []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")}}
	f.Fuzz(func(t *testing.T, raw []byte, tcp bool) {
		tr := transportUDP
		if tcp {
			tr = transportTCP
		}
		var r request
		v, serr := r.parse(raw, tr, p)
		switch v {
		case verdictAnswer:
			if serr != nil || r.clientID == nil || !r.query.QueryType.Known() {
				t.Fatalf("answer verdict with status %v, client %x, type %v", serr, r.clientID, r.query.QueryType)
			}
			if tr == transportUDP && r.query.QueryType.BulkOnly() {
				t.Fatalf("bulk-only %v accepted over UDP", r.query.QueryType)
			}
			if r.hasStart && r.hasEnd && r.start > r.end {
				t.Fatal("start after end accepted")
			}
		case verdictReject:
			if serr == nil {
				t.Fatal("reject verdict without status")
			}
			// The status must be encodable into a reply.
			h := replyHead{xid: r.xid, serverID: p.serverID, clientID: r.clientID, framed: tcp}
			if _, err := h.appendStatusReply(nil, testNow, serr); err != nil {
				t.Fatalf("status reply does not encode: %v", err)
			}
		case verdictDiscard:
			if tr == transportTCP {
				t.Fatal("TCP query discarded without an answer")
			}
		default:
			t.Fatalf("verdict %d", v)
		}
	})
}
