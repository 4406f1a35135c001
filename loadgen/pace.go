package loadgen

import (
	"math"
	"time"
)

// pacer spreads changes evenly over time: at elapsed time t, rate×t changes
// are due. It never lets the schedule run more than maxLag changes ahead of
// what was sent: a sink that stalls for longer loses the excess, counted in
// shortfall, instead of being flooded by a burst once it recovers.
// The alternative, keeping the whole schedule, would measure how fast the
// sink drains a backlog rather than how it copes with a steady rate.
type pacer struct {
	start     time.Time
	rate      float64 // changes per second
	maxLag    int64   // changes
	shortfall int64   // changes dropped from the schedule
}

func newPacer(start time.Time, rate float64, maxLag time.Duration) *pacer {
	return &pacer{start: start, rate: rate, maxLag: max(1, int64(math.Ceil(rate*maxLag.Seconds())))}
}

// due returns how many changes should be sent by now, given that sent
// already were, dropping from the schedule whatever lies more than maxLag
// behind.
func (p *pacer) due(now time.Time, sent int64) int64 {
	elapsed := now.Sub(p.start)
	if elapsed < 0 {
		elapsed = 0
	}
	scheduled := int64(p.rate*elapsed.Seconds()) - p.shortfall
	if behind := scheduled - sent; behind > p.maxLag {
		p.shortfall += behind - p.maxLag
		scheduled = sent + p.maxLag
	}
	return scheduled
}
