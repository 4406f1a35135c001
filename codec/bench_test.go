package codec

import (
	"net/netip"
	"testing"
)

// bulkBindings is the number of bindings in the bulk reply benchmarks: one
// LEASEQUERY-REPLY, then one LEASEQUERY-DATA per further binding, then a
// LEASEQUERY-DONE.
const bulkBindings = 1000

var (
	benchServerID = b(0x00, 0x01, 0x00, 0x01, 0x2d, 0x24, 0xbd, 0x00, 0x00, 0x00, 0x5e, 0x00, 0x53, 0xfe)
	benchRelayID  = cat(b(0x00, 0x02, 0x00, 0x00, 0x7e, 0xd9), []byte("relay-a"))
)

// benchClientData returns the CLIENT_DATA of binding i: a DUID-LL client, an
// address, a delegated prefix and a stored single-relay chain, as in the c03
// vector.
func benchClientData(i int, relay []byte) ClientData {
	return ClientData{
		ClientID:   b(0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x5e, byte(i>>16), byte(i>>8), byte(i)),
		CLTTime:    uint32(i % 3600),
		HasCLTTime: true,
		Addrs: []IAAddr{{
			Addr:              netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)}),
			PreferredLifetime: 1795,
			ValidLifetime:     3595,
		}},
		Prefixes: []IAPrefix{{
			Prefix:            netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0x01, 0x00, byte(i >> 8), byte(i)}), 56),
			PreferredLifetime: 1795,
			ValidLifetime:     3595,
		}},
		HasRelayData: true,
		RelayData:    LQRelayData{PeerAddress: netip.MustParseAddr("2001:db8:1::1"), Message: relay},
	}
}

