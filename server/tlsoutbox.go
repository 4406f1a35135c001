package server

import (
	"sync"
	"time"
)

// tlsOutboxLimit is the pending output, in octets, at which a TLS Active
// Leasequery connection is blocked: about one TLS record's worth of updates
// beyond the kernel's TCP_NOTSENT_LOWAT share.
const tlsOutboxLimit = 64 << 10

// maxOutboxRetained caps the outbox buffer a connection keeps between
// writes, so that a burst does not pin memory on an idle connection.
const maxOutboxRetained = 256 << 10

// flusherLinger is how long a flusher goroutine waits for more output
// before it exits. A connection that streams keeps one flusher; an idle
// one keeps none, so that it costs only its reading goroutine.
const flusherLinger = time.Second

// tlsOutbox is the output of a TLS Active Leasequery connection waiting to
// be written through TLS by a flusher goroutine. A flusher runs only while
// there is output: the first message added to an empty outbox starts one,
// and it exits after flusherLinger without output.
type tlsOutbox struct {
	mu       sync.Mutex
	buf      []byte      // framed messages not yet handed to TLS
	closed   bool        // nothing more is added: the final message is in buf, or the query ended
	reason   CloseReason // set by finish: the connection closes with it once buf is written
	blocked  bool        // a Deliver reported the subscriber blocked
	flushing bool        // a flusher goroutine runs
	ready    chan struct{}

	// Set by the flusher that ended the connection, before it wakes the
	// reading goroutine.
	end    CloseReason
	endErr error
}

// add appends one message built by build, unless the outbox is closed.
// final closes the outbox behind it with reason. Safe from any goroutine.
func (a *tlsActive) add(build func([]byte) ([]byte, error), final bool, reason CloseReason) error {
	o := &a.out
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil
	}
	b, err := build(o.buf)
	if err == nil {
		o.buf = b
	}
	if final {
		o.closed, o.reason = true, reason
	}
	a.kickLocked()
	return err
}

// kickLocked makes a flusher write the outbox: it wakes the running one or
// starts one. a.out.mu is held.
func (a *tlsActive) kickLocked() {
	o := &a.out
	if len(o.buf) == 0 && o.reason == 0 {
		return
	}
	if o.flushing {
		select {
		case o.ready <- struct{}{}:
		default:
		}
		return
	}
	o.flushing = true
	a.flushers.Add(1)
	go a.flush()
}

// flush is the flusher goroutine: it hands the outbox to TLS until the
// outbox stays empty for flusherLinger, and ends the connection after the
// final message or a failed write.
func (a *tlsActive) flush() {
	defer a.flushers.Done()
	t, o := a.t, &a.out
	linger := time.NewTimer(flusherLinger)
	defer linger.Stop()
	for {
		o.mu.Lock()
		b := o.buf
		o.buf = a.spare[:0]
		reason := o.reason
		o.mu.Unlock()

		if len(b) > 0 {
			if err := t.write(b); err != nil {
				a.endConn(t.writeFailure(), err)
				return
			}
			a.lastWrite.Store(time.Now().UnixNano())
			a.unblock()
		}
		a.spare = b[:0]
		if cap(a.spare) > maxOutboxRetained {
			a.spare = nil
		}

		o.mu.Lock()
		switch {
		case len(o.buf) > 0:
			o.mu.Unlock()
			continue
		case reason != 0:
			o.mu.Unlock()
			a.endConn(reason, nil) // the final message is written
			return
		case o.closed:
			o.flushing = false // release waits for this
			o.mu.Unlock()
			return
		}
		o.mu.Unlock()

		linger.Reset(flusherLinger)
		select {
		case <-o.ready:
			continue
		case <-linger.C:
		}
		o.mu.Lock()
		if len(o.buf) == 0 && o.reason == 0 && !o.closed {
			o.flushing = false
			o.mu.Unlock()
			return
		}
		o.mu.Unlock()
	}
}

// unblock resumes a blocked subscriber once its output is in TLS
// (invariant 2); it runs on the flusher.
func (a *tlsActive) unblock() {
	o := &a.out
	o.mu.Lock()
	resume := o.blocked && len(o.buf) < tlsOutboxLimit
	if resume {
		o.blocked = false
	}
	o.mu.Unlock()
	if resume {
		a.hub.do(func() {
			if a.sub != nil {
				a.hub.group.Unblock(a.sub)
			}
		})
	}
}

// endConn records why the connection ends and wakes the goroutine that
// reads it, which then closes it. The outbox takes nothing more.
func (a *tlsActive) endConn(reason CloseReason, err error) {
	o := &a.out
	o.mu.Lock()
	o.closed = true
	o.flushing = false
	if o.end == 0 {
		o.end, o.endErr = reason, err
	}
	o.mu.Unlock()
	_ = a.t.raw.SetReadDeadline(aLongTimeAgo)
}

// ended returns the close reason a flusher recorded, if any.
func (a *tlsActive) ended() (CloseReason, error, bool) {
	o := &a.out
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.end, o.endErr, o.end != 0
}

// checkIdle runs from the keepalive timer: a connection that was sent
// nothing for ACTIVE_LQ_IDLE_TIMEOUT gets a LEASEQUERY-DATA without
// binding data (RFC 7653 section 8.4). The hub goroutine builds it because
// it owns the subscriber whose cursor controlBase reads. checkIdle re-arms
// the timer until the outbox closes.
func (a *tlsActive) checkIdle() {
	timeout := a.t.srv.cfg.ActiveIdleTimeout
	since := time.Since(time.Unix(0, a.lastWrite.Load()))
	if since >= timeout {
		a.hub.do(a.keepalive) // a stopped hub means a shutdown, which sends DONE
		since = 0
	}

	o := &a.out
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return
	}
	if since == 0 {
		a.t.srv.metrics.active.keepalives.Inc()
	}
	a.idle.Reset(timeout - since)
}
