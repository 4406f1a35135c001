package server

import (
	"sync"
	"time"
)

// warnLimiter lets one warning through per interval and counts the ones it
// holds back, so that a problem repeated by many queries costs one log line
// per interval. Safe for concurrent use. The zero value lets every warning
// through.
type warnLimiter struct {
	interval time.Duration

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// allow reports whether a warning may be logged at now and, when it may,
// how many were held back since the last one.
func (l *warnLimiter) allow(now time.Time) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < l.interval {
		l.suppressed++
		return false, 0
	}
	suppressed = l.suppressed
	l.last, l.suppressed = now, 0
	return true, suppressed
}
