package mirror

import "errors"

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
