package main

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// progressInterval is how often the progress line is redrawn.
const progressInterval = 200 * time.Millisecond

// progress draws a one-line count of received bindings on a terminal,
// redrawn in place. The total is unknown until the server sends
// LEASEQUERY-DONE, so it shows the count, the rate and the elapsed time.
// A nil *progress draws nothing.
type progress struct {
	w       io.Writer
	start   time.Time
	stop    chan struct{}
	done    sync.WaitGroup
	mu      sync.Mutex
	count   int
	written bool
}

// startProgress starts drawing on w, or returns nil when w is not a
// terminal.
func startProgress(w io.Writer, terminal bool) *progress {
	if !terminal {
		return nil
	}
	p := &progress{w: w, start: time.Now(), stop: make(chan struct{})}
	p.done.Add(1)
	go func() {
		defer p.done.Done()
		t := time.NewTicker(progressInterval)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case now := <-t.C:
				p.draw(now)
			}
		}
	}()
	return p
}

// add counts one binding.
func (p *progress) add() {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.count++
	p.mu.Unlock()
}

// draw writes the line for the state at now.
func (p *progress) draw(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprint(p.w, progressLine(p.count, now.Sub(p.start)))
	p.written = true
}

// progressLine formats the progress line, starting with a carriage return
// and padded so that a shorter line covers a longer one.
func progressLine(count int, elapsed time.Duration) string {
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(count) / s
	}
	return fmt.Sprintf("\r%12d bindings  %10.0f/s  %8.1f s   ", count, rate, elapsed.Seconds())
}

// finish stops drawing and clears the line.
func (p *progress) finish() {
	if p == nil {
		return
	}
	close(p.stop)
	p.done.Wait()
	if p.written {
		fmt.Fprint(p.w, "\r\033[K")
	}
}
