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

// supersedes reports whether r, from a newer message, may replace old.
// Messages from the active connection and from a bulk run in parallel, so
// arrival order says nothing across connections: the base-time decides,
// and on a tie (base-times are whole seconds) the active connection wins,
// because it reports changes as they happen. Without base-times the later
// arrival wins.
func (r *Record) supersedes(old *Record) bool {
	if !r.HasBaseTime || !old.HasBaseTime {
		return true
	}
	if r.BaseTime != old.BaseTime {
		return int32(r.BaseTime-old.BaseTime) > 0
	}
	return r.Source == requestor.SourceActive || old.Source != requestor.SourceActive
}

// Record value layout, version 1, all integers big-endian:
//
//	version (1) | type (1) | state (1) | source (1) | flags (1)
//	iaid (4) | preferred (4) | valid (4) | clt (4) | base-time (4)
//	preferred-until, valid-until, last-transaction, received (8 each:
//	    Unix nanoseconds, 0 for the zero time)
//	link-address (16) | relay-peer (16)
//	client-id, relay-id, remote-id, interface-id, relay-message
//	    (each: uvarint length, then the octets)
const (
	recordVersion = 1

	flagIAID     = 1 << 0
	flagCLT      = 1 << 1
	flagBaseTime = 1 << 2
	flagLink     = 1 << 3
	flagPeer     = 1 << 4

	recordFixedLen = 5 + 5*4 + 4*8 + 2*16
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
	for _, v := range []uint32{r.IAID, r.PreferredLifetime, r.ValidLifetime, r.CLTTime, r.BaseTime} {
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
	if len(v) < recordFixedLen {
		return fmt.Errorf("%w: record of %d octets, want at least %d", ErrCorrupt, len(v), recordFixedLen)
	}
	if v[0] != recordVersion {
		return fmt.Errorf("%w: record version %d", ErrCorrupt, v[0])
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
