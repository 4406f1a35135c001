package store

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
)

// Store is the server's lease state database: the current binding of every
// IA_NA address, IA_TA address and IA_PD prefix, the secondary indexes for
// the leasequery query types, and the change history that Active Leasequery
// catch-up reads (RFC 7653 section 8.4).
//
// Invariants (Verify checks all of them):
//
//  1. Every binding has exactly one history entry, h/<Seq><bkey>, and one
//     entry in each secondary index that applies to it; every index entry
//     points at a binding whose fields produce that entry. A change moves
//     the entries in the same batch as the binding.
//  2. Seq grows by one per committed change. ChangeTime never decreases
//     along Seq, because the writer clamps the clock to the last ChangeTime
//     and the floor, so history order is time order.
//  3. The time index maps each Unix second that saw a change to the first
//     Seq of that second. Changed(start) seeks it to find where the history
//     scan begins: one point read, however much history there is.
//  4. Readers see only synced changes. Pebble makes a batch readable before
//     its WAL sync returns, so readers never use the live database: they
//     use the view, a Pebble snapshot that the writer takes after each
//     synced commit. A requestor therefore never receives a change that a
//     crash could take back.
//  5. Trim removes released and expired bindings whose last change is older
//     than Retention, and records a floor (time, seq) in the same batch:
//     history scans from at or above the floor are complete.
//
// Writes go through one writer goroutine that gathers concurrent Apply
// calls into group commits. The rejected alternative, one synced Pebble
// batch per Apply call, would rely on Pebble's commit pipeline to share
// syncs. It would also need a lock around reading the old state of a
// binding, which index maintenance needs.
//
// All methods are safe for concurrent use.
type Store struct {
	opts Options
	db   *pebble.DB
	duid []byte

	requests    chan *request
	quit        chan struct{}
	writerDone  chan struct{}
	trimmerDone chan struct{}
	closeOnce   sync.Once
	closeErr    error

	failMu  sync.Mutex
	failure error // first error that left the database state in doubt

	// mu is held by the writer for each group commit and by Trim for each
	// chunk. It guards the fields below, which mirror the stored ones.
	mu          sync.Mutex
	lastSeq     uint64
	lastTime    int64 // ChangeTime of change lastSeq, Unix ns
	lastTimeSec int64 // second of the newest time-index entry, math.MinInt64 when none
	floorTime   int64 // Unix ns
	floorSeq    uint64
	pdCounts    [129]uint64
	group       groupScratch
	closed      bool // set by Close before the database closes

	trimMu         sync.Mutex // serializes Trim calls
	trimChunkLimit int        // history entries per trim batch; tests lower it

	published atomic.Uint64 // lastSeq of the current view
	floor     atomic.Pointer[floorMark]
	// pdLengths has bit n set when an IA_PD binding of length n existed at
	// any time since Open: a superset of the lengths in every view, which is
	// all LookupAddress needs.
	pdLengths [3]atomic.Uint64

	viewMu sync.Mutex
	view   *view // nil after Close

	subscribeMu sync.Mutex
	subscribers atomic.Pointer[[]func([]Binding)]
}

// floorMark is the history floor: Changed(start) is complete for start at or
// after Time, ChangedSince(after) for after at or above Seq.
type floorMark struct {
	Time time.Time
	Seq  uint64
}

// view is a Pebble snapshot of the state after one synced commit.
type view struct {
	snap    *pebble.Snapshot
	lastSeq uint64
	refs    int // guarded by Store.viewMu; the Store holds one while current
}

// Open opens or creates the store in dir. The caller must Close it.
func Open(dir string, opts Options) (*Store, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.setDefaults()

	cache := pebble.NewCache(opts.BlockCacheSize)
	defer cache.Unref()
	db, err := pebble.Open(dir, pebbleOptions(&opts, cache))
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", dir, err)
	}

	s := &Store{
		opts:           opts,
		db:             db,
		requests:       make(chan *request, 1024),
		quit:           make(chan struct{}),
		writerDone:     make(chan struct{}),
		trimmerDone:    make(chan struct{}),
		lastTimeSec:    math.MinInt64,
		trimChunkLimit: defaultTrimChunk,
	}
	if err := s.load(); err != nil {
		return nil, errors.Join(err, db.Close())
	}
	s.publishViewLocked()

	go s.writer()
	if opts.TrimInterval > 0 {
		go s.trimmer()
	} else {
		close(s.trimmerDone)
	}
	return s, nil
}

