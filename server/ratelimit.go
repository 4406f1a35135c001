package server

import (
	"net/netip"
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

// Bounds of a sourceLimiter: the addresses it tracks, so that a flood from
// many addresses (an IPv6 /64 has plenty) costs bounded memory, and the
// warnings it lets through per interval over all addresses, so that such a
// flood costs a bounded number of log lines.
const (
	maxLimitedSources      = 4096
	maxWarningsPerInterval = 32
)

// sourceLimiter is a warnLimiter per source address, for warnings that a
// peer can repeat at will, such as a rejected connection. On top of one
// warning per address and interval, all addresses together get at most
// maxWarningsPerInterval per interval. It tracks at most maxLimitedSources
// addresses: when the table is full it forgets addresses quiet for an
// interval, and while it stays full it holds back the warnings of new
// addresses without counting them. Safe for concurrent use.
type sourceLimiter struct {
	interval time.Duration

	mu          sync.Mutex
	sources     map[netip.Addr]*sourceWarn
	windowStart time.Time // start of the interval the budget counts
	windowUsed  int       // warnings let through since windowStart
}

type sourceWarn struct {
	last       time.Time // last warning let through or held back by the budget
	suppressed int
}

// allow reports whether a warning about a may be logged at now and, when it
// may, how many warnings about a were held back since the last one.
func (l *sourceLimiter) allow(a netip.Addr, now time.Time) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sources == nil {
		l.sources = make(map[netip.Addr]*sourceWarn)
	}
	w := l.sources[a]
	if w != nil && now.Sub(w.last) < l.interval {
		w.suppressed++
		return false, 0
	}
	if w == nil {
		if len(l.sources) >= maxLimitedSources && !l.forgetQuietLocked(now) {
			return false, 0
		}
		w = &sourceWarn{}
		l.sources[a] = w
	}

	// a is due a warning; all addresses share the budget of the interval.
	if now.Sub(l.windowStart) >= l.interval {
		l.windowStart, l.windowUsed = now, 0
	}
	w.last = now
	if l.windowUsed >= maxWarningsPerInterval {
		w.suppressed++
		return false, 0
	}
	l.windowUsed++
	suppressed, w.suppressed = w.suppressed, 0
	return true, suppressed
}

// forgetQuietLocked drops the addresses whose last warning is an interval
// old or older, and reports whether any room was made.
func (l *sourceLimiter) forgetQuietLocked(now time.Time) bool {
	before := len(l.sources)
	for a, w := range l.sources {
		if now.Sub(w.last) >= l.interval {
			delete(l.sources, a)
		}
	}
	return len(l.sources) < before
}
