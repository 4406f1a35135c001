package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alqd/alqd/store"
)

// backupPath is the path of the online backup on the metrics listener.
const backupPath = "/backup"

// defaultBackupStallTimeout is how long one write of an online backup may
// wait for a client that stopped reading. The backup is then aborted,
// because it holds a Pebble snapshot, which keeps data that compactions
// would otherwise drop on disk.
const defaultBackupStallTimeout = time.Minute

// backupHandler serves GET /backup: a backup stream of the running store,
// the same bytes "alqd backup" writes. It runs one backup at a time and
// returns 503 to a second request meanwhile, because each backup keeps a
// core busy compressing.
//
// Shutdown calls close, which ends running backups and waits for them, so
// that the store is never closed under a Backup. A backup ended early is
// sent as an aborted response (no final chunk), and the stream lacks its
// trailer, so a client notices either way.
type backupHandler struct {
	st    *store.Store
	log   *slog.Logger
	clock func() time.Time

	// stallTimeout bounds each write to the client.
	stallTimeout time.Duration

	busy   atomic.Bool
	mu     sync.Mutex // guards closed and the Add of running
	closed bool
	// running counts handlers inside a Backup.
	running sync.WaitGroup
	ctx     context.Context // ends at close
	cancel  context.CancelFunc
}

func newBackupHandler(st *store.Store, log *slog.Logger) *backupHandler {
	ctx, cancel := context.WithCancel(context.Background())
	return &backupHandler{st: st, log: log, clock: time.Now, stallTimeout: defaultBackupStallTimeout, ctx: ctx, cancel: cancel}
}

// close ends running backups and waits until they return. Requests after
// it get 503.
func (h *backupHandler) close() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	h.cancel()
	h.running.Wait()
}

// enter registers a request and reports whether it may run.
func (h *backupHandler) enter() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.running.Add(1)
	return true
}

func (h *backupHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "only GET returns a backup", http.StatusMethodNotAllowed)
		return
	}
	if !h.enter() {
		http.Error(w, "alqd is shutting down", http.StatusServiceUnavailable)
		return
	}
	defer h.running.Done()
	if !h.busy.CompareAndSwap(false, true) {
		w.Header().Set("Retry-After", "60")
		http.Error(w, "another backup is running; retry when it is done", http.StatusServiceUnavailable)
		return
	}
	defer h.busy.Store(false)

	// The backup ends with the request, at shutdown, or when a write
	// stalls for stallTimeout. A write blocked on a client that stopped
	// reading only returns at its deadline, so shutdown moves the deadline
	// to now. Under sw.mu, no write sets a later one after that.
	ctx, stop := context.WithCancel(r.Context())
	defer stop()
	sw := &stallWriter{w: w, rc: http.NewResponseController(w), ctx: ctx, timeout: h.stallTimeout}
	unblock := context.AfterFunc(h.ctx, func() {
		sw.mu.Lock()
		defer sw.mu.Unlock()
		stop()
		_ = sw.rc.SetWriteDeadline(time.Now())
	})
	defer unblock()

	began := h.clock().UTC()
	header := w.Header()
	header.Set("Content-Type", "application/zstd")
	header.Set("Content-Disposition", fmt.Sprintf("attachment; filename=\"alqd-backup-%s.zst\"", began.Format("20060102T150405Z")))
	header.Set("Cache-Control", "no-store")
	header.Set("X-Content-Type-Options", "nosniff")

	info, err := h.st.Backup(ctx, sw)
	summary := newBackupSummary("", "", &info, h.clock().Sub(began))
	if err != nil {
		level := slog.LevelError
		if r.Context().Err() != nil || h.ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
			// The client left or stalled, or alqd is shutting down:
			// nothing is wrong with the store.
			level = slog.LevelWarn
		}
		h.log.Log(r.Context(), level, "online backup failed", "remote", r.RemoteAddr, "records", summary.Records, "stream_bytes", summary.StreamBytes, "err", err)
		if info.StreamBytes == 0 {
			header.Del("Content-Disposition")
			http.Error(w, "the backup failed before its first byte; see the alqd log", http.StatusInternalServerError)
			return
		}
		// The status line is gone, so abort the response: the client
		// sees a broken transfer rather than a short one.
		panic(http.ErrAbortHandler)
	}
	h.log.Info("online backup sent", "remote", r.RemoteAddr, "bindings", summary.Bindings, "records", summary.Records,
		"last_seq", summary.LastSeq, "raw_bytes", summary.RawBytes, "stream_bytes", summary.StreamBytes,
		"ratio", summary.Ratio, "seconds", summary.Seconds)
}

// stallWriter writes an online backup to its client, giving each write a
// deadline of timeout from its start.
type stallWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	ctx     context.Context // ends with the backup
	timeout time.Duration

	mu sync.Mutex // orders the deadline of each write against shutdown
}

func (s *stallWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	if err := s.ctx.Err(); err != nil {
		s.mu.Unlock()
		return 0, err
	}
	err := s.rc.SetWriteDeadline(time.Now().Add(s.timeout))
	s.mu.Unlock()
	if err != nil && !errors.Is(err, http.ErrNotSupported) {
		return 0, fmt.Errorf("setting the write deadline: %w", err)
	}
	return s.w.Write(p)
}
