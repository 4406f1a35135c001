package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/alqd/alqd/store"
)

// Applier commits binding changes durably; *store.Store implements it.
//
// Apply returns after the changes and meta are committed together, or not at
// all. It must not keep the changes slice or the byte slices inside the
// bindings after it returns: the follower reuses the slice, and the ingest
// API handler reuses the request body that the byte slices point into.
// *store.Store copies both.
type Applier interface {
	Apply(ctx context.Context, changes []store.Binding, meta map[string][]byte) (lastSeq uint64, err error)
}

// Store is the part of *store.Store that a Follower uses: Apply, and Meta to
// read back the position stored with the last Apply. Meta returns nil, nil
// for an absent key.
type Store interface {
	Applier
	Meta(key string) ([]byte, error)
}

var _ Store = (*store.Store)(nil)

// StoreBindings returns a FollowerConfig.ListBindings that walks all
// bindings of s.
func StoreBindings(s *store.Store) func(ctx context.Context, yield func(*store.Binding) bool) error {
	return func(ctx context.Context, yield func(*store.Binding) bool) error {
		it := s.All()
		for it.Next() {
			if err := ctx.Err(); err != nil {
				return errors.Join(err, it.Close())
			}
			if !yield(it.Binding()) {
				break
			}
		}
		return errors.Join(it.Err(), it.Close())
	}
}

// FollowerConfig configures a Follower. The zero value of every field but
// Path works.
type FollowerConfig struct {
	// Path is the live memfile lease file of kea-dhcp6, the "name" of its
	// lease-database (for example /var/lib/kea/kea-leases6.csv). Kea's LFC
	// files are found next to it by suffix: .1, .2, .completed, .pid.
	Path string

	// PositionKey is the store metadata key for the follower's position.
	// Default DefaultPositionKey. Two followers on one store need two keys.
	PositionKey string

	// MaxBatchRows is the largest number of rows committed in one Apply.
	// The follower also commits whenever a read reaches the end of the file.
	// Default 1024.
	MaxBatchRows int

	// MaxLineBytes is the longest line accepted, newline included; a longer
	// line is counted as malformed and skipped. Default 1 MiB. Kea rows are
	// about 120 bytes, or about 330 bytes with relay information.
	MaxLineBytes int

	// PollInterval is how often the follower looks for new rows and for
	// rotation when no inotify event arrives, and how often it retries while
	// kea-lfc runs at start-up. Default 200 ms.
	PollInterval time.Duration

	// RetryInterval is the wait after a failed Apply before the same batch
	// is tried again. Default 1 s.
	RetryInterval time.Duration

	// DisableInotify makes the follower rely on PollInterval alone. By
	// default it also watches the lease file's directory with inotify, so
	// that rows are read as soon as Kea writes them.
	DisableInotify bool

	// SubnetLinks maps Kea subnet-ids to the link address given to bindings
	// that were not relayed. Copied by NewFollower.
	SubnetLinks map[uint32]netip.Addr

	// ListBindings, when set, lets the follower end bindings that Kea
	// deleted while the follower was not running. A full load happens when
	// there is no usable stored position, for example because LFC
	// compacted the lease file while alqd was down. After every full load,
	// the follower calls ListBindings and stores as expired every active or
	// declined binding with source store.SourceKea that the loaded files do
	// not have. Bindings of other sources, such as the ingest API, are left
	// alone, so the same store may take both.
	// ListBindings calls yield for each binding in the store until yield
	// returns false; the binding is only valid during the call.
	ListBindings func(ctx context.Context, yield func(*store.Binding) bool) error

	// Logger receives malformed rows (Warn, at most malformedLogBurst a
	// minute), rotations and reloads (Info), and store failures (Error).
	// Nil discards.
	Logger *slog.Logger
}

// Defaults of FollowerConfig.
const (
	DefaultMaxBatchRows  = 1024
	DefaultMaxLineBytes  = 1 << 20
	DefaultPollInterval  = 200 * time.Millisecond
	DefaultRetryInterval = time.Second
)

// readBufferSize is the initial read buffer of a file; it grows up to
// MaxLineBytes for longer lines.
const readBufferSize = 64 << 10