// pebbleOptions returns the Pebble options of a store with opts, which
// has its defaults set. Restore writes with them too, so that its sstables
// match those of a store that grew by Apply.
func pebbleOptions(opts *Options, cache *pebble.Cache) *pebble.Options {
	popts := &pebble.Options{
		Cache:              cache,
		FormatMajorVersion: pebble.FormatNewest,
		MemTableSize:       opts.MemTableSize,
		MaxOpenFiles:       opts.MaxOpenFiles,
		Logger:             pebbleLogger{opts.Logger},
	}
	// Each new binding costs a point read of an absent key, and a bloom
	// filter rules out most of those without reading a data block.
	for i := range popts.Levels {
		popts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	return popts
}

// load initializes a new store or reads the internal records of an existing
// one.
func (s *Store) load() error {
	layout, err := s.getLatest(internalKey(internalLayout))
	if err != nil {
		return err
	}
	if layout == nil {
		return s.initialize()
	}
	if len(layout) != 4 || (binary.BigEndian.Uint32(layout) != layoutVersion && binary.BigEndian.Uint32(layout) != layoutVersion1) {
		return fmt.Errorf("%w: layout version record %x, want %d", ErrIncompatible, layout, layoutVersion)
	}
	if binary.BigEndian.Uint32(layout) == layoutVersion1 {
		record := binary.BigEndian.AppendUint32(nil, layoutVersion)
		if err := s.db.Set(internalKey(internalLayout), record, pebble.Sync); err != nil {
			return fmt.Errorf("store: upgrading the layout version record to %d: %w", layoutVersion, err)
		}
	}

	// Server DUID.
	if s.duid, err = s.getLatest(internalKey(internalDUID)); err != nil {
		return err
	}
	if len(s.duid) < 3 {
		return corrupt(internalKey(internalDUID), "server DUID is %d bytes", len(s.duid))
	}
	if s.opts.ServerDUID != nil && !bytes.Equal(s.opts.ServerDUID, s.duid) {
		return fmt.Errorf("%w: stored server DUID %x differs from the configured %x; remove ServerDUID from the options or use a new directory", ErrIncompatible, s.duid, s.opts.ServerDUID)
	}

	// Sequence counter and floor.
	rec, err := s.getLatest(internalKey(internalSeq))
	if err != nil {
		return err
	}
	if len(rec) != 16 {
		return corrupt(internalKey(internalSeq), "sequence record is %d bytes, want 16", len(rec))
	}
	s.lastSeq = binary.BigEndian.Uint64(rec)
	s.lastTime = int64(binary.BigEndian.Uint64(rec[8:]))
	if s.lastSeq > 0 {
		s.lastTimeSec = floorDiv(s.lastTime, int64(time.Second))
	}
	if rec, err = s.getLatest(internalKey(internalFloor)); err != nil {
		return err
	}
	if len(rec) != 16 {
		return corrupt(internalKey(internalFloor), "floor record is %d bytes, want 16", len(rec))
	}
	s.floorTime = int64(binary.BigEndian.Uint64(rec))
	s.floorSeq = binary.BigEndian.Uint64(rec[8:])
	s.storeFloor()

	if err := s.loadPDCounts(); err != nil {
		return err
	}
	return s.checkHistoryEnd()
}

// initialize writes the internal records of a new store. It refuses a
// non-empty database, which is some other program's data.
func (s *Store) initialize() error {
	it, err := s.db.NewIter(nil)
	if err != nil {
		return err
	}
	nonEmpty := it.First()
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return err
	}
	if nonEmpty {
		return fmt.Errorf("%w: the database has keys but no alqd layout record", ErrIncompatible)
	}

	s.duid = s.opts.ServerDUID
	if s.duid == nil {
		s.duid = newDUIDUUID()
	}
	b := s.db.NewBatch()
	defer b.Close()
	_ = b.Set(internalKey(internalLayout), binary.BigEndian.AppendUint32(nil, layoutVersion), nil)
	_ = b.Set(internalKey(internalDUID), s.duid, nil)
	_ = b.Set(internalKey(internalSeq), make([]byte, 16), nil)
	s.floorTime = math.MinInt64
	_ = b.Set(internalKey(internalFloor), s.floorRecord(s.floorTime, 0), nil)
	s.storeFloor()
	return b.Commit(pebble.Sync)
}

// newDUIDUUID returns a DUID-UUID (DUID type 4, RFC 6355) holding a random
// version 4 UUID.
func newDUIDUUID() []byte {
	duid := make([]byte, 18)
	duid[1] = 4 // DUID type 4: DUID-UUID
	_, _ = rand.Read(duid[2:])
	duid[8] = duid[8]&0x0f | 0x40 // version 4
	duid[10] = duid[10]&0x3f | 0x80
	return duid
}

