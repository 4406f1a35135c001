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

// Descriptors the process needs next to its connections, which
// connsForFileLimit keeps out of RLIMIT_NOFILE. A flood of connections never
// needs more: one over a limit is accepted and closed in OnOpen, so it holds
// its descriptor only for that call. With a 20,000-descriptor limit, two
// event loops and a store with the default 500 open files, the reserve is
// 500 + 32 + 2*4 + 256 = 796 descriptors, which leaves 19,204 for
// connections: 19,140 allowed ones next to the default 64 from outside
// Allow.
const (
	// fixedFiles covers 17 descriptors, rounded up: stdin, stdout and
	// stderr (3); the Go runtime's netpoller, an epoll and an eventfd (2);
	// gnet's listener and its main reactor's epoll and eventfd (3); the UDP
	// socket (1); cmd/alqd's metrics and ingest HTTP listeners (2); the Kea
	// lease file, its rotated predecessor and an inotify descriptor (3);
	// the certificate, key and CA files a TLS reload reads (3).
	fixedFiles = 32

	// loopFiles covers one gnet event loop: its epoll and eventfd
	// descriptors, and the two duplicates of a socket that a STARTTLS
	// handover holds while it moves the socket to crypto/tls.
	loopFiles = 4

	// fileMargin covers what has no fixed count: connections to the HTTP
	// servers (metrics scrapes, ingest posts), DNS lookups for dns:
	// allow-list entries, and sstables Pebble keeps open past its soft
	// limit while iterators hold them.
	// cmd/alqd caps each of its two HTTP listeners at 64 open connections,
	// so HTTP clients can take at most half of this margin.
	fileMargin = 256

	// defaultStoreFiles counts a store that does not report its open file
	// limit at Pebble's default MaxOpenFiles (1000 in Pebble v2.1.7).
	defaultStoreFiles = 1000
)

// openFileLimiter is implemented by a Store that reports how many
// descriptors it may hold open; *store.Store does.
type openFileLimiter interface {
	MaxOpenFiles() int
}

// fileReserve returns the descriptors kept free for everything but
// connections: the store's files and the counts above, for a server with
// loops event loops.
func fileReserve(st Store, loops int) uint64 {
	storeFiles := defaultStoreFiles
	if l, ok := st.(openFileLimiter); ok {
		storeFiles = l.MaxOpenFiles()
	}
	return uint64(storeFiles + fixedFiles + loopFiles*loops + fileMargin)
}

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

// connsForFileLimit returns how many connections fit in limit descriptors
// next to reserve others (fileReserve). gnet stops its whole engine when
// accept(2) fails with EMFILE, so the cap must keep accept from ever
// running out. A limit too small for the reserve and 64 connections gets
// half of it.
func connsForFileLimit(limit, reserve uint64) int {
	if limit > reserve+64 {
		return int(min(limit-reserve, 1<<30))
	}
	return int(limit / 2)
}
