package ingest

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/alqd/alqd/store"
)

// RowKind is what a row of a Kea memfile lease file means for its lease.
// Every row is the complete new state of one lease, keyed by lease type and
// address; the kind follows from valid_lifetime and state, and for
// assignments from the previous row of the same key.
type RowKind uint8

// Row kinds. The table is Kea 2.2's (memfile schema 4.0); states 3 and 4
// come from later Kea versions.
const (
	// RowAssign: valid_lifetime > 0 and state 0 (assigned). The parser
	// can not tell a new binding from an extension; Follower refines it into
	// RowNew or RowExtend.
	RowAssign RowKind = iota
	// RowNew: an assignment with no active lease of the same DUID and IAID
	// on the key before it (Request, Solicit with rapid commit,
	// lease6-add, or reuse of a reclaimed address by another client).
	RowNew
	// RowExtend: an assignment to the same DUID and IAID as the active lease
	// before it (Renew, Rebind, Request again, lease6-update).
	RowExtend
	// RowRelease: valid_lifetime 0 and state 0 (Release or lease6-del; Kea
	// writes the old CLTT), or state 3 (released but held, Kea >= 2.7).
	// NOTE: with hold-reclaimed-time 0, Kea 2.2 also writes expiry this way,
	// and the row then reads as a release.
	RowRelease
	// RowExpire: valid_lifetime > 0 and state 2 (expired and reclaimed, held
	// for hold-reclaimed-time).
	RowExpire
	// RowFlush: valid_lifetime 0 and state 1, 2 or 3: Kea removes a lease
	// that was already declined, reclaimed or released.
	RowFlush
	// RowDecline: valid_lifetime > 0 and state 1 (declined; valid_lifetime
	// is the probation period, and Kea writes the empty DUID "00").
	RowDecline

	// NumRowKinds is the number of row kinds, for arrays indexed by RowKind.
	NumRowKinds
)

var rowKindNames = [NumRowKinds]string{"assign", "new", "extend", "release", "expire", "flush", "decline"}

func (k RowKind) String() string {
	if k < NumRowKinds {
		return rowKindNames[k]
	}
	return "RowKind(" + strconv.Itoa(int(k)) + ")"
}

// Kea lease states (the state column).
const (
	keaStateDefault    = 0 // assigned
	keaStateDeclined   = 1
	keaStateReclaimed  = 2 // expired and reclaimed
	keaStateReleased   = 3 // released but kept for lease affinity, Kea >= 2.7
	keaStateRegistered = 4 // address registered by the client (RFC 9686), Kea >= 3.0
)

// Row is one parsed row of a lease file.
type Row struct {
	Kind     RowKind
	SubnetID uint32
	Binding  store.Binding // Seq and ChangeTime are zero
}

// columns holds the index of each column the parser reads, -1 when the
// header lacks it. Kea's schema versions add columns at the end, so the
// indexes come from the header names and not from fixed positions.
type columns struct {
	count       int
	address     int
	duid        int
	valid       int
	expire      int
	subnetID    int
	preferred   int
	leaseType   int
	iaid        int
	prefixLen   int
	state       int // absent before memfile schema 3.0: every lease is assigned
	userContext int // absent before memfile schema 3.1: no relay information
}

// requiredColumns are the columns of memfile schema 1.0, the oldest Kea 6
// lease file, which every later schema keeps.
var requiredColumns = [...]string{"address", "duid", "valid_lifetime", "expire", "subnet_id", "pref_lifetime", "lease_type", "iaid", "prefix_len"}

// arenaChunk is the size of the blocks the parser copies binding bytes into.
const arenaChunk = 32 << 10

// Parser turns rows of a Kea DHCPv6 memfile lease file into binding changes
// with source store.SourceKea.
// It maps columns by the names in the file's header line, so files of older
// and newer memfile schemas parse as long as they have the schema 1.0
// columns. A Parser is not safe for concurrent use; its zero value is ready
// for SetHeader.
//
// The byte slices of a parsed binding are carved out of blocks the parser
// never writes again, so the binding may be kept and handed to the store.
type Parser struct {
	// SubnetLinks maps a Kea subnet-id to the link address reported for
	// bindings that were not relayed (Kea stores no link for them). Bindings
	// of subnets not in the map get no link address. Read-only once parsing
	// has started.
	SubnetLinks map[uint32]netip.Addr

	cols   columns
	header bool

	fields    []string
	unescaped []byte
	relays    []relayInfo
	arena     []byte

	// The relay fields of the previous user_context, reused when the next
	// row carries the same text. Kea repeats it for the IA_NA and IA_PD of a
	// client and on every renewal.
	cachedContext string
	cachedFields  relayFields
	cachedErr     error
}

