package store

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// benchBinding returns binding number i: an IA_NA address on one of links
// link-addresses, with relay data shaped like a relayed Kea lease.
func benchBinding(i, links int) Binding {
	addr := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 12: byte(i >> 24), 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)})
	link := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0xff, byte(i % links), 15: 1})
	return Binding{
		Key:               Key{Type: TypeNA, Prefix: netip.PrefixFrom(addr, 128)},
		ClientID:          fmt.Appendf(nil, "\x00\x01\x00\x01\x2d\x24\xbd\x00%010d", i),
		IAID:              uint32(i),
		PreferredLifetime: 3000,
		ValidLifetime:     4000,
		CLTT:              testEpoch,
		LinkAddress:       link,
		RelayID:           fmt.Appendf(nil, "\x00\x02\x00\x00\x9d\x10relay-%d", i%links),
		RemoteID:          fmt.Appendf(nil, "\x00\x00\x0d\xe9port-%d", i%4096),
		InterfaceID:       []byte("ge-0/0/1.100"),
		RelayPeer:         netip.MustParseAddr("fe80::1"),
		RelayMessage:      make([]byte, 60),
	}
}

// loadBindings applies bindings 0 to n-1 in calls of 4096 changes.
func loadBindings(b *testing.B, s *Store, n, links int) {
	b.Helper()
	batch := make([]Binding, 0, 4096)
	for i := range n {
		batch = append(batch, benchBinding(i, links))
		if len(batch) == cap(batch) || i == n-1 {
			if _, err := s.Apply(context.Background(), batch, nil); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}

// BenchmarkApplySynced measures synced group commits: one Apply call of
// batch changes per operation, each change a real update of one of 100,000
// bindings. The parallel case has 64 callers of one change each, which the
// writer gathers into groups.
func BenchmarkApplySynced(b *testing.B) {
	const population = 100_000
	s := openTest(b, b.TempDir(), Options{})
	next := 0
	changes := func(n int) []Binding {
		out := make([]Binding, n)
		for i := range out {
			out[i] = benchBinding(next%population, 16)
			out[i].IAID = uint32(next) // every change differs from the stored state
			next++
		}
		return out
	}

	for _, size := range []int{1, 64, 1024} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				batch := changes(size)
				b.StartTimer()
				if _, err := s.Apply(context.Background(), batch, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "changes/s")
		})
	}

	b.Run("batch=1/callers=64", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(32) // 64 goroutines on GOMAXPROCS 2
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				c := benchBinding(i%population, 16)
				c.IAID = uint32(time.Now().UnixNano())
				i++
				if _, err := s.Apply(context.Background(), []Binding{c}, nil); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "changes/s")
	})
}

// BenchmarkChangedScan measures a catch-up scan (Changed from the first
// change) over 100,000 changed bindings: one full scan per operation.
func BenchmarkChangedScan(b *testing.B) {
	const n = 100_000
	s := openTest(b, b.TempDir(), Options{NoSync: true})
	loadBindings(b, s, n, 16)

	b.Run("bindings=100000", func(b *testing.B) {
		b.ReportAllocs()
		countScan(b, s.Changed(time.Time{}, time.Time{})) // warm the block cache
		for b.Loop() {
			if got := countScan(b, s.Changed(time.Time{}, time.Time{})); got != n {
				b.Fatalf("scan yields %d bindings, want %d", got, n)
			}
		}
		b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "bindings/s")
	})
}

// BenchmarkByLinkAddress measures a bulk query by link-address on a store
// of 1,000,000 bindings spread over 10 links: one operation scans the
// 100,000 bindings of one link. The store is reopened with the default
// block cache and with one that holds the whole binding keyspace.
func BenchmarkByLinkAddress(b *testing.B) {
	const n, links = 1_000_000, 10
	dir := b.TempDir()
	load, err := Open(dir, Options{NoSync: true, TrimInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	loadBindings(b, load, n, links)
	if err := load.Close(); err != nil {
		b.Fatal(err)
	}
	link := benchBinding(3, links).LinkAddress

	for _, cacheMiB := range []int64{DefaultBlockCacheSize >> 20, 512} {
		s, err := Open(dir, Options{BlockCacheSize: cacheMiB << 20, TrimInterval: -1})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("bindings=1000000/link=100000/cache=%dMiB", cacheMiB), func(b *testing.B) {
			b.ReportAllocs()
			countScan(b, s.ByLinkAddress(link)) // warm the block cache
			for b.Loop() {
				if got := countScan(b, s.ByLinkAddress(link)); got != n/links {
					b.Fatalf("scan yields %d bindings, want %d", got, n/links)
				}
			}
			b.ReportMetric(float64(b.N*n/links)/b.Elapsed().Seconds(), "bindings/s")
		})
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

func countScan(b *testing.B, it Iterator) int {
	n := 0
	for it.Next() {
		n++
	}
	if err := it.Close(); err != nil {
		b.Fatal(err)
	}
	return n
}

// TestIteratorAllocs checks that Next allocates once per binding: the one
// buffer that backs its byte fields, so a copy of the struct may be kept.
func TestIteratorAllocs(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{NoSync: true})
	var bs []Binding
	for i := range 1000 {
		bs = append(bs, benchBinding(i, 1))
	}
	mustApply(t, s, bs...)

	for _, tt := range []struct {
		name string
		it   func() Iterator
	}{
		{"link-address", func() Iterator { return s.ByLinkAddress(bs[0].LinkAddress) }},
		{"history", func() Iterator { return s.ChangedSince(0) }},
		{"all", s.All},
	} {
		t.Run(tt.name, func(t *testing.T) {
			it := tt.it()
			defer it.Close()
			it.Next() // the first positioning allocates Pebble's iterator state
			allocs := testing.AllocsPerRun(500, func() {
				if !it.Next() {
					t.Fatal("iterator ended early")
				}
			})
			if allocs > 1 {
				t.Errorf("Next allocates %.1f times per binding, want at most 1", allocs)
			}
		})
	}
}
