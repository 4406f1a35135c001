package mirror

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/requestor"
)

// benchMirror opens a mirror in a temporary directory for a benchmark.
func benchMirror(b *testing.B) *Mirror {
	b.Helper()
	m, err := Open(Config{Dir: b.TempDir(), Requestor: requestor.Config{Server: "127.0.0.1:15470"}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	return m
}

// benchBinding returns the active binding event of address number i, as
// the active connection or a bulk reports it.
func benchBinding(i int, source requestor.Source, base uint32) requestor.Binding {
	var a [16]byte
	copy(a[:], []byte{0x20, 0x01, 0x0d, 0xb8})
	binary.BigEndian.PutUint64(a[8:], uint64(i))
	now := time.Now()
	return requestor.Binding{
		MessageInfo:       requestor.MessageInfo{Source: source, BaseTime: base, HasBaseTime: true, Received: now, LocalBase: now},
		ClientID:          []byte{0, 3, 0, 1, 0, 0, 0x5e, 0, 0x53, byte(i)},
		Type:              requestor.TypeNA,
		Addr:              netip.AddrFrom16(a),
		State:             requestor.StateActive,
		PreferredLifetime: 1800,
		ValidLifetime:     3600,
		ValidUntil:        now.Add(time.Hour),
		CLTTime:           5,
		HasCLTTime:        true,
	}
}

// BenchmarkApply stores one binding event per operation, as Run does,
// without waiting for the disk: the lookup of the stored record, the
// encoding and one batch commit. The marked case adds the seen marker a
// full recovery writes. The anchor commits a batch with one record of the
// same size and nothing else, the least a write of the event can cost.
func BenchmarkApply(b *testing.B) {
	b.Run("anchor-batch", func(b *testing.B) {
		m := benchMirror(b)
		ev := benchBinding(0, requestor.SourceActive, 1000)
		rec := recordOf(&ev)
		key, value := rec.appendKey(nil), rec.appendValue(nil)
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			binary.BigEndian.PutUint64(key[10:], uint64(i%4096))
			batch := m.db.NewBatch()
			batch.Set(key, value, nil)
			err := batch.Commit(m.write)
			batch.Close()
			if err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, mark := range []bool{false, true} {
		name := "active"
		if mark {
			name = "recovery-marked"
		}
		b.Run(name, func(b *testing.B) {
			m := benchMirror(b)
			evs := make([]requestor.Binding, 4096)
			for i := range evs {
				evs[i] = benchBinding(i, requestor.SourceActive, 1000)
			}
			var stored requestor.Checkpoint
			var key, value []byte
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				ev := evs[i%len(evs)]
				ev.BaseTime = 1000 + uint32(i)
				batch := m.db.NewBatch()
				var err error
				key, value, err = m.apply(batch, ev, bulkOrder{}, mark, requestor.Checkpoint{StartTime: ev.BaseTime, Valid: true}, &stored, key[:0], value[:0])
				batch.Close()
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSweep measures the sweep after a full recovery over a mirror
// of 100,000 active records, half of them reported by the bulk. It
// reports the time per record scanned.
func BenchmarkSweep(b *testing.B) {
	const records = 100_000
	m := benchMirror(b)
	var stored requestor.Checkpoint
	var key, value []byte
	for i := range records {
		fill := m.db.NewBatch()
		var err error
		key, value, err = m.apply(fill, benchBinding(i, requestor.SourceInitial, 1000), bulkOrder{asOf: 1000}, i%2 == 0, stored, &stored, key[:0], value[:0])
		fill.Close()
		if err != nil {
			b.Fatal(err)
		}
	}
	scope := []requestor.Query{{Type: codec.QueryByLinkAddress, Link: netip.MustParseAddr("2001:db8::1")}}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		batch := m.db.NewBatch()
		n, err := m.sweep(batch, scope, requestor.SourceRecovery, 1001, true, time.Now())
		batch.Close() // not committed, so every run sweeps the same records
		if err != nil || n != records/2 {
			b.Fatalf("sweep ended %d records (%v), want %d", n, err, records/2)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*records), "ns/record")
}
