package codec

import (
	"encoding/binary"
	"net/netip"
)

const (
	// MaxMessageLen is the largest message this package encodes or decodes:
	// the 16-bit msg-size of the TCP framing (RFC 5460) cannot describe a
	// longer one, and a UDP datagram cannot carry one either.
	MaxMessageLen = 65535

	// HeaderLen is the size of the client/server message header: msg-type
	// and a 24-bit transaction-id.
	HeaderLen = 4

	// RelayHeaderLen is the size of the relay-agent message header: msg-type,
	// hop-count, link-address and peer-address.
	RelayHeaderLen = 34

	// HopCountLimit is HOP_COUNT_LIMIT of RFC 8415 section 7.6: a relay agent
	// discards a RELAY-FORW whose hop-count is this value or more.
	HopCountLimit = 8

	// MaxRelayNesting is how many relay messages one chain may nest. The
	// relay agent next to the client writes hop-count 0 and each further one
	// adds 1, so a chain that obeys HopCountLimit has at most
	// HopCountLimit+1 relay messages.
	MaxRelayNesting = HopCountLimit + 1

	// maxTransactionID is the largest 24-bit transaction-id.
	maxTransactionID = 1<<24 - 1
)

// Message is a client/server DHCPv6 message: every type except RELAY-FORW
// and RELAY-REPL. The zero value is an empty message of type 0. A Message
// filled by Decode aliases the decoded buffer; it is not safe for concurrent
// use while being decoded into.
type Message struct {
	Type          MsgType
	TransactionID uint32 // 24 bits
	Options       Options
}

// Decode parses b into m, reusing m.Options, and checks the layout of every
// option it recognizes, recursively, including relay messages inside
// OPTION_LQ_RELAY_DATA. m.Options alias b. It rejects a relay message type
// (use RelayMessage.Decode), trailing bytes, duplicate options that may
// appear only once, and a message longer than MaxMessageLen. Errors are
// *DecodeError with offsets counted from the start of b; on error m holds
// the options decoded before the bad one.
//
// hot path: no allocation once m.Options has grown to the option count.
func (m *Message) Decode(b []byte) error {
	if len(b) < HeaderLen {
		return &DecodeError{Err: ErrShortMessage}
	}
	if len(b) > MaxMessageLen {
		return &DecodeError{Offset: MaxMessageLen, Err: ErrMessageTooLong}
	}
	m.Type = MsgType(b[0])
	if m.Type.IsRelay() {
		return &DecodeError{Err: ErrRelayType}
	}
	m.TransactionID = be24(b[1:])
	m.Options = m.Options[:0]
	return walkOptions(b[HeaderLen:], HeaderLen, nesting{}, &m.Options)
}

// Len returns the encoded size of m.
func (m *Message) Len() int { return HeaderLen + m.Options.Len() }

// AppendTo appends m to b. It fails with ErrRelayType, ErrTransactionID,
// ErrOptionTooLong or ErrMessageTooLong, returning b unchanged.
//
// hot path: no allocation when b has room.
func (m *Message) AppendTo(b []byte) ([]byte, error) {
	start := len(b)
	b, err := AppendHeader(b, m.Type, m.TransactionID)
	if err != nil {
		return b, err
	}
	if b, err = m.Options.AppendTo(b); err != nil {
		return b[:start], err
	}
	if len(b)-start > MaxMessageLen {
		return b[:start], ErrMessageTooLong
	}
	return b, nil
}

// AppendFrameTo appends m to b behind the 2-octet msg-size of the TCP
// framing. It fails like AppendTo, returning b unchanged.
func (m *Message) AppendFrameTo(b []byte) ([]byte, error) {
	b, start := BeginFrame(b)
	b, err := m.AppendTo(b)
	if err != nil {
		return b[:start], err
	}
	return EndFrame(b, start)
}

// AppendHeader appends a client/server message header. It fails with
// ErrRelayType for RELAY-FORW or RELAY-REPL and with ErrTransactionID for a
// transaction-id above 24 bits, returning b unchanged.
//
// hot path: appends only.
func AppendHeader(b []byte, t MsgType, xid uint32) ([]byte, error) {
	if t.IsRelay() {
		return b, ErrRelayType
	}
	if xid > maxTransactionID {
		return b, ErrTransactionID
	}
	return append(b, byte(t), byte(xid>>16), byte(xid>>8), byte(xid)), nil
}

// PeekType returns the msg-type of an encoded message without decoding it,
// so that a caller can choose between Message and RelayMessage.
func PeekType(b []byte) (MsgType, error) {
	if len(b) < HeaderLen {
		return 0, &DecodeError{Err: ErrShortMessage}
	}
	return MsgType(b[0]), nil
}

// PeekHeader returns the msg-type and transaction-id of an encoded
// client/server message without decoding its options, for example to answer
// a message whose options fail to decode. For RELAY-FORW and RELAY-REPL,
// which have no transaction-id, the second result is 0.
func PeekHeader(b []byte) (MsgType, uint32, error) {
	if len(b) < HeaderLen {
		return 0, 0, &DecodeError{Err: ErrShortMessage}
	}
	t := MsgType(b[0])
	if t.IsRelay() {
		return t, 0, nil
	}
	return t, be24(b[1:]), nil
}

