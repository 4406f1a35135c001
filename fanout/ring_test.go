package fanout

import (
	"errors"
	"runtime"
	"sync"
	"testing"
)

// seqAt is the Seq the concurrency tests publish at position pos: strictly
// increasing with gaps of one to three.
func seqAt(pos uint64) uint64 { return 2*pos + pos/3 }

func newRing(t testing.TB, capacity int, start uint64) *Ring {
	t.Helper()
	r, err := NewRing(Config{Capacity: capacity}, start)
	if err != nil {
		t.Fatalf("NewRing: %v", err)
	}
	return r
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"zero", Config{}, true},
		{"capacity 2", Config{Capacity: 2}, true},
		{"capacity 1024", Config{Capacity: 1024}, true},
		{"capacity 1", Config{Capacity: 1}, false},
		{"capacity 1000", Config{Capacity: 1000}, false},
		{"capacity negative", Config{Capacity: -8}, false},
		{"capacity too large", Config{Capacity: maxCapacity << 1}, false},
		{"batch negative", Config{MaxBatch: -1}, false},
		{"budget negative", Config{ResyncBudget: -1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.ok && err != nil {
				t.Errorf("Validate: %v, want nil", err)
			}
			if !tt.ok && !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("Validate: %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestNewRingDefaults(t *testing.T) {
	r := newRing(t, 0, 7)
	if r.Capacity() != DefaultCapacity {
		t.Errorf("Capacity = %d, want %d", r.Capacity(), DefaultCapacity)
	}
	if r.cfg.MaxBatch != DefaultMaxBatch || r.cfg.ResyncBudget != DefaultResyncBudget {
		t.Errorf("defaults not applied: %+v", r.cfg)
	}
	if r.LastSeq() != 7 {
		t.Errorf("LastSeq = %d, want the start Seq 7", r.LastSeq())
	}
}

func TestRingPublishRead(t *testing.T) {
	r := newRing(t, 8, 100)
	seqs := []uint64{101, 102, 105, 106, 110}
	for _, s := range seqs {
		r.Publish(&Update{Seq: s})
	}

	if got := r.LastSeq(); got != 110 {
		t.Errorf("LastSeq = %d, want 110", got)
	}
	for i, want := range seqs {
		u, ok := r.read(uint64(i + 1))
		if !ok {
			t.Fatalf("read(%d) lapped in a ring that never wrapped", i+1)
		}
		if u.Seq != want {
			t.Errorf("read(%d).Seq = %d, want %d", i+1, u.Seq, want)
		}
	}
	if st := r.Stats(); st.Published != uint64(len(seqs)) {
		t.Errorf("Stats.Published = %d, want %d", st.Published, len(seqs))
	}
}

func TestRingSeek(t *testing.T) {
	r := newRing(t, 8, 100)
	for _, s := range []uint64{101, 102, 105, 106, 110} {
		r.Publish(&Update{Seq: s})
	}
	tests := []struct {
		seq      uint64
		wantPos  uint64
		wantPrev uint64
		wantOK   bool
	}{
		{99, 1, 100, false}, // below the start: the store has changes the ring never saw
		{100, 1, 100, true},
		{101, 2, 101, true},
		{103, 3, 102, true}, // inside a gap
		{105, 4, 105, true},
		{109, 5, 106, true},
		{110, 6, 110, true}, // the next position to be published
		{500, 6, 110, true}, // ahead of the ring, as after a scan of unpublished commits
	}
	for _, tt := range tests {
		pos, prev, ok := r.seek(tt.seq)
		if ok != tt.wantOK || (ok && (pos != tt.wantPos || prev != tt.wantPrev)) {
			t.Errorf("seek(%d) = %d, %d, %v; want %d, %d, %v", tt.seq, pos, prev, ok, tt.wantPos, tt.wantPrev, tt.wantOK)
		}
	}
}

func TestRingSeekEmpty(t *testing.T) {
	r := newRing(t, 8, 50)
	if pos, prev, ok := r.seek(50); !ok || pos != 1 || prev != 50 {
		t.Errorf("seek(50) on an empty ring = %d, %d, %v; want 1, 50, true", pos, prev, ok)
	}
	if _, _, ok := r.seek(49); ok {
		t.Errorf("seek(49) below the start on an empty ring reported covered")
	}
}

func TestRingLapDetection(t *testing.T) {
	r := newRing(t, 4, 0)
	for pos := uint64(1); pos <= 10; pos++ {
		r.Publish(&Update{Seq: seqAt(pos)})
	}

	// Positions 7..10 are retained, 1..6 overwritten.
	for pos := uint64(1); pos <= 6; pos++ {
		if _, ok := r.read(pos); ok {
			t.Errorf("read(%d) succeeded after the slot was overwritten", pos)
		}
	}
	for pos := uint64(7); pos <= 10; pos++ {
		u, ok := r.read(pos)
		if !ok || u.Seq != seqAt(pos) {
			t.Errorf("read(%d) = %v, %v; want Seq %d", pos, u, ok, seqAt(pos))
		}
	}

	if _, _, ok := r.seek(seqAt(5)); ok {
		t.Errorf("seek(Seq at 5) covered, but position 6 is overwritten")
	}
	if pos, _, ok := r.seek(seqAt(6)); ok {
		t.Errorf("seek(Seq at 6) = %d, true; position 6 is gone, so nothing proves 7 follows it directly", pos)
	}
	if pos, prev, ok := r.seek(seqAt(7)); !ok || pos != 8 || prev != seqAt(7) {
		t.Errorf("seek(Seq at 7) = %d, %d, %v; want 8, %d, true", pos, prev, ok, seqAt(7))
	}
}

func TestRingPublishOrderPanics(t *testing.T) {
	r := newRing(t, 4, 10)
	tests := []struct {
		name string
		seqs []uint64
	}{
		{"at start seq", []uint64{10}},
		{"repeated", []uint64{11, 11}},
		{"decreasing", []uint64{13, 12}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("Publish(%v) did not panic", tt.seqs)
				}
			}()
			us := make([]*Update, len(tt.seqs))
			for i, s := range tt.seqs {
				us[i] = &Update{Seq: s}
			}
			r.Publish(us...)
		})
	}
}

