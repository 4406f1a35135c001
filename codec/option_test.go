package codec

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
)

func TestTypedOptionEncoding(t *testing.T) {
	addr := netip.MustParseAddr("2001:db8:1::10")
	tests := []struct {
		name string
		opt  typedOption
		want []byte
	}{
		{
			name: "IA_NA with IAADDR",
			opt: &IANA{IAID: 1, T1: 1800, T2: 2880, Options: Options{
				{Code: OptIAAddr, Data: cat(addr.AsSlice(), b(0, 0, 0x0e, 0x10, 0, 0, 0x1c, 0x20))},
			}},
			want: cat(
				b(0x00, 0x03, 0x00, 0x28), // IA_NA, option-len 40
				b(0x00, 0x00, 0x00, 0x01), // IAID 1
				b(0x00, 0x00, 0x07, 0x08), // T1 1800
				b(0x00, 0x00, 0x0b, 0x40), // T2 2880
				b(0x00, 0x05, 0x00, 0x18), // IAADDR, option-len 24
				addr.AsSlice(),            // 2001:db8:1::10
				b(0x00, 0x00, 0x0e, 0x10), // preferred-lifetime 3600
				b(0x00, 0x00, 0x1c, 0x20), // valid-lifetime 7200
			),
		},
		{
			name: "IA_TA empty",
			opt:  &IATA{IAID: 0xdeadbeef},
			want: cat(
				b(0x00, 0x04, 0x00, 0x04), // IA_TA, option-len 4
				b(0xde, 0xad, 0xbe, 0xef), // IAID
			),
		},
		{
			name: "IA_PD empty",
			opt:  &IAPD{IAID: 2, T1: 0, T2: 0xffffffff},
			want: cat(
				b(0x00, 0x19, 0x00, 0x0c), // IA_PD, option-len 12
				b(0x00, 0x00, 0x00, 0x02), // IAID 2
				b(0x00, 0x00, 0x00, 0x00), // T1 0
				b(0xff, 0xff, 0xff, 0xff), // T2 infinity
			),
		},
		{
			name: "IAADDR with status",
			opt: &IAAddr{Addr: addr, PreferredLifetime: 0, ValidLifetime: 0, Options: Options{
				{Code: OptStatusCode, Data: b(0x00, 0x00)},
			}},
			want: cat(
				b(0x00, 0x05, 0x00, 0x1e), // IAADDR, option-len 30
				addr.AsSlice(),            // address
				b(0x00, 0x00, 0x00, 0x00), // preferred-lifetime 0
				b(0x00, 0x00, 0x00, 0x00), // valid-lifetime 0
				b(0x00, 0x0d, 0x00, 0x02), // STATUS_CODE, option-len 2
				b(0x00, 0x00),             // Success
			),
		},
		{
			name: "IAPREFIX keeps host bits",
			opt: &IAPrefix{PreferredLifetime: 1795, ValidLifetime: 3595,
				Prefix: netip.PrefixFrom(netip.MustParseAddr("2001:db8:100:1201::"), 56)},
			want: cat(
				b(0x00, 0x1a, 0x00, 0x19), // IAPREFIX, option-len 25
				b(0x00, 0x00, 0x07, 0x03), // preferred-lifetime 1795
				b(0x00, 0x00, 0x0e, 0x0b), // valid-lifetime 3595
				b(56),                     // prefix-length
				netip.MustParseAddr("2001:db8:100:1201::").AsSlice(), // prefix, host bits as given
			),
		},
		{
			name: "ORO",
			opt:  &ORO{OptLQBaseTime, OptLQRelayData},
			want: cat(
				b(0x00, 0x06, 0x00, 0x04), // ORO, option-len 4
				b(0x00, 0x64),             // LQ_BASE_TIME
				b(0x00, 0x2f),             // LQ_RELAY_DATA
			),
		},
		{
			name: "STATUS_CODE",
			opt:  &Status{Code: StatusCatchUpComplete, Message: []byte("done")},
			want: cat(
				b(0x00, 0x0d, 0x00, 0x06), // STATUS_CODE, option-len 6
				b(0x00, 0x0d),             // CatchUpComplete
				[]byte("done"),            // status-message
			),
		},
		{
			name: "REMOTE_ID",
			opt:  &RemoteID{EnterpriseNumber: 32473, ID: []byte("port-7")},
			want: cat(
				b(0x00, 0x25, 0x00, 0x0a), // REMOTE_ID, option-len 10
				b(0x00, 0x00, 0x7e, 0xd9), // enterprise-number 32473
				[]byte("port-7"),          // remote-id
			),
		},
		{
			name: "LQ_QUERY by address",
			opt: &LQQuery{QueryType: QueryByAddress, Options: Options{
				{Code: OptIAAddr, Data: cat(addr.AsSlice(), repeat(0, 8))},
			}},
			want: cat(
				b(0x00, 0x2c, 0x00, 0x2d), // LQ_QUERY, option-len 45
				b(0x01),                   // QUERY_BY_ADDRESS
				repeat(0, 16),             // link-address ::
				b(0x00, 0x05, 0x00, 0x18), // IAADDR, option-len 24
				addr.AsSlice(),            // address asked about
				repeat(0, 8),              // lifetimes, ignored
			),
		},
		{
			name: "LQ_QUERY by link",
			opt:  &LQQuery{QueryType: QueryByLinkAddress, LinkAddress: netip.MustParseAddr("2001:db8:1::1")},
			want: cat(
				b(0x00, 0x2c, 0x00, 0x11), // LQ_QUERY, option-len 17
				b(0x04),                   // QUERY_BY_LINK_ADDRESS
				netip.MustParseAddr("2001:db8:1::1").AsSlice(), // link-address
			),
		},
		{
			name: "CLIENT_DATA in canonical order",
			opt: &ClientData{
				Other:      Options{{Code: 254, Data: b(7)}},
				Addrs:      []IAAddr{{Addr: addr, PreferredLifetime: 1, ValidLifetime: 2}},
				CLTTime:    60,
				HasCLTTime: true,
				ClientID:   duidLL,
			},
			want: cat(
				b(0x00, 0x2d, 0x00, 0x37), // CLIENT_DATA, option-len 55
				b(0x00, 0x01, 0x00, 0x0a), // CLIENTID, option-len 10
				duidLL,                    // DUID-LL
				b(0x00, 0x2e, 0x00, 0x04), // CLT_TIME, option-len 4
				b(0x00, 0x00, 0x00, 0x3c), // 60 s
				b(0x00, 0x05, 0x00, 0x18), // IAADDR, option-len 24
				addr.AsSlice(),            // address
				b(0, 0, 0, 1, 0, 0, 0, 2), // lifetimes 1 and 2
				b(0x00, 0xfe, 0x00, 0x01), // option 254, option-len 1
				b(0x07),                   // kept raw
			),
		},
		{
			name: "LQ_CLIENT_LINK",
			opt:  &LQClientLink{Links: []netip.Addr{netip.MustParseAddr("2001:db8:1::1"), netip.MustParseAddr("2001:db8:2::1")}},
			want: cat(
				b(0x00, 0x30, 0x00, 0x20),                      // LQ_CLIENT_LINK, option-len 32
				netip.MustParseAddr("2001:db8:1::1").AsSlice(), // first link
				netip.MustParseAddr("2001:db8:2::1").AsSlice(), // second link
			),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := b(0x99) // a byte already in the buffer must stay
			out, err := tt.opt.AppendTo(bytes.Clone(prefix))
			if err != nil {
				t.Fatalf("AppendTo: %v", err)
			}
			if !bytes.Equal(out, cat(prefix, tt.want)) {
				t.Errorf("AppendTo\n got %x\nwant %x", out[1:], tt.want)
			}
			if tt.opt.Len() != len(tt.want) {
				t.Errorf("Len = %d, want %d", tt.opt.Len(), len(tt.want))
			}
			// Decoding the option-data and encoding again gives the same bytes.
			if _, err := typedRoundTrip(Option{Code: OptionCode(tt.want[0])<<8 | OptionCode(tt.want[1]), Data: tt.want[4:]}); err != nil {
				t.Errorf("round trip: %v", err)
			}
		})
	}
}

