package bench

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// SlowResult compares one contender's healthy subscribers with and without
// stalled ones at the same offered rate.
type SlowResult struct {
	Contender    string
	NotAvailable string
	Conns        int
	Stalled      int
	OfferedRate  float64 // messages per second

	// Per healthy subscriber, deliveries per second, without and with the
	// stalled subscribers.
	BaseRate, StallRate float64
	BaseP99, StallP99   time.Duration
	// SlowClosed counts connections the server closed by its slow-consumer
	// policy during the stalled run; HealthyLost the healthy ones among
	// them.
	SlowClosed  int64
	HealthyLost int
	// Mem is the server's RSS during the stalled run.
	Mem []memPoint
}

// Cost returns how much the stalled subscribers cut the healthy ones'
// delivery rate, as a fraction (0.05 is 5 % fewer deliveries per second).
func (s *SlowResult) Cost() float64 {
	if s.BaseRate <= 0 {
		return 0
	}
	return 1 - s.StallRate/s.BaseRate
}

// slowScenario runs every contender twice at the same offered rate: with
// every subscriber reading, then with every StallEvery-th one never reading
// after its subscription. The raw and goroutine contenders use their
// slow-consumer policy (close a connection that falls a ring or a queue
// behind) instead of holding the producer back. Each contender gets
// slowFraction of its own saturation rate from the fanout sweep, a rate it
// sustains, so that what changes between the two runs is the stalled
// subscribers alone.
func (r *runner) slowScenario(ctx context.Context) error {
	for _, c := range r.contenders() {
		// Without the sweep at this count: a rate every contender
		// sustains on small machines.
		offered := 500.0
		if f, ok := findFanout(r.res.Fanout, c.name, r.scale.slowConns); ok && f.MsgRate > 0 {
			offered = f.MsgRate * r.scale.slowFraction
		}
		res, err := r.runSlow(ctx, c, offered)
		r.res.Slow = append(r.res.Slow, res)
		if res.NotAvailable != "" {
			fmt.Fprintf(r.log, "%-10s slow not available: %s\n", c.name, res.NotAvailable)
		} else {
			fmt.Fprintf(r.log, "%-10s slow conns=%d stalled=%d offered=%s/s rate/conn %.0f -> %.0f (cost %.1f%%) p99 %v -> %v slow-closed=%d healthy-lost=%d\n",
				c.name, res.Conns, res.Stalled, si(res.OfferedRate), res.BaseRate, res.StallRate, 100*res.Cost(),
				res.BaseP99, res.StallP99, res.SlowClosed, res.HealthyLost)
		}
		if err := r.cellFailed(ctx, err, "slow %s", c.name); err != nil {
			return err
		}
	}
	return nil
}

func (r *runner) runSlow(ctx context.Context, c contender, offered float64) (SlowResult, error) {
	res := SlowResult{Contender: c.name, Conns: r.scale.slowConns, OfferedRate: offered}
	if err := c.available(); err != nil {
		res.NotAvailable = notAvailableReason(err)
		return res, nil
	}
	stallEvery := r.scale.slowStallEvery
	res.Stalled = stalledCount(r.scale.slowConns, stallEvery)

	for _, stall := range []int{0, stallEvery} {
		m, lost, closed, err := r.slowRun(ctx, c, offered, stall)
		if errors.Is(err, errNotAvailable) {
			res.NotAvailable = notAvailableReason(err)
			return res, nil
		}
		if err != nil {
			return res, err
		}
		// Deliveries per second per reading subscriber.
		perConn := 0.0
		if reading := r.scale.slowConns - stalledCount(r.scale.slowConns, stall); reading > 0 && m.deliveries > 0 {
			perConn = float64(m.deliveries-m.stalled.Messages) / float64(m.deliveries) * m.rate / float64(reading)
		}
		if stall == 0 {
			res.BaseRate, res.BaseP99 = perConn, m.p99
			continue
		}
		res.StallRate, res.StallP99 = perConn, m.p99
		res.Mem, res.SlowClosed, res.HealthyLost = m.mem, closed, lost
	}
	return res, nil
}

// slowRun runs one offered-rate run with every stallEvery-th subscriber
// stalled (0 for none) and returns its measurement, the healthy
// subscribers the server closed and the server's slow-consumer closes.
func (r *runner) slowRun(ctx context.Context, c contender, offered float64, stallEvery int) (m measurement, lost int, closed int64, err error) {
	conns := r.scale.slowConns
	f, _, err := startFleet(ctx, fleetArgs{
		start: startArgs{
			Contender: c.name, Drop: true, Window: fanoutWindow(minFrameSize, conns),
			QueueLen: fanoutWindow(minFrameSize, conns), RingSize: 1 << 14,
			CPUProfile: profilePath(r.cfg.ProfileDir, fmt.Sprintf("%s%d", ScenarioSlow, stallEvery), c.name, conns),
			MaxPending: 8 << 20, MaxConns: conns + 100, FrameSize: minFrameSize,
		},
		conns: conns, stallEvery: stallEvery, perClient: r.scale.connsPerClient,
		minClients: min(2, conns), decode: r.scale.decodeEvery,
	})
	if err != nil {
		return m, 0, 0, err
	}
	defer func() {
		if cerr := f.close(); cerr != nil && err == nil {
			err = cerr
		}
	}()

	subscribed, err := f.waitSubscribed(ctx, conns)
	if err != nil {
		return m, 0, 0, err
	}
	if subscribed < conns {
		return m, 0, 0, fmt.Errorf("%d of %d connections subscribed", subscribed, conns)
	}
	// Only the reading subscribers can take their deliveries, so the drain
	// waits for theirs.
	reading := conns - stalledCount(conns, stallEvery)
	m, err = r.measure(ctx, f, produceArgs{Rate: offered, Duration: r.scale.slowTime, Batch: saturationBatch, MemEvery: 250 * time.Millisecond}, reading, false)
	if err != nil {
		return m, 0, 0, err
	}
	st, err := f.status(ctx, false)
	if err != nil {
		return m, 0, 0, err
	}
	s, err := f.clientStats(ctx, false)
	if err != nil {
		return m, 0, 0, err
	}
	r.checkDecode(c.name, s)
	return m, s.Healthy.Closed, st.SlowClosed, nil
}

// stalledCount returns how many of conns connections stall when every
// stallEvery-th does, starting with the first (0 stalls none).
func stalledCount(conns, stallEvery int) int {
	if stallEvery <= 0 {
		return 0
	}
	return (conns + stallEvery - 1) / stallEvery
}
