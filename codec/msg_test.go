package codec

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
)

// cat joins byte fixtures so that each field of a table case can sit on its
// own commented line.
func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// b is shorthand for a byte fixture.
func b(v ...byte) []byte { return v }

// repeat returns n copies of v.
func repeat(v byte, n int) []byte { return bytes.Repeat([]byte{v}, n) }

// A DUID-LL for 00:00:5e:00:53:aa, 10 octets.
var duidLL = b(0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x5e, 0x00, 0x53, 0xaa)

func TestMessageDecodeErrors(t *testing.T) {
	lqHeader := b(0x0e, 0xb1, 0x0c, 0x01) // LEASEQUERY xid 0xb10c01
	tests := []struct {
		name   string
		in     []byte
		err    error
		offset int
		code   OptionCode
	}{
		{
			name:   "header too short",
			in:     b(0x0e, 0xb1, 0x0c), // msg-type and 16 of the 24 xid bits
			err:    ErrShortMessage,
			offset: 0,
		},
		{
			name: "relay type",
			in: cat(
				b(0x0c, 0x00), // RELAY-FORW, hop-count 0
				repeat(0, 32), // link-address, peer-address
			),
			err:    ErrRelayType,
			offset: 0,
		},
		{
			name: "trailing bytes",
			in: cat(
				lqHeader,
				b(0x00, 0x01, 0x00), // 3 octets: not an option header
			),
			err:    ErrTrailingBytes,
			offset: 4,
		},
		{
			name: "option overruns message",
			in: cat(
				lqHeader,
				b(0x00, 0x01, 0x00, 0x0a), // CLIENTID, option-len 10
				b(0x00, 0x03),             // only 2 octets follow
			),
			err:    ErrOptionOverrun,
			offset: 4,
			code:   OptClientID,
		},
		{
			name: "duplicate CLIENTID",
			in: cat(
				lqHeader,
				b(0x00, 0x01, 0x00, 0x0a), duidLL, // CLIENTID
				b(0x00, 0x01, 0x00, 0x0a), duidLL, // CLIENTID again
			),
			err:    ErrDuplicateOption,
			offset: 18,
			code:   OptClientID,
		},
		{
			name: "DUID too short",
			in: cat(
				lqHeader,
				b(0x00, 0x01, 0x00, 0x02), // CLIENTID, option-len 2
				b(0x00, 0x03),             // DUID type only
			),
			err:    ErrInvalidDUID,
			offset: 4,
			code:   OptClientID,
		},
		{
			name: "DUID-UUID not 18 octets",
			in: cat(
				lqHeader,
				b(0x00, 0x02, 0x00, 0x05),       // SERVERID, option-len 5
				b(0x00, 0x04, 0x01, 0x02, 0x03), // DUID-UUID with 3 octets of UUID
			),
			err:    ErrInvalidDUID,
			offset: 4,
			code:   OptServerID,
		},
		{
			name: "CLT_TIME of 3 octets inside CLIENT_DATA",
			in: cat(
				lqHeader,
				b(0x00, 0x2d, 0x00, 0x07), // CLIENT_DATA, option-len 7
				b(0x00, 0x2e, 0x00, 0x03), // CLT_TIME, option-len 3
				b(0x00, 0x00, 0x3c),       // 3-octet value
			),
			err:    ErrOptionLength,
			offset: 8,
			code:   OptCLTTime,
		},
		{
			name: "duplicate CLT_TIME inside CLIENT_DATA",
			in: cat(
				lqHeader,
				b(0x00, 0x2d, 0x00, 0x10), // CLIENT_DATA, option-len 16
				b(0x00, 0x2e, 0x00, 0x04, 0x00, 0x00, 0x00, 0x3c), // CLT_TIME 60
				b(0x00, 0x2e, 0x00, 0x04, 0x00, 0x00, 0x00, 0x3d), // CLT_TIME 61
			),
			err:    ErrDuplicateOption,
			offset: 16,
			code:   OptCLTTime,
		},
		{
			name: "trailing bytes inside CLIENT_DATA",
			in: cat(
				lqHeader,
				b(0x00, 0x2d, 0x00, 0x0a), // CLIENT_DATA, option-len 10
				b(0x00, 0x2e, 0x00, 0x04, 0x00, 0x00, 0x00, 0x3c), // CLT_TIME 60
				b(0xff, 0xff), // 2 leftover octets
			),
			err:    ErrTrailingBytes,
			offset: 16,
		},
		{
			name: "option overruns its container",
			in: cat(
				lqHeader,
				b(0x00, 0x2d, 0x00, 0x06), // CLIENT_DATA, option-len 6
				b(0x00, 0x2e, 0x00, 0x04), // CLT_TIME, option-len 4
				b(0x00, 0x00),             // only 2 octets inside the container
				b(0x00, 0x3c),             // 2 more octets outside it
			),
			err:    ErrOptionOverrun,
			offset: 8,
			code:   OptCLTTime,
		},
		{
			name: "status message not UTF-8",
			in: cat(
				lqHeader,
				b(0x00, 0x0d, 0x00, 0x04), // STATUS_CODE, option-len 4
				b(0x00, 0x08),             // MalformedQuery
				b(0xc3, 0x28),             // invalid UTF-8 sequence
			),
			err:    ErrInvalidUTF8,
			offset: 4,
			code:   OptStatusCode,
		},
		{
			name: "status code of 1 octet",
			in: cat(
				lqHeader,
				b(0x00, 0x0d, 0x00, 0x01), // STATUS_CODE, option-len 1
				b(0x00),                   // half a status-code
			),
			err:    ErrOptionLength,
			offset: 4,
			code:   OptStatusCode,
		},
		{
			name: "ORO of odd length",
			in: cat(
				lqHeader,
				b(0x00, 0x06, 0x00, 0x03), // ORO, option-len 3
				b(0x00, 0x64, 0x00),       // one code and a half
			),
			err:    ErrOptionLength,
			offset: 4,
			code:   OptORO,
		},
		{
			name: "LQ_QUERY shorter than its fixed fields",
			in: cat(
				lqHeader,
				b(0x00, 0x2c, 0x00, 0x10), // LQ_QUERY, option-len 16
				b(0x01),                   // QUERY_BY_ADDRESS
				repeat(0, 15),             // 15 of the 16 link-address octets
			),
			err:    ErrOptionLength,
			offset: 4,
			code:   OptLQQuery,
		},
		{
			name: "IAPREFIX prefix-length 129",
			in: cat(
				lqHeader,
				b(0x00, 0x1a, 0x00, 0x19), // IAPREFIX, option-len 25
				b(0, 0, 0, 0, 0, 0, 0, 0), // preferred and valid lifetimes
				b(129),                    // prefix-length
				repeat(0, 16),             // prefix
			),
			err:    ErrPrefixLength,
			offset: 4,
			code:   OptIAPrefix,
		},
		{
			name: "IAADDR shorter than its fixed fields",
			in: cat(
				lqHeader,
				b(0x00, 0x05, 0x00, 0x10), // IAADDR, option-len 16
				repeat(0, 16),             // address, no lifetimes
			),
			err:    ErrOptionLength,
			offset: 4,
			code:   OptIAAddr,
		},
		{
			name: "LQ_CLIENT_LINK not a multiple of 16",
			in: cat(
				lqHeader,
				b(0x00, 0x30, 0x00, 0x11), // LQ_CLIENT_LINK, option-len 17
				repeat(0, 17),             // one address and one octet
			),
			err:    ErrOptionLength,
			offset: 4,
			code:   OptLQClientLink,
		},
		{
			name: "LQ_CLIENT_LINK empty",
			in: cat(
				lqHeader,
				b(0x00, 0x30, 0x00, 0x00), // LQ_CLIENT_LINK, option-len 0
			),
			err:    ErrOptionLength,
			offset: 4,
			code:   OptLQClientLink,
		},
		{
			name: "LQ_BASE_TIME of 8 octets",
			in: cat(
				lqHeader,
				b(0x00, 0x64, 0x00, 0x08), // LQ_BASE_TIME, option-len 8
				repeat(0, 8),              // 8-octet value
			),
			err:    ErrOptionLength,
			offset: 4,
			code:   OptLQBaseTime,
		},
		{
			name: "LQ_RELAY_DATA without a relay header",
			in: cat(
				lqHeader,
				b(0x00, 0x2f, 0x00, 0x14), // LQ_RELAY_DATA, option-len 20
				repeat(0, 16),             // peer-address
				b(0x0e, 0, 0, 1),          // a LEASEQUERY header, not a relay one
			),
			err:    ErrOptionLength,
			offset: 4,
			code:   OptLQRelayData,
		},
		{
			name: "LQ_RELAY_DATA holding a client message",
			in: cat(
				lqHeader,
				b(0x00, 0x2f, 0x00, 0x32), // LQ_RELAY_DATA, option-len 50
				repeat(0, 16),             // peer-address
				b(0x0e),                   // LEASEQUERY where RELAY-FORW belongs
				repeat(0, 33),             // rest of a 34-octet header
			),
			err:    ErrRelayType,
			offset: 24,
		},
		{
			name: "REMOTE_ID without remote-id",
			in: cat(
				lqHeader,
				b(0x00, 0x25, 0x00, 0x04), // REMOTE_ID, option-len 4
				b(0x00, 0x00, 0x7e, 0xd9), // enterprise-number 32473 only
			),
			err:    ErrOptionLength,
			offset: 4,
			code:   OptRemoteID,
		},
		{
			name: "empty INTERFACE_ID",
			in: cat(
				lqHeader,
				b(0x00, 0x12, 0x00, 0x00), // INTERFACE_ID, option-len 0
			),
			err:    ErrOptionLength,
			offset: 4,
			code:   OptInterfaceID,
		},
		{
			name: "RELAY_MSG holding a short message",
			in: cat(
				lqHeader,
				b(0x00, 0x09, 0x00, 0x02), // RELAY_MSG, option-len 2
				b(0x0e, 0x00),             // 2 octets of a message header
			),
			err:    ErrShortMessage,
			offset: 8,
		},
		{
			name:   "message longer than 65535 octets",
			in:     cat(lqHeader, b(0x00, 0x99, 0xff, 0xff), repeat(0, 65535)),
			err:    ErrMessageTooLong,
			offset: 65535,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m Message
			err := m.Decode(tt.in)
			checkDecodeError(t, err, tt.err, tt.offset, tt.code)
		})
	}
}

