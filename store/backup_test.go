package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// backupFixture returns a store that holds every kind of record a backup
// must carry: IA_NA, IA_TA and IA_PD bindings, released, expired and
// declined ones, relay data, metadata, and a floor from a trim that
// removed older tombstones.
func backupFixture(t *testing.T) (*Store, *fakeClock) {
	t.Helper()
	clock := newFakeClock()
	s := openTest(t, t.TempDir(), Options{Clock: clock.Now, Retention: time.Hour})

	// Tombstones that the trim below removes.
	mustApply(t, s, na("2001:db8::100", "gone-1", ""), na("2001:db8::101", "gone-2", "2001:db8:ff::1"))
	mustApply(t, s, released(na("2001:db8::100", "gone-1", "")), released(na("2001:db8::101", "gone-2", "2001:db8:ff::1")))
	clock.Advance(2 * time.Hour)
	if err := s.Trim(clock.Now()); err != nil {
		t.Fatal(err)
	}

	relayed := with(na("2001:db8::1", "client-1", "2001:db8:ff::1"), func(b *Binding) {
		b.RelayID = []byte("relay-a")
		b.RemoteID = []byte("\x00\x00\x0d\xe9port-7")
		b.InterfaceID = []byte("ge-0/0/1.100")
		b.RelayPeer = netip.MustParseAddr("fe80::1")
		b.RelayMessage = bytes.Repeat([]byte{0x0c}, 120)
		b.Source = SourceKea
	})
	ta := with(na("2001:db8::2", "client-2", ""), func(b *Binding) { b.Key.Type = TypeTA })
	expired := with(na("2001:db8::3", "client-3", "2001:db8:ff::2"), func(b *Binding) {
		b.State = StateExpired
		b.PreferredLifetime, b.ValidLifetime = 0, 0
	})
	declined := with(na("2001:db8::4", "client-4", ""), func(b *Binding) { b.State = StateDeclined })
	mustApply(t, s, relayed, ta, pd("2001:db8:100::/56", "client-1", "2001:db8:ff::1"), na("2001:db8::5", "client-5", ""))
	clock.Advance(time.Second)
	if _, err := s.Apply(context.Background(), []Binding{expired, declined, pd("2001:db8:200::/48", "client-6", "")},
		map[string][]byte{"kea/position": []byte("offset=4711"), "empty": {}}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	mustApply(t, s, released(na("2001:db8::5", "client-5", "")))
	return s, clock
}

// backupBytes returns a backup of s.
func backupBytes(t testing.TB, s *Store) ([]byte, BackupInfo) {
	t.Helper()
	var buf bytes.Buffer
	info, err := s.Backup(context.Background(), &buf)
	if err != nil {
		t.Fatalf("Backup: %v", err)
	}
	return buf.Bytes(), info
}

// seqOrder returns "seq prefix" for every binding in history order.
func seqOrder(t *testing.T, s *Store) []string {
	t.Helper()
	var out []string
	for _, b := range collect(t, s.Changed(time.Time{}, time.Time{})) {
		out = append(out, fmt.Sprintf("%d %s", b.Seq, b.Prefix))
	}
	return out
}

func TestBackupRoundTrip(t *testing.T) {
	orig, clock := backupFixture(t)
	stream, info := backupBytes(t, orig)

	// What Backup reports.
	origFloor, origFloorSeq := orig.Floor()
	bindings := collect(t, orig.All())
	if info.Bindings != uint64(len(bindings)) || info.LastSeq != orig.LastSeq() || !info.Floor.Equal(origFloor) || info.FloorSeq != origFloorSeq {
		t.Errorf("Backup info = %+v; want %d bindings, last seq %d, floor %s seq %d", info, len(bindings), orig.LastSeq(), origFloor, origFloorSeq)
	}
	if info.StreamBytes != int64(len(stream)) || info.RawBytes <= info.StreamBytes || info.Records <= info.Bindings {
		t.Errorf("Backup info sizes: %d records, %d raw bytes, %d stream bytes for a %d-byte stream", info.Records, info.RawBytes, info.StreamBytes, len(stream))
	}
	if !bytes.Equal(info.ServerDUID, orig.ServerDUID()) || !info.Created.Equal(clock.Now()) {
		t.Errorf("Backup info DUID %x created %s; want %x, %s", info.ServerDUID, info.Created, orig.ServerDUID(), clock.Now())
	}

	// Restore and compare through the public API.
	clock.Advance(time.Minute)
	dir := filepath.Join(t.TempDir(), "restored")
	rinfo, err := Restore(context.Background(), dir, bytes.NewReader(stream), Options{Clock: clock.Now})
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if rinfo.Records != info.Records || rinfo.Bindings != info.Bindings || rinfo.RawBytes != info.RawBytes || rinfo.StreamBytes != info.StreamBytes || rinfo.LastSeq != info.LastSeq {
		t.Errorf("Restore info = %+v, Backup info = %+v", rinfo, info)
	}
	restored := openTest(t, dir, Options{Clock: clock.Now, Retention: time.Hour})
	mustVerify(t, restored)
	if got := collect(t, restored.All()); !reflect.DeepEqual(got, bindings) {
		t.Errorf("restored bindings differ:\n got %+v\nwant %+v", got, bindings)
	}
	if got, want := seqOrder(t, restored), seqOrder(t, orig); !slices.Equal(got, want) {
		t.Errorf("restored history = %v, want %v", got, want)
	}
	for _, key := range []string{"kea/position", "empty", "absent"} {
		got, err := restored.Meta(key)
		want, _ := orig.Meta(key)
		if err != nil || !bytes.Equal(got, want) || (got == nil) != (want == nil) {
			t.Errorf("Meta(%q) = %q, %v; want %q", key, got, err, want)
		}
	}
	if !bytes.Equal(restored.ServerDUID(), orig.ServerDUID()) || restored.LastSeq() != orig.LastSeq() {
		t.Errorf("restored DUID %x last seq %d; want %x, %d", restored.ServerDUID(), restored.LastSeq(), orig.ServerDUID(), orig.LastSeq())
	}
	for _, addr := range []string{"2001:db8::1", "2001:db8:100::9", "2001:db8::5"} {
		got, ok, err := restored.LookupAddress(netip.MustParseAddr(addr))
		want, _, _ := orig.LookupAddress(netip.MustParseAddr(addr))
		if err != nil || !ok || !reflect.DeepEqual(got, want) {
			t.Errorf("LookupAddress(%s) = %+v, %v, %v; want %+v", addr, got, ok, err, want)
		}
	}
	if got := collect(t, restored.ByRelayID([]byte("relay-a"), netip.Addr{})); len(got) != 1 || got[0].Prefix.Addr() != netip.MustParseAddr("2001:db8::1") {
		t.Errorf("ByRelayID(relay-a) = %v, want 2001:db8::1", prefixes(got))
	}
}

func TestRestoreRaisesFloor(t *testing.T) {
	orig, clock := backupFixture(t)
	stream, info := backupBytes(t, orig)
	_, origFloorSeq := orig.Floor()

	// The original commits a change after the backup. A requestor
	// receives it, and the restore loses it.
	clock.Advance(10 * time.Second)
	mustApply(t, orig, released(na("2001:db8::1", "client-1", "2001:db8:ff::1")))
	seen := clock.Now().Truncate(time.Second) // the requestor's next start time
	clock.Advance(30 * time.Second)

	dir := filepath.Join(t.TempDir(), "restored")
	restoreTime := clock.Now()
	rinfo, err := Restore(context.Background(), dir, bytes.NewReader(stream), Options{Clock: clock.Now})
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	restored := openTest(t, dir, Options{Clock: clock.Now, Retention: time.Hour})

	// The floor time is the restore time; the floor seq stops below the
	// oldest tombstone still in the history.
	floorTime, floorSeq := restored.Floor()
	var oldestEnded uint64 = math.MaxUint64
	for _, b := range collect(t, restored.All()) {
		if b.State.Ended() {
			oldestEnded = min(oldestEnded, b.Seq)
		}
	}
	if wantSeq := max(origFloorSeq, min(info.LastSeq, oldestEnded-1)); !floorTime.Equal(restoreTime) || floorSeq != wantSeq {
		t.Errorf("Floor = %s seq %d; want %s seq %d", floorTime, floorSeq, restoreTime, wantSeq)
	}
	if !rinfo.RestoredFloor.Equal(floorTime) || rinfo.RestoredFloorSeq != floorSeq {
		t.Errorf("Restore info floor = %s seq %d, store floor %s seq %d", rinfo.RestoredFloor, rinfo.RestoredFloorSeq, floorTime, floorSeq)
	}

	// Every start time from before the restore gets DataMissing, as the
	// server decides it; a start after a later change catches up.
	for _, start := range []time.Time{testEpoch, info.LastChange.Truncate(time.Second), seen, restoreTime.Add(-time.Second).Truncate(time.Second)} {
		if missing, _ := catchUpStart(t, restored, start); !missing {
			t.Errorf("catch-up from %s (restore at %s) is not DataMissing", start, restoreTime)
		}
	}
	clock.Advance(5 * time.Second)
	seq := mustApply(t, restored, na("2001:db8::9", "client-9", ""))
	start := restoreTime.Add(time.Second).Truncate(time.Second)
	missing, after := catchUpStart(t, restored, start)
	if missing || after != seq-1 {
		t.Errorf("catch-up from %s = missing %v, after seq %d; want a catch-up after seq %d", start, missing, after, seq-1)
	}

	// Once the retention has passed, Trim removes the restored tombstones.
	clock.Advance(2 * time.Hour)
	if err := restored.Trim(clock.Now()); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, restored)
	for _, b := range collect(t, restored.All()) {
		if b.State.Ended() {
			t.Errorf("tombstone %s (seq %d) survived a trim past the retention", b.Prefix, b.Seq)
		}
	}
}

