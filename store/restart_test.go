package store

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

func TestReopenReadsBackEverything(t *testing.T) {
	dir := t.TempDir()
	clock := newFakeClock()
	opts := Options{Clock: clock.Now, Retention: time.Hour, TrimInterval: -1}

	// First run: bindings of every type, a trim, metadata.
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	fixture := indexFixture()
	mustApply(t, s, fixture...)
	mustApply(t, s, released(na("2001:db8::9", "gone", "")))
	clock.Advance(2 * time.Hour)
	if err := s.Trim(clock.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(context.Background(), []Binding{pd("2001:db8:200::/60", "late", "")}, map[string][]byte{"pos": []byte("p1")}); err != nil {
		t.Fatal(err)
	}
	duid, lastSeq := s.ServerDUID(), s.LastSeq()
	floorTime, floorSeq := s.Floor()
	all := collect(t, s.All())
	changed := collect(t, s.Changed(time.Time{}, time.Time{}))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Second run reads back the same state.
	s = openTest(t, dir, opts)
	if !bytes.Equal(s.ServerDUID(), duid) {
		t.Errorf("ServerDUID = %x, want %x", s.ServerDUID(), duid)
	}
	if s.LastSeq() != lastSeq {
		t.Errorf("LastSeq = %d, want %d", s.LastSeq(), lastSeq)
	}
	if ft, fs := s.Floor(); !ft.Equal(floorTime) || fs != floorSeq {
		t.Errorf("Floor = %s, %d; want %s, %d", ft, fs, floorTime, floorSeq)
	}
	if v, _ := s.Meta("pos"); string(v) != "p1" {
		t.Errorf("Meta(pos) = %q, want p1", v)
	}
	assertSameBindings(t, "All", collect(t, s.All()), all)
	assertSameBindings(t, "Changed", collect(t, s.Changed(time.Time{}, time.Time{})), changed)
	if b, ok, err := s.LookupAddress(netip.MustParseAddr("2001:db8:200:5::1")); !ok || err != nil || string(b.ClientID) != "late" {
		t.Errorf("LookupAddress in the /60 after reopen = %q, %v, %v", b.ClientID, ok, err)
	}
	mustVerify(t, s)

	// The counter goes on where it stopped, and the time index too.
	clock.Advance(time.Second)
	if seq := mustApply(t, s, na("2001:db8::a", "next", "")); seq != lastSeq+1 {
		t.Errorf("first seq after reopen = %d, want %d", seq, lastSeq+1)
	}
	if got := collect(t, s.Changed(clock.Now(), time.Time{})); len(got) != 1 || got[0].Seq != lastSeq+1 {
		t.Errorf("Changed(now) after reopen = %v, want the new change", prefixes(got))
	}
	mustVerify(t, s)
}

// quietPebbleOptions opens Pebble directly, without its log lines.
func quietPebbleOptions() *pebble.Options {
	return &pebble.Options{FormatMajorVersion: pebble.FormatNewest, Logger: pebbleLogger{slog.New(slog.DiscardHandler)}}
}

func assertSameBindings(t *testing.T, what string, got, want []Binding) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s yields %d bindings, want %d", what, len(got), len(want))
	}
	for i := range got {
		if !sameFields(got[i], want[i]) || got[i].Seq != want[i].Seq || !got[i].ChangeTime.Equal(want[i].ChangeTime) {
			t.Errorf("%s binding %d = %+v, want %+v", what, i, got[i], want[i])
		}
	}
}

