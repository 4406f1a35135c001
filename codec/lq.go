package codec

import (
	"encoding/binary"
	"net/netip"
)

// Fixed-field sizes of the leasequery options.
const (
	lqQueryLen     = 17 // query-type, link-address
	lqRelayDataLen = 16 // peer-address
)

// LQQuery is the content of OPTION_LQ_QUERY (RFC 5007 section 4.1.2.1): the
// bindings a LEASEQUERY requests, or those an ACTIVELEASEQUERY follows.
// After Decode, Options aliases the decoded option-data.
type LQQuery struct {
	QueryType QueryType
	// LinkAddress restricts the query to one link; :: (or the zero Addr,
	// which encodes as ::) means every link.
	LinkAddress netip.Addr
	// Options are the query-options: the key of the query (OPTION_IAADDR,
	// OPTION_CLIENTID, OPTION_RELAY_ID or OPTION_REMOTE_ID) and an optional
	// OPTION_ORO listing the options wanted per client.
	Options Options
}

// Decode parses the option-data of OPTION_LQ_QUERY into q, reusing
// q.Options. An unknown query-type is not a decode error; Validate reports
// it as UnknownQueryType.
//
// hot path: no allocation once q.Options has grown.
func (q *LQQuery) Decode(data []byte) error {
	if len(data) < lqQueryLen {
		return &DecodeError{Code: OptLQQuery, Err: ErrOptionLength}
	}
	q.QueryType = QueryType(data[0])
	q.LinkAddress = netip.AddrFrom16([16]byte(data[1:17]))
	q.Options = q.Options[:0]
	return walkOptions(data[lqQueryLen:], lqQueryLen, nesting{depth: 1}, &q.Options)
}

// Len returns the encoded size of the option, header included.
func (q *LQQuery) Len() int { return OptionHeaderLen + lqQueryLen + q.Options.Len() }

// AppendTo appends q as an OPTION_LQ_QUERY. It fails with ErrNotIPv6 or
// ErrOptionTooLong, returning b unchanged.
func (q *LQQuery) AppendTo(b []byte) ([]byte, error) {
	link, ok := addr16(q.LinkAddress)
	if !ok {
		return b, ErrNotIPv6
	}
	b, start := BeginOption(b, OptLQQuery)
	b = append(b, byte(q.QueryType))
	b = append(b, link[:]...)
	return endContainer(b, start, q.Options)
}

// Validate returns a *StatusError when a server must reject q. An unknown
// query-type is UnknownQueryType, and a query without the option its type
// needs is MalformedQuery (both SHOULD in RFC 5007). QUERY_BY_LINK_ADDRESS
// with link-address :: names no link, so it is MalformedQuery too. Whether a
// bulk-only type may be used on the transport at hand is for the caller to
// check (see QueryType.BulkOnly).
func (q *LQQuery) Validate() error {
	var need OptionCode
	switch q.QueryType {
	case QueryByAddress:
		need = OptIAAddr
	case QueryByClientID:
		need = OptClientID
	case QueryByRelayID:
		need = OptRelayID
	case QueryByRemoteID:
		need = OptRemoteID
	case QueryByLinkAddress:
		if !q.LinkAddress.IsValid() || q.LinkAddress.IsUnspecified() {
			return &StatusError{Code: StatusMalformedQuery, Msg: "QUERY_BY_LINK_ADDRESS needs a link-address other than ::"}
		}
		return nil
	default:
		return &StatusError{Code: StatusUnknownQueryType, Msg: "query-type " + q.QueryType.String() + " is not supported"}
	}
	if !q.Options.Has(need) {
		return &StatusError{Code: StatusMalformedQuery, Msg: q.QueryType.String() + " needs " + need.String() + " in the query-options"}
	}
	return nil
}

// IAAddr decodes the OPTION_IAADDR in the query-options into dst, the key of
// a QUERY_BY_ADDRESS.
func (q *LQQuery) IAAddr(dst *IAAddr) (bool, error) {
	data, ok := q.Options.Get(OptIAAddr)
	if !ok {
		return false, nil
	}
	return true, dst.Decode(data)
}

// LQQuery decodes the OPTION_LQ_QUERY in opts into dst, reusing dst.Options.
func (opts Options) LQQuery(dst *LQQuery) (bool, error) {
	data, ok := opts.Get(OptLQQuery)
	if !ok {
		return false, nil
	}
	return true, dst.Decode(data)
}

// ClientData returns the option-data of OPTION_CLIENT_DATA, to decode with
// ClientData.Decode.
func (opts Options) ClientData() ([]byte, bool) { return opts.Get(OptClientData) }

// BaseTime returns the value of OPTION_LQ_BASE_TIME, an absolute time (see
// TimeFromDHCP).
func (opts Options) BaseTime() (uint32, bool) { return opts.Uint32(OptLQBaseTime) }

