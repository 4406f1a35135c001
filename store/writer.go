package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// maxMetaKeyLen caps metadata key names passed to Apply.
const maxMetaKeyLen = 1024

// MaxMetaValueLen caps metadata values passed to Apply. Callers store
// positions and checkpoints of a few hundred bytes, and the cap keeps every
// stored value within what a backup carries (maxBackupValueLen).
const MaxMetaValueLen = 1 << 20

// Request states: the writer takes a queued request, or Apply cancels it
// first when its context ends; whichever CompareAndSwap wins decides.
const (
	requestQueued uint32 = iota
	requestTaken
	requestCancelled
)

// request is one Apply call on its way through the writer.
type request struct {
	changes []Binding // deep copies; the writer sets Seq and ChangeTime
	meta    []metaPut
	state   atomic.Uint32
	done    chan struct{} // closed by the writer once lastSeq and err are set
	lastSeq uint64
	err     error
}

type metaPut struct {
	key   string
	value []byte // nil deletes the key
}

func (r *request) take() bool { return r.state.CompareAndSwap(requestQueued, requestTaken) }

// Apply commits changes and meta as one synced group commit and returns
// once they are durable. Each change replaces the binding with the same Key.
// A change whose fields (all but Seq and ChangeTime, which Apply assigns)
// equal the stored binding is skipped. Later changes of one call see the
// earlier ones, so a key may appear twice. A nil value in meta deletes that
// key. Apply validates everything first: an invalid change or key fails
// the call with ErrInvalidBinding and commits nothing. Besides what the
// layout can not store, a change is invalid when its address or prefix is
// not leasable (CheckLeasable), its CLTT is out of range (CheckCLTT) or its
// relay message is longer than MaxRelayMessageLen.
//
// lastSeq is the Seq of the last change this call committed, or the store's
// LastSeq when every change was skipped. Subscribers have seen the
// committed changes before Apply returns. Apply copies changes and meta,
// so the caller may reuse them at once.
//
// Safe for concurrent use: one writer goroutine gathers concurrent calls
// into one group commit, in arrival order. When ctx ends before the writer
// takes the call, nothing is committed and Apply returns ctx.Err(). Once
// the writer has taken it, Apply waits for the commit (one WAL sync) and
// returns its result.
func (s *Store) Apply(ctx context.Context, changes []Binding, meta map[string][]byte) (lastSeq uint64, err error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := s.failed(); err != nil {
		return 0, err
	}
	r, err := newRequest(changes, meta)
	if err != nil {
		return 0, err
	}
	if len(r.changes) == 0 && len(r.meta) == 0 {
		return s.LastSeq(), nil
	}

	select {
	case s.requests <- r:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-s.quit:
		return 0, ErrClosed
	}

	select {
	case <-r.done:
		return r.lastSeq, r.err
	case <-ctx.Done():
		if r.state.CompareAndSwap(requestQueued, requestCancelled) {
			return 0, ctx.Err()
		}
	case <-s.writerDone:
		if r.state.CompareAndSwap(requestQueued, requestCancelled) {
			return 0, ErrClosed
		}
	}
	<-r.done
	return r.lastSeq, r.err
}

