package store

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

const (
	// defaultTrimChunk bounds the history entries one trim batch examines,
	// so that Apply waits for at most one chunk.
	defaultTrimChunk = 4096

	// trimRangeMin is the shortest run of adjacent history entries that a
	// trim removes with one range deletion instead of point deletions.
	// Pebble handles few wide range deletions well and many narrow ones
	// badly, so short runs stay point deletions.
	trimRangeMin = 32
)

// Trim removes released and expired bindings whose last change is older
// than now minus Retention (cut down to a whole second), with their history
// and index entries, and raises the floor to that time. Bindings in other
// states are never removed. Trim works in chunks, each one synced batch
// that also stores the floor reached so far, so a crash in the middle leaves
// a correct floor and the next Trim goes on from there. Apply calls wait for
// at most one chunk. The store also trims every TrimInterval by itself.
func (s *Store) Trim(now time.Time) error {
	s.trimMu.Lock()
	defer s.trimMu.Unlock()

	cutoff := (floorDiv(now.UnixNano(), int64(time.Second)) - int64(s.opts.Retention/time.Second)) * int64(time.Second)
	for {
		done, err := s.trimChunk(cutoff)
		if err != nil || done {
			return err
		}
		select {
		case <-s.quit:
			return ErrClosed // Close waits for the background trim
		default:
		}
	}
}

// trimmer runs Trim every TrimInterval until Close.
func (s *Store) trimmer() {
	defer close(s.trimmerDone)
	ticker := time.NewTicker(s.opts.TrimInterval)
	defer ticker.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-ticker.C:
			if err := s.Trim(s.opts.Clock()); err != nil && !errors.Is(err, ErrClosed) {
				s.fail(fmt.Errorf("store: background trim: %w", err))
			}
		}
	}
}

// trimChunk trims up to trimChunkLimit history entries older than cutoff
// (Unix ns) and reports whether it reached the cutoff.
func (s *Store) trimChunk(cutoff int64) (done bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false, ErrClosed
	}
	if err := s.failed(); err != nil {
		return false, err
	}
	if cutoff <= s.floorTime || s.floorSeq == math.MaxUint64 {
		return true, nil
	}

	hist, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: historySeqKey(s.floorSeq + 1),
		UpperBound: []byte{prefixHistory + 1},
	})
	if err != nil {
		return false, fmt.Errorf("store: trim: %w", err)
	}
	defer func() {
		if closeErr := hist.Close(); closeErr != nil && err == nil {
			err = fmt.Errorf("store: trim: %w", closeErr)
		}
	}()
	batch := &writeBatch{Batch: s.db.NewBatch()}
	defer batch.Close()

	// Walk the history from the floor, in seq and so in time order.
	var (
		scan      trimScan
		run       trimRun
		pdDelta   [129]int64
		stopSeq   uint64
		atCutoff  bool
		exhausted bool
		b         Binding
	)
	for valid := hist.First(); ; valid = hist.Next() {
		if !valid {
			exhausted = true
			break
		}
		if scan.examined == s.trimChunkLimit {
			break
		}
		seq, bk, err := s.historyBinding(hist.Key(), &b)
		if err != nil {
			return false, err
		}
		if b.ChangeTime.UnixNano() >= cutoff {
			atCutoff, stopSeq = true, seq
			break
		}
		scan.examined++
		scan.lastSeq, scan.lastTime = seq, b.ChangeTime.UnixNano()
		if !b.State.Ended() {
			run.flush(batch)
			continue
		}

		// Remove the binding, its index entries and (through run) its
		// history entry.
		batch.del(appendBindingKey(nil, &bk))
		for kind := range indexKinds {
			if key, ok := appendIndexKey(nil, kind, &bk, &b); ok {
				batch.del(key)
			}
		}
		if b.Type == TypePD {
			pdDelta[b.Prefix.Bits()]--
		}
		run.add(hist.Key())
		scan.removed++
	}
	run.flush(batch)
	if err := hist.Error(); err != nil {
		return false, fmt.Errorf("store: trim: read history: %w", err)
	}

	// The floor: everything removed so far is below it.
	floorTime, floorSeq := cutoff, s.lastSeq
	switch {
	case atCutoff:
		floorSeq = stopSeq - 1
	case !exhausted:
		floorTime = min(cutoff, (floorDiv(scan.lastTime, int64(time.Second))+1)*int64(time.Second))
		floorSeq = scan.lastSeq
	}
	floorTime, floorSeq = max(floorTime, s.floorTime), max(floorSeq, s.floorSeq)
	done = atCutoff || exhausted
	if scan.removed == 0 && floorTime == s.floorTime && floorSeq == s.floorSeq {
		return done, nil
	}
	batch.set(internalKey(internalFloor), s.floorRecord(floorTime, floorSeq))
	if done {
		// Time-index entries below the floor second are never read again.
		batch.delRange(timeKey(math.MinInt64), timeKey(floorDiv(floorTime, int64(time.Second))))
	}
	s.stagePDCounts(batch, &pdDelta)

	// Commit and publish.
	if err := s.commit(batch, fmt.Sprintf("trim of %d bindings", scan.removed)); err != nil {
		return false, err
	}
	s.addPDCounts(&pdDelta)
	s.floorTime, s.floorSeq = floorTime, floorSeq
	s.storeFloor()
	s.publishViewLocked()
	return done, nil
}

// trimScan counts what one trim chunk has examined.
type trimScan struct {
	examined int
	removed  int
	lastSeq  uint64
	lastTime int64 // Unix ns
}

// historyBinding reads the binding a history entry points at, from the live
// database, and checks that the entry carries the binding's Seq. A
// mismatch is corruption and fails the store. The caller holds mu.
func (s *Store) historyBinding(histKey []byte, b *Binding) (uint64, bkey, error) {
	seq, bk, err := decodeHistoryKey(histKey)
	if err != nil {
		return 0, bk, s.failCorrupt(corrupt(histKey, "%w", err))
	}
	key := appendBindingKey(nil, &bk)
	value, err := s.getLatest(key)
	if err != nil {
		return 0, bk, err
	}
	if value == nil {
		return 0, bk, s.failCorrupt(corrupt(histKey, "history entry %d has no binding", seq))
	}
	if err := decodeBindingRecord(key, value, b); err != nil {
		return 0, bk, s.failCorrupt(err)
	}
	if b.Seq != seq {
		return 0, bk, s.failCorrupt(corrupt(histKey, "history entry has seq %d but its binding has seq %d", seq, b.Seq))
	}
	return seq, bk, nil
}

func (s *Store) failCorrupt(err error) error {
	s.fail(err)
	return err
}

// trimRun collects adjacent history keys to remove.
type trimRun struct{ keys [][]byte }

func (r *trimRun) add(key []byte) { r.keys = append(r.keys, append([]byte(nil), key...)) }

// flush deletes the collected keys. Under mu no other key can lie between
// two adjacent keys of the scan, so a range deletion removes exactly them.
func (r *trimRun) flush(b *writeBatch) {
	if len(r.keys) >= trimRangeMin {
		last := r.keys[len(r.keys)-1]
		b.delRange(r.keys[0], append(last[:len(last):len(last)], 0))
	} else {
		for _, key := range r.keys {
			b.del(key)
		}
	}
	r.keys = r.keys[:0]
}