func TestOpenRejectsForeignDatabase(t *testing.T) {
	dir := t.TempDir()
	db, err := pebble.Open(dir, quietPebbleOptions())
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Set([]byte("other"), []byte("data"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(dir, Options{}); !errors.Is(err, ErrIncompatible) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("Open of a foreign database = %v, want ErrIncompatible", err)
	}
}

func TestOpenRejectsOtherLayout(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{TrimInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	rawSet(t, dir, internalKey(internalLayout), []byte{0, 0, 0, 3})
	if s, err := Open(dir, Options{}); !errors.Is(err, ErrIncompatible) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("Open of layout 3 = %v, want ErrIncompatible", err)
	}
}

// TestOpenUpgradesLayout1 opens a store written before bindings had a
// source: its values decode with SourceUnknown, the layout record is
// upgraded, and the first write from a source is a change even when every
// other field is equal.
func TestOpenUpgradesLayout1(t *testing.T) {
	dir := t.TempDir()
	b := na("2001:db8::1", "client-1", "2001:db8:a::1")
	s, err := Open(dir, Options{TrimInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, b)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Rewrite the store as layout 1: the value without its Source octet.
	bk := encodeBKey(b.Key)
	key := appendBindingKey(nil, &bk)
	v2 := rawGet(t, dir, key)
	v1 := slices.Concat([]byte{valueVersion1}, v2[1:19], v2[20:])
	rawSet(t, dir, key, v1)
	rawSet(t, dir, internalKey(internalLayout), []byte{0, 0, 0, 1})

	s = openTest(t, dir, Options{})
	got, ok, err := s.Get(b.Key)
	if err != nil || !ok {
		t.Fatalf("Get = %v, %v", ok, err)
	}
	if got.Source != SourceUnknown || !sameFields(got, b) {
		t.Errorf("Get = %+v, want %+v with source unknown", got, b)
	}
	mustVerify(t, s)
	before := s.LastSeq()
	kea := with(b, func(b *Binding) { b.Source = SourceKea })
	if seq := mustApply(t, s, kea); seq != before+1 {
		t.Errorf("Apply with a source over a version 1 value: last seq %d, want %d (a change)", seq, before+1)
	}
	if seq := mustApply(t, s, kea); seq != before+1 {
		t.Errorf("Apply of the same state again: last seq %d, want %d (no change)", seq, before+1)
	}
	if got, _, _ := s.Get(b.Key); got.Source != SourceKea {
		t.Errorf("Get after Apply: source %v, want %v", got.Source, SourceKea)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if layout := rawGet(t, dir, internalKey(internalLayout)); !bytes.Equal(layout, []byte{0, 0, 0, layoutVersion}) {
		t.Errorf("layout record after Open = %x, want %d", layout, layoutVersion)
	}
}

func TestOpenServerDUIDMismatch(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{TrimInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	duid := s.ServerDUID()
	s.Close()

	s = openTest(t, dir, Options{ServerDUID: duid})
	s.Close()
	if s, err := Open(dir, Options{ServerDUID: []byte{0, 2, 0, 0, 0, 1, 'x'}}); !errors.Is(err, ErrIncompatible) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("Open with another ServerDUID = %v, want ErrIncompatible", err)
	}
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		opts Options
	}{
		{"negative cache", Options{BlockCacheSize: -1}},
		{"tiny memtable", Options{MemTableSize: 1000}},
		{"negative retention", Options{Retention: -time.Hour}},
		{"sub-second retention", Options{Retention: time.Millisecond}},
		{"negative group", Options{MaxGroupChanges: -1}},
		{"negative open files", Options{MaxOpenFiles: -1}},
		{"too few open files", Options{MaxOpenFiles: 99}},
		{"short DUID", Options{ServerDUID: []byte{0, 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.opts.Validate(); err == nil {
				t.Error("Validate = nil, want an error")
			}
			if s, err := Open(t.TempDir(), tt.opts); err == nil {
				s.Close()
				t.Error("Open succeeded")
			}
		})
	}
	if err := (&Options{}).Validate(); err != nil {
		t.Errorf("zero Options: %v", err)
	}
}

func TestMaxOpenFiles(t *testing.T) {
	tests := []struct {
		set, want int
	}{
		{0, DefaultMaxOpenFiles},
		{100, 100},
		{2000, 2000},
	}
	for _, tt := range tests {
		s, err := Open(t.TempDir(), Options{MaxOpenFiles: tt.set, NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		if got := s.MaxOpenFiles(); got != tt.want {
			t.Errorf("MaxOpenFiles with %d set = %d, want %d", tt.set, got, tt.want)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// drain reads it to the end and returns the error of Close.
func drain(it Iterator) error {
	for it.Next() {
	}
	return it.Close()
}

// rawSet writes one key into the closed store in dir, bypassing the store.
// rawGet reads key from the Pebble database in dir, which must be closed.
func rawGet(t *testing.T, dir string, key []byte) []byte {
	t.Helper()
	db, err := pebble.Open(dir, quietPebbleOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	value, closer, err := db.Get(key)
	if err != nil {
		t.Fatalf("reading key %x: %v", key, err)
	}
	defer closer.Close()
	return bytes.Clone(value)
}

func rawSet(t *testing.T, dir string, key, value []byte) {
	t.Helper()
	db, err := pebble.Open(dir, quietPebbleOptions())
	if err != nil {
		t.Fatal(err)
	}
	if value == nil {
		err = db.Delete(key, pebble.Sync)
	} else {
		err = db.Set(key, value, pebble.Sync)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestCorruptDataIsReported(t *testing.T) {
	b := with(na("2001:db8::1", "c1", "2001:db8:a::1"), func(b *Binding) { b.RelayID = []byte("relay") })
	bk := encodeBKey(b.Key)
	bindingKey := appendBindingKey(nil, &bk)

	tests := []struct {
		name    string
		key     []byte
		value   []byte // nil deletes the key
		query   func(s *Store) error
		wantKey []byte // the key the error must name
	}{
		{"undecodable value, Get", bindingKey, []byte{1, 2, 3},
			func(s *Store) error { _, _, err := s.Get(b.Key); return err }, bindingKey},
		{"undecodable value, index scan", bindingKey, []byte{9},
			func(s *Store) error { return drain(s.ByRelayID([]byte("relay"), netip.Addr{})) }, bindingKey},
		{"undecodable value, history scan", bindingKey, []byte{9},
			func(s *Store) error { return drain(s.ChangedSince(0)) }, bindingKey},
		{"undecodable value, Apply", bindingKey, []byte{9},
			func(s *Store) error { _, err := s.Apply(context.Background(), []Binding{b}, nil); return err }, bindingKey},
		{"index entry without binding", bindingKey, nil,
			func(s *Store) error { return drain(s.ByLinkAddress(b.LinkAddress)) },
			appendLinkKey(nil, b.LinkAddress, &bk)},
		{"history entry without binding", bindingKey, nil,
			func(s *Store) error { return drain(s.Changed(time.Time{}, time.Time{})) },
			appendHistoryKey(nil, 1, &bk)},
		{"index entry for another link", appendLinkKey(nil, netip.MustParseAddr("2001:db8:b::1"), &bk), []byte{},
			func(s *Store) error { return drain(s.ByLinkAddress(netip.MustParseAddr("2001:db8:b::1"))) },
			appendLinkKey(nil, netip.MustParseAddr("2001:db8:b::1"), &bk)},
		{"stale history entry", appendHistoryKey(nil, 1, &bk), nil, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(dir, Options{TrimInterval: -1})
			if err != nil {
				t.Fatal(err)
			}
			mustApply(t, s, b)
			s.Close()
			rawSet(t, dir, tt.key, tt.value)

			s = openTest(t, dir, Options{})
			if tt.query != nil {
				err := tt.query(s)
				var ce *CorruptError
				if !errors.As(err, &ce) {
					t.Fatalf("query error = %v, want a *CorruptError", err)
				}
				if !bytes.Equal(ce.Key, tt.wantKey) {
					t.Errorf("CorruptError names key %x, want %x", ce.Key, tt.wantKey)
				}
			}
			if err := s.Verify(); !isCorrupt(err) {
				t.Errorf("Verify = %v, want a report of corrupt data", err)
			}
		})
	}
}

func TestCorruptDataStopsWrites(t *testing.T) {
	dir := t.TempDir()
	b := na("2001:db8::1", "c1", "")
	s, err := Open(dir, Options{TrimInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, b)
	s.Close()
	bk := encodeBKey(b.Key)
	rawSet(t, dir, appendBindingKey(nil, &bk), []byte{1})

	s = openTest(t, dir, Options{})
	if _, err := s.Apply(context.Background(), []Binding{with(b, func(b *Binding) { b.IAID = 9 })}, nil); !isCorrupt(err) {
		t.Fatalf("Apply over a corrupt binding = %v, want ErrCorrupt", err)
	}
	// Every later write fails with the same error, even on other keys.
	_, err = s.Apply(context.Background(), []Binding{na("2001:db8::2", "c2", "")}, nil)
	if !isCorrupt(err) || !isCorrupt(s.Err()) {
		t.Errorf("later Apply = %v, Err = %v; want ErrCorrupt", err, s.Err())
	}
}

func TestVerifyListsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{TrimInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, indexFixture()...)
	s.Close()
	// Remove every link-address index entry of link A (5 bindings) and
	// add a key outside every keyspace.
	linkA := netip.MustParseAddr("2001:db8:a::1")
	var removed int
	for _, b := range indexFixture() {
		if b.LinkAddress == linkA {
			bk := encodeBKey(b.Key)
			rawSet(t, dir, appendLinkKey(nil, linkA, &bk), nil)
			removed++
		}
	}
	rawSet(t, dir, []byte("zzz"), []byte{})

	s = openTest(t, dir, Options{})
	var ie *InconsistencyError
	if err := s.Verify(); !errors.As(err, &ie) {
		t.Fatalf("Verify = %v, want an *InconsistencyError", err)
	}
	if ie.Total != removed+1 || len(ie.Problems) != ie.Total {
		t.Errorf("Verify found %d problems (%d listed), want %d:\n%v", ie.Total, len(ie.Problems), removed+1, ie)
	}
	keys := make([]string, 0, len(ie.Problems))
	for _, p := range ie.Problems {
		var ce *CorruptError
		if errors.As(p, &ce) {
			keys = append(keys, string(ce.Key[:1]))
		}
	}
	if !slices.Contains(keys, "z") {
		t.Errorf("Verify problems %v do not name the unknown key", ie)
	}
}
