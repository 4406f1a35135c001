package loadgen

import (
	"encoding/binary"
	"net/netip"
	"strconv"

	"github.com/alqd/alqd/codec"
)

// The address plan of generated bindings. Everything lies in the
// documentation prefix 2001:db8::/32 (RFC 3849), so generated load can never
// be mistaken for real bindings:
//
//	link j            2001:db8:0:j::/64, link-address 2001:db8:0:j::1
//	client i, IA_NA   2001:db8:0:j:1::/64 plus i, on link j = i mod Links
//	client i, IA_PD   2001:db8:8000::/33 plus i << (128 - PrefixLength)
//	client i, peer    fe80::200:0:0:0 plus i (the client's link-local address)
//
// Link j is Kea subnet-id j+1 and is served by relay j mod Relays.
var (
	naBase   = netip.MustParseAddr("2001:db8::")
	pdBase   = netip.MustParseAddr("2001:db8:8000::")
	peerBase = netip.MustParseAddr("fe80::200:0:0:0")
)

// pdPoolBits is the length of the prefix that IA_PD prefixes are carved from.
const pdPoolBits = 33

// MaxLinks is the largest number of links: the link number is the fourth
// group of the IA_NA addresses.
const MaxLinks = 1 << 16

// MaxClients is the largest client population. The client number is the
// low 32 bits of addresses and DUIDs. The bound keeps the per-client state
// of a Churn (5 octets a client) under 100 MiB.
const MaxClients = 1 << 24

// DocumentationEnterpriseNumber is the IANA private enterprise number that
// RFC 5612 reserves for documentation. Every generated DUID-EN, remote-id
// and vendor option uses it.
const DocumentationEnterpriseNumber = 32473

// LinkAddress returns the link-address of link j: the relay's address on the
// link, or the server's for direct clients.
func LinkAddress(j int) netip.Addr {
	a := naBase.As16()
	binary.BigEndian.PutUint16(a[6:], uint16(j))
	a[15] = 1
	return netip.AddrFrom16(a)
}

// KeaSubnetID returns the Kea subnet-id of link j.
func KeaSubnetID(j int) uint32 { return uint32(j) + 1 }

// SubnetLinks returns the map from Kea subnet-id to link-address of a plan
// with the given number of links, as ingest.Parser.SubnetLinks and
// ingest.FollowerConfig.SubnetLinks want it for direct clients.
func SubnetLinks(links int) map[uint32]netip.Addr {
	m := make(map[uint32]netip.Addr, links)
	for j := range links {
		m[KeaSubnetID(j)] = LinkAddress(j)
	}
	return m
}

// RelayID returns the DUID that relay r sends in OPTION_RELAY_ID: a DUID-EN
// with the documentation enterprise number and the identifier "relay-r".
// A requestor filters on it with QUERY_BY_RELAY_ID. The result is a new
// slice.
func RelayID(r int) []byte {
	d := codec.NewDUIDEN(DocumentationEnterpriseNumber, strconv.AppendInt([]byte("relay-"), int64(r), 10))
	b, err := d.AppendTo(nil)
	if err != nil {
		panic("loadgen: relay DUID does not encode: " + err.Error())
	}
	return b
}

// naAddress returns the IA_NA address of client i on link j.
func naAddress(i uint32, j int) netip.Addr {
	a := naBase.As16()
	binary.BigEndian.PutUint16(a[6:], uint16(j))
	binary.BigEndian.PutUint16(a[8:], 1)
	binary.BigEndian.PutUint32(a[12:], i)
	return netip.AddrFrom16(a)
}

// pdPrefix returns the delegated prefix of client i. The caller has checked
// that i fits between pdPoolBits and bits.
func pdPrefix(i uint32, bits int) netip.Prefix {
	a := pdBase.As16()
	hi := binary.BigEndian.Uint64(a[:8])
	lo := binary.BigEndian.Uint64(a[8:])
	shift := 128 - bits
	if shift >= 64 {
		hi |= uint64(i) << (shift - 64)
	} else {
		hi |= uint64(i) >> (64 - shift)
		lo |= uint64(i) << shift
	}
	binary.BigEndian.PutUint64(a[:8], hi)
	binary.BigEndian.PutUint64(a[8:], lo)
	return netip.PrefixFrom(netip.AddrFrom16(a), bits)
}

// peerAddress returns the link-local address of client i, the peer-address
// of the Relay-forward its relay sends.
func peerAddress(i uint32) netip.Addr {
	a := peerBase.As16()
	binary.BigEndian.PutUint32(a[12:], i)
	return netip.AddrFrom16(a)
}

// appendRemoteID appends the OPTION_REMOTE_ID data of client i: the
// documentation enterprise number and "sub-i", as a subscriber line id.
func appendRemoteID(b []byte, i uint32) []byte {
	b = binary.BigEndian.AppendUint32(b, DocumentationEnterpriseNumber)
	b = append(b, "sub-"...)
	return strconv.AppendUint(b, uint64(i), 10)
}

// interfaceID returns the OPTION_INTERFACE_ID data of link j.
func interfaceID(j int) []byte {
	return strconv.AppendInt([]byte("link-"), int64(j), 10)
}
