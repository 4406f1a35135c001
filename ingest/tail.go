package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/alqd/alqd/store"
)

// tail is one lease file being read: the open descriptor, its identity, the
// position of the last consumed line, and the bytes read past it.
type tail struct {
	file     *os.File
	name     string
	dev      uint64
	inode    uint64
	snapshot bool     // an LFC snapshot: its position is never stored
	pos      position // offset and line of the last consumed line
	buf      []byte   // bytes read after pos.offset, without a newline yet

	// An over-long line is skipped up to its newline; its length and CRC
	// are kept so that pos still describes it.
	discarding  bool
	discardLen  uint32
	discardCRC  uint32
	discardLine int64
}

// openTail opens name for reading from its start.
func openTail(name string, bufferSize int) (*tail, error) {
	file, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	dev, inode, _, err := fileID(file)
	if err != nil {
		file.Close()
		return nil, err
	}
	t := &tail{file: file, name: name, dev: dev, inode: inode, buf: make([]byte, 0, bufferSize)}
	t.pos.dev, t.pos.inode = dev, inode
	return t, nil
}

func (t *tail) close() {
	if t != nil && t.file != nil {
		t.file.Close()
		t.file = nil
	}
}

// fileID returns the device, inode and size of an open file.
func fileID(file *os.File) (dev, inode uint64, size int64, err error) {
	fi, err := file.Stat()
	if err != nil {
		return 0, 0, 0, err
	}
	dev, inode = statID(fi)
	return dev, inode, fi.Size(), nil
}

func statID(fi fs.FileInfo) (dev, inode uint64) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0
	}
	return uint64(st.Dev), uint64(st.Ino)
}

// drain reads t to its current end, turning every complete line into a
// change, and commits the batch with t's position. hot path: at most one
// allocation per row (the row text) plus the decoded user context when it
// differs from the previous row's.
func (f *Follower) drain(ctx context.Context, t *tail) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		f.makeRoom(t)
		n, readErr := t.file.Read(t.buf[len(t.buf):cap(t.buf)])
		t.buf = t.buf[:len(t.buf)+n]
		f.bytesRead.Add(uint64(n))
		if err := f.consume(ctx, t); err != nil {
			return err
		}
		if readErr == io.EOF || (readErr == nil && n == 0) {
			break
		}
		if readErr != nil {
			return fmt.Errorf("ingest: reading %s at offset %d failed: %w", t.name, t.pos.offset+int64(len(t.buf)), readErr)
		}
	}
	return f.flush(ctx, t)
}

// makeRoom ensures the read buffer has free space. A buffer full of one
// unfinished line grows up to MaxLineBytes; past that the line is skipped.
func (f *Follower) makeRoom(t *tail) {
	if len(t.buf) < cap(t.buf) {
		return
	}
	if cap(t.buf) < f.cfg.MaxLineBytes {
		grown := make([]byte, len(t.buf), min(2*cap(t.buf), f.cfg.MaxLineBytes))
		copy(grown, t.buf)
		t.buf = grown
		return
	}
	if !t.discarding {
		t.discarding = true
		t.discardLen, t.discardCRC = 0, 0
		t.discardLine = t.pos.line + 1
		f.reportMalformed(t, t.discardLine, &RowError{Err: fmt.Errorf("%w: more than %d bytes", ErrLineTooLong, f.cfg.MaxLineBytes)})
	}
	t.discardLen += uint32(len(t.buf))
	t.discardCRC = crc32.Update(t.discardCRC, castagnoli, t.buf)
	t.buf = t.buf[:0]
}

