package store

import (
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrClosed is returned by every method of a Store after Close, and by
	// Apply calls that Close overtook before their changes were taken.
	ErrClosed = errors.New("store: closed")

	// ErrInvalidBinding is wrapped by Apply when a change or metadata key
	// can not be stored; nothing of that call is committed.
	ErrInvalidBinding = errors.New("store: invalid binding")

	// ErrInvalidQuery is wrapped by the lookups and iterators when an
	// argument can not select anything (an empty id, a non-IPv6 address).
	ErrInvalidQuery = errors.New("store: invalid query")

	// ErrCorrupt is matched (errors.Is) by every *CorruptError.
	ErrCorrupt = errors.New("store: corrupt data")

	// ErrIncompatible is wrapped by Open when the directory holds a Pebble
	// database that is not an alqd store of this layout version, or when
	// Options.ServerDUID differs from the stored server DUID.
	ErrIncompatible = errors.New("store: incompatible database")

	// ErrBackupInvalid is wrapped by Restore when the stream is not an
	// intact backup. That covers a stream that is not zstd, lacks the
	// backup magic or is truncated, a checksum or count that does not
	// match, keys out of order, data after the trailer, and internal
	// records that disagree with the header.
	ErrBackupInvalid = errors.New("store: invalid backup")

	// ErrBackupVersion is wrapped by Restore when the backup has a stream
	// format or store layout version that this alqd does not read.
	ErrBackupVersion = errors.New("store: unsupported backup version")

	// ErrTargetNotEmpty is wrapped by Restore when the target directory
	// holds files, such as a store.
	ErrTargetNotEmpty = errors.New("store: restore target is not empty")
)

// CorruptError reports a key or value that breaks the store's layout: a
// value that does not decode, an index entry without its binding, a history
// entry whose sequence number disagrees with the binding. The store returns
// it from the call that found it. A write that finds it also fails every
// later write, because going on could spread the damage. Restore the
// directory from a backup or rebuild it from the lease source. Key is the
// Pebble key involved.
type CorruptError struct {
	Key []byte
	Err error
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("store: corrupt data at key %x: %v (restore the store from a backup or rebuild it)", e.Key, e.Err)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrCorrupt) true for every CorruptError.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

func corrupt(key []byte, format string, args ...any) *CorruptError {
	return &CorruptError{Key: append([]byte(nil), key...), Err: fmt.Errorf(format, args...)}
}

// InconsistencyError is returned by Verify: it lists the first problems
// found (each usually a *CorruptError naming the key) and counts them all.
type InconsistencyError struct {
	Problems []error
	Total    int
}

func (e *InconsistencyError) Error() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "store: verify found %d inconsistencies", e.Total)
	for _, p := range e.Problems {
		sb.WriteString("\n\t")
		sb.WriteString(p.Error())
	}
	if e.Total > len(e.Problems) {
		fmt.Fprintf(&sb, "\n\t... and %d more", e.Total-len(e.Problems))
	}
	return sb.String()
}

// Unwrap returns the listed problems, so errors.Is(err, ErrCorrupt) holds.
func (e *InconsistencyError) Unwrap() []error { return e.Problems }