// catchUpStart decides an Active Leasequery start time the way the server
// does (server/publish.go, seqBefore): the catch-up begins after the Seq
// before the first change at or after start, and the history is missing
// when start is before the floor time or that Seq is below the floor seq.
func catchUpStart(t *testing.T, s *Store, start time.Time) (missing bool, after uint64) {
	t.Helper()
	after = s.LastSeq()
	it := s.Changed(start, time.Time{})
	if it.Next() {
		after = it.Binding().Seq - 1
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	floorTime, floorSeq := s.Floor()
	return start.Before(floorTime) || after < floorSeq, after
}

func TestBackupDuringApply(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{NoSync: true})
	mustApply(t, s, na("2001:db8::1", "seed", ""))

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			b := benchBinding(i%2000, 8)
			if i%3 == 0 {
				b = released(b)
			}
			if _, err := s.Apply(ctx, []Binding{b, benchBinding(i%2000+2000, 8)}, nil); err != nil && ctx.Err() == nil {
				t.Errorf("Apply: %v", err)
				return
			}
		}
	}()

	// Back up until some ran while the writer committed.
	var stream []byte
	var info BackupInfo
	for round := 0; round < 50; round++ {
		before := s.LastSeq()
		stream, info = backupBytes(t, s)
		if s.LastSeq() > info.LastSeq && info.LastSeq > before {
			break
		}
	}
	cancel()
	wg.Wait()
	if s.LastSeq() <= info.LastSeq {
		t.Fatalf("the writer committed nothing during the last backup (last seq %d, backup %d)", s.LastSeq(), info.LastSeq)
	}

	dir := filepath.Join(t.TempDir(), "restored")
	if _, err := Restore(context.Background(), dir, bytes.NewReader(stream), Options{}); err != nil {
		t.Fatalf("Restore of a backup taken during Apply: %v", err)
	}
	restored := openTest(t, dir, Options{})
	mustVerify(t, restored)
	if restored.LastSeq() != info.LastSeq || uint64(len(collect(t, restored.All()))) != info.Bindings {
		t.Errorf("restored last seq %d with %d bindings; the backup has %d and %d", restored.LastSeq(), len(collect(t, restored.All())), info.LastSeq, info.Bindings)
	}
}