// SetHeader reads the header line of a new file and resets the column map.
// Every file Kea writes, live or snapshot, starts with a header.
func (p *Parser) SetHeader(line string) error {
	p.header = false
	p.cols = columns{}
	c := &p.cols
	for _, idx := range []*int{&c.address, &c.duid, &c.valid, &c.expire, &c.subnetID, &c.preferred, &c.leaseType, &c.iaid, &c.prefixLen, &c.state, &c.userContext} {
		*idx = -1
	}

	names := strings.Split(strings.TrimSuffix(line, "\r"), ",")
	c.count = len(names)
	for i, name := range names {
		var idx *int
		switch name {
		case "address":
			idx = &c.address
		case "duid":
			idx = &c.duid
		case "valid_lifetime":
			idx = &c.valid
		case "expire":
			idx = &c.expire
		case "subnet_id":
			idx = &c.subnetID
		case "pref_lifetime":
			idx = &c.preferred
		case "lease_type":
			idx = &c.leaseType
		case "iaid":
			idx = &c.iaid
		case "prefix_len":
			idx = &c.prefixLen
		case "state":
			idx = &c.state
		case "user_context":
			idx = &c.userContext
		default:
			continue // a column this parser does not need, such as hostname or pool_id
		}
		if *idx >= 0 {
			return &RowError{Column: name, Err: fmt.Errorf("%w: column %s appears twice", ErrNoHeader, name)}
		}
		*idx = i
	}

	for i, idx := range []int{c.address, c.duid, c.valid, c.expire, c.subnetID, c.preferred, c.leaseType, c.iaid, c.prefixLen} {
		if idx < 0 {
			return &RowError{Err: fmt.Errorf("%w: column %s missing from %s", ErrNoHeader, requiredColumns[i], quote(line))}
		}
	}
	p.header = true
	return nil
}

// HasHeader reports whether SetHeader accepted a header since the parser was
// created or reset.
func (p *Parser) HasHeader() bool { return p.header }

// ResetHeader forgets the column map, for a new file whose header has not
// been read yet.
func (p *Parser) ResetHeader() { p.header = false }

