package mirror

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/requestor"
)

// DefaultTombstoneRetention is how long an ended binding stays in the
// database when Config.TombstoneRetention is 0.
const DefaultTombstoneRetention = 24 * time.Hour

// Config describes a mirror. Requestor.Server must be set; the other zero
// values work.
type Config struct {
	// Dir is the Pebble directory; it is created if missing.
	Dir string

	// Requestor is the server and the requestor's identity and timers. An
	// empty Server means the one the database was filled from.
	Requestor requestor.Config

	// Filter, RelayData and Recovery are passed to the Watcher (see
	// requestor.WatchRequest): Filter limits the mirror to the bindings one
	// query matches, and Recovery are the bulk queries that fill an empty
	// database and recover after DataMissing (default: the Filter). Without
	// either, an empty database is filled by catch-up from start time 0,
	// and Run returns a *DataMissingError when the server sends
	// DataMissing, as a server with a trimmed history does.
	Filter    *requestor.Query
	RelayData bool
	Recovery  []requestor.Query

	// WindowedRecovery runs the Recovery queries after DataMissing for the
	// missing interval only, as RFC 7653 section 8.4.1 describes. By default
	// they also run without start and end time. Once that full bulk has
	// succeeded, the mirror ends every active record that neither it nor the
	// active connection reported since it started. A binding the server
	// removed while the mirror was away is in no reply, so only this finds
	// it. The full bulk must then cover every binding the mirror follows.
	// Records whose relay data puts them outside every Recovery query are
	// left alone, and all others are in scope (see Swept).
	WindowedRecovery bool

	// MaxAttempts ends Run after this many connections; 0 means no limit.
	MaxAttempts int

	// Sync makes every write wait for the disk. Without it a crash can
	// lose the last writes, which the next run fetches again as catch-up.
	Sync bool

	// TombstoneRetention is how long an ended or expired binding is kept
	// before Run prunes it. Default DefaultTombstoneRetention.
	TombstoneRetention time.Duration
}

// Validate reports a Config that cannot work.
func (c *Config) Validate() error {
	if c.Dir == "" {
		return fmt.Errorf("%w: no database directory given", requestor.ErrInvalidQuery)
	}
	if c.TombstoneRetention < 0 {
		return fmt.Errorf("%w: TombstoneRetention is negative (%v)", requestor.ErrInvalidQuery, c.TombstoneRetention)
	}
	if c.Requestor.Server == "" {
		return nil // Open takes the server from the database
	}
	return c.Requestor.Validate()
}

// Option sets a hook on a Mirror.
type Option func(*Mirror)

// WithLogger sends Pebble's background errors to l. Without it they are
// dropped; the operations they affect still fail.
func WithLogger(l *slog.Logger) Option { return func(m *Mirror) { m.logger = l } }

// Mirror is a local copy of a server's bindings. Run keeps it current;
// Get, Scan, Stats and Checkpoint may be called at any time from any
// goroutine.
type Mirror struct {
	cfg    Config
	server string
	db     *pebble.DB
	logger *slog.Logger
	write  *pebble.WriteOptions
}

// Open opens or creates the mirror database in cfg.Dir. It fails with
// ErrOtherServer when the database follows another server.
func Open(cfg Config, opts ...Option) (*Mirror, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.TombstoneRetention == 0 {
		cfg.TombstoneRetention = DefaultTombstoneRetention
	}
	m := &Mirror{cfg: cfg, write: pebble.NoSync}
	if cfg.Requestor.Server != "" {
		server, err := requestor.ServerAddress(cfg.Requestor.Server)
		if err != nil {
			return nil, err
		}
		m.server = server
	}
	if cfg.Sync {
		m.write = pebble.Sync
	}
	for _, o := range opts {
		o(m)
	}
	var err error
	m.db, err = pebble.Open(cfg.Dir, &pebble.Options{
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{m.logger},
	})
	if err != nil {
		return nil, fmt.Errorf("mirror: open %s: %w", cfg.Dir, err)
	}
	if err := m.init(); err != nil {
		return nil, errors.Join(err, m.db.Close())
	}
	return m, nil
}

