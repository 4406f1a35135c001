package requestor

import (
	"net/netip"
	"strconv"
	"time"

	"github.com/alqd/alqd/codec"
)

// Event is one thing a query reports: Binding, Accepted, CatchUpComplete,
// DataMissing, Keepalive or Done from a server message, and Connected,
// Disconnected, RecoveryStarted and RecoveryDone from a Watcher. Use a type
// switch on the value types. Events own their memory.
type Event interface {
	// Info returns the message the event came from; the zero MessageInfo
	// for the Watcher's own events.
	Info() MessageInfo
}

// Source says which query produced an event.
type Source uint8

// Sources of events.
const (
	SourceBulk     Source = iota + 1 // a Bulk Leasequery the caller ran
	SourceActive                     // the Active Leasequery
	SourceRecovery                   // the Bulk Leasequery a Watcher runs after DataMissing
	SourceInitial                    // the Bulk Leasequery a Watcher runs to fill an empty state
	SourceUDP                        // a UDP Leasequery
)

// String returns the lower-case name of s, as the JSON output uses it.
func (s Source) String() string {
	switch s {
	case SourceBulk:
		return "bulk"
	case SourceActive:
		return "active"
	case SourceRecovery:
		return "recovery"
	case SourceInitial:
		return "initial"
	case SourceUDP:
		return "udp"
	}
	return "Source(" + strconv.Itoa(int(s)) + ")"
}

// MessageInfo describes the server message an event came from.
type MessageInfo struct {
	Source        Source
	Query         int // index of the query in BulkPipelined; 0 otherwise
	Type          codec.MsgType
	TransactionID uint32

	// BaseTime is the message's OPTION_LQ_BASE_TIME: the server's clock when
	// it built the message, in seconds since 2000-01-01 UTC.
	BaseTime    uint32
	HasBaseTime bool

	// Received is the local time the message was read. LocalBase is the
	// local time that corresponds to BaseTime under the current skew
	// estimate, or Received when there is no base-time. Lifetimes and
	// OPTION_CLT_TIME count from LocalBase.
	Received  time.Time
	LocalBase time.Time

	// CatchUp is true while an active query is in its catch-up phase
	// (RFC 7653 section 8.4.1): the message may replay an older change.
	CatchUp bool
}

// ServerTime returns BaseTime as a UTC time in the server's clock, or the
// zero time when there is no base-time.
func (m MessageInfo) ServerTime() time.Time {
	if !m.HasBaseTime {
		return time.Time{}
	}
	return codec.TimeFromDHCPNear(m.BaseTime, m.Received)
}

// BindingType is the kind of identity association a binding belongs to.
type BindingType uint8

// Binding types.
const (
	TypeNA BindingType = iota + 1 // IA_NA address (RFC 8415 section 21.4)
	TypeTA                        // IA_TA address (RFC 8415 section 21.5)
	TypePD                        // IA_PD delegated prefix (RFC 8415 section 21.21)
)

// String returns the RFC name: IA_NA, IA_TA or IA_PD.
func (t BindingType) String() string {
	switch t {
	case TypeNA:
		return "IA_NA"
	case TypeTA:
		return "IA_TA"
	case TypePD:
		return "IA_PD"
	}
	return "BindingType(" + strconv.Itoa(int(t)) + ")"
}

// State is the state of a binding as a leasequery can tell it.
type State uint8

// Binding states. A server reports a released or expired binding with a
// valid lifetime of 0, which RFC 8415 reads as "no longer valid". Which of
// the two it was does not reach the requestor.
const (
	StateActive State = iota + 1 // valid lifetime above 0
	StateEnded                   // valid lifetime 0: released, expired or removed
)

