package fanout

import (
	"fmt"
	"net/netip"
	"time"
)

// Update is one committed binding change as the ring carries it: the store's
// sequence number, the keys a filtered subscriber can select it by, and the
// pre-encoded message bodies every connection shares.
//
// An Update is immutable once it is passed to Ring.Publish or returned by an
// Iterator. The ring, every Group and every Sink read it from several
// goroutines without locks, so no code may write to it or to the memory its
// slices point to afterwards. The garbage collector frees it once the ring
// slot holding it has been overwritten and no Sink still holds it.
type Update struct {
	// Seq is the store's sequence number of the change. Updates are
	// published in strictly increasing Seq order; gaps are allowed.
	Seq uint64

	// ChangeTime is the server time at which the store committed the change.
	ChangeTime time.Time

	// Prefix is the binding's address (a /128 for IA_NA and IA_TA) or
	// delegated prefix (IA_PD). A FilterByAddress subscriber receives the
	// update when Prefix contains its address.
	Prefix netip.Prefix

	// Link is the binding's link-address. It is the key of FilterByLinkAddress
	// subscribers and the optional link restriction of the other filters.
	Link netip.Addr

	// Keys are the identity keys of the binding: its client DUID
	// (FilterByClientID), relay-id (FilterByRelayID) and remote-id
	// (FilterByRemoteID). Address and link-address keys come from Prefix and
	// Link and are ignored here. A kind may appear more than once (a
	// subscriber still receives the update once).
	Keys []FilterKey

	// Bodies holds one encoded OPTION_CLIENT_DATA body per view of the
	// binding (for example with and without OPTION_LQ_RELAY_DATA). The
	// server chooses the view per connection; fanout never reads Bodies.
	Bodies [][]byte
}

// FilterKind is the kind of key an Active Leasequery subscription selects
// updates by. The values are the query-type codes of OPTION_LQ_QUERY (RFC 5007
// section 4.1.2.1 and RFC 5460 section 5.1), with zero for a subscription
// without OPTION_LQ_QUERY.
type FilterKind uint8

//go:generate stringer -type=FilterKind,State -output=kind_string.go

// Filter kinds, in query-type order.
const (
	FilterAll           FilterKind = 0 // no OPTION_LQ_QUERY: every update (RFC 7653 section 6.2.1)
	FilterByAddress     FilterKind = 1 // QUERY_BY_ADDRESS (RFC 5007)
	FilterByClientID    FilterKind = 2 // QUERY_BY_CLIENTID (RFC 5007)
	FilterByRelayID     FilterKind = 3 // QUERY_BY_RELAY_ID (RFC 5460)
	FilterByLinkAddress FilterKind = 4 // QUERY_BY_LINK_ADDRESS (RFC 5460)
	FilterByRemoteID    FilterKind = 5 // QUERY_BY_REMOTE_ID (RFC 5460)

	kindCount = 6
)

// FilterKey is one key of a binding, compared byte for byte. Value holds the
// raw key bytes: the DUID for client-id and relay-id, the enterprise number
// followed by the remote-id for remote-id, and the 16 address bytes for
// address and link-address keys. A string keeps the key comparable and usable
// as a map key without copying on lookup.
type FilterKey struct {
	Kind  FilterKind
	Value string
}

// AddressKey returns the key of a QUERY_BY_ADDRESS subscription for a.
func AddressKey(a netip.Addr) FilterKey {
	b := a.As16()
	return FilterKey{Kind: FilterByAddress, Value: string(b[:])}
}

// LinkAddressKey returns the key of a QUERY_BY_LINK_ADDRESS subscription for
// the link-address a.
func LinkAddressKey(a netip.Addr) FilterKey {
	b := a.As16()
	return FilterKey{Kind: FilterByLinkAddress, Value: string(b[:])}
}

// ClientIDKey returns the key for the client DUID duid. It copies duid.
func ClientIDKey(duid []byte) FilterKey {
	return FilterKey{Kind: FilterByClientID, Value: string(duid)}
}

// RelayIDKey returns the key for the relay DUID id (OPTION_RELAY_ID data). It
// copies id.
func RelayIDKey(id []byte) FilterKey {
	return FilterKey{Kind: FilterByRelayID, Value: string(id)}
}

