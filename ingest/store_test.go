package ingest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/alqd/alqd/store"
)

// TestFollowerWithStore follows the Kea test file into a real store, then
// restarts on a reopened store and checks that it continues from the stored
// position.
func TestFollowerWithStore(t *testing.T) {
	dir := t.TempDir()
	data, err := os.ReadFile("../testdata/kea/leases6.csv")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "leases6.csv")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	lines := readLeaseFile(t)
	_, want := replay(t, lines[1:])

	dbDir := filepath.Join(dir, "db")
	st, err := store.Open(dbDir, store.Options{TrimInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	cfg := FollowerConfig{Path: path, ListBindings: StoreBindings(st)}
	first := startFollower(t, st, cfg)
	waitFor(t, "the whole file", func() bool { return storedComplete(t, st) && first.Stats().RowsRead == uint64(len(lines)-1) })
	first.stop(t)
	for key, w := range want {
		got, ok, err := st.Get(key)
		if err != nil || !ok {
			t.Fatalf("Get(%v) = %v, %v", key.Prefix, ok, err)
		}
		if !bindingsEqual(&got, &w) {
			t.Errorf("binding %v:\n got %s\nwant %s", key.Prefix, describe(&got), describe(&w))
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	// Restart on the reopened store: only the new rows are read.
	k := &keaSim{t: t, path: path}
	k.openLive()
	defer k.live.Close()
	k.write(newChurn(20, 5).rows(7)...)
	st, err = store.Open(dbDir, store.Options{TrimInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	second := startFollower(t, st, FollowerConfig{Path: path, ListBindings: StoreBindings(st)})
	waitFor(t, "the new rows", func() bool { return second.Stats().RowsRead == 7 })
	second.stop(t)
	if s := second.Stats(); s.Reloads != 0 || s.ChangesApplied != 7 {
		t.Errorf("second run: reloads %d, changes %d; want 0 and 7", s.Reloads, s.ChangesApplied)
	}
}

func storedComplete(t *testing.T, st *store.Store) bool {
	raw, err := st.Meta(DefaultPositionKey)
	if err != nil {
		t.Fatal(err)
	}
	var pos position
	return pos.decode(raw) == nil && pos.complete
}

// rejectingStore rejects every batch that contains a binding of one prefix,
// as the store does for a binding it can not store.
type rejectingStore struct {
	*fakeStore
	reject store.Key
}

func (s *rejectingStore) Apply(ctx context.Context, changes []store.Binding, meta map[string][]byte) (uint64, error) {
	for i := range changes {
		if changes[i].Key == s.reject {
			return 0, errors.Join(store.ErrInvalidBinding, errors.New("test rejects this key"))
		}
	}
	return s.fakeStore.Apply(ctx, changes, meta)
}

// TestFollowerSkipsRejectedBinding checks that a binding the store rejects
// is skipped as malformed instead of being retried forever.
func TestFollowerSkipsRejectedBinding(t *testing.T) {
	k := newKeaSim(t, t.TempDir())
	rows := newChurn(21, 10).rows(12)
	k.write(rows...)
	bindings, _ := replay(t, rows)
	st := &rejectingStore{fakeStore: newFakeStore(), reject: bindings[5].Key}
	want := make([]store.Binding, 0, len(bindings))
	for _, b := range bindings {
		if b.Key != st.reject {
			want = append(want, b)
		}
	}

	r := startFollower(t, st, FollowerConfig{Path: k.path})
	waitFor(t, "the accepted rows", func() bool { return st.appliedCount() == len(want) && complete(st.fakeStore) })
	r.stop(t)
	assertSequence(t, st.snapshotApplied(), want)
	if s := r.Stats(); s.MalformedRows != uint64(len(bindings)-len(want)) || s.ApplyErrors != 0 {
		t.Errorf("malformed %d apply errors %d, want %d and 0", s.MalformedRows, s.ApplyErrors, len(bindings)-len(want))
	}
}
