package store

import (
	"bytes"
	"math"
	"net/netip"
	"testing"
)

func TestBKeyRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		key  Key
	}{
		{"IA_NA", Key{Type: TypeNA, Prefix: netip.MustParsePrefix("2001:db8::1/128")}},
		{"IA_TA", Key{Type: TypeTA, Prefix: netip.MustParsePrefix("fd00::1/128")}},
		{"IA_PD /56", Key{Type: TypePD, Prefix: netip.MustParsePrefix("2001:db8:ff00::/56")}},
		{"IA_PD /128", Key{Type: TypePD, Prefix: netip.MustParsePrefix("2001:db8::5/128")}},
		{"IA_PD /1", Key{Type: TypePD, Prefix: netip.MustParsePrefix("8000::/1")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bk := encodeBKey(tt.key)
			got, err := decodeBKey(bk[:])
			if err != nil {
				t.Fatalf("decodeBKey(%x): %v", bk, err)
			}
			if got != tt.key {
				t.Errorf("decodeBKey(encodeBKey(%v)) = %v", tt.key, got)
			}
		})
	}
}

func TestBKeyFixture(t *testing.T) {
	bk := encodeBKey(Key{Type: TypePD, Prefix: netip.MustParsePrefix("2001:db8:ff00::/56")})
	want := []byte{
		0x02,                                           // type IA_PD
		0x20, 0x01, 0x0d, 0xb8, 0xff, 0x00, 0x00, 0x00, // prefix, high half
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // prefix, low half
		56, // prefix length
	}
	if !bytes.Equal(bk[:], want) {
		t.Errorf("encodeBKey = %x, want %x", bk, want)
	}
}

func TestDecodeBKeyRejects(t *testing.T) {
	valid := encodeBKey(Key{Type: TypePD, Prefix: netip.MustParsePrefix("2001:db8:ff00::/56")})
	tests := []struct {
		name string
		edit func(b []byte) []byte
	}{
		{"short", func(b []byte) []byte { return b[:17] }},
		{"unknown type", func(b []byte) []byte { b[0] = 3; return b }},
		{"length 129", func(b []byte) []byte { b[17] = 129; return b }},
		{"host bits set", func(b []byte) []byte { b[16] = 1; return b }},
		{"IA_NA not /128", func(b []byte) []byte { b[0] = byte(TypeNA); return b }},
		{"IA_PD length 0", func(b []byte) []byte { clear(b[1:]); return b }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.edit(append([]byte(nil), valid[:]...))
			if k, err := decodeBKey(b); err == nil {
				t.Errorf("decodeBKey(%x) = %v, want an error", b, k)
			}
		})
	}
}

func TestIndexKeyFixtures(t *testing.T) {
	bk := encodeBKey(Key{Type: TypeNA, Prefix: netip.MustParsePrefix("2001:db8::1/128")})
	link := netip.MustParseAddr("2001:db8:1::1")
	l := link.As16()

	tests := []struct {
		name string
		got  []byte
		want [][]byte // concatenated
	}{
		{"history", appendHistoryKey(nil, 0x0102, &bk), [][]byte{
			{'h'},                          // keyspace
			{0, 0, 0, 0, 0, 0, 0x01, 0x02}, // seq 258
			bk[:],                          // binding key
		}},
		{"client", appendIDKey(nil, prefixClient, []byte{0, 3, 0xaa}, link, &bk), [][]byte{
			{'d'},        // keyspace
			{0, 3},       // DUID length
			{0, 3, 0xaa}, // DUID
			l[:],         // link-address
			bk[:],        // binding key
		}},
		{"link without address", appendLinkKey(nil, netip.Addr{}, &bk), [][]byte{
			{'l'},            // keyspace
			make([]byte, 16), // :: for a missing link-address
			bk[:],            // binding key
		}},
		{"time", timeKey(1), [][]byte{
			{'t'},                          // keyspace
			{0x80, 0, 0, 0, 0, 0, 0, 0x01}, // second 1, sign bit flipped
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := bytes.Join(tt.want, nil)
			if !bytes.Equal(tt.got, want) {
				t.Errorf("key = %x, want %x", tt.got, want)
			}
		})
	}
}