func checkDecodeError(t *testing.T, err, want error, offset int, code OptionCode) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error = %v, want %v", err, want)
	}
	var de *DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("error %v is not a *DecodeError", err)
	}
	if de.Offset != offset {
		t.Errorf("Offset = %d, want %d", de.Offset, offset)
	}
	if de.Code != code {
		t.Errorf("Code = %v, want %v", de.Code, code)
	}
}

func TestMessageDecodeAccepts(t *testing.T) {
	lqHeader := b(0x11, 0xa1, 0xa0, 0x01) // LEASEQUERY-DATA xid 0xa1a001
	tests := []struct {
		name string
		in   []byte
	}{
		{
			name: "header only",
			in:   lqHeader,
		},
		{
			name: "two IAADDR in CLIENT_DATA",
			in: cat(
				lqHeader,
				b(0x00, 0x2d, 0x00, 0x38),                // CLIENT_DATA, option-len 56
				b(0x00, 0x05, 0x00, 0x18), repeat(1, 24), // IAADDR
				b(0x00, 0x05, 0x00, 0x18), repeat(2, 24), // IAADDR again: may repeat
			),
		},
		{
			name: "repeated unknown option",
			in: cat(
				lqHeader,
				b(0x00, 0xfe, 0x00, 0x01, 0x07), // option 254, one octet
				b(0x00, 0xfe, 0x00, 0x00),       // option 254 again, empty
			),
		},
		{
			name: "unknown DUID type",
			in: cat(
				lqHeader,
				b(0x00, 0x01, 0x00, 0x03), // CLIENTID, option-len 3
				b(0x00, 0x09, 0x42),       // DUID type 9, one octet
			),
		},
		{
			name: "empty status message",
			in: cat(
				lqHeader,
				b(0x00, 0x0d, 0x00, 0x02), // STATUS_CODE, option-len 2
				b(0x00, 0x0d),             // CatchUpComplete, no text
			),
		},
		{
			name: "UTF-8 status message",
			in: cat(
				lqHeader,
				b(0x00, 0x0d, 0x00, 0x07), // STATUS_CODE, option-len 7
				b(0x00, 0x00),             // Success
				[]byte("été"),             // 3 characters, 5 octets
			),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m Message
			if err := m.Decode(tt.in); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			out, err := m.AppendTo(nil)
			if err != nil || !bytes.Equal(out, tt.in) {
				t.Errorf("AppendTo = %x, %v; want %x", out, err, tt.in)
			}
		})
	}
}

