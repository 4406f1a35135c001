package loadgen

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/alqd/alqd/store"
)

// Sink takes the changes of a churn run: the ingest API (NewIngestSink),
// a store or any other ingest.Applier (NewApplierSink), a Kea lease file
// (KeaWriter) or nothing (DiscardSink).
type Sink interface {
	// Write hands over a batch of changes in the order they were generated;
	// the sink owns the slice from then on. Write blocks while the sink
	// has no room, which holds the run back. It returns an error only when
	// the sink can take no more changes; a request that fails is counted
	// in SinkStats instead.
	Write(ctx context.Context, changes []Change) error

	// Close sends what the sink holds, waits for the requests in flight
	// and releases the sink. It returns the error that stopped the sink,
	// if any.
	Close() error

	// Stats returns the sink's counters. Safe for concurrent use with Write.
	Stats() SinkStats
}

// SinkStats are the counters of a Sink.
type SinkStats struct {
	Requests    uint64         // requests that succeeded, or batches of rows written
	Errors      uint64         // requests that failed
	FirstError  string         // the first failure, in words
	Latency     LatencySummary // from sending a request to its response, in µs; empty for file sinks
	Rows        uint64         // rows written to a lease file
	Rotations   uint64         // lease files renamed to .1 and replaced
	Compactions uint64         // lease file cleanups (LFC) finished
}

// DiscardSink drops every change; it measures the generator alone.
type DiscardSink struct{}

// Write drops changes.
func (DiscardSink) Write(context.Context, []Change) error { return nil }

// Close does nothing.
func (DiscardSink) Close() error { return nil }

// Stats returns zero counters.
func (DiscardSink) Stats() SinkStats { return SinkStats{} }

// Defaults of RunConfig.
const (
	DefaultRate     = 1000
	DefaultDuration = 10 * time.Second
	DefaultCount    = 1_000_000
	DefaultTick     = 5 * time.Millisecond
	DefaultMaxLag   = time.Second
)

// RunConfig bounds a churn run and sets its pace. The zero value works.
type RunConfig struct {
	// Rate is the target in binding changes per second. Default 1000.
	Rate float64

	// Duration and Count end the run, whichever comes first: after
	// Duration, or once Count changes went to the sink. Defaults 10 s and
	// 1,000,000.
	Duration time.Duration
	Count    int64

	// Tick is how often the runner generates the changes that are due and
	// hands them to the sink. Default 5 ms.
	Tick time.Duration

	// MaxLag is how far the run may fall behind its schedule when the sink
	// blocks; the schedule drops the rest (ChurnSummary.Shortfall).
	// Default 1 s.
	MaxLag time.Duration

	// Progress, when set, is called about once a second from the
	// goroutine that runs RunChurn.
	Progress func(ChurnProgress)
}

func (c RunConfig) withDefaults() RunConfig {
	if c.Rate == 0 {
		c.Rate = DefaultRate
	}
	if c.Duration == 0 {
		c.Duration = DefaultDuration
	}
	if c.Count == 0 {
		c.Count = DefaultCount
	}
	if c.Tick == 0 {
		c.Tick = DefaultTick
	}
	if c.MaxLag == 0 {
		c.MaxLag = DefaultMaxLag
	}
	return c
}

// Validate reports a setting that can not work.
func (c *RunConfig) Validate() error {
	d := c.withDefaults()
	switch {
	case math.IsNaN(d.Rate) || math.IsInf(d.Rate, 0) || d.Rate < 0:
		return fmt.Errorf("%w: rate %v is not a positive number of changes per second", ErrInvalidConfig, d.Rate)
	case d.Duration < 0 || d.Count < 0 || d.Tick < 0 || d.MaxLag < 0:
		return fmt.Errorf("%w: duration %v, count %d, tick %v and max lag %v must not be negative", ErrInvalidConfig, d.Duration, d.Count, d.Tick, d.MaxLag)
	}
	return nil
}

// ChurnProgress is the state of a running churn, passed to
// RunConfig.Progress.
type ChurnProgress struct {
	Elapsed time.Duration
	Changes int64
	Sink    SinkStats
}

// KindCounts counts changes by ChangeKind.
type KindCounts struct {
	New     int64 `json:"new"`
	Renew   int64 `json:"renew"`
	Release int64 `json:"release"`
	Expire  int64 `json:"expire"`
}

func (k *KindCounts) add(kind ChangeKind) {
	switch kind {
	case ChangeNew:
		k.New++
	case ChangeRenew:
		k.Renew++
	case ChangeRelease:
		k.Release++
	case ChangeExpire:
		k.Expire++
	}
}

// TypeCounts counts changes by binding type.
type TypeCounts struct {
	NA int64 `json:"na"`
	PD int64 `json:"pd"`
}

