// Package codec encodes and decodes the DHCPv6 messages and options of
// Leasequery (RFC 5007), Bulk Leasequery (RFC 5460) and Active Leasequery
// (RFC 7653), on the message and option formats of RFC 8415, and splits and
// builds the 2-octet length framing of their TCP connections.
//
// # What it owns
//
//   - Typed wire codes with String methods: MsgType, OptionCode, StatusCode,
//     QueryType, DUIDType.
//   - Message (client/server header, RFC 8415 section 8) and RelayMessage
//     (RELAY-FORW and RELAY-REPL, RFC 8415 section 9), decoded into a
//     caller-owned value whose Options alias the input, and encoded by
//     appending to a caller buffer.
//   - Typed options: IANA, IATA, IAPD, IAAddr, IAPrefix, ORO, Status,
//     RemoteID (RFC 4649), LQQuery (RFC 5007 section 4.1.2.1, all five query
//     types), ClientData (4.1.2.2), LQRelayData (4.1.2.4), LQClientLink
//     (4.1.2.5), and accessors for OPTION_CLT_TIME (4.1.2.3), OPTION_RELAY_ID
//     (RFC 5460 section 5.4.1) and OPTION_LQ_BASE_TIME, OPTION_LQ_START_TIME
//     and OPTION_LQ_END_TIME (RFC 7653 section 6.3). Options it does not know
//     stay raw and are re-encoded byte for byte.
//   - DUIDs (RFC 8415 section 11, RFC 6355) and the 2000-01-01 UTC epoch of
//     RFC 7653 absolute times (DHCPTime, TimeFromDHCP).
//   - The TCP framing of RFC 5460 section 5.1: Framer for chunked input such
//     as gnet callbacks, FrameReader for an io.Reader, and AppendFrame,
//     BeginFrame and EndFrame for output.
//
// # What a decode checks
//
// Message.Decode and RelayMessage.Decode walk the whole option tree, into
// containers and relayed messages, without allocating. They reject: a short
// header; an option-len that overruns its container; 1 to 3 octets left after
// the last option; a second copy of an option that may appear once per
// container (RFC 8415 section 21.1: every option this package checks except
// the IA options, OPTION_IAADDR and OPTION_IAPREFIX); a layout that does not
// fit the option-code (fixed sizes, minimum sizes, DUIDs of 3 to 130 octets,
// prefix-length above 128, a status-message that is not UTF-8, an
// OPTION_LQ_RELAY_DATA without a relay message); relay chains of more than
// MaxRelayNesting messages (HOP_COUNT_LIMIT, RFC 8415 section 7.6); and
// containers nested more deeply than any leasequery message needs. Every
// error is a *DecodeError giving the offset and the option. Decoders never
// panic on input.
//
// Semantic rules that depend on the exchange (which options a message type
// must carry, which query types a transport allows) are for the caller;
// LQQuery.Validate covers the RFC 5007 checks of one query and returns a
// *StatusError that the server sends back as OPTION_STATUS_CODE.
//
// # What it never does
//
// No I/O except reading from the io.Reader given to a FrameReader, no
// logging, no goroutines, no global state. Encoders never truncate: a message
// or frame longer than 65535 octets, or an option-data longer than 65535
// octets, is an error. Decoders never size an allocation from a count or a
// length read from the input. All types are safe to use from several
// goroutines only when each value is used by one goroutine at a time.
package codec
