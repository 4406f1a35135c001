package mirror

import (
	"bytes"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/requestor"
)

func sampleRecord() Record {
	now := time.Unix(1_800_000_000, 123)
	return Record{
		BindingKey:        BindingKey{Type: requestor.TypePD, Prefix: netip.MustParsePrefix("2001:db8:100:1200::/56")},
		ClientID:          []byte{0, 3, 0, 1, 0, 0, 0x5e, 0, 0x53, 1},
		IAID:              7,
		HasIAID:           true,
		State:             requestor.StateActive,
		PreferredLifetime: 1800,
		ValidLifetime:     3600,
		PreferredUntil:    now.Add(30 * time.Minute),
		ValidUntil:        now.Add(time.Hour),
		CLTTime:           60,
		HasCLTTime:        true,
		LastTransaction:   now.Add(-time.Minute),
		BaseTime:          820540800,
		HasBaseTime:       true,
		AsOf:              820540790,
		Source:            requestor.SourceActive,
		Received:          now,
		LinkAddress:       netip.MustParseAddr("2001:db8:1::1"),
		RelayID:           []byte{0, 2, 0, 0, 0x7e, 0xd9, 'r'},
		RemoteID:          []byte{0, 0, 0x7e, 0xd9, 'p'},
		InterfaceID:       []byte("ge-0/0/1"),
		RelayPeer:         netip.MustParseAddr("2001:db8:1::2"),
		RelayMessage:      []byte{12, 0, 1, 2},
	}
}

func TestRecordRoundTrip(t *testing.T) {
	for _, r := range []Record{sampleRecord(), {BindingKey: BindingKey{Type: requestor.TypeNA, Prefix: netip.MustParsePrefix("2001:db8::1/128")}, State: requestor.StateEnded}} {
		key := r.appendKey(nil)
		k, err := parseBindingKey(key)
		if err != nil || k != r.BindingKey {
			t.Fatalf("key round trip = %v, %v; want %v", k, err, r.BindingKey)
		}
		got := Record{BindingKey: k}
		if err := got.decodeValue(r.appendValue(nil)); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, normalize(r)) {
			t.Errorf("round trip\n%+v\nwant\n%+v", got, normalize(r))
		}
	}
}

// normalize drops what encoding cannot keep: the monotonic clock reading
// and the location of times.
func normalize(r Record) Record {
	for _, t := range []*time.Time{&r.PreferredUntil, &r.ValidUntil, &r.LastTransaction, &r.Received} {
		if !t.IsZero() {
			*t = time.Unix(0, t.UnixNano())
		}
	}
	return r
}

func TestRecordDecodeRejectsDamage(t *testing.T) {
	r := sampleRecord()
	v := r.appendValue(nil)
	for _, bad := range [][]byte{
		nil,
		v[:recordFixedLen-1],
		append([]byte{9}, v[1:]...), // unknown version
		append(v[:1:1], append([]byte{byte(requestor.TypeNA)}, v[2:]...)...), // type differs from the key
		append(append([]byte(nil), v...), 0),                                 // trailing octet
		v[:len(v)-1],                                                         // last field cut short
	} {
		got := Record{BindingKey: r.BindingKey}
		if err := got.decodeValue(bad); err == nil {
			t.Errorf("decodeValue(% x) succeeded, want ErrCorrupt", bad)
		}
	}
	if _, err := parseBindingKey([]byte{kindBinding, 1}); err == nil {
		t.Error("short binding key decoded")
	}
	if _, err := decodeCheckpoint([]byte{2, 0, 0, 0, 0}); err == nil {
		t.Error("checkpoint with flag 2 decoded")
	}
}

