package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Binding value encoding, version 2. The binding key is not repeated: it is
// the Pebble key. Numbers are big-endian.
//
//	offset  size  field
//	0       1     format version (2)
//	1       8     Seq
//	9       8     ChangeTime, Unix nanoseconds
//	17      1     State
//	18      1     flags: bit 0 LinkAddress, bit 1 RelayPeer, bit 2 CLTT present
//	19      1     Source
//	20      4     IAID
//	24      4     PreferredLifetime
//	28      4     ValidLifetime
//	32      8     CLTT, Unix nanoseconds (only with flag bit 2)
//	        16    LinkAddress (only with flag bit 0)
//	        16    RelayPeer (only with flag bit 1)
//	then five byte strings, each a minimal uvarint length and the bytes:
//	ClientID, RelayID, RemoteID, InterfaceID, RelayMessage
//
// Version 1 is the same without the Source octet (IAID at offset 19); it
// still decodes, with Source set to SourceUnknown. Apply writes version 2
// only.
//
// Seq and ChangeTime come first so that two values of the same binding
// compare equal from valueStateOffset on exactly when every other field is
// equal; Apply relies on that to skip repeated states. A version 1 value
// never equals a version 2 value, so the first write of a binding stored by
// an older alqd always records its source.
const (
	valueVersion     = 2
	valueVersion1    = 1
	valueStateOffset = 17
	valueFixedLen    = 32
	valueFixedLenV1  = 31

	flagLinkAddress = 1 << 0
	flagRelayPeer   = 1 << 1
	flagCLTT        = 1 << 2
	flagsKnown      = flagLinkAddress | flagRelayPeer | flagCLTT

	// maxFieldLen caps every byte string of a binding. It is the largest
	// DHCPv6 option payload, and a RELAY-FORW chain travels in one UDP
	// datagram, so real data fits.
	maxFieldLen = 65535
)

// appendValue appends the encoding of b (without its key) to dst. b must be
// valid (validateBinding). hot path: once per change.
func appendValue(dst []byte, b *Binding) []byte {
	dst = append(dst, valueVersion)
	dst = binary.BigEndian.AppendUint64(dst, b.Seq)
	dst = binary.BigEndian.AppendUint64(dst, uint64(b.ChangeTime.UnixNano()))
	dst = append(dst, byte(b.State))

	var flags byte
	if b.LinkAddress.IsValid() {
		flags |= flagLinkAddress
	}
	if b.RelayPeer.IsValid() {
		flags |= flagRelayPeer
	}
	if !b.CLTT.IsZero() {
		flags |= flagCLTT
	}
	dst = append(dst, flags, byte(b.Source))
	dst = binary.BigEndian.AppendUint32(dst, b.IAID)
	dst = binary.BigEndian.AppendUint32(dst, b.PreferredLifetime)
	dst = binary.BigEndian.AppendUint32(dst, b.ValidLifetime)

	if flags&flagCLTT != 0 {
		dst = binary.BigEndian.AppendUint64(dst, uint64(b.CLTT.UnixNano()))
	}
	if flags&flagLinkAddress != 0 {
		a := b.LinkAddress.As16()
		dst = append(dst, a[:]...)
	}
	if flags&flagRelayPeer != 0 {
		a := b.RelayPeer.As16()
		dst = append(dst, a[:]...)
	}
	for _, field := range [...][]byte{b.ClientID, b.RelayID, b.RemoteID, b.InterfaceID, b.RelayMessage} {
		dst = binary.AppendUvarint(dst, uint64(len(field)))
		dst = append(dst, field...)
	}
	return dst
}