// init stamps a new database with the format and the server, or checks
// them in an existing one.
func (m *Mirror) init() error {
	format, err := m.meta(keyFormat)
	if err != nil {
		return err
	}
	if format == nil && m.server == "" {
		return fmt.Errorf("%w: %s is a new database and no server was given", requestor.ErrInvalidQuery, m.cfg.Dir)
	}
	if format == nil {
		b := m.db.NewBatch()
		defer b.Close()
		b.Set(keyFormat, []byte{formatVersion}, nil)
		b.Set(keyServer, []byte(m.server), nil)
		return b.Commit(pebble.Sync)
	}
	if len(format) != 1 || format[0] != formatVersion {
		return fmt.Errorf("%w: %s has format % x, this version reads %d", ErrFormat, m.cfg.Dir, format, formatVersion)
	}
	server, err := m.meta(keyServer)
	if err != nil {
		return err
	}
	if m.server == "" {
		m.server = string(server)
		m.cfg.Requestor.Server = m.server
		return m.cfg.Requestor.Validate()
	}
	if string(server) != m.server {
		return fmt.Errorf("%w: %s was filled from %s, not %s; use another directory for another server", ErrOtherServer, m.cfg.Dir, server, m.server)
	}
	return nil
}

// Server returns the host:port of the server the mirror follows.
func (m *Mirror) Server() string { return m.server }

// Close closes the database. Run must have returned.
func (m *Mirror) Close() error { return m.db.Close() }

// meta returns a copy of a metadata value, or nil when it is absent.
func (m *Mirror) meta(key []byte) ([]byte, error) {
	v, closer, err := m.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("mirror: read %s: %w", key, err)
	}
	defer closer.Close()
	return clone(v), nil
}

// Checkpoint returns the stored resume point.
func (m *Mirror) Checkpoint() (requestor.Checkpoint, error) {
	v, err := m.meta(keyCheckpoint)
	if err != nil || v == nil {
		return requestor.Checkpoint{}, err
	}
	return decodeCheckpoint(v)
}

// Get returns the record of one binding, and false when there is none.
func (m *Mirror) Get(k BindingKey) (Record, bool, error) {
	v, closer, err := m.db.Get(k.appendKey(nil))
	if errors.Is(err, pebble.ErrNotFound) {
		return Record{}, false, nil
	}
	if err != nil {
		return Record{}, false, fmt.Errorf("mirror: read %v: %w", k.Prefix, err)
	}
	defer closer.Close()
	r := Record{BindingKey: k}
	if err := r.decodeValue(v); err != nil {
		return Record{}, false, fmt.Errorf("%v: %w", k.Prefix, err)
	}
	return r, true, nil
}

// Scan calls fn for every record in key order (addresses, then prefixes)
// until fn returns an error, which Scan returns. Tombstones are included;
// check Record.Expired.
func (m *Mirror) Scan(fn func(*Record) error) error {
	it, err := m.db.NewIter(&pebble.IterOptions{LowerBound: bindingLower, UpperBound: bindingUpper})
	if err != nil {
		return fmt.Errorf("mirror: scan: %w", err)
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		k, err := parseBindingKey(it.Key())
		if err != nil {
			return err
		}
		r := Record{BindingKey: k}
		v, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("mirror: scan %v: %w", k.Prefix, err)
		}
		if err := r.decodeValue(v); err != nil {
			return fmt.Errorf("%v: %w", k.Prefix, err)
		}
		if err := fn(&r); err != nil {
			return err
		}
	}
	return it.Error()
}

// Stats counts the records.
type Stats struct {
	Active  int // valid lifetime not run out
	Expired int // ended, or valid lifetime run out
}

// Stats counts the records as of now.
func (m *Mirror) Stats() (Stats, error) {
	var s Stats
	now := time.Now()
	err := m.Scan(func(r *Record) error {
		if r.Expired(now) {
			s.Expired++
		} else {
			s.Active++
		}
		return nil
	})
	return s, err
}

// Prune deletes the records that ended, or whose valid lifetime ran out,
// before cutoff, and returns how many it deleted.
func (m *Mirror) Prune(cutoff time.Time) (int, error) {
	b := m.db.NewBatch()
	defer b.Close()
	n := 0
	err := m.Scan(func(r *Record) error {
		ended := r.State == requestor.StateEnded && r.Received.Before(cutoff)
		ranOut := !r.ValidUntil.IsZero() && r.ValidUntil.Before(cutoff)
		if ended || ranOut {
			n++
			return b.Delete(r.appendKey(nil), nil)
		}
		return nil
	})
	if err != nil || n == 0 {
		return 0, err
	}
	return n, b.Commit(m.write)
}

