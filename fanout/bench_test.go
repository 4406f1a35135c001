package fanout

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// benchRing returns a ring and a pool of twice its capacity of updates whose
// keys come from keyOf. Benchmarks reuse the pool by rewriting Seq, which is
// safe only because nothing reads an update the ring has overwritten.
func benchRing(b *testing.B, capacity int, keyOf func(i int) []FilterKey) (*Ring, []*Update) {
	b.Helper()
	r, err := NewRing(Config{Capacity: capacity}, 0)
	if err != nil {
		b.Fatal(err)
	}
	pool := make([]*Update, 2*capacity)
	for i := range pool {
		pool[i] = &Update{
			Prefix: prefixFor(i),
			Link:   linkAddr(i % 8),
			Keys:   keyOf(i),
			Bodies: [][]byte{make([]byte, 120)},
		}
	}
	return r, pool
}

// publishNext publishes pool entry seq mod len(pool) with Seq seq.
func publishNext(r *Ring, pool []*Update, seq uint64) {
	u := pool[seq%uint64(len(pool))]
	u.Seq = seq
	r.Publish(u)
}

func noKeys(int) []FilterKey { return nil }

// BenchmarkPublish measures Ring.Publish alone, with no group and with four
// groups whose wake is already pending (the common case under load).
func BenchmarkPublish(b *testing.B) {
	for _, groups := range []int{0, 4} {
		b.Run(fmt.Sprint("groups=", groups), func(b *testing.B) {
			r, pool := benchRing(b, 4096, noKeys)
			for range groups {
				g, err := r.NewGroup(newFakeStore(), func() {})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := g.Subscribe(Filter{}, 0, nil); err != nil {
					b.Fatal(err)
				}
				g.Pump(nopSink{}) // the subscriber turns live; the next publish schedules the group
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				publishNext(r, pool, uint64(i+1))
			}
		})
	}
}

// BenchmarkPumpUnfiltered publishes one or 64 updates per op and pumps them
// to 1,000 subscribers without a filter. ns/delivery is the cost of one
// update reaching one subscriber.
func BenchmarkPumpUnfiltered(b *testing.B) {
	const subs = 1000
	for _, perPump := range []int{1, 64} {
		b.Run(fmt.Sprint("updates=", perPump), func(b *testing.B) {
			r, pool := benchRing(b, 4096, noKeys)
			g, err := r.NewGroup(newFakeStore(), func() {})
			if err != nil {
				b.Fatal(err)
			}
			for i := range subs {
				if _, err := g.Subscribe(Filter{}, 0, i); err != nil {
					b.Fatal(err)
				}
			}
			seq := uint64(1)
			publishNext(r, pool, seq)
			g.Pump(nopSink{})

			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				for range perPump {
					seq++
					publishNext(r, pool, seq)
				}
				g.Pump(nopSink{})
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*subs*perPump), "ns/delivery")
		})
	}
}

// filteredBench is a group of subscribers that each filter on their own
// relay-id, fed from a pool of updates that each match exactly one of them.
type filteredBench struct {
	r    *Ring
	g    *Group
	pool []*Update
	seq  uint64
}

func newFilteredBench(b *testing.B, subs int) *filteredBench {
	b.Helper()
	keyOf := func(i int) []FilterKey {
		return []FilterKey{
			ClientIDKey([]byte{0, 1, byte(i >> 16), byte(i >> 8), byte(i)}),
			RelayIDKey(relayID(i % subs)),
		}
	}
	r, pool := benchRing(b, 4096, keyOf)
	g, err := r.NewGroup(newFakeStore(), func() {})
	if err != nil {
		b.Fatal(err)
	}
	for i := range subs {
		if _, err := g.Subscribe(Filter{Key: RelayIDKey(relayID(i))}, 0, i); err != nil {
			b.Fatal(err)
		}
	}
	fb := &filteredBench{r: r, g: g, pool: pool}
	fb.run(1)
	return fb
}

// run publishes n updates, pumping after each.
func (fb *filteredBench) run(n int) {
	for range n {
		fb.seq++
		publishNext(fb.r, fb.pool, fb.seq)
		fb.g.Pump(nopSink{})
	}
}

// BenchmarkPumpFiltered publishes one update per op and pumps it to a group
// of subscribers that each filter on their own relay-id. Every update
// matches exactly one of them, so the cost per op must stay about the same
// from 1,000 to 19,000 subscribers.
func BenchmarkPumpFiltered(b *testing.B) {
	for _, subs := range []int{1000, 19000} {
		b.Run(fmt.Sprint("subs=", subs), func(b *testing.B) {
			fb := newFilteredBench(b, subs)
			b.ReportAllocs()
			b.ResetTimer()
			fb.run(b.N)
		})
	}
}

// BenchmarkPumpFilteredRatio runs the two sizes of BenchmarkPumpFiltered in
// alternating rounds and reports the median over rounds of the cost of
// 19,000 subscribers relative to 1,000. The median of paired rounds keeps
// bursts of load from other processes, which hit one side of a round, out of
// the ratio. ns/op covers one op of each size.
func BenchmarkPumpFilteredRatio(b *testing.B) {
	const round = 500
	small := newFilteredBench(b, 1000)
	large := newFilteredBench(b, 19000)
	var ratios []float64

	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; done += round {
		n := min(round, b.N-done)
		start := time.Now()
		small.run(n)
		mid := time.Now()
		large.run(n)
		ratios = append(ratios, float64(time.Since(mid))/float64(mid.Sub(start)))
	}
	b.StopTimer()
	slices.Sort(ratios)
	b.ReportMetric(ratios[len(ratios)/2], "x19000/x1000")
}
