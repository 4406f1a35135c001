package codec

import (
	"encoding/binary"
	"net/netip"
)

// Sizes of the fixed fields before the sub-options of each IA option.
const (
	iaNALen     = 12 // IAID, T1, T2
	iaTALen     = 4  // IAID
	iaAddrLen   = 24 // address, preferred-lifetime, valid-lifetime
	iaPrefixLen = 25 // preferred-lifetime, valid-lifetime, prefix-length, prefix
)

// IANA is the content of OPTION_IA_NA, and IAPD of OPTION_IA_PD, which has the
// same layout (RFC 8415 sections 21.4 and 21.21). After Decode, Options
// aliases the decoded option-data.
type IANA struct {
	IAID    uint32
	T1      uint32 // seconds
	T2      uint32 // seconds
	Options Options
}

// IAPD is the content of OPTION_IA_PD; see IANA.
type IAPD IANA

// Decode parses the option-data of OPTION_IA_NA into a, reusing a.Options.
func (a *IANA) Decode(data []byte) error { return a.decode(OptIANA, data) }

// Len returns the encoded size of the option, header included.
func (a *IANA) Len() int { return OptionHeaderLen + iaNALen + a.Options.Len() }

// AppendTo appends a as an OPTION_IA_NA. It fails with ErrOptionTooLong,
// returning b unchanged.
func (a *IANA) AppendTo(b []byte) ([]byte, error) { return a.appendTo(b, OptIANA) }

// Decode parses the option-data of OPTION_IA_PD into a, reusing a.Options.
func (a *IAPD) Decode(data []byte) error { return (*IANA)(a).decode(OptIAPD, data) }

// Len returns the encoded size of the option, header included.
func (a *IAPD) Len() int { return (*IANA)(a).Len() }

// AppendTo appends a as an OPTION_IA_PD. It fails with ErrOptionTooLong,
// returning b unchanged.
func (a *IAPD) AppendTo(b []byte) ([]byte, error) { return (*IANA)(a).appendTo(b, OptIAPD) }

func (a *IANA) decode(code OptionCode, data []byte) error {
	if len(data) < iaNALen {
		return &DecodeError{Code: code, Err: ErrOptionLength}
	}
	a.IAID = binary.BigEndian.Uint32(data)
	a.T1 = binary.BigEndian.Uint32(data[4:])
	a.T2 = binary.BigEndian.Uint32(data[8:])
	a.Options = a.Options[:0]
	return walkOptions(data[iaNALen:], iaNALen, nesting{depth: 1}, &a.Options)
}

func (a *IANA) appendTo(b []byte, code OptionCode) ([]byte, error) {
	b, start := BeginOption(b, code)
	b = binary.BigEndian.AppendUint32(b, a.IAID)
	b = binary.BigEndian.AppendUint32(b, a.T1)
	b = binary.BigEndian.AppendUint32(b, a.T2)
	return endContainer(b, start, a.Options)
}

// IATA is the content of OPTION_IA_TA (RFC 8415 section 21.5). After Decode,
// Options aliases the decoded option-data.
type IATA struct {
	IAID    uint32
	Options Options
}

// Decode parses the option-data of OPTION_IA_TA into a, reusing a.Options.
func (a *IATA) Decode(data []byte) error {
	if len(data) < iaTALen {
		return &DecodeError{Code: OptIATA, Err: ErrOptionLength}
	}
	a.IAID = binary.BigEndian.Uint32(data)
	a.Options = a.Options[:0]
	return walkOptions(data[iaTALen:], iaTALen, nesting{depth: 1}, &a.Options)
}

// Len returns the encoded size of the option, header included.
func (a *IATA) Len() int { return OptionHeaderLen + iaTALen + a.Options.Len() }

// AppendTo appends a as an OPTION_IA_TA. It fails with ErrOptionTooLong,
// returning b unchanged.
func (a *IATA) AppendTo(b []byte) ([]byte, error) {
	b, start := BeginOption(b, OptIATA)
	b = binary.BigEndian.AppendUint32(b, a.IAID)
	return endContainer(b, start, a.Options)
}

// IAAddr is the content of OPTION_IAADDR (RFC 8415 section 21.6). Inside
// OPTION_CLIENT_DATA the lifetimes are the remaining ones, counted from the
// message's OPTION_LQ_BASE_TIME when present, and 0/0 reports an ended
// binding. After Decode, Options aliases the decoded option-data.
type IAAddr struct {
	Addr              netip.Addr // IPv6; the zero Addr encodes as ::
	PreferredLifetime uint32     // seconds; 0xffffffff is infinity
	ValidLifetime     uint32     // seconds; 0xffffffff is infinity
	Options           Options
}

// Decode parses the option-data of OPTION_IAADDR into a, reusing a.Options.
//
// hot path: no allocation once a.Options has grown.
func (a *IAAddr) Decode(data []byte) error {
	if len(data) < iaAddrLen {
		return &DecodeError{Code: OptIAAddr, Err: ErrOptionLength}
	}
	a.Addr = netip.AddrFrom16([16]byte(data[:16]))
	a.PreferredLifetime = binary.BigEndian.Uint32(data[16:])
	a.ValidLifetime = binary.BigEndian.Uint32(data[20:])
	a.Options = a.Options[:0]
	return walkOptions(data[iaAddrLen:], iaAddrLen, nesting{depth: 1}, &a.Options)
}