// TestRecordDecodeVersion1 reads a value written before AsOf existed: the
// same layout without as-of, which then equals the base-time.
func TestRecordDecodeVersion1(t *testing.T) {
	r := sampleRecord()
	v := r.appendValue(nil)
	asOf := 5 + 5*4
	v1 := append([]byte{1}, v[1:asOf]...)
	v1 = append(v1, v[asOf+4:]...)
	got := Record{BindingKey: r.BindingKey}
	if err := got.decodeValue(v1); err != nil {
		t.Fatal(err)
	}
	want := normalize(r)
	want.AsOf = want.BaseTime
	if !reflect.DeepEqual(got, want) {
		t.Errorf("version 1 decode\n%+v\nwant\n%+v", got, want)
	}
	if err := got.decodeValue(v1[:recordFixedLenV1-1]); err == nil {
		t.Error("short version 1 value decoded")
	}
}

func TestCheckpointRoundTrip(t *testing.T) {
	for _, c := range []requestor.Checkpoint{{}, {StartTime: 820540800, Valid: true}, {StartTime: 0, Valid: true}} {
		got, err := decodeCheckpoint(encodeCheckpoint(c))
		if err != nil || got != c {
			t.Errorf("round trip of %+v = %+v, %v", c, got, err)
		}
	}
}

func TestSupersedes(t *testing.T) {
	rec := func(base uint32, source requestor.Source) *Record {
		return &Record{BaseTime: base, AsOf: base, HasBaseTime: true, Source: source}
	}
	// bulk is a record from a late message of a bulk that began at asOf.
	bulk := func(base, asOf uint32) *Record {
		return &Record{BaseTime: base, AsOf: asOf, HasBaseTime: true, Source: requestor.SourceRecovery}
	}
	// read is an active record without base-time, read at received.
	read := func(received time.Time) *Record {
		return &Record{Source: requestor.SourceActive, Received: received}
	}
	bulkStart := time.Unix(1_800_000_000, 0)
	tests := []struct {
		name      string
		newer     *Record
		old       *Record
		bulkStart time.Time
		replaces  bool
	}{
		{"later base-time", rec(101, requestor.SourceRecovery), rec(100, requestor.SourceActive), time.Time{}, true},
		{"earlier base-time", rec(99, requestor.SourceActive), rec(100, requestor.SourceRecovery), time.Time{}, false},
		{"tie, active over bulk", rec(100, requestor.SourceActive), rec(100, requestor.SourceInitial), time.Time{}, true},
		{"tie, bulk under active", rec(100, requestor.SourceRecovery), rec(100, requestor.SourceActive), time.Time{}, false},
		{"tie, active after active", rec(100, requestor.SourceActive), rec(100, requestor.SourceActive), time.Time{}, true},
		{"tie, bulk after bulk", rec(100, requestor.SourceInitial), rec(100, requestor.SourceInitial), time.Time{}, true},
		{"across the 2136 wrap", rec(5, requestor.SourceActive), rec(0xfffffff0, requestor.SourceActive), time.Time{}, true},
		{"no base-time", &Record{Source: requestor.SourceRecovery}, rec(100, requestor.SourceActive), time.Time{}, true},
		{"late bulk message, bulk began before", bulk(110, 99), rec(100, requestor.SourceActive), time.Time{}, false},
		{"late bulk message, bulk began at the same time", bulk(110, 100), rec(100, requestor.SourceActive), time.Time{}, false},
		{"late bulk message, bulk began after", bulk(110, 101), rec(100, requestor.SourceActive), time.Time{}, true},
		{"active after a late bulk message", rec(105, requestor.SourceActive), bulk(110, 100), time.Time{}, true},
		{"no base-time, active read after the bulk started", &Record{Source: requestor.SourceRecovery}, read(bulkStart.Add(time.Millisecond)), bulkStart, false},
		{"no base-time, active read as the bulk started", &Record{Source: requestor.SourceInitial}, read(bulkStart), bulkStart, false},
		{"no base-time, active read before the bulk started", &Record{Source: requestor.SourceRecovery}, read(bulkStart.Add(-time.Millisecond)), bulkStart, true},
		{"no base-time, bulk over bulk", &Record{Source: requestor.SourceRecovery}, &Record{Source: requestor.SourceRecovery, Received: bulkStart.Add(time.Millisecond)}, bulkStart, true},
		{"no base-time, active over active", read(bulkStart.Add(2 * time.Millisecond)), read(bulkStart.Add(time.Millisecond)), bulkStart, true},
		{"bulk with base-time, active without", rec(110, requestor.SourceRecovery), read(bulkStart.Add(time.Millisecond)), bulkStart, false},
	}
	for _, tc := range tests {
		if got := tc.newer.supersedes(tc.old, tc.bulkStart); got != tc.replaces {
			t.Errorf("%s: supersedes = %v, want %v", tc.name, got, tc.replaces)
		}
	}
}

