package codec

import "strconv"

// MsgType is the DHCPv6 msg-type octet (IANA "Message Types" registry).
type MsgType uint8

// Message types, in registry order. Leasequery uses LEASEQUERY through
// LEASEQUERY-DATA, ACTIVELEASEQUERY, STARTTLS, REPLY (the reply to STARTTLS)
// and the two relay types; the others are named so that String and logs stay
// readable when a peer sends them.
const (
	MsgSolicit            MsgType = 1  // RFC 8415
	MsgAdvertise          MsgType = 2  // RFC 8415
	MsgRequest            MsgType = 3  // RFC 8415
	MsgConfirm            MsgType = 4  // RFC 8415
	MsgRenew              MsgType = 5  // RFC 8415
	MsgRebind             MsgType = 6  // RFC 8415
	MsgReply              MsgType = 7  // RFC 8415; also the answer to STARTTLS (RFC 7653)
	MsgRelease            MsgType = 8  // RFC 8415
	MsgDecline            MsgType = 9  // RFC 8415
	MsgReconfigure        MsgType = 10 // RFC 8415
	MsgInformationRequest MsgType = 11 // RFC 8415
	MsgRelayForw          MsgType = 12 // RFC 8415
	MsgRelayRepl          MsgType = 13 // RFC 8415
	MsgLeasequery         MsgType = 14 // RFC 5007
	MsgLeasequeryReply    MsgType = 15 // RFC 5007
	MsgLeasequeryDone     MsgType = 16 // RFC 5460
	MsgLeasequeryData     MsgType = 17 // RFC 5460
	MsgReconfigureRequest MsgType = 18 // RFC 6977
	MsgReconfigureReply   MsgType = 19 // RFC 6977
	MsgDHCPv4Query        MsgType = 20 // RFC 7341
	MsgDHCPv4Response     MsgType = 21 // RFC 7341
	MsgActiveLeasequery   MsgType = 22 // RFC 7653
	MsgStartTLS           MsgType = 23 // RFC 7653
)

var msgTypeNames = [...]string{
	MsgSolicit:            "SOLICIT",
	MsgAdvertise:          "ADVERTISE",
	MsgRequest:            "REQUEST",
	MsgConfirm:            "CONFIRM",
	MsgRenew:              "RENEW",
	MsgRebind:             "REBIND",
	MsgReply:              "REPLY",
	MsgRelease:            "RELEASE",
	MsgDecline:            "DECLINE",
	MsgReconfigure:        "RECONFIGURE",
	MsgInformationRequest: "INFORMATION-REQUEST",
	MsgRelayForw:          "RELAY-FORW",
	MsgRelayRepl:          "RELAY-REPL",
	MsgLeasequery:         "LEASEQUERY",
	MsgLeasequeryReply:    "LEASEQUERY-REPLY",
	MsgLeasequeryDone:     "LEASEQUERY-DONE",
	MsgLeasequeryData:     "LEASEQUERY-DATA",
	MsgReconfigureRequest: "RECONFIGURE-REQUEST",
	MsgReconfigureReply:   "RECONFIGURE-REPLY",
	MsgDHCPv4Query:        "DHCPV4-QUERY",
	MsgDHCPv4Response:     "DHCPV4-RESPONSE",
	MsgActiveLeasequery:   "ACTIVELEASEQUERY",
	MsgStartTLS:           "STARTTLS",
}

// String returns the IANA name of t, such as "LEASEQUERY-REPLY", or
// "MsgType(N)" for an unassigned value.
func (t MsgType) String() string {
	if int(t) < len(msgTypeNames) && msgTypeNames[t] != "" {
		return msgTypeNames[t]
	}
	return "MsgType(" + strconv.Itoa(int(t)) + ")"
}

// IsRelay reports whether t uses the 34-octet relay-agent header
// (RELAY-FORW or RELAY-REPL) instead of the 4-octet client/server header.
func (t MsgType) IsRelay() bool { return t == MsgRelayForw || t == MsgRelayRepl }

// OptionCode is a DHCPv6 option-code (IANA "Option Codes" registry).
type OptionCode uint16

