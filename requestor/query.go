package requestor

import (
	"fmt"
	"net/netip"

	"github.com/alqd/alqd/codec"
)

// Query is one Leasequery: what OPTION_LQ_QUERY asks for, and the message
// options around it. Set the key field that Type needs (Address, ClientID,
// RelayID, RemoteID, or Link for QUERY_BY_LINK_ADDRESS); the others are
// ignored. The zero value is not a valid query.
type Query struct {
	Type codec.QueryType

	// Link is the link-address of OPTION_LQ_QUERY: it restricts any query
	// to one link, and is the key of QUERY_BY_LINK_ADDRESS. For the other
	// types the zero Addr and :: both mean every link. QUERY_BY_LINK_ADDRESS
	// needs a valid Link; :: is sent as given, although RFC 5460 does not
	// define it and servers may answer MalformedQuery.
	Link netip.Addr

	Address  netip.Addr     // key of QUERY_BY_ADDRESS: an IPv6 address
	ClientID []byte         // key of QUERY_BY_CLIENTID: the client's DUID
	RelayID  []byte         // key of QUERY_BY_RELAY_ID: the relay agent's DUID
	RemoteID codec.RemoteID // key of QUERY_BY_REMOTE_ID: enterprise number and remote-id

	// RelayData asks for OPTION_LQ_RELAY_DATA in each OPTION_CLIENT_DATA,
	// through the ORO inside OPTION_LQ_QUERY (RFC 5007 section 4.1.2.4).
	RelayData bool

	// OmitBaseTime leaves OPTION_LQ_BASE_TIME out of the message ORO. By
	// default every query asks for it (RFC 7653 section 9.3), because without
	// it lifetimes and OPTION_CLT_TIME can only be read relative to the
	// arrival time. Active queries always ask for it.
	OmitBaseTime bool

	// StartTime and EndTime select bindings changed at or after, and at or
	// before, an absolute time in the server's clock (RFC 7653 sections
	// 6.3.2 and 6.3.3). Bulk Leasequery only; Active Leasequery takes its
	// start time from ActiveQuery and never sends an end time.
	StartTime    uint32
	HasStartTime bool
	EndTime      uint32
	HasEndTime   bool
}

// Validate checks q before anything is sent: a known query type, the key
// that type needs, IPv6 addresses, well-formed DUIDs and remote-id, and a
// start time not after the end time. Errors wrap ErrInvalidQuery.
func (q *Query) Validate() error {
	if err := q.validateKey(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidQuery, err)
	}
	if q.HasStartTime && q.HasEndTime && q.EndTime < q.StartTime {
		return fmt.Errorf("%w: end time %d is before start time %d", ErrInvalidQuery, q.EndTime, q.StartTime)
	}
	return nil
}

func (q *Query) validateKey() error {
	if q.Link.IsValid() && !q.Link.Is6() {
		return fmt.Errorf("link-address %s is not IPv6", q.Link)
	}
	switch q.Type {
	case codec.QueryByAddress:
		if !q.Address.IsValid() || !q.Address.Is6() || q.Address.Is4In6() {
			return fmt.Errorf("%s needs an IPv6 address, got %v", q.Type, q.Address)
		}
	case codec.QueryByClientID:
		if _, err := codec.ParseDUID(q.ClientID); err != nil {
			return fmt.Errorf("%s: client DUID %x: %w", q.Type, q.ClientID, err)
		}
	case codec.QueryByRelayID:
		if _, err := codec.ParseDUID(q.RelayID); err != nil {
			return fmt.Errorf("%s: relay DUID %x: %w", q.Type, q.RelayID, err)
		}
	case codec.QueryByLinkAddress:
		// :: is sent as given: RFC 5460 does not define it, some requestors
		// use it for "every link", and servers either answer that or
		// MalformedQuery.
		if !q.Link.IsValid() {
			return fmt.Errorf("%s needs a link-address", q.Type)
		}
	case codec.QueryByRemoteID:
		if len(q.RemoteID.ID) == 0 {
			return fmt.Errorf("%s needs a remote-id of at least one octet", q.Type)
		}
		if len(q.RemoteID.ID) > codec.MaxOptionLen-4 {
			return fmt.Errorf("%s: remote-id of %d octets is too long", q.Type, len(q.RemoteID.ID))
		}
	default:
		return fmt.Errorf("unknown query type %d", uint8(q.Type))
	}
	return nil
}

// appendLQQuery appends q's OPTION_LQ_QUERY: query-type, link-address, the
// key option and, with RelayData, an ORO asking for OPTION_LQ_RELAY_DATA.
func (q *Query) appendLQQuery(b []byte) ([]byte, error) {
	lq := codec.LQQuery{QueryType: q.Type, LinkAddress: q.Link}
	if !lq.LinkAddress.IsValid() {
		lq.LinkAddress = netip.IPv6Unspecified()
	}

	var key []byte
	var err error
	switch q.Type {
	case codec.QueryByAddress:
		key, err = codec.AppendIAAddr(nil, q.Address, 0, 0)
	case codec.QueryByClientID:
		key, err = codec.AppendOption(nil, codec.OptClientID, q.ClientID)
	case codec.QueryByRelayID:
		key, err = codec.AppendOption(nil, codec.OptRelayID, q.RelayID)
	case codec.QueryByRemoteID:
		key, err = q.RemoteID.AppendTo(nil)
	}
	if err != nil {
		return b, fmt.Errorf("%w: %s key: %w", ErrInvalidQuery, q.Type, err)
	}
	if len(key) > 0 {
		if err := lq.Options.Decode(key); err != nil {
			return b, fmt.Errorf("%w: %s key: %w", ErrInvalidQuery, q.Type, err)
		}
	}
	if q.RelayData {
		lq.Options.Add(codec.OptORO, []byte{byte(codec.OptLQRelayData >> 8), byte(codec.OptLQRelayData)})
	}
	out, err := lq.AppendTo(b)
	if err != nil {
		return b, fmt.Errorf("%w: OPTION_LQ_QUERY: %w", ErrInvalidQuery, err)
	}
	return out, nil
}

