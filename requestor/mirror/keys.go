package mirror

import (
	"fmt"
	"net/netip"

	"github.com/alqd/alqd/requestor"
)

// Key layout. Every key starts with a one-octet kind.
//
//	binding:  'b' | type (1) | address or prefix (16) | prefix-length (1)
//	          type is requestor.BindingType; an IA_NA or IA_TA address is
//	          stored with prefix-length 128. Keys sort by type, then
//	          address, so a scan lists addresses, then prefixes, in order.
//
//	seen:     's' | the binding key after its kind octet
//	          The value is empty. It marks a binding that arrived since a
//	          full recovery bulk started (see Mirror.sweep), and is cleared
//	          when one starts and when it ends.
//
//	metadata: 'm' | name (ASCII)
//	          m/checkpoint: valid (1) | start time (4, big-endian)
//	          m/server:     the server address the database follows
//	          m/format:     format version (1)
const (
	kindBinding = 'b'
	kindMeta    = 'm'
	kindSeen    = 's'

	bindingKeyLen = 1 + 1 + 16 + 1
	formatVersion = 1
)

var (
	keyCheckpoint = []byte("m/checkpoint")
	keyServer     = []byte("m/server")
	keyFormat     = []byte("m/format")

	bindingLower = []byte{kindBinding}
	bindingUpper = []byte{kindBinding + 1}
	seenLower    = []byte{kindSeen}
	seenUpper    = []byte{kindSeen + 1}
)

// BindingKey identifies one binding: its type and its address or prefix.
// The server keys its bindings the same way, so a new client on a reused
// address replaces the old binding.
type BindingKey struct {
	Type   requestor.BindingType
	Prefix netip.Prefix // an IA_NA or IA_TA address is a /128
}

// keyOf returns the key of a binding event.
func keyOf(b *requestor.Binding) BindingKey {
	if b.Type == requestor.TypePD {
		return BindingKey{Type: b.Type, Prefix: b.Prefix}
	}
	return BindingKey{Type: b.Type, Prefix: netip.PrefixFrom(b.Addr, 128)}
}

// appendKey appends the database key of k.
func (k BindingKey) appendKey(b []byte) []byte {
	a := k.Prefix.Addr().As16()
	b = append(b, kindBinding, byte(k.Type))
	b = append(b, a[:]...)
	return append(b, byte(k.Prefix.Bits()))
}

// appendSeenKey appends the seen marker of k.
func (k BindingKey) appendSeenKey(b []byte) []byte {
	start := len(b)
	b = k.appendKey(b)
	b[start] = kindSeen
	return b
}

// parseBindingKey decodes a binding key.
func parseBindingKey(b []byte) (BindingKey, error) {
	if len(b) != bindingKeyLen || b[0] != kindBinding {
		return BindingKey{}, fmt.Errorf("%w: binding key % x", ErrCorrupt, b)
	}
	bits := int(b[18])
	if bits > 128 {
		return BindingKey{}, fmt.Errorf("%w: binding key prefix-length %d", ErrCorrupt, bits)
	}
	addr := netip.AddrFrom16([16]byte(b[2:18]))
	return BindingKey{Type: requestor.BindingType(b[1]), Prefix: netip.PrefixFrom(addr, bits)}, nil
}

// encodeCheckpoint encodes the value of m/checkpoint.
func encodeCheckpoint(c requestor.Checkpoint) []byte {
	v := []byte{0, byte(c.StartTime >> 24), byte(c.StartTime >> 16), byte(c.StartTime >> 8), byte(c.StartTime)}
	if c.Valid {
		v[0] = 1
	}
	return v
}

// decodeCheckpoint decodes the value of m/checkpoint.
func decodeCheckpoint(v []byte) (requestor.Checkpoint, error) {
	if len(v) != 5 || v[0] > 1 {
		return requestor.Checkpoint{}, fmt.Errorf("%w: checkpoint % x", ErrCorrupt, v)
	}
	return requestor.Checkpoint{
		Valid:     v[0] == 1,
		StartTime: uint32(v[1])<<24 | uint32(v[2])<<16 | uint32(v[3])<<8 | uint32(v[4]),
	}, nil
}
