package loadgen

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
)

// FuzzStampFromRelayMessage checks that the relay stamp decoder never
// panics, and that a stamp it finds is read back the same after the
// message is rebuilt with that stamp in front.
func FuzzStampFromRelayMessage(f *testing.F) {
	c := newTestChurn(f, ChurnConfig{Stamp: StampRelay})
	for _, b := range c.Next(nil, 4, fixedNow) {
		f.Add(b.RelayMessage)
	}
	f.Add([]byte{byte(codec.MsgRelayForw)})
	f.Add(append(make([]byte, codec.RelayHeaderLen), 0, 17, 0, 16))
	f.Fuzz(func(t *testing.T, msg []byte) {
		got, ok := StampFromRelayMessage(msg)
		if !ok {
			return
		}
		if len(msg) < codec.RelayHeaderLen || msg[0] != byte(codec.MsgRelayForw) {
			t.Fatalf("stamp %v found in %x, which is not a Relay-forward", got, msg)
		}
		rebuilt := append(append([]byte(nil), msg[:codec.RelayHeaderLen]...), appendVendorStamp(nil, uint64(got.UnixNano()))...)
		again, ok := StampFromRelayMessage(rebuilt)
		if !ok || !again.Equal(got) {
			t.Fatalf("rebuilt message %x gives %v, %v; want %v", rebuilt, again, ok, got)
		}
	})
}

// FuzzStampFromDUID checks the DUID stamp decoder against the layout.
func FuzzStampFromDUID(f *testing.F) {
	f.Add(ClientDUID(1, fixedNow))
	f.Add(ClientDUID(2, time.Time{}))
	f.Add([]byte{0, 2, 0, 0})
	f.Fuzz(func(t *testing.T, duid []byte) {
		got, ok := StampFromDUID(duid)
		if !ok {
			return
		}
		n, isClient := ClientNumber(duid)
		if !isClient {
			t.Fatalf("stamp %v in %x, which is not a client DUID", got, duid)
		}
		if again := ClientDUID(n, got); string(again) != string(duid) {
			t.Fatalf("ClientDUID(%d, %v) = %x, want %x", n, got, again, duid)
		}
	})
}

// FuzzRequestorReceive feeds arbitrary octets, cut into two reads, to a
// swarm connection: it must never panic, and it must count one message per
// frame it returns.
func FuzzRequestorReceive(f *testing.F) {
	f.Add(streamOf(f, 2), 7)
	f.Add([]byte{0, 0}, 1)
	f.Add([]byte{0, 4, 17, 0, 0, 1, 0, 3, 15}, 3)
	f.Fuzz(func(t *testing.T, stream []byte, cut int) {
		r := newBenchRequestor()
		cut = min(max(cut, 0), len(stream))
		frames := countFrames(stream)
		if r.receive(stream[:cut], fixedNow) {
			r.receive(stream[cut:], fixedNow)
		}
		if r.res.Messages != int64(frames) && r.res.Error == "" {
			t.Fatalf("counted %d messages in %x, which holds %d frames", r.res.Messages, stream, frames)
		}
		if r.s.updates.Load() > r.res.Messages*int64(len(stream)) {
			t.Fatalf("%d updates in %d messages", r.s.updates.Load(), r.res.Messages)
		}
	})
}

// countFrames counts the complete frames at the start of stream, stopping
// at a msg-size of 0.
func countFrames(stream []byte) int {
	n := 0
	for len(stream) >= codec.FrameHeaderLen {
		size := int(binary.BigEndian.Uint16(stream))
		if size == 0 || len(stream)-codec.FrameHeaderLen < size {
			break
		}
		stream = stream[codec.FrameHeaderLen+size:]
		n++
	}
	return n
}