func TestBackupContextDone(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	mustApply(t, s, na("2001:db8::1", "a", ""))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Backup(ctx, io.Discard); !errors.Is(err, context.Canceled) {
		t.Errorf("Backup with a cancelled context = %v, want context.Canceled", err)
	}
}

// failingWriter fails every write after the first limit bytes.
type failingWriter struct{ limit int }

var errWriteFailed = errors.New("disk full")

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.limit {
		n := w.limit
		w.limit = 0
		return n, errWriteFailed
	}
	w.limit -= len(p)
	return len(p), nil
}

func TestBackupWriteError(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{NoSync: true})
	for i := range 500 {
		mustApply(t, s, benchBinding(i, 4))
	}
	_, err := s.Backup(context.Background(), &failingWriter{limit: 100})
	if !errors.Is(err, errWriteFailed) {
		t.Errorf("Backup to a failing writer = %v, want %v", err, errWriteFailed)
	}
}

// backupContent returns the decompressed content of a backup stream.
func backupContent(t testing.TB, stream []byte) []byte {
	t.Helper()
	zr, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	content, err := zr.DecodeAll(stream, nil)
	if err != nil {
		t.Fatal(err)
	}
	return content
}

// compress returns content as a zstd stream.
func compress(t testing.TB, content []byte) []byte {
	t.Helper()
	zw, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer zw.Close()
	return zw.EncodeAll(content, nil)
}

