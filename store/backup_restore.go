package store

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/klauspost/compress/zstd"
)

const (
	// restoreBatchSize is the size in bytes at which Restore commits its
	// batch, so memory stays flat however large the backup is.
	restoreBatchSize = 4 << 20

	// restoreReadAhead is how far a record buffer may grow ahead of the
	// bytes that arrived. When more has arrived, it may grow by that much.
	// So a corrupt length makes Restore allocate at most about twice what
	// the stream contains.
	restoreReadAhead = 1 << 20
)

// Restore creates the store directory dir from a backup stream that Backup
// wrote, and returns what the stream held. dir must not exist or must be an
// empty directory. Restore resolves symlinks in dir first, so the store
// lands where a link points. Restore writes into a temporary sibling directory
// (dir's name followed by ".restore-" and a random suffix), and renames it
// to dir only after the trailer's counts and checksum match, the store opens
// with opts and Verify passes. A failed or cancelled restore removes the
// temporary directory and leaves dir as it was. A killed one leaves the
// temporary directory behind, to be deleted by hand.
//
// Restore raises the history floor. Requestors may have seen changes made
// after the backup, which the restored store lacks and no catch-up would
// correct. The restored floor time is therefore the later of opts.Clock and
// just after the backup's last change. An Active Leasequery with an
// OPTION_LQ_START_TIME before the restore then gets DataMissing, and the
// requestor recovers with a Bulk Leasequery (RFC 7653 section 8.4.1).
// Changes applied later get a ChangeTime at or after that floor. The floor
// seq is raised to the backup's last seq, but never past the seq before
// the oldest released or expired binding: Trim resumes above the floor seq,
// and would otherwise never remove those tombstones.
//
// The returned error wraps ErrBackupInvalid for a stream that is truncated,
// corrupt or not a backup, ErrBackupVersion for a format or layout version
// this alqd does not read, and ErrTargetNotEmpty for a dir that holds
// files. When Verify fails on the restored data, the error wraps its
// *InconsistencyError. When ctx ends, Restore stops and returns ctx.Err().
func Restore(ctx context.Context, dir string, r io.Reader, opts Options) (info BackupInfo, err error) {
	if err := opts.Validate(); err != nil {
		return info, err
	}
	opts.setDefaults()
	target, err := resolveRestoreTarget(dir)
	if err != nil {
		return info, err
	}
	if err := checkRestoreTarget(target); err != nil {
		return info, err
	}

	parent, base := filepath.Split(target)
	tmp, err := os.MkdirTemp(parent, base+".restore-")
	if err != nil {
		return info, fmt.Errorf("store: restore: create the temporary directory next to %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(tmp) // the temporary directory is ours alone
		}
	}()

	if info, err = restoreInto(ctx, tmp, r, &opts); err != nil {
		return info, err
	}
	if err := verifyRestored(tmp, &info, opts); err != nil {
		return info, err
	}

	// Move it into place. rename(2) replaces an empty directory in one
	// step, where os.Rename refuses any existing directory.
	if err := syscall.Rename(tmp, target); err != nil {
		return info, fmt.Errorf("store: restore: rename %s to %s: %w", tmp, target, err)
	}
	if err := syncDir(parent); err != nil {
		return info, fmt.Errorf("store: restore: %s is in place but its parent directory did not sync: %w", dir, err)
	}
	return info, nil
}

// resolveRestoreTarget returns the absolute path of dir with its symlinks
// resolved. The temporary directory must be a sibling of the directory
// that receives the store, on its file system, and rename(2) replaces an
// empty directory but neither a symlink to one nor the "." of a relative
// path. A symlink to a missing path is rejected: the restore would
// replace the link.
func resolveRestoreTarget(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("store: restore: target directory %s: %w", dir, err)
	}
	resolved, err := filepath.EvalSymlinks(abs)
	if err == nil {
		return resolved, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("store: restore: resolve the target directory %s: %w", dir, err)
	}
	if fi, err := os.Lstat(abs); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		return "", fmt.Errorf("store: restore: target %s is a symlink to a missing path; create the directory it points to, or restore into a directory", dir)
	}
	parent, err := filepath.EvalSymlinks(filepath.Dir(abs))
	if err != nil {
		return "", fmt.Errorf("store: restore: parent directory of the target %s: %w", dir, err)
	}
	return filepath.Join(parent, filepath.Base(abs)), nil
}

