package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/alqd/alqd/store"
)

// runningFollower is a Follower running in its own goroutine.
type runningFollower struct {
	*Follower
	cancel context.CancelFunc
	done   chan error
}

func startFollower(t *testing.T, st Store, cfg FollowerConfig) *runningFollower {
	t.Helper()
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 5 * time.Millisecond
	}
	if cfg.RetryInterval == 0 {
		cfg.RetryInterval = 5 * time.Millisecond
	}
	f, err := NewFollower(st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningFollower{Follower: f, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- f.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels Run and waits for it to return; calling it twice is fine.
func (r *runningFollower) stop(t *testing.T) {
	t.Helper()
	if r.done == nil {
		return
	}
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run returned %v, want nil after cancel", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of cancel")
	}
	r.done = nil
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// assertSequence checks that the store was given exactly want, in order:
// no change lost, none repeated.
func assertSequence(t *testing.T, got, want []store.Binding) {
	t.Helper()
	n := min(len(got), len(want))
	for i := range n {
		if !bindingsEqual(&got[i], &want[i]) {
			t.Fatalf("applied change %d = %s\nwant %s", i, describe(&got[i]), describe(&want[i]))
		}
	}
	if len(got) != len(want) {
		t.Fatalf("applied %d changes, want %d", len(got), len(want))
	}
}

// assertState checks that the store's state equals want.
func assertState(t *testing.T, got, want map[store.Key]store.Binding) {
	t.Helper()
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("binding %v %v missing from the store", k.Type, k.Prefix)
			continue
		}
		if !bindingsEqual(&g, &w) {
			t.Errorf("binding %v:\n got %s\nwant %s", k.Prefix, describe(&g), describe(&w))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected binding %v %v in the store", k.Type, k.Prefix)
		}
	}
}

func TestFollowerAcrossLFC(t *testing.T) {
	for _, inotify := range []bool{true, false} {
		name := "polling"
		if inotify {
			name = "inotify"
		}
		t.Run(name, func(t *testing.T) {
			k := newKeaSim(t, t.TempDir())
			gen := newChurn(1, 60)
			k.write(gen.rows(50)...) // before the follower starts

			st := newFakeStore()
			r := startFollower(t, st, FollowerConfig{Path: k.path, MaxBatchRows: 7, DisableInotify: !inotify})
			waitFor(t, "the first rows", func() bool { return st.appliedCount() == len(k.written) })

			const cycles = 4
			for i := range cycles {
				k.write(gen.rows(20)...) // while following
				k.rotate()
				k.write(gen.rows(10)...) // into the new live file before kea-lfc starts
				k.lfcStart()
				k.write(gen.rows(10)...) // while kea-lfc runs
				k.lfcFinish()
				k.write(gen.rows(10)...) // after LFC
				// Kea's lfc-interval is seconds long: the follower sees
				// each rotation before the next.
				waitFor(t, "the rotation", func() bool { return r.Stats().Rotations == uint64(i+1) })
			}
			// A half-written row, completed once the follower has read it.
			last := gen.next()
			k.raw(last[:40])
			waitFor(t, "the rows before the half-written one", func() bool {
				return st.appliedCount() == len(k.written) && r.Stats().RowsRead == uint64(len(k.written))
			})
			k.raw(last[40:] + "\n")
			k.written = append(k.written, last)
			waitFor(t, "all rows", func() bool { return st.appliedCount() == len(k.written) })
			r.stop(t)

			wantSeq, wantState := replay(t, k.written)
			assertSequence(t, st.snapshotApplied(), wantSeq)
			assertState(t, st.snapshotState(), wantState)
			s := r.Stats()
			if s.Rotations != cycles || s.Reloads != 1 || s.MalformedRows != 0 {
				t.Errorf("rotations %d reloads %d malformed %d, want %d, 1, 0", s.Rotations, s.Reloads, s.MalformedRows, cycles)
			}
			if s.RowsRead != uint64(len(k.written)) || s.ChangesApplied != uint64(len(k.written)) {
				t.Errorf("rows read %d, changes applied %d, want %d", s.RowsRead, s.ChangesApplied, len(k.written))
			}
		})
	}
}