func (s *Store) loadPDCounts() error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixPDLength}, UpperBound: []byte{prefixPDLength + 1}})
	if err != nil {
		return err
	}
	for valid := it.First(); valid; valid = it.Next() {
		key := it.Key()
		value, err := it.ValueAndErr()
		if err != nil {
			break
		}
		if len(key) != pdLengthKeyLen || key[1] > 128 || len(value) != 8 {
			return errors.Join(corrupt(key, "IA_PD length count record has a %d-byte key and %d-byte value", len(key), len(value)), it.Close())
		}
		s.pdCounts[key[1]] = binary.BigEndian.Uint64(value)
		if s.pdCounts[key[1]] > 0 {
			s.notePDLength(int(key[1]))
		}
	}
	return errors.Join(it.Error(), it.Close())
}

// checkHistoryEnd fails when the history holds a sequence number beyond the
// stored counter, which would make the writer reuse sequence numbers.
func (s *Store) checkHistoryEnd() error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: historySeqKey(s.lastSeq + 1), UpperBound: []byte{prefixHistory + 1}})
	if err != nil {
		return err
	}
	var problem error
	if s.lastSeq < math.MaxUint64 && it.First() {
		problem = corrupt(it.Key(), "history entry is beyond the stored sequence counter %d", s.lastSeq)
	}
	return errors.Join(problem, it.Error(), it.Close())
}

// getLatest reads key from the live database (writer side). It returns nil
// when the key is absent.
func (s *Store) getLatest(key []byte) ([]byte, error) { return getCopy(s.db, key) }

// readLatest reads key from the live database into *dst, reusing its
// capacity, and reports whether the key exists.
func (s *Store) readLatest(key []byte, dst *[]byte) (bool, error) {
	value, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("store: read key %x: %w", key, err)
	}
	*dst = append((*dst)[:0], value...)
	return true, closer.Close()
}

// getCopy reads key from r and returns a copy of its value, or nil when
// the key is absent.
func getCopy(r pebble.Reader, key []byte) ([]byte, error) {
	value, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: read key %x: %w", key, err)
	}
	out := append([]byte{}, value...)
	return out, closer.Close()
}

func (s *Store) floorRecord(t int64, seq uint64) []byte {
	rec := binary.BigEndian.AppendUint64(nil, uint64(t))
	return binary.BigEndian.AppendUint64(rec, seq)
}

// storeFloor publishes the floor fields for Floor. The caller holds mu or
// owns the Store exclusively.
func (s *Store) storeFloor() {
	mark := &floorMark{Seq: s.floorSeq}
	if s.floorTime != math.MinInt64 {
		mark.Time = time.Unix(0, s.floorTime).UTC()
	}
	s.floor.Store(mark)
}

func (s *Store) notePDLength(bits int) {
	s.pdLengths[bits/64].Or(1 << (bits % 64))
}

func (s *Store) hasPDLength(bits int) bool {
	return s.pdLengths[bits/64].Load()&(1<<(bits%64)) != 0
}

// publishViewLocked makes the current database state visible to readers.
// The caller holds mu (or owns the Store exclusively) and has synced every
// commit.
func (s *Store) publishViewLocked() {
	v := &view{snap: s.db.NewSnapshot(), lastSeq: s.lastSeq, refs: 1}
	s.viewMu.Lock()
	old := s.view
	s.view = v
	s.viewMu.Unlock()
	s.published.Store(s.lastSeq)
	if old != nil {
		s.releaseView(old)
	}
}

func (s *Store) acquireView() (*view, error) {
	s.viewMu.Lock()
	defer s.viewMu.Unlock()
	if s.view == nil {
		return nil, ErrClosed
	}
	s.view.refs++
	return s.view, nil
}

func (s *Store) releaseView(v *view) {
	s.viewMu.Lock()
	v.refs--
	last := v.refs == 0
	s.viewMu.Unlock()
	if last {
		_ = v.snap.Close() // always nil in Pebble v2.1.7
	}
}

// fail records err as the reason every later write fails, unless an
// earlier failure is already recorded.
func (s *Store) fail(err error) {
	s.failMu.Lock()
	defer s.failMu.Unlock()
	if s.failure == nil {
		s.failure = err
	}
}

func (s *Store) failed() error {
	s.failMu.Lock()
	defer s.failMu.Unlock()
	return s.failure
}

// Err returns the error that stopped the store from writing (a failed
// commit, corrupt data, a failed background trim), or nil while it works.
// Once set it never clears; the owner should close the store and stop.
func (s *Store) Err() error { return s.failed() }

// Close stops the writer and the background trim, and closes the database.
// Apply calls still waiting get ErrClosed. Every Iterator must be closed
// first: Pebble reports the leak as an error.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.quit)
		<-s.writerDone
		<-s.trimmerDone
		s.mu.Lock()
		s.closed = true // a Trim call of the owner stops at its next chunk
		s.mu.Unlock()

		s.viewMu.Lock()
		v := s.view
		s.view = nil
		s.viewMu.Unlock()
		if v != nil {
			s.releaseView(v)
		}
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("store: close: %w", err)
		}
	})
	return s.closeErr
}

