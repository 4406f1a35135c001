package codec

import (
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"strings"
)

// DUID sizes (RFC 8415 section 11.1): the type field plus at most 128 octets.
const (
	MinDUIDLen = 3
	MaxDUIDLen = 130
)

// DUID is a DHCP Unique Identifier split into the fields of its type. Peers
// compare DUIDs as opaque octets, so keep the encoded form as the identity
// and use DUID to build, inspect or print one. After ParseDUID the slices
// alias the parsed bytes. The zero value is not a valid DUID.
type DUID struct {
	Type DUIDType
	// HardwareType is the IANA ARP hardware type (1 is Ethernet) of DUID-LLT
	// and DUID-LL.
	HardwareType uint16
	// Time is the DUID-LLT time: seconds since 2000-01-01 UTC modulo 2^32
	// (see DHCPTime).
	Time uint32
	// LinkLayerAddr is the link-layer address of DUID-LLT and DUID-LL.
	LinkLayerAddr []byte
	// EnterpriseNumber is the IANA private enterprise number of DUID-EN.
	EnterpriseNumber uint32
	// Identifier is the identifier of DUID-EN and, for a type this package
	// does not know, every octet after the type.
	Identifier []byte
	// UUID is the RFC 4122 UUID of DUID-UUID.
	UUID [16]byte
}

// Fixed sizes of each DUID type before its variable part.
const (
	duidLLTFixed = 8  // type, hardware type, time
	duidENFixed  = 6  // type, enterprise number
	duidLLFixed  = 4  // type, hardware type
	duidUUIDLen  = 18 // type, UUID
)

// ParseDUID splits an encoded DUID into its fields; the slices in the result
// alias b. It fails with ErrInvalidDUID when b is outside MinDUIDLen to
// MaxDUIDLen octets, when a DUID-LLT, DUID-EN or DUID-LL has no octet after
// its fixed fields, or when a DUID-UUID is not 18 octets.
func ParseDUID(b []byte) (DUID, error) {
	if err := checkDUID(b); err != nil {
		return DUID{}, err
	}
	d := DUID{Type: DUIDType(binary.BigEndian.Uint16(b))}
	switch d.Type {
	case DUIDLLT:
		d.HardwareType = binary.BigEndian.Uint16(b[2:])
		d.Time = binary.BigEndian.Uint32(b[4:])
		d.LinkLayerAddr = b[duidLLTFixed:len(b):len(b)]
	case DUIDEN:
		d.EnterpriseNumber = binary.BigEndian.Uint32(b[2:])
		d.Identifier = b[duidENFixed:len(b):len(b)]
	case DUIDLL:
		d.HardwareType = binary.BigEndian.Uint16(b[2:])
		d.LinkLayerAddr = b[duidLLFixed:len(b):len(b)]
	case DUIDUUID:
		d.UUID = [16]byte(b[2:])
	default:
		d.Identifier = b[2:len(b):len(b)]
	}
	return d, nil
}

// checkDUID checks an encoded DUID as ParseDUID does, without splitting it.
func checkDUID(b []byte) error {
	if len(b) < MinDUIDLen || len(b) > MaxDUIDLen {
		return ErrInvalidDUID
	}
	var ok bool
	switch DUIDType(binary.BigEndian.Uint16(b)) {
	case DUIDLLT:
		ok = len(b) > duidLLTFixed
	case DUIDEN:
		ok = len(b) > duidENFixed
	case DUIDLL:
		ok = len(b) > duidLLFixed
	case DUIDUUID:
		ok = len(b) == duidUUIDLen
	default:
		ok = true
	}
	if !ok {
		return ErrInvalidDUID
	}
	return nil
}

// NewDUIDLLT returns a DUID-LLT; t is a DHCP time (see DHCPTime). The result
// keeps ll, not a copy.
func NewDUIDLLT(hardwareType uint16, t uint32, ll []byte) DUID {
	return DUID{Type: DUIDLLT, HardwareType: hardwareType, Time: t, LinkLayerAddr: ll}
}