// newRequest validates changes and meta and copies them: the bindings into
// one slice, all their byte fields into one shared buffer.
func newRequest(changes []Binding, meta map[string][]byte) (*request, error) {
	size := 0
	for i := range changes {
		if err := validateBinding(&changes[i]); err != nil {
			return nil, fmt.Errorf("%w: change %d: %w", ErrInvalidBinding, i, err)
		}
		if err := validateNew(&changes[i]); err != nil {
			return nil, fmt.Errorf("%w: change %d: %w", ErrInvalidBinding, i, err)
		}
		c := &changes[i]
		size += len(c.ClientID) + len(c.RelayID) + len(c.RemoteID) + len(c.InterfaceID) + len(c.RelayMessage)
	}
	for key, value := range meta {
		if key == "" || len(key) > maxMetaKeyLen {
			return nil, fmt.Errorf("%w: metadata key %q is empty or longer than %d bytes", ErrInvalidBinding, key, maxMetaKeyLen)
		}
		if len(value) > MaxMetaValueLen {
			return nil, fmt.Errorf("%w: metadata value of key %q is %d bytes, longer than %d", ErrInvalidBinding, key, len(value), MaxMetaValueLen)
		}
		size += len(value)
	}

	r := &request{changes: make([]Binding, len(changes)), done: make(chan struct{})}
	arena := make([]byte, 0, size)
	for i := range changes {
		c := changes[i]
		c.ClientID, arena = cloneInto(arena, c.ClientID)
		c.RelayID, arena = cloneInto(arena, c.RelayID)
		c.RemoteID, arena = cloneInto(arena, c.RemoteID)
		c.InterfaceID, arena = cloneInto(arena, c.InterfaceID)
		c.RelayMessage, arena = cloneInto(arena, c.RelayMessage)
		c.Seq, c.ChangeTime = 0, time.Time{}
		r.changes[i] = c
	}
	for key, value := range meta {
		put := metaPut{key: key}
		if value != nil {
			put.value, arena = cloneInto(arena, value)
			if put.value == nil {
				put.value = []byte{}
			}
		}
		r.meta = append(r.meta, put)
	}
	slices.SortFunc(r.meta, func(a, b metaPut) int { return cmpString(a.key, b.key) })
	return r, nil
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// cloneInto copies src to the end of arena, which has room for it, and
// returns the copy capped at its length (nil for an empty src).
func cloneInto(arena, src []byte) (clone, grown []byte) {
	if len(src) == 0 {
		return nil, arena
	}
	start := len(arena)
	arena = append(arena, src...)
	return arena[start:len(arena):len(arena)], arena
}

// Subscribe registers fn to receive every committed change. The writer
// calls fn after each synced group commit with that group's changes in
// commit order, Seq and ChangeTime set, before the Apply calls return.
// fn runs on the writer goroutine, so it must not block or call Apply. It
// must not modify the bindings, but it may keep them and the slice.
// Subscribers can not be removed.
func (s *Store) Subscribe(fn func(committed []Binding)) {
	s.subscribeMu.Lock()
	defer s.subscribeMu.Unlock()
	var next []func([]Binding)
	if old := s.subscribers.Load(); old != nil {
		next = append(next, *old...)
	}
	next = append(next, fn)
	s.subscribers.Store(&next)
}

// writer is the only goroutine that commits changes.
func (s *Store) writer() {
	defer close(s.writerDone)
	var group []*request
	for {
		var first *request
		select {
		case first = <-s.requests:
		case <-s.quit:
			s.rejectQueued()
			return
		}

		// Gather what else is queued, up to the group limit; while the
		// previous group synced, concurrent callers queued up here.
		group = group[:0]
		count := 0
		if first.take() {
			group = append(group, first)
			count += len(first.changes)
		}
	gather:
		for count < s.opts.MaxGroupChanges {
			select {
			case r := <-s.requests:
				if r.take() {
					group = append(group, r)
					count += len(r.changes)
				}
			default:
				break gather
			}
		}

		if len(group) > 0 {
			s.commitGroup(group)
		}
		clear(group)
	}
}

// rejectQueued fails every request still queued at Close.
func (s *Store) rejectQueued() {
	for {
		select {
		case r := <-s.requests:
			if r.take() {
				r.err = ErrClosed
				close(r.done)
			}
		default:
			return
		}
	}
}

// commitGroup commits one group, notifies subscribers and completes the
// requests. The requests share one batch, so a failure fails them all.
func (s *Store) commitGroup(group []*request) {
	committed, err := s.applyGroup(group)
	if err == nil && len(committed) > 0 {
		if subs := s.subscribers.Load(); subs != nil {
			for _, fn := range *subs {
				fn(committed)
			}
		}
	}
	for _, r := range group {
		r.err = err
		close(r.done)
	}
}

// groupScratch is the writer's reusable state for building one group.
type groupScratch struct {
	pending    map[bkey]pendingBinding // bindings changed earlier in this group
	values     []byte                  // encoded values of this group
	oldValue   []byte
	oldBinding Binding
	keyBuf     []byte
	oldIndex   []byte
	newIndex   []byte
	pdDelta    [129]int64
}

type pendingBinding struct {
	binding *Binding
	value   []byte
}

func (g *groupScratch) reset() {
	if g.pending == nil {
		g.pending = make(map[bkey]pendingBinding)
	}
	clear(g.pending)
	g.values = g.values[:0]
	g.pdDelta = [129]int64{}
}

// writeBatch wraps a Pebble batch and keeps the first error of its
// operations, so staging code reads as a list of writes.
type writeBatch struct {
	*pebble.Batch
	err error
}

func (b *writeBatch) keep(err error) {
	if b.err == nil {
		b.err = err
	}
}

func (b *writeBatch) set(key, value []byte) { b.keep(b.Set(key, value, nil)) }
func (b *writeBatch) del(key []byte)        { b.keep(b.Delete(key, nil)) }

// singleDel deletes a key that was written exactly once. History keys are,
// because applyGroup stores the sequence counter in the batch that uses its
// numbers, so no number is used twice, even across a crash.
func (b *writeBatch) singleDel(key []byte) { b.keep(b.SingleDelete(key, nil)) }

func (b *writeBatch) delRange(start, end []byte) { b.keep(b.DeleteRange(start, end, nil)) }

func (s *Store) writeOptions() *pebble.WriteOptions {
	if s.opts.NoSync {
		return pebble.NoSync
	}
	return pebble.Sync
}

// applyGroup stages every change of the group in one batch, commits it and
// publishes the new state. It returns the committed changes.
func (s *Store) applyGroup(group []*request) ([]Binding, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.failed(); err != nil {
		return nil, err
	}

	g := &s.group
	g.reset()
	batch := &writeBatch{Batch: s.db.NewBatch()}
	defer batch.Close()

	// Stage the changes, assigning Seq in order and one ChangeTime.
	seq := s.lastSeq
	now := s.nextChangeTime()
	var committed []Binding
	for _, r := range group {
		for i := range r.changes {
			c := &r.changes[i]
			changed, err := s.stageChange(batch, c, seq+1, now)
			if err != nil {
				s.fail(err)
				return nil, err
			}
			if changed {
				seq++
				committed = append(committed, *c)
			}
		}
		r.lastSeq = seq
		for _, put := range r.meta {
			if put.value == nil {
				batch.del(metaKey(put.key))
			} else {
				batch.set(metaKey(put.key), put.value)
			}
		}
	}

	// Counter, time index and IA_PD length counts.
	nowSec := floorDiv(now, int64(time.Second))
	if seq > s.lastSeq {
		if nowSec > s.lastTimeSec {
			batch.set(timeKey(nowSec), uint64Bytes(s.lastSeq+1))
		}
		rec := binary.BigEndian.AppendUint64(nil, seq)
		batch.set(internalKey(internalSeq), binary.BigEndian.AppendUint64(rec, uint64(now)))
	}
	s.stagePDCounts(batch, &g.pdDelta)

	// Commit.
	if batch.err == nil && batch.Empty() {
		return nil, nil
	}
	if err := s.commit(batch, fmt.Sprintf("group commit of %d changes", len(committed))); err != nil {
		return nil, err
	}

	// Publish.
	if seq > s.lastSeq {
		s.lastSeq, s.lastTime = seq, now
		s.lastTimeSec = max(s.lastTimeSec, nowSec)
	}
	s.addPDCounts(&g.pdDelta)
	s.publishViewLocked()
	return committed, nil
}

// stagePDCounts stages the IA_PD length counts that delta changes. The
// caller holds mu.
func (s *Store) stagePDCounts(batch *writeBatch, delta *[129]int64) {
	for bits, d := range delta {
		if d != 0 {
			batch.set(pdLengthKey(bits), uint64Bytes(uint64(int64(s.pdCounts[bits])+d)))
		}
	}
}

// addPDCounts applies delta to the counts once its batch is committed. The
// caller holds mu.
func (s *Store) addPDCounts(delta *[129]int64) {
	for bits, d := range delta {
		if d != 0 {
			s.pdCounts[bits] = uint64(int64(s.pdCounts[bits]) + d)
			if d > 0 {
				s.notePDLength(bits)
			}
		}
	}
}

// commit commits batch with the configured sync choice. A failure fails
// the store: after a failed WAL write Pebble's state is in doubt. The caller
// holds mu.
func (s *Store) commit(batch *writeBatch, what string) error {
	err := batch.err
	if err == nil {
		err = batch.Commit(s.writeOptions())
	}
	if err != nil {
		err = fmt.Errorf("store: %s: %w", what, err)
		s.fail(err)
	}
	return err
}

// nextChangeTime returns the ChangeTime for the next group in Unix ns: the
// clock, but never earlier than the last change or the floor, so that
// ChangeTime stays ordered like Seq when the clock steps back.
func (s *Store) nextChangeTime() int64 {
	return max(s.opts.Clock().UnixNano(), s.lastTime, s.floorTime)
}

// stageChange adds change c to the batch as number seq at time now, unless
// it repeats the stored state. It moves the history entry and every index
// entry whose key changed. The caller holds mu. hot path: once per change.
func (s *Store) stageChange(batch *writeBatch, c *Binding, seq uint64, now int64) (bool, error) {
	g := &s.group
	bk := encodeBKey(c.Key)

	// Old state: from earlier in this group, else from the database.
	var old *Binding
	var oldValue []byte
	if p, ok := g.pending[bk]; ok {
		old, oldValue = p.binding, p.value
	} else {
		g.keyBuf = appendBindingKey(g.keyBuf[:0], &bk)
		found, err := s.readLatest(g.keyBuf, &g.oldValue)
		if err != nil {
			return false, err
		}
		if found {
			oldValue = g.oldValue
		}
	}

	// Encode the new state; stop when nothing but Seq and time differ.
	c.Seq, c.ChangeTime = seq, time.Unix(0, now).UTC()
	start := len(g.values)
	g.values = appendValue(g.values, c)
	newValue := g.values[start:len(g.values):len(g.values)]
	if oldValue != nil && sameState(oldValue, newValue) {
		g.values = g.values[:start]
		c.Seq, c.ChangeTime = 0, time.Time{}
		return false, nil
	}
	if oldValue != nil && old == nil {
		old = &g.oldBinding
		if err := decodeBindingRecord(g.keyBuf, oldValue, old); err != nil {
			return false, err
		}
	}

	// Binding and history entry.
	g.keyBuf = appendBindingKey(g.keyBuf[:0], &bk)
	batch.set(g.keyBuf, newValue)
	if old != nil {
		g.keyBuf = appendHistoryKey(g.keyBuf[:0], old.Seq, &bk)
		batch.singleDel(g.keyBuf)
	}
	g.keyBuf = appendHistoryKey(g.keyBuf[:0], seq, &bk)
	batch.set(g.keyBuf, nil)

	// Secondary indexes: move only the entries whose key changed.
	for kind := range indexKinds {
		var oldKey, newKey []byte
		hasOld, hasNew := false, false
		if old != nil {
			oldKey, hasOld = appendIndexKey(g.oldIndex[:0], kind, &bk, old)
			g.oldIndex = oldKey
		}
		newKey, hasNew = appendIndexKey(g.newIndex[:0], kind, &bk, c)
		g.newIndex = newKey
		if hasOld && hasNew && bytes.Equal(oldKey, newKey) {
			continue
		}
		if hasOld {
			batch.del(oldKey)
		}
		if hasNew {
			batch.set(newKey, nil)
		}
	}

	if old == nil && c.Type == TypePD {
		g.pdDelta[c.Prefix.Bits()]++
	}
	g.pending[bk] = pendingBinding{binding: c, value: newValue}
	return true, nil
}