// StartTime returns the value of OPTION_LQ_START_TIME, an absolute time.
func (opts Options) StartTime() (uint32, bool) { return opts.Uint32(OptLQStartTime) }

// EndTime returns the value of OPTION_LQ_END_TIME, an absolute time.
func (opts Options) EndTime() (uint32, bool) { return opts.Uint32(OptLQEndTime) }

// CLTTime returns the value of OPTION_CLT_TIME in seconds.
func (opts Options) CLTTime() (uint32, bool) { return opts.Uint32(OptCLTTime) }

// ClientData is the content of OPTION_CLIENT_DATA (RFC 5007 section
// 4.1.2.2): the bindings of one client on one link. Decode sorts the options
// it recognizes into fields and keeps the rest, in wire order, in Other.
// AppendTo writes ClientID, CLT_TIME, the addresses, the prefixes, the relay data and
// then Other, so an encoding in another order decodes to the same value but
// re-encodes in this order. After Decode every slice aliases the decoded
// option-data. The zero value is an empty OPTION_CLIENT_DATA.
type ClientData struct {
	ClientID     []byte // client DUID; empty means absent
	CLTTime      uint32 // seconds since the client was last heard from
	HasCLTTime   bool
	Addrs        []IAAddr   // one per address, lifetimes 0/0 for an ended binding
	Prefixes     []IAPrefix // one per delegated prefix
	RelayData    LQRelayData
	HasRelayData bool
	Other        Options
}

// Decode parses the option-data of OPTION_CLIENT_DATA into d, reusing its
// slices, including the Options slices of the IAAddr and IAPrefix elements
// they already hold.
//
// hot path: no allocation once d's slices have grown.
func (d *ClientData) Decode(data []byte) error {
	d.ClientID = nil
	d.CLTTime, d.HasCLTTime = 0, false
	d.Addrs = d.Addrs[:0]
	d.Prefixes = d.Prefixes[:0]
	d.RelayData, d.HasRelayData = LQRelayData{}, false
	d.Other = d.Other[:0]
	if err := walkOptions(data, 0, nesting{depth: 1}, nil); err != nil {
		return err
	}

	// The walk above checked every option, so the loop below only splits
	// them by code.
	for off := 0; off < len(data); {
		code := OptionCode(binary.BigEndian.Uint16(data[off:]))
		end := off + OptionHeaderLen + int(binary.BigEndian.Uint16(data[off+2:]))
		body := data[off+OptionHeaderLen : end : end]
		var err error
		switch code {
		case OptClientID:
			d.ClientID = body
		case OptCLTTime:
			d.CLTTime, d.HasCLTTime = binary.BigEndian.Uint32(body), true
		case OptIAAddr:
			d.Addrs = grow(d.Addrs)
			err = d.Addrs[len(d.Addrs)-1].Decode(body)
		case OptIAPrefix:
			d.Prefixes = grow(d.Prefixes)
			err = d.Prefixes[len(d.Prefixes)-1].Decode(body)
		case OptLQRelayData:
			err = d.RelayData.Decode(body)
			d.HasRelayData = true
		default:
			d.Other = append(d.Other, Option{Code: code, Data: body})
		}
		if err != nil {
			return err
		}
		off = end
	}
	return nil
}

// grow extends s by one element, reusing the element already in the backing
// array when there is one so that its own slices are reused too.
func grow[T any](s []T) []T {
	if len(s) < cap(s) {
		return s[:len(s)+1]
	}
	var zero T
	return append(s, zero)
}

// Len returns the encoded size of the option, header included.
func (d *ClientData) Len() int {
	n := OptionHeaderLen
	if len(d.ClientID) > 0 {
		n += OptionHeaderLen + len(d.ClientID)
	}
	if d.HasCLTTime {
		n += OptionHeaderLen + 4
	}
	for i := range d.Addrs {
		n += d.Addrs[i].Len()
	}
	for i := range d.Prefixes {
		n += d.Prefixes[i].Len()
	}
	if d.HasRelayData {
		n += d.RelayData.Len()
	}
	return n + d.Other.Len()
}

// AppendTo appends d as an OPTION_CLIENT_DATA. It fails with ErrNotIPv6,
// ErrPrefixLength or ErrOptionTooLong, returning b unchanged.
func (d *ClientData) AppendTo(b []byte) ([]byte, error) {
	b, start := BeginOption(b, OptClientData)
	var err error
	if len(d.ClientID) > 0 {
		if b, err = AppendOption(b, OptClientID, d.ClientID); err != nil {
			return b[:start], err
		}
	}
	if d.HasCLTTime {
		b = AppendUint32Option(b, OptCLTTime, d.CLTTime)
	}
	for i := range d.Addrs {
		if b, err = d.Addrs[i].AppendTo(b); err != nil {
			return b[:start], err
		}
	}
	for i := range d.Prefixes {
		if b, err = d.Prefixes[i].AppendTo(b); err != nil {
			return b[:start], err
		}
	}
	if d.HasRelayData {
		if b, err = d.RelayData.AppendTo(b); err != nil {
			return b[:start], err
		}
	}
	return endContainer(b, start, d.Other)
}