func FuzzRecordDecode(f *testing.F) {
	r := sampleRecord()
	f.Add(r.appendValue(nil))
	f.Add([]byte{1, 3})
	f.Fuzz(func(t *testing.T, v []byte) {
		got := Record{BindingKey: r.BindingKey}
		if got.decodeValue(v) != nil {
			return
		}
		again := Record{BindingKey: r.BindingKey}
		if err := again.decodeValue(got.appendValue(nil)); err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if !bytes.Equal(again.appendValue(nil), got.appendValue(nil)) {
			t.Fatal("decode-encode-decode changed the record")
		}
	})
}

func TestMayMatch(t *testing.T) {
	relayed := sampleRecord() // relay data on 2001:db8:1::1, relay-id "r", remote-id "p"
	direct := sampleRecord()
	direct.RelayMessage, direct.LinkAddress, direct.RelayID, direct.RemoteID = nil, netip.Addr{}, nil, nil
	link := func(a string) requestor.Query {
		return requestor.Query{Type: codec.QueryByLinkAddress, Link: netip.MustParseAddr(a)}
	}
	relayID := func(id []byte, on string) requestor.Query {
		q := requestor.Query{Type: codec.QueryByRelayID, RelayID: id}
		if on != "" {
			q.Link = netip.MustParseAddr(on)
		}
		return q
	}
	tests := []struct {
		name string
		r    *Record
		q    requestor.Query
		want bool
	}{
		{"link of the relay data", &relayed, link("2001:db8:1::1"), true},
		{"other link", &relayed, link("2001:db8:2::1"), false},
		{"link :: against a known link", &relayed, link("::"), false},
		{"link unknown without relay data", &direct, link("2001:db8:2::1"), true},
		{"relay-id matches", &relayed, relayID(relayed.RelayID, ""), true},
		{"relay-id differs", &relayed, relayID([]byte{0, 2, 0, 0, 0x7e, 0xd9, 'x'}, ""), false},
		{"relay-id on another link", &relayed, relayID(relayed.RelayID, "2001:db8:2::1"), false},
		{"relay-id unknown without relay data", &direct, relayID([]byte{0, 2, 0, 0, 0x7e, 0xd9, 'x'}, ""), true},
		{"remote-id matches", &relayed, requestor.Query{Type: codec.QueryByRemoteID, RemoteID: codec.RemoteID{EnterpriseNumber: 0x7ed9, ID: []byte("p")}}, true},
		{"remote-id differs", &relayed, requestor.Query{Type: codec.QueryByRemoteID, RemoteID: codec.RemoteID{EnterpriseNumber: 0x7ed9, ID: []byte("q")}}, false},
		{"client-id matches", &direct, requestor.Query{Type: codec.QueryByClientID, ClientID: direct.ClientID}, true},
		{"client-id differs", &direct, requestor.Query{Type: codec.QueryByClientID, ClientID: []byte{0, 3, 0, 1, 0, 0, 0x5e, 0, 0x53, 9}}, false},
		{"address in the prefix", &direct, requestor.Query{Type: codec.QueryByAddress, Address: netip.MustParseAddr("2001:db8:100:1234::1")}, true},
		{"address outside the prefix", &direct, requestor.Query{Type: codec.QueryByAddress, Address: netip.MustParseAddr("2001:db8:200::1")}, false},
	}
	for _, tc := range tests {
		if got := mayMatch(tc.r, &tc.q); got != tc.want {
			t.Errorf("%s: mayMatch = %v, want %v", tc.name, got, tc.want)
		}
	}
}