// ParseRow parses one row (without its newline) into row. On error it
// returns a *RowError naming the column and leaves row in an unspecified
// state. Assignments come back as RowAssign. hot path: no allocation for a
// direct row or a repeated user_context, apart from a new byte block every
// 32 KiB of binding bytes.
func (p *Parser) ParseRow(line string, row *Row) error {
	if !p.header {
		return &RowError{Err: ErrNoHeader}
	}
	line = strings.TrimSuffix(line, "\r")
	fields := p.split(line)
	if len(fields) != p.cols.count {
		return &RowError{Err: fmt.Errorf("%w: %d columns, the header has %d", ErrColumnCount, len(fields), p.cols.count)}
	}
	c := &p.cols
	*row = Row{}
	b := &row.Binding
	b.Source = store.SourceKea

	// Key: lease type and address or prefix.
	leaseType, err := parseUint(fields[c.leaseType], 2)
	if err != nil {
		return columnError("lease_type", err)
	}
	b.Type = store.BindingType(leaseType)
	addr, err := parseIPv6(fields[c.address])
	if err != nil {
		return columnError("address", err)
	}
	bits := 128
	if b.Type == store.TypePD {
		// Kea reads prefix_len only for IA_PD and forces /128 otherwise.
		n, err := parseUint(fields[c.prefixLen], 128)
		if err != nil {
			return columnError("prefix_len", err)
		}
		bits = int(n)
	}
	b.Prefix = netip.PrefixFrom(addr, bits)
	if b.Prefix.Masked() != b.Prefix {
		return columnError("address", fmt.Errorf("%w: prefix %s has bits set past /%d", ErrInvalidAddress, b.Prefix, bits))
	}
	if err := store.CheckLeasable(b.Prefix); err != nil {
		return columnError("address", fmt.Errorf("%w: %w", ErrInvalidAddress, err))
	}

	// Numbers.
	valid, err := parseUint(fields[c.valid], 0xffffffff)
	if err != nil {
		return columnError("valid_lifetime", err)
	}
	preferred, err := parseUint(fields[c.preferred], 0xffffffff)
	if err != nil {
		return columnError("pref_lifetime", err)
	}
	expire, err := parseUint(fields[c.expire], 1<<62)
	if err != nil {
		return columnError("expire", err)
	}
	iaid, err := parseUint(fields[c.iaid], 0xffffffff)
	if err != nil {
		return columnError("iaid", err)
	}
	subnetID, err := parseUint(fields[c.subnetID], 0xffffffff)
	if err != nil {
		return columnError("subnet_id", err)
	}
	state := uint64(keaStateDefault)
	if c.state >= 0 {
		if state, err = parseUint(fields[c.state], keaStateRegistered); err != nil {
			return columnError("state", err)
		}
	}
	if expire < valid || expire-valid < store.MinCLTTUnix || expire-valid > store.MaxCLTTUnix {
		return columnError("expire", fmt.Errorf("%w: expire %d minus valid_lifetime %d is not a CLTT from %d (2000-01-01) to %d (2136-02-07)",
			ErrInvalidNumber, expire, valid, store.MinCLTTUnix, store.MaxCLTTUnix))
	}
	row.SubnetID = uint32(subnetID)
	b.IAID = uint32(iaid)
	// Kea writes expire = cltt + valid_lifetime; deletion rows carry the
	// old CLTT as expire and valid_lifetime 0.
	b.CLTT = time.Unix(int64(expire-valid), 0).UTC()
	row.Kind, b.State = classify(valid, state)
	if b.State == store.StateActive || b.State == store.StateDeclined {
		b.PreferredLifetime, b.ValidLifetime = uint32(preferred), uint32(valid)
	}

	// Client DUID. Kea's empty DUID "00" is only valid on declined leases;
	// the binding keeps it as the one byte 0, so that it still has a client
	// identifier to be stored and queried by.
	if duid := fields[c.duid]; duid == "00" && state != keaStateDeclined {
		return columnError("duid", ErrEmptyDUID)
	}
	if b.ClientID, err = p.keepHex(fields[c.duid]); err != nil {
		return columnError("duid", err)
	}
	if len(b.ClientID) == 0 || len(b.ClientID) > maxDUIDLen {
		return columnError("duid", fmt.Errorf("%w: DUID of %d bytes, want 1 to %d", ErrInvalidHex, len(b.ClientID), maxDUIDLen))
	}

	// Relay information, or the configured link of a direct client.
	if c.userContext >= 0 && fields[c.userContext] != "" {
		if err := p.setRelayFields(fields[c.userContext], b); err != nil {
			return columnError("user_context", err)
		}
	}
	if !b.LinkAddress.IsValid() {
		b.LinkAddress = p.SubnetLinks[row.SubnetID]
	}
	return nil
}

// classify maps valid_lifetime and state to the row kind and binding state.
// Ended states (released, expired) are reported with zero lifetimes, so a
// flush row, whose CLTT equals that of the reclaim row before it, gives the
// same binding as that row and the store records no second change.
func classify(valid, state uint64) (RowKind, store.State) {
	if valid == 0 {
		switch state {
		case keaStateDefault, keaStateRegistered:
			return RowRelease, store.StateReleased
		case keaStateReleased:
			return RowFlush, store.StateReleased
		default: // declined or reclaimed lease removed
			return RowFlush, store.StateExpired
		}
	}
	switch state {
	case keaStateDeclined:
		return RowDecline, store.StateDeclined
	case keaStateReclaimed:
		return RowExpire, store.StateExpired
	case keaStateReleased:
		return RowRelease, store.StateReleased
	default: // assigned, or registered by the client itself
		return RowAssign, store.StateActive
	}
}