// TestFollowerHalfLineNotConsumed checks that a line without newline is not
// parsed until it is complete, and then exactly once.
func TestFollowerHalfLineNotConsumed(t *testing.T) {
	k := newKeaSim(t, t.TempDir())
	gen := newChurn(2, 10)
	k.write(gen.rows(3)...)
	st := newFakeStore()
	r := startFollower(t, st, FollowerConfig{Path: k.path})
	waitFor(t, "the first rows", func() bool { return st.appliedCount() == 3 })

	fi, err := os.Stat(k.path)
	if err != nil {
		t.Fatal(err)
	}
	row := gen.next()
	k.raw(row[:len(row)/2])
	waitFor(t, "the half row to be read", func() bool { return r.Stats().BytesRead == uint64(fi.Size())+uint64(len(row)/2) })
	if got := r.Stats().RowsRead; got != 3 {
		t.Fatalf("rows read = %d after a half row, want 3", got)
	}
	k.raw(row[len(row)/2:] + "\n")
	k.written = append(k.written, row)
	waitFor(t, "the completed row", func() bool { return st.appliedCount() == 4 })
	r.stop(t)

	wantSeq, _ := replay(t, k.written)
	assertSequence(t, st.snapshotApplied(), wantSeq)
}

// TestFollowerStartupWaitsForLFC starts the follower while kea-lfc runs:
// it must wait for the pid file to go, then load .2 and the live file.
func TestFollowerStartupWaitsForLFC(t *testing.T) {
	k := newKeaSim(t, t.TempDir())
	gen := newChurn(3, 40)
	k.write(gen.rows(100)...)
	k.lfc()
	k.write(gen.rows(30)...)
	k.rotate()
	k.write(gen.rows(30)...)
	k.lfcStart() // .completed written, .1 and .2 still there, pid file present

	st := newFakeStore()
	r := startFollower(t, st, FollowerConfig{Path: k.path})
	time.Sleep(50 * time.Millisecond) // ten poll intervals while kea-lfc "runs"
	if n := st.appliedCount(); n != 0 {
		t.Fatalf("applied %d changes while kea-lfc was running, want 0", n)
	}
	k.write(gen.rows(10)...)
	k.lfcFinish()
	k.write(gen.rows(10)...)

	_, wantState := replay(t, k.written)
	waitFor(t, "the loaded state", func() bool {
		return len(st.snapshotState()) > 0 && r.Stats().RowsRead > 0 && !r.loadingOrBusy(st, wantState)
	})
	r.stop(t)
	assertLiveState(t, st.snapshotState(), wantState)
}

// loadingOrBusy reports whether the store does not yet have every lease
// Kea still holds in its final state.
func (r *runningFollower) loadingOrBusy(st *fakeStore, want map[store.Key]store.Binding) bool {
	got := st.snapshotState()
	for k, w := range want {
		if w.State.Ended() {
			continue
		}
		g, ok := got[k]
		if !ok || !bindingsEqual(&g, &w) {
			return true
		}
	}
	return false
}

// assertLiveState checks a state loaded from compacted files: every lease
// Kea holds matches, and every binding Kea deleted is absent or ended.
func assertLiveState(t *testing.T, got, want map[store.Key]store.Binding) {
	t.Helper()
	for k, w := range want {
		g, ok := got[k]
		if w.State.Ended() {
			if ok && !g.State.Ended() {
				t.Errorf("binding %v is %v, want ended", k.Prefix, g.State)
			}
			continue
		}
		if !ok {
			t.Errorf("binding %v missing", k.Prefix)
		} else if !bindingsEqual(&g, &w) {
			t.Errorf("binding %v:\n got %s\nwant %s", k.Prefix, describe(&g), describe(&w))
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected binding %s", describe(&g))
		}
	}
}

