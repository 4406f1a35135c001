package keatest

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
)

// LeaseType is the kind of a Kea lease, numbered as the lease_type column of
// Kea's memfile lease file numbers it.
type LeaseType uint8

// Lease types.
const (
	TypeNA LeaseType = 0 // IA_NA address
	TypeTA LeaseType = 1 // IA_TA address
	TypePD LeaseType = 2 // IA_PD delegated prefix
)

// String returns the name Kea uses for the type in commands and responses.
func (t LeaseType) String() string {
	switch t {
	case TypeNA:
		return "IA_NA"
	case TypeTA:
		return "IA_TA"
	case TypePD:
		return "IA_PD"
	}
	return fmt.Sprintf("LeaseType(%d)", uint8(t))
}

// parseLeaseType parses Kea's name of a lease type.
func parseLeaseType(s string) (LeaseType, error) {
	switch s {
	case "IA_NA":
		return TypeNA, nil
	case "IA_TA":
		return TypeTA, nil
	case "IA_PD":
		return TypePD, nil
	}
	return 0, fmt.Errorf("unknown lease type %q", s)
}

// Lease states of Kea (lease state column and "state" field).
const (
	StateDefault          = 0 // assigned
	StateDeclined         = 1
	StateExpiredReclaimed = 2
)

// Lease is one DHCPv6 lease as Kea reports it through lease6-get-all. The
// slices are owned by the Lease.
type Lease struct {
	Type              LeaseType
	Address           netip.Addr // the IA_NA address or the IA_PD prefix
	PrefixLen         int        // 128 for addresses, the delegated length for IA_PD
	DUID              []byte
	IAID              uint32
	SubnetID          uint32
	ValidLifetime     uint32 // seconds
	PreferredLifetime uint32 // seconds
	CLTT              int64  // client last transaction time, Unix seconds
	State             int    // StateDefault, StateDeclined or StateExpiredReclaimed

	// Relays is the relay information Kea stored with store-extended-info,
	// closest to the server first; empty for a client that was not relayed.
	Relays []RelayInfo

	// UserContext is the lease's user context as Kea returned it, or nil.
	UserContext json.RawMessage
}

// Prefix returns the address or delegated prefix with its length.
func (l Lease) Prefix() netip.Prefix {
	return netip.PrefixFrom(l.Address, l.PrefixLen)
}

// RelayInfo is one relay of a relayed lease, taken from the "ISC" entry of
// the lease's user context.
type RelayInfo struct {
	Hop  int
	Link netip.Addr
	Peer netip.Addr

	// Options are the options the relay added to its Relay-forward, as raw
	// TLVs; Kea 2.2 stores them only in this form.
	Options []byte

	// InterfaceID, RemoteID and RelayID are the data of options 18, 37 and
	// 53 found in Options, or nil. RemoteID includes its 4-byte enterprise
	// number.
	InterfaceID []byte
	RemoteID    []byte
	RelayID     []byte
}

// keaLease is the JSON form of a lease in Kea 2.2 responses.
type keaLease struct {
	Address       string          `json:"ip-address"`
	Type          string          `json:"type"`
	PrefixLen     *int            `json:"prefix-len"`
	DUID          string          `json:"duid"`
	IAID          uint32          `json:"iaid"`
	SubnetID      uint32          `json:"subnet-id"`
	ValidLifetime uint32          `json:"valid-lft"`
	PreferredLft  uint32          `json:"preferred-lft"`
	CLTT          int64           `json:"cltt"`
	State         int             `json:"state"`
	UserContext   json.RawMessage `json:"user-context"`
}

// parseLeases decodes the arguments of a lease6-get-all response.
func parseLeases(arguments json.RawMessage) ([]Lease, error) {
	var args struct {
		Leases []keaLease `json:"leases"`
	}
	if err := json.Unmarshal(arguments, &args); err != nil {
		return nil, fmt.Errorf("keatest: invalid lease list from Kea: %w", err)
	}
	leases := make([]Lease, 0, len(args.Leases))
	for i, kl := range args.Leases {
		lease, err := kl.lease()
		if err != nil {
			return nil, fmt.Errorf("keatest: lease %d (%s) from Kea: %w", i, kl.Address, err)
		}
		leases = append(leases, lease)
	}
	return leases, nil
}

