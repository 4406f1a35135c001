package e2e

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/alqd/alqd/requestor"
)

// connection is one active connection of an activeFollower, as its events
// told it.
type connection struct {
	Connected requestor.Connected
	// WantStart is the highest base-time the follower had received outside
	// catch-up when this connection was opened: the OPTION_LQ_START_TIME
	// RFC 7653 section 8.4.1 tells a requestor to resume from.
	WantStart    uint32
	HasWantStart bool
	CaughtUp     bool // CatchUpComplete arrived on this connection
	Ended        error
}

// activeFollower follows alqd with Active Leasequery through a
// requestor.Watcher and keeps the latest binding it received per key.
// Its methods are safe for concurrent use.
type activeFollower struct {
	name string

	mu          sync.Mutex
	view        map[bindingKey]observed
	conns       []connection
	bindings    int       // Binding events so far
	lastBinding time.Time // when the last Binding event arrived
	high        uint32    // highest base-time outside catch-up
	hasHigh     bool
	problems    []string // events the server should not have sent

	done   chan struct{}
	runErr error // set before done is closed
}

// startActiveFollower starts a Watcher on server with filter (nil follows
// every binding) and relay data requested. It asks for the whole history
// first (start time 0), so it also sees bindings made before it connected.
// The Watcher runs until ctx ends.
func startActiveFollower(ctx context.Context, name, server string, filter *requestor.Query) (*activeFollower, error) {
	cfg := requestor.Config{
		Server:        server,
		DialTimeout:   2 * time.Second,
		RetryInterval: time.Second,
	}
	w, err := requestor.NewWatcher(cfg, requestor.WatchRequest{
		Filter:    filter,
		RelayData: true,
		Initial:   requestor.InitialCatchUp,
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	f := &activeFollower{name: name, view: make(map[bindingKey]observed), done: make(chan struct{})}
	go func() {
		f.runErr = w.Run(ctx, f.handle)
		close(f.done)
	}()
	return f, nil
}

// handle is the Watcher's callback; it runs on the Watcher's goroutine.
func (f *activeFollower) handle(ev requestor.Event) error {
	f.mu.Lock()
	defer f.mu.Unlock()

	switch e := ev.(type) {
	case requestor.Connected:
		f.conns = append(f.conns, connection{Connected: e, WantStart: f.high, HasWantStart: f.hasHigh})
	case requestor.Disconnected:
		if n := len(f.conns); n > 0 && f.conns[n-1].Ended == nil {
			f.conns[n-1].Ended = e.Err
		}
	case requestor.CatchUpComplete:
		if n := len(f.conns); n > 0 {
			f.conns[n-1].CaughtUp = true
		}
		f.noteBaseTime(e.MessageInfo, true)
	case requestor.Keepalive:
		f.noteBaseTime(e.MessageInfo, false)
	case requestor.Done:
		// The LEASEQUERY-DONE that ends the connection at a shutdown
		// carries a base-time too (RFC 7653 section 8.4), which the
		// Watcher keeps like any other received outside catch-up.
		f.noteBaseTime(e.MessageInfo, false)
	case requestor.Binding:
		o, err := observe(e)
		if err != nil {
			f.problems = append(f.problems, err.Error())
			return nil
		}
		f.view[o.Key] = o
		f.bindings++
		f.lastBinding = time.Now()
		f.noteBaseTime(e.MessageInfo, false)
	case requestor.DataMissing:
		// The store keeps 24 hours of history, so nothing the test asks
		// for can be missing.
		f.problems = append(f.problems, fmt.Sprintf("DataMissing from start time %d: %s", e.StartTime, e.StatusMessage))
	}
	return nil
}

// noteBaseTime tracks the highest base-time received outside catch-up;
// the message that completes catch-up counts.
func (f *activeFollower) noteBaseTime(info requestor.MessageInfo, completesCatchUp bool) {
	if !info.HasBaseTime || (info.CatchUp && !completesCatchUp) {
		return
	}
	if !f.hasHigh || int32(info.BaseTime-f.high) > 0 {
		f.high, f.hasHigh = info.BaseTime, true
	}
}

// Connections returns a copy of the connections so far.
func (f *activeFollower) Connections() []connection {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.conns)
}

// View returns a copy of the latest binding per key.
func (f *activeFollower) View() map[bindingKey]observed {
	f.mu.Lock()
	defer f.mu.Unlock()
	v := make(map[bindingKey]observed, len(f.view))
	for k, o := range f.view {
		v[k] = o
	}
	return v
}

// Quiet reports how long no Binding event has arrived, and how many
// arrived in all.
func (f *activeFollower) Quiet() (time.Duration, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lastBinding.IsZero() {
		return 0, 0
	}
	return time.Since(f.lastBinding), f.bindings
}

// Problems returns the unexpected events received so far.
func (f *activeFollower) Problems() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.problems)
}

// Ended returns the error Run returned, once it has returned.
func (f *activeFollower) Ended() (bool, error) {
	select {
	case <-f.done:
		return true, f.runErr
	default:
		return false, nil
	}
}

// waitCaughtUp waits until the follower's n-th connection (1-based) has
// completed catch-up. It fails early when the Watcher has stopped, for
// example because the server answered NotSupported.
func (f *activeFollower) waitCaughtUp(ctx context.Context, n int) error {
	for {
		conns := f.Connections()
		for i := n - 1; i < len(conns); i++ {
			if conns[i].CaughtUp {
				return nil
			}
		}
		if ended, err := f.Ended(); ended {
			return fmt.Errorf("%s: the active requestor stopped after %d connections: %w", f.name, len(conns), err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: connection %d did not complete catch-up (%d connections so far): %w", f.name, n, len(conns), ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// bulkDump runs queries one after the other on one Bulk Leasequery
// connection and returns the bindings by key, with the lowest and highest
// base-time of the replies. A key reported twice is an error, because every
// binding has one link and one relay.
func bulkDump(ctx context.Context, server string, queries []requestor.Query) (map[bindingKey]observed, int64, int64, error) {
	conn, err := requestor.Dial(ctx, requestor.Config{Server: server, DialTimeout: 2 * time.Second, BulkDataTimeout: 30 * time.Second})
	if err != nil {
		return nil, 0, 0, err
	}
	defer conn.Close()

	view := make(map[bindingKey]observed)
	var first, last int64
	var errs []error
	for _, q := range queries {
		err := conn.Bulk(ctx, q, func(ev requestor.Event) error {
			info := ev.Info()
			if info.HasBaseTime {
				base := info.ServerTime().Unix()
				if first == 0 || base < first {
					first = base
				}
				last = max(last, base)
			}
			b, ok := ev.(requestor.Binding)
			if !ok {
				return nil
			}
			o, err := observe(b)
			if err != nil {
				return err
			}
			if prev, dup := view[o.Key]; dup {
				errs = append(errs, fmt.Errorf("%s reported twice: DUID %x, then DUID %x in the %s query", o.Key, prev.ClientID, o.ClientID, q.Type))
			}
			view[o.Key] = o
			return nil
		})
		if err != nil {
			return nil, 0, 0, fmt.Errorf("%s for link %s: %w", q.Type, q.Link, err)
		}
	}
	return view, first, last, errors.Join(errs...)
}