func TestTypedOptionEncodeErrors(t *testing.T) {
	v4 := netip.MustParseAddr("192.0.2.1")
	tests := []struct {
		name string
		opt  typedOption
		err  error
	}{
		{"IAADDR with IPv4", &IAAddr{Addr: v4}, ErrNotIPv6},
		{"IAPREFIX with IPv4", &IAPrefix{Prefix: netip.PrefixFrom(v4, 24)}, ErrNotIPv6},
		{"IAPREFIX with invalid length", &IAPrefix{Prefix: netip.PrefixFrom(netip.IPv6Unspecified(), 129)}, ErrPrefixLength},
		{"LQ_QUERY with IPv4 link", &LQQuery{QueryType: QueryByLinkAddress, LinkAddress: v4}, ErrNotIPv6},
		{"LQ_CLIENT_LINK empty", &LQClientLink{}, ErrOptionLength},
		{"LQ_CLIENT_LINK with IPv4", &LQClientLink{Links: []netip.Addr{v4}}, ErrNotIPv6},
		{"LQ_RELAY_DATA with IPv4 peer", &LQRelayData{PeerAddress: v4}, ErrNotIPv6},
		{"LQ_RELAY_DATA too long", &LQRelayData{Message: make([]byte, MaxOptionLen)}, ErrOptionTooLong},
		{"REMOTE_ID empty", &RemoteID{EnterpriseNumber: 1}, ErrOptionLength},
		{"STATUS_CODE not UTF-8", &Status{Message: b(0xff)}, ErrInvalidUTF8},
		{"STATUS_CODE too long", &Status{Message: make([]byte, MaxOptionLen-1)}, ErrOptionTooLong},
		{"ORO too long", func() *ORO { o := make(ORO, 32768); return &o }(), ErrOptionTooLong},
		{"IA_NA too long", &IANA{Options: Options{{Code: 200, Data: make([]byte, MaxOptionLen-12)}}}, ErrOptionTooLong},
		{"CLIENT_DATA too long", &ClientData{Other: Options{{Code: 200, Data: make([]byte, MaxOptionLen-3)}}}, ErrOptionTooLong},
		{"CLIENT_DATA with IPv4 address", &ClientData{ClientID: duidLL, Addrs: []IAAddr{{Addr: v4}}}, ErrNotIPv6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := b(0x01, 0x02)
			out, err := tt.opt.AppendTo(bytes.Clone(prefix))
			if !errors.Is(err, tt.err) {
				t.Errorf("error = %v, want %v", err, tt.err)
			}
			if !bytes.Equal(out, prefix) {
				t.Errorf("buffer changed to %d octets on error", len(out))
			}
		})
	}
}

func TestTypedOptionDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		opt  typedOption
		data []byte
		err  error
	}{
		{"IA_NA short", &IANA{}, repeat(0, 11), ErrOptionLength},
		{"IA_PD short", &IAPD{}, repeat(0, 11), ErrOptionLength},
		{"IA_TA short", &IATA{}, repeat(0, 3), ErrOptionLength},
		{"IAADDR short", &IAAddr{}, repeat(0, 23), ErrOptionLength},
		{"IAPREFIX short", &IAPrefix{}, repeat(0, 24), ErrOptionLength},
		{"IAPREFIX length 200", &IAPrefix{}, cat(repeat(0, 8), b(200), repeat(0, 16)), ErrPrefixLength},
		{"IAADDR sub-option overrun", &IAAddr{}, cat(repeat(0, 24), b(0, 13, 0, 9)), ErrOptionOverrun},
		{"ORO odd", &ORO{}, b(0, 1, 0), ErrOptionLength},
		{"STATUS_CODE short", &Status{}, b(0), ErrOptionLength},
		{"REMOTE_ID short", &RemoteID{}, b(0, 0, 0, 1), ErrOptionLength},
		{"LQ_QUERY short", &LQQuery{}, repeat(0, 16), ErrOptionLength},
		{"LQ_QUERY duplicate key", &LQQuery{}, cat(b(2), repeat(0, 16), b(0, 1, 0, 10), duidLL, b(0, 1, 0, 10), duidLL), ErrDuplicateOption},
		{"LQ_RELAY_DATA short", &LQRelayData{}, repeat(0, 49), ErrOptionLength},
		{"LQ_CLIENT_LINK 15 octets", &LQClientLink{}, repeat(0, 15), ErrOptionLength},
		{"CLIENT_DATA trailing", &ClientData{}, b(0, 46, 0), ErrTrailingBytes},
		{"CLIENT_DATA two CLIENTID", &ClientData{}, cat(b(0, 1, 0, 10), duidLL, b(0, 1, 0, 10), duidLL), ErrDuplicateOption},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opt.Decode(tt.data)
			if !errors.Is(err, tt.err) {
				t.Errorf("error = %v, want %v", err, tt.err)
			}
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Errorf("error %v is not a *DecodeError", err)
			}
		})
	}
}