func (kl keaLease) lease() (Lease, error) {
	addr, err := netip.ParseAddr(kl.Address)
	if err != nil {
		return Lease{}, err
	}
	typ, err := parseLeaseType(kl.Type)
	if err != nil {
		return Lease{}, err
	}
	duid, err := hexBytes(kl.DUID)
	if err != nil {
		return Lease{}, fmt.Errorf("invalid DUID %q: %w", kl.DUID, err)
	}
	prefixLen := 128
	if kl.PrefixLen != nil {
		prefixLen = *kl.PrefixLen
	}
	relays, err := parseRelayInfo(kl.UserContext)
	if err != nil {
		return Lease{}, err
	}
	return Lease{
		Type:              typ,
		Address:           addr,
		PrefixLen:         prefixLen,
		DUID:              duid,
		IAID:              kl.IAID,
		SubnetID:          kl.SubnetID,
		ValidLifetime:     kl.ValidLifetime,
		PreferredLifetime: kl.PreferredLft,
		CLTT:              kl.CLTT,
		State:             kl.State,
		Relays:            relays,
		UserContext:       kl.UserContext,
	}, nil
}

// ParseUserContext returns the relay information in a lease's user context,
// as Kea stores it with store-extended-info. It accepts the Kea 2.2 layout
// {"ISC":{"relays":[...]}} and the layout of Kea 2.4 and later,
// {"ISC":{"relay-info":[...]}}. A context without relay information gives
// nil. The lease file stores the same JSON, with "," and "&" escaped.
func ParseUserContext(userContext []byte) ([]RelayInfo, error) {
	return parseRelayInfo(userContext)
}

func parseRelayInfo(userContext json.RawMessage) ([]RelayInfo, error) {
	if len(userContext) == 0 || string(userContext) == "null" {
		return nil, nil
	}
	type keaRelay struct {
		Hop     int    `json:"hop"`
		Link    string `json:"link"`
		Peer    string `json:"peer"`
		Options string `json:"options"`
	}
	var ctx struct {
		ISC struct {
			Relays    []keaRelay `json:"relays"`
			RelayInfo []keaRelay `json:"relay-info"`
		} `json:"ISC"`
	}
	if err := json.Unmarshal(userContext, &ctx); err != nil {
		return nil, fmt.Errorf("invalid user context %.200q: %w", userContext, err)
	}
	list := ctx.ISC.Relays
	if len(list) == 0 {
		list = ctx.ISC.RelayInfo
	}

	var relays []RelayInfo
	for i, kr := range list {
		var r RelayInfo
		var err error
		r.Hop = kr.Hop
		if r.Link, err = netip.ParseAddr(kr.Link); err != nil {
			return nil, fmt.Errorf("relay %d: invalid link address: %w", i, err)
		}
		if r.Peer, err = netip.ParseAddr(kr.Peer); err != nil {
			return nil, fmt.Errorf("relay %d: invalid peer address: %w", i, err)
		}
		if kr.Options != "" {
			text := strings.TrimPrefix(strings.TrimPrefix(kr.Options, "0x"), "0X")
			if r.Options, err = hex.DecodeString(text); err != nil {
				return nil, fmt.Errorf("relay %d: invalid options %q: %w", i, kr.Options, err)
			}
		}
		if err := r.splitOptions(); err != nil {
			return nil, fmt.Errorf("relay %d: %w", i, err)
		}
		relays = append(relays, r)
	}
	return relays, nil
}

// splitOptions walks r.Options and fills the fields of options 18, 37 and 53.
// The slices alias r.Options.
func (r *RelayInfo) splitOptions() error {
	err := walkOptions(r.Options, func(code uint16, data []byte) bool {
		switch code {
		case optInterfaceID:
			r.InterfaceID = data
		case optRemoteID:
			r.RemoteID = data
		case optRelayID:
			r.RelayID = data
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("relay options: %w", err)
	}
	return nil
}