// checkRestoreTarget fails unless dir is absent or an empty directory.
func checkRestoreTarget(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("store: restore: read target directory: %w", err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("%w: %s contains %d entries, such as %q; restore into a new or empty directory", ErrTargetNotEmpty, dir, len(entries), entries[0].Name())
	}
	return nil
}

// restoreInto writes the records of the stream r into a new Pebble
// database in dir, checks the trailer, and raises the floor.
func restoreInto(ctx context.Context, dir string, r io.Reader, opts *Options) (info BackupInfo, err error) {
	source := &sourceReader{r: r}
	counter := &countingReader{r: source}
	zr, err := zstd.NewReader(counter, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(backupWindowSize))
	if err != nil {
		return info, fmt.Errorf("store: restore: %w", err)
	}
	defer zr.Close()
	sr := &streamReader{br: bufio.NewReaderSize(zr, 64<<10), source: source}
	defer func() { info.StreamBytes = counter.n }()

	if err := sr.header(&info); err != nil {
		return info, err
	}

	cache := pebble.NewCache(opts.BlockCacheSize)
	defer cache.Unref()
	popts := pebbleOptions(opts, cache)
	// The directory is renamed into place only after a flush, so the WAL
	// would protect nothing.
	popts.DisableWAL = true
	popts.ErrorIfExists = true
	db, err := pebble.Open(dir, popts)
	if err != nil {
		return info, fmt.Errorf("store: restore: open %s: %w", dir, err)
	}
	defer func() {
		if closeErr := db.Close(); closeErr != nil && err == nil {
			err = fmt.Errorf("store: restore: close %s: %w", dir, closeErr)
		}
	}()

	rw := &restoreWriter{db: db, batch: db.NewBatch(), info: &info, oldestEnded: math.MaxUint64}
	defer func() { _ = rw.batch.Close() }()
	if err := rw.records(ctx, sr); err != nil {
		return info, err
	}
	if err := sr.trailer(&info); err != nil {
		return info, err
	}
	if err := rw.finish(opts.Clock()); err != nil {
		return info, err
	}
	if err := db.Flush(); err != nil {
		return info, fmt.Errorf("store: restore: flush: %w", err)
	}
	return info, nil
}

// verifyRestored opens the store restored in dir, checks that it agrees
// with the header and passes Verify, and closes it.
func verifyRestored(dir string, info *BackupInfo, opts Options) (err error) {
	opts.TrimInterval = -1 // nothing may change the store before it is in place
	s, err := Open(dir, opts)
	if err != nil {
		return fmt.Errorf("store: restore: open the restored store: %w", err)
	}
	defer func() {
		if closeErr := s.Close(); closeErr != nil && err == nil {
			err = fmt.Errorf("store: restore: %w", closeErr)
		}
	}()

	floor, floorSeq := s.Floor()
	switch {
	case !bytes.Equal(s.ServerDUID(), info.ServerDUID):
		return fmt.Errorf("%w: the header's server DUID %x differs from the stored %x", ErrBackupInvalid, info.ServerDUID, s.ServerDUID())
	case s.LastSeq() != info.LastSeq:
		return fmt.Errorf("%w: the header's last seq %d differs from the stored %d", ErrBackupInvalid, info.LastSeq, s.LastSeq())
	case !floor.Equal(info.RestoredFloor) || floorSeq != info.RestoredFloorSeq:
		return fmt.Errorf("store: restore: the restored floor is %s seq %d, want %s seq %d", floor, floorSeq, info.RestoredFloor, info.RestoredFloorSeq)
	}
	if err := s.Verify(); err != nil {
		return fmt.Errorf("store: restore: the restored store fails Verify: %w", err)
	}
	return nil
}

