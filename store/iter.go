package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Iterator streams bindings from one view of the store: the state after one
// synced commit, unaffected by later changes. It holds one binding at a
// time, so its memory does not grow with the result. An Iterator is used by
// one goroutine at a time and may run while Apply and Trim run. It holds a
// Pebble snapshot until Close, which must be called.
//
// Released and expired bindings (tombstones kept for catch-up) are yielded
// like any other; bulk queries skip them by State.
type Iterator interface {
	// Next advances to the next binding and reports whether there is one.
	// It returns false at the end and on an error (see Err).
	Next() bool
	// Binding returns the current binding. Next overwrites the struct but
	// never its byte slices, so a copy of the struct (*it.Binding()) may be
	// kept.
	Binding() *Binding
	// Err returns the error that ended the iteration, or nil at a normal
	// end. Corrupt data is a *CorruptError naming the key.
	Err() error
	// Close releases the snapshot and returns Err, or the error of closing.
	// Calling it again returns the same error.
	Close() error
}

// scanMode selects the keyspace that drives a scan and how a binding is found.
type scanMode uint8

const (
	scanBindings scanMode = iota // the binding keyspace itself
	scanHistory                  // history entries in seq order
	scanIndex                    // one secondary index
)

// scanIter implements Iterator over one keyspace of a view.
type scanIter struct {
	store  *Store
	view   *view
	keys   *pebble.Iterator // the keyspace that drives the scan
	lookup *pebble.Iterator // the binding keyspace, for history and index scans
	mode   scanMode
	kind   indexKind

	// History scans yield ChangeTime in [start, end] (Unix ns).
	start, end int64

	started  bool
	finished bool
	closed   bool
	cur      Binding
	keyBuf   []byte
	err      error
}

// errIter is an Iterator that yields nothing and reports err.
type errIter struct{ err error }

func (it errIter) Next() bool        { return false }
func (it errIter) Binding() *Binding { return nil }
func (it errIter) Err() error        { return it.err }
func (it errIter) Close() error      { return it.err }

func (it *scanIter) Binding() *Binding { return &it.cur }
func (it *scanIter) Err() error        { return it.err }

func (it *scanIter) Next() bool {
	if it.err != nil || it.finished || it.closed {
		return false
	}
	for {
		var valid bool
		if it.started {
			valid = it.keys.Next()
		} else {
			valid = it.keys.First()
			it.started = true
		}
		if !valid {
			if err := it.keys.Error(); err != nil {
				it.err = fmt.Errorf("store: scan: %w", err)
			}
			it.finished = true
			return false
		}
		ok, err := it.load()
		if err != nil {
			it.err = err
			return false
		}
		if ok {
			return true
		}
		if it.finished {
			return false
		}
	}
}

// load reads the binding at the current key into cur. It returns false for
// a history entry outside the time range. hot path: once per scanned key.
func (it *scanIter) load() (bool, error) {
	key := it.keys.Key()
	switch it.mode {
	case scanBindings:
		value, err := it.keys.ValueAndErr()
		if err != nil {
			return false, fmt.Errorf("store: read key %x: %w", key, err)
		}
		return true, decodeBindingRecord(key, value, &it.cur)

	case scanHistory:
		seq, bk, err := decodeHistoryKey(key)
		if err != nil {
			return false, corrupt(key, "%w", err)
		}
		if err := it.lookupBinding(key, &bk); err != nil {
			return false, err
		}
		if it.cur.Seq != seq {
			return false, corrupt(key, "history entry has seq %d but its binding has seq %d", seq, it.cur.Seq)
		}
		changed := it.cur.ChangeTime.UnixNano()
		if changed > it.end {
			it.finished = true // history is in time order: nothing later qualifies
			return false, nil
		}
		return changed >= it.start, nil

	default:
		bk, err := indexKeyBKey(it.kind, key)
		if err != nil {
			return false, corrupt(key, "%w", err)
		}
		if err := it.lookupBinding(key, &bk); err != nil {
			return false, err
		}
		it.keyBuf, _ = appendIndexKey(it.keyBuf[:0], it.kind, &bk, &it.cur)
		if !bytes.Equal(it.keyBuf, key) {
			return false, corrupt(key, "%s index entry does not match its binding %s", it.kind, it.cur.Prefix)
		}
		return true, nil
	}
}

// lookupBinding reads the binding bk into cur; from is the entry that
// points at it, named in the error when the binding is missing.
func (it *scanIter) lookupBinding(from []byte, bk *bkey) error {
	it.keyBuf = appendBindingKey(it.keyBuf[:0], bk)
	if !it.lookup.SeekGE(it.keyBuf) || !bytes.Equal(it.lookup.Key(), it.keyBuf) {
		if err := it.lookup.Error(); err != nil {
			return fmt.Errorf("store: read key %x: %w", it.keyBuf, err)
		}
		return corrupt(from, "entry points at missing binding %x", it.keyBuf)
	}
	value, err := it.lookup.ValueAndErr()
	if err != nil {
		return fmt.Errorf("store: read key %x: %w", it.keyBuf, err)
	}
	return decodeBindingRecord(it.keyBuf, value, &it.cur)
}

