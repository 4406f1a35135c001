package store

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// headerOf returns the header of a backup content: everything before the
// first record.
func headerOf(t *testing.T, content []byte) []byte {
	t.Helper()
	duidLen := int(binary.BigEndian.Uint16(content[backupHeaderFixedLen-2:]))
	return slices.Clone(content[:backupHeaderFixedLen+duidLen])
}

// allocatedBy returns the bytes fn allocated on the heap.
func allocatedBy(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestRestoreDeclaredLengthAllocation checks that a record length the
// stream does not back with data costs no allocation of that size. A
// length past the limit is rejected before any read, and a buffer for one
// within it grows only as the bytes arrive.
func TestRestoreDeclaredLengthAllocation(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	stream, _ := backupBytes(t, s)
	header := headerOf(t, backupContent(t, stream))
	key := []byte("mhuge") // a metadata key

	tests := []struct {
		name     string
		keyLen   uint64
		valueLen uint64
	}{
		{"1 GiB key", 1 << 30, 0},
		{"key one past the limit", maxBackupKeyLen + 1, 0},
		{"key at the limit", maxBackupKeyLen, 0},
		{"1 GiB value", uint64(len(key)), 1 << 30},
		{"2^64-1 value", uint64(len(key)), 1<<64 - 1},
		{"value one past the limit", uint64(len(key)), maxBackupValueLen + 1},
		{"value at the limit", uint64(len(key)), maxBackupValueLen},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			content := binary.AppendUvarint(slices.Clone(header), tc.keyLen)
			if tc.keyLen == uint64(len(key)) {
				content = append(content, key...)
				content = binary.AppendUvarint(content, tc.valueLen)
			}
			content = append(content, bytes.Repeat([]byte{0xa5}, 1000)...) // far less than declared
			input := compress(t, content)

			var err error
			allocated := allocatedBy(func() {
				_, err = Restore(context.Background(), filepath.Join(t.TempDir(), "restored"), bytes.NewReader(input), Options{})
			})
			if !errors.Is(err, ErrBackupInvalid) {
				t.Fatalf("Restore = %v, want ErrBackupInvalid", err)
			}
			// Opening Pebble costs a few MiB; the declared lengths are
			// 128 KiB to 16 EiB.
			if allocated > 64<<20 {
				t.Errorf("Restore allocated %d MiB for a stream of %d bytes", allocated>>20, len(input))
			}
		})
	}
}

// TestReadFullGrowth checks that reading a large record costs about twice
// its length in allocations: the buffer grows with what arrives, but by
// doubling, not in steps of restoreReadAhead that append enlarges by a
// quarter at a time.
func TestReadFullGrowth(t *testing.T) {
	const n = 32 << 20
	zr := bytes.NewReader(make([]byte, n))
	sr := &streamReader{br: bufio.NewReaderSize(zr, 64<<10), source: &sourceReader{r: zr}}
	var got []byte
	var err error
	allocated := allocatedBy(func() { got, err = sr.readFull(nil, n, "value") })
	if err != nil || len(got) != n {
		t.Fatalf("readFull = %d bytes, %v; want %d", len(got), err, n)
	}
	// Stepwise growth cost five times n. Four leaves room for the race
	// detector, under which doubling measured just over three.
	if allocated > 4*n {
		t.Errorf("readFull of %d MiB allocated %d MiB, want at most %d", n>>20, allocated>>20, 4*n>>20)
	}
}

// TestRestoreZstdWindowLimit checks that a zstd frame asking for a window
// larger than a backup uses is rejected before the decoder allocates it.
func TestRestoreZstdWindowLimit(t *testing.T) {
	// A frame header (RFC 8878 section 3.1.1.1) with no single-segment
	// flag and a window descriptor of exponent 30, mantissa 0: a 1 GiB
	// window, followed by one empty last raw block.
	frame := []byte{
		0x28, 0xb5, 0x2f, 0xfd, // magic
		0x00,             // frame header descriptor: no content size, no checksum, no dictionary
		(30 - 10) << 3,   // window descriptor: 2^30 bytes
		0x01, 0x00, 0x00, // block header: last block, raw, size 0
	}
	var err error
	allocated := allocatedBy(func() {
		_, err = Restore(context.Background(), filepath.Join(t.TempDir(), "restored"), bytes.NewReader(frame), Options{})
	})
	if !errors.Is(err, ErrBackupInvalid) {
		t.Fatalf("Restore of a frame with a 1 GiB window = %v, want ErrBackupInvalid", err)
	}
	if allocated > 64<<20 {
		t.Errorf("Restore allocated %d MiB for a 1 GiB window it rejects", allocated>>20)
	}

	// A single-segment frame declaring 1 TiB of content is bounded the
	// same way: its window is its content size.
	single := []byte{
		0x28, 0xb5, 0x2f, 0xfd,
		0xe0,                   // single segment, 8-byte content size
		0, 0, 0, 0, 0, 1, 0, 0, // content size 2^40, little-endian
		0x01, 0x00, 0x00,
	}
	if _, err := Restore(context.Background(), filepath.Join(t.TempDir(), "restored"), bytes.NewReader(single), Options{}); !errors.Is(err, ErrBackupInvalid) {
		t.Fatalf("Restore of a frame declaring 1 TiB = %v, want ErrBackupInvalid", err)
	}
}