// resum replaces the trailer checksum of content by the CRC-32C of what
// precedes it, so that a test reaches the check after the checksum.
func resum(content []byte) []byte {
	out := slices.Clone(content)
	crc := crc32.Checksum(out[:len(out)-4], castagnoli)
	binary.BigEndian.PutUint32(out[len(out)-4:], crc)
	return out
}

// editContent decompresses stream, lets edit change the content, and
// compresses it again.
func editContent(t testing.TB, stream []byte, edit func([]byte) []byte) []byte {
	t.Helper()
	return compress(t, edit(slices.Clone(backupContent(t, stream))))
}

func TestRestoreRejects(t *testing.T) {
	orig, _ := backupFixture(t)
	stream, _ := backupBytes(t, orig)
	content := backupContent(t, stream)
	headerLen := backupHeaderFixedLen + len(orig.ServerDUID())
	firstKeyAt := headerLen + 1 // after the first key length

	tests := []struct {
		name   string
		stream []byte
		want   error
	}{
		{"empty input", nil, ErrBackupInvalid},
		{"not zstd", []byte("this is not a backup\n"), ErrBackupInvalid},
		{"truncated in the header", stream[:20], ErrBackupInvalid},
		{"truncated in half", stream[:len(stream)/2], ErrBackupInvalid},
		{"truncated by one byte", stream[:len(stream)-1], ErrBackupInvalid},
		{"content without trailer", compress(t, content[:len(content)-backupTrailerLen]), ErrBackupInvalid},
		{"content without checksum", compress(t, content[:len(content)-4]), ErrBackupInvalid},
		{"flipped byte in the stream", flipByte(stream, len(stream)/2), ErrBackupInvalid},
		{"flipped byte in the frame checksum", flipByte(stream, len(stream)-2), ErrBackupInvalid},
		{"flipped byte in a value", editContent(t, stream, func(c []byte) []byte { c[len(c)/2] ^= 0x40; return c }), ErrBackupInvalid},
		{"flipped byte in the trailer count", editContent(t, stream, func(c []byte) []byte {
			c[len(c)-backupTrailerLen+7]++
			return resum(c)
		}), ErrBackupInvalid},
		{"wrong magic", editContent(t, stream, func(c []byte) []byte { copy(c, "NOTALQD!"); return c }), ErrBackupInvalid},
		{"format version 2", editContent(t, stream, func(c []byte) []byte { c[9] = 2; return c }), ErrBackupVersion},
		{"layout version 3", editContent(t, stream, func(c []byte) []byte { c[13] = 3; return c }), ErrBackupVersion},
		{"short server DUID", editContent(t, stream, func(c []byte) []byte { c[headerLen-len(orig.ServerDUID())-1] = 2; return c }), ErrBackupInvalid},
		{"key out of order", editContent(t, stream, func(c []byte) []byte { c[firstKeyAt] = 'z'; return resum(c) }), ErrBackupInvalid},
		{"non-minimal length", editContent(t, stream, func(c []byte) []byte {
			// The first key length again, as two bytes.
			out := append(slices.Clone(c[:headerLen]), c[headerLen]|0x80, 0x00)
			return resum(append(out, c[headerLen+1:]...))
		}), ErrBackupInvalid},
		{"data after the trailer", editContent(t, stream, func(c []byte) []byte { return append(c, 0) }), ErrBackupInvalid},
		{"zstd frame after the stream", append(slices.Clone(stream), compress(t, []byte("more"))...), ErrBackupInvalid},
		{"garbage after the stream", append(slices.Clone(stream), "garbage"...), ErrBackupInvalid},
		{"header DUID differs from the record", editContent(t, stream, func(c []byte) []byte { c[headerLen-1] ^= 1; return resum(c) }), ErrBackupInvalid},
		{"header last seq differs from the record", editContent(t, stream, func(c []byte) []byte { c[len(backupMagic)+6+8+7]++; return resum(c) }), ErrBackupInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "restored")
			_, err := Restore(context.Background(), dir, bytes.NewReader(tc.stream), Options{})
			if !errors.Is(err, tc.want) {
				t.Fatalf("Restore = %v, want %v", err, tc.want)
			}
			t.Logf("error: %v", err)
			assertDirEntries(t, parent, nil)
		})
	}
}