// String returns "active" or "ended".
func (s State) String() string {
	switch s {
	case StateActive:
		return "active"
	case StateEnded:
		return "ended"
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// Infinity is the lifetime value 0xffffffff, which never runs out.
const Infinity = 0xffffffff

// Binding is one address or delegated prefix of one client, from an
// OPTION_CLIENT_DATA. One OPTION_CLIENT_DATA with several addresses and
// prefixes gives several Binding events. Byte slices point into a copy of
// the option that belongs to the event, shared by the events of one
// message; do not modify them.
type Binding struct {
	MessageInfo

	ClientID []byte      // the client's DUID (OPTION_CLIENTID inside OPTION_CLIENT_DATA)
	Type     BindingType // IA_NA unless an IA_TA or IA_PD container or an OPTION_IAPREFIX says otherwise
	IAID     uint32      // set only when the server wrapped the binding in an IA container
	HasIAID  bool
	Addr     netip.Addr   // the address of an IA_NA or IA_TA binding
	Prefix   netip.Prefix // the prefix of an IA_PD binding, host bits as received
	State    State

	// PreferredLifetime and ValidLifetime are the remaining lifetimes in
	// seconds counted from the base-time, as sent; Infinity never runs out.
	PreferredLifetime uint32
	ValidLifetime     uint32
	// PreferredUntil and ValidUntil are when those lifetimes end, in local
	// time. Zero for Infinity and for an ended binding.
	PreferredUntil time.Time
	ValidUntil     time.Time

	// CLTTime is OPTION_CLT_TIME: seconds between the client's last
	// transaction and the base-time. LastTransaction is that moment in local
	// time; zero without OPTION_CLT_TIME.
	CLTTime         uint32
	HasCLTTime      bool
	LastTransaction time.Time

	// Relay data (OPTION_LQ_RELAY_DATA, RFC 5007 section 4.1.2.4), when the
	// server sent it. RelayPeer and RelayMessage are the raw content;
	// LinkAddress, RelayID, RemoteID and InterfaceID are decoded from the
	// relay agent closest to the client (the innermost RELAY-FORW).
	HasRelayData bool
	RelayPeer    netip.Addr
	RelayMessage []byte
	LinkAddress  netip.Addr
	RelayID      []byte
	RemoteID     codec.RemoteID
	HasRemoteID  bool
	InterfaceID  []byte

	// Options are the options of the OPTION_CLIENT_DATA this package does
	// not interpret, in wire order.
	Options codec.Options
}

// Info returns the message the binding came from.
func (b Binding) Info() MessageInfo { return b.MessageInfo }

// Ended reports whether the binding is no longer valid.
func (b Binding) Ended() bool { return b.State == StateEnded }

// Accepted reports the LEASEQUERY-REPLY that accepted an active query.
// Bindings in the same message follow it as their own events. Its
// base-time is the first one of the connection.
type Accepted struct {
	MessageInfo
	ServerID []byte // the server's DUID from OPTION_SERVERID, or nil
}

// Info returns the message the event came from.
func (e Accepted) Info() MessageInfo { return e.MessageInfo }

// CatchUpComplete reports the LEASEQUERY-DATA with status CatchUpComplete:
// every change since the start time has been sent (RFC 7653 section 8.4.1).
type CatchUpComplete struct {
	MessageInfo
}

// Info returns the message the event came from.
func (e CatchUpComplete) Info() MessageInfo { return e.MessageInfo }

// DataMissing reports status DataMissing in a LEASEQUERY-REPLY or
// LEASEQUERY-DATA: the server no longer has every change since StartTime,
// and catch-up is over. The changes between StartTime and the message's
// BaseTime must be fetched with a Bulk Leasequery (RFC 7653 section 8.4.1).
type DataMissing struct {
	MessageInfo
	StartTime     uint32 // the OPTION_LQ_START_TIME the active query sent
	StatusMessage string
	// Recovery is set by a Watcher: true when it starts a Bulk Leasequery
	// for the missing interval, false when it has no query to run for it.
	Recovery bool
}

// Info returns the message the event came from.
func (e DataMissing) Info() MessageInfo { return e.MessageInfo }

// Keepalive reports a LEASEQUERY-DATA without OPTION_CLIENT_DATA and without
// a catch-up status: the server's idle message of RFC 7653 section 8.4.
type Keepalive struct {
	MessageInfo
	// Status is a status code the message carried anyway, such as Success;
	// HasStatus is false for a plain keepalive.
	Status        codec.StatusCode
	HasStatus     bool
	StatusMessage string
}

// Info returns the message the event came from.
func (e Keepalive) Info() MessageInfo { return e.MessageInfo }

// Done reports the end of a query: the LEASEQUERY-DONE of a bulk query, the
// LEASEQUERY-REPLY of a query that found nothing or failed, the
// LEASEQUERY-DONE that ends an active query, or the last UDP reply.
type Done struct {
	MessageInfo
	Status        codec.StatusCode // StatusSuccess when the message had no status
	HasStatus     bool
	StatusMessage string
	Bindings      int // Binding events the query delivered
}

// Info returns the message the event came from.
func (e Done) Info() MessageInfo { return e.MessageInfo }

// Err returns nil for Success and a *codec.StatusError otherwise.
func (e Done) Err() error {
	if e.Status == codec.StatusSuccess {
		return nil
	}
	return &codec.StatusError{Code: e.Status, Msg: e.StatusMessage}
}

// Connected reports that a Watcher opened a connection and sent its
// ACTIVELEASEQUERY. With TLS 1.3 a server may still reject the requestor
// certificate after that, so a Disconnected with a *TLSError can follow.
type Connected struct {
	Server       string
	StartTime    uint32
	HasStartTime bool
	Attempt      int // 1 for the first connection of Run
}

// Info returns the zero MessageInfo.
func (Connected) Info() MessageInfo { return MessageInfo{} }

// Disconnected reports that a Watcher's active connection ended, why, and
// when the next attempt will be made.
type Disconnected struct {
	Err     error
	RetryAt time.Time
}

// Info returns the zero MessageInfo.
func (Disconnected) Info() MessageInfo { return MessageInfo{} }

// RecoveryStarted reports that a Watcher began a Bulk Leasequery. After
// DataMissing (Source is SourceRecovery) it covers the interval StartTime
// to EndTime, and with WatchRequest.FullRecovery also every binding its
// queries match. To fill an empty state before the first active query
// (SourceInitial) it is full and has no times.
type RecoveryStarted struct {
	Source Source
	// Full is true when the bulk includes the queries without start and
	// end time.
	Full         bool
	StartTime    uint32
	HasStartTime bool
	EndTime      uint32
	HasEndTime   bool
}

// Info returns the zero MessageInfo.
func (RecoveryStarted) Info() MessageInfo { return MessageInfo{} }

// RecoveryDone reports the end of the Bulk Leasequery that RecoveryStarted
// announced. Err is nil on success; a failed recovery is retried after
// Config.RetryInterval unless Err is permanent.
//
// After a full bulk that succeeded, every binding its queries match that
// the server still stores was delivered after the RecoveryStarted that
// announced it, by the bulk or by the active connection. A binding in the
// caller's copy that those queries match and that arrived from neither
// since then is one the server no longer has.
type RecoveryDone struct {
	Source   Source
	Full     bool
	Bindings int
	Err      error
}

// Info returns the zero MessageInfo.
func (RecoveryDone) Info() MessageInfo { return MessageInfo{} }
