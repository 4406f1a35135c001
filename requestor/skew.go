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

// observe adds the sample for a message with the given base-time read at
// received, and returns the new estimate.
func (s *skewEstimator) observe(base uint32, received time.Time) time.Duration {
	server := codec.TimeFromDHCPNear(base, received).Add(baseTimeCenter)
	sample := received.Sub(server)

	s.mu.Lock()
	defer s.mu.Unlock()
	switch diff := sample - s.skew; {
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
