package mirror

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/requestor"
)

// Record is one stored binding: the last state the server reported for it,
// and which message reported it. Byte slices belong to the Record.
type Record struct {
	BindingKey

	ClientID []byte
	IAID     uint32
	HasIAID  bool
	State    requestor.State

	// Lifetimes as the server sent them, and their ends in local time (zero
	// for Infinity and for an ended binding).
	PreferredLifetime uint32
	ValidLifetime     uint32
	PreferredUntil    time.Time
	ValidUntil        time.Time

	CLTTime         uint32
	HasCLTTime      bool
	LastTransaction time.Time

	// BaseTime is the server base-time of the message that set the record,
	// Source the query it came from and Received when it arrived.
	BaseTime    uint32
	HasBaseTime bool
	Source      requestor.Source
	Received    time.Time

	// AsOf is the server time at which the record's state is known to be
	// current, and orders it against other reports of the binding (see
	// supersedes). It is the base-time for the active connection, and the
	// earliest base-time of the bulk for a bulk record. A server may read a
	// whole bulk from a snapshot taken when it began, while it stamps each
	// message with the time it builds it. So a late message of a long bulk
	// can carry a state older than its base-time. Meaningful only with
	// HasBaseTime.
	AsOf uint32

	LinkAddress  netip.Addr
	RelayID      []byte
	RemoteID     []byte // OPTION_REMOTE_ID data: 4-octet enterprise number, then the remote-id
	InterfaceID  []byte
	RelayPeer    netip.Addr
	RelayMessage []byte
}

// Expired reports whether the record is ended, or its valid lifetime ran
// out before now. A server reports an expired binding as ended, but one
// that expired while the history for it was lost never is.
func (r *Record) Expired(now time.Time) bool {
	return r.State == requestor.StateEnded || !r.ValidUntil.IsZero() && r.ValidUntil.Before(now)
}

// recordOf converts a binding event. The slices are copied.
func recordOf(b *requestor.Binding) Record {
	r := Record{
		BindingKey:        keyOf(b),
		ClientID:          clone(b.ClientID),
		IAID:              b.IAID,
		HasIAID:           b.HasIAID,
		State:             b.State,
		PreferredLifetime: b.PreferredLifetime,
		ValidLifetime:     b.ValidLifetime,
		PreferredUntil:    b.PreferredUntil,
		ValidUntil:        b.ValidUntil,
		CLTTime:           b.CLTTime,
		HasCLTTime:        b.HasCLTTime,
		LastTransaction:   b.LastTransaction,
		BaseTime:          b.BaseTime,
		HasBaseTime:       b.HasBaseTime,
		Source:            b.Source,
		Received:          b.Received,
		AsOf:              b.BaseTime,
		LinkAddress:       b.LinkAddress,
		RelayID:           clone(b.RelayID),
		InterfaceID:       clone(b.InterfaceID),
		RelayPeer:         b.RelayPeer,
		RelayMessage:      clone(b.RelayMessage),
	}
	if b.HasRemoteID {
		r.RemoteID = binary.BigEndian.AppendUint32(nil, b.RemoteID.EnterpriseNumber)
		r.RemoteID = append(r.RemoteID, b.RemoteID.ID...)
	}
	return r
}

// fromBulk reports whether source is a bulk query the Watcher runs: the
// initial bulk or a recovery.
func fromBulk(source requestor.Source) bool {
	return source == requestor.SourceRecovery || source == requestor.SourceInitial
}

// bulkOrder is the ordering data of the running bulk: the AsOf of its
// records, and the local time it started (zero before the first bulk).
type bulkOrder struct {
	asOf  uint32
	start time.Time
}

// supersedes reports whether r, from a newer message, may replace old.
// Messages from the active connection and from a bulk run in parallel, so
// arrival order across connections does not order the states. AsOf
// decides, and on a tie (base-times are whole seconds) the active
// connection wins, because it reports changes as they happen.
//
// Without base-times the later arrival wins, except over a record that the
// active connection read at or after bulkStart, the local time the running
// bulk started. The bulk may have read its state before that record's
// change, and the active connection sends every change after the record as
// well, so keeping the record loses nothing.
func (r *Record) supersedes(old *Record, bulkStart time.Time) bool {
	if !r.HasBaseTime || !old.HasBaseTime {
		return !fromBulk(r.Source) || bulkStart.IsZero() || old.Source != requestor.SourceActive || old.Received.Before(bulkStart)
	}
	if r.AsOf != old.AsOf {
		return int32(r.AsOf-old.AsOf) > 0
	}
	return r.Source == requestor.SourceActive || old.Source != requestor.SourceActive
}

// Record value layout, version 2, all integers big-endian:
//
//	version (1) | type (1) | state (1) | source (1) | flags (1)
//	iaid (4) | preferred (4) | valid (4) | clt (4) | base-time (4)
//	as-of (4)
//	preferred-until, valid-until, last-transaction, received (8 each:
//	    Unix nanoseconds, 0 for the zero time)
//	link-address (16) | relay-peer (16)
//	client-id, relay-id, remote-id, interface-id, relay-message
//	    (each: uvarint length, then the octets)
//
// Version 1 values, written before as-of existed, lack that field, so it
// reads as the base-time.
const (
	recordVersion = 2

	flagIAID     = 1 << 0
	flagCLT      = 1 << 1
	flagBaseTime = 1 << 2
	flagLink     = 1 << 3
	flagPeer     = 1 << 4

	recordFixedLenV1 = 5 + 5*4 + 4*8 + 2*16
	recordFixedLen   = recordFixedLenV1 + 4
)