func TestFollowerStalePidFile(t *testing.T) {
	k := newKeaSim(t, t.TempDir())
	k.write(newChurn(4, 10).rows(5)...)
	// No process has this pid: Linux pids stay below 2^22.
	if err := os.WriteFile(k.path+".pid", []byte("2147483646\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	st := newFakeStore()
	startFollower(t, st, FollowerConfig{Path: k.path})
	waitFor(t, "rows despite a stale pid file", func() bool { return st.appliedCount() == 5 })
}

func TestFollowerRestart(t *testing.T) {
	tests := []struct {
		name       string
		whileDown  func(k *keaSim, gen *churn)
		wantReload bool
	}{
		{"same file", func(k *keaSim, gen *churn) {
			k.write(gen.rows(40)...)
		}, false},
		{"rotated, kea-lfc not done", func(k *keaSim, gen *churn) {
			k.write(gen.rows(20)...)
			k.rotate()
			k.write(gen.rows(20)...)
		}, false},
		{"rotated and compacted", func(k *keaSim, gen *churn) {
			k.write(gen.rows(20)...)
			k.lfc()
			k.write(gen.rows(20)...)
		}, true},
		{"two cleanups", func(k *keaSim, gen *churn) {
			k.write(gen.rows(20)...)
			k.lfc()
			k.write(gen.rows(20)...)
			k.lfc()
			k.write(gen.rows(20)...)
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newKeaSim(t, t.TempDir())
			gen := newChurn(5, 30)
			k.write(gen.rows(60)...)
			st := newFakeStore()
			cfg := FollowerConfig{Path: k.path, MaxBatchRows: 16, ListBindings: st.list}

			first := startFollower(t, st, cfg)
			waitFor(t, "the first run", func() bool { return st.appliedCount() == len(k.written) && complete(st) })
			first.stop(t)
			before := len(k.written)

			tt.whileDown(k, gen)
			second := startFollower(t, st, cfg)
			_, wantState := replay(t, k.written)
			if !tt.wantReload {
				waitFor(t, "the rows written while down", func() bool { return st.appliedCount() == len(k.written) })
				second.stop(t)
				wantSeq, _ := replay(t, k.written)
				assertSequence(t, st.snapshotApplied(), wantSeq)
				assertState(t, st.snapshotState(), wantState)
				if s := second.Stats(); s.Reloads != 0 || s.RowsRead != uint64(len(k.written)-before) {
					t.Errorf("second run: reloads %d rows %d, want 0 and %d", s.Reloads, s.RowsRead, len(k.written)-before)
				}
				return
			}
			waitFor(t, "the reloaded state", func() bool { return !second.loadingOrBusy(st, wantState) && complete(st) })
			second.stop(t)
			assertLiveState(t, st.snapshotState(), wantState)
			if s := second.Stats(); s.Reloads != 1 {
				t.Errorf("second run: reloads %d, want 1", s.Reloads)
			}
		})
	}
}

// complete reports whether the stored position is complete.
func complete(st *fakeStore) bool {
	raw, _ := st.Meta(DefaultPositionKey)
	var pos position
	return pos.decode(raw) == nil && pos.complete
}

// TestFollowerMissedRotationReloads stalls the follower in Apply while Kea
// rotates twice. Then ".1" holds a file the follower never read, so it must
// catch up with a full load.
func TestFollowerMissedRotationReloads(t *testing.T) {
	k := newKeaSim(t, t.TempDir())
	gen := newChurn(15, 30)
	k.write(gen.rows(20)...)
	st := newFakeStore()
	r := startFollower(t, st, FollowerConfig{Path: k.path, ListBindings: st.list})
	waitFor(t, "the first rows", func() bool { return st.appliedCount() == 20 })

	gate := make(chan struct{})
	st.mu.Lock()
	st.gate = gate
	st.mu.Unlock()
	k.write(gen.rows(5)...)
	waitFor(t, "the follower to block in Apply", func() bool {
		st.mu.Lock()
		defer st.mu.Unlock()
		return st.waiting > 0
	})
	k.write(gen.rows(5)...)
	k.lfc()
	k.write(gen.rows(5)...)
	k.rotate() // kea-lfc has not run: .1 is the file in between
	k.write(gen.rows(5)...)
	st.mu.Lock()
	st.gate = nil
	st.mu.Unlock()
	close(gate)

	_, wantState := replay(t, k.written)
	waitFor(t, "the reload", func() bool {
		return r.Stats().Reloads == 2 && complete(st) && !r.loadingOrBusy(st, wantState)
	})
	r.stop(t)
	assertLiveState(t, st.snapshotState(), wantState)
}

// TestFollowerReconciles checks that a binding Kea released while the
// follower was down, in rows that LFC then compacted away, ends in the store.
func TestFollowerReconciles(t *testing.T) {
	k := newKeaSim(t, t.TempDir())
	gen := newChurn(6, 1)
	assign := gen.next() // client 0 gets a lease
	k.write(assign)
	st := newFakeStore()
	cfg := FollowerConfig{Path: k.path, ListBindings: st.list}
	first := startFollower(t, st, cfg)
	waitFor(t, "the assignment", func() bool { return st.appliedCount() == 1 && complete(st) })
	first.stop(t)

	// While down: the client releases, and LFC drops the deleted lease.
	var release string
	for release == "" || strings.Split(release, ",")[2] != "0" {
		release = gen.next()
		k.write(release)
	}
	k.lfc()

	second := startFollower(t, st, cfg)
	waitFor(t, "reconciliation", func() bool { return second.Stats().Reconciled == 1 && complete(st) })
	second.stop(t)
	for _, b := range st.snapshotState() {
		if b.State != store.StateExpired || b.ValidLifetime != 0 {
			t.Errorf("binding %s, want expired with zero lifetimes", describe(&b))
		}
	}
}

// TestFollowerReconcilesOnlyItsOwn starts a follower with a full load on a
// store that the ingest API also fills: reconciliation ends only the
// binding the follower wrote, never those of other sources.
func TestFollowerReconcilesOnlyItsOwn(t *testing.T) {
	k := newKeaSim(t, t.TempDir()) // a live file with the header alone
	st := newFakeStore()
	binding := func(addr string, source store.Source) store.Binding {
		return store.Binding{
			Key:               store.Key{Type: store.TypeNA, Prefix: netip.MustParsePrefix(addr + "/128")},
			ClientID:          []byte{0, 3, 0, 1, 2, 0, 0, 0, 0, 1},
			IAID:              1,
			PreferredLifetime: 300,
			ValidLifetime:     600,
			State:             store.StateActive,
			CLTT:              time.Date(2026, 12, 4, 19, 0, 0, 0, time.UTC),
			Source:            source,
		}
	}
	before := []store.Binding{
		binding("2001:db8::a", store.SourceIngestAPI),
		binding("2001:db8::b", store.SourceUnknown),
		binding("2001:db8::c", store.SourceKea),
	}
	if _, err := st.Apply(context.Background(), before, nil); err != nil {
		t.Fatal(err)
	}

	r := startFollower(t, st, FollowerConfig{Path: k.path, ListBindings: st.list})
	waitFor(t, "the full load", func() bool { return complete(st) })
	r.stop(t)

	if n := r.Stats().Reconciled; n != 1 {
		t.Errorf("reconciled %d bindings, want 1", n)
	}
	state := st.snapshotState()
	for _, b := range before {
		got := state[b.Key]
		wantState := store.StateActive
		if b.Source == store.SourceKea {
			wantState = store.StateExpired
		}
		if got.State != wantState || got.Source != b.Source {
			t.Errorf("binding %v from %v: state %v, source %v; want %v, %v", b.Prefix, b.Source, got.State, got.Source, wantState, b.Source)
		}
	}
}

// TestFollowerFileReplacedAtSameInode rewrites the live file in place, so the
// stored inode and size still fit but the content does not.
func TestFollowerFileReplacedAtSameInode(t *testing.T) {
	k := newKeaSim(t, t.TempDir())
	gen := newChurn(7, 20)
	k.write(gen.rows(20)...)
	st := newFakeStore()
	cfg := FollowerConfig{Path: k.path}
	first := startFollower(t, st, cfg)
	waitFor(t, "the first run", func() bool { return st.appliedCount() == 20 && complete(st) })
	first.stop(t)

	if err := k.live.Truncate(0); err != nil {
		t.Fatal(err)
	}
	k.written = nil
	k.raw(keaHeader + "\n")
	k.write(newChurn(8, 20).rows(40)...)

	second := startFollower(t, st, cfg)
	waitFor(t, "the reload", func() bool { return complete(st) && second.Stats().RowsRead == 40 })
	second.stop(t)
	if s := second.Stats(); s.Reloads != 1 {
		t.Errorf("reloads = %d, want 1 for a file whose last read line changed", s.Reloads)
	}
}

func TestFollowerMalformedRows(t *testing.T) {
	k := newKeaSim(t, t.TempDir())
	gen := newChurn(9, 10)
	good := gen.rows(4)
	k.write(good[0], good[1])
	k.raw("2001:db8:1::zz,00:01,30,100,1,20,0,1,128,0,0,,,0,,1,2\n") // line 4: bad address
	k.raw("not,a,row\n")                                             // line 5: wrong column count
	k.write(good[2], good[3])

	var logs syncBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	st := newFakeStore()
	r := startFollower(t, st, FollowerConfig{Path: k.path, Logger: logger})
	waitFor(t, "the good rows", func() bool { return st.appliedCount() == 4 })
	r.stop(t)

	wantSeq, _ := replay(t, good)
	assertSequence(t, st.snapshotApplied(), wantSeq)
	if s := r.Stats(); s.MalformedRows != 2 || s.RowsRead != 6 {
		t.Errorf("malformed %d rows read %d, want 2 and 6", s.MalformedRows, s.RowsRead)
	}

	// One record per row: the path once (file), the line and column as
	// attributes, and an error that repeats neither nor the package prefix.
	type record struct {
		Msg, File, Path, Column, Error string
		Line                           int
	}
	var got []record
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec record
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec.Msg == "skipping malformed lease file row" {
			got = append(got, rec)
		}
	}
	want := []struct {
		line          int
		column, error string
	}{
		{4, "address", "invalid IPv6 address or prefix"},
		{5, "", "wrong number of columns"},
	}
	if len(got) != len(want) {
		t.Fatalf("%d malformed row records, want %d:\n%s", len(got), len(want), logs.String())
	}
	for i, w := range want {
		rec := got[i]
		if rec.Line != w.line || rec.Column != w.column || !strings.HasPrefix(rec.Error, w.error) {
			t.Errorf("record %d: line %d column %q error %q; want line %d column %q error starting %q", i, rec.Line, rec.Column, rec.Error, w.line, w.column, w.error)
		}
		if rec.File != k.path || rec.Path != "" {
			t.Errorf("record %d: file %q path %q; want file %q and no path, which only a snapshot file needs", i, rec.File, rec.Path, k.path)
		}
		if strings.Contains(rec.Error, "ingest:") || strings.Contains(rec.Error, k.path) || strings.Contains(rec.Error, "line") {
			t.Errorf("record %d: error %q repeats the prefix, path or line", i, rec.Error)
		}
	}
}

// TestFollowerLongLine checks that a line over MaxLineBytes is skipped and
// that a restart right after it resumes behind it.
func TestFollowerLongLine(t *testing.T) {
	k := newKeaSim(t, t.TempDir())
	gen := newChurn(10, 10)
	k.write(gen.rows(2)...)
	k.raw(strings.Repeat("x", 300<<10) + "\n")
	st := newFakeStore()
	cfg := FollowerConfig{Path: k.path, MaxLineBytes: 100 << 10}
	first := startFollower(t, st, cfg)
	waitFor(t, "the long line", func() bool { return first.Stats().MalformedRows == 1 && complete(st) })
	first.stop(t)

	k.write(gen.rows(3)...)
	second := startFollower(t, st, cfg)
	waitFor(t, "the rows after it", func() bool { return st.appliedCount() == 5 })
	second.stop(t)
	if s := second.Stats(); s.Reloads != 0 || s.MalformedRows != 0 {
		t.Errorf("second run: reloads %d malformed %d, want 0 and 0", s.Reloads, s.MalformedRows)
	}
	wantSeq, _ := replay(t, k.written)
	assertSequence(t, st.snapshotApplied(), wantSeq)
}

// TestFollowerTruncatedAtRotation checks that an unfinished last line of a
// rotated file is counted as malformed and nothing else is lost.
func TestFollowerTruncatedAtRotation(t *testing.T) {
	k := newKeaSim(t, t.TempDir())
	gen := newChurn(11, 10)
	k.write(gen.rows(3)...)
	st := newFakeStore()
	r := startFollower(t, st, FollowerConfig{Path: k.path})
	waitFor(t, "the first rows", func() bool { return st.appliedCount() == 3 })
	k.raw("2001:db8:1::1,00:01")
	k.rotate()
	k.write(gen.rows(3)...)
	waitFor(t, "the rows of the new file", func() bool { return st.appliedCount() == 6 })
	r.stop(t)
	if s := r.Stats(); s.MalformedRows != 1 || s.Rotations != 1 {
		t.Errorf("malformed %d rotations %d, want 1 and 1", s.MalformedRows, s.Rotations)
	}
}

func TestFollowerRetriesFailedApply(t *testing.T) {
	k := newKeaSim(t, t.TempDir())
	k.write(newChurn(12, 10).rows(10)...)
	st := newFakeStore()
	st.failNext = 3
	r := startFollower(t, st, FollowerConfig{Path: k.path, MaxBatchRows: 4})
	waitFor(t, "all rows", func() bool { return st.appliedCount() == 10 })
	r.stop(t)
	if s := r.Stats(); s.ApplyErrors != 3 {
		t.Errorf("apply errors = %d, want 3", s.ApplyErrors)
	}
	wantSeq, _ := replay(t, k.written)
	assertSequence(t, st.snapshotApplied(), wantSeq)
}

// TestFollowerStop checks that Run returns on cancel, also while waiting
// for the lease file, and calls Apply no more afterwards.
func TestFollowerStop(t *testing.T) {
	dir := t.TempDir()
	st := newFakeStore()
	r := startFollower(t, st, FollowerConfig{Path: dir + "/leases6.csv"})
	time.Sleep(20 * time.Millisecond) // the file does not exist: Run waits for it
	r.stop(t)

	k := newKeaSim(t, dir)
	k.write(newChurn(13, 10).rows(50)...)
	r2 := startFollower(t, st, FollowerConfig{Path: k.path, MaxBatchRows: 1})
	waitFor(t, "some rows", func() bool { return st.appliedCount() > 0 })
	r2.stop(t)
	st.mu.Lock()
	st.closed = true
	st.mu.Unlock()
	k.write(newChurn(14, 10).rows(5)...)
	time.Sleep(20 * time.Millisecond)
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.late != 0 {
		t.Errorf("%d Apply calls after Run returned", st.late)
	}
}

func TestFollowerRunTwice(t *testing.T) {
	k := newKeaSim(t, t.TempDir())
	st := newFakeStore()
	r := startFollower(t, st, FollowerConfig{Path: k.path})
	waitFor(t, "the follower to run", func() bool { return r.running.Load() })
	if err := r.Run(context.Background()); err == nil {
		t.Error("second concurrent Run returned nil, want an error")
	}
}

func TestFollowerConfigValidate(t *testing.T) {
	bad := []FollowerConfig{
		{},
		{Path: "x", MaxBatchRows: -1},
		{Path: "x", MaxLineBytes: -1},
		{Path: "x", PollInterval: -1},
		{Path: "x", RetryInterval: -1},
	}
	for i, cfg := range bad {
		if err := cfg.Validate(); err == nil {
			t.Errorf("config %d: Validate = nil, want an error", i)
		}
	}
	if _, err := NewFollower(nil, FollowerConfig{Path: "x"}); err == nil {
		t.Error("NewFollower(nil store) = nil error")
	}
}

func TestPositionRoundTrip(t *testing.T) {
	want := position{complete: true, dev: 2049, inode: 1 << 40, offset: 123456, line: 789, lastLen: 117, lastCRC: 0xdeadbeef}
	raw := want.appendTo(nil)
	if len(raw) != positionLen {
		t.Fatalf("encoded %d bytes, want %d", len(raw), positionLen)
	}
	var got position
	if err := got.decode(raw); err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("decode(encode(p)) = %+v, want %+v", got, want)
	}
	for _, bad := range [][]byte{nil, raw[:10], append([]byte{9}, raw[1:]...)} {
		if err := got.decode(bad); !errors.Is(err, errPosition) {
			t.Errorf("decode(%x) = %v, want errPosition", bad, err)
		}
	}
}

