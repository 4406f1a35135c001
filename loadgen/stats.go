package loadgen

import (
	"slices"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latency histograms count microseconds from 1 µs to one hour with three
// significant digits; longer values are recorded as one hour.
const (
	latencyMaxMicros = int64(time.Hour / time.Microsecond)
	latencyDigits    = 3
)

func newLatencyHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(1, latencyMaxMicros, latencyDigits)
}

// micros converts d to the microseconds a latency histogram records,
// clamped to its range.
func micros(d time.Duration) int64 {
	return min(max(int64(d/time.Microsecond), 1), latencyMaxMicros)
}

// LatencySummary describes a latency distribution in microseconds.
type LatencySummary struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean"`
	P50   int64   `json:"p50"`
	P90   int64   `json:"p90"`
	P99   int64   `json:"p99"`
	P999  int64   `json:"p999"`
	Max   int64   `json:"max"`
}

func summarizeLatency(h *hdrhistogram.Histogram) LatencySummary {
	if h.TotalCount() == 0 {
		return LatencySummary{}
	}
	q := h.ValueAtPercentilesSlice([]float64{50, 90, 99, 99.9})
	return LatencySummary{
		Count: h.TotalCount(),
		Mean:  h.Mean(),
		P50:   q[0],
		P90:   q[1],
		P99:   q[2],
		P999:  q[3],
		Max:   h.Max(),
	}
}

// Spread is the minimum, median and maximum of a per-requestor value.
type Spread struct {
	Min    float64 `json:"min"`
	Median float64 `json:"median"`
	Max    float64 `json:"max"`
}

// spreadOf returns the spread of values, which it sorts.
func spreadOf(values []float64) Spread {
	if len(values) == 0 {
		return Spread{}
	}
	slices.Sort(values)
	n := len(values)
	median := values[n/2]
	if n%2 == 0 {
		median = (values[n/2-1] + values[n/2]) / 2
	}
	return Spread{Min: values[0], Median: median, Max: values[n-1]}
}

// latencyRecorder is a latency histogram that many goroutines record into.
// It is split into shards, each behind its own mutex, so that goroutines
// recording at once rarely wait for each other. A goroutine records a whole
// batch of values per lock. The alternative, one histogram per connection,
// costs about 190 KiB each, too much for tens of thousands of connections.
type latencyRecorder struct {
	shards []latencyShard
}

type latencyShard struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram
	_  [40]byte // keeps neighbouring mutexes off one cache line
}

func newLatencyRecorder(shards int) *latencyRecorder {
	r := &latencyRecorder{shards: make([]latencyShard, max(shards, 1))}
	for i := range r.shards {
		r.shards[i].h = newLatencyHistogram()
	}
	return r
}

// record adds values, in microseconds, to the shard picked by key.
func (r *latencyRecorder) record(key int, values []int64) {
	if len(values) == 0 {
		return
	}
	s := &r.shards[key%len(r.shards)]
	s.mu.Lock()
	for _, v := range values {
		_ = s.h.RecordValue(v) // values are clamped to the range by micros
	}
	s.mu.Unlock()
}

// merged returns a new histogram holding every recorded value.
func (r *latencyRecorder) merged() *hdrhistogram.Histogram {
	h := newLatencyHistogram()
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		h.Merge(s.h)
		s.mu.Unlock()
	}
	return h
}
