package ingest

import "time"

// malformedLogBurst is how many malformed rows a follower logs per minute;
// it counts the rest and reports the count with the next logged row.
const malformedLogBurst = 100

// logLimiter limits log lines to malformedLogBurst a minute. Not safe for
// concurrent use.
type logLimiter struct {
	window     time.Time
	count      int
	suppressed int
}

// allow reports whether to log now and how many lines were suppressed since
// the last one logged.
func (l *logLimiter) allow() (ok bool, suppressed int) {
	now := time.Now()
	if now.Sub(l.window) >= time.Minute {
		l.window, l.count = now, 0
	}
	if l.count >= malformedLogBurst {
		l.suppressed++
		return false, 0
	}
	l.count++
	suppressed, l.suppressed = l.suppressed, 0
	return true, suppressed
}