// relayChain wraps msg in n RELAY-FORW messages.
func relayChain(t testing.TB, msg []byte, n int) []byte {
	t.Helper()
	for i := 0; i < n; i++ {
		r := RelayMessage{
			Type:        MsgRelayForw,
			HopCount:    uint8(i),
			LinkAddress: netip.MustParseAddr("2001:db8::1"),
			PeerAddress: netip.MustParseAddr("fe80::1"),
		}
		r.Options.Add(OptRelayMsg, msg)
		var err error
		if msg, err = r.AppendTo(nil); err != nil {
			t.Fatal(err)
		}
	}
	return msg
}

func TestRelayNestingLimit(t *testing.T) {
	inner := b(0x0e, 0x00, 0x00, 0x01) // LEASEQUERY with no options

	var r RelayMessage
	if err := r.Decode(relayChain(t, inner, MaxRelayNesting)); err != nil {
		t.Fatalf("%d nested relays: %v", MaxRelayNesting, err)
	}
	if r.HopCount != MaxRelayNesting-1 {
		t.Errorf("outer hop-count = %d, want %d", r.HopCount, MaxRelayNesting-1)
	}

	err := r.Decode(relayChain(t, inner, MaxRelayNesting+1))
	// The innermost relay is the one too many; it starts after the headers
	// and RELAY_MSG option headers of the relays around it.
	checkDecodeError(t, err, ErrHopLimit, MaxRelayNesting*(RelayHeaderLen+OptionHeaderLen), 0)
}

