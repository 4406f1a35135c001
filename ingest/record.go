package ingest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/alqd/alqd/store"
)

// Field names of an NDJSON binding record; docs/INGEST.md describes each.
const (
	fieldType              = "type"
	fieldAddress           = "address"
	fieldPrefix            = "prefix"
	fieldClientID          = "client_id"
	fieldIAID              = "iaid"
	fieldPreferredLifetime = "preferred_lifetime"
	fieldValidLifetime     = "valid_lifetime"
	fieldState             = "state"
	fieldCLTT              = "cltt"
	fieldLinkAddress       = "link_address"
	fieldRelayID           = "relay_id"
	fieldRemoteID          = "remote_id"
	fieldInterfaceID       = "interface_id"
	fieldRelayPeer         = "relay_peer"
	fieldRelayMessage      = "relay_message"
)

// recordFields lists the fields in the order AppendRecord writes them; a
// field's index is its bit in a fieldSet.
var recordFields = [...]string{
	fieldType, fieldAddress, fieldPrefix, fieldClientID, fieldIAID,
	fieldPreferredLifetime, fieldValidLifetime, fieldState, fieldCLTT,
	fieldLinkAddress, fieldRelayID, fieldRemoteID, fieldInterfaceID,
	fieldRelayPeer, fieldRelayMessage,
}

// DUID lengths: a 2-byte type and 1 to 128 bytes of identifier (RFC 8415
// section 11.1).
const (
	minDUIDLen = 3
	maxDUIDLen = 130
)

var typeNames = map[string]store.BindingType{"na": store.TypeNA, "ta": store.TypeTA, "pd": store.TypePD}

var stateNames = map[string]store.State{
	"active":   store.StateActive,
	"released": store.StateReleased,
	"expired":  store.StateExpired,
	"declined": store.StateDeclined,
}

// DecodeRecord decodes one NDJSON record (a line without its newline) into b,
// replacing all of b. The byte slices of b are newly allocated and do not
// alias line. On error it returns a *RecordError whose Line is 0 and leaves b
// in an unspecified state. Unknown and repeated fields are errors.
func DecodeRecord(line []byte, b *store.Binding) error {
	var raw [len(recordFields)]json.RawMessage
	if err := splitObject(line, &raw); err != nil {
		return err
	}
	*b = store.Binding{}
	d := recordDecoder{raw: &raw, b: b}
	d.decodeKey()
	d.decodeClient()
	d.decodeLifetimes()
	d.decodeRelay()
	return d.err
}

// splitObject reads the members of one JSON object into raw, indexed like
// recordFields. Every field of a record is a string or an integer, so the
// scanner accepts only those as values: anything else is a wrong type for
// whichever field it is. The members alias line. hot path: no allocation
// unless a field name has escapes.
func splitObject(line []byte, raw *[len(recordFields)]json.RawMessage) error {
	s := jsonScanner{b: line}
	if !s.consume('{') {
		return &RecordError{Err: fmt.Errorf("%w: the line is not a JSON object", ErrInvalidJSON)}
	}
	if s.consume('}') {
		return s.end()
	}
	for {
		name, ok := s.fieldName()
		if !ok || !s.consume(':') {
			return &RecordError{Err: fmt.Errorf("%w: expected a field name and a colon at offset %d", ErrInvalidJSON, s.pos)}
		}
		index := fieldIndexOf(name)
		if index < 0 {
			return &RecordError{Field: string(name), Err: fmt.Errorf("%w: unknown field", ErrUnexpectedField)}
		}
		if raw[index] != nil {
			return &RecordError{Field: string(name), Err: fmt.Errorf("%w: field appears twice", ErrUnexpectedField)}
		}
		value, err := s.value()
		if err != nil {
			return &RecordError{Field: string(name), Err: err}
		}
		raw[index] = value
		if s.consume(',') {
			continue
		}
		if s.consume('}') {
			return s.end()
		}
		return &RecordError{Err: fmt.Errorf("%w: expected , or } at offset %d", ErrInvalidJSON, s.pos)}
	}
}

// jsonScanner reads the flat JSON objects of NDJSON records (RFC 8259
// grammar for strings and numbers).
type jsonScanner struct {
	b   []byte
	pos int
}

