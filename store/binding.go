package store

import (
	"bytes"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"time"
)

// BindingType is the kind of identity association a binding belongs to.
type BindingType uint8

// Binding types, numbered as Kea's memfile lease_type column numbers them.
const (
	TypeNA BindingType = 0 // IA_NA address (RFC 8415 section 21.4)
	TypeTA BindingType = 1 // IA_TA address (RFC 8415 section 21.5)
	TypePD BindingType = 2 // IA_PD delegated prefix (RFC 8415 section 21.21)
)

func (t BindingType) String() string {
	switch t {
	case TypeNA:
		return "IA_NA"
	case TypeTA:
		return "IA_TA"
	case TypePD:
		return "IA_PD"
	}
	return "unknown"
}

// State is the lifecycle state of a binding.
type State uint8

// Binding states. Released and expired bindings stay in the history as
// tombstones until the retention ends; they are reported with zero lifetimes.
const (
	StateActive   State = 0
	StateReleased State = 1
	StateExpired  State = 2
	StateDeclined State = 3
)

func (s State) String() string {
	switch s {
	case StateActive:
		return "active"
	case StateReleased:
		return "released"
	case StateExpired:
		return "expired"
	case StateDeclined:
		return "declined"
	}
	return "unknown"
}

// Ended reports whether the binding no longer holds its address or prefix.
func (s State) Ended() bool { return s == StateReleased || s == StateExpired }

// Source is the component that wrote a binding's current state. The store
// keeps it with the binding, so that a source can tell its own bindings from
// those of another: the Kea follower ends only bindings it wrote itself.
type Source uint8

// Binding sources. Stored values of the first format carry no source and
// decode as SourceUnknown.
const (
	SourceUnknown   Source = 0 // not recorded: stored by an older alqd, or by a caller that set none
	SourceIngestAPI Source = 1 // the HTTP ingest API (POST /v1/bindings)
	SourceKea       Source = 2 // the Kea memfile lease file follower

	maxSource = SourceKea
)

func (s Source) String() string {
	switch s {
	case SourceUnknown:
		return "unknown"
	case SourceIngestAPI:
		return "ingest-api"
	case SourceKea:
		return "kea"
	}
	return "Source(" + strconv.Itoa(int(s)) + ")"
}

// CLTT bounds, in Unix seconds. Apply rejects a binding whose CLTT is set
// and lies outside them: the span of RFC 7653 absolute times (unsigned
// 32-bit seconds since 2000-01-01T00:00:00Z), in which the server reports
// times. A CLTT outside it comes from a wrong clock or a corrupt source.
const (
	MinCLTTUnix = 946684800                    // 2000-01-01T00:00:00Z
	MaxCLTTUnix = MinCLTTUnix + math.MaxUint32 // 2136-02-07T06:28:15Z
)

// MaxRelayMessageLen is the longest RelayMessage that Apply accepts, in
// octets. A chain of 8 relays (HOP_COUNT_LIMIT, RFC 8415 section 7.6) that
// each add an Interface-ID, a Remote-ID and a Relay-ID of 64 octets is
// 8 * (34 + 4 + 3*(4+64)) = 1936 octets, so real chains fit, and a binding's
// OPTION_CLIENT_DATA with its OPTION_LQ_RELAY_DATA stays far below the
// 65535 octets of a message.
const MaxRelayMessageLen = 4096

// reservedPrefixes are the address ranges that no leased address or
// delegated prefix may touch: DHCPv6 assigns global and unique local
// unicast space only (RFC 8415 section 6).
var reservedPrefixes = [...]struct {
	prefix netip.Prefix
	is     string // what an address in it is
	space  string // what a prefix overlapping it overlaps
}{
	{netip.MustParsePrefix("::/128"), "is the unspecified address", "the unspecified address"},
	{netip.MustParsePrefix("::1/128"), "is the loopback address", "the loopback address"},
	{netip.MustParsePrefix("::ffff:0:0/96"), "is IPv4-mapped", "IPv4-mapped space"},
	{netip.MustParsePrefix("fe80::/10"), "is link-local", "link-local space"},
	{netip.MustParsePrefix("ff00::/8"), "is multicast", "multicast space"},
}