// RelayMessage is a RELAY-FORW or RELAY-REPL (RFC 8415 section 9). The zero
// value is an empty message of type 0. A RelayMessage filled by Decode
// aliases the decoded buffer; the relayed message stays encoded inside
// OPTION_RELAY_MSG (see InnerMessage).
type RelayMessage struct {
	Type        MsgType // MsgRelayForw or MsgRelayRepl
	HopCount    uint8
	LinkAddress netip.Addr // IPv6; the zero Addr encodes as ::
	PeerAddress netip.Addr // IPv6; the zero Addr encodes as ::
	Options     Options
}

// Decode parses b into r, reusing r.Options, and checks the whole relay
// chain: every nested message and recognized option, with at most
// MaxRelayNesting relay messages. OPTION_RELAY_MSG is optional, because the
// relay message stored in OPTION_LQ_RELAY_DATA has its innermost one removed
// (RFC 5007 section 4.1.2.4). r.Options alias b. Errors are *DecodeError
// with offsets counted from the start of b.
//
// hot path: no allocation once r.Options has grown to the option count.
func (r *RelayMessage) Decode(b []byte) error {
	return r.decode(b, 0, nesting{})
}

func (r *RelayMessage) decode(b []byte, base int, n nesting) error {
	if len(b) < HeaderLen {
		return &DecodeError{Offset: base, Err: ErrShortMessage}
	}
	if len(b) > MaxMessageLen {
		return &DecodeError{Offset: base + MaxMessageLen, Err: ErrMessageTooLong}
	}
	r.Type = MsgType(b[0])
	if !r.Type.IsRelay() {
		return &DecodeError{Offset: base, Err: ErrRelayType}
	}
	if len(b) < RelayHeaderLen {
		return &DecodeError{Offset: base, Err: ErrShortMessage}
	}
	if n.relays >= MaxRelayNesting {
		return &DecodeError{Offset: base, Err: ErrHopLimit}
	}
	r.HopCount = b[1]
	r.LinkAddress = netip.AddrFrom16([16]byte(b[2:18]))
	r.PeerAddress = netip.AddrFrom16([16]byte(b[18:34]))
	r.Options = r.Options[:0]
	n.relays++
	return walkOptions(b[RelayHeaderLen:], base+RelayHeaderLen, n, &r.Options)
}

// InnerMessage returns the encoded message in OPTION_RELAY_MSG, which may be
// another relay message (check with PeekType).
func (r *RelayMessage) InnerMessage() ([]byte, bool) { return r.Options.RelayMsg() }

// Len returns the encoded size of r.
func (r *RelayMessage) Len() int { return RelayHeaderLen + r.Options.Len() }

// AppendTo appends r to b. It fails with ErrRelayType, ErrNotIPv6,
// ErrOptionTooLong or ErrMessageTooLong, returning b unchanged.
func (r *RelayMessage) AppendTo(b []byte) ([]byte, error) {
	start := len(b)
	b, err := AppendRelayHeader(b, r.Type, r.HopCount, r.LinkAddress, r.PeerAddress)
	if err != nil {
		return b, err
	}
	if b, err = r.Options.AppendTo(b); err != nil {
		return b[:start], err
	}
	if len(b)-start > MaxMessageLen {
		return b[:start], ErrMessageTooLong
	}
	return b, nil
}

// AppendFrameTo appends r to b behind the 2-octet msg-size of the TCP
// framing. It fails like AppendTo, returning b unchanged.
func (r *RelayMessage) AppendFrameTo(b []byte) ([]byte, error) {
	b, start := BeginFrame(b)
	b, err := r.AppendTo(b)
	if err != nil {
		return b[:start], err
	}
	return EndFrame(b, start)
}

// AppendRelayHeader appends a relay-agent message header. It fails with
// ErrRelayType when t is not RELAY-FORW or RELAY-REPL and with ErrNotIPv6 for
// an IPv4 address, returning b unchanged.
func AppendRelayHeader(b []byte, t MsgType, hopCount uint8, link, peer netip.Addr) ([]byte, error) {
	if !t.IsRelay() {
		return b, ErrRelayType
	}
	l, ok1 := addr16(link)
	p, ok2 := addr16(peer)
	if !ok1 || !ok2 {
		return b, ErrNotIPv6
	}
	b = append(b, byte(t), hopCount)
	b = append(b, l[:]...)
	return append(b, p[:]...), nil
}

// checkMessage checks an encoded message of either header format found
// inside OPTION_RELAY_MSG, starting at offset base.
func checkMessage(b []byte, base int, n nesting) error {
	if len(b) < HeaderLen {
		return &DecodeError{Offset: base, Err: ErrShortMessage}
	}
	if MsgType(b[0]).IsRelay() {
		return checkRelay(b, base, n)
	}
	return walkOptions(b[HeaderLen:], base+HeaderLen, n, nil)
}

// checkRelay checks an encoded relay message starting at offset base.
func checkRelay(b []byte, base int, n nesting) error {
	if len(b) < RelayHeaderLen {
		return &DecodeError{Offset: base, Err: ErrShortMessage}
	}
	if n.relays >= MaxRelayNesting {
		return &DecodeError{Offset: base, Err: ErrHopLimit}
	}
	n.relays++
	return walkOptions(b[RelayHeaderLen:], base+RelayHeaderLen, n, nil)
}

// be24 reads a 24-bit big-endian value.
func be24(b []byte) uint32 { return uint32(b[0])<<16 | uint32(binary.BigEndian.Uint16(b[1:])) }
