package bench

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/alqd/alqd/codec"
)

func TestFrameSizes(t *testing.T) {
	tests := []struct {
		size    int
		wantErr bool
	}{
		{minFrameSize, false},
		{minFrameSize + relayDataOverhead, false},
		{256, false},
		{1500, false},
		{codec.FrameHeaderLen + codec.MaxMessageLen, false},
		{minFrameSize - 1, true},
		{minFrameSize + 1, true},
		{minFrameSize + relayDataOverhead - 1, true},
		{codec.FrameHeaderLen + codec.MaxMessageLen + 1, true},
	}
	for _, tt := range tests {
		fb, err := newFrameBuilder(tt.size)
		if tt.wantErr {
			if err == nil {
				t.Errorf("newFrameBuilder(%d) succeeded, want an error", tt.size)
			}
			continue
		}
		if err != nil {
			t.Errorf("newFrameBuilder(%d): %v", tt.size, err)
			continue
		}
		frame := fb.appendFrame(nil, 7, 123456789)
		if len(frame) != tt.size {
			t.Errorf("frame of size %d is %d octets", tt.size, len(frame))
		}
		if got := int(binary.BigEndian.Uint16(frame)); got != tt.size-codec.FrameHeaderLen {
			t.Errorf("frame of size %d has msg-size %d, want %d", tt.size, got, tt.size-codec.FrameHeaderLen)
		}
	}
}

func TestProbeRoundTrip(t *testing.T) {
	for _, size := range []int{minFrameSize, 512} {
		fb, err := newFrameBuilder(size)
		if err != nil {
			t.Fatal(err)
		}
		frame := fb.appendFrame(nil, 0xabcdef, 1_700_000_000_123_456_789)
		var d probeDecoder
		typ, key, stamp, ok, err := d.decode(frame[codec.FrameHeaderLen:])
		if err != nil {
			t.Fatalf("size %d: decode: %v", size, err)
		}
		if typ != codec.MsgLeasequeryData {
			t.Errorf("size %d: type %v, want LEASEQUERY-DATA", size, typ)
		}
		if !ok || key != 0xabcdef || stamp != 1_700_000_000_123_456_789 {
			t.Errorf("size %d: probe (%v, %#x, %d), want (true, 0xabcdef, 1700000000123456789)", size, ok, key, stamp)
		}
	}
}

func TestProbeDecodeRejects(t *testing.T) {
	fb, err := newFrameBuilder(minFrameSize)
	if err != nil {
		t.Fatal(err)
	}
	frame := fb.appendFrame(nil, 1, 2)
	msg := frame[codec.FrameHeaderLen:]

	truncated := msg[:len(msg)-3]
	var d probeDecoder
	if _, _, _, _, err := d.decode(truncated); err == nil {
		t.Error("decode of a truncated message succeeded")
	}

	foreign := append([]byte(nil), msg...)
	// The IAADDR address starts 4 (header) + 4 (OPTION_CLIENT_DATA) + 14
	// (client-id) + 8 (CLT_TIME) + 4 (IAADDR header) octets in.
	foreign[34] = 0xfe
	if _, _, _, _, err := d.decode(foreign); !errors.Is(err, errNotProbe) {
		t.Errorf("decode of a non-probe address: %v, want errNotProbe", err)
	}

	reject := subscribeReply(5, 0)
	m := codec.Message{Type: codec.MsgLeasequeryReply, TransactionID: 5}
	status, err := (&codec.StatusError{Code: codec.StatusNotAllowed, Msg: "no"}).AppendOption(nil)
	if err != nil {
		t.Fatal(err)
	}
	m.Options.Add(codec.OptStatusCode, status[codec.OptionHeaderLen:])
	reject, err = m.AppendTo(reject[:0])
	if err != nil {
		t.Fatal(err)
	}
	var se *codec.StatusError
	if _, _, _, _, err := d.decode(reject); !errors.As(err, &se) || se.Code != codec.StatusNotAllowed {
		t.Errorf("decode of a NotAllowed reply: %v, want a NotAllowed *codec.StatusError", err)
	}
}

