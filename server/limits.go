package server

import (
	"context"
	"net/netip"
	"sync"

	"golang.org/x/sys/unix"
)

// requestor is the shared state of one requestor address: its open
// connections and the slots for its running bulk queries.
type requestor struct {
	conns int           // guarded by requestorTable.mu
	slots chan struct{} // one element per running query
}

// acquire waits for a query slot, or for ctx to end.
func (r *requestor) acquire(ctx context.Context) error {
	select {
	case r.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

func (r *requestor) release() { <-r.slots }

// requestorTable counts connections per requestor address. It is shared by
// every event loop, so it has a lock; it is touched only when a connection
// opens or closes.
type requestorTable struct {
	maxConns   int
	maxQueries int

	mu sync.Mutex
	m  map[netip.Addr]*requestor
}

// open registers a connection from a and reports false when a is at its
// connection limit.
func (t *requestorTable) open(a netip.Addr) (*requestor, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.m[a]
	if r == nil {
		r = &requestor{slots: make(chan struct{}, t.maxQueries)}
		t.m[a] = r
	}
	if r.conns >= t.maxConns {
		if r.conns == 0 {
			delete(t.m, a)
		}
		return nil, false
	}
	r.conns++
	return r, true
}

// close unregisters a connection opened with open.
func (t *requestorTable) close(a netip.Addr, r *requestor) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r.conns--
	if r.conns == 0 && t.m[a] == r {
		delete(t.m, a)
	}
}

// fileReserve is the number of descriptors kept free for everything but
// connections: Pebble's table cache (1000 files by default), its WAL and
// manifest, the listeners, the metrics server and the Kea lease file.
const fileReserve = 1100

// raiseFileLimit raises the soft RLIMIT_NOFILE to the hard limit and
// returns the soft limit in force.
func raiseFileLimit() (uint64, error) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur < lim.Max {
		want := lim
		want.Cur = lim.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &want); err != nil {
			return lim.Cur, err
		}
		lim = want
	}
	return lim.Cur, nil
}

// connsForFileLimit returns how many connections fit in limit descriptors.
// gnet stops its whole engine when accept(2) fails with EMFILE, so the cap
// must keep accept from ever running out.
func connsForFileLimit(limit uint64) int {
	if limit > fileReserve+64 {
		return int(min(limit-fileReserve, 1<<30))
	}
	return int(limit / 2)
}