// consume handles every complete line in t.buf and keeps the rest.
func (f *Follower) consume(ctx context.Context, t *tail) error {
	start := 0
	for {
		i := bytes.IndexByte(t.buf[start:], '\n')
		if i < 0 {
			break
		}
		line := t.buf[start : start+i+1]
		start += i + 1

		lineCRC := crc32.Update(0, castagnoli, line)
		if t.discarding {
			t.discarding = false
			t.pos.lastLen = t.discardLen + uint32(len(line))
			t.pos.lastCRC = crc32.Update(t.discardCRC, castagnoli, line)
		} else {
			f.handleLine(t, line[:len(line)-1])
			t.pos.lastLen, t.pos.lastCRC = uint32(len(line)), lineCRC
		}
		t.pos.offset += int64(t.pos.lastLen)
		t.pos.line++

		if len(f.batch) >= f.cfg.MaxBatchRows {
			if err := f.flush(ctx, t); err != nil {
				// The flushed lines are consumed; keep only the rest.
				t.buf = t.buf[:copy(t.buf, t.buf[start:])]
				return err
			}
		}
	}
	t.buf = t.buf[:copy(t.buf, t.buf[start:])]
	return nil
}

// handleLine turns one line (without newline) into a change in f.batch, or
// counts it as malformed. The first line of a file is its header.
func (f *Follower) handleLine(t *tail, line []byte) {
	lineNo := t.pos.line + 1
	if lineNo == 1 {
		if err := f.parser.SetHeader(string(line)); err != nil {
			f.reportMalformed(t, lineNo, err)
		}
		return
	}
	if len(line) == 0 || (len(line) == 1 && line[0] == '\r') {
		return // Kea writes no empty lines; an editor may leave one
	}

	f.rowsRead.Add(1)
	if err := f.parser.ParseRow(string(line), &f.row); err != nil {
		f.reportMalformed(t, lineNo, err)
		return
	}
	kind := f.tracker.observe(&f.row)
	f.byKind[kind].Add(1)
	f.batch = append(f.batch, f.row.Binding)
}

// reportMalformed counts a skipped line and logs it, at most
// malformedLogBurst times a minute. The record names the line, the column
// and, for a snapshot file, its path in attributes; the error text is the
// problem alone.
func (f *Follower) reportMalformed(t *tail, line int64, err error) {
	f.malformedRows.Add(1)
	problem := err
	var rowErr *RowError
	if errors.As(err, &rowErr) {
		rowErr.File, rowErr.Line = t.name, line
		problem = rowErr.Err
	}
	allowed, suppressed := f.malformed.allow()
	if !allowed {
		return
	}

	var args []any
	if t.name != f.cfg.Path {
		args = append(args, "path", t.name)
	}
	if line > 0 {
		args = append(args, "line", line)
	}
	if rowErr != nil && rowErr.Column != "" {
		args = append(args, "column", rowErr.Column)
	}
	args = append(args, "error", strings.TrimPrefix(problem.Error(), "ingest: "), "suppressed", suppressed)
	f.log.Warn("skipping malformed lease file row", args...)
}

// flush commits the batch with t's position. A failed Apply is retried
// until it succeeds or ctx ends, because the rows can not be skipped without
// breaking invariant 1.
func (f *Follower) flush(ctx context.Context, t *tail) error {
	pos := t.pos
	pos.complete = !f.loading
	if t.snapshot {
		pos = position{} // a snapshot position is useless after a restart
	}
	if len(f.batch) == 0 && (pos == f.committed || (!t.snapshot && pos.line == 0)) {
		return nil
	}

	f.meta[f.cfg.PositionKey] = pos.appendTo(make([]byte, 0, positionLen))
	if err := f.apply(ctx, t, f.batch, f.meta); err != nil {
		return err
	}
	f.committed = pos
	clear(f.batch)
	f.batch = f.batch[:0]
	return nil
}