// appendLeasequery appends q as a framed LEASEQUERY with the given
// transaction-id and requestor DUID. The option order is OPTION_CLIENTID,
// OPTION_ORO, OPTION_LQ_QUERY, OPTION_LQ_START_TIME, OPTION_LQ_END_TIME.
func (q *Query) appendLeasequery(b []byte, xid uint32, clientID []byte) ([]byte, error) {
	b, frame := codec.BeginFrame(b)
	b, err := appendRequestHeader(b, codec.MsgLeasequery, xid, clientID, !q.OmitBaseTime, false)
	if err != nil {
		return b[:frame], err
	}
	if b, err = q.appendLQQuery(b); err != nil {
		return b[:frame], err
	}
	if q.HasStartTime {
		b = codec.AppendUint32Option(b, codec.OptLQStartTime, q.StartTime)
	}
	if q.HasEndTime {
		b = codec.AppendUint32Option(b, codec.OptLQEndTime, q.EndTime)
	}
	return codec.EndFrame(b, frame)
}

// appendRequestHeader appends a message header, OPTION_CLIENTID and an ORO
// listing OPTION_LQ_BASE_TIME and OPTION_LQ_RELAY_DATA as asked.
func appendRequestHeader(b []byte, t codec.MsgType, xid uint32, clientID []byte, baseTime, relayData bool) ([]byte, error) {
	b, err := codec.AppendHeader(b, t, xid)
	if err != nil {
		return b, err
	}
	if b, err = codec.AppendOption(b, codec.OptClientID, clientID); err != nil {
		return b, fmt.Errorf("%w: requestor client-id: %w", ErrInvalidQuery, err)
	}
	var oro codec.ORO
	if baseTime {
		oro = append(oro, codec.OptLQBaseTime)
	}
	if relayData {
		oro = append(oro, codec.OptLQRelayData)
	}
	if len(oro) > 0 {
		b, err = oro.AppendTo(b)
	}
	return b, err
}

// ActiveQuery is one ACTIVELEASEQUERY (RFC 7653 section 6.2.1). The zero
// value follows every binding, live changes only.
type ActiveQuery struct {
	// Filter, when not nil, is sent as OPTION_LQ_QUERY so that the server
	// sends only the bindings it matches. Nil follows every binding: RFC 7653
	// section 6.2.1 forbids OPTION_LQ_QUERY in that case. The filter's own
	// start and end times and OmitBaseTime are ignored.
	Filter *Query

	// RelayData asks for OPTION_LQ_RELAY_DATA. With a Filter the request
	// goes in the ORO of OPTION_LQ_QUERY, as for a bulk query; without one
	// it goes in the message ORO, the only ORO left.
	RelayData bool

	// StartTime, when HasStartTime is set, is sent as OPTION_LQ_START_TIME:
	// the server first sends every binding changed since then (catch-up)
	// and ends that phase with CatchUpComplete or DataMissing. It must be a
	// time in the server's clock, normally a base-time the server sent
	// before (RFC 7653 section 6.3.2).
	StartTime    uint32
	HasStartTime bool
}

// Validate checks the filter, if any. Errors wrap ErrInvalidQuery.
func (a *ActiveQuery) Validate() error {
	if a.Filter == nil {
		return nil
	}
	f := *a.Filter
	f.HasStartTime, f.HasEndTime = false, false
	return f.Validate()
}

// appendActiveLeasequery appends a as a framed ACTIVELEASEQUERY. It always
// asks for OPTION_LQ_BASE_TIME, without which the rules of RFC 7653
// section 8.3 cannot be followed, and never carries OPTION_LQ_END_TIME
// (section 6.3.3).
func (a *ActiveQuery) appendActiveLeasequery(b []byte, xid uint32, clientID []byte) ([]byte, error) {
	b, frame := codec.BeginFrame(b)
	b, err := appendRequestHeader(b, codec.MsgActiveLeasequery, xid, clientID, true, a.RelayData && a.Filter == nil)
	if err != nil {
		return b[:frame], err
	}
	if a.Filter != nil {
		f := *a.Filter
		f.RelayData = f.RelayData || a.RelayData
		if b, err = f.appendLQQuery(b); err != nil {
			return b[:frame], err
		}
	}
	if a.HasStartTime {
		b = codec.AppendUint32Option(b, codec.OptLQStartTime, a.StartTime)
	}
	return codec.EndFrame(b, frame)
}