func TestActiveQueryRoundTrip(t *testing.T) {
	tests := []struct {
		name     string
		filtered bool
		key      uint32
		wantKey  uint32
	}{
		{"unfiltered", false, 9, allKeys},
		{"relay-id", true, 9, 9},
		{"relay-id zero", true, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frame := activeQuery(0x123456, tt.filtered, tt.key)
			xid, key, err := parseActiveQuery(frame[codec.FrameHeaderLen:])
			if err != nil {
				t.Fatal(err)
			}
			if xid != 0x123456 || key != tt.wantKey {
				t.Errorf("parsed (xid %#x, key %d), want (0x123456, %d)", xid, key, tt.wantKey)
			}
		})
	}
}

func TestRelayKeyRejectsOtherDUIDs(t *testing.T) {
	for _, duid := range [][]byte{
		nil,
		{0, 3, 0, 1, 1, 2, 3, 4, 5, 6}, // DUID-LL
		{0, 2, 0, 0, 0, 9, 0, 0, 0, 1}, // another enterprise
		append(relayDUID(1), 0),        // too long
		relayDUID(1)[:9],               // too short
	} {
		if _, ok := relayKey(duid); ok {
			t.Errorf("relayKey(%x) accepted a foreign DUID", duid)
		}
	}
	if key, ok := relayKey(relayDUID(77)); !ok || key != 77 {
		t.Errorf("relayKey(relayDUID(77)) = %d, %v", key, ok)
	}
}

func BenchmarkAppendFrame(b *testing.B) {
	fb, err := newFrameBuilder(minFrameSize)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, minFrameSize)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		buf = fb.appendFrame(buf[:0], 1, int64(i))
	}
}

func BenchmarkProbeDecode(b *testing.B) {
	fb, err := newFrameBuilder(256)
	if err != nil {
		b.Fatal(err)
	}
	msg := fb.appendFrame(nil, 1, 2)[codec.FrameHeaderLen:]
	var d probeDecoder
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, _, err := d.decode(msg); err != nil {
			b.Fatal(err)
		}
	}
}

func TestProbeDecodeAllocs(t *testing.T) {
	fb, err := newFrameBuilder(256)
	if err != nil {
		t.Fatal(err)
	}
	msg := fb.appendFrame(nil, 1, 2)[codec.FrameHeaderLen:]
	var d probeDecoder
	d.decode(msg) // grow the reused slices
	if n := testing.AllocsPerRun(100, func() { d.decode(msg) }); n != 0 {
		t.Errorf("probeDecoder.decode allocates %v times per message, want 0", n)
	}
}

func TestActiveCatchUpQuery(t *testing.T) {
	frame := activeCatchUpQuery(123456)
	var msg codec.Message
	if err := msg.Decode(frame[codec.FrameHeaderLen:]); err != nil {
		t.Fatal(err)
	}
	if msg.Type != codec.MsgActiveLeasequery {
		t.Errorf("type %v, want ACTIVELEASEQUERY", msg.Type)
	}
	if start, ok := msg.Options.StartTime(); !ok || start != 123456 {
		t.Errorf("OPTION_LQ_START_TIME = %d, %v; want 123456", start, ok)
	}
	if _, key, err := parseActiveQuery(frame[codec.FrameHeaderLen:]); err != nil || key != 0 {
		t.Errorf("query key %d, err %v; want relay 0", key, err)
	}
}

func TestHasClientData(t *testing.T) {
	fb, err := newFrameBuilder(minFrameSize)
	if err != nil {
		t.Fatal(err)
	}
	data := fb.appendFrame(nil, 1, 2)[codec.FrameHeaderLen:]
	keepalive, err := (&codec.Message{Type: codec.MsgLeasequeryData}).AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	reply := subscribeReply(1, 2)[codec.FrameHeaderLen:]
	tests := []struct {
		name string
		msg  []byte
		want bool
	}{
		{"binding", data, true},
		{"keepalive", keepalive, false},
		{"reply with base time", reply, false},
		{"truncated option", data[:codec.HeaderLen+2], false},
	}
	for _, tt := range tests {
		if got := hasClientData(tt.msg); got != tt.want {
			t.Errorf("%s: hasClientData = %v, want %v", tt.name, got, tt.want)
		}
	}
}