// RemoteIDKey returns the key for the OPTION_REMOTE_ID data id: the 4-byte
// enterprise number followed by the remote-id. It copies id.
func RemoteIDKey(id []byte) FilterKey {
	return FilterKey{Kind: FilterByRemoteID, Value: string(id)}
}

// Filter selects the updates a subscriber receives: every update (the zero
// value), or the updates whose binding has Key, optionally only on one link.
type Filter struct {
	// Key is the binding key to match. A zero Key (FilterAll) matches every
	// update.
	Key FilterKey

	// Link restricts matches to bindings whose link-address equals Link. The
	// zero Addr and :: mean any link (the link-address field of OPTION_LQ_QUERY
	// set to zero). It must be unset for FilterAll and FilterByLinkAddress.
	Link netip.Addr
}

// Validate reports whether f is a filter a Group accepts. The error wraps
// ErrInvalidFilter and names the field at fault.
func (f Filter) Validate() error {
	k := f.Key
	switch k.Kind {
	case FilterAll:
		if k.Value != "" {
			return fmt.Errorf("%w: FilterAll with a %d-byte key value; use an empty value", ErrInvalidFilter, len(k.Value))
		}
	case FilterByAddress, FilterByLinkAddress:
		if len(k.Value) != 16 {
			return fmt.Errorf("%w: %v key value is %d bytes, expected the 16 bytes that AddressKey and LinkAddressKey build", ErrInvalidFilter, k.Kind, len(k.Value))
		}
		if k.Kind == FilterByLinkAddress && addrOf(k.Value).IsUnspecified() {
			return fmt.Errorf("%w: %v key is the unspecified address (::)", ErrInvalidFilter, k.Kind)
		}
	case FilterByClientID, FilterByRelayID, FilterByRemoteID:
		if k.Value == "" {
			return fmt.Errorf("%w: %v key value is empty", ErrInvalidFilter, k.Kind)
		}
	default:
		return fmt.Errorf("%w: unknown filter kind %d", ErrInvalidFilter, uint8(k.Kind))
	}

	if restrictsLink(f.Link) && (k.Kind == FilterAll || k.Kind == FilterByLinkAddress) {
		return fmt.Errorf("%w: link restriction %v on a %v filter", ErrInvalidFilter, f.Link, k.Kind)
	}
	return nil
}

// Match reports whether u is selected by f. It is the reference the Group's
// index agrees with; a Source may call it to drop unselected bindings before
// encoding them. Match assumes f is valid.
func (f Filter) Match(u *Update) bool {
	if restrictsLink(f.Link) && !sameAddr(u.Link, f.Link) {
		return false
	}

	switch f.Key.Kind {
	case FilterAll:
		return true
	case FilterByAddress:
		return prefixContains(u.Prefix, addrOf(f.Key.Value))
	case FilterByLinkAddress:
		return sameAddr(u.Link, addrOf(f.Key.Value))
	}
	for _, k := range u.Keys {
		if k == f.Key {
			return true
		}
	}
	return false
}

// restrictsLink reports whether link names one link rather than any link.
func restrictsLink(link netip.Addr) bool {
	return link.IsValid() && !link.IsUnspecified()
}

// sameAddr reports whether a and b are the same valid address. It compares
// the 16-byte forms, so zones and IPv4-mapped spellings do not matter.
func sameAddr(a, b netip.Addr) bool {
	return a.IsValid() && b.IsValid() && a.As16() == b.As16()
}

// addrOf converts a 16-byte key value to an address; a key of another length
// yields the invalid Addr.
func addrOf(v string) netip.Addr {
	if len(v) != 16 {
		return netip.Addr{}
	}
	var b [16]byte
	copy(b[:], v)
	return netip.AddrFrom16(b)
}

// prefixContains reports whether p contains a, comparing IPv4 prefixes and
// IPv4-mapped addresses as the same family.
func prefixContains(p netip.Prefix, a netip.Addr) bool {
	if !p.IsValid() || !a.IsValid() {
		return false
	}
	lo, hi := prefixRange(p)
	x := toAddr128(a)
	return !x.less(lo) && !hi.less(x)
}