func (s *jsonScanner) skipSpace() {
	for s.pos < len(s.b) {
		switch s.b[s.pos] {
		case ' ', '\t', '\r', '\n':
			s.pos++
		default:
			return
		}
	}
}

// consume skips white space and then c, if c is next.
func (s *jsonScanner) consume(c byte) bool {
	s.skipSpace()
	if s.pos < len(s.b) && s.b[s.pos] == c {
		s.pos++
		return true
	}
	return false
}

func (s *jsonScanner) end() error {
	s.skipSpace()
	if s.pos != len(s.b) {
		return &RecordError{Err: fmt.Errorf("%w: data after the object at offset %d; each line holds one record", ErrInvalidJSON, s.pos)}
	}
	return nil
}

// fieldName reads a string and returns its decoded text, which aliases the
// line unless the name has escapes.
func (s *jsonScanner) fieldName() ([]byte, bool) {
	s.skipSpace()
	start := s.pos
	if !s.skipString() {
		return nil, false
	}
	raw := s.b[start:s.pos]
	if bytes.IndexByte(raw, '\\') < 0 {
		return raw[1 : len(raw)-1], true
	}
	var name string
	if json.Unmarshal(raw, &name) != nil {
		return nil, false
	}
	return []byte(name), true
}

// value reads a string or a number and returns its JSON text.
func (s *jsonScanner) value() ([]byte, error) {
	s.skipSpace()
	start := s.pos
	if s.pos < len(s.b) && s.b[s.pos] == '"' {
		if !s.skipString() {
			return nil, fmt.Errorf("%w: invalid string at offset %d", ErrInvalidJSON, start)
		}
		return s.b[start:s.pos], nil
	}
	if s.skipNumber() {
		return s.b[start:s.pos], nil
	}
	if s.pos < len(s.b) && bytes.IndexByte([]byte("{[tfn"), s.b[s.pos]) >= 0 {
		// An object, array, true, false or null: JSON, but the wrong type.
		return nil, fmt.Errorf("%w: must be a string or an integer, found %s at offset %d", ErrInvalidValue, quote(string(s.b[start:min(len(s.b), start+8)])), start)
	}
	return nil, fmt.Errorf("%w: missing or invalid value at offset %d", ErrInvalidJSON, start)
}

// skipString moves past a JSON string, checking escapes and rejecting
// control characters.
func (s *jsonScanner) skipString() bool {
	if s.pos >= len(s.b) || s.b[s.pos] != '"' {
		return false
	}
	for i := s.pos + 1; i < len(s.b); i++ {
		switch c := s.b[i]; {
		case c == '"':
			s.pos = i + 1
			return true
		case c < 0x20:
			return false
		case c == '\\':
			i++
			if i >= len(s.b) {
				return false
			}
			switch s.b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(s.b) {
					return false
				}
				for _, h := range s.b[i+1 : i+5] {
					if hexValue[h] == 0xff {
						return false
					}
				}
				i += 4
			default:
				return false
			}
		}
	}
	return false
}