func TestRelayNestingLimitInsideRelayData(t *testing.T) {
	// A stored relay chain starts its own count: a LEASEQUERY-REPLY that
	// arrived through relays can still carry a full chain in LQ_RELAY_DATA.
	stored := relayChain(t, b(0x01, 0, 0, 1), MaxRelayNesting-1)
	var rd LQRelayData
	rd.PeerAddress = netip.MustParseAddr("2001:db8::1")
	rd.Message = relayChain(t, stored, 1)
	cd := ClientData{HasRelayData: true, RelayData: rd}
	body, err := cd.AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	m := Message{Type: MsgLeasequeryReply, TransactionID: 1, Options: Options{{Code: OptClientData, Data: body[OptionHeaderLen:]}}}
	reply, err := m.AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	var r RelayMessage
	if err := r.Decode(relayChain(t, reply, MaxRelayNesting)); err != nil {
		t.Fatalf("decode: %v", err)
	}

	rd.Message = relayChain(t, stored, 2)
	if err := rd.Decode(mustAppend(t, rd.AppendTo)[OptionHeaderLen:]); !errors.Is(err, ErrHopLimit) {
		t.Errorf("LQ_RELAY_DATA with %d relays: %v, want ErrHopLimit", MaxRelayNesting+1, err)
	}
}