// TestRestoreZstdBomb restores a stream of a few KiB that decompresses to
// over 1 MiB: one metadata record whose value is the longest allowed, all
// zeros. Such a record is valid, so the restore must succeed and keep the
// value whole.
func TestRestoreZstdBomb(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	mustApply(t, s, na("2001:db8::1", "a", ""))
	stream, info := backupBytes(t, s)
	content := backupContent(t, stream)
	header := headerOf(t, content)
	records := content[len(header) : len(content)-1-backupTrailerLen]

	// Insert the metadata record before the first key that sorts after
	// the metadata keyspace.
	const valueLen = maxBackupValueLen
	metaKey := []byte{prefixMeta, 'z'}
	bomb := slices.Clone(header)
	rest := []byte(nil)
	for r := records; len(r) > 0; {
		keyLen, n := binary.Uvarint(r)
		key := r[n : n+int(keyLen)]
		valueLen, m := binary.Uvarint(r[n+int(keyLen):])
		if bytes.Compare(key, metaKey) > 0 {
			rest = r
			break
		}
		end := n + int(keyLen) + m + int(valueLen)
		bomb = append(bomb, r[:end]...)
		r = r[end:]
	}
	bomb = binary.AppendUvarint(bomb, uint64(len(metaKey)))
	bomb = append(bomb, metaKey...)
	bomb = binary.AppendUvarint(bomb, valueLen)
	bomb = append(bomb, make([]byte, valueLen)...)
	bomb = append(bomb, rest...)
	bomb = append(bomb, 0) // end marker
	bomb = binary.BigEndian.AppendUint64(bomb, info.Records+1)
	bomb = binary.BigEndian.AppendUint64(bomb, info.Bindings)
	bomb = binary.BigEndian.AppendUint64(bomb, uint64(info.RawBytes)+uint64(len(metaKey))+valueLen)
	bomb = append(bomb, 0, 0, 0, 0) // checksum, set by resum
	input := compress(t, resum(bomb))
	if len(input) > 16<<10 {
		t.Fatalf("the bomb compressed to %d bytes, want a few KiB", len(input))
	}

	dir := filepath.Join(t.TempDir(), "restored")
	if _, err := Restore(context.Background(), dir, bytes.NewReader(input), Options{}); err != nil {
		t.Fatalf("Restore of a valid stream with a %d-byte metadata value: %v", valueLen, err)
	}
	restored := openTest(t, dir, Options{})
	got, err := restored.Meta("z")
	if err != nil || len(got) != valueLen || bytes.ContainsFunc(got, func(r rune) bool { return r != 0 }) {
		t.Errorf("restored Meta(z) has %d bytes (%v), want %d zeros", len(got), err, valueLen)
	}
}