// Option codes, in registry order. The decoder checks the layout of the
// options that leasequery uses (see the doc comment of Options.Decode) and
// keeps every other code as opaque bytes.
const (
	OptClientID            OptionCode = 1   // RFC 8415
	OptServerID            OptionCode = 2   // RFC 8415
	OptIANA                OptionCode = 3   // RFC 8415
	OptIATA                OptionCode = 4   // RFC 8415
	OptIAAddr              OptionCode = 5   // RFC 8415
	OptORO                 OptionCode = 6   // RFC 8415
	OptPreference          OptionCode = 7   // RFC 8415
	OptElapsedTime         OptionCode = 8   // RFC 8415
	OptRelayMsg            OptionCode = 9   // RFC 8415
	OptAuth                OptionCode = 11  // RFC 8415
	OptUnicast             OptionCode = 12  // RFC 8415
	OptStatusCode          OptionCode = 13  // RFC 8415
	OptRapidCommit         OptionCode = 14  // RFC 8415
	OptUserClass           OptionCode = 15  // RFC 8415
	OptVendorClass         OptionCode = 16  // RFC 8415
	OptVendorOpts          OptionCode = 17  // RFC 8415
	OptInterfaceID         OptionCode = 18  // RFC 8415
	OptReconfMsg           OptionCode = 19  // RFC 8415
	OptReconfAccept        OptionCode = 20  // RFC 8415
	OptDNSServers          OptionCode = 23  // RFC 3646
	OptDomainList          OptionCode = 24  // RFC 3646
	OptIAPD                OptionCode = 25  // RFC 8415
	OptIAPrefix            OptionCode = 26  // RFC 8415
	OptRemoteID            OptionCode = 37  // RFC 4649
	OptSubscriberID        OptionCode = 38  // RFC 4580
	OptLQQuery             OptionCode = 44  // RFC 5007
	OptClientData          OptionCode = 45  // RFC 5007
	OptCLTTime             OptionCode = 46  // RFC 5007
	OptLQRelayData         OptionCode = 47  // RFC 5007
	OptLQClientLink        OptionCode = 48  // RFC 5007
	OptRelayID             OptionCode = 53  // RFC 5460
	OptClientLinkLayerAddr OptionCode = 79  // RFC 6939
	OptLQBaseTime          OptionCode = 100 // RFC 7653
	OptLQStartTime         OptionCode = 101 // RFC 7653
	OptLQEndTime           OptionCode = 102 // RFC 7653
)

// String returns the IANA name of c, such as "OPTION_LQ_QUERY", or
// "OptionCode(N)" for a code this package does not name.
func (c OptionCode) String() string {
	switch c {
	case OptClientID:
		return "OPTION_CLIENTID"
	case OptServerID:
		return "OPTION_SERVERID"
	case OptIANA:
		return "OPTION_IA_NA"
	case OptIATA:
		return "OPTION_IA_TA"
	case OptIAAddr:
		return "OPTION_IAADDR"
	case OptORO:
		return "OPTION_ORO"
	case OptPreference:
		return "OPTION_PREFERENCE"
	case OptElapsedTime:
		return "OPTION_ELAPSED_TIME"
	case OptRelayMsg:
		return "OPTION_RELAY_MSG"
	case OptAuth:
		return "OPTION_AUTH"
	case OptUnicast:
		return "OPTION_UNICAST"
	case OptStatusCode:
		return "OPTION_STATUS_CODE"
	case OptRapidCommit:
		return "OPTION_RAPID_COMMIT"
	case OptUserClass:
		return "OPTION_USER_CLASS"
	case OptVendorClass:
		return "OPTION_VENDOR_CLASS"
	case OptVendorOpts:
		return "OPTION_VENDOR_OPTS"
	case OptInterfaceID:
		return "OPTION_INTERFACE_ID"
	case OptReconfMsg:
		return "OPTION_RECONF_MSG"
	case OptReconfAccept:
		return "OPTION_RECONF_ACCEPT"
	case OptDNSServers:
		return "OPTION_DNS_SERVERS"
	case OptDomainList:
		return "OPTION_DOMAIN_LIST"
	case OptIAPD:
		return "OPTION_IA_PD"
	case OptIAPrefix:
		return "OPTION_IAPREFIX"
	case OptRemoteID:
		return "OPTION_REMOTE_ID"
	case OptSubscriberID:
		return "OPTION_SUBSCRIBER_ID"
	case OptLQQuery:
		return "OPTION_LQ_QUERY"
	case OptClientData:
		return "OPTION_CLIENT_DATA"
	case OptCLTTime:
		return "OPTION_CLT_TIME"
	case OptLQRelayData:
		return "OPTION_LQ_RELAY_DATA"
	case OptLQClientLink:
		return "OPTION_LQ_CLIENT_LINK"
	case OptRelayID:
		return "OPTION_RELAY_ID"
	case OptClientLinkLayerAddr:
		return "OPTION_CLIENT_LINKLAYER_ADDR"
	case OptLQBaseTime:
		return "OPTION_LQ_BASE_TIME"
	case OptLQStartTime:
		return "OPTION_LQ_START_TIME"
	case OptLQEndTime:
		return "OPTION_LQ_END_TIME"
	}
	return "OptionCode(" + strconv.Itoa(int(c)) + ")"
}

// StatusCode is the status-code field of OPTION_STATUS_CODE (IANA "Status
// Codes" registry).
type StatusCode uint16