func TestRingConcurrentPublishPanics(t *testing.T) {
	r := newRing(t, 4, 0)
	r.publishing.Store(true) // another Publish is running
	defer func() {
		if recover() == nil {
			t.Errorf("Publish during another Publish did not panic")
		}
	}()
	r.Publish(&Update{Seq: 1})
}

// TestRingConcurrentReaders runs one producer against several readers on a
// small ring. Every read must return the update published at that position
// or report a lap that really happened. One reader pauses on purpose so that
// it is lapped.
func TestRingConcurrentReaders(t *testing.T) {
	const (
		capacity = 16
		total    = 20000
		readers  = 4
	)
	r := newRing(t, capacity, 0)
	updates := make([]*Update, total+1)
	for pos := uint64(1); pos <= total; pos++ {
		updates[pos] = &Update{Seq: seqAt(pos)}
	}

	var wg sync.WaitGroup
	laps := make([]int, readers)
	for i := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			laps[i] = readAll(t, r, updates, i == 0)
		}()
	}

	for pos := uint64(1); pos <= total; pos++ {
		r.Publish(updates[pos])
		if pos%64 == 0 {
			runtime.Gosched()
		}
	}
	wg.Wait()

	if laps[0] == 0 {
		t.Errorf("the pausing reader was never lapped")
	}
}

// readAll reads every position up to the last one, checking each read, and
// returns the number of laps. A pausing reader waits until the producer is
// two rings ahead before each of its first reads, so it must be lapped.
func readAll(t *testing.T, r *Ring, updates []*Update, pause bool) (laps int) {
	total := uint64(len(updates) - 1)
	capacity := uint64(r.Capacity())
	pos := uint64(1)
	for pos <= total {
		if pause && laps == 0 {
			for r.head.Load() < min(pos+2*capacity, total) {
				runtime.Gosched()
			}
		}
		head := r.head.Load()
		if pos > head {
			runtime.Gosched()
			continue
		}
		u, ok := r.read(pos)
		if ok {
			if u != updates[pos] {
				t.Errorf("read(%d) returned the update of Seq %d, want Seq %d", pos, u.Seq, updates[pos].Seq)
				return laps
			}
			pos++
			continue
		}

		// A lap: the producer must have started rewriting this slot.
		laps++
		if h := r.head.Load(); h+1 < pos+capacity {
			t.Errorf("read(%d) reported a lap with head %d", pos, h)
			return laps
		}
		prev := uint64(0)
		if pos > 1 {
			prev = updates[pos-1].Seq
		}
		next, _, covered := r.seek(prev)
		for !covered {
			next, _, covered = r.seek(r.LastSeq())
		}
		pos = next
	}
	return laps
}