// decodeValue decodes a binding value into b, setting every field but Key.
// The byte slices of b are fresh copies that share one allocation; the
// result never aliases value. Errors name the field and offset but not the
// Pebble key, which the caller adds. hot path: once per scanned binding.
func decodeValue(value []byte, b *Binding) error {
	if len(value) == 0 {
		return errors.New("binding value is empty")
	}
	fixedLen := valueFixedLen
	switch value[0] {
	case valueVersion:
	case valueVersion1:
		fixedLen = valueFixedLenV1
	default:
		return fmt.Errorf("binding value has format version %d, want %d or %d", value[0], valueVersion1, valueVersion)
	}
	if len(value) < fixedLen {
		return fmt.Errorf("binding value is %d bytes, shorter than the %d-byte header of version %d", len(value), fixedLen, value[0])
	}

	// Fixed header.
	b.Seq = binary.BigEndian.Uint64(value[1:9])
	b.ChangeTime = time.Unix(0, int64(binary.BigEndian.Uint64(value[9:17]))).UTC()
	b.State = State(value[17])
	if b.State > StateDeclined {
		return fmt.Errorf("binding value has unknown state %d at offset 17", value[17])
	}
	flags := value[18]
	if flags&^flagsKnown != 0 {
		return fmt.Errorf("binding value has unknown flags %#02x at offset 18", flags)
	}
	off := 19
	b.Source = SourceUnknown
	if value[0] == valueVersion {
		b.Source = Source(value[19])
		if b.Source > maxSource {
			return fmt.Errorf("binding value has unknown source %d at offset 19", value[19])
		}
		off++
	}
	b.IAID = binary.BigEndian.Uint32(value[off:])
	b.PreferredLifetime = binary.BigEndian.Uint32(value[off+4:])
	b.ValidLifetime = binary.BigEndian.Uint32(value[off+8:])

	// Optional fixed-size fields.
	off = fixedLen
	b.CLTT = time.Time{}
	if flags&flagCLTT != 0 {
		if len(value) < off+8 {
			return fmt.Errorf("binding value ends at offset %d inside CLTT", len(value))
		}
		b.CLTT = time.Unix(0, int64(binary.BigEndian.Uint64(value[off:]))).UTC()
		off += 8
	}
	var err error
	if b.LinkAddress, off, err = decodeOptionalAddr(value, off, flags&flagLinkAddress != 0, "link-address"); err != nil {
		return err
	}
	if b.RelayPeer, off, err = decodeOptionalAddr(value, off, flags&flagRelayPeer != 0, "relay peer-address"); err != nil {
		return err
	}

	return decodeByteFields(value, off, b)
}

func decodeOptionalAddr(value []byte, off int, present bool, name string) (netip.Addr, int, error) {
	if !present {
		return netip.Addr{}, off, nil
	}
	if len(value) < off+16 {
		return netip.Addr{}, off, fmt.Errorf("binding value ends at offset %d inside the %s", len(value), name)
	}
	return netip.AddrFrom16([16]byte(value[off : off+16])), off + 16, nil
}

// decodeByteFields reads the five length-prefixed byte strings starting at
// off and checks that nothing follows them.
func decodeByteFields(value []byte, off int, b *Binding) error {
	var spans [5][2]int
	total := 0
	for i := range spans {
		n, size := binary.Uvarint(value[off:])
		if size <= 0 {
			return fmt.Errorf("binding value has an invalid length of %s at offset %d", byteFieldNames[i], off)
		}
		if size != uvarintLen(n) {
			return fmt.Errorf("binding value has a non-minimal length of %s at offset %d", byteFieldNames[i], off)
		}
		off += size
		if n > maxFieldLen || n > uint64(len(value)-off) {
			return fmt.Errorf("binding value declares %d bytes of %s at offset %d, but %d remain", n, byteFieldNames[i], off, len(value)-off)
		}
		spans[i] = [2]int{off, off + int(n)}
		off += int(n)
		total += int(n)
	}
	if off != len(value) {
		return fmt.Errorf("binding value has %d trailing bytes at offset %d", len(value)-off, off)
	}

	// One allocation backs all five fields; each is capped so appending to
	// one never overwrites the next.
	buf := make([]byte, 0, total)
	fields := [5]*[]byte{&b.ClientID, &b.RelayID, &b.RemoteID, &b.InterfaceID, &b.RelayMessage}
	for i, span := range spans {
		if span[0] == span[1] {
			*fields[i] = nil
			continue
		}
		start := len(buf)
		buf = append(buf, value[span[0]:span[1]]...)
		*fields[i] = buf[start:len(buf):len(buf)]
	}
	return nil
}