// benchRelay returns a stored RELAY-FORW like the one in the c03 vector.
func benchRelay(tb testing.TB) []byte {
	r := RelayMessage{
		Type:        MsgRelayForw,
		LinkAddress: netip.MustParseAddr("2001:db8:1::1"),
		PeerAddress: netip.MustParseAddr("fe80::200:5eff:fe00:5302"),
		Options: Options{
			{Code: OptInterfaceID, Data: []byte("ge-0/0/2.100")},
			{Code: OptRelayID, Data: benchRelayID},
		},
	}
	out, err := r.AppendTo(nil)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// benchBindings returns n CLIENT_DATA values.
func benchBindings(tb testing.TB, n int) []ClientData {
	relay := benchRelay(tb)
	out := make([]ClientData, n)
	for i := range out {
		out[i] = benchClientData(i, relay)
	}
	return out
}

// appendBulkReply appends the framed reply to a bulk query, one binding per
// message, the way a server builds it: every message straight into one
// buffer, each msg-size reserved and patched.
func appendBulkReply(buf []byte, bindings []ClientData) ([]byte, error) {
	const xid = 0xb10c01
	var err error
	for i := range bindings {
		var start int
		buf, start = BeginFrame(buf)
		if i == 0 {
			buf, _ = AppendHeader(buf, MsgLeasequeryReply, xid)
			buf, _ = AppendOption(buf, OptServerID, benchServerID)
			buf, _ = AppendOption(buf, OptClientID, duidLL)
		} else {
			buf, _ = AppendHeader(buf, MsgLeasequeryData, xid)
		}
		buf = AppendUint32Option(buf, OptLQBaseTime, 820540800)
		if buf, err = bindings[i].AppendTo(buf); err != nil {
			return buf, err
		}
		if buf, err = EndFrame(buf, start); err != nil {
			return buf, err
		}
	}
	buf, start := BeginFrame(buf)
	buf, _ = AppendHeader(buf, MsgLeasequeryDone, xid)
	return EndFrame(buf, start)
}

// decodeBulkReply splits and fully decodes a framed bulk reply, every
// CLIENT_DATA and relay chain included, reusing the caller's values. It
// returns the number of bindings.
func decodeBulkReply(stream []byte, f *Framer, m *Message, cd *ClientData, relay *RelayMessage) (int, error) {
	f.Reset()
	f.Feed(stream)
	n := 0
	for {
		msg, err := f.Next()
		if err != nil || msg == nil {
			return n, err
		}
		if err := m.Decode(msg); err != nil {
			return n, err
		}
		raw, ok := m.Options.ClientData()
		if !ok {
			continue
		}
		if err := cd.Decode(raw); err != nil {
			return n, err
		}
		if cd.HasRelayData {
			if err := relay.Decode(cd.RelayData.Message); err != nil {
				return n, err
			}
		}
		n++
	}
}

func TestBulkReplyRoundTrip(t *testing.T) {
	bindings := benchBindings(t, 50)
	stream, err := appendBulkReply(nil, bindings)
	if err != nil {
		t.Fatal(err)
	}
	var (
		f     Framer
		m     Message
		cd    ClientData
		relay RelayMessage
	)
	n, err := decodeBulkReply(stream, &f, &m, &cd, &relay)
	if err != nil || n != len(bindings) {
		t.Fatalf("decoded %d bindings, %v", n, err)
	}
	if m.Type != MsgLeasequeryDone {
		t.Errorf("last message %v, want LEASEQUERY-DONE", m.Type)
	}
}

// TestHotPathAllocs checks that decoding a LEASEQUERY-DATA and re-encoding
// it into a reused buffer, and the framer, do not allocate.
func TestHotPathAllocs(t *testing.T) {
	c03 := vectorBytes(t, "c03_bulk_data_second_binding")
	bindings := benchBindings(t, 20)
	stream, err := appendBulkReply(nil, bindings)
	if err != nil {
		t.Fatal(err)
	}
	var (
		m     Message
		cd    ClientData
		relay RelayMessage
		f     Framer
		buf   []byte
	)
	decode := func() {
		if err := m.Decode(c03); err != nil {
			t.Fatal(err)
		}
		raw, _ := m.Options.ClientData()
		if err := cd.Decode(raw); err != nil {
			t.Fatal(err)
		}
		if err := relay.Decode(cd.RelayData.Message); err != nil {
			t.Fatal(err)
		}
	}
	decode() // grow the reused slices once
	buf, _ = m.AppendFrameTo(buf[:0])
	stream2, _ := appendBulkReply(nil, bindings)

	tests := []struct {
		name string
		run  func()
	}{
		{"Message.Decode LEASEQUERY-DATA", func() { _ = m.Decode(c03) }},
		{"ClientData and relay decode", decode},
		{"Message.AppendTo reused buffer", func() { buf, _ = m.AppendTo(buf[:0]) }},
		{"Message.AppendFrameTo reused buffer", func() { buf, _ = m.AppendFrameTo(buf[:0]) }},
		{"ClientData.AppendTo reused buffer", func() { buf, _ = cd.AppendTo(buf[:0]) }},
		{"bulk reply encode reused buffer", func() { stream2, _ = appendBulkReply(stream2[:0], bindings) }},
		{"bulk reply framing and decode", func() { _, _ = decodeBulkReply(stream, &f, &m, &cd, &relay) }},
		{"AppendIAAddr and AppendIAPrefix", func() {
			buf, _ = AppendIAAddr(buf[:0], cd.Addrs[0].Addr, 1, 2)
			buf, _ = AppendIAPrefix(buf, cd.Prefixes[0].Prefix, 1, 2)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.run()
			if allocs := testing.AllocsPerRun(100, tt.run); allocs != 0 {
				t.Errorf("%v allocations per run, want 0", allocs)
			}
		})
	}
}

func BenchmarkDecodeLeasequeryData(b *testing.B) {
	c03 := vectorBytes(b, "c03_bulk_data_second_binding")
	var (
		m     Message
		cd    ClientData
		relay RelayMessage
	)
	b.ReportAllocs()
	b.SetBytes(int64(len(c03)))
	for b.Loop() {
		if err := m.Decode(c03); err != nil {
			b.Fatal(err)
		}
		raw, _ := m.Options.ClientData()
		if err := cd.Decode(raw); err != nil {
			b.Fatal(err)
		}
		if err := relay.Decode(cd.RelayData.Message); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeLeasequeryData(b *testing.B) {
	c03 := vectorBytes(b, "c03_bulk_data_second_binding")
	var (
		m  Message
		cd ClientData
	)
	if err := m.Decode(c03); err != nil {
		b.Fatal(err)
	}
	raw, _ := m.Options.ClientData()
	if err := cd.Decode(raw); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	b.SetBytes(int64(len(c03) + FrameHeaderLen))
	for b.Loop() {
		var start int
		var err error
		buf, start = BeginFrame(buf[:0])
		buf, _ = AppendHeader(buf, MsgLeasequeryData, 0xb10c01)
		buf = AppendUint32Option(buf, OptLQBaseTime, 820540800)
		if buf, err = cd.AppendTo(buf); err != nil {
			b.Fatal(err)
		}
		if buf, err = EndFrame(buf, start); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeBulkReply(b *testing.B) {
	stream, err := appendBulkReply(nil, benchBindings(b, bulkBindings))
	if err != nil {
		b.Fatal(err)
	}
	var (
		f     Framer
		m     Message
		cd    ClientData
		relay RelayMessage
	)
	b.ReportAllocs()
	b.SetBytes(int64(len(stream)))
	for b.Loop() {
		if n, err := decodeBulkReply(stream, &f, &m, &cd, &relay); err != nil || n != bulkBindings {
			b.Fatal(n, err)
		}
	}
}

func BenchmarkEncodeBulkReply(b *testing.B) {
	bindings := benchBindings(b, bulkBindings)
	buf, err := appendBulkReply(nil, bindings)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if buf, err = appendBulkReply(buf[:0], bindings); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFramerChunks splits a bulk reply delivered in 1448-octet chunks,
// one TCP segment each, so that most frames straddle two chunks.
func BenchmarkFramerChunks(b *testing.B) {
	stream, err := appendBulkReply(nil, benchBindings(b, bulkBindings))
	if err != nil {
		b.Fatal(err)
	}
	var f Framer
	b.ReportAllocs()
	b.SetBytes(int64(len(stream)))
	for b.Loop() {
		f.Reset()
		frames := 0
		for rest := stream; len(rest) > 0; {
			n := min(1448, len(rest))
			f.Feed(rest[:n])
			rest = rest[n:]
			for {
				msg, err := f.Next()
				if err != nil {
					b.Fatal(err)
				}
				if msg == nil {
					break
				}
				frames++
			}
		}
		if frames != bulkBindings+1 {
			b.Fatalf("%d frames", frames)
		}
	}
}