// skipNumber moves past a JSON number: -?int frac? exp?
func (s *jsonScanner) skipNumber() bool {
	i := s.pos
	digits := func() int {
		n := 0
		for i < len(s.b) && s.b[i] >= '0' && s.b[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(s.b) && s.b[i] == '-' {
		i++
	}
	intStart := i
	if n := digits(); n == 0 || (n > 1 && s.b[intStart] == '0') {
		return false
	}
	if i < len(s.b) && s.b[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(s.b) && (s.b[i] == 'e' || s.b[i] == 'E') {
		i++
		if i < len(s.b) && (s.b[i] == '+' || s.b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	s.pos = i
	return true
}

func fieldIndex(name string) int {
	for i, f := range recordFields {
		if f == name {
			return i
		}
	}
	return -1
}

// fieldIndexOf is fieldIndex for a name read from a line. The comparison
// converts name without allocating.
func fieldIndexOf(name []byte) int {
	for i, f := range recordFields {
		if string(name) == f {
			return i
		}
	}
	return -1
}

// recordDecoder converts the raw members of a record into b, keeping the
// first error.
type recordDecoder struct {
	raw *[len(recordFields)]json.RawMessage
	b   *store.Binding
	err error
}

func (d *recordDecoder) fail(field string, format string, args ...any) {
	if d.err == nil {
		d.err = &RecordError{Field: field, Err: fmt.Errorf("%w: "+format, append([]any{ErrInvalidValue}, args...)...)}
	}
}

func (d *recordDecoder) failWith(field string, err error) {
	if d.err == nil {
		d.err = &RecordError{Field: field, Err: err}
	}
}

func (d *recordDecoder) present(field string) bool { return d.raw[fieldIndex(field)] != nil }

// text returns a string member; ok is false when it is absent or invalid.
func (d *recordDecoder) text(field string) (s string, ok bool) {
	raw := d.raw[fieldIndex(field)]
	if raw == nil || d.err != nil {
		return "", false
	}
	if raw[0] != '"' {
		d.fail(field, "must be a string, not %s", quote(string(raw)))
		return "", false
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1]), true
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		d.failWith(field, fmt.Errorf("%w: %v", ErrInvalidJSON, err))
		return "", false
	}
	return s, true
}

// number returns a uint32 member; ok is false when it is absent or invalid.
func (d *recordDecoder) number(field string) (n uint32, ok bool) {
	raw := d.raw[fieldIndex(field)]
	if raw == nil || d.err != nil {
		return 0, false
	}
	v, err := strconv.ParseUint(string(raw), 10, 32)
	if err != nil {
		d.fail(field, "must be an integer from 0 to 4294967295, not %s", quote(string(raw)))
		return 0, false
	}
	return uint32(v), true
}

func (d *recordDecoder) require(field string) bool {
	if d.err == nil && !d.present(field) {
		d.err = &RecordError{Field: field, Err: ErrMissingField}
	}
	return d.err == nil
}

func (d *recordDecoder) forbid(field, reason string) {
	if d.err == nil && d.present(field) {
		d.err = &RecordError{Field: field, Err: fmt.Errorf("%w: %s", ErrUnexpectedField, reason)}
	}
}

// hexBytes decodes a hex member of minLen to maxLen bytes.
func (d *recordDecoder) hexBytes(field string, minLen, maxLen int) []byte {
	s, ok := d.text(field)
	if !ok {
		return nil
	}
	v, err := appendHex(nil, s)
	if err != nil {
		d.failWith(field, err)
		return nil
	}
	if len(v) < minLen || len(v) > maxLen {
		d.fail(field, "%d bytes, want %d to %d", len(v), minLen, maxLen)
		return nil
	}
	return v
}

func (d *recordDecoder) address(field string) netip.Addr {
	s, ok := d.text(field)
	if !ok {
		return netip.Addr{}
	}
	a, err := parseIPv6(s)
	if err != nil {
		d.failWith(field, err)
	}
	return a
}

// decodeKey reads type and address or prefix.
func (d *recordDecoder) decodeKey() {
	if !d.require(fieldType) {
		return
	}
	name, ok := d.text(fieldType)
	if !ok {
		return
	}
	typ, known := typeNames[name]
	if !known {
		d.fail(fieldType, "%s is not one of na, ta, pd", quote(name))
		return
	}
	d.b.Type = typ

	if typ == store.TypePD {
		d.forbid(fieldAddress, "an IA_PD binding has a prefix, not an address")
		if !d.require(fieldPrefix) {
			return
		}
		s, _ := d.text(fieldPrefix)
		p, err := netip.ParsePrefix(s)
		if err != nil || !p.Addr().Is6() || p.Addr().Is4In6() || p.Addr().Zone() != "" || p.Bits() == 0 {
			d.failWith(fieldPrefix, fmt.Errorf("%w: %s is not an IPv6 prefix such as 2001:db8::/56", ErrInvalidAddress, quote(s)))
			return
		}
		if p.Masked() != p {
			d.failWith(fieldPrefix, fmt.Errorf("%w: %s has bits set past /%d", ErrInvalidAddress, quote(s), p.Bits()))
			return
		}
		if err := store.CheckLeasable(p); err != nil {
			d.failWith(fieldPrefix, fmt.Errorf("%w: %w", ErrInvalidAddress, err))
			return
		}
		d.b.Prefix = p
		return
	}

	d.forbid(fieldPrefix, "an IA_NA or IA_TA binding has an address, not a prefix")
	if !d.require(fieldAddress) {
		return
	}
	s, _ := d.text(fieldAddress)
	if p, err := netip.ParsePrefix(s); err == nil && p.Bits() == 128 {
		s = p.Addr().String() // "2001:db8::1/128" is accepted as well
	}
	a, err := parseIPv6(s)
	if err != nil {
		d.failWith(fieldAddress, err)
		return
	}
	p := netip.PrefixFrom(a, 128)
	if err := store.CheckLeasable(p); err != nil {
		d.failWith(fieldAddress, fmt.Errorf("%w: %w", ErrInvalidAddress, err))
		return
	}
	d.b.Prefix = p
}

// decodeClient reads state, client_id, iaid and cltt.
func (d *recordDecoder) decodeClient() {
	if !d.require(fieldState) {
		return
	}
	name, ok := d.text(fieldState)
	if !ok {
		return
	}
	state, known := stateNames[name]
	if !known {
		d.fail(fieldState, "%s is not one of active, released, expired, declined", quote(name))
		return
	}
	d.b.State = state

	// A declined address has no real client: Kea writes the empty DUID
	// "00" on Decline, which is shorter than any DUID (RFC 8415 section 11.1).
	d.require(fieldClientID)
	minLen := minDUIDLen
	if state == store.StateDeclined {
		minLen = 1
	} else {
		d.require(fieldIAID)
	}
	d.b.ClientID = d.hexBytes(fieldClientID, minLen, maxDUIDLen)
	d.b.IAID, _ = d.number(fieldIAID)

	if !d.require(fieldCLTT) {
		return
	}
	if s, ok := d.text(fieldCLTT); ok {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			d.fail(fieldCLTT, "%s is not an RFC 3339 time such as 2026-12-04T19:25:00Z", quote(s))
			return
		}
		if err := store.CheckCLTT(t); err != nil {
			d.fail(fieldCLTT, "%w", err)
			return
		}
		d.b.CLTT = t.UTC()
	}
}

// decodeLifetimes reads the lifetimes: required for active and declined
// bindings, zero or absent for ended ones.
func (d *recordDecoder) decodeLifetimes() {
	if d.err != nil {
		return
	}
	if !d.b.State.Ended() {
		d.require(fieldPreferredLifetime)
		d.require(fieldValidLifetime)
	}
	preferred, _ := d.number(fieldPreferredLifetime)
	valid, _ := d.number(fieldValidLifetime)
	if d.err != nil {
		return
	}
	if d.b.State.Ended() {
		if preferred != 0 {
			d.fail(fieldPreferredLifetime, "must be 0 or absent when state is %s", d.b.State)
		} else if valid != 0 {
			d.fail(fieldValidLifetime, "must be 0 or absent when state is %s", d.b.State)
		}
		return
	}
	// RFC 8415 section 21.6: the preferred lifetime never exceeds the valid one.
	if preferred > valid {
		d.fail(fieldPreferredLifetime, "%d exceeds valid_lifetime %d", preferred, valid)
		return
	}
	d.b.PreferredLifetime, d.b.ValidLifetime = preferred, valid
}

// decodeRelay reads the optional relay fields.
func (d *recordDecoder) decodeRelay() {
	if d.err != nil {
		return
	}
	if d.present(fieldLinkAddress) {
		d.b.LinkAddress = d.address(fieldLinkAddress)
	}
	d.b.RelayID = d.hexBytes(fieldRelayID, minDUIDLen, maxDUIDLen)
	d.b.RemoteID = d.hexBytes(fieldRemoteID, enterpriseNumLen+1, maxOptionLen)
	d.b.InterfaceID = d.hexBytes(fieldInterfaceID, 1, maxOptionLen)

	// OPTION_LQ_RELAY_DATA carries both or neither (RFC 5007 section 4.1.2.4).
	switch peer, message := d.present(fieldRelayPeer), d.present(fieldRelayMessage); {
	case peer && !message:
		d.require(fieldRelayMessage)
	case message && !peer:
		d.require(fieldRelayPeer)
	case peer:
		d.b.RelayPeer = d.address(fieldRelayPeer)
		d.b.RelayMessage = d.hexBytes(fieldRelayMessage, relayHeaderLen, store.MaxRelayMessageLen)
		if d.err == nil && d.b.RelayMessage[0] != msgRelayForw {
			d.fail(fieldRelayMessage, "message type %d, want 12 (RELAY-FORW)", d.b.RelayMessage[0])
		}
	}
}

// AppendRecord appends the NDJSON record of b, without newline, to dst. It
// writes every field DecodeRecord reads back into an equal binding: the
// optional ones only when set. It fails for a binding with an unknown type or
// state, or an IA_NA or IA_TA binding that is not a /128.
func AppendRecord(dst []byte, b *store.Binding) ([]byte, error) {
	typ, state := typeText(b.Type), stateText(b.State)
	if typ == "" || state == "" || !b.Prefix.IsValid() {
		return dst, fmt.Errorf("%w: binding of type %v, state %v, prefix %v can not be sent", ErrInvalidValue, b.Type, b.State, b.Prefix)
	}
	if b.Type != store.TypePD && b.Prefix.Bits() != 128 {
		return dst, fmt.Errorf("%w: %v binding with prefix %v, want a /128", ErrInvalidValue, b.Type, b.Prefix)
	}

	dst = append(dst, `{"type":"`...)
	dst = append(dst, typ...)
	if b.Type == store.TypePD {
		dst = append(dst, `","prefix":"`...)
		dst = b.Prefix.AppendTo(dst)
	} else {
		dst = append(dst, `","address":"`...)
		dst = b.Prefix.Addr().AppendTo(dst)
	}
	dst = append(dst, '"')
	dst = appendHexField(dst, fieldClientID, b.ClientID)
	dst = appendNumberField(dst, fieldIAID, b.IAID)
	dst = appendNumberField(dst, fieldPreferredLifetime, b.PreferredLifetime)
	dst = appendNumberField(dst, fieldValidLifetime, b.ValidLifetime)
	dst = append(dst, `,"state":"`...)
	dst = append(dst, state...)
	dst = append(dst, `","cltt":"`...)
	dst = b.CLTT.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, '"')
	if b.LinkAddress.IsValid() {
		dst = appendAddressField(dst, fieldLinkAddress, b.LinkAddress)
	}
	dst = appendHexField(dst, fieldRelayID, b.RelayID)
	dst = appendHexField(dst, fieldRemoteID, b.RemoteID)
	dst = appendHexField(dst, fieldInterfaceID, b.InterfaceID)
	if len(b.RelayMessage) > 0 {
		dst = appendAddressField(dst, fieldRelayPeer, b.RelayPeer)
		dst = appendHexField(dst, fieldRelayMessage, b.RelayMessage)
	}
	return append(dst, '}'), nil
}

func appendHexField(dst []byte, name string, v []byte) []byte {
	if len(v) == 0 {
		return dst
	}
	dst = append(dst, `,"`...)
	dst = append(dst, name...)
	dst = append(dst, `":"`...)
	dst = appendHexText(dst, v)
	return append(dst, '"')
}

func appendNumberField(dst []byte, name string, v uint32) []byte {
	dst = append(dst, `,"`...)
	dst = append(dst, name...)
	dst = append(dst, `":`...)
	return strconv.AppendUint(dst, uint64(v), 10)
}

func appendAddressField(dst []byte, name string, a netip.Addr) []byte {
	dst = append(dst, `,"`...)
	dst = append(dst, name...)
	dst = append(dst, `":"`...)
	dst = a.AppendTo(dst)
	return append(dst, '"')
}

func typeText(t store.BindingType) string {
	switch t {
	case store.TypeNA:
		return "na"
	case store.TypeTA:
		return "ta"
	case store.TypePD:
		return "pd"
	}
	return ""
}

func stateText(s store.State) string {
	switch s {
	case store.StateActive, store.StateReleased, store.StateExpired, store.StateDeclined:
		return s.String()
	}
	return ""
}
