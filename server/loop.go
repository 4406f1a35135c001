package server

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// loop is the server's state for one gnet event loop. Its maps are touched
// only on that loop; other goroutines reach it through execute.
type loop struct {
	srv *Server
	el  gnet.EventLoop

	conns    map[*conn]struct{}
	draining map[*conn]struct{} // connections whose bulk query waits for output to drain
	scratch  []byte             // encoding buffer for replies written at once
	active   *loopActive        // Active Leasequery group and sink; nil when Active is off

	// queued keeps at most one sweep and one drain check waiting in the
	// loop's task queue, so a busy loop does not pile them up.
	sweepQueued atomic.Bool
	drainQueued atomic.Bool
}

func newLoop(s *Server, el gnet.EventLoop) *loop {
	l := &loop{
		srv:      s,
		el:       el,
		conns:    make(map[*conn]struct{}),
		draining: make(map[*conn]struct{}),
	}
	if s.active != nil {
		l.active = s.active.newLoop(l)
	}
	return l
}

// execute runs fn on the loop. It fails only while gnet shuts the engine
// down, when every connection is being closed anyway.
func (l *loop) execute(fn func(*loop)) {
	_ = l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		fn(l)
		return nil
	}))
}

// sweep schedules the timeout sweep on the loop: it enforces the idle timeout and the data timeout on every connection
// of the loop, and closes the ones that finished draining before a close.
func (l *loop) sweep() {
	if !l.sweepQueued.CompareAndSwap(false, true) {
		return
	}
	l.execute(func(l *loop) {
		l.sweepQueued.Store(false)
		now := time.Now()
		for c := range l.conns {
			c.checkTimeouts(now)
		}
	})
}

// checkDrains schedules, on the loop, the check that hands credit back to the bulk queries whose connection's
// pending output fell to the low-water mark.
func (l *loop) checkDrains() {
	if !l.drainQueued.CompareAndSwap(false, true) {
		return
	}
	l.execute(func(l *loop) {
		l.drainQueued.Store(false)
		now := time.Now()
		for c := range l.draining {
			c.checkDrain(now)
		}
	})
}

// shutdown stops every connection of the loop for a server shutdown.
func (l *loop) shutdown() {
	for c := range l.conns {
		c.shutdown()
	}
	if l.active != nil {
		l.active.shutdown()
	}
}
