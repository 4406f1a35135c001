package server

import (
	"bytes"
	"net/netip"

	"github.com/alqd/alqd/codec"
)

// transport is how a LEASEQUERY arrived; it decides which query types are
// allowed and what a bad query gets.
type transport uint8

const (
	transportUDP transport = iota + 1 // RFC 5007 Leasequery
	transportTCP                      // RFC 5460 Bulk Leasequery
)

func (t transport) String() string {
	if t == transportUDP {
		return "udp"
	}
	return "tcp"
}

// request is one decoded and checked LEASEQUERY. It owns raw, a copy of the
// message, and every slice in it aliases raw, so a request may be handed to
// another goroutine. It is used by one goroutine at a time.
type request struct {
	raw []byte
	msg codec.Message

	xid      uint32
	clientID []byte // the requestor's DUID, echoed in LEASEQUERY-REPLY; nil when missing
	query    codec.LQQuery
	addr     netip.Addr // QUERY_BY_ADDRESS key
	key      []byte     // option-data of the OPTION_CLIENTID, OPTION_RELAY_ID or OPTION_REMOTE_ID key

	wantBaseTime  bool // OPTION_ORO lists OPTION_LQ_BASE_TIME and it is not denied
	wantRelayData bool // OPTION_ORO lists OPTION_LQ_RELAY_DATA and it is not denied

	// start and end are the OPTION_LQ_START_TIME and OPTION_LQ_END_TIME
	// absolute times (RFC 7653 section 6.3), TCP only.
	start, end       uint32
	hasStart, hasEnd bool
}

// verdict is what parse decided about a request.
type verdict uint8

const (
	verdictAnswer  verdict = iota + 1 // run the query
	verdictReject                     // answer with the status in the error
	verdictDiscard                    // send nothing (UDP only)
)

// policy is the part of the configuration that parse needs. It is shared
// read-only by every goroutine.
type policy struct {
	serverID []byte
	served   []netip.Prefix
	deny     optionSet
}

// parse decodes raw, which the request takes over, and checks it as RFC 5007
// section 4.3.3 and RFC 5460 section 7 ask. A rejected request carries a
// *codec.StatusError to send back with whatever parse could recover (xid,
// clientID). The allow-list is checked by the caller, which knows the peer.
func (r *request) parse(raw []byte, t transport, p *policy) (verdict, *codec.StatusError) {
	r.raw = raw
	if len(raw) >= codec.HeaderLen {
		r.xid = uint32(raw[1])<<16 | uint32(raw[2])<<8 | uint32(raw[3])
	}
	if err := r.msg.Decode(raw); err != nil {
		return r.malformed(t, "the message does not decode: "+err.Error())
	}

	// RFC 5007 section 4.3.3: no OPTION_CLIENTID, or another server's
	// OPTION_SERVERID, is discarded on UDP. TCP has no retransmission to
	// absorb a silent drop, so it gets a status instead.
	clientID, ok := r.msg.Options.ClientID()
	if !ok {
		return r.discardOr(t, codec.StatusMalformedQuery, "OPTION_CLIENTID is missing")
	}
	r.clientID = clientID
	if sid, ok := r.msg.Options.ServerID(); ok && !bytes.Equal(sid, p.serverID) {
		return r.discardOr(t, codec.StatusNotAllowed, "OPTION_SERVERID names another server")
	}

	found, err := r.msg.Options.LQQuery(&r.query)
	if err != nil {
		return r.malformed(t, "OPTION_LQ_QUERY does not decode: "+err.Error())
	}
	if !found {
		return verdictReject, &codec.StatusError{Code: codec.StatusMalformedQuery, Msg: "OPTION_LQ_QUERY is missing"}
	}
	if err := r.query.Validate(); err != nil {
		return verdictReject, err.(*codec.StatusError)
	}
	if t == transportUDP && r.query.QueryType.BulkOnly() {
		// RFC 5460 section 4: the bulk-only query types are refused over UDP.
		return verdictReject, &codec.StatusError{Code: codec.StatusNotAllowed, Msg: r.query.QueryType.String() + " is only allowed over TCP (Bulk Leasequery)"}
	}

	if serr := r.checkKey(p); serr != nil {
		return verdictReject, serr
	}
	if serr := r.readWants(t, p); serr != nil {
		return verdictReject, serr
	}
	return verdictAnswer, nil
}

func (r *request) malformed(t transport, msg string) (verdict, *codec.StatusError) {
	if t == transportUDP {
		return verdictDiscard, nil
	}
	return verdictReject, &codec.StatusError{Code: codec.StatusMalformedQuery, Msg: msg}
}