// Run follows the server until ctx ends or the Watcher stops (see
// requestor.Watcher.Run), storing every binding with the checkpoint after
// it. fn, when not nil, is called with every event after it is stored,
// and with a Swept event after each full recovery. An error from fn ends
// Run. A DataMissing that no bulk query can recover ends Run with a
// *DataMissingError. Run prunes tombstones at start and every
// TombstoneRetention/24.
func (m *Mirror) Run(ctx context.Context, fn func(requestor.Event) error) error {
	resume, err := m.Checkpoint()
	if err != nil {
		return err
	}
	req := requestor.WatchRequest{
		Filter:       m.cfg.Filter,
		RelayData:    m.cfg.RelayData,
		Resume:       resume,
		Recovery:     m.cfg.Recovery,
		FullRecovery: !m.cfg.WindowedRecovery,
		MaxAttempts:  m.cfg.MaxAttempts,
		Initial:      requestor.InitialCatchUp,
	}
	if len(m.cfg.Recovery) > 0 || m.cfg.Filter != nil {
		req.Initial = requestor.InitialBulk
	}
	w, err := requestor.NewWatcher(m.cfg.Requestor, req)
	if err != nil {
		return err
	}
	// Delete the seen markers of a run that stopped during a full
	// recovery, because that recovery starts again from the checkpoint.
	if err := m.clearSeen(); err != nil {
		return err
	}

	pruneEvery := m.cfg.TombstoneRetention / 24
	nextPrune := time.Now()
	stored := resume
	var key, value []byte
	// full is true from the RecoveryStarted of a full bulk to its
	// RecoveryDone. first is the earliest base-time of the current bulk,
	// the AsOf of its records (see Record.AsOf), and bulkStart the local
	// time it started.
	var full bool
	var first uint32
	var hasFirst bool
	var bulkStart time.Time
	return w.Run(ctx, func(ev requestor.Event) error {
		if e, ok := ev.(requestor.DataMissing); ok && !e.Recovery {
			// Stop before the Watcher's checkpoint, which has moved past
			// the missing interval, is stored.
			if fn != nil {
				if err := fn(ev); err != nil {
					return err
				}
			}
			return &DataMissingError{StartTime: e.StartTime, BaseTime: e.BaseTime}
		}

		// Prune between events, on the Watcher's goroutine, so that no
		// write races with it.
		if now := time.Now(); !now.Before(nextPrune) {
			if _, err := m.Prune(now.Add(-m.cfg.TombstoneRetention)); err != nil {
				return err
			}
			nextPrune = now.Add(pruneEvery)
		}
		b := m.db.NewBatch()
		defer b.Close()
		var swept *Swept
		switch e := ev.(type) {
		case requestor.RecoveryStarted:
			hasFirst = false
			bulkStart = time.Now()
			if e.Full {
				if err := m.clearSeen(); err != nil {
					return err
				}
				full = true
			}
		case requestor.RecoveryDone:
			if e.Full && full {
				full = false
				if e.Err == nil {
					n, err := m.sweep(b, m.scope(), e.Source, first, hasFirst, time.Now())
					if err != nil {
						return err
					}
					swept = &Swept{Source: e.Source, Ended: n}
					b.DeleteRange(seenLower, seenUpper, nil)
				}
			}
		}
		if info := ev.Info(); info.HasBaseTime && !hasFirst && fromBulk(info.Source) {
			first, hasFirst = info.BaseTime, true
		}
		var err error
		if key, value, err = m.apply(b, ev, bulkOrder{asOf: first, start: bulkStart}, full, w.Checkpoint(), &stored, key[:0], value[:0]); err != nil {
			return err
		}
		if fn == nil {
			return nil
		}
		if err := fn(ev); err != nil || swept == nil {
			return err
		}
		return fn(*swept)
	})
}

// apply adds to b a binding event, if it is newer than the stored record,
// its seen marker when mark is set, and the checkpoint, if it moved, and
// commits b. bulk orders a binding from the current bulk against the
// stored record. key and value are scratch buffers, returned for reuse.
func (m *Mirror) apply(b *pebble.Batch, ev requestor.Event, bulk bulkOrder, mark bool, cp requestor.Checkpoint, stored *requestor.Checkpoint, key, value []byte) ([]byte, []byte, error) {
	if bind, ok := ev.(requestor.Binding); ok {
		rec := recordOf(&bind)
		if fromBulk(bind.Source) {
			rec.AsOf = bulk.asOf
		}
		old, found, err := m.Get(rec.BindingKey)
		if err != nil {
			return key, value, err
		}
		if !found || rec.supersedes(&old, bulk.start) {
			key = rec.appendKey(key)
			value = rec.appendValue(value)
			b.Set(key, value, nil)
		}
		if mark {
			key = rec.appendSeenKey(key[:0])
			b.Set(key, nil, nil)
		}
	}
	if cp != *stored {
		b.Set(keyCheckpoint, encodeCheckpoint(cp), nil)
	}
	if b.Empty() {
		return key, value, nil
	}
	if err := b.Commit(m.write); err != nil {
		return key, value, fmt.Errorf("mirror: write: %w", err)
	}
	*stored = cp
	return key, value, nil
}

