package store

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// Options configures Open. The zero value works; Open copies it and never
// reads it again.
type Options struct {
	// BlockCacheSize is the size of Pebble's block cache in bytes. Size it to
	// hold the binding keyspace of the active bindings. Zero means 64 MiB.
	BlockCacheSize int64

	// MemTableSize is the size of one Pebble memtable in bytes; two are kept
	// before writes stall. Zero means 16 MiB.
	MemTableSize uint64

	// MaxOpenFiles is Pebble's soft limit on the files it keeps open: its
	// file cache of sstables, and ten for the WAL, MANIFEST, lock file and
	// directories (Pebble v2.1.7). Pebble exceeds it only while open
	// iterators still hold sstables it evicted. A server keeps this many descriptors out of
	// RLIMIT_NOFILE for the store (Store.MaxOpenFiles). Zero means 500;
	// values below 100 are rejected.
	MaxOpenFiles int

	// Retention is how long released and expired bindings stay in the
	// history after their last change, so that catch-up from that far back
	// reports them. Zero means 24 hours.
	Retention time.Duration

	// TrimInterval is how often the store trims the history by itself. Zero
	// means 10 minutes; a negative value disables the background trim, and
	// the owner then calls Trim.
	TrimInterval time.Duration

	// MaxGroupChanges is the number of changes after which the writer
	// stops adding queued Apply calls to a group commit. A call is never
	// split, so a group can exceed it by one call. Zero means 4096.
	MaxGroupChanges int

	// NoSync commits without waiting for the write-ahead log to reach the
	// disk, so a crash can lose acknowledged changes. Use it only to load
	// fixtures; a server must keep the default (synced commits).
	NoSync bool

	// ServerDUID is the DUID a new store records as the server's identity.
	// Nil means a generated DUID-UUID (RFC 6355). Open of an existing store
	// fails with ErrIncompatible when this is set and differs from the
	// stored DUID.
	ServerDUID []byte

	// Clock returns the server time used for ChangeTime and the background
	// trim. Nil means time.Now; tests pass a fake clock.
	Clock func() time.Time

	// Logger receives Pebble's own messages: informational ones at debug
	// level, background errors at error level. The store itself never logs.
	// Nil means slog.Default().
	Logger *slog.Logger
}

// Defaults for the zero Options fields.
const (
	DefaultBlockCacheSize  = 64 << 20
	DefaultMemTableSize    = 16 << 20
	DefaultMaxOpenFiles    = 500
	DefaultRetention       = 24 * time.Hour
	DefaultTrimInterval    = 10 * time.Minute
	DefaultMaxGroupChanges = 4096
)

// Validate reports the first field that holds an unusable value.
func (o *Options) Validate() error {
	switch {
	case o.BlockCacheSize < 0:
		return fmt.Errorf("store: BlockCacheSize %d is negative", o.BlockCacheSize)
	case o.MemTableSize != 0 && o.MemTableSize < 1<<20:
		return fmt.Errorf("store: MemTableSize %d is below 1 MiB", o.MemTableSize)
	case o.MemTableSize >= 4<<30:
		return fmt.Errorf("store: MemTableSize %d is not below 4 GiB", o.MemTableSize)
	case o.MaxOpenFiles != 0 && o.MaxOpenFiles < minMaxOpenFiles:
		return fmt.Errorf("store: MaxOpenFiles %d is below %d; set 0 for the default %d or a value of at least %d", o.MaxOpenFiles, minMaxOpenFiles, DefaultMaxOpenFiles, minMaxOpenFiles)
	case o.Retention < 0:
		return fmt.Errorf("store: Retention %s is negative", o.Retention)
	case o.Retention != 0 && o.Retention < time.Second:
		return fmt.Errorf("store: Retention %s is below one second, the resolution of catch-up start times", o.Retention)
	case o.MaxGroupChanges < 0:
		return fmt.Errorf("store: MaxGroupChanges %d is negative", o.MaxGroupChanges)
	case o.ServerDUID != nil && (len(o.ServerDUID) < 3 || len(o.ServerDUID) > 130):
		return fmt.Errorf("store: ServerDUID is %d bytes; a DUID is a 2-byte type and 1 to 128 bytes", len(o.ServerDUID))
	}
	return nil
}

func (o *Options) setDefaults() {
	if o.BlockCacheSize == 0 {
		o.BlockCacheSize = DefaultBlockCacheSize
	}
	if o.MemTableSize == 0 {
		o.MemTableSize = DefaultMemTableSize
	}
	if o.MaxOpenFiles == 0 {
		o.MaxOpenFiles = DefaultMaxOpenFiles
	}
	if o.Retention == 0 {
		o.Retention = DefaultRetention
	}
	if o.TrimInterval == 0 {
		o.TrimInterval = DefaultTrimInterval
	}
	if o.MaxGroupChanges == 0 {
		o.MaxGroupChanges = DefaultMaxGroupChanges
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	o.ServerDUID = append([]byte(nil), o.ServerDUID...)
}

// minMaxOpenFiles is the smallest MaxOpenFiles accepted. Pebble's file
// cache may hold 64 sstables whatever the limit, next to its ten other
// files, so a value below 74 would not bound what the store opens.
const minMaxOpenFiles = 100

// pebbleLogger forwards Pebble's messages to slog.
type pebbleLogger struct{ logger *slog.Logger }

func (l pebbleLogger) Infof(format string, args ...any) {
	l.logger.Debug("pebble message", "text", fmt.Sprintf(format, args...))
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.logger.Error("pebble error", "text", fmt.Sprintf(format, args...))
}

// Fatalf is called by Pebble on a broken internal invariant; Pebble expects
// it not to return.
func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.logger.Log(context.Background(), slog.LevelError, "pebble fatal error", "text", msg)
	panic("pebble: " + msg)
}