// apply commits changes with meta, retrying after store failures. A store
// that rejects a change as invalid would reject it forever, so the batch is
// then applied one change at a time, and the changes the store rejects are
// counted and logged as malformed rows.
func (f *Follower) apply(ctx context.Context, t *tail, changes []store.Binding, meta map[string][]byte) error {
	for {
		_, err := f.st.Apply(ctx, changes, meta)
		switch {
		case err == nil:
			f.changesApplied.Add(uint64(len(changes)))
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, store.ErrClosed):
			return err
		case errors.Is(err, store.ErrInvalidBinding) && len(changes) > 1:
			for i := range changes {
				if err := f.apply(ctx, t, changes[i:i+1], nil); err != nil {
					return err
				}
			}
			return f.apply(ctx, t, nil, meta)
		case errors.Is(err, store.ErrInvalidBinding):
			f.reportMalformed(t, 0, &RowError{Err: err}) // the row is not known here; the error names the binding
			return f.apply(ctx, t, nil, meta)
		}
		f.applyErrors.Add(1)
		f.log.Error("store apply failed, retrying", "error", err, "changes", len(changes), "retry_in", f.cfg.RetryInterval)
		if !sleep(ctx, f.cfg.RetryInterval) {
			return ctx.Err()
		}
	}
}

// checkRotation compares the inode at the lease file's path with the one
// being read. When Kea rotated the file, it drains the old descriptor (Kea
// closed it before the rename) and returns the new file. When ".1" holds a
// third file, Kea rotated more than once since the last check. The follower
// can then only catch up with a full load, and reload is true.
//
// NOTE: if the follower is stalled (for example by a blocked Apply) for two
// LFC intervals and both cleanups finish meanwhile, ".1" is gone and the
// rows of the file in between are only in the compacted ".2"; that case
// looks like one rotation and those rows are missed until the next full
// load. Kea's lfc-interval is counted in seconds, far above PollInterval.
func (f *Follower) checkRotation(ctx context.Context, t *tail) (next *tail, reload bool, err error) {
	fi, err := os.Stat(f.cfg.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil // between Kea's rename and create; look again later
	}
	if err != nil {
		return nil, false, err
	}
	dev, inode := statID(fi)
	if dev == t.dev && inode == t.inode {
		if fi.Size() < t.pos.offset {
			return nil, false, f.restartTruncated(t, fi.Size())
		}
		return nil, false, nil
	}

	if err := f.drain(ctx, t); err != nil {
		return nil, false, err
	}
	if len(t.buf) > 0 || t.discarding {
		f.reportMalformed(t, t.pos.line+1, &RowError{Err: fmt.Errorf("%w: %d bytes after the last newline", ErrTruncatedLine, len(t.buf))})
		t.buf, t.discarding = t.buf[:0], false
	}
	next, err = openTail(f.cfg.Path, readBufferSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	f.rotations.Add(1)
	if previous, err := os.Stat(f.cfg.Path + ".1"); err == nil {
		if _, id := statID(previous); id != t.inode && id != next.inode {
			next.close()
			f.log.Warn("lease file rotated more than once since the last read, loading the lease files again", "old_inode", t.inode, "inode_1", id)
			return nil, true, nil
		}
	}
	f.log.Info("lease file rotated", "old_inode", t.inode, "old_offset", t.pos.offset, "new_inode", next.inode)
	return next, false, nil
}

// restartTruncated handles a live file cut shorter than the position in
// place, which Kea never does: the file is read again from its start.
func (f *Follower) restartTruncated(t *tail, size int64) error {
	f.log.Warn("lease file shrank below the read position, reading it again from the start", "offset", t.pos.offset, "size", size)
	if _, err := t.file.Seek(0, io.SeekStart); err != nil {
		return err
	}
	f.rotations.Add(1)
	t.buf, t.discarding = t.buf[:0], false
	t.pos = position{dev: t.dev, inode: t.inode}
	f.parser.ResetHeader()
	return nil
}

// resume opens the file of a stored position when it is still there and
// unchanged up to the position: the live file, or ".1" when Kea rotated the
// file but LFC has not removed the old one yet. It returns nil otherwise.
func (f *Follower) resume(pos position) *tail {
	for _, name := range []string{f.cfg.Path, f.cfg.Path + ".1"} {
		t, err := openTail(name, readBufferSize)
		if err != nil {
			continue
		}
		if t.dev == pos.dev && t.inode == pos.inode && f.matches(t, pos) {
			t.pos = pos
			return t
		}
		t.close()
	}
	return nil
}

// matches reports whether t holds, at pos, the last line the position
// describes, and reads t's header into the parser. On success the
// descriptor is at pos.offset.
func (f *Follower) matches(t *tail, pos position) bool {
	_, _, size, err := fileID(t.file)
	if err != nil || size < pos.offset || pos.lastLen == 0 || pos.line == 0 {
		return false
	}
	last := make([]byte, pos.lastLen)
	if _, err := t.file.ReadAt(last, pos.offset-int64(pos.lastLen)); err != nil {
		return false
	}
	if last[len(last)-1] != '\n' || crc32.Update(0, castagnoli, last) != pos.lastCRC {
		return false
	}

	header, err := readFirstLine(t.file, f.cfg.MaxLineBytes)
	if err != nil || f.parser.SetHeader(header) != nil {
		return false
	}
	_, err = t.file.Seek(pos.offset, io.SeekStart)
	return err == nil
}

// readFirstLine returns the first line of file without its newline.
func readFirstLine(file *os.File, limit int) (string, error) {
	buf := make([]byte, 0, 512)
	for off := int64(0); len(buf) < limit; {
		chunk := make([]byte, min(4096, limit-len(buf)))
		n, err := file.ReadAt(chunk, off)
		if i := bytes.IndexByte(chunk[:n], '\n'); i >= 0 {
			return string(append(buf, chunk[:i]...)), nil
		}
		buf = append(buf, chunk[:n]...)
		off += int64(n)
		if err != nil {
			return "", err
		}
	}
	return "", ErrLineTooLong
}

// fullLoad reads the LFC snapshot files and returns the live file, which the
// caller reads next; positions stay incomplete until finishLoad.
func (f *Follower) fullLoad(ctx context.Context, events <-chan struct{}) (*tail, error) {
	f.loading = true
	f.reloads.Add(1)
	f.tracker = newLeaseTracker()

	snapshots, live, err := f.openFileSet(ctx, events)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(snapshots))
	for _, s := range snapshots {
		names = append(names, s.name)
	}
	f.log.Info("loading lease files", "snapshots", strings.Join(names, ","), "live_inode", live.inode)

	for i, s := range snapshots {
		err := f.drain(ctx, s)
		if err == nil && len(s.buf) > 0 {
			f.reportMalformed(s, s.pos.line+1, &RowError{Err: fmt.Errorf("%w: %d bytes after the last newline", ErrTruncatedLine, len(s.buf))})
		}
		s.close()
		if err != nil {
			for _, rest := range snapshots[i+1:] {
				rest.close()
			}
			live.close()
			return nil, err
		}
	}
	return live, nil
}

