package server

import "errors"

var (
	// ErrInvalidConfig is wrapped by Config.Validate, and so by New, for a
	// field out of range; the message names the field and the value.
	ErrInvalidConfig = errors.New("server: invalid config")

	// ErrActiveNotAvailable is wrapped by Config.Validate when Config.Active
	// is set without a transport it may run on: plaintext TCP needs
	// Config.Insecure as a separate step (RFC 7653 section 9.1).
	ErrActiveNotAvailable = errors.New("server: Active Leasequery has no transport to run on")

	// ErrEngineStopped is returned by Server.Run when the gnet engine stops
	// without Shutdown having been called, for example after accept(2)
	// failed with EMFILE; gnet then returns nil, so Run reports it instead.
	ErrEngineStopped = errors.New("server: event engine stopped unexpectedly")

	// ErrServerClosed is returned by Server.Run when it is called again, or
	// after Shutdown.
	ErrServerClosed = errors.New("server: closed")

	// errShutdown is the cancellation cause of a bulk query stopped by
	// Shutdown; the query then ends with QueryTerminated.
	errShutdown = errors.New("server: shutting down")

	// errTerminated is the cancellation cause of a bulk query the server
	// ends early on a connection it is about to close for the requestor's
	// misbehaviour; like errShutdown, the query ends with QueryTerminated.
	errTerminated = errors.New("server: query terminated")

	// errConnClosed is the cancellation cause of a bulk query whose
	// connection closed; nothing more is sent.
	errConnClosed = errors.New("server: connection closed")
)