// Validate reports a configuration that can not work.
func (c *FollowerConfig) Validate() error {
	switch {
	case c.Path == "":
		return errors.New("ingest: follower needs the path of the Kea lease file")
	case c.MaxBatchRows < 0:
		return fmt.Errorf("ingest: MaxBatchRows %d is negative", c.MaxBatchRows)
	case c.MaxLineBytes < 0:
		return fmt.Errorf("ingest: MaxLineBytes %d is negative", c.MaxLineBytes)
	case c.PollInterval < 0:
		return fmt.Errorf("ingest: PollInterval %v is negative", c.PollInterval)
	case c.RetryInterval < 0:
		return fmt.Errorf("ingest: RetryInterval %v is negative", c.RetryInterval)
	}
	for id, link := range c.SubnetLinks {
		if !link.Is6() || link.Is4In6() {
			return fmt.Errorf("ingest: link address %v of subnet %d is not IPv6", link, id)
		}
	}
	return nil
}

// FollowerStats is a snapshot of a Follower's counters.
type FollowerStats struct {
	RowsRead       uint64 // rows read, valid or not; header lines are not rows
	ChangesApplied uint64 // binding changes committed by Apply; the store drops those identical to its state
	MalformedRows  uint64 // rows skipped because they could not be parsed
	Rotations      uint64 // live files followed after LFC renamed the previous one
	Reloads        uint64 // full loads of the snapshot files and the live file
	Reconciled     uint64 // bindings ended after a full load because Kea no longer had them
	ApplyErrors    uint64 // failed Apply calls, each retried
	BytesRead      uint64 // bytes read from lease files

	// ByKind counts parsed rows by kind. Assignments are counted as RowNew
	// or RowExtend, never RowAssign.
	ByKind [NumRowKinds]uint64
}

// Follower follows the DHCPv6 memfile lease file of ISC Kea and commits every
// row to the store as a binding change, together with its position in the
// file. Create it with NewFollower and start it with Run.
//
// Invariants:
//
//  1. The position stored with an Apply is the end of the last line whose
//     change is in that Apply or an earlier one, so after a crash the store
//     holds exactly the rows before the stored position.
//  2. Only complete lines are consumed. Kea writes a row and its newline in
//     one flush, so a line without newline is still being written.
//  3. Kea closes the live file before LFC renames it. When the path names a
//     new inode, the old descriptor is read to its end once more before the
//     new file is read from its start, so no row is lost or read twice.
//  4. A full load (snapshot files, then the live file) stores its position
//     as incomplete until the live file has been read to its end and, with
//     ListBindings, reconciled. A restart during a full load starts it over.
//
// Restarting a full load repeats rows the store has seen. That is harmless,
// because every row is the complete state of its lease and the store skips a
// change identical to the stored state. The rows come in the order Kea wrote
// them, so the store ends at the state of the last row of each lease.
//
// The rejected alternative is reading leases through Kea's control socket
// (lease6-get-all): it has no position to continue from, so the hand-over to
// the file can not be exact.
type Follower struct {
	cfg       FollowerConfig
	st        Store
	log       *slog.Logger
	running   atomic.Bool
	malformed logLimiter

	rowsRead       atomic.Uint64
	changesApplied atomic.Uint64
	malformedRows  atomic.Uint64
	rotations      atomic.Uint64
	reloads        atomic.Uint64
	reconciled     atomic.Uint64
	applyErrors    atomic.Uint64
	bytesRead      atomic.Uint64
	byKind         [NumRowKinds]atomic.Uint64

	// Owned by the goroutine in Run.
	parser    Parser
	tracker   *leaseTracker
	row       Row
	batch     []store.Binding
	meta      map[string][]byte
	loading   bool     // a full load is in progress: positions are stored incomplete
	committed position // the position stored by the last Apply
}