func TestClientDataDecodeReusesSlices(t *testing.T) {
	c03 := vectorBytes(t, "c03_bulk_data_second_binding")
	var m Message
	if err := m.Decode(c03); err != nil {
		t.Fatal(err)
	}
	raw, _ := m.Options.ClientData()
	var cd ClientData
	if err := cd.Decode(raw); err != nil {
		t.Fatal(err)
	}
	addrs, prefixes := &cd.Addrs[0], &cd.Prefixes[0]
	if err := cd.Decode(raw); err != nil {
		t.Fatal(err)
	}
	if &cd.Addrs[0] != addrs || &cd.Prefixes[0] != prefixes {
		t.Error("second Decode allocated new Addrs or Prefixes")
	}

	// A CLIENT_DATA without the optional fields clears what the last one set.
	if err := cd.Decode(b(0, 46, 0, 4, 0, 0, 0, 9)); err != nil {
		t.Fatal(err)
	}
	if cd.ClientID != nil || len(cd.Addrs) != 0 || len(cd.Prefixes) != 0 || cd.HasRelayData || cd.CLTTime != 9 {
		t.Errorf("fields left over from the previous decode: %+v", cd)
	}
}

func TestLQQueryValidate(t *testing.T) {
	iaaddr := Option{Code: OptIAAddr, Data: repeat(0, 24)}
	tests := []struct {
		name  string
		query LQQuery
		code  StatusCode // 0 means Validate must return nil
	}{
		{"by address", LQQuery{QueryType: QueryByAddress, Options: Options{iaaddr}}, 0},
		{"by address without IAADDR", LQQuery{QueryType: QueryByAddress}, StatusMalformedQuery},
		{"by client-id", LQQuery{QueryType: QueryByClientID, Options: Options{{Code: OptClientID, Data: duidLL}}}, 0},
		{"by client-id without CLIENTID", LQQuery{QueryType: QueryByClientID, Options: Options{iaaddr}}, StatusMalformedQuery},
		{"by relay-id", LQQuery{QueryType: QueryByRelayID, Options: Options{{Code: OptRelayID, Data: duidLL}}}, 0},
		{"by relay-id without RELAY_ID", LQQuery{QueryType: QueryByRelayID}, StatusMalformedQuery},
		{"by remote-id", LQQuery{QueryType: QueryByRemoteID, Options: Options{{Code: OptRemoteID, Data: b(0, 0, 0, 1, 'x')}}}, 0},
		{"by remote-id without REMOTE_ID", LQQuery{QueryType: QueryByRemoteID}, StatusMalformedQuery},
		{"by link", LQQuery{QueryType: QueryByLinkAddress, LinkAddress: netip.MustParseAddr("2001:db8::1")}, 0},
		{"by link ::", LQQuery{QueryType: QueryByLinkAddress, LinkAddress: netip.IPv6Unspecified()}, StatusMalformedQuery},
		{"by link zero Addr", LQQuery{QueryType: QueryByLinkAddress}, StatusMalformedQuery},
		{"type 0", LQQuery{QueryType: 0}, StatusUnknownQueryType},
		{"type 6", LQQuery{QueryType: 6}, StatusUnknownQueryType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.query.Validate()
			if tt.code == 0 {
				if err != nil {
					t.Errorf("Validate = %v, want nil", err)
				}
				return
			}
			var se *StatusError
			if !errors.As(err, &se) {
				t.Fatalf("Validate = %v, want a *StatusError", err)
			}
			if se.Code != tt.code {
				t.Errorf("Code = %v, want %v", se.Code, tt.code)
			}
			if se.Msg == "" {
				t.Error("empty status message")
			}
		})
	}
}

func TestStatusError(t *testing.T) {
	e := &StatusError{Code: StatusNotAllowed, Msg: "requestor not on the allow list"}
	if e.Error() != "codec: status NotAllowed: requestor not on the allow list" {
		t.Errorf("Error() = %q", e.Error())
	}
	if (&StatusError{Code: StatusDataMissing}).Error() != "codec: status DataMissing" {
		t.Error("Error() without message")
	}
	out, err := e.AppendOption(nil)
	if err != nil {
		t.Fatal(err)
	}
	var s Status
	if err := s.Decode(out[OptionHeaderLen:]); err != nil || s.Code != StatusNotAllowed || string(s.Message) != e.Msg {
		t.Errorf("decoded %+v, %v", s, err)
	}
	if (Status{Code: StatusSuccess}).Err() != nil {
		t.Error("Success.Err() is not nil")
	}
	if _, err := AppendStatusCode(nil, StatusSuccess, "\xff"); !errors.Is(err, ErrInvalidUTF8) {
		t.Errorf("AppendStatusCode with invalid UTF-8: %v", err)
	}
}