// openFileSet opens the files Kea itself loads at start-up, in its order:
// leases6.csv.completed if it exists, else .2 then .1, then the live file.
// It waits while kea-lfc runs (its pid file names a live process), and opens
// again when any of the names moved to another inode while it opened them.
func (f *Follower) openFileSet(ctx context.Context, events <-chan struct{}) (snapshots []*tail, live *tail, err error) {
	for attempt := 0; ; attempt++ {
		if attempt > 0 && !f.wait(ctx, events) {
			return nil, nil, ctx.Err()
		}
		if f.lfcRunning() {
			if attempt == 0 {
				f.log.Info("waiting for kea-lfc to finish")
			}
			continue
		}

		before := f.fileSetIDs()
		live, err = openTail(f.cfg.Path, readBufferSize)
		if errors.Is(err, fs.ErrNotExist) {
			if attempt == 0 {
				f.log.Info("waiting for the lease file to appear")
			}
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("ingest: opening lease file failed: %w", err)
		}
		snapshots = f.openSnapshots()
		if f.fileSetIDs() == before && !f.lfcRunning() {
			return snapshots, live, nil
		}

		live.close()
		for _, s := range snapshots {
			s.close()
		}
	}
}

func (f *Follower) openSnapshots() []*tail {
	if t, err := openTail(f.cfg.Path+".completed", readBufferSize); err == nil {
		t.snapshot = true
		return []*tail{t}
	}
	var snapshots []*tail
	for _, suffix := range []string{".2", ".1"} {
		if t, err := openTail(f.cfg.Path+suffix, readBufferSize); err == nil {
			t.snapshot = true
			snapshots = append(snapshots, t)
		}
	}
	return snapshots
}