func (r *request) discardOr(t transport, code codec.StatusCode, msg string) (verdict, *codec.StatusError) {
	if t == transportUDP {
		return verdictDiscard, nil
	}
	return verdictReject, &codec.StatusError{Code: code, Msg: msg}
}

// checkKey extracts the key of the query and checks the addresses in it.
func (r *request) checkKey(p *policy) *codec.StatusError {
	link := r.query.LinkAddress
	if !usableAddress(link, true) {
		return &codec.StatusError{Code: codec.StatusMalformedQuery, Msg: "link-address " + link.String() + " is not a unicast IPv6 address"}
	}
	if !link.IsUnspecified() && !p.serves(link) {
		return &codec.StatusError{Code: codec.StatusNotConfigured, Msg: "link-address " + link.String() + " is not on a served link"}
	}

	switch r.query.QueryType {
	case codec.QueryByAddress:
		var ia codec.IAAddr
		if _, err := r.query.IAAddr(&ia); err != nil {
			return &codec.StatusError{Code: codec.StatusMalformedQuery, Msg: "OPTION_IAADDR does not decode: " + err.Error()}
		}
		if !usableAddress(ia.Addr, false) {
			return &codec.StatusError{Code: codec.StatusMalformedQuery, Msg: "queried address " + ia.Addr.String() + " is not a unicast IPv6 address"}
		}
		if !p.serves(ia.Addr) {
			return &codec.StatusError{Code: codec.StatusNotConfigured, Msg: "address " + ia.Addr.String() + " is not in a served prefix"}
		}
		r.addr = ia.Addr
	case codec.QueryByClientID:
		r.key, _ = r.query.Options.ClientID()
	case codec.QueryByRelayID:
		r.key, _ = r.query.Options.RelayID()
	case codec.QueryByRemoteID:
		r.key, _ = r.query.Options.Get(codec.OptRemoteID)
	}
	return nil
}

// readWants reads the options that shape the reply: the ORO, at message
// level or inside OPTION_LQ_QUERY (RFC 5007 puts the per-client ORO in
// the query-options, RFC 7653 section 9.3 the base-time request in the
// message; either place is accepted for both), and the RFC 7653 time range.
func (r *request) readWants(t transport, p *policy) *codec.StatusError {
	wants := func(code codec.OptionCode) bool {
		return !p.deny.has(code) && (r.msg.Options.Requests(code) || r.query.Options.Requests(code))
	}
	r.wantBaseTime = wants(codec.OptLQBaseTime)
	r.wantRelayData = wants(codec.OptLQRelayData)

	if t == transportUDP {
		// RFC 7653 defines the time options for TCP only; on UDP they are
		// unknown options and ignored.
		return nil
	}
	r.start, r.hasStart = r.msg.Options.StartTime()
	if !r.hasStart {
		r.start, r.hasStart = r.query.Options.StartTime()
	}
	r.end, r.hasEnd = r.msg.Options.EndTime()
	if !r.hasEnd {
		r.end, r.hasEnd = r.query.Options.EndTime()
	}
	if r.hasStart && r.hasEnd && r.start > r.end {
		return &codec.StatusError{Code: codec.StatusMalformedQuery, Msg: "OPTION_LQ_START_TIME is after OPTION_LQ_END_TIME"}
	}
	return nil
}

// timeRange reports whether the query selects bindings by change time.
func (r *request) timeRange() bool { return r.hasStart || r.hasEnd }

// usableAddress reports whether a is an IPv6 unicast address a query may
// name; unspecified allows ::, which a link-address uses for "any link".
func usableAddress(a netip.Addr, unspecified bool) bool {
	if !a.IsValid() || !a.Is6() || a.Is4In6() {
		return false
	}
	if a.IsUnspecified() {
		return unspecified
	}
	return !a.IsMulticast() && !a.IsLoopback()
}

// serves reports whether a is inside a served prefix; an empty list serves
// every address.
func (p *policy) serves(a netip.Addr) bool {
	if len(p.served) == 0 {
		return true
	}
	for _, pfx := range p.served {
		if pfx.Contains(a) {
			return true
		}
	}
	return false
}

// optionSet is a set of option codes, as a bitmap over the 16-bit code
// space so that a lookup costs one shift.
type optionSet struct {
	bits [1 << 10]uint64
}

func newOptionSet(codes []codec.OptionCode) optionSet {
	var s optionSet
	for _, c := range codes {
		s.bits[c>>6] |= 1 << (c & 63)
	}
	return s
}

func (s *optionSet) has(c codec.OptionCode) bool {
	return s.bits[c>>6]&(1<<(c&63)) != 0
}