// ChurnSummary is the result of a churn run, printed as JSON at its end.
type ChurnSummary struct {
	Mode             string          `json:"mode"` // always "churn"
	Sink             string          `json:"sink"` // set by the caller: ingest, kea, discard
	Seed             uint64          `json:"seed"`
	TargetRate       float64         `json:"target_rate"` // changes per second
	ElapsedSeconds   float64         `json:"elapsed_s"`
	StopReason       string          `json:"stop_reason"` // count, duration, canceled or sink
	Changes          int64           `json:"changes"`     // handed to the sink
	ChangesPerSecond float64         `json:"changes_per_s"`
	Shortfall        int64           `json:"shortfall"` // changes dropped from the schedule because the sink fell behind
	Kinds            KindCounts      `json:"kinds"`
	Types            TypeCounts      `json:"types"`
	Requests         uint64          `json:"requests"`
	Errors           uint64          `json:"errors"`
	FirstError       string          `json:"first_error,omitempty"`
	RequestLatency   *LatencySummary `json:"request_latency_us,omitempty"`
	Rows             uint64          `json:"rows,omitempty"`
	Rotations        uint64          `json:"rotations,omitempty"`
	Compactions      uint64          `json:"compactions,omitempty"`
}

// Failed reports whether the run saw errors, which makes the command exit
// with a non-zero status.
func (s *ChurnSummary) Failed() bool { return s.Errors > 0 || s.StopReason == "sink" }

// RunChurn generates changes from c at cfg.Rate and writes them to sink
// until cfg.Duration passes, cfg.Count changes went out or ctx ends. It
// then closes sink and returns the summary. The error is that of the sink
// when it stopped taking changes; the summary is valid either way.
func RunChurn(ctx context.Context, c *Churn, sink Sink, cfg RunConfig) (*ChurnSummary, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	sum := &ChurnSummary{Mode: "churn", Seed: c.cfg.Seed, TargetRate: cfg.Rate}

	start := time.Now()
	p := newPacer(start, cfg.Rate, cfg.MaxLag)
	// One tick's worth of changes, at least 1, at most 64 Ki per Write.
	chunk := int(min(max(math.Ceil(cfg.Rate*cfg.Tick.Seconds()), 1), 1<<16))
	ticker := time.NewTicker(cfg.Tick)
	defer ticker.Stop()
	lastProgress := start
	var sinkErr error

loop:
	for {
		now := time.Now()
		if now.Sub(start) >= cfg.Duration {
			sum.StopReason = "duration"
			break
		}

		// Generate and hand over what is due, in chunks.
		due := min(p.due(now, sum.Changes), cfg.Count)
		for sum.Changes < due {
			n := int(min(due-sum.Changes, int64(chunk)))
			changes := c.NextChanges(make([]Change, 0, n), n, now)
			for i := range changes {
				sum.Kinds.add(changes[i].Kind)
				if changes[i].Binding.Type == store.TypePD {
					sum.Types.PD++
				} else {
					sum.Types.NA++
				}
			}
			if sinkErr = sink.Write(ctx, changes); sinkErr != nil {
				sum.StopReason = "sink"
				if ctx.Err() != nil {
					// Write gave up waiting because the run was canceled.
					sum.StopReason, sinkErr = "canceled", nil
				}
				break loop
			}
			sum.Changes += int64(n)
		}
		if sum.Changes >= cfg.Count {
			sum.StopReason = "count"
			break
		}

		if cfg.Progress != nil && now.Sub(lastProgress) >= time.Second {
			lastProgress = now
			cfg.Progress(ChurnProgress{Elapsed: now.Sub(start), Changes: sum.Changes, Sink: sink.Stats()})
		}
		select {
		case <-ctx.Done():
			sum.StopReason = "canceled"
			break loop
		case <-ticker.C:
		}
	}

	// Close waits for what is in flight, so its time counts.
	if err := sink.Close(); err != nil && sinkErr == nil {
		sinkErr = err
	}
	elapsed := time.Since(start)
	sum.ElapsedSeconds = elapsed.Seconds()
	if elapsed > 0 {
		sum.ChangesPerSecond = float64(sum.Changes) / elapsed.Seconds()
	}
	sum.Shortfall = p.shortfall

	st := sink.Stats()
	sum.Requests, sum.Errors, sum.FirstError = st.Requests, st.Errors, st.FirstError
	sum.Rows, sum.Rotations, sum.Compactions = st.Rows, st.Rotations, st.Compactions
	if st.Latency.Count > 0 {
		sum.RequestLatency = &st.Latency
	}
	if sinkErr != nil && sum.FirstError == "" {
		sum.FirstError = sinkErr.Error()
	}
	return sum, sinkErr
}