func flipByte(b []byte, i int) []byte {
	out := slices.Clone(b)
	out[i] ^= 0x01
	return out
}

// assertDirEntries checks that dir holds exactly the entries want.
func assertDirEntries(t *testing.T, dir string, want []string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, want) {
		t.Errorf("%s holds %q, want %q", dir, names, want)
	}
}

func TestRestoreVersionError(t *testing.T) {
	orig, _ := backupFixture(t)
	stream, _ := backupBytes(t, orig)
	stream = editContent(t, stream, func(c []byte) []byte { c[9] = 7; return c })
	_, err := Restore(context.Background(), filepath.Join(t.TempDir(), "x"), bytes.NewReader(stream), Options{})
	want := "store: unsupported backup version: the backup has format version 7; this alqd reads version 1 only"
	if err == nil || err.Error() != want {
		t.Errorf("Restore error = %v, want %q", err, want)
	}
}

func TestRestoreTargetNotEmpty(t *testing.T) {
	orig, _ := backupFixture(t)
	stream, _ := backupBytes(t, orig)

	parent := t.TempDir()
	dir := filepath.Join(parent, "target")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "keep"), []byte("operator data"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(context.Background(), dir, bytes.NewReader(stream), Options{}); !errors.Is(err, ErrTargetNotEmpty) {
		t.Fatalf("Restore into a directory with a file = %v, want ErrTargetNotEmpty", err)
	}
	assertDirEntries(t, dir, []string{"keep"})
	if data, _ := os.ReadFile(filepath.Join(dir, "keep")); string(data) != "operator data" {
		t.Errorf("the file in the target now holds %q", data)
	}
	assertDirEntries(t, parent, []string{"target"})

	// A directory that holds a store is refused the same way.
	used := t.TempDir()
	openTest(t, used, Options{})
	if _, err := Restore(context.Background(), used, bytes.NewReader(stream), Options{}); !errors.Is(err, ErrTargetNotEmpty) {
		t.Errorf("Restore over a store = %v, want ErrTargetNotEmpty", err)
	}
}

func TestRestoreIntoEmptyDirectory(t *testing.T) {
	orig, _ := backupFixture(t)
	stream, _ := backupBytes(t, orig)
	dir := t.TempDir()
	if _, err := Restore(context.Background(), dir, bytes.NewReader(stream), Options{}); err != nil {
		t.Fatalf("Restore into an empty directory: %v", err)
	}
	restored := openTest(t, dir, Options{})
	mustVerify(t, restored)
	if restored.LastSeq() != orig.LastSeq() {
		t.Errorf("restored last seq %d, want %d", restored.LastSeq(), orig.LastSeq())
	}
}

func TestRestoreRejectsOtherServerDUID(t *testing.T) {
	orig, _ := backupFixture(t)
	stream, _ := backupBytes(t, orig)
	parent := t.TempDir()
	_, err := Restore(context.Background(), filepath.Join(parent, "x"), bytes.NewReader(stream), Options{ServerDUID: []byte{0, 4, 1, 2, 3}})
	if !errors.Is(err, ErrIncompatible) {
		t.Fatalf("Restore with another configured server DUID = %v, want ErrIncompatible", err)
	}
	assertDirEntries(t, parent, nil)
}

func TestRestoreContextDone(t *testing.T) {
	orig, _ := backupFixture(t)
	stream, _ := backupBytes(t, orig)
	parent := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Restore(ctx, filepath.Join(parent, "x"), bytes.NewReader(stream), Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Restore with a cancelled context = %v, want context.Canceled", err)
	}
	assertDirEntries(t, parent, nil)
}