// fileSetIDs returns the inodes of the live file and the LFC files; 0 for
// a missing file.
func (f *Follower) fileSetIDs() [4]uint64 {
	var ids [4]uint64
	for i, suffix := range []string{"", ".1", ".2", ".completed"} {
		if fi, err := os.Stat(f.cfg.Path + suffix); err == nil {
			_, ids[i] = statID(fi)
		}
	}
	return ids
}

// lfcRunning reports whether kea-lfc runs: its pid file exists and names a
// live process. A pid file left by a kea-lfc that died does not count,
// because Kea itself ignores it. A pid file being written (no number yet)
// counts.
func (f *Follower) lfcRunning() bool {
	raw, err := os.ReadFile(f.cfg.Path + ".pid")
	if errors.Is(err, fs.ErrNotExist) {
		return false
	}
	if err != nil {
		return true
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || pid <= 0 {
		return true
	}
	return processAlive(pid)
}

// finishLoad ends a full load once the live file has been read to its end:
// it reconciles the store with the loaded leases and stores the position as
// complete.
func (f *Follower) finishLoad(ctx context.Context, t *tail) error {
	if f.cfg.ListBindings != nil {
		if err := f.reconcile(ctx, t); err != nil {
			return err
		}
	}
	f.loading = false
	if err := f.flush(ctx, t); err != nil {
		f.loading = true
		return err
	}
	f.log.Info("lease files loaded", "leases", f.tracker.len(), "offset", t.pos.offset)
	return nil
}

// reconcile ends every active or declined binding of the store that the
// follower wrote (source store.SourceKea) and the loaded files do not have:
// Kea deleted it (release, or expiry and flush)
// in rows that LFC compacted away while the follower was not running. The
// follower can not tell which, so it stores the binding as expired.
func (f *Follower) reconcile(ctx context.Context, t *tail) error {
	var flushErr error
	ended := 0
	err := f.cfg.ListBindings(ctx, func(b *store.Binding) bool {
		// Only bindings the follower wrote are Kea's to end: those of the
		// ingest API, or stored before sources were recorded, are not in
		// Kea's files at all.
		if b.Source != store.SourceKea || (b.State != store.StateActive && b.State != store.StateDeclined) || f.tracker.present(b.Key) {
			return true
		}
		f.batch = append(f.batch, endedCopy(b))
		ended++
		if len(f.batch) >= f.cfg.MaxBatchRows {
			if flushErr = f.flush(ctx, t); flushErr != nil {
				return false
			}
		}
		return true
	})
	if flushErr != nil {
		return flushErr
	}
	if err != nil {
		return fmt.Errorf("ingest: listing store bindings for reconciliation failed: %w", err)
	}
	if err := f.flush(ctx, t); err != nil {
		return err
	}
	f.reconciled.Add(uint64(ended))
	if ended > 0 {
		f.log.Info("ended bindings that Kea deleted while the follower was not running", "bindings", ended)
	}
	return nil
}

// endedCopy returns a deep copy of b, expired with zero lifetimes.
func endedCopy(b *store.Binding) store.Binding {
	c := *b
	c.ClientID = bytes.Clone(b.ClientID)
	c.RelayID = bytes.Clone(b.RelayID)
	c.RemoteID = bytes.Clone(b.RemoteID)
	c.InterfaceID = bytes.Clone(b.InterfaceID)
	c.RelayMessage = bytes.Clone(b.RelayMessage)
	c.State = store.StateExpired
	c.PreferredLifetime, c.ValidLifetime = 0, 0
	c.Seq, c.ChangeTime = 0, time.Time{}
	return c
}
