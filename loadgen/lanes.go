package loadgen

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/alqd/alqd/ingest"
	"github.com/alqd/alqd/store"
)

// Defaults of LaneConfig.
const (
	DefaultLanes       = 4
	DefaultMaxBatch    = 1024
	DefaultLaneBacklog = 8
)

// LaneConfig configures a LaneSink. The zero value works.
type LaneConfig struct {
	// Lanes is the number of requests in flight at most: each lane sends
	// one request at a time. Default 4.
	Lanes int

	// MaxBatch is the largest number of changes in one request. Default
	// 1024.
	MaxBatch int

	// Backlog is the number of Write batches a lane queues while its request
	// is in flight; Write blocks when the queue is full. Default 8.
	Backlog int
}

func (c LaneConfig) withDefaults() LaneConfig {
	setDefault(&c.Lanes, DefaultLanes)
	setDefault(&c.MaxBatch, DefaultMaxBatch)
	setDefault(&c.Backlog, DefaultLaneBacklog)
	return c
}

// SendFunc commits bindings, for example ingest.Client.Send. It must not
// keep the slice after it returns.
type SendFunc func(ctx context.Context, bindings []store.Binding) error

// LaneSink sends changes through a SendFunc with a bounded number of
// requests in flight.
//
// Invariants:
//
//  1. The changes of one client always go to the same lane (client number
//     modulo Lanes). A lane sends its requests one after another in the
//     order of Write, so the changes of a client are committed in the order
//     they were generated. Requests of different lanes may commit in any
//     order.
//  2. At most Lanes requests are in flight, and at most Backlog batches
//     wait per lane; Write blocks beyond that, so a slow server slows the
//     run down instead of growing memory.
//  3. Every change is stamped (Change.SetStamp) just before its request is
//     sent, so a stamp measures from the send, not from the generation.
//
// The alternative, one shared queue drained by several senders, keeps
// more requests busy when clients are unevenly spread, but lets a release
// overtake the renewal before it.
type LaneSink struct {
	ctx   context.Context
	send  SendFunc
	cfg   LaneConfig
	lanes []chan []Change
	wg    sync.WaitGroup

	requests, errors atomic.Uint64
	mu               sync.Mutex
	firstError       string
	latency          *hdrhistogram.Histogram
}

// NewLaneSink starts the lanes of a sink that sends with send. Requests use
// ctx: ending it cancels them.
func NewLaneSink(ctx context.Context, send SendFunc, cfg LaneConfig) (*LaneSink, error) {
	if cfg.Lanes < 0 || cfg.MaxBatch < 0 || cfg.Backlog < 0 {
		return nil, fmt.Errorf("%w: lanes %d, max batch %d and backlog %d must not be negative", ErrInvalidConfig, cfg.Lanes, cfg.MaxBatch, cfg.Backlog)
	}
	cfg = cfg.withDefaults()
	s := &LaneSink{ctx: ctx, send: send, cfg: cfg, lanes: make([]chan []Change, cfg.Lanes), latency: newLatencyHistogram()}
	for i := range s.lanes {
		s.lanes[i] = make(chan []Change, cfg.Backlog)
		s.wg.Add(1)
		go s.run(s.lanes[i])
	}
	return s, nil
}

// NewIngestSink returns a LaneSink that sends to alqd's ingest API.
func NewIngestSink(ctx context.Context, c *ingest.Client, cfg LaneConfig) (*LaneSink, error) {
	return NewLaneSink(ctx, c.Send, cfg)
}

// NewApplierSink returns a LaneSink that commits to a, for example a
// *store.Store in a benchmark.
func NewApplierSink(ctx context.Context, a ingest.Applier, cfg LaneConfig) (*LaneSink, error) {
	return NewLaneSink(ctx, func(ctx context.Context, b []store.Binding) error {
		_, err := a.Apply(ctx, b, nil)
		return err
	}, cfg)
}

// Write splits changes by lane and queues them. Safe to call from one
// goroutine at a time.
func (s *LaneSink) Write(ctx context.Context, changes []Change) error {
	if len(s.lanes) == 1 {
		return s.queue(ctx, s.lanes[0], changes)
	}
	split := make([][]Change, len(s.lanes))
	for i := range changes {
		lane := int(changes[i].Client % uint32(len(s.lanes)))
		split[lane] = append(split[lane], changes[i])
	}
	for lane, part := range split {
		if len(part) == 0 {
			continue
		}
		if err := s.queue(ctx, s.lanes[lane], part); err != nil {
			return err
		}
	}
	return nil
}

func (s *LaneSink) queue(ctx context.Context, lane chan []Change, part []Change) error {
	select {
	case lane <- part:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
}

// Close lets every lane send what it holds and waits for them.
func (s *LaneSink) Close() error {
	for _, lane := range s.lanes {
		close(lane)
	}
	s.wg.Wait()
	return nil
}

// Stats returns the sink's counters.
func (s *LaneSink) Stats() SinkStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return SinkStats{
		Requests:   s.requests.Load(),
		Errors:     s.errors.Load(),
		FirstError: s.firstError,
		Latency:    summarizeLatency(s.latency),
	}
}

// run is the loop of one lane: it gathers the queued batches into requests
// of at most MaxBatch changes and sends them one at a time.
func (s *LaneSink) run(lane chan []Change) {
	defer s.wg.Done()
	var pending []Change
	var bindings []store.Binding
	for first := range lane {
		pending = append(pending[:0], first...)
	gather:
		for len(pending) < s.cfg.MaxBatch {
			select {
			case more, ok := <-lane:
				if !ok {
					break gather
				}
				pending = append(pending, more...)
			default:
				break gather
			}
		}

		for off := 0; off < len(pending); off += s.cfg.MaxBatch {
			end := min(off+s.cfg.MaxBatch, len(pending))
			bindings = s.sendBatch(pending[off:end], bindings[:0])
		}
	}
}

// sendBatch stamps and sends one request; bindings is scratch space that
// it returns for reuse.
func (s *LaneSink) sendBatch(batch []Change, bindings []store.Binding) []store.Binding {
	start := time.Now()
	for i := range batch {
		batch[i].SetStamp(start)
		bindings = append(bindings, batch[i].Binding)
	}
	err := s.send(s.ctx, bindings)
	took := time.Since(start)
	if err != nil && s.ctx.Err() != nil {
		// The sink's context ended: the run was canceled, and requests
		// cut short by that are not failures of the server.
		clear(bindings)
		return bindings
	}

	s.mu.Lock()
	_ = s.latency.RecordValue(micros(took))
	if err != nil && s.firstError == "" {
		s.firstError = err.Error()
	}
	s.mu.Unlock()
	if err != nil {
		s.errors.Add(1)
	} else {
		s.requests.Add(1)
	}
	clear(bindings) // the store may keep the byte slices, not this array
	return bindings
}
