package mirror

import (
	"errors"
	"fmt"
)

var (
	// ErrCorrupt is returned when a stored key or record does not decode.
	ErrCorrupt = errors.New("mirror: corrupt database entry")

	// ErrOtherServer is returned by Open when the database was filled from
	// another server than Config.Requestor.Server: its checkpoint is a time
	// in that server's clock and its bindings are that server's.
	ErrOtherServer = errors.New("mirror: database follows another server")

	// ErrFormat is returned by Open for a database written in a format this
	// version does not read.
	ErrFormat = errors.New("mirror: unknown database format")
)

// DataMissingError is returned by Run when the server sent DataMissing
// and the mirror has no bulk query to fetch the missing changes with,
// because Config.Recovery and Config.Filter are both empty. Going on would
// leave the mirror without those changes for good, so Run stops before it
// stores a checkpoint past StartTime. A later run with recovery queries
// gets the same DataMissing and recovers (RFC 7653 section 8.4.1).
type DataMissingError struct {
	// StartTime is the OPTION_LQ_START_TIME the active query sent. It is 0
	// when an empty mirror asked for the whole history.
	StartTime uint32

	// BaseTime is the OPTION_LQ_BASE_TIME of the DataMissing: the end of
	// the missing interval, in the server's clock.
	BaseTime uint32
}

func (e *DataMissingError) Error() string {
	if e.StartTime == 0 {
		return fmt.Sprintf("mirror: the server's history does not reach back to start time 0 (DataMissing at server time %d), so an empty mirror cannot be filled by catch-up; it needs bulk queries (Config.Recovery or Config.Filter)", e.BaseTime)
	}
	return fmt.Sprintf("mirror: the server has no history from server time %d to %d (DataMissing), and the mirror has no bulk query to fetch that interval with (Config.Recovery or Config.Filter); the checkpoint stays at %d", e.StartTime, e.BaseTime, e.StartTime)
}
