package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// maxReportedProblems caps the problems an InconsistencyError lists.
const maxReportedProblems = 100

// Verify checks the invariants of the Store type comment on one view of the
// store. It returns nil or an *InconsistencyError that lists values that do
// not decode, bindings without their history or index entries, and entries
// without their binding or pointing at a binding whose fields produce
// another key. It also lists history out of time order, counts that
// disagree, and keys of unknown keyspaces.
//
// Verify reads every key once plus one point read per entry, holding one
// binding at a time, and may run while the writer runs. Operators run it
// after a crash or before a backup.
func (s *Store) Verify() error {
	v, err := s.acquireView()
	if err != nil {
		return err
	}
	defer s.releaseView(v)

	c := &checker{view: v}
	if err := c.open(); err != nil {
		return err
	}
	defer c.close()

	c.checkBindings()
	c.checkHistory()
	for kind := range indexKinds {
		c.checkIndex(kind)
	}
	c.checkPDCounts()
	c.checkTimeIndex()
	c.checkKeyspaces()

	if c.total == 0 {
		return nil
	}
	return &InconsistencyError{Problems: c.problems, Total: c.total}
}

// checker holds the state of one Verify run.
type checker struct {
	view     *view
	all      *pebble.Iterator // the whole keyspace, for scans
	lookup   *pebble.Iterator // the whole keyspace, for point checks
	problems []error
	total    int
	pdCounts [129]uint64
	keyBuf   []byte
}

func (c *checker) open() error {
	var err error
	if c.all, err = c.view.snap.NewIter(nil); err != nil {
		return fmt.Errorf("store: verify: %w", err)
	}
	if c.lookup, err = c.view.snap.NewIter(nil); err != nil {
		_ = c.all.Close()
		return fmt.Errorf("store: verify: %w", err)
	}
	return nil
}

func (c *checker) close() {
	for _, it := range [...]*pebble.Iterator{c.all, c.lookup} {
		if err := it.Close(); err != nil {
			c.report(fmt.Errorf("store: verify: close iterator: %w", err))
		}
	}
}

func (c *checker) report(err error) {
	c.total++
	if len(c.problems) < maxReportedProblems {
		c.problems = append(c.problems, err)
	}
}

// exists reports whether key is present in the view.
func (c *checker) exists(key []byte) bool {
	return c.lookup.SeekGE(key) && bytes.Equal(c.lookup.Key(), key)
}

// binding reads the binding bk into b, reporting a missing or corrupt one
// against the entry from.
func (c *checker) binding(from []byte, bk *bkey, b *Binding) bool {
	key := appendBindingKey(nil, bk)
	if !c.exists(key) {
		c.report(corrupt(from, "entry points at missing binding %x", key))
		return false
	}
	value, err := c.lookup.ValueAndErr()
	if err == nil {
		err = decodeBindingRecord(key, value, b)
	}
	if err != nil {
		c.report(err)
		return false
	}
	return true
}

// scanPrefix calls fn for every key (and value) starting with prefix.
func (c *checker) scanPrefix(prefix byte, fn func(key, value []byte)) {
	for valid := c.all.SeekGE([]byte{prefix}); valid && c.all.Key()[0] == prefix; valid = c.all.Next() {
		value, err := c.all.ValueAndErr()
		if err != nil {
			c.report(fmt.Errorf("store: verify: read key %x: %w", c.all.Key(), err))
			return
		}
		fn(c.all.Key(), value)
	}
	if err := c.all.Error(); err != nil {
		c.report(fmt.Errorf("store: verify: scan keyspace %q: %w", prefix, err))
	}
}

// checkBindings checks that each binding decodes and has its history and
// index entries.
func (c *checker) checkBindings() {
	var b Binding
	c.scanPrefix(prefixBinding, func(key, value []byte) {
		if err := decodeBindingRecord(key, value, &b); err != nil {
			c.report(err)
			return
		}
		if b.Seq == 0 || b.Seq > c.view.lastSeq {
			c.report(corrupt(key, "binding has seq %d outside 1 to the last seq %d", b.Seq, c.view.lastSeq))
		}
		if err := validateBinding(&b); err != nil {
			c.report(corrupt(key, "%w", err))
		}
		bk := bkey(key[1:])
		if c.keyBuf = appendHistoryKey(c.keyBuf[:0], b.Seq, &bk); !c.exists(c.keyBuf) {
			c.report(corrupt(key, "binding has no history entry %x", c.keyBuf))
		}
		for kind := range indexKinds {
			var ok bool
			if c.keyBuf, ok = appendIndexKey(c.keyBuf[:0], kind, &bk, &b); ok && !c.exists(c.keyBuf) {
				c.report(corrupt(key, "binding has no %s index entry %x", kind, c.keyBuf))
			}
		}
		if b.Type == TypePD {
			c.pdCounts[b.Prefix.Bits()]++
		}
	})
}

