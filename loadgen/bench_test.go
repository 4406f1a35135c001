package loadgen

import (
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/store"
)

func BenchmarkChurnNext(b *testing.B) {
	for _, tc := range []struct {
		name string
		cfg  ChurnConfig
	}{
		{"relayed", ChurnConfig{}},
		{"direct", ChurnConfig{Direct: true}},
		{"relay stamp", ChurnConfig{Stamp: StampRelay}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c := newTestChurn(b, tc.cfg)
			dst := make([]store.Binding, 0, 256)
			b.ReportAllocs()
			for b.Loop() {
				dst = c.Next(dst[:0], 256, fixedNow)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*256), "ns/change")
		})
	}
}

func BenchmarkAppendKeaRow(b *testing.B) {
	changes := newTestChurn(b, ChurnConfig{}).NextChanges(nil, 1024, fixedNow)
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		buf = AppendKeaRow(buf[:0], &changes[i%len(changes)])
		i++
	}
	b.SetBytes(int64(len(buf)))
}

// streamOf returns n framed LEASEQUERY-DATA messages with stamped
// bindings, as a server sends them.
func streamOf(tb testing.TB, n int) []byte {
	tb.Helper()
	changes := newTestChurn(tb, ChurnConfig{}).NextChanges(nil, n, fixedNow)
	var out []byte
	for i := range changes {
		b := &changes[i].Binding
		d := codec.ClientData{ClientID: b.ClientID, HasCLTTime: true, HasRelayData: true,
			RelayData: codec.LQRelayData{PeerAddress: b.RelayPeer, Message: b.RelayMessage}}
		if b.Type == store.TypePD {
			d.Prefixes = []codec.IAPrefix{{Prefix: b.Prefix, PreferredLifetime: 1800, ValidLifetime: 3600}}
		} else {
			d.Addrs = []codec.IAAddr{{Addr: b.Prefix.Addr(), PreferredLifetime: 1800, ValidLifetime: 3600}}
		}
		msg, _ := codec.AppendHeader(nil, codec.MsgLeasequeryData, 1)
		msg, err := d.AppendTo(msg)
		if err != nil {
			tb.Fatal(err)
		}
		msg = codec.AppendUint32Option(msg, codec.OptLQBaseTime, codec.DHCPTime(fixedNow))
		if out, err = codec.AppendFrame(out, msg); err != nil {
			tb.Fatal(err)
		}
	}
	return out
}

func newBenchRequestor() *requestor {
	s := &swarm{cfg: SwarmConfig{Count: 1 << 62}.withDefaults(), lat: newLatencyRecorder(1), cancel: func() {}}
	return newRequestor(s, 0)
}

// BenchmarkRequestorReceive measures how fast one swarm connection checks
// what it reads: framing, decoding, stamps and counters, per message.
func BenchmarkRequestorReceive(b *testing.B) {
	stream := streamOf(b, 64)
	r := newBenchRequestor()
	now := fixedNow.Add(time.Millisecond)
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		r.receive(stream, now)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*64), "ns/message")
}

func TestRequestorReceiveDoesNotAllocate(t *testing.T) {
	stream := streamOf(t, 64)
	r := newBenchRequestor()
	r.receive(stream, fixedNow) // grow the decode scratch space
	allocs := testing.AllocsPerRun(50, func() { r.receive(stream, fixedNow) })
	if allocs != 0 {
		t.Errorf("receive allocates %v times per read of 64 messages", allocs)
	}
	if got := r.s.updates.Load(); got != 64*52 {
		t.Errorf("counted %d updates, want %d", got, 64*52)
	}
}

func BenchmarkStampFromClientData(b *testing.B) {
	bd := newTestChurn(b, ChurnConfig{Stamp: StampRelay}).Next(nil, 1, fixedNow)[0]
	d := codec.ClientData{ClientID: bd.ClientID, HasRelayData: true, RelayData: codec.LQRelayData{Message: bd.RelayMessage}}
	b.ReportAllocs()
	for b.Loop() {
		StampFromClientData(&d)
	}
}