func mustAppend(t *testing.T, f func([]byte) ([]byte, error)) []byte {
	t.Helper()
	out, err := f(nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestOptionNestingDepth(t *testing.T) {
	// IA_TA options nested inside each other: legal layout, absurd depth.
	nest := func(depth int) []byte {
		opt := b(0x00, 0x04, 0x00, 0x04, 0, 0, 0, 1) // IA_TA, IAID 1, no options
		for i := 1; i < depth; i++ {
			a := IATA{IAID: 1, Options: Options{{Code: OptIATA, Data: opt[OptionHeaderLen:]}}}
			opt = mustAppend(t, a.AppendTo)
		}
		return cat(b(0x0e, 0, 0, 1), opt)
	}
	var m Message
	if err := m.Decode(nest(maxOptionDepth)); err != nil {
		t.Fatalf("depth %d: %v", maxOptionDepth, err)
	}
	err := m.Decode(nest(maxOptionDepth + 1))
	if !errors.Is(err, ErrNestingDepth) {
		t.Fatalf("depth %d: %v, want ErrNestingDepth", maxOptionDepth+1, err)
	}
}

func TestMessageEncodeErrors(t *testing.T) {
	big := make([]byte, 40000)
	prefix := b(0xaa, 0xbb) // bytes already in the caller's buffer
	tests := []struct {
		name string
		msg  Message
		err  error
	}{
		{"relay type", Message{Type: MsgRelayRepl}, ErrRelayType},
		{"transaction-id above 24 bits", Message{Type: MsgLeasequery, TransactionID: 1 << 24}, ErrTransactionID},
		{"option too long", Message{Type: MsgLeasequery, Options: Options{{Code: 200, Data: make([]byte, 65536)}}}, ErrOptionTooLong},
		{"message too long", Message{Type: MsgLeasequeryData, Options: Options{{Code: 200, Data: big}, {Code: 201, Data: big}}}, ErrMessageTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := tt.msg.AppendTo(bytes.Clone(prefix))
			if !errors.Is(err, tt.err) {
				t.Errorf("AppendTo error = %v, want %v", err, tt.err)
			}
			if !bytes.Equal(out, prefix) {
				t.Errorf("AppendTo left %d octets, want the %d octets it was given", len(out), len(prefix))
			}
			out, err = tt.msg.AppendFrameTo(bytes.Clone(prefix))
			if !errors.Is(err, tt.err) || !bytes.Equal(out, prefix) {
				t.Errorf("AppendFrameTo = %d octets, %v", len(out), err)
			}
		})
	}
}

func TestMessageMaxSizeBoundary(t *testing.T) {
	// 4-octet header + 4-octet option header + 65527 octets = 65535.
	m := Message{Type: MsgLeasequeryData, TransactionID: 7, Options: Options{{Code: 200, Data: make([]byte, 65527)}}}
	out, err := m.AppendFrameTo(nil)
	if err != nil {
		t.Fatalf("65535-octet message: %v", err)
	}
	if len(out) != FrameHeaderLen+MaxMessageLen || out[0] != 0xff || out[1] != 0xff {
		t.Errorf("frame of %d octets with msg-size %x", len(out), out[:2])
	}
	var back Message
	if err := back.Decode(out[FrameHeaderLen:]); err != nil {
		t.Errorf("decode 65535-octet message: %v", err)
	}
	m.Options[0].Data = make([]byte, 65528)
	if _, err := m.AppendTo(nil); !errors.Is(err, ErrMessageTooLong) {
		t.Errorf("65536-octet message: %v, want ErrMessageTooLong", err)
	}
}

func TestRelayMessageRoundTrip(t *testing.T) {
	in := cat(
		b(0x0d), // RELAY-REPL
		b(0x01), // hop-count 1
		netip.MustParseAddr("2001:db8::1").AsSlice(), // link-address
		netip.MustParseAddr("fe80::2").AsSlice(),     // peer-address
		b(0x00, 0x12, 0x00, 0x03), []byte("eth"),     // INTERFACE_ID "eth"
		b(0x00, 0x09, 0x00, 0x04), // RELAY_MSG, option-len 4
		b(0x0f, 0x01, 0x02, 0x03), // LEASEQUERY-REPLY xid 0x010203
	)
	var r RelayMessage
	if err := r.Decode(in); err != nil {
		t.Fatal(err)
	}
	if r.Type != MsgRelayRepl || r.HopCount != 1 || r.LinkAddress.String() != "2001:db8::1" || r.PeerAddress.String() != "fe80::2" {
		t.Errorf("header = %+v", r)
	}
	inner, ok := r.InnerMessage()
	if !ok {
		t.Fatal("no RELAY_MSG")
	}
	var m Message
	if err := m.Decode(inner); err != nil || m.TransactionID != 0x010203 {
		t.Errorf("inner = %+v, %v", m, err)
	}
	out, err := r.AppendTo(nil)
	if err != nil || !bytes.Equal(out, in) || r.Len() != len(in) {
		t.Errorf("AppendTo = %x, %v, Len %d", out, err, r.Len())
	}

	if err := r.Decode(b(0x0e, 0, 0, 1)); !errors.Is(err, ErrRelayType) {
		t.Errorf("decode LEASEQUERY as relay: %v", err)
	}
	if err := r.Decode(in[:33]); !errors.Is(err, ErrShortMessage) {
		t.Errorf("decode 33-octet relay: %v", err)
	}
	bad := RelayMessage{Type: MsgLeasequery}
	if _, err := bad.AppendTo(nil); !errors.Is(err, ErrRelayType) {
		t.Errorf("encode LEASEQUERY as relay: %v", err)
	}
	bad = RelayMessage{Type: MsgRelayForw, LinkAddress: netip.MustParseAddr("192.0.2.1")}
	if _, err := bad.AppendTo(nil); !errors.Is(err, ErrNotIPv6) {
		t.Errorf("encode IPv4 link-address: %v", err)
	}
	zero := RelayMessage{Type: MsgRelayForw}
	out, err = zero.AppendTo(nil)
	if err != nil || !bytes.Equal(out, cat(b(0x0c, 0), repeat(0, 32))) {
		t.Errorf("zero addresses encode as %x, %v; want ::", out, err)
	}
}

func TestPeekType(t *testing.T) {
	if typ, err := PeekType(b(0x16, 0, 0, 1)); err != nil || typ != MsgActiveLeasequery {
		t.Errorf("PeekType = %v, %v", typ, err)
	}
	if _, err := PeekType(b(0x16)); !errors.Is(err, ErrShortMessage) {
		t.Errorf("PeekType short: %v", err)
	}
}

func TestPeekHeader(t *testing.T) {
	typ, xid, err := PeekHeader(b(0x0e, 0xb1, 0x0c, 0x03, 0xff)) // LEASEQUERY, xid, a stray octet
	if err != nil || typ != MsgLeasequery || xid != 0xb10c03 {
		t.Errorf("PeekHeader = %v, %#x, %v", typ, xid, err)
	}
	typ, xid, err = PeekHeader(cat(b(0x0c, 0x05), repeat(0, 32)))
	if err != nil || typ != MsgRelayForw || xid != 0 {
		t.Errorf("PeekHeader of a relay = %v, %#x, %v", typ, xid, err)
	}
	if _, _, err := PeekHeader(b(0x0e, 0xb1)); !errors.Is(err, ErrShortMessage) {
		t.Errorf("PeekHeader short: %v", err)
	}
}

func TestDecodeErrorMessage(t *testing.T) {
	err := &DecodeError{Offset: 23, Code: OptLQQuery, Err: ErrOptionLength}
	want := "codec: decode OPTION_LQ_QUERY at offset 23: option length invalid for its option code"
	if err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
	hdr := &DecodeError{Err: ErrShortMessage}
	if hdr.Error() != "codec: decode at offset 0: message shorter than its header" {
		t.Errorf("Error() = %q", hdr.Error())
	}
}

func TestMessageDecodeReusesOptions(t *testing.T) {
	var m Message
	c02 := vectorBytes(t, "c02_bulk_reply_first_binding")
	if err := m.Decode(c02); err != nil {
		t.Fatal(err)
	}
	first := &m.Options[0]
	if err := m.Decode(vectorBytes(t, "c06_bulk_reply_no_binding")); err != nil {
		t.Fatal(err)
	}
	if &m.Options[0] != first {
		t.Error("Decode allocated a new Options array although the old one had room")
	}
	if len(m.Options) != 2 {
		t.Errorf("%d options after the second decode, want 2", len(m.Options))
	}
	// Data is cut to its length: appending must not clobber the next option.
	sid := m.Options[0].Data
	_ = append(sid, 0xff)
	if m.Options[1].Code != OptClientID || m.Options[1].Data[0] != 0x00 {
		t.Error("appending to an option's Data overwrote the next option")
	}
}