func TestOptionsAccessors(t *testing.T) {
	var m Message
	if err := m.Decode(vectorBytes(t, "c01_bulk_query_by_relay_id")); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Options.ServerID(); ok {
		t.Error("ServerID present in a LEASEQUERY without one")
	}
	if cid, ok := m.Options.ClientID(); !ok || !bytes.Equal(cid, duidLL) {
		t.Errorf("ClientID = %x", cid)
	}
	if !m.Options.Requests(OptLQBaseTime) || m.Options.Requests(OptLQRelayData) {
		t.Error("message ORO must list LQ_BASE_TIME only")
	}
	var q LQQuery
	if ok, err := m.Options.LQQuery(&q); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if !q.Options.Requests(OptLQRelayData) {
		t.Error("query ORO must list LQ_RELAY_DATA")
	}
	if m.Options.Count(OptLQQuery) != 1 || m.Options.Has(OptStatusCode) {
		t.Error("Count or Has wrong")
	}
	if _, ok, err := m.Options.Status(); ok || err != nil {
		t.Error("Status present")
	}
	if _, ok, err := m.Options.RemoteID(); ok || err != nil {
		t.Error("RemoteID present")
	}
	if _, ok := m.Options.BaseTime(); ok {
		t.Error("BaseTime present")
	}
	var hand Options
	hand.Add(OptCLTTime, b(1, 2, 3))
	if _, ok := hand.CLTTime(); ok {
		t.Error("3-octet CLT_TIME reported as present")
	}
	var a IAAddr
	if ok, err := q.IAAddr(&a); ok || err != nil {
		t.Error("IAAddr present in a QUERY_BY_RELAY_ID")
	}
}

func TestBeginEndOption(t *testing.T) {
	out, start := BeginOption(b(0xee), OptClientData)
	if start != 1 {
		t.Fatalf("start = %d", start)
	}
	out = AppendUint32Option(out, OptCLTTime, 60)
	out, err := EndOption(out, start)
	if err != nil {
		t.Fatal(err)
	}
	want := cat(
		b(0xee),                   // caller's byte
		b(0x00, 0x2d, 0x00, 0x08), // CLIENT_DATA, option-len 8
		b(0x00, 0x2e, 0x00, 0x04), // CLT_TIME, option-len 4
		b(0x00, 0x00, 0x00, 0x3c), // 60 s
	)
	if !bytes.Equal(out, want) {
		t.Errorf("got %x, want %x", out, want)
	}

	out, start = BeginOption(b(0xee), OptClientData)
	out = append(out, make([]byte, MaxOptionLen+1)...)
	out, err = EndOption(out, start)
	if !errors.Is(err, ErrOptionTooLong) || !bytes.Equal(out, b(0xee)) {
		t.Errorf("oversized option: %d octets left, %v", len(out), err)
	}
	if _, err := AppendOption(nil, 1, make([]byte, MaxOptionLen+1)); !errors.Is(err, ErrOptionTooLong) {
		t.Errorf("AppendOption oversized: %v", err)
	}
}

func TestAppendIAHelpers(t *testing.T) {
	addr := netip.MustParseAddr("2001:db8:1::10")
	got, err := AppendIAAddr(nil, addr, 1740, 3540)
	if err != nil {
		t.Fatal(err)
	}
	want := mustAppend(t, (&IAAddr{Addr: addr, PreferredLifetime: 1740, ValidLifetime: 3540}).AppendTo)
	if !bytes.Equal(got, want) {
		t.Errorf("AppendIAAddr = %x, want %x", got, want)
	}
	prefix := netip.MustParsePrefix("2001:db8:100:1200::/56")
	got, err = AppendIAPrefix(nil, prefix, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	want = mustAppend(t, (&IAPrefix{Prefix: prefix}).AppendTo)
	if !bytes.Equal(got, want) {
		t.Errorf("AppendIAPrefix = %x, want %x", got, want)
	}
	if _, err := AppendIAAddr(nil, netip.MustParseAddr("192.0.2.1"), 0, 0); !errors.Is(err, ErrNotIPv6) {
		t.Errorf("AppendIAAddr IPv4: %v", err)
	}
	if _, err := AppendIAPrefix(nil, netip.MustParsePrefix("192.0.2.0/24"), 0, 0); !errors.Is(err, ErrNotIPv6) {
		t.Errorf("AppendIAPrefix IPv4: %v", err)
	}
}

func TestOROContains(t *testing.T) {
	data := b(0x00, 0x64, 0x00, 0x2f, 0x00) // LQ_BASE_TIME, LQ_RELAY_DATA, stray octet
	if !OROContains(data, OptLQBaseTime) || !OROContains(data, OptLQRelayData) || OROContains(data, OptClientID) {
		t.Error("OROContains wrong")
	}
	var o ORO
	if err := o.Decode(data[:4]); err != nil || !o.Contains(OptLQRelayData) || o.Contains(OptORO) || len(o) != 2 {
		t.Errorf("ORO = %v, %v", o, err)
	}
}
