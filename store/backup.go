package store

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Backup stream format, version 1.
//
// A backup is one zstd stream (RFC 8878, with the frame checksum) whose
// decompressed content is a header, every key and value of one view of the
// store in Pebble key order, an end marker and a trailer. Fixed-width
// numbers are big-endian.
//
//	header
//	  magic            8  "ALQDBAK\n"
//	  format version   2  backupFormatVersion
//	  layout version   4  the store's layoutVersion
//	  created          8  when Backup took its view, Unix ns
//	  last seq         8  the view's last sequence number
//	  last change      8  ChangeTime of the last seq, Unix ns; 0 when last seq is 0
//	  floor time       8  Unix ns; math.MinInt64 when the store never trimmed
//	  floor seq        8
//	  DUID length      2
//	  server DUID      DUID length bytes
//	records, keys strictly increasing
//	  key length       uvarint, 1 to maxBackupKeyLen
//	  key
//	  value length     uvarint, 0 to maxBackupValueLen
//	  value
//	end marker         uvarint 0, which no record starts with
//	trailer
//	  records          8  number of records
//	  bindings         8  records in the binding keyspace
//	  raw bytes        8  sum of the key and value lengths of the records
//	  checksum         4  CRC-32C (Castagnoli) of every byte from the magic
//	                      to the raw bytes field
//
// Nothing follows the checksum. The records are the raw keyspaces,
// indexes and internal records included, so a restore copies the store
// exactly and Verify checks it afterwards; rebuilding the indexes on
// restore would need its own code path and prove less.
//
// A reader rejects another format version. The layout version is that of
// the key layout and value encoding (keys.go, value.go), and a reader
// rejects any layout other than its own: a restore never upgrades a store.
const (
	backupMagic         = "ALQDBAK\n"
	backupFormatVersion = 1

	// maxBackupKeyLen is the longest key a backup may carry. The longest
	// store key is an index key with a 65,535-byte id: 65,572 bytes.
	maxBackupKeyLen = 1 << 17

	// maxBackupValueLen is the longest value a backup may carry: the
	// longest metadata value Apply accepts. Binding values stay below
	// 330 KiB, and internal records are a few bytes.
	maxBackupValueLen = MaxMetaValueLen

	// maxBackupDUIDLen is the longest server DUID: a 2-byte type and at
	// most 128 bytes (RFC 8415 section 11.1).
	maxBackupDUIDLen = 130

	backupHeaderFixedLen = len(backupMagic) + 2 + 4 + 8*5 + 2
	backupTrailerLen     = 8*3 + 4

	// backupLevel is the zstd level of Backup. BenchmarkBackupLevel on
	// 100,000 relayed bindings (klauspost/compress v1.20.5, 2 vCPUs,
	// medians of three runs) gave SpeedFastest 1.34 µs per binding for
	// 0.138 of the raw bytes and SpeedDefault 1.43 µs for 0.143. The
	// higher levels took 3.0 µs (SpeedBetterCompression, 0.141) and
	// 11 µs (SpeedBestCompression, 0.133). The fastest level is also the
	// smallest but one, and a backup of a running server should cost it
	// the least CPU.
	backupLevel = zstd.SpeedFastest

	// backupWindowSize is the zstd window. Restore accepts no larger one,
	// which bounds the memory a hostile stream can make it allocate.
	backupWindowSize = 8 << 20

	// backupCancelCheck is how many records Backup writes between checks
	// of its context.
	backupCancelCheck = 1024
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// BackupInfo describes one backup stream: what Backup wrote or Restore
// read.
type BackupInfo struct {
	// FormatVersion is the version of the stream format.
	FormatVersion uint16
	// LayoutVersion is the store's key layout and value encoding version.
	LayoutVersion uint32
	// ServerDUID is the DUID of the backed-up store.
	ServerDUID []byte
	// Created is when Backup took its view of the store.
	Created time.Time
	// LastSeq is the sequence number of the last change in the backup,
	// and LastChange its ChangeTime (zero when LastSeq is 0).
	LastSeq    uint64
	LastChange time.Time
	// Floor and FloorSeq are the history floor of the backed-up store;
	// Floor is zero when that store never trimmed.
	Floor    time.Time
	FloorSeq uint64

	// Records is the number of keys, and Bindings the number of them in
	// the binding keyspace (released and expired tombstones included).
	Records  uint64
	Bindings uint64
	// RawBytes is the sum of the key and value lengths, and StreamBytes the
	// size of the compressed stream, in bytes.
	RawBytes    int64
	StreamBytes int64

	// RestoredFloor and RestoredFloorSeq are the floor Restore gave the
	// new store (see Restore). Backup leaves them zero.
	RestoredFloor    time.Time
	RestoredFloorSeq uint64
}

// Ratio returns StreamBytes divided by RawBytes, or 0 when RawBytes is 0.
func (i *BackupInfo) Ratio() float64 {
	if i.RawBytes == 0 {
		return 0
	}
	return float64(i.StreamBytes) / float64(i.RawBytes)
}

// Backup writes every key and value of one view of the store to w in the
// backup stream format (see backupMagic), compressed with zstd. The view
// is the state after one synced commit, so the backup is consistent.
// Backup takes no lock while it reads, so Apply and Trim go on meanwhile.
// The view is a Pebble snapshot, so a slow w keeps obsolete data on disk
// until Backup returns.
//
// Backup returns ctx.Err() when ctx ends, and the first error of w. On
// error the stream is incomplete, and Restore rejects it. Backup never
// closes w. As with an Iterator, Backup must return before Close.
func (s *Store) Backup(ctx context.Context, w io.Writer) (BackupInfo, error) {
	return s.backup(ctx, w, backupLevel)
}

func (s *Store) backup(ctx context.Context, w io.Writer, level zstd.EncoderLevel) (info BackupInfo, err error) {
	if err := ctx.Err(); err != nil {
		return info, err
	}
	v, err := s.acquireView()
	if err != nil {
		return info, err
	}
	defer s.releaseView(v)
	if info, err = s.viewInfo(v); err != nil {
		return info, err
	}

	counter := &countingWriter{w: w}
	zw, err := zstd.NewWriter(counter, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(backupWindowSize))
	if err != nil {
		return info, fmt.Errorf("store: backup: %w", err)
	}
	defer func() {
		closeErr := zw.Close() // writes the end of the zstd frame
		if err == nil && closeErr != nil {
			err = fmt.Errorf("store: backup: write: %w", closeErr)
		}
		info.StreamBytes = counter.n
	}()
	sw := &streamWriter{zw: zw}
	sw.bw = bufio.NewWriterSize(checksumWriter{sw}, 64<<10)

	sw.header(&info)
	if err := s.backupRecords(ctx, v, sw, &info); err != nil {
		return info, err
	}
	sw.trailer(&info)
	if sw.err != nil {
		return info, fmt.Errorf("store: backup: write: %w", sw.err)
	}
	return info, nil
}

// viewInfo returns the header fields of a backup of v. The internal
// records are read from v, so they agree with its keys.
func (s *Store) viewInfo(v *view) (BackupInfo, error) {
	info := BackupInfo{
		FormatVersion: backupFormatVersion,
		LayoutVersion: layoutVersion,
		ServerDUID:    append([]byte(nil), s.duid...),
		Created:       s.opts.Clock().UTC(),
		LastSeq:       v.lastSeq,
	}
	seqRec, err := getCopy(v.snap, internalKey(internalSeq))
	if err != nil {
		return info, err
	}
	floorRec, err := getCopy(v.snap, internalKey(internalFloor))
	if err != nil {
		return info, err
	}
	if len(seqRec) != 16 || binary.BigEndian.Uint64(seqRec) != v.lastSeq {
		return info, corrupt(internalKey(internalSeq), "sequence record %x disagrees with the view's last seq %d", seqRec, v.lastSeq)
	}
	if len(floorRec) != 16 {
		return info, corrupt(internalKey(internalFloor), "floor record is %d bytes, want 16", len(floorRec))
	}
	info.LastChange = unixTime(int64(binary.BigEndian.Uint64(seqRec[8:])), v.lastSeq == 0)
	floorNs := int64(binary.BigEndian.Uint64(floorRec))
	info.Floor = unixTime(floorNs, floorNs == math.MinInt64)
	info.FloorSeq = binary.BigEndian.Uint64(floorRec[8:])
	return info, nil
}

// unixTime returns the UTC time of Unix ns, or the zero time when none.
func unixTime(ns int64, none bool) time.Time {
	if none {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

// backupRecords writes every key and value of v.
func (s *Store) backupRecords(ctx context.Context, v *view, sw *streamWriter, info *BackupInfo) error {
	it, err := v.snap.NewIter(nil)
	if err != nil {
		return fmt.Errorf("store: backup: %w", err)
	}
	for valid := it.First(); valid; valid = it.Next() {
		if info.Records%backupCancelCheck == 0 {
			if err := ctx.Err(); err != nil {
				return errors.Join(err, it.Close())
			}
			if sw.err != nil {
				break
			}
		}
		key := it.Key()
		value, err := it.ValueAndErr()
		if err != nil {
			return errors.Join(fmt.Errorf("store: backup: read key %x: %w", key, err), it.Close())
		}
		if len(key) == 0 || len(key) > maxBackupKeyLen || len(value) > maxBackupValueLen {
			return errors.Join(corrupt(key, "a %d-byte key with a %d-byte value does not fit a backup record", len(key), len(value)), it.Close())
		}
		sw.record(key, value)
		info.Records++
		info.RawBytes += int64(len(key) + len(value))
		if key[0] == prefixBinding {
			info.Bindings++
		}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return fmt.Errorf("store: backup: scan: %w", err)
	}
	return nil
}

// streamWriter writes the decompressed content of a backup stream and
// keeps its checksum and first error.
type streamWriter struct {
	bw  *bufio.Writer
	zw  *zstd.Encoder
	crc uint32
	err error // first error of zw
}

// checksumWriter adds what the buffer flushes to the checksum and passes
// it on to the encoder.
type checksumWriter struct{ sw *streamWriter }

func (c checksumWriter) Write(p []byte) (int, error) {
	c.sw.crc = crc32.Update(c.sw.crc, castagnoli, p)
	n, err := c.sw.zw.Write(p)
	if err != nil && c.sw.err == nil {
		c.sw.err = err
	}
	return n, err
}

func (sw *streamWriter) header(info *BackupInfo) {
	b := sw.bw.AvailableBuffer()
	b = append(b, backupMagic...)
	b = binary.BigEndian.AppendUint16(b, info.FormatVersion)
	b = binary.BigEndian.AppendUint32(b, info.LayoutVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(info.Created.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, info.LastSeq)
	b = binary.BigEndian.AppendUint64(b, uint64(timeOrZero(info.LastChange, 0)))
	b = binary.BigEndian.AppendUint64(b, uint64(timeOrZero(info.Floor, math.MinInt64)))
	b = binary.BigEndian.AppendUint64(b, info.FloorSeq)
	b = binary.BigEndian.AppendUint16(b, uint16(len(info.ServerDUID)))
	b = append(b, info.ServerDUID...)
	_, _ = sw.bw.Write(b)
}

// timeOrZero returns t in Unix ns, or none for the zero time.
func timeOrZero(t time.Time, none int64) int64 {
	if t.IsZero() {
		return none
	}
	return t.UnixNano()
}

// record writes one key and value. hot path: once per key of the store.
func (sw *streamWriter) record(key, value []byte) {
	b := sw.bw.AvailableBuffer()
	b = binary.AppendUvarint(b, uint64(len(key)))
	_, _ = sw.bw.Write(b)
	_, _ = sw.bw.Write(key)
	b = sw.bw.AvailableBuffer()
	b = binary.AppendUvarint(b, uint64(len(value)))
	_, _ = sw.bw.Write(b)
	_, _ = sw.bw.Write(value)
}

// trailer writes the end marker and the trailer, whose checksum covers
// every byte before it.
func (sw *streamWriter) trailer(info *BackupInfo) {
	b := sw.bw.AvailableBuffer()
	b = binary.AppendUvarint(b, 0)
	b = binary.BigEndian.AppendUint64(b, info.Records)
	b = binary.BigEndian.AppendUint64(b, info.Bindings)
	b = binary.BigEndian.AppendUint64(b, uint64(info.RawBytes))
	_, _ = sw.bw.Write(b)
	if err := sw.bw.Flush(); err != nil {
		if sw.err == nil {
			sw.err = err
		}
		return
	}
	if _, err := sw.zw.Write(binary.BigEndian.AppendUint32(nil, sw.crc)); err != nil && sw.err == nil {
		sw.err = err
	}
}

// countingWriter counts the bytes written to w.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
