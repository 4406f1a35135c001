package fanout

import "sync/atomic"

// Stats holds the fanout counters. Every field counts since the ring or group
// was created and only grows.
type Stats struct {
	Published    uint64 // updates published to the ring (Ring.Stats only)
	Delivered    uint64 // updates a Sink accepted, from the ring or from store scans
	Lapped       uint64 // times a subscriber's next update was overwritten before it read it
	Blocked      uint64 // times a subscriber was marked blocked
	Resyncs      uint64 // store scans opened for lapped, unblocked or new subscribers
	ResyncErrors uint64 // store scans that ended with an error
	Wakes        uint64 // calls of a group's wake function
}

func (s *Stats) add(o Stats) {
	s.Published += o.Published
	s.Delivered += o.Delivered
	s.Lapped += o.Lapped
	s.Blocked += o.Blocked
	s.Resyncs += o.Resyncs
	s.ResyncErrors += o.ResyncErrors
	s.Wakes += o.Wakes
}

// groupStats are a Group's counters. The group's goroutine writes them and
// any goroutine may read them, hence the atomics.
type groupStats struct {
	delivered    atomic.Uint64
	lapped       atomic.Uint64
	blocked      atomic.Uint64
	resyncs      atomic.Uint64
	resyncErrors atomic.Uint64
	wakes        atomic.Uint64
}

func (s *groupStats) snapshot() Stats {
	return Stats{
		Delivered:    s.delivered.Load(),
		Lapped:       s.lapped.Load(),
		Blocked:      s.blocked.Load(),
		Resyncs:      s.resyncs.Load(),
		ResyncErrors: s.resyncErrors.Load(),
		Wakes:        s.wakes.Load(),
	}
}
