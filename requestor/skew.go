package requestor

import (
	"sync"
	"time"

	"github.com/alqd/alqd/codec"
)

// Skew estimator tuning. A sample is the local receive time minus the
// server's base-time. Transit and queueing only ever make a sample larger
// than the true skew, so samples below the estimate are trusted more than
// samples above it.
const (
	skewDownShift  = 1                // a lower sample moves the estimate half way
	skewUpShift    = 4                // a higher sample moves it 1/16 of the way
	skewStep       = 30 * time.Second // a sample this far above the estimate counts towards a reset
	skewStepResets = 4                // consecutive such samples that reset the estimate
	baseTimeCenter = 500 * time.Millisecond
)

// skewEstimator tracks the clock skew between the requestor and one server
// (RFC 7653 section 8.5): local clock minus server clock.
//
// Invariants:
//  1. Before the first sample the skew is 0, the value RFC 7653 section
//     6.3.3 says to assume without better information.
//  2. A base-time is whole seconds, truncated, so a sample is taken
//     against the middle of that second (base + 0.5 s) to remove the
//     average half-second bias.
//  3. A sample below the estimate (a message that travelled faster) moves
//     the estimate half way at once; a sample above it moves it 1/16 of the
//     way, so a burst of messages queued in a slow reader's socket buffer
//     barely moves it.
//  4. skewStepResets consecutive samples more than skewStep above the
//     estimate mean the server clock stepped back; the estimate restarts
//     from the latest sample.
//  5. Only a message whose base-time is the server's clock when it built
//     the message gives a current sample, to which invariants 1 to 4
//     apply. A server may give the binding data of a catch-up, or of a
//     connection that lags behind its changes, an older base-time (alqd
//     does, so that resuming from it loses no change). Such a base-time is
//     never after the server's clock, so it gives a bound sample: it may
//     lower the estimate as in invariant 3, but it never raises it or
//     counts towards a reset.
//
// The alternative, a plain average, would drift by the queueing delay of
// every catch-up burst. It is safe for concurrent use: a Watcher shares one
// estimator between its active and recovery connections.
type skewEstimator struct {
	mu      sync.Mutex
	skew    time.Duration
	samples int
	highRun int // consecutive samples more than skewStep above the estimate
}

// skewSample is the kind of sample a message's base-time gives the skew
// estimate (invariant 5 of skewEstimator).
type skewSample uint8

const (
	sampleBound   skewSample = iota // at most the server's clock when it built the message
	sampleCurrent                   // the server's clock when it built the message
)

// observe adds the sample for a message with the given base-time read at
// received, and returns the new estimate.
func (s *skewEstimator) observe(base uint32, received time.Time, kind skewSample) time.Duration {
	server := codec.TimeFromDHCPNear(base, received).Add(baseTimeCenter)
	sample := received.Sub(server)

	s.mu.Lock()
	defer s.mu.Unlock()
	diff := sample - s.skew
	if kind == sampleBound && diff > 0 {
		return s.skew // a bound above the estimate carries no information
	}
	switch {
	case s.samples == 0:
		s.skew = sample
	case diff <= 0:
		s.skew += diff >> skewDownShift
		s.highRun = 0
	case diff > skewStep:
		s.highRun++
		if s.highRun >= skewStepResets {
			s.skew, s.highRun = sample, 0
		}
	default:
		s.skew += diff >> skewUpShift
		s.highRun = 0
	}
	s.samples++
	return s.skew
}

// estimate returns the current skew; 0 before the first sample.
func (s *skewEstimator) estimate() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.skew
}

// localTime converts a server absolute time to local time under skew.
func localTime(server uint32, skew time.Duration, near time.Time) time.Time {
	return codec.TimeFromDHCPNear(server, near).Add(skew)
}