// ServerDUID returns the server's DUID, generated when the store was
// created and stored with it. The caller must not modify the result.
func (s *Store) ServerDUID() []byte { return s.duid }

// MaxOpenFiles returns Options.MaxOpenFiles as Open applied it: the
// descriptors the store may hold open, which a server keeps out of
// RLIMIT_NOFILE.
func (s *Store) MaxOpenFiles() int { return s.opts.MaxOpenFiles }

// LastSeq returns the sequence number of the last synced change, 0 for a
// store that has never committed one.
func (s *Store) LastSeq() uint64 { return s.published.Load() }

// Floor returns the history floor: Changed(start, end) is complete when
// start is not before t, and ChangedSince(after) when after is at least
// seq. Below the floor, trimmed tombstones are missing, and the server
// replies to such a catch-up with DataMissing (RFC 7653 section 8.4). A store that never trimmed
// returns the zero time and 0.
func (s *Store) Floor() (t time.Time, seq uint64) {
	mark := s.floor.Load()
	return mark.Time, mark.Seq
}

// Meta returns the metadata value stored under key by Apply, or nil, nil
// when absent. The result is a copy.
func (s *Store) Meta(key string) ([]byte, error) {
	v, err := s.acquireView()
	if err != nil {
		return nil, err
	}
	defer s.releaseView(v)
	return getCopy(v.snap, metaKey(key))
}

// Get returns the binding with key k, with fresh byte slices the caller may
// keep. Released and expired bindings are returned until Trim removes them.
func (s *Store) Get(k Key) (Binding, bool, error) {
	if err := validateKey(k); err != nil {
		return Binding{}, false, fmt.Errorf("%w: %w", ErrInvalidQuery, err)
	}
	v, err := s.acquireView()
	if err != nil {
		return Binding{}, false, err
	}
	defer s.releaseView(v)
	bk := encodeBKey(k)
	return getBinding(v, &bk)
}

func getBinding(v *view, bk *bkey) (Binding, bool, error) {
	key := appendBindingKey(nil, bk)
	value, err := getCopy(v.snap, key)
	if err != nil || value == nil {
		return Binding{}, false, err
	}
	var b Binding
	if err := decodeBindingRecord(key, value, &b); err != nil {
		return Binding{}, false, err
	}
	return b, true, nil
}

// decodeBindingRecord decodes a binding-keyspace key and value into b.
func decodeBindingRecord(key, value []byte, b *Binding) error {
	if len(key) != bindingKeyLen || key[0] != prefixBinding {
		return corrupt(key, "binding key is %d bytes, want %d", len(key), bindingKeyLen)
	}
	k, err := decodeBKey(key[1:])
	if err != nil {
		return corrupt(key, "%w", err)
	}
	if err := decodeValue(value, b); err != nil {
		return corrupt(key, "%w", err)
	}
	b.Key = k
	return nil
}

// LookupAddress returns the binding that holds addr: the IA_NA or IA_TA
// binding of that exact address, else the IA_PD binding whose prefix
// contains it. When several match (a released /56 and an active /64 inside
// it), an active or declined binding wins over a released or expired one,
// then IA_NA over IA_TA over IA_PD, then the longer prefix.
func (s *Store) LookupAddress(addr netip.Addr) (Binding, bool, error) {
	if !addr.Is6() || addr.Zone() != "" {
		return Binding{}, false, fmt.Errorf("%w: address %s is not an IPv6 address without zone", ErrInvalidQuery, addr)
	}
	v, err := s.acquireView()
	if err != nil {
		return Binding{}, false, err
	}
	defer s.releaseView(v)

	var fallback Binding // the first released or expired match
	haveFallback := false
	// check returns the binding with key k when it exists and is not ended.
	check := func(k Key) (Binding, bool, error) {
		bk := encodeBKey(k)
		b, ok, err := getBinding(v, &bk)
		if err != nil || !ok {
			return Binding{}, false, err
		}
		if !b.State.Ended() {
			return b, true, nil
		}
		if !haveFallback {
			fallback, haveFallback = b, true
		}
		return Binding{}, false, nil
	}

	// Exact addresses first, then prefixes from the longest.
	for _, t := range [...]BindingType{TypeNA, TypeTA} {
		if b, ok, err := check(Key{Type: t, Prefix: netip.PrefixFrom(addr, 128)}); ok || err != nil {
			return b, ok, err
		}
	}
	for bits := 128; bits > 0; bits-- {
		if !s.hasPDLength(bits) {
			continue
		}
		prefix, _ := addr.Prefix(bits)
		if b, ok, err := check(Key{Type: TypePD, Prefix: prefix}); ok || err != nil {
			return b, ok, err
		}
	}
	return fallback, haveFallback, nil
}

func uint64Bytes(v uint64) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 8), v) }

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