// checkHistory checks that each history entry points at a binding with its
// seq, and that ChangeTime does not decrease along seq.
func (c *checker) checkHistory() {
	var b Binding
	var lastTime time.Time
	c.scanPrefix(prefixHistory, func(key, _ []byte) {
		seq, bk, err := decodeHistoryKey(key)
		if err != nil {
			c.report(corrupt(key, "%w", err))
			return
		}
		if !c.binding(key, &bk, &b) {
			return
		}
		if b.Seq != seq {
			c.report(corrupt(key, "history entry has seq %d but its binding has seq %d", seq, b.Seq))
		}
		if b.ChangeTime.Before(lastTime) {
			c.report(corrupt(key, "change time %s is before %s of an earlier seq", b.ChangeTime, lastTime))
		}
		lastTime = b.ChangeTime
	})
}

// checkIndex checks that each entry of one index points at a binding whose
// fields produce that entry.
func (c *checker) checkIndex(kind indexKind) {
	var b Binding
	c.scanPrefix(kind.prefix(), func(key, _ []byte) {
		bk, err := indexKeyBKey(kind, key)
		if err != nil {
			c.report(corrupt(key, "%w", err))
			return
		}
		if !c.binding(key, &bk, &b) {
			return
		}
		var ok bool
		if c.keyBuf, ok = appendIndexKey(c.keyBuf[:0], kind, &bk, &b); !ok || !bytes.Equal(c.keyBuf, key) {
			c.report(corrupt(key, "%s index entry does not match its binding %s", kind, b.Prefix))
		}
	})
}

// checkPDCounts compares the stored IA_PD length counts with the bindings.
func (c *checker) checkPDCounts() {
	var stored [129]uint64
	c.scanPrefix(prefixPDLength, func(key, value []byte) {
		if len(key) != pdLengthKeyLen || key[1] > 128 || len(value) != 8 {
			c.report(corrupt(key, "IA_PD length count record has a %d-byte key and %d-byte value", len(key), len(value)))
			return
		}
		stored[key[1]] = binary.BigEndian.Uint64(value)
	})
	for bits := range stored {
		if stored[bits] != c.pdCounts[bits] {
			c.report(corrupt(pdLengthKey(bits), "stored count of /%d IA_PD bindings is %d, the bindings number %d", bits, stored[bits], c.pdCounts[bits]))
		}
	}
}

// checkTimeIndex checks that the time index grows in both second and seq
// and points at committed seqs.
func (c *checker) checkTimeIndex() {
	var lastSeq uint64
	c.scanPrefix(prefixTime, func(key, value []byte) {
		if _, err := decodeTimeKey(key); err != nil || len(value) != 8 {
			c.report(corrupt(key, "time index record has a %d-byte key and %d-byte value", len(key), len(value)))
			return
		}
		seq := binary.BigEndian.Uint64(value)
		if seq <= lastSeq || seq > c.view.lastSeq {
			c.report(corrupt(key, "time index seq %d is not above the previous %d and at most the last seq %d", seq, lastSeq, c.view.lastSeq))
		}
		lastSeq = seq
	})
}

// checkKeyspaces reports keys whose first byte names no keyspace.
func (c *checker) checkKeyspaces() {
	known := []byte{prefixBinding, prefixClient, prefixRemoteID, prefixHistory, prefixInternal,
		prefixLink, prefixMeta, prefixPDLength, prefixRelayID, prefixTime}
	for valid := c.all.First(); valid; {
		first := c.all.Key()[0]
		if bytes.IndexByte(known, first) < 0 {
			c.report(corrupt(c.all.Key(), "key is in no known keyspace"))
		}
		if first == 0xff {
			break
		}
		valid = c.all.SeekGE([]byte{first + 1})
	}
	if err := c.all.Error(); err != nil {
		c.report(fmt.Errorf("store: verify: scan keyspaces: %w", err))
	}
}
