package store

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// fullBinding sets every field the value encoding carries.
func fullBinding() Binding {
	return Binding{
		Key:               Key{Type: TypeNA, Prefix: netip.MustParsePrefix("2001:db8::1/128")},
		ClientID:          []byte{0x00, 0x03, 0x00, 0x01, 0x00, 0x1e, 0xe6, 0xf7, 0x7d, 0x00},
		IAID:              0x01020304,
		PreferredLifetime: 3600,
		ValidLifetime:     7200,
		State:             StateActive,
		CLTT:              time.Unix(1700000000, 0).UTC(),
		LinkAddress:       netip.MustParseAddr("2001:db8:1::1"),
		RelayID:           []byte{0x00, 0x02, 0x00, 0x00, 0x9d, 0x10, 0x01},
		RemoteID:          []byte{0x00, 0x00, 0x0d, 0xe9, 'p', 'o', 'r', 't'},
		InterfaceID:       []byte("eth0"),
		RelayPeer:         netip.MustParseAddr("fe80::1"),
		RelayMessage:      []byte{12, 0, 0x20, 0x01},
		Source:            SourceKea,
		Seq:               42,
		ChangeTime:        time.Unix(1700000001, 500).UTC(),
	}
}

func TestValueFixture(t *testing.T) {
	b := Binding{
		Key:               Key{Type: TypeNA, Prefix: netip.MustParsePrefix("2001:db8::1/128")},
		ClientID:          []byte{0xaa, 0xbb, 0xcc},
		IAID:              7,
		PreferredLifetime: 100,
		ValidLifetime:     200,
		State:             StateReleased,
		LinkAddress:       netip.MustParseAddr("2001:db8::"),
		Source:            SourceKea,
		Seq:               5,
		ChangeTime:        time.Unix(0, 1000).UTC(),
	}
	want := bytes.Join([][]byte{
		{2},                                  // format version
		{0, 0, 0, 0, 0, 0, 0, 5},             // Seq
		{0, 0, 0, 0, 0, 0, 0x03, 0xe8},       // ChangeTime, ns
		{1},                                  // State released
		{0x01},                               // flags: link-address only
		{2},                                  // Source Kea
		{0, 0, 0, 7},                         // IAID
		{0, 0, 0, 100},                       // preferred lifetime
		{0, 0, 0, 200},                       // valid lifetime
		{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0}, // link-address, high half
		{0, 0, 0, 0, 0, 0, 0, 0},             // link-address, low half
		{3, 0xaa, 0xbb, 0xcc},                // client-id
		{0},                                  // relay-id
		{0},                                  // remote-id
		{0},                                  // interface-id
		{0},                                  // relay message
	}, nil)
	got := appendValue(nil, &b)
	if !bytes.Equal(got, want) {
		t.Fatalf("appendValue =\n%x, want\n%x", got, want)
	}

	var decoded Binding
	if err := decodeValue(want, &decoded); err != nil {
		t.Fatalf("decodeValue: %v", err)
	}
	decoded.Key = b.Key
	if !sameFields(decoded, b) || decoded.Seq != b.Seq || !decoded.ChangeTime.Equal(b.ChangeTime) {
		t.Errorf("decodeValue = %+v, want %+v", decoded, b)
	}
}

// TestValueVersion1 decodes a value written before bindings had a source:
// the same layout without the Source octet.
func TestValueVersion1(t *testing.T) {
	v1 := bytes.Join([][]byte{
		{1},                                  // format version
		{0, 0, 0, 0, 0, 0, 0, 5},             // Seq
		{0, 0, 0, 0, 0, 0, 0x03, 0xe8},       // ChangeTime, ns
		{0},                                  // State active
		{0x05},                               // flags: link-address, CLTT
		{0, 0, 0, 7},                         // IAID
		{0, 0, 0, 100},                       // preferred lifetime
		{0, 0, 0, 200},                       // valid lifetime
		{0, 0, 0, 0x18, 0xc7, 0x9c, 0x1e, 0}, // CLTT, ns
		{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0}, // link-address, high half
		{0, 0, 0, 0, 0, 0, 0, 0},             // link-address, low half
		{3, 0xaa, 0xbb, 0xcc},                // client-id
		{0},                                  // relay-id
		{0},                                  // remote-id
		{0},                                  // interface-id
		{0},                                  // relay message
	}, nil)
	want := Binding{
		Key:               Key{Type: TypeNA, Prefix: netip.MustParsePrefix("2001:db8::1/128")},
		ClientID:          []byte{0xaa, 0xbb, 0xcc},
		IAID:              7,
		PreferredLifetime: 100,
		ValidLifetime:     200,
		State:             StateActive,
		CLTT:              time.Unix(0, 0x18c79c1e00).UTC(),
		LinkAddress:       netip.MustParseAddr("2001:db8::"),
		Source:            SourceUnknown,
	}

	var got Binding
	if err := decodeValue(v1, &got); err != nil {
		t.Fatalf("decodeValue: %v", err)
	}
	got.Key = want.Key
	if !sameFields(got, want) || got.Seq != 5 || got.ChangeTime.UnixNano() != 1000 {
		t.Errorf("decodeValue = %+v, want %+v", got, want)
	}
	if again := appendValue(nil, &got); again[0] != valueVersion || sameState(again, v1) {
		t.Errorf("re-encoding a version 1 value = %x, want version %d, a different state than the version 1 value", again, valueVersion)
	}
	if err := decodeValue(v1[:valueFixedLenV1-1], &got); err == nil {
		t.Error("decodeValue of a version 1 header cut short succeeded")
	}
}

func TestValueRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		b    Binding
	}{
		{"every field", fullBinding()},
		{"minimal", Binding{Key: fullBinding().Key, ClientID: []byte{1}}},
		{"no link, zero CLTT, declined", with(fullBinding(), func(b *Binding) {
			b.LinkAddress, b.CLTT, b.State = netip.Addr{}, time.Time{}, StateDeclined
		})},
		{"CLTT at the Unix epoch", with(fullBinding(), func(b *Binding) { b.CLTT = time.Unix(0, 0).UTC() })},
		{"CLTT before 1970", with(fullBinding(), func(b *Binding) { b.CLTT = time.Unix(-5, 0).UTC() })},
		{"infinite lifetimes", with(fullBinding(), func(b *Binding) { b.PreferredLifetime, b.ValidLifetime = ^uint32(0), ^uint32(0) })},
		{"link ::", with(fullBinding(), func(b *Binding) { b.LinkAddress = netip.IPv6Unspecified() })},
		{"long relay message", with(fullBinding(), func(b *Binding) { b.RelayMessage = bytes.Repeat([]byte{7}, maxFieldLen) })},
		{"source ingest API", with(fullBinding(), func(b *Binding) { b.Source = SourceIngestAPI })},
		{"source unknown", with(fullBinding(), func(b *Binding) { b.Source = SourceUnknown })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc := appendValue(nil, &tt.b)
			var got Binding
			if err := decodeValue(enc, &got); err != nil {
				t.Fatalf("decodeValue: %v", err)
			}
			got.Key = tt.b.Key
			if !sameFields(got, tt.b) {
				t.Errorf("round trip = %+v, want %+v", got, tt.b)
			}
			if got.Source != tt.b.Source {
				t.Errorf("round trip Source = %v, want %v", got.Source, tt.b.Source)
			}
			if got.Seq != tt.b.Seq || got.ChangeTime.UnixNano() != tt.b.ChangeTime.UnixNano() {
				t.Errorf("round trip Seq, ChangeTime = %d, %s; want %d, %s", got.Seq, got.ChangeTime, tt.b.Seq, tt.b.ChangeTime)
			}
			if got.LinkAddress != tt.b.LinkAddress || got.RelayPeer != tt.b.RelayPeer {
				t.Errorf("round trip addresses = %s, %s; want %s, %s", got.LinkAddress, got.RelayPeer, tt.b.LinkAddress, tt.b.RelayPeer)
			}
			if !got.CLTT.Equal(tt.b.CLTT) || got.CLTT.IsZero() != tt.b.CLTT.IsZero() {
				t.Errorf("round trip CLTT = %s, want %s", got.CLTT, tt.b.CLTT)
			}
		})
	}
}

func TestDecodeValueDoesNotAlias(t *testing.T) {
	b := fullBinding()
	enc := appendValue(nil, &b)
	var got Binding
	if err := decodeValue(enc, &got); err != nil {
		t.Fatalf("decodeValue: %v", err)
	}
	clear(enc)
	if !bytes.Equal(got.ClientID, b.ClientID) || !bytes.Equal(got.RelayMessage, b.RelayMessage) {
		t.Error("decoded byte fields changed when the input was cleared")
	}
	got.ClientID = append(got.ClientID, 0xff)
	if !bytes.Equal(got.RelayID, b.RelayID) {
		t.Error("appending to ClientID overwrote RelayID")
	}
}

