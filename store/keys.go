package store

import (
	"encoding/binary"
	"fmt"
	"math"
	"net/netip"
)

// Key layout. Every key starts with one prefix byte naming its keyspace.
// Numbers are big-endian and fixed width, so byte order is numeric order.
// A "bkey" is the 18-byte binding key:
//
//	bkey         type:1 | address or prefix:16 | prefix length:1
//
// Keyspaces (value after the arrow):
//
//	binding      'b' | bkey                                    -> binding value (value.go)
//	history      'h' | seq:8 | bkey                            -> empty
//	time index   't' | second:8                                -> first seq in that second:8
//	client       'd' | len:2 | client DUID | link:16 | bkey    -> empty
//	relay-id     'r' | len:2 | relay-id | link:16 | bkey       -> empty
//	remote-id    'e' | len:2 | remote-id | link:16 | bkey      -> empty
//	link-address 'l' | link:16 | bkey                          -> empty
//	PD lengths   'p' | prefix length:1                         -> count of IA_PD bindings:8
//	internal     'i' | name                                    -> see the internal* names
//	metadata     'm' | name                                    -> caller bytes (Apply, Meta)
//
// The binding keyspace doubles as the address index. IA_NA and IA_TA keys
// are exact addresses and IA_PD keys sort by prefix, so finding the IA_PD
// binding that contains an address takes one point lookup per prefix length
// in use. The 'p' counts record which lengths are in use.
//
// A missing link-address is stored as :: in index keys. The second in the
// time index is Unix seconds with the sign bit flipped, so negative times
// still sort first.
const (
	prefixBinding  = 'b'
	prefixHistory  = 'h'
	prefixTime     = 't'
	prefixClient   = 'd'
	prefixRelayID  = 'r'
	prefixRemoteID = 'e'
	prefixLink     = 'l'
	prefixPDLength = 'p'
	prefixInternal = 'i'
	prefixMeta     = 'm'
)

const (
	bkeyLen        = 18
	bindingKeyLen  = 1 + bkeyLen
	historyKeyLen  = 1 + 8 + bkeyLen
	timeKeyLen     = 1 + 8
	linkKeyLen     = 1 + 16 + bkeyLen
	pdLengthKeyLen = 2

	// maxIDLen is the longest client DUID, relay-id or remote-id an index
	// key can carry, because its length field is two bytes.
	maxIDLen = math.MaxUint16
)

// Internal record names under prefixInternal.
const (
	internalLayout = "layout" // uint32 layout version
	internalDUID   = "duid"   // server DUID
	internalSeq    = "seq"    // last seq:8 | last change time, Unix ns:8
	internalFloor  = "floor"  // floor time, Unix ns:8 | floor seq:8
)

// layoutVersion is the version of this key layout and value encoding. Open
// rejects a store written with any other version, except that it upgrades a
// store of layoutVersion1 in place: that layout differs only in holding
// version 1 binding values, which still decode. The record is rewritten so
// that an older alqd refuses the store instead of misreading its values.
const (
	layoutVersion  = 2
	layoutVersion1 = 1
)

// bkey is a binding key in its encoded form; it is comparable, so it can key
// maps.
type bkey [bkeyLen]byte

// encodeBKey returns the binding key of k. k must be valid (validateKey).
func encodeBKey(k Key) bkey {
	var out bkey
	out[0] = byte(k.Type)
	addr := k.Prefix.Addr().As16()
	copy(out[1:17], addr[:])
	out[17] = byte(k.Prefix.Bits())
	return out
}

// decodeBKey parses a binding key and checks that it names a valid binding
// (known type, masked prefix, /128 for addresses).
func decodeBKey(b []byte) (Key, error) {
	if len(b) != bkeyLen {
		return Key{}, fmt.Errorf("binding key is %d bytes, want %d", len(b), bkeyLen)
	}
	addr := netip.AddrFrom16([16]byte(b[1:17]))
	prefix, err := addr.Prefix(int(b[17]))
	if err != nil {
		return Key{}, fmt.Errorf("binding key prefix length %d: %w", b[17], err)
	}
	k := Key{Type: BindingType(b[0]), Prefix: netip.PrefixFrom(addr, int(b[17]))}
	if prefix != k.Prefix {
		return Key{}, fmt.Errorf("binding key prefix %s has host bits set", k.Prefix)
	}
	if err := validateKey(k); err != nil {
		return Key{}, err
	}
	return k, nil
}

func appendBindingKey(dst []byte, bk *bkey) []byte {
	dst = append(dst, prefixBinding)
	return append(dst, bk[:]...)
}

func appendHistoryKey(dst []byte, seq uint64, bk *bkey) []byte {
	dst = append(dst, prefixHistory)
	dst = binary.BigEndian.AppendUint64(dst, seq)
	return append(dst, bk[:]...)
}

// historySeqKey returns the smallest history key with sequence number seq.
func historySeqKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefixHistory}, seq)
}