func (it *scanIter) Close() error {
	if it.closed {
		return it.err
	}
	it.closed = true
	var errs []error
	for _, pi := range [...]*pebble.Iterator{it.keys, it.lookup} {
		if pi != nil {
			errs = append(errs, pi.Close())
		}
	}
	it.store.releaseView(it.view)
	if err := errors.Join(errs...); err != nil && it.err == nil {
		it.err = fmt.Errorf("store: close iterator: %w", err)
	}
	return it.err
}

// scan returns an iterator over [lower, upper) of view v, taking over the
// caller's reference to v.
func (s *Store) scan(v *view, lower, upper []byte, mode scanMode, kind indexKind) Iterator {
	it := &scanIter{store: s, view: v, mode: mode, kind: kind, start: math.MinInt64, end: math.MaxInt64}
	var err error
	if it.keys, err = v.snap.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper}); err != nil {
		s.releaseView(v)
		return errIter{fmt.Errorf("store: scan: %w", err)}
	}
	if mode != scanBindings {
		bounds := &pebble.IterOptions{LowerBound: []byte{prefixBinding}, UpperBound: []byte{prefixBinding + 1}}
		if it.lookup, err = v.snap.NewIter(bounds); err != nil {
			_ = it.Close()
			return errIter{fmt.Errorf("store: scan: %w", err)}
		}
	}
	return it
}

// scanPrefix returns an iterator over the keys starting with prefix.
func (s *Store) scanPrefix(prefix []byte, mode scanMode, kind indexKind) Iterator {
	v, err := s.acquireView()
	if err != nil {
		return errIter{err}
	}
	return s.scan(v, prefix, prefixEnd(prefix), mode, kind)
}

// All yields every binding in key order: IA_NA, IA_TA, then IA_PD, each by
// address.
func (s *Store) All() Iterator {
	return s.scanPrefix([]byte{prefixBinding}, scanBindings, 0)
}

// ByClientID yields the bindings of the client with DUID duid on link, or
// on every link when link is invalid or ::. Bindings are grouped by link.
func (s *Store) ByClientID(duid []byte, link netip.Addr) Iterator {
	return s.byID(indexClient, "client DUID", duid, link)
}

// ByRelayID yields the bindings received through the relay whose
// OPTION_RELAY_ID carried id (RFC 5460 query by relay-id), on link or on
// every link when link is invalid or ::.
func (s *Store) ByRelayID(id []byte, link netip.Addr) Iterator {
	return s.byID(indexRelayID, "relay-id", id, link)
}

// ByRemoteID yields the bindings whose OPTION_REMOTE_ID data (enterprise
// number and remote-id) equals id (RFC 5460 query by remote-id), on link or
// on every link when link is invalid or ::.
func (s *Store) ByRemoteID(id []byte, link netip.Addr) Iterator {
	return s.byID(indexRemoteID, "remote-id", id, link)
}

func (s *Store) byID(kind indexKind, name string, id []byte, link netip.Addr) Iterator {
	if len(id) == 0 || len(id) > maxIDLen {
		return errIter{fmt.Errorf("%w: %s is %d bytes, want 1 to %d", ErrInvalidQuery, name, len(id), maxIDLen)}
	}
	prefix := appendIDPrefix(nil, kind.prefix(), id)
	if link.IsValid() && !link.IsUnspecified() {
		if err := validateLink(link); err != nil {
			return errIter{err}
		}
		l := link.As16()
		prefix = append(prefix, l[:]...)
	}
	return s.scanPrefix(prefix, scanIndex, kind)
}

// ByLinkAddress yields the bindings on link (RFC 5460 query by
// link-address). Link :: selects the bindings recorded without a
// link-address.
func (s *Store) ByLinkAddress(link netip.Addr) Iterator {
	if err := validateLink(link); err != nil {
		return errIter{err}
	}
	return s.scanPrefix(appendLinkPrefix(nil, link), scanIndex, indexLink)
}

func validateLink(link netip.Addr) error {
	if !link.Is6() || link.Zone() != "" {
		return fmt.Errorf("%w: link-address %s is not an IPv6 address without zone", ErrInvalidQuery, link)
	}
	return nil
}