// Len returns the encoded size of the option, header included.
func (a *IAAddr) Len() int { return OptionHeaderLen + iaAddrLen + a.Options.Len() }

// AppendTo appends a as an OPTION_IAADDR. It fails with ErrNotIPv6 or
// ErrOptionTooLong, returning b unchanged.
func (a *IAAddr) AppendTo(b []byte) ([]byte, error) {
	ip, ok := addr16(a.Addr)
	if !ok {
		return b, ErrNotIPv6
	}
	b, start := BeginOption(b, OptIAAddr)
	b = append(b, ip[:]...)
	b = binary.BigEndian.AppendUint32(b, a.PreferredLifetime)
	b = binary.BigEndian.AppendUint32(b, a.ValidLifetime)
	return endContainer(b, start, a.Options)
}

// AppendIAAddr appends an OPTION_IAADDR without sub-options. It fails with
// ErrNotIPv6, returning b unchanged, for an IPv4 address.
//
// hot path: appends only.
func AppendIAAddr(b []byte, addr netip.Addr, preferred, valid uint32) ([]byte, error) {
	ip, ok := addr16(addr)
	if !ok {
		return b, ErrNotIPv6
	}
	b = append(b, byte(OptIAAddr>>8), byte(OptIAAddr), 0, iaAddrLen)
	b = append(b, ip[:]...)
	b = binary.BigEndian.AppendUint32(b, preferred)
	return binary.BigEndian.AppendUint32(b, valid), nil
}

// IAPrefix is the content of OPTION_IAPREFIX (RFC 8415 section 21.22); the
// lifetimes come before the prefix, unlike OPTION_IAADDR. The prefix keeps the
// address bits exactly as received, host bits included. After Decode, Options
// aliases the decoded option-data.
type IAPrefix struct {
	PreferredLifetime uint32       // seconds; 0xffffffff is infinity
	ValidLifetime     uint32       // seconds; 0xffffffff is infinity
	Prefix            netip.Prefix // IPv6; the zero Prefix encodes as ::/0
	Options           Options
}

// Decode parses the option-data of OPTION_IAPREFIX into p, reusing p.Options.
// It rejects a prefix-length above 128.
//
// hot path: no allocation once p.Options has grown.
func (p *IAPrefix) Decode(data []byte) error {
	if len(data) < iaPrefixLen {
		return &DecodeError{Code: OptIAPrefix, Err: ErrOptionLength}
	}
	if data[8] > 128 {
		return &DecodeError{Code: OptIAPrefix, Err: ErrPrefixLength}
	}
	p.PreferredLifetime = binary.BigEndian.Uint32(data)
	p.ValidLifetime = binary.BigEndian.Uint32(data[4:])
	p.Prefix = netip.PrefixFrom(netip.AddrFrom16([16]byte(data[9:25])), int(data[8]))
	p.Options = p.Options[:0]
	return walkOptions(data[iaPrefixLen:], iaPrefixLen, nesting{depth: 1}, &p.Options)
}

// Len returns the encoded size of the option, header included.
func (p *IAPrefix) Len() int { return OptionHeaderLen + iaPrefixLen + p.Options.Len() }

// AppendTo appends p as an OPTION_IAPREFIX. It fails with ErrNotIPv6 or
// ErrOptionTooLong, returning b unchanged.
func (p *IAPrefix) AppendTo(b []byte) ([]byte, error) {
	ip, bits, err := prefix16(p.Prefix)
	if err != nil {
		return b, err
	}
	b, start := BeginOption(b, OptIAPrefix)
	b = binary.BigEndian.AppendUint32(b, p.PreferredLifetime)
	b = binary.BigEndian.AppendUint32(b, p.ValidLifetime)
	b = append(b, bits)
	b = append(b, ip[:]...)
	return endContainer(b, start, p.Options)
}

// AppendIAPrefix appends an OPTION_IAPREFIX without sub-options. It fails
// with ErrNotIPv6, returning b unchanged, for an IPv4 prefix.
//
// hot path: appends only.
func AppendIAPrefix(b []byte, prefix netip.Prefix, preferred, valid uint32) ([]byte, error) {
	ip, bits, err := prefix16(prefix)
	if err != nil {
		return b, err
	}
	b = append(b, byte(OptIAPrefix>>8), byte(OptIAPrefix), 0, iaPrefixLen)
	b = binary.BigEndian.AppendUint32(b, preferred)
	b = binary.BigEndian.AppendUint32(b, valid)
	b = append(b, bits)
	return append(b, ip[:]...), nil
}

// prefix16 returns the address octets and length of an IPv6 prefix, with the
// zero Prefix as ::/0.
func prefix16(p netip.Prefix) ([16]byte, byte, error) {
	if !p.IsValid() {
		switch {
		case !p.Addr().IsValid():
			return [16]byte{}, 0, nil
		case p.Addr().Is4():
			return [16]byte{}, 0, ErrNotIPv6
		}
		return [16]byte{}, 0, ErrPrefixLength
	}
	ip, ok := addr16(p.Addr())
	if !ok {
		return ip, 0, ErrNotIPv6
	}
	return ip, byte(p.Bits()), nil
}

// endContainer appends the sub-options of a container begun at start and
// sets its option-len. On error it returns b[:start].
func endContainer(b []byte, start int, opts Options) ([]byte, error) {
	b, err := opts.AppendTo(b)
	if err != nil {
		return b[:start], err
	}
	return EndOption(b, start)
}