// CheckLeasable returns an error when p overlaps the unspecified or
// loopback address, IPv4-mapped, link-local or multicast space, none of
// which a DHCPv6 server leases. The error names p and the range.
func CheckLeasable(p netip.Prefix) error {
	for _, r := range reservedPrefixes {
		switch {
		case p.IsSingleIP() && r.prefix.Contains(p.Addr()):
			return fmt.Errorf("%s %s (%s); a binding holds a global or unique local unicast address or prefix", p.Addr(), r.is, r.prefix)
		case p.Overlaps(r.prefix):
			return fmt.Errorf("%s overlaps %s (%s); a binding holds a global or unique local unicast address or prefix", p, r.space, r.prefix)
		}
	}
	return nil
}

// CheckCLTT returns an error when t is set and outside MinCLTTUnix to
// MaxCLTTUnix. The error names t and the bounds.
func CheckCLTT(t time.Time) error {
	if t.IsZero() {
		return nil
	}
	if sec := t.Unix(); sec < MinCLTTUnix || sec > MaxCLTTUnix {
		return fmt.Errorf("CLTT %s is outside %s to %s, the span of RFC 7653 absolute times",
			t.UTC().Format(time.RFC3339), time.Unix(MinCLTTUnix, 0).UTC().Format(time.RFC3339), time.Unix(MaxCLTTUnix, 0).UTC().Format(time.RFC3339))
	}
	return nil
}

// Key identifies a binding: its type and its address or prefix. Kea keys its
// own DHCPv6 lease store the same way, so a new client on a reused address
// replaces the previous binding.
type Key struct {
	Type   BindingType
	Prefix netip.Prefix // an address is a /128; IA_PD carries the delegated length
}

// Binding is one IA_NA address, IA_TA address or IA_PD prefix of one client,
// with the relay information it was received with. Byte slices are owned by the
// Binding; values returned by the store are copies that the caller may keep.
type Binding struct {
	Key

	ClientID          []byte // client DUID, as received in OPTION_CLIENTID
	IAID              uint32
	PreferredLifetime uint32 // seconds, as granted at CLTT; 0xffffffff is infinity
	ValidLifetime     uint32 // seconds, as granted at CLTT; 0xffffffff is infinity
	State             State
	CLTT              time.Time // client last transaction time

	LinkAddress netip.Addr // link-address of the relay closest to the client, or the server's link
	RelayID     []byte     // OPTION_RELAY_ID data (a DUID) from the relay closest to the client
	RemoteID    []byte     // OPTION_REMOTE_ID data: 4-byte enterprise number then the remote-id
	InterfaceID []byte     // OPTION_INTERFACE_ID data from the relay closest to the client

	// RelayPeer and RelayMessage are the peer-address and the RELAY-FORW
	// message (the whole chain as received, outermost first) that
	// OPTION_LQ_RELAY_DATA carries (RFC 5007 section 4.1.2.4). Empty when the
	// client was not relayed.
	RelayPeer    netip.Addr
	RelayMessage []byte

	// Source is the component that wrote this state. It is part of the
	// state: the same binding written by another source is a change.
	Source Source

	// Seq and ChangeTime are assigned by the store when it commits a change:
	// Seq grows by one per change in commit order, ChangeTime is the server
	// time of the commit. Values set by callers of Apply are ignored.
	Seq        uint64
	ChangeTime time.Time
}

// Clone returns a copy of b that shares no byte slice with it.
func (b *Binding) Clone() Binding {
	c := *b
	c.ClientID = bytes.Clone(b.ClientID)
	c.RelayID = bytes.Clone(b.RelayID)
	c.RemoteID = bytes.Clone(b.RemoteID)
	c.InterfaceID = bytes.Clone(b.InterfaceID)
	c.RelayMessage = bytes.Clone(b.RelayMessage)
	return c
}