// NewFollower returns a follower of cfg.Path that commits to st.
func NewFollower(st Store, cfg FollowerConfig) (*Follower, error) {
	if st == nil {
		return nil, errors.New("ingest: follower needs a store")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.PositionKey == "" {
		cfg.PositionKey = DefaultPositionKey
	}
	if cfg.MaxBatchRows == 0 {
		cfg.MaxBatchRows = DefaultMaxBatchRows
	}
	if cfg.MaxLineBytes == 0 {
		cfg.MaxLineBytes = DefaultMaxLineBytes
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.RetryInterval == 0 {
		cfg.RetryInterval = DefaultRetryInterval
	}
	links := make(map[uint32]netip.Addr, len(cfg.SubnetLinks))
	for id, link := range cfg.SubnetLinks {
		links[id] = link
	}
	cfg.SubnetLinks = links

	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	f := &Follower{
		cfg:     cfg,
		st:      st,
		log:     logger.With("file", cfg.Path),
		tracker: newLeaseTracker(),
		batch:   make([]store.Binding, 0, min(cfg.MaxBatchRows, 64)),
		meta:    make(map[string][]byte, 1),
	}
	f.parser.SubnetLinks = links
	return f, nil
}

// Stats returns the follower's counters. Safe for concurrent use.
func (f *Follower) Stats() FollowerStats {
	s := FollowerStats{
		RowsRead:       f.rowsRead.Load(),
		ChangesApplied: f.changesApplied.Load(),
		MalformedRows:  f.malformedRows.Load(),
		Rotations:      f.rotations.Load(),
		Reloads:        f.reloads.Load(),
		Reconciled:     f.reconciled.Load(),
		ApplyErrors:    f.applyErrors.Load(),
		BytesRead:      f.bytesRead.Load(),
	}
	for i := range s.ByKind {
		s.ByKind[i] = f.byKind[i].Load()
	}
	return s
}

// Run follows the lease file until ctx is done, then returns nil. It returns
// an error only when it can not start: the stored position can not be read,
// or the lease file exists but can not be opened. Store failures are logged
// and retried. After Run returns, the follower holds no file and calls Apply
// no more. The next Run reads again the rows that were read but not
// committed.
// A Follower runs at most once at a time.
func (f *Follower) Run(ctx context.Context) error {
	if !f.running.CompareAndSwap(false, true) {
		return errors.New("ingest: follower is already running")
	}
	defer f.running.Store(false)

	events, closeNotifier := f.startNotifier()
	defer closeNotifier()

	t, err := f.start(ctx, events)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer func() { t.close() }()

	for {
		next, err := f.step(ctx, t, events)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			f.log.Error("reading lease file failed", "error", err)
		}
		if next != nil {
			t.close()
			t = next
			continue
		}
		if !f.wait(ctx, events) {
			return nil
		}
	}
}

// step reads t to its end, finishes a full load, and checks for rotation. It
// returns the next file to read when Kea rotated the live file.
func (f *Follower) step(ctx context.Context, t *tail, events <-chan struct{}) (*tail, error) {
	if err := f.drain(ctx, t); err != nil {
		return nil, err
	}
	if f.loading {
		if err := f.finishLoad(ctx, t); err != nil {
			return nil, err
		}
	}
	next, reload, err := f.checkRotation(ctx, t)
	if reload {
		return f.fullLoad(ctx, events)
	}
	return next, err
}

// startNotifier watches the lease file's directory unless disabled. On
// failure the follower polls, which works everywhere.
func (f *Follower) startNotifier() (<-chan struct{}, func()) {
	if f.cfg.DisableInotify {
		return nil, func() {}
	}
	n, err := newNotifier(filepath.Dir(f.cfg.Path), filepath.Base(f.cfg.Path))
	if err != nil {
		f.log.Warn("inotify unavailable, polling the lease file", "error", err, "interval", f.cfg.PollInterval)
		return nil, func() {}
	}
	return n.events, func() { n.close() }
}

// wait blocks until a file event, the poll interval, or the end of ctx, and
// reports whether to go on.
func (f *Follower) wait(ctx context.Context, events <-chan struct{}) bool {
	timer := time.NewTimer(f.cfg.PollInterval)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-events:
	case <-timer.C:
	}
	return true
}

// sleep waits for d or the end of ctx, and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// start opens the file to read first: the file and offset of a stored
// position when they still match, or else the first file of a full load.
func (f *Follower) start(ctx context.Context, events <-chan struct{}) (*tail, error) {
	raw, err := f.st.Meta(f.cfg.PositionKey)
	if err != nil {
		return nil, fmt.Errorf("ingest: reading follower position %q from the store failed: %w", f.cfg.PositionKey, err)
	}
	if raw != nil {
		var pos position
		switch err := pos.decode(raw); {
		case err != nil:
			f.log.Warn("stored position unreadable, loading the lease files from the start", "error", err)
		case !pos.complete:
			f.log.Info("previous full load did not finish, loading the lease files again")
		default:
			if t := f.resume(pos); t != nil {
				f.committed = pos
				args := []any{"offset", pos.offset, "line", pos.line}
				if t.name != f.cfg.Path {
					args = append(args, "path", t.name) // the rotated .1 file
				}
				f.log.Info("continuing from stored position", args...)
				return t, nil
			}
			f.log.Info("stored position no longer matches the lease files, loading them again", "inode", pos.inode, "offset", pos.offset)
		}
	}
	return f.fullLoad(ctx, events)
}