// restoreWriter writes decoded records to the database in bounded batches.
type restoreWriter struct {
	db    *pebble.DB
	batch *pebble.Batch
	info  *BackupInfo

	prevKey     []byte
	internal    map[string][]byte // the internal records of the stream
	oldestEnded uint64            // the lowest Seq of a released or expired binding
}

// records reads records up to the end marker.
func (rw *restoreWriter) records(ctx context.Context, sr *streamReader) error {
	rw.internal = make(map[string][]byte)
	for {
		if rw.info.Records%backupCancelCheck == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		key, value, err := sr.record()
		if err != nil {
			return err
		}
		if key == nil {
			return nil
		}
		if err := rw.add(key, value, sr.offset); err != nil {
			return err
		}
	}
}

// add stages one record. offset is the stream reader's position, for
// error messages. hot path: once per key of the backup.
func (rw *restoreWriter) add(key, value []byte, offset int64) error {
	if rw.prevKey != nil && bytes.Compare(key, rw.prevKey) <= 0 {
		return fmt.Errorf("%w: key %x before offset %d does not sort after the previous key %x", ErrBackupInvalid, key, offset, rw.prevKey)
	}
	rw.prevKey = append(rw.prevKey[:0], key...)

	switch key[0] {
	case prefixBinding:
		rw.info.Bindings++
		// The tombstone with the lowest Seq bounds the restored floor
		// seq; Verify decodes the whole value later.
		if len(value) > valueStateOffset && State(value[valueStateOffset]).Ended() {
			rw.oldestEnded = min(rw.oldestEnded, binary.BigEndian.Uint64(value[1:9]))
		}
	case prefixInternal:
		rw.internal[string(key[1:])] = append([]byte(nil), value...)
	}
	rw.info.Records++
	rw.info.RawBytes += int64(len(key) + len(value))

	if err := rw.batch.Set(key, value, nil); err != nil {
		return fmt.Errorf("store: restore: %w", err)
	}
	if rw.batch.Len() >= restoreBatchSize {
		return rw.commit()
	}
	return nil
}

func (rw *restoreWriter) commit() error {
	if err := rw.batch.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("store: restore: write: %w", err)
	}
	_ = rw.batch.Close()
	rw.batch = rw.db.NewBatch()
	return nil
}

// finish checks the internal records against the header, writes the
// raised floor and commits the last batch.
func (rw *restoreWriter) finish(now time.Time) error {
	info := rw.info
	want := map[string][]byte{
		internalLayout: binary.BigEndian.AppendUint32(nil, info.LayoutVersion),
		internalDUID:   info.ServerDUID,
		internalSeq:    binary.BigEndian.AppendUint64(uint64Bytes(info.LastSeq), uint64(timeOrZero(info.LastChange, 0))),
		internalFloor:  binary.BigEndian.AppendUint64(uint64Bytes(uint64(timeOrZero(info.Floor, math.MinInt64))), info.FloorSeq),
	}
	for _, name := range []string{internalLayout, internalDUID, internalSeq, internalFloor} {
		got, ok := rw.internal[name]
		if !ok {
			return fmt.Errorf("%w: the backup lacks the internal %q record", ErrBackupInvalid, name)
		}
		if !bytes.Equal(got, want[name]) {
			return fmt.Errorf("%w: the internal %q record %x disagrees with the header's %x", ErrBackupInvalid, name, got, want[name])
		}
	}

	floorNs, floorSeq := restoredFloor(info, now, rw.oldestEnded)
	info.RestoredFloor, info.RestoredFloorSeq = time.Unix(0, floorNs).UTC(), floorSeq
	if err := rw.batch.Set(internalKey(internalFloor), binary.BigEndian.AppendUint64(uint64Bytes(uint64(floorNs)), floorSeq), nil); err != nil {
		return fmt.Errorf("store: restore: %w", err)
	}
	return rw.commit()
}