// TestTrackerKinds checks new and extend against rows of the test file.
func TestTrackerKinds(t *testing.T) {
	lines := readLeaseFile(t)
	var p Parser
	if err := p.SetHeader(lines[0]); err != nil {
		t.Fatal(err)
	}
	tr := newLeaseTracker()
	kindOf := func(line string) RowKind {
		var row Row
		if err := p.ParseRow(line, &row); err != nil {
			t.Fatal(err)
		}
		return tr.observe(&row)
	}
	if k := kindOf(lines[2-1]); k != RowNew {
		t.Errorf("line 2 = %v, want new", k)
	}
	if k := kindOf(lines[27-1]); k != RowExtend {
		t.Errorf("line 27 = %v, want extend", k)
	}
	other := strings.Replace(lines[27-1], "00:0c:02:00:00:01,30", "00:0c:02:00:00:09,30", 1)
	if k := kindOf(other); k != RowNew {
		t.Errorf("same address, other DUID = %v, want new", k)
	}
	if k := kindOf(lines[213-1]); k != RowNew {
		t.Errorf("line 213 = %v, want new", k)
	}
	if k := kindOf(lines[423-1]); k != RowExpire {
		t.Errorf("line 423 = %v, want expire", k)
	}
	if k := kindOf(lines[213-1]); k != RowNew {
		t.Errorf("assignment after expiry = %v, want new", k)
	}
	if !tr.present(netipKey(t, store.TypePD, "2001:db8:8000:2700::/56")) {
		t.Error("tracker lost a held lease")
	}
	kindOf(lines[503-1]) // flush
	if tr.present(netipKey(t, store.TypePD, "2001:db8:8000:2700::/56")) {
		t.Error("tracker still has a flushed lease")
	}
}

func netipKey(t *testing.T, typ store.BindingType, prefix string) store.Key {
	t.Helper()
	return store.Key{Type: typ, Prefix: netip.MustParsePrefix(prefix)}
}
