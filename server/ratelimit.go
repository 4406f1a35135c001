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

// maxLimitedSources caps the addresses a sourceLimiter tracks, so that a
// flood from many addresses (an IPv6 /64 has plenty) costs bounded memory.
const maxLimitedSources = 4096

// sourceLimiter is a warnLimiter per source address, for warnings that a
// peer can repeat at will, such as a rejected connection. It tracks at most
// maxLimitedSources addresses. When the table is full it forgets addresses
// quiet for an interval, and while it stays full it holds back the
// warnings of new addresses. Safe for concurrent use.
type sourceLimiter struct {
	interval time.Duration

	mu      sync.Mutex
	sources map[netip.Addr]*sourceWarn
}

type sourceWarn struct {
	last       time.Time
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
	if w == nil {
		if len(l.sources) >= maxLimitedSources && !l.forgetQuietLocked(now) {
			return false, 0
		}
		l.sources[a] = &sourceWarn{last: now}
		return true, 0
	}
	if now.Sub(w.last) < l.interval {
		w.suppressed++
		return false, 0
	}
	suppressed = w.suppressed
	w.last, w.suppressed = now, 0
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