func TestDecodeValueRejects(t *testing.T) {
	valid := appendValue(nil, ptr(fullBinding()))
	minimal := appendValue(nil, &Binding{ClientID: []byte{1}})
	tests := []struct {
		name  string
		value []byte
	}{
		{"empty", nil},
		{"header cut", valid[:valueFixedLen-1]},
		{"version 0", edit(valid, func(v []byte) { v[0] = 0 })},
		{"version 3", edit(valid, func(v []byte) { v[0] = 3 })},
		{"source 3", edit(valid, func(v []byte) { v[19] = 3 })},
		{"state 4", edit(valid, func(v []byte) { v[17] = 4 })},
		{"unknown flag", edit(valid, func(v []byte) { v[18] |= 0x08 })},
		{"CLTT cut", valid[:valueFixedLen+4]},
		{"link-address cut", valid[:valueFixedLen+8+10]},
		{"relay peer cut", valid[:valueFixedLen+8+16+10]},
		{"client-id length beyond end", edit(minimal, func(v []byte) { v[valueFixedLen] = 9 })},
		{"no byte fields", minimal[:valueFixedLen]},
		{"trailing byte", append(append([]byte(nil), valid...), 0)},
		{"non-minimal length", append(append(append([]byte(nil), minimal[:valueFixedLen]...), 0x81, 0x00, 1), 0, 0, 0, 0)},
		{"length over the field cap", append(binary.AppendUvarint(append([]byte(nil), minimal[:valueFixedLen]...), maxFieldLen+1), make([]byte, maxFieldLen+5)...)},
		{"length overflows uvarint", append(append([]byte(nil), minimal[:valueFixedLen]...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b Binding
			if err := decodeValue(tt.value, &b); err == nil {
				t.Errorf("decodeValue(%x) succeeded, want an error", tt.value)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func edit(v []byte, fn func([]byte)) []byte {
	out := append([]byte(nil), v...)
	fn(out)
	return out
}

func TestSameState(t *testing.T) {
	a := fullBinding()
	b := with(a, func(b *Binding) { b.Seq, b.ChangeTime = 99, b.ChangeTime.Add(time.Hour) })
	c := with(a, func(b *Binding) { b.ValidLifetime++ })
	d := with(a, func(b *Binding) { b.Source = SourceIngestAPI })
	ea, eb, ec, ed := appendValue(nil, &a), appendValue(nil, &b), appendValue(nil, &c), appendValue(nil, &d)
	if !sameState(ea, eb) {
		t.Error("sameState = false for values differing only in Seq and ChangeTime")
	}
	if sameState(ea, ec) {
		t.Error("sameState = true for values with different valid lifetimes")
	}
	if sameState(ea, ed) {
		t.Error("sameState = true for values with different sources")
	}
}

// FuzzDecodeValue checks that decodeValue never panics, and that every
// value it accepts re-encodes to the same bytes (the encoding is canonical,
// which Apply's repeated-state check relies on).
func FuzzDecodeValue(f *testing.F) {
	f.Add(appendValue(nil, ptr(fullBinding())))
	f.Add(appendValue(nil, &Binding{ClientID: []byte{1}}))
	f.Add(appendValue(nil, ptr(with(fullBinding(), func(b *Binding) { b.CLTT, b.LinkAddress = time.Time{}, netip.Addr{} }))))
	f.Add([]byte{1})
	v1 := appendValue(nil, ptr(fullBinding()))
	f.Add(slices.Concat([]byte{valueVersion1}, v1[1:19], v1[20:]))
	f.Fuzz(func(t *testing.T, value []byte) {
		var b Binding
		if err := decodeValue(value, &b); err != nil {
			return
		}
		again := appendValue(nil, &b)
		if value[0] == valueVersion1 {
			// Version 1 values are re-encoded as version 2, one octet
			// longer: the Source octet goes in after the flags.
			value = slices.Concat([]byte{valueVersion}, value[1:19], []byte{byte(SourceUnknown)}, value[19:])
		}
		if !bytes.Equal(again, value) {
			t.Fatalf("re-encoding changed the value:\n in %x\nout %x", value, again)
		}
		var b2 Binding
		if err := decodeValue(again, &b2); err != nil {
			t.Fatalf("decoding the re-encoded value: %v", err)
		}
		if !bytes.Equal(appendValue(nil, &b2), again) {
			t.Fatal("decode-encode-decode is not stable")
		}
	})
}

func TestBindingClone(t *testing.T) {
	b := Binding{
		ClientID:     []byte{1},
		RelayID:      []byte{2},
		RemoteID:     []byte{3},
		InterfaceID:  []byte{4},
		RelayMessage: []byte{5},
	}
	c := b.Clone()
	for _, s := range [][]byte{b.ClientID, b.RelayID, b.RemoteID, b.InterfaceID, b.RelayMessage} {
		s[0] = 0xff
	}
	for name, got := range map[string][]byte{"ClientID": c.ClientID, "RelayID": c.RelayID, "RemoteID": c.RemoteID, "InterfaceID": c.InterfaceID, "RelayMessage": c.RelayMessage} {
		if got[0] == 0xff {
			t.Errorf("the clone's %s changed with the original", name)
		}
	}
}