func decodeHistoryKey(key []byte) (seq uint64, bk bkey, err error) {
	if len(key) != historyKeyLen || key[0] != prefixHistory {
		return 0, bk, fmt.Errorf("history key is %d bytes, want %d", len(key), historyKeyLen)
	}
	copy(bk[:], key[9:])
	return binary.BigEndian.Uint64(key[1:9]), bk, nil
}

// timeKey returns the time-index key of the Unix second sec.
func timeKey(sec int64) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefixTime}, uint64(sec)^(1<<63))
}

func decodeTimeKey(key []byte) (int64, error) {
	if len(key) != timeKeyLen || key[0] != prefixTime {
		return 0, fmt.Errorf("time index key is %d bytes, want %d", len(key), timeKeyLen)
	}
	return int64(binary.BigEndian.Uint64(key[1:]) ^ (1 << 63)), nil
}

// linkBytes returns the 16 bytes that stand for link in index keys: the
// address, or :: when link is invalid.
func linkBytes(link netip.Addr) [16]byte {
	if !link.IsValid() {
		return [16]byte{}
	}
	return link.As16()
}

// appendIDPrefix appends the part of a client, relay-id or remote-id index
// key that selects every binding carrying id: prefix | len | id.
func appendIDPrefix(dst []byte, prefix byte, id []byte) []byte {
	dst = append(dst, prefix)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(id)))
	return append(dst, id...)
}

func appendIDKey(dst []byte, prefix byte, id []byte, link netip.Addr, bk *bkey) []byte {
	dst = appendIDPrefix(dst, prefix, id)
	l := linkBytes(link)
	dst = append(dst, l[:]...)
	return append(dst, bk[:]...)
}

// decodeIDKey splits a client, relay-id or remote-id index key.
func decodeIDKey(key []byte) (id []byte, link [16]byte, bk bkey, err error) {
	if len(key) < 3 {
		return nil, link, bk, fmt.Errorf("index key is %d bytes, shorter than its header", len(key))
	}
	n := int(binary.BigEndian.Uint16(key[1:3]))
	if len(key) != 3+n+16+bkeyLen {
		return nil, link, bk, fmt.Errorf("index key is %d bytes, want %d for a %d-byte id", len(key), 3+n+16+bkeyLen, n)
	}
	id = key[3 : 3+n]
	copy(link[:], key[3+n:3+n+16])
	copy(bk[:], key[3+n+16:])
	return id, link, bk, nil
}

func appendLinkPrefix(dst []byte, link netip.Addr) []byte {
	l := linkBytes(link)
	dst = append(dst, prefixLink)
	return append(dst, l[:]...)
}

func appendLinkKey(dst []byte, link netip.Addr, bk *bkey) []byte {
	dst = appendLinkPrefix(dst, link)
	return append(dst, bk[:]...)
}

func pdLengthKey(bits int) []byte { return []byte{prefixPDLength, byte(bits)} }

func internalKey(name string) []byte { return append([]byte{prefixInternal}, name...) }

func metaKey(name string) []byte { return append([]byte{prefixMeta}, name...) }

// prefixEnd returns the smallest key greater than every key starting with
// prefix, or nil when there is none (prefix is all 0xff).
func prefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}

// indexKind names a secondary index; the history index is handled apart
// because its key depends on Seq.
type indexKind uint8

const (
	indexClient indexKind = iota
	indexRelayID
	indexRemoteID
	indexLink
	indexKinds
)

func (k indexKind) prefix() byte {
	return [...]byte{prefixClient, prefixRelayID, prefixRemoteID, prefixLink}[k]
}

func (k indexKind) String() string {
	return [...]string{"client", "relay-id", "remote-id", "link-address"}[k]
}

// appendIndexKey appends b's key in the index kind and reports whether b
// has one: bindings without a relay-id or remote-id have no entry there.
func appendIndexKey(dst []byte, kind indexKind, bk *bkey, b *Binding) ([]byte, bool) {
	switch kind {
	case indexClient:
		return appendIDKey(dst, prefixClient, b.ClientID, b.LinkAddress, bk), true
	case indexRelayID:
		if len(b.RelayID) == 0 {
			return dst, false
		}
		return appendIDKey(dst, prefixRelayID, b.RelayID, b.LinkAddress, bk), true
	case indexRemoteID:
		if len(b.RemoteID) == 0 {
			return dst, false
		}
		return appendIDKey(dst, prefixRemoteID, b.RemoteID, b.LinkAddress, bk), true
	case indexLink:
		return appendLinkKey(dst, b.LinkAddress, bk), true
	}
	panic("store: unknown index kind")
}

// indexKeyBKey returns the binding key at the end of a secondary index key.
func indexKeyBKey(kind indexKind, key []byte) (bkey, error) {
	if kind == indexLink {
		var bk bkey
		if len(key) != linkKeyLen {
			return bk, fmt.Errorf("link-address index key is %d bytes, want %d", len(key), linkKeyLen)
		}
		copy(bk[:], key[17:])
		return bk, nil
	}
	_, _, bk, err := decodeIDKey(key)
	return bk, err
}
