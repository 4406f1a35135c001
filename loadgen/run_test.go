package loadgen

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestPacerDue(t *testing.T) {
	start := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return start.Add(d) }

	p := newPacer(start, 1000, 100*time.Millisecond) // max lag 100 changes
	for _, step := range []struct {
		at        time.Duration
		sent      int64
		want      int64
		shortfall int64
	}{
		{0, 0, 0, 0},
		{-time.Second, 0, 0, 0}, // a clock step back schedules nothing
		{10 * time.Millisecond, 0, 10, 0},
		{50 * time.Millisecond, 10, 50, 0},
		{100 * time.Millisecond, 50, 100, 0},
		{500 * time.Millisecond, 100, 200, 300}, // 400 behind: 300 dropped
		{600 * time.Millisecond, 200, 300, 300}, // back on the shifted schedule
		{600 * time.Millisecond, 300, 300, 300},
	} {
		got := p.due(at(step.at), step.sent)
		if got != step.want || p.shortfall != step.shortfall {
			t.Errorf("at %v with %d sent: due %d shortfall %d, want %d and %d", step.at, step.sent, got, p.shortfall, step.want, step.shortfall)
		}
	}
}

// countingSink counts changes and can hold Write back.
type countingSink struct {
	changes atomic.Int64
	writes  atomic.Int64
	block   chan struct{} // when set, the first Write waits for it
	once    sync.Once
	closed  atomic.Bool
}

func (s *countingSink) Write(ctx context.Context, changes []Change) error {
	if s.block != nil {
		s.once.Do(func() { <-s.block })
	}
	s.writes.Add(1)
	s.changes.Add(int64(len(changes)))
	return nil
}

func (s *countingSink) Close() error { s.closed.Store(true); return nil }

func (s *countingSink) Stats() SinkStats { return SinkStats{Requests: uint64(s.writes.Load())} }

func TestRunChurnRate(t *testing.T) {
	sink := &countingSink{}
	var progress []ChurnProgress
	sum, err := RunChurn(context.Background(), newTestChurn(t, ChurnConfig{}), sink, RunConfig{
		Rate:     2000,
		Duration: 1500 * time.Millisecond,
		Progress: func(p ChurnProgress) { progress = append(progress, p) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if sum.StopReason != "duration" || !sink.closed.Load() {
		t.Fatalf("stop reason %q, sink closed %v; want duration and closed", sum.StopReason, sink.closed.Load())
	}
	if sum.Changes != sink.changes.Load() || sum.Kinds.New+sum.Kinds.Renew+sum.Kinds.Release+sum.Kinds.Expire != sum.Changes || sum.Types.NA+sum.Types.PD != sum.Changes {
		t.Fatalf("summary counts disagree: %+v, sink got %d", sum, sink.changes.Load())
	}

	// The schedule never runs ahead of the rate; on a busy machine it may
	// fall behind, so the lower bound is generous.
	limit := int64(2000*sum.ElapsedSeconds) + 1
	if sum.Changes > limit {
		t.Errorf("%d changes in %.3f s at 2000/s: more than the %d due", sum.Changes, sum.ElapsedSeconds, limit)
	}
	if sum.Changes < 750 {
		t.Errorf("%d changes in %.3f s at 2000/s: far below the target", sum.Changes, sum.ElapsedSeconds)
	}
	if len(progress) == 0 || progress[0].Changes == 0 {
		t.Errorf("progress %+v: want a report after a second", progress)
	}
}

func TestRunChurnCount(t *testing.T) {
	sink := &countingSink{}
	sum, err := RunChurn(context.Background(), newTestChurn(t, ChurnConfig{}), sink, RunConfig{Rate: 1e6, Count: 1234, Duration: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if sum.StopReason != "count" || sum.Changes != 1234 || sink.changes.Load() != 1234 {
		t.Errorf("stop reason %q, %d changes, sink got %d; want count and 1234", sum.StopReason, sum.Changes, sink.changes.Load())
	}
}

func TestRunChurnCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	sum, err := RunChurn(ctx, newTestChurn(t, ChurnConfig{}), &countingSink{}, RunConfig{Rate: 100, Duration: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if sum.StopReason != "canceled" {
		t.Errorf("stop reason %q, want canceled", sum.StopReason)
	}
}

// TestRunChurnShortfall blocks the sink and checks that the run drops what
// lies beyond MaxLag instead of catching up in one burst.
func TestRunChurnShortfall(t *testing.T) {
	block := make(chan struct{})
	time.AfterFunc(400*time.Millisecond, func() { close(block) })
	sink := &countingSink{block: block}
	sum, err := RunChurn(context.Background(), newTestChurn(t, ChurnConfig{}), sink, RunConfig{Rate: 10000, MaxLag: 20 * time.Millisecond, Duration: 600 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Shortfall == 0 {
		t.Fatalf("no shortfall after the sink blocked for 400 ms: %+v", sum)
	}
	if due := int64(10000 * sum.ElapsedSeconds); sum.Changes+sum.Shortfall > due+1 {
		t.Errorf("%d changes plus %d dropped exceed the %d due", sum.Changes, sum.Shortfall, due)
	}
}

type failingSink struct{ countingSink }

var errSinkFull = errors.New("sink full")

func (s *failingSink) Write(context.Context, []Change) error { return errSinkFull }

func TestRunChurnSinkError(t *testing.T) {
	sum, err := RunChurn(context.Background(), newTestChurn(t, ChurnConfig{}), &failingSink{}, RunConfig{Rate: 1000})
	if !errors.Is(err, errSinkFull) {
		t.Fatalf("RunChurn = %v, want the sink's error", err)
	}
	if sum.StopReason != "sink" || !sum.Failed() || sum.FirstError == "" {
		t.Errorf("summary %+v: want stop reason sink, failed, with the error", sum)
	}
}

func TestRunConfigInvalid(t *testing.T) {
	for _, cfg := range []RunConfig{{Rate: -1}, {Duration: -time.Second}, {Count: -5}} {
		if _, err := RunChurn(context.Background(), newTestChurn(t, ChurnConfig{}), DiscardSink{}, cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("RunChurn(%+v) = %v, want ErrInvalidConfig", cfg, err)
		}
	}
}

// blockingSink blocks every Write until ctx ends.
type blockingSink struct{ countingSink }

func (s *blockingSink) Write(ctx context.Context, _ []Change) error {
	<-ctx.Done()
	return ctx.Err()
}

func TestRunChurnCanceledWhileSinkBlocks(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	sum, err := RunChurn(ctx, newTestChurn(t, ChurnConfig{}), &blockingSink{}, RunConfig{Rate: 1000, Duration: time.Minute})
	if err != nil {
		t.Fatalf("RunChurn = %v, want no error for a canceled run", err)
	}
	if sum.StopReason != "canceled" || sum.Failed() {
		t.Errorf("stop reason %q, failed %v: want canceled, not failed", sum.StopReason, sum.Failed())
	}
}