var byteFieldNames = [5]string{"client-id", "relay-id", "remote-id", "interface-id", "relay message"}

func uvarintLen(n uint64) int {
	size := 1
	for n >= 0x80 {
		n >>= 7
		size++
	}
	return size
}

// sameState reports whether two encoded values of one binding differ at
// most in Seq and ChangeTime.
func sameState(a, b []byte) bool {
	return len(a) >= valueStateOffset && len(b) >= valueStateOffset &&
		a[0] == b[0] && bytes.Equal(a[valueStateOffset:], b[valueStateOffset:])
}

// validateKey checks that k names a binding the store can hold.
func validateKey(k Key) error {
	if k.Type > TypePD {
		return fmt.Errorf("binding type %d is not IA_NA, IA_TA or IA_PD", k.Type)
	}
	if !k.Prefix.IsValid() {
		return errors.New("binding has no address or prefix")
	}
	addr := k.Prefix.Addr()
	if !addr.Is6() || addr.Zone() != "" {
		return fmt.Errorf("binding address %s is not an IPv6 address without zone", addr)
	}
	if k.Prefix.Masked() != k.Prefix {
		return fmt.Errorf("binding prefix %s has bits set beyond its length; use %s", k.Prefix, k.Prefix.Masked())
	}
	if k.Type != TypePD && k.Prefix.Bits() != 128 {
		return fmt.Errorf("%s binding %s must be a /128", k.Type, k.Prefix)
	}
	if k.Type == TypePD && k.Prefix.Bits() == 0 {
		return fmt.Errorf("IA_PD binding %s has prefix length 0", k.Prefix)
	}
	return nil
}

// validateNew checks what Apply demands of a new state beyond what the
// layout can store (validateBinding): a leasable address or prefix, a CLTT
// in range and a relay message of at most MaxRelayMessageLen octets. Verify does not apply these rules, so a store written
// before them still verifies.
func validateNew(b *Binding) error {
	if err := CheckLeasable(b.Prefix); err != nil {
		if b.Type == TypePD {
			return fmt.Errorf("prefix %w", err)
		}
		return fmt.Errorf("address %w", err)
	}
	if err := CheckCLTT(b.CLTT); err != nil {
		return fmt.Errorf("binding %s: %w", b.Prefix, err)
	}
	if len(b.RelayMessage) > MaxRelayMessageLen {
		return fmt.Errorf("binding %s has a %d-octet relay message, longer than %d", b.Prefix, len(b.RelayMessage), MaxRelayMessageLen)
	}
	return nil
}

// validateBinding checks everything Apply needs to store b.
func validateBinding(b *Binding) error {
	if err := validateKey(b.Key); err != nil {
		return err
	}
	if b.State > StateDeclined {
		return fmt.Errorf("binding %s has unknown state %d", b.Prefix, b.State)
	}
	if b.Source > maxSource {
		return fmt.Errorf("binding %s has unknown source %d", b.Prefix, b.Source)
	}
	if len(b.ClientID) == 0 {
		return fmt.Errorf("binding %s has no client DUID", b.Prefix)
	}
	for i, field := range [...][]byte{b.ClientID, b.RelayID, b.RemoteID, b.InterfaceID, b.RelayMessage} {
		if len(field) > maxFieldLen {
			return fmt.Errorf("binding %s has a %d-byte %s, longer than %d", b.Prefix, len(field), byteFieldNames[i], maxFieldLen)
		}
	}
	for _, a := range [...]struct {
		name string
		addr netip.Addr
	}{{"link-address", b.LinkAddress}, {"relay peer-address", b.RelayPeer}} {
		if a.addr.IsValid() && (!a.addr.Is6() || a.addr.Zone() != "") {
			return fmt.Errorf("binding %s has %s %s, not an IPv6 address without zone", b.Prefix, a.name, a.addr)
		}
	}
	if !b.CLTT.IsZero() && !time.Unix(0, b.CLTT.UnixNano()).Equal(b.CLTT) {
		return fmt.Errorf("binding %s has CLTT %s outside the years 1678 to 2262", b.Prefix, b.CLTT)
	}
	return nil
}