// appendValue appends the encoded value of r (its key is stored apart).
func (r *Record) appendValue(b []byte) []byte {
	var flags byte
	if r.HasIAID {
		flags |= flagIAID
	}
	if r.HasCLTTime {
		flags |= flagCLT
	}
	if r.HasBaseTime {
		flags |= flagBaseTime
	}
	if r.LinkAddress.IsValid() {
		flags |= flagLink
	}
	if r.RelayPeer.IsValid() {
		flags |= flagPeer
	}
	b = append(b, recordVersion, byte(r.Type), byte(r.State), byte(r.Source), flags)
	for _, v := range []uint32{r.IAID, r.PreferredLifetime, r.ValidLifetime, r.CLTTime, r.BaseTime, r.AsOf} {
		b = binary.BigEndian.AppendUint32(b, v)
	}
	for _, t := range []time.Time{r.PreferredUntil, r.ValidUntil, r.LastTransaction, r.Received} {
		var n int64
		if !t.IsZero() {
			n = t.UnixNano()
		}
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	for _, a := range []netip.Addr{r.LinkAddress, r.RelayPeer} {
		var a16 [16]byte
		if a.IsValid() {
			a16 = a.As16()
		}
		b = append(b, a16[:]...)
	}
	for _, s := range [][]byte{r.ClientID, r.RelayID, r.RemoteID, r.InterfaceID, r.RelayMessage} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

// decodeValue decodes a record value into r, copying every slice; r's key
// must be set by the caller.
func (r *Record) decodeValue(v []byte) error {
	if len(v) == 0 || v[0] < 1 || v[0] > recordVersion {
		return fmt.Errorf("%w: record version % x", ErrCorrupt, v[:min(len(v), 1)])
	}
	fixed := recordFixedLen
	if v[0] == 1 {
		fixed = recordFixedLenV1
	}
	if len(v) < fixed {
		return fmt.Errorf("%w: record of %d octets, want at least %d", ErrCorrupt, len(v), fixed)
	}
	if requestor.BindingType(v[1]) != r.Type {
		return fmt.Errorf("%w: record type %d under a key of type %d", ErrCorrupt, v[1], r.Type)
	}
	r.State, r.Source = requestor.State(v[2]), requestor.Source(v[3])
	flags := v[4]
	r.HasIAID, r.HasCLTTime, r.HasBaseTime = flags&flagIAID != 0, flags&flagCLT != 0, flags&flagBaseTime != 0
	p := v[5:]

	u32 := func() uint32 { x := binary.BigEndian.Uint32(p); p = p[4:]; return x }
	r.IAID, r.PreferredLifetime, r.ValidLifetime, r.CLTTime, r.BaseTime = u32(), u32(), u32(), u32(), u32()
	r.AsOf = r.BaseTime
	if v[0] >= 2 {
		r.AsOf = u32()
	}
	when := func() time.Time {
		n := int64(binary.BigEndian.Uint64(p))
		p = p[8:]
		if n == 0 {
			return time.Time{}
		}
		return time.Unix(0, n)
	}
	r.PreferredUntil, r.ValidUntil, r.LastTransaction, r.Received = when(), when(), when(), when()
	addr := func(present bool) netip.Addr {
		a := netip.AddrFrom16([16]byte(p[:16]))
		p = p[16:]
		if !present {
			return netip.Addr{}
		}
		return a
	}
	r.LinkAddress, r.RelayPeer = addr(flags&flagLink != 0), addr(flags&flagPeer != 0)

	for _, dst := range []*[]byte{&r.ClientID, &r.RelayID, &r.RemoteID, &r.InterfaceID, &r.RelayMessage} {
		n, k := binary.Uvarint(p)
		if k <= 0 || n > uint64(len(p)-k) {
			return fmt.Errorf("%w: record field length runs past the end", ErrCorrupt)
		}
		*dst = clone(p[k : k+int(n)])
		p = p[k+int(n):]
	}
	if len(p) != 0 {
		return fmt.Errorf("%w: %d octets after the last record field", ErrCorrupt, len(p))
	}
	return nil
}

// RemoteIDValue decodes RemoteID, reporting false when there is none.
func (r *Record) RemoteIDValue() (codec.RemoteID, bool) {
	var id codec.RemoteID
	if id.Decode(r.RemoteID) != nil {
		return codec.RemoteID{}, false
	}
	return id, true
}

func clone(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}

// end turns r into the record of a binding the server no longer has, as
// found at now by a full bulk from source whose earliest base-time
// is base. The base-time and AsOf move to base when that is later, and
// OPTION_CLT_TIME with them, so that the last transaction stays where it
// was.
func (r *Record) end(source requestor.Source, base uint32, hasBase bool, now time.Time) {
	r.State = requestor.StateEnded
	r.PreferredLifetime, r.ValidLifetime = 0, 0
	r.PreferredUntil, r.ValidUntil = time.Time{}, time.Time{}
	if hasBase && r.HasBaseTime && int32(base-r.BaseTime) > 0 {
		if r.HasCLTTime {
			r.CLTTime += base - r.BaseTime
		}
		r.BaseTime = base
	}
	if hasBase && !r.HasBaseTime {
		r.BaseTime, r.HasBaseTime = base, true
		r.HasCLTTime = false
	}
	if hasBase && int32(base-r.AsOf) > 0 {
		r.AsOf = base
	}
	r.Source = source
	r.Received = now
}