// NewDUIDEN returns a DUID-EN. The result keeps id, not a copy.
func NewDUIDEN(enterpriseNumber uint32, id []byte) DUID {
	return DUID{Type: DUIDEN, EnterpriseNumber: enterpriseNumber, Identifier: id}
}

// NewDUIDLL returns a DUID-LL. The result keeps ll, not a copy.
func NewDUIDLL(hardwareType uint16, ll []byte) DUID {
	return DUID{Type: DUIDLL, HardwareType: hardwareType, LinkLayerAddr: ll}
}

// NewDUIDUUID returns a DUID-UUID.
func NewDUIDUUID(uuid [16]byte) DUID { return DUID{Type: DUIDUUID, UUID: uuid} }

// Len returns the encoded size of d.
func (d *DUID) Len() int {
	switch d.Type {
	case DUIDLLT:
		return duidLLTFixed + len(d.LinkLayerAddr)
	case DUIDEN:
		return duidENFixed + len(d.Identifier)
	case DUIDLL:
		return duidLLFixed + len(d.LinkLayerAddr)
	case DUIDUUID:
		return duidUUIDLen
	}
	return 2 + len(d.Identifier)
}

// AppendTo appends the encoded DUID to b. It fails with ErrInvalidDUID,
// returning b unchanged, when the result would not pass ParseDUID.
func (d *DUID) AppendTo(b []byte) ([]byte, error) {
	start := len(b)
	b = binary.BigEndian.AppendUint16(b, uint16(d.Type))
	switch d.Type {
	case DUIDLLT:
		b = binary.BigEndian.AppendUint16(b, d.HardwareType)
		b = binary.BigEndian.AppendUint32(b, d.Time)
		b = append(b, d.LinkLayerAddr...)
	case DUIDEN:
		b = binary.BigEndian.AppendUint32(b, d.EnterpriseNumber)
		b = append(b, d.Identifier...)
	case DUIDLL:
		b = binary.BigEndian.AppendUint16(b, d.HardwareType)
		b = append(b, d.LinkLayerAddr...)
	case DUIDUUID:
		b = append(b, d.UUID[:]...)
	default:
		b = append(b, d.Identifier...)
	}
	if err := checkDUID(b[start:]); err != nil {
		return b[:start], err
	}
	return b, nil
}

// String formats d for logs, for example "DUID-LL hw=1 ll=00:00:5e:00:53:aa"
// or "DUID-EN en=32473 id=72656c61792d61".
func (d *DUID) String() string {
	var s strings.Builder
	s.WriteString(d.Type.String())
	switch d.Type {
	case DUIDLLT:
		s.WriteString(" hw=" + strconv.Itoa(int(d.HardwareType)))
		s.WriteString(" time=" + strconv.FormatUint(uint64(d.Time), 10))
		s.WriteString(" ll=" + colonHex(d.LinkLayerAddr))
	case DUIDEN:
		s.WriteString(" en=" + strconv.FormatUint(uint64(d.EnterpriseNumber), 10))
		s.WriteString(" id=" + hex.EncodeToString(d.Identifier))
	case DUIDLL:
		s.WriteString(" hw=" + strconv.Itoa(int(d.HardwareType)))
		s.WriteString(" ll=" + colonHex(d.LinkLayerAddr))
	case DUIDUUID:
		u := hex.EncodeToString(d.UUID[:])
		s.WriteString(" " + u[0:8] + "-" + u[8:12] + "-" + u[12:16] + "-" + u[16:20] + "-" + u[20:])
	default:
		s.WriteString(" " + hex.EncodeToString(d.Identifier))
	}
	return s.String()
}

// colonHex formats b as colon-separated lowercase hex octets, the usual form
// of a link-layer address.
func colonHex(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 3*len(b))
	for i, c := range b {
		if i > 0 {
			out = append(out, ':')
		}
		out = append(out, digits[c>>4], digits[c&0xf])
	}
	return string(out)
}