func TestIndexKeyDecode(t *testing.T) {
	bk := encodeBKey(Key{Type: TypeNA, Prefix: netip.MustParsePrefix("2001:db8::1/128")})
	link := netip.MustParseAddr("2001:db8:1::1")

	seq, gotBK, err := decodeHistoryKey(appendHistoryKey(nil, 77, &bk))
	if err != nil || seq != 77 || gotBK != bk {
		t.Errorf("decodeHistoryKey = %d, %x, %v; want 77, %x", seq, gotBK, err, bk)
	}

	id, gotLink, gotBK, err := decodeIDKey(appendIDKey(nil, prefixRelayID, []byte("relay"), link, &bk))
	if err != nil || string(id) != "relay" || gotLink != link.As16() || gotBK != bk {
		t.Errorf("decodeIDKey = %q, %x, %x, %v", id, gotLink, gotBK, err)
	}

	gotBK, err = indexKeyBKey(indexLink, appendLinkKey(nil, link, &bk))
	if err != nil || gotBK != bk {
		t.Errorf("indexKeyBKey(link) = %x, %v", gotBK, err)
	}

	for _, sec := range []int64{math.MinInt64, -1, 0, 1, 1 << 40, math.MaxInt64} {
		got, err := decodeTimeKey(timeKey(sec))
		if err != nil || got != sec {
			t.Errorf("decodeTimeKey(timeKey(%d)) = %d, %v", sec, got, err)
		}
	}
}

func TestIndexKeyDecodeRejects(t *testing.T) {
	bk := encodeBKey(Key{Type: TypeNA, Prefix: netip.MustParsePrefix("2001:db8::1/128")})
	idKey := appendIDKey(nil, prefixClient, []byte("duid"), netip.Addr{}, &bk)
	tests := []struct {
		name string
		fn   func() error
	}{
		{"history key short", func() error { _, _, err := decodeHistoryKey(appendHistoryKey(nil, 1, &bk)[:20]); return err }},
		{"id key short", func() error { _, _, _, err := decodeIDKey(idKey[:len(idKey)-1]); return err }},
		{"id key length too large", func() error {
			k := append([]byte(nil), idKey...)
			k[2]++
			_, _, _, err := decodeIDKey(k)
			return err
		}},
		{"id key header only", func() error { _, _, _, err := decodeIDKey([]byte{'d', 0}); return err }},
		{"link key long", func() error {
			_, err := indexKeyBKey(indexLink, append(appendLinkKey(nil, netip.Addr{}, &bk), 0))
			return err
		}},
		{"time key short", func() error { _, err := decodeTimeKey([]byte{'t', 0}); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.fn(); err == nil {
				t.Error("decode succeeded, want an error")
			}
		})
	}
}

func TestTimeKeyOrder(t *testing.T) {
	secs := []int64{math.MinInt64, -86400, -1, 0, 1, 946684800, math.MaxInt64}
	for i := 1; i < len(secs); i++ {
		if bytes.Compare(timeKey(secs[i-1]), timeKey(secs[i])) >= 0 {
			t.Errorf("timeKey(%d) does not sort before timeKey(%d)", secs[i-1], secs[i])
		}
	}
}

func TestPrefixEnd(t *testing.T) {
	tests := []struct {
		in, want []byte
	}{
		{[]byte("b"), []byte("c")},
		{[]byte{'d', 0x00, 0xff}, []byte{'d', 0x01}},
		{[]byte{'x', 0xff, 0xff}, []byte{'y'}},
		{[]byte{0xff, 0xff}, nil},
	}
	for _, tt := range tests {
		if got := prefixEnd(tt.in); !bytes.Equal(got, tt.want) {
			t.Errorf("prefixEnd(%x) = %x, want %x", tt.in, got, tt.want)
		}
	}
}