// ClientLinks returns the distinct link-addresses the client with DUID duid
// has bindings on, in byte order; :: stands for bindings without a
// link-address. It reads one index entry per link.
func (s *Store) ClientLinks(duid []byte) ([]netip.Addr, error) {
	if len(duid) == 0 || len(duid) > maxIDLen {
		return nil, fmt.Errorf("%w: client DUID is %d bytes, want 1 to %d", ErrInvalidQuery, len(duid), maxIDLen)
	}
	v, err := s.acquireView()
	if err != nil {
		return nil, err
	}
	defer s.releaseView(v)

	prefix := appendIDPrefix(nil, prefixClient, duid)
	it, err := v.snap.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return nil, fmt.Errorf("store: client links: %w", err)
	}
	var links []netip.Addr
	for valid := it.First(); valid; {
		_, link, _, err := decodeIDKey(it.Key())
		if err != nil {
			return nil, errors.Join(corrupt(it.Key(), "%w", err), it.Close())
		}
		links = append(links, netip.AddrFrom16(link))
		// Skip the other bindings on this link.
		valid = it.SeekGE(prefixEnd(append(append([]byte(nil), prefix...), link[:]...)))
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return nil, fmt.Errorf("store: client links: %w", err)
	}
	return links, nil
}

// Changed yields each binding whose last change time lies in [start, end]
// once, in its current state, in Seq order (RFC 7653 section 8.4 catch-up,
// which section 7 allows to send only the current state).
// A zero start means from the first change, a zero end means no upper
// bound. A binding changed again after start appears once, at its latest
// change. Below the floor (Floor) the result lacks trimmed tombstones.
// RFC 7653 times are whole seconds, so start from such a time includes all
// of that second.
func (s *Store) Changed(start, end time.Time) Iterator {
	v, err := s.acquireView()
	if err != nil {
		return errIter{err}
	}

	// Where the history scan begins: the first seq of the first second at
	// or after start, from the time index.
	first := uint64(1)
	startNs, endNs := int64(math.MinInt64), int64(math.MaxInt64)
	if !start.IsZero() {
		startNs = start.UnixNano()
		if first, err = firstSeqAtOrFloor(v, startNs); err != nil {
			s.releaseView(v)
			return errIter{err}
		}
	}
	if !end.IsZero() {
		endNs = end.UnixNano()
	}
	if endNs < startNs || first > v.lastSeq {
		s.releaseView(v)
		return errIter{}
	}

	it := s.scan(v, historySeqKey(first), []byte{prefixHistory + 1}, scanHistory, 0)
	if si, ok := it.(*scanIter); ok {
		si.start, si.end = startNs, endNs
	}
	return it
}

// firstSeqAtOrFloor returns where a history scan from startNs begins. Trim
// deletes the time-index entries below the floor second, while the history
// entries of bindings that are still live stay, so a start below the floor
// scans the whole history from seq 1 and lets the time filter select. The
// floor is read from the view, in which it is consistent with the index.
func firstSeqAtOrFloor(v *view, startNs int64) (uint64, error) {
	rec, err := getCopy(v.snap, internalKey(internalFloor))
	if err != nil {
		return 0, err
	}
	if len(rec) == 16 && startNs < int64(binary.BigEndian.Uint64(rec)) {
		return 1, nil
	}
	return firstSeqAt(v, floorDiv(startNs, int64(time.Second)))
}

// firstSeqAt returns the first seq committed at or after Unix second sec,
// or a seq beyond v.lastSeq when there is none.
func firstSeqAt(v *view, sec int64) (uint64, error) {
	it, err := v.snap.NewIter(&pebble.IterOptions{LowerBound: timeKey(sec), UpperBound: []byte{prefixTime + 1}})
	if err != nil {
		return 0, fmt.Errorf("store: read time index: %w", err)
	}
	seq := v.lastSeq + 1
	var problem error
	if it.First() {
		value, err := it.ValueAndErr()
		switch {
		case err != nil:
			problem = fmt.Errorf("store: read key %x: %w", it.Key(), err)
		case len(value) != 8:
			problem = corrupt(it.Key(), "time index value is %d bytes, want 8", len(value))
		default:
			seq = binary.BigEndian.Uint64(value)
		}
	}
	if err := errors.Join(problem, it.Error(), it.Close()); err != nil {
		return 0, err
	}
	return seq, nil
}

// ChangedSince yields each binding whose last change has a Seq above after
// once, in its current state, in Seq order: the catch-up of a fanout cursor
// that fell behind. Below the floor the result lacks trimmed tombstones.
func (s *Store) ChangedSince(after uint64) Iterator {
	if after == math.MaxUint64 {
		return errIter{}
	}
	v, err := s.acquireView()
	if err != nil {
		return errIter{err}
	}
	if after >= v.lastSeq {
		s.releaseView(v)
		return errIter{}
	}
	return s.scan(v, historySeqKey(after+1), []byte{prefixHistory + 1}, scanHistory, 0)
}