// Status codes, in registry order. Codes 7 to 15 are the leasequery ones.
const (
	StatusSuccess              StatusCode = 0  // RFC 8415
	StatusUnspecFail           StatusCode = 1  // RFC 8415
	StatusNoAddrsAvail         StatusCode = 2  // RFC 8415
	StatusNoBinding            StatusCode = 3  // RFC 8415
	StatusNotOnLink            StatusCode = 4  // RFC 8415
	StatusUseMulticast         StatusCode = 5  // RFC 8415
	StatusNoPrefixAvail        StatusCode = 6  // RFC 8415
	StatusUnknownQueryType     StatusCode = 7  // RFC 5007
	StatusMalformedQuery       StatusCode = 8  // RFC 5007
	StatusNotConfigured        StatusCode = 9  // RFC 5007
	StatusNotAllowed           StatusCode = 10 // RFC 5007
	StatusQueryTerminated      StatusCode = 11 // RFC 5460
	StatusDataMissing          StatusCode = 12 // RFC 7653
	StatusCatchUpComplete      StatusCode = 13 // RFC 7653
	StatusNotSupported         StatusCode = 14 // RFC 7653
	StatusTLSConnectionRefused StatusCode = 15 // RFC 7653
)

var statusCodeNames = [...]string{
	StatusSuccess:              "Success",
	StatusUnspecFail:           "UnspecFail",
	StatusNoAddrsAvail:         "NoAddrsAvail",
	StatusNoBinding:            "NoBinding",
	StatusNotOnLink:            "NotOnLink",
	StatusUseMulticast:         "UseMulticast",
	StatusNoPrefixAvail:        "NoPrefixAvail",
	StatusUnknownQueryType:     "UnknownQueryType",
	StatusMalformedQuery:       "MalformedQuery",
	StatusNotConfigured:        "NotConfigured",
	StatusNotAllowed:           "NotAllowed",
	StatusQueryTerminated:      "QueryTerminated",
	StatusDataMissing:          "DataMissing",
	StatusCatchUpComplete:      "CatchUpComplete",
	StatusNotSupported:         "NotSupported",
	StatusTLSConnectionRefused: "TLSConnectionRefused",
}

// String returns the IANA name of s, such as "DataMissing", or
// "StatusCode(N)" for an unassigned value.
func (s StatusCode) String() string {
	if int(s) < len(statusCodeNames) {
		return statusCodeNames[s]
	}
	return "StatusCode(" + strconv.Itoa(int(s)) + ")"
}

// QueryType is the query-type octet of OPTION_LQ_QUERY.
type QueryType uint8

// Query types, in registry order.
const (
	QueryByAddress     QueryType = 1 // RFC 5007
	QueryByClientID    QueryType = 2 // RFC 5007
	QueryByRelayID     QueryType = 3 // RFC 5460
	QueryByLinkAddress QueryType = 4 // RFC 5460
	QueryByRemoteID    QueryType = 5 // RFC 5460
)

var queryTypeNames = [...]string{
	QueryByAddress:     "QUERY_BY_ADDRESS",
	QueryByClientID:    "QUERY_BY_CLIENTID",
	QueryByRelayID:     "QUERY_BY_RELAY_ID",
	QueryByLinkAddress: "QUERY_BY_LINK_ADDRESS",
	QueryByRemoteID:    "QUERY_BY_REMOTE_ID",
}

// String returns the IANA name of q, such as "QUERY_BY_RELAY_ID", or
// "QueryType(N)" for an unassigned value.
func (q QueryType) String() string {
	if q.Known() {
		return queryTypeNames[q]
	}
	return "QueryType(" + strconv.Itoa(int(q)) + ")"
}

// Known reports whether q is one of the five query types defined by RFC 5007
// and RFC 5460.
func (q QueryType) Known() bool { return q >= QueryByAddress && q <= QueryByRemoteID }

// BulkOnly reports whether q may be used only over TCP (RFC 5460 defines
// QUERY_BY_RELAY_ID, QUERY_BY_LINK_ADDRESS and QUERY_BY_REMOTE_ID for Bulk
// Leasequery only).
func (q QueryType) BulkOnly() bool { return q >= QueryByRelayID && q <= QueryByRemoteID }

// DUIDType is the 2-octet type field at the start of a DUID (IANA "DUIDs"
// registry).
type DUIDType uint16

// DUID types, in registry order.
const (
	DUIDLLT  DUIDType = 1 // RFC 8415: link-layer address plus time
	DUIDEN   DUIDType = 2 // RFC 8415: enterprise number plus identifier
	DUIDLL   DUIDType = 3 // RFC 8415: link-layer address
	DUIDUUID DUIDType = 4 // RFC 6355: UUID
)

// String returns the name of d, such as "DUID-LLT", or "DUIDType(N)" for an
// unassigned value.
func (d DUIDType) String() string {
	switch d {
	case DUIDLLT:
		return "DUID-LLT"
	case DUIDEN:
		return "DUID-EN"
	case DUIDLL:
		return "DUID-LL"
	case DUIDUUID:
		return "DUID-UUID"
	}
	return "DUIDType(" + strconv.Itoa(int(d)) + ")"
}