// restoredFloor returns the floor (Unix ns, seq) of a store restored at
// now from the backup info, whose oldest tombstone has Seq oldestEnded
// (math.MaxUint64 when it has none). See Restore for why.
func restoredFloor(info *BackupInfo, now time.Time, oldestEnded uint64) (int64, uint64) {
	floorNs := now.UnixNano()
	if info.LastSeq > 0 {
		floorNs = max(floorNs, info.LastChange.UnixNano()+1)
	}
	if !info.Floor.IsZero() {
		floorNs = max(floorNs, info.Floor.UnixNano())
	}
	floorSeq := info.LastSeq
	if oldestEnded > 0 {
		floorSeq = min(floorSeq, oldestEnded-1)
	}
	return floorNs, max(floorSeq, info.FloorSeq)
}

// streamReader reads the decompressed content of a backup stream and keeps
// its checksum.
type streamReader struct {
	br       *bufio.Reader
	source   *sourceReader
	crc      uint32
	offset   int64 // decompressed bytes consumed
	keyBuf   []byte
	valueBuf []byte
	fixed    [backupHeaderFixedLen]byte
}

// fail converts a read error at the current offset into the error Restore
// returns: the source's own error, or ErrBackupInvalid for a stream that
// ended early or does not decompress.
func (sr *streamReader) fail(field string, err error) error {
	if sr.source.err != nil {
		return fmt.Errorf("store: restore: read the backup: %w", sr.source.err)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: the stream ends in the %s at offset %d; the backup is truncated", ErrBackupInvalid, field, sr.offset)
	}
	return fmt.Errorf("%w: the zstd stream does not decompress (reading the %s at offset %d): %w", ErrBackupInvalid, field, sr.offset, err)
}

// readFull reads n bytes into dst, reusing its capacity, and adds them to
// the checksum. Each step reads as many bytes as arrived before it, and at
// least restoreReadAhead, so dst grows to at most about twice what arrived
// and the copies of a growing dst add up to about twice n.
func (sr *streamReader) readFull(dst []byte, n int, field string) ([]byte, error) {
	dst = dst[:0]
	for len(dst) < n {
		start := len(dst)
		step := min(n-start, max(start, restoreReadAhead))
		dst = slices.Grow(dst, step)[:start+step]
		if _, err := io.ReadFull(sr.br, dst[start:]); err != nil {
			return nil, sr.fail(field, err)
		}
	}
	sr.crc = crc32.Update(sr.crc, castagnoli, dst)
	sr.offset += int64(n)
	return dst, nil
}

// uvarint reads a minimally encoded uvarint and adds it to the checksum.
func (sr *streamReader) uvarint(field string) (uint64, error) {
	peek, err := sr.br.Peek(binary.MaxVarintLen64)
	if len(peek) == 0 {
		return 0, sr.fail(field, err)
	}
	v, n := binary.Uvarint(peek)
	if n <= 0 || n != uvarintLen(v) {
		if n == 0 && err != nil {
			return 0, sr.fail(field, err)
		}
		return 0, fmt.Errorf("%w: the %s at offset %d is not a valid minimal uvarint", ErrBackupInvalid, field, sr.offset)
	}
	sr.crc = crc32.Update(sr.crc, castagnoli, peek[:n])
	sr.offset += int64(n)
	_, _ = sr.br.Discard(n)
	return v, nil
}

// header reads and checks the header into info.
func (sr *streamReader) header(info *BackupInfo) error {
	b, err := sr.readFull(sr.fixed[:0], len(sr.fixed), "header")
	if err != nil {
		return err
	}
	if string(b[:len(backupMagic)]) != backupMagic {
		return fmt.Errorf("%w: the content starts with %q, not the backup magic %q", ErrBackupInvalid, b[:len(backupMagic)], backupMagic)
	}

	b = b[len(backupMagic):]
	info.FormatVersion = binary.BigEndian.Uint16(b)
	info.LayoutVersion = binary.BigEndian.Uint32(b[2:])
	if info.FormatVersion != backupFormatVersion {
		return fmt.Errorf("%w: the backup has format version %d; this alqd reads version %d only", ErrBackupVersion, info.FormatVersion, backupFormatVersion)
	}
	if info.LayoutVersion != layoutVersion {
		return fmt.Errorf("%w: the backup contains a store of layout version %d; this alqd restores layout version %d only", ErrBackupVersion, info.LayoutVersion, layoutVersion)
	}

	b = b[6:]
	info.Created = time.Unix(0, int64(binary.BigEndian.Uint64(b))).UTC()
	info.LastSeq = binary.BigEndian.Uint64(b[8:])
	info.LastChange = unixTime(int64(binary.BigEndian.Uint64(b[16:])), info.LastSeq == 0)
	floorNs := int64(binary.BigEndian.Uint64(b[24:]))
	info.Floor = unixTime(floorNs, floorNs == math.MinInt64)
	info.FloorSeq = binary.BigEndian.Uint64(b[32:])

	duidLen := int(binary.BigEndian.Uint16(b[40:]))
	if duidLen < 3 || duidLen > maxBackupDUIDLen {
		return fmt.Errorf("%w: the header's server DUID is %d bytes; a DUID is 3 to %d", ErrBackupInvalid, duidLen, maxBackupDUIDLen)
	}
	duid, err := sr.readFull(nil, duidLen, "server DUID")
	if err != nil {
		return err
	}
	info.ServerDUID = duid
	return nil
}