// failingReader returns its data, then err.
type failingReader struct {
	data []byte
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestRestoreSourceError(t *testing.T) {
	orig, _ := backupFixture(t)
	stream, _ := backupBytes(t, orig)
	errReset := errors.New("connection reset")
	parent := t.TempDir()
	_, err := Restore(context.Background(), filepath.Join(parent, "x"), &failingReader{data: stream[:len(stream)/2], err: errReset}, Options{})
	if !errors.Is(err, errReset) || errors.Is(err, ErrBackupInvalid) {
		t.Fatalf("Restore from a failing reader = %v, want the reader's error and not ErrBackupInvalid", err)
	}
	assertDirEntries(t, parent, nil)
}

func TestRestoreEmptyStore(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	stream, info := backupBytes(t, s)
	if info.Bindings != 0 || info.LastSeq != 0 || !info.LastChange.IsZero() || !info.Floor.IsZero() {
		t.Errorf("Backup info of an empty store = %+v", info)
	}
	dir := filepath.Join(t.TempDir(), "restored")
	if _, err := Restore(context.Background(), dir, bytes.NewReader(stream), Options{}); err != nil {
		t.Fatalf("Restore of an empty store: %v", err)
	}
	restored := openTest(t, dir, Options{})
	if restored.LastSeq() != 0 || !bytes.Equal(restored.ServerDUID(), s.ServerDUID()) {
		t.Errorf("restored empty store: last seq %d, DUID %x", restored.LastSeq(), restored.ServerDUID())
	}
}

// FuzzRestore feeds arbitrary streams to Restore. A stream that restores
// must yield a store that backs up and restores again to the same records.
func FuzzRestore(f *testing.F) {
	s := openTest(f, f.TempDir(), Options{})
	mustApply(f, s, na("2001:db8::1", "a", "2001:db8:ff::1"), released(pd("2001:db8:1::/56", "b", "")))
	var buf bytes.Buffer
	if _, err := s.Backup(context.Background(), &buf); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add(compress(f, backupContent(f, buf.Bytes())[:60]))
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd})

	f.Fuzz(func(t *testing.T, stream []byte) { checkRestoreInput(t, stream) })
}

// FuzzRestoreContent feeds arbitrary decompressed content to Restore, in
// a valid zstd stream, so that the fuzzer reaches the record decoder that
// FuzzRestore mostly reaches only through zstd errors.
func FuzzRestoreContent(f *testing.F) {
	s := openTest(f, f.TempDir(), Options{})
	mustApply(f, s, na("2001:db8::1", "a", "2001:db8:ff::1"), released(pd("2001:db8:1::/56", "b", "")))
	var buf bytes.Buffer
	if _, err := s.Backup(context.Background(), &buf); err != nil {
		f.Fatal(err)
	}
	content := backupContent(f, buf.Bytes())
	f.Add(content)
	f.Add(content[:len(content)/2])
	f.Add(resum(append(slices.Clone(content[:len(content)-backupTrailerLen-1]), make([]byte, backupTrailerLen+1)...)))

	f.Fuzz(func(t *testing.T, content []byte) { checkRestoreInput(t, compress(t, content)) })
}

// checkRestoreInput restores stream. A failed restore must leave nothing
// behind, and a restored store must back up and restore again to the
// same records.
func checkRestoreInput(t *testing.T, stream []byte) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "restored")
	info, err := Restore(context.Background(), dir, bytes.NewReader(stream), Options{})
	if err != nil {
		if _, statErr := os.Stat(dir); statErr == nil {
			t.Fatalf("Restore failed (%v) but left %s", err, dir)
		}
		return
	}
	restored, err := Open(dir, Options{TrimInterval: -1})
	if err != nil {
		t.Fatalf("Open of a restored store: %v", err)
	}
	var again bytes.Buffer
	_, berr := restored.Backup(context.Background(), &again)
	if cerr := restored.Close(); berr != nil || cerr != nil {
		t.Fatalf("Backup of a restored store: %v, %v", berr, cerr)
	}
	info2, err := Restore(context.Background(), filepath.Join(t.TempDir(), "again"), &again, Options{})
	if err != nil {
		t.Fatalf("Restore of a backup of a restored store: %v", err)
	}
	if info2.Records != info.Records || info2.Bindings != info.Bindings || info2.LastSeq != info.LastSeq {
		t.Errorf("second restore has %d records, %d bindings, last seq %d; first %d, %d, %d",
			info2.Records, info2.Bindings, info2.LastSeq, info.Records, info.Bindings, info.LastSeq)
	}
}