// split cuts line at every comma into p.fields. Kea escapes commas inside
// columns as "&#x2c", so a plain split is exact.
func (p *Parser) split(line string) []string {
	f := p.fields[:0]
	for {
		i := strings.IndexByte(line, ',')
		if i < 0 {
			break
		}
		f = append(f, line[:i])
		line = line[i+1:]
	}
	f = append(f, line)
	p.fields = f
	return f
}

// setRelayFields decodes an escaped user_context column and sets the relay
// fields of b. The decoded result of the previous text is reused when the
// text repeats.
func (p *Parser) setRelayFields(escaped string, b *store.Binding) error {
	if escaped != p.cachedContext {
		p.cachedContext = strings.Clone(escaped)
		p.cachedFields, p.cachedErr = p.decodeRelayFields(escaped)
	}
	if p.cachedErr != nil {
		return p.cachedErr
	}
	f := &p.cachedFields
	if f.message == nil {
		return nil // a user context without relay information: a direct client
	}
	b.LinkAddress = f.link
	b.RelayPeer = f.peer
	b.InterfaceID = p.keep(f.interfaceID)
	b.RemoteID = p.keep(f.remoteID)
	b.RelayID = p.keep(f.relayID)
	b.RelayMessage = p.keep(f.message)
	return nil
}

func (p *Parser) decodeRelayFields(escaped string) (relayFields, error) {
	text, err := unescape(p.unescaped[:0], escaped)
	p.unescaped = text
	if err != nil {
		return relayFields{}, err
	}
	if p.relays, err = decodeUserContext(text, p.relays); err != nil {
		return relayFields{}, err
	}
	_, fields, err := resolveRelays(nil, p.relays)
	return fields, err
}

// unescape appends s to dst with every "&#xHH" replaced by the byte 0xHH.
// Kea escapes "," and "&" this way in text columns. Kea itself leaves an
// escape tag without two hex digits as it is; it never writes one, so here it
// means a corrupt row and is an error.
func unescape(dst []byte, s string) ([]byte, error) {
	const tag = "&#x"
	for {
		i := strings.Index(s, tag)
		if i < 0 {
			return append(dst, s...), nil
		}
		dst = append(dst, s[:i]...)
		s = s[i+len(tag):]
		if len(s) < 2 || hexValue[s[0]]|hexValue[s[1]] == 0xff {
			return dst, fmt.Errorf("%w: %s", ErrInvalidEscape, quote(tag+s[:min(2, len(s))]))
		}
		dst = append(dst, hexValue[s[0]]<<4|hexValue[s[1]])
		s = s[2:]
	}
}

// keepHex decodes the hex text s into the arena.
func (p *Parser) keepHex(s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	p.reserve(len(s)/2 + 1)
	start := len(p.arena)
	out, err := appendHex(p.arena, s)
	if err != nil {
		p.arena = p.arena[:start]
		return nil, err
	}
	p.arena = out
	return out[start:len(out):len(out)], nil
}

// keep copies b into the arena; nil and empty slices give nil.
func (p *Parser) keep(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	p.reserve(len(b))
	start := len(p.arena)
	p.arena = append(p.arena, b...)
	return p.arena[start:len(p.arena):len(p.arena)]
}

// reserve makes room for n more bytes. A full block is dropped, not reused:
// bindings handed out earlier still point into it.
func (p *Parser) reserve(n int) {
	if cap(p.arena)-len(p.arena) >= n {
		return
	}
	p.arena = make([]byte, 0, max(n, arenaChunk))
}

// parseUint parses a decimal number of at most limit. Unlike
// strconv.ParseUint it rejects signs and underscores, which Kea never writes.
func parseUint(s string, limit uint64) (uint64, error) {
	if s == "" || len(s) > 20 {
		return 0, fmt.Errorf("%w: %s", ErrInvalidNumber, quote(s))
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		d := s[i] - '0'
		if d > 9 {
			return 0, fmt.Errorf("%w: %s", ErrInvalidNumber, quote(s))
		}
		if n > limit/10 || (n == limit/10 && uint64(d) > limit%10) {
			return 0, fmt.Errorf("%w: %s is larger than %d", ErrInvalidNumber, quote(s), limit)
		}
		n = n*10 + uint64(d)
	}
	return n, nil
}

func columnError(column string, err error) *RowError {
	return &RowError{Column: column, Err: err}
}