// LQRelayData is the content of OPTION_LQ_RELAY_DATA (RFC 5007 section
// 4.1.2.4): the address the server last received a relayed message for the
// client from, and that RELAY-FORW chain with the client's own message cut
// out. After Decode, Message aliases the decoded option-data; decode it with
// RelayMessage.Decode.
type LQRelayData struct {
	PeerAddress netip.Addr // IPv6; the zero Addr encodes as ::
	Message     []byte     // encoded relay message, RELAY_MSG removed at the innermost level
}

// Decode parses the option-data of OPTION_LQ_RELAY_DATA into r and checks the
// relay chain inside it.
func (r *LQRelayData) Decode(data []byte) error {
	if err := checkLQRelayData(data, 0, nesting{depth: 1}); err != nil {
		return err
	}
	r.PeerAddress = netip.AddrFrom16([16]byte(data[:16]))
	r.Message = data[lqRelayDataLen:len(data):len(data)]
	return nil
}

// Len returns the encoded size of the option, header included.
func (r *LQRelayData) Len() int { return OptionHeaderLen + lqRelayDataLen + len(r.Message) }

// AppendTo appends r as an OPTION_LQ_RELAY_DATA. The relay message is copied
// as it is, unchecked. It fails with ErrNotIPv6 or ErrOptionTooLong,
// returning b unchanged.
func (r *LQRelayData) AppendTo(b []byte) ([]byte, error) {
	peer, ok := addr16(r.PeerAddress)
	if !ok {
		return b, ErrNotIPv6
	}
	if lqRelayDataLen+len(r.Message) > MaxOptionLen {
		return b, ErrOptionTooLong
	}
	b, start := BeginOption(b, OptLQRelayData)
	b = append(b, peer[:]...)
	b = append(b, r.Message...)
	return EndOption(b, start)
}

// checkLQRelayData checks the option-data of an OPTION_LQ_RELAY_DATA whose
// header is at offset off. The relay message starts a new relay chain.
func checkLQRelayData(data []byte, off int, n nesting) error {
	if len(data) < lqRelayDataLen+RelayHeaderLen {
		return &DecodeError{Offset: off, Code: OptLQRelayData, Err: ErrOptionLength}
	}
	msg := data[lqRelayDataLen:]
	msgOff := off + OptionHeaderLen + lqRelayDataLen
	if !MsgType(msg[0]).IsRelay() {
		return &DecodeError{Offset: msgOff, Err: ErrRelayType}
	}
	return checkRelay(msg, msgOff, nesting{depth: n.depth})
}

// LQClientLink is the content of OPTION_LQ_CLIENT_LINK (RFC 5007 section
// 4.1.2.5): the links on which a client has bindings, sent instead of
// OPTION_CLIENT_DATA when a QUERY_BY_CLIENTID with link-address :: finds the
// client on several links.
type LQClientLink struct {
	Links []netip.Addr
}

// Decode parses the option-data of OPTION_LQ_CLIENT_LINK into l, reusing
// l.Links.
func (l *LQClientLink) Decode(data []byte) error {
	if len(data) == 0 || len(data)%16 != 0 {
		return &DecodeError{Code: OptLQClientLink, Err: ErrOptionLength}
	}
	l.Links = l.Links[:0]
	for i := 0; i < len(data); i += 16 {
		l.Links = append(l.Links, netip.AddrFrom16([16]byte(data[i:i+16])))
	}
	return nil
}

// Len returns the encoded size of the option, header included.
func (l *LQClientLink) Len() int { return OptionHeaderLen + 16*len(l.Links) }

// AppendTo appends l as an OPTION_LQ_CLIENT_LINK. It fails with
// ErrOptionLength for an empty list, ErrNotIPv6 or ErrOptionTooLong,
// returning b unchanged.
func (l *LQClientLink) AppendTo(b []byte) ([]byte, error) {
	if len(l.Links) == 0 {
		return b, ErrOptionLength
	}
	if 16*len(l.Links) > MaxOptionLen {
		return b, ErrOptionTooLong
	}
	b, start := BeginOption(b, OptLQClientLink)
	for _, a := range l.Links {
		ip, ok := addr16(a)
		if !ok {
			return b[:start], ErrNotIPv6
		}
		b = append(b, ip[:]...)
	}
	return EndOption(b, start)
}