// clearSeen deletes every seen marker.
func (m *Mirror) clearSeen() error {
	if err := m.db.DeleteRange(seenLower, seenUpper, m.write); err != nil {
		return fmt.Errorf("mirror: deleting the seen markers failed: %w", err)
	}
	return nil
}

// Swept is the event Run passes after a full recovery bulk succeeded and
// the mirror ended the records that the server no longer has. Those are the
// active records in scope that neither the bulk nor the active connection
// reported since the bulk started. They are stored as ended, with the
// bulk's Source and its earliest base-time.
type Swept struct {
	Source requestor.Source // SourceRecovery or SourceInitial
	Ended  int
}

// Info returns the zero MessageInfo.
func (Swept) Info() requestor.MessageInfo { return requestor.MessageInfo{} }

// scope returns the queries a full recovery runs: Config.Recovery, or the
// Filter.
func (m *Mirror) scope() []requestor.Query {
	if len(m.cfg.Recovery) > 0 {
		return m.cfg.Recovery
	}
	if m.cfg.Filter != nil {
		return []requestor.Query{*m.cfg.Filter}
	}
	return nil
}

// sweep adds to b an ended record for every active record in scope that
// has no seen marker, and returns how many. source is the bulk's source
// and base its earliest base-time: a record ended with a later one than
// its own takes it, so that no older message can revive it (see
// Record.supersedes).
func (m *Mirror) sweep(b *pebble.Batch, scope []requestor.Query, source requestor.Source, base uint32, hasBase bool, now time.Time) (int, error) {
	seen, err := m.db.NewIter(&pebble.IterOptions{LowerBound: seenLower, UpperBound: seenUpper})
	if err != nil {
		return 0, fmt.Errorf("mirror: reading the seen markers for the sweep failed: %w", err)
	}
	defer seen.Close()
	var key, value []byte
	n := 0
	err = m.Scan(func(r *Record) error {
		if r.State != requestor.StateActive || !inScope(r, scope) {
			return nil
		}
		key = r.appendSeenKey(key[:0])
		if seen.SeekGE(key) && bytes.Equal(seen.Key(), key) {
			return nil
		}
		r.end(source, base, hasBase, now)
		key = r.appendKey(key[:0])
		value = r.appendValue(value[:0])
		n++
		return b.Set(key, value, nil)
	})
	if err == nil {
		err = seen.Error()
	}
	return n, err
}

// inScope reports whether some query may return r: every query, unless
// what r records of the binding shows that the query cannot match it.
func inScope(r *Record, queries []requestor.Query) bool {
	for i := range queries {
		if mayMatch(r, &queries[i]) {
			return true
		}
	}
	return false
}

// mayMatch reports whether q may return r. The relay fields are known only
// when the record has relay data; without it a relay-keyed query may match.
func mayMatch(r *Record, q *requestor.Query) bool {
	relayKnown := len(r.RelayMessage) > 0
	if relayKnown && q.Link.IsValid() && !q.Link.IsUnspecified() && r.LinkAddress != q.Link {
		return false
	}
	switch q.Type {
	case codec.QueryByLinkAddress:
		// The link-address is the key here, :: included: a server that
		// accepts :: matches it literally (alqd returns the bindings
		// stored without a link).
		return !relayKnown || r.LinkAddress == q.Link
	case codec.QueryByAddress:
		return r.Prefix.Contains(q.Address)
	case codec.QueryByClientID:
		return bytes.Equal(r.ClientID, q.ClientID)
	case codec.QueryByRelayID:
		return !relayKnown || bytes.Equal(r.RelayID, q.RelayID)
	case codec.QueryByRemoteID:
		if !relayKnown {
			return true
		}
		id, ok := r.RemoteIDValue()
		return ok && id.EnterpriseNumber == q.RemoteID.EnterpriseNumber && bytes.Equal(id.ID, q.RemoteID.ID)
	}
	return true
}

// pebbleLogger passes Pebble's errors to a slog.Logger, if there is one.
type pebbleLogger struct{ logger *slog.Logger }

func (l pebbleLogger) Infof(string, ...any) {}

func (l pebbleLogger) Errorf(format string, args ...any) {
	if l.logger != nil {
		l.logger.Error("pebble error", "text", fmt.Sprintf(format, args...))
	}
}

// Fatalf is called by Pebble on a broken internal invariant; Pebble expects
// it not to return.
func (l pebbleLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("mirror: pebble: "+format, args...))
}