// record reads one record. It returns a nil key at the end marker. The
// slices stay valid until the next call.
func (sr *streamReader) record() (key, value []byte, err error) {
	keyLen, err := sr.uvarint("key length")
	if err != nil || keyLen == 0 {
		return nil, nil, err
	}
	if keyLen > maxBackupKeyLen {
		return nil, nil, fmt.Errorf("%w: key length %d at offset %d exceeds %d", ErrBackupInvalid, keyLen, sr.offset, maxBackupKeyLen)
	}
	if sr.keyBuf, err = sr.readFull(sr.keyBuf, int(keyLen), "key"); err != nil {
		return nil, nil, err
	}
	valueLen, err := sr.uvarint("value length")
	if err != nil {
		return nil, nil, err
	}
	if valueLen > maxBackupValueLen {
		return nil, nil, fmt.Errorf("%w: value length %d at offset %d exceeds %d", ErrBackupInvalid, valueLen, sr.offset, maxBackupValueLen)
	}
	if sr.valueBuf, err = sr.readFull(sr.valueBuf, int(valueLen), "value"); err != nil {
		return nil, nil, err
	}
	return sr.keyBuf, sr.valueBuf, nil
}

// trailer reads the trailer after the end marker, compares it with what
// the records added up to, and checks that the stream ends there.
func (sr *streamReader) trailer(info *BackupInfo) error {
	b, err := sr.readFull(sr.fixed[:0], 8*3, "trailer")
	if err != nil {
		return err
	}
	records, bindings, rawBytes := binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:]), int64(binary.BigEndian.Uint64(b[16:]))
	wantCRC := sr.crc
	b, err = sr.readFull(sr.fixed[:0], 4, "trailer checksum")
	if err != nil {
		return err
	}
	if got := binary.BigEndian.Uint32(b); got != wantCRC {
		return fmt.Errorf("%w: the trailer checksum is %08x but the content sums to %08x", ErrBackupInvalid, got, wantCRC)
	}
	if records != info.Records || bindings != info.Bindings || rawBytes != info.RawBytes {
		return fmt.Errorf("%w: the trailer counts %d records, %d bindings and %d bytes, the stream held %d, %d and %d",
			ErrBackupInvalid, records, bindings, rawBytes, info.Records, info.Bindings, info.RawBytes)
	}
	if _, err := sr.br.ReadByte(); !errors.Is(err, io.EOF) {
		if err == nil {
			return fmt.Errorf("%w: data follows the trailer at offset %d", ErrBackupInvalid, sr.offset)
		}
		return sr.fail("end of the stream", err)
	}
	if sr.source.err != nil {
		return sr.fail("end of the stream", sr.source.err)
	}
	return nil
}

// sourceReader remembers the first error of r other than io.EOF, so that
// Restore can distinguish a failing source from a corrupt stream.
type sourceReader struct {
	r   io.Reader
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF && s.err == nil {
		s.err = err
	}
	return n, err
}

// countingReader counts the bytes read from r.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// syncDir fsyncs the directory dir, so that a rename in it is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}