// TestRestoreTargetKinds restores into targets that are not a plain new
// directory. Restore must either leave a store behind the path the
// caller gave, or fail before it writes anything and leave the target as
// it was.
func TestRestoreTargetKinds(t *testing.T) {
	orig, _ := backupFixture(t)
	stream, _ := backupBytes(t, orig)

	t.Run("regular file", func(t *testing.T) {
		parent := t.TempDir()
		file := filepath.Join(parent, "file")
		if err := os.WriteFile(file, []byte("keep"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Restore(context.Background(), file, bytes.NewReader(stream), Options{}); err == nil {
			t.Fatal("Restore into a regular file succeeded")
		}
		if data, _ := os.ReadFile(file); string(data) != "keep" {
			t.Errorf("the file now holds %q", data)
		}
		assertDirEntries(t, parent, []string{"file"})
	})

	t.Run("path below a regular file", func(t *testing.T) {
		parent := t.TempDir()
		file := filepath.Join(parent, "file")
		if err := os.WriteFile(file, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Restore(context.Background(), filepath.Join(file, "store"), bytes.NewReader(stream), Options{}); err == nil {
			t.Fatal("Restore below a regular file succeeded")
		}
		assertDirEntries(t, parent, []string{"file"})
	})

	t.Run("symlink to an empty directory", func(t *testing.T) {
		data := t.TempDir() // where the operator keeps the store, maybe another file system
		parent := t.TempDir()
		link := filepath.Join(parent, "store")
		if err := os.Symlink(data, link); err != nil {
			t.Fatal(err)
		}
		if _, err := Restore(context.Background(), link, bytes.NewReader(stream), Options{}); err != nil {
			t.Fatalf("Restore through a symlink to an empty directory: %v", err)
		}
		if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("the symlink was replaced: %v, %v", fi.Mode(), err)
		}
		assertDirEntries(t, parent, []string{"store"})
		restored := openTest(t, data, Options{})
		mustVerify(t, restored)
		if restored.LastSeq() != orig.LastSeq() {
			t.Errorf("the directory behind the symlink has last seq %d, want %d", restored.LastSeq(), orig.LastSeq())
		}
	})

	t.Run("dangling symlink", func(t *testing.T) {
		parent := t.TempDir()
		link := filepath.Join(parent, "store")
		if err := os.Symlink(filepath.Join(parent, "absent"), link); err != nil {
			t.Fatal(err)
		}
		_, err := Restore(context.Background(), link, bytes.NewReader(stream), Options{})
		if err == nil {
			// Acceptable only if the store is where the link points.
			restored := openTest(t, link, Options{})
			mustVerify(t, restored)
			return
		}
		assertDirEntries(t, parent, []string{"store"})
	})

	t.Run("current directory", func(t *testing.T) {
		dir := t.TempDir()
		t.Chdir(dir)
		if _, err := Restore(context.Background(), ".", bytes.NewReader(stream), Options{}); err != nil {
			t.Fatalf("Restore into the empty current directory: %v", err)
		}
		t.Chdir(os.TempDir())
		restored := openTest(t, dir, Options{})
		mustVerify(t, restored)
	})
}

// TestBackupDuringApplyAndTrim backs up a store while one goroutine
// applies changes and releases, and another trims with a clock that runs
// past the retention. Each backup must restore to a store that passes
// Verify and holds exactly the backed-up last seq.
func TestBackupDuringApplyAndTrim(t *testing.T) {
	clock := newFakeClock()
	s := openTest(t, t.TempDir(), Options{NoSync: true, Clock: clock.Now, Retention: time.Minute})
	// Two minutes of changes, half of them releases, so that the first
	// trim already removes tombstones and raises the floor.
	for i := range 120 {
		b := benchBinding(i%500, 8)
		if i%2 == 0 {
			b = released(b)
		}
		mustApply(t, s, b)
		clock.Advance(time.Second)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 120; ctx.Err() == nil; i++ {
			b := benchBinding(i%500, 8)
			if i%2 == 0 {
				b = released(b)
			}
			if _, err := s.Apply(ctx, []Binding{b}, nil); err != nil && ctx.Err() == nil {
				t.Errorf("Apply: %v", err)
				return
			}
			clock.Advance(time.Second)
		}
	}()
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			if err := s.Trim(clock.Now()); err != nil && ctx.Err() == nil {
				t.Errorf("Trim: %v", err)
				return
			}
		}
	}()

	// Back up once the trimmer has raised the floor, while both go on.
	for deadline := time.Now().Add(10 * time.Second); ; {
		if floor, _ := s.Floor(); !floor.IsZero() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the trimmer raised no floor within 10 s")
		}
		time.Sleep(time.Millisecond)
	}
	var streams [][]byte
	var infos []BackupInfo
	for round := 0; round < 6; round++ {
		stream, info := backupBytes(t, s)
		streams, infos = append(streams, stream), append(infos, info)
	}
	cancel()
	wg.Wait()

	for i, stream := range streams {
		dir := filepath.Join(t.TempDir(), "restored")
		rinfo, err := Restore(context.Background(), dir, bytes.NewReader(stream), Options{Clock: clock.Now})
		if err != nil {
			t.Fatalf("Restore of backup %d (last seq %d): %v", i, infos[i].LastSeq, err)
		}
		if infos[i].Floor.IsZero() {
			t.Errorf("backup %d has no floor, but the store trimmed before it", i)
		}
		restored, err := Open(dir, Options{TrimInterval: -1, Clock: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		if err := restored.Verify(); err != nil {
			t.Errorf("backup %d: the restored store fails Verify: %v", i, err)
		}
		if restored.LastSeq() != infos[i].LastSeq || rinfo.Bindings != infos[i].Bindings {
			t.Errorf("backup %d: restored last seq %d, %d bindings; the backup has %d, %d", i, restored.LastSeq(), rinfo.Bindings, infos[i].LastSeq, infos[i].Bindings)
		}
		if err := restored.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// slowWriter accepts writes until stop is closed, then fails them, and
// reports the first write on started.
type slowWriter struct {
	once    sync.Once
	started chan struct{}
	stop    chan struct{}
}

func (w *slowWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.started) })
	<-w.stop
	return 0, io.ErrClosedPipe
}

// TestBackupThenClose checks the documented order: a Backup blocked on
// its writer holds a view, and Close after Backup returned succeeds.
func TestBackupThenClose(t *testing.T) {
	s, err := Open(t.TempDir(), Options{TrimInterval: -1, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3000 {
		mustApply(t, s, benchBinding(i, 4))
	}
	w := &slowWriter{started: make(chan struct{}), stop: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := s.Backup(ctx, w)
		done <- err
	}()
	<-w.started
	cancel()
	close(w.stop)
	if err := <-done; err == nil {
		t.Error("Backup ended by its writer and context returned nil")
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close after the backup returned: %v", err)
	}
	if _, err := s.Backup(context.Background(), io.Discard); !errors.Is(err, ErrClosed) {
		t.Errorf("Backup after Close = %v, want ErrClosed", err)
	}
}
