package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/requestor"
	"github.com/alqd/alqd/requestor/mirror"
)

// Exit codes. Scripts depend on them; docs/ALQ.md and "alq help" list them.
const (
	exitOK          = 0   // success, including a query that matched nothing
	exitFailure     = 1   // anything not listed below: invalid reply, local I/O error
	exitUsage       = 2   // invalid command line or query; nothing was sent
	exitUnreachable = 3   // no TCP connection, or no UDP reply after every retransmission
	exitTLS         = 4   // the server refused STARTTLS, or the TLS handshake failed
	exitNotAllowed  = 5   // the server replied NotAllowed
	exitRejected    = 6   // the server rejected the query: MalformedQuery, UnknownQueryType, NotConfigured, NotSupported
	exitIncomplete  = 7   // the reply stream stopped early: connection lost, timeout, QueryTerminated; output is partial
	exitDataMissing = 8   // mirror: DataMissing, and no --bulk-link or --by to recover with
	exitInterrupted = 130 // interrupted by SIGINT or SIGTERM before the answer was complete
)

// exitCodes is the table that "alq help" prints.
const exitCodesHelp = `Exit codes:
  0    success; a query that matched nothing is a success too
  1    other failure: the server sent an invalid answer, or a local error
  2    invalid command line or query; nothing was sent
  3    server unreachable: no TCP connection, or no UDP answer after every retransmission
  4    TLS failed: the server refused STARTTLS, or the handshake failed
  5    the server does not allow this requestor (NotAllowed)
  6    the server rejected the query (MalformedQuery, UnknownQueryType, NotConfigured, NotSupported)
  7    the answer stopped early (connection lost, timeout, QueryTerminated); the output is partial
  8    mirror: the server answered DataMissing and no --bulk-link or --by can recover it
  130  interrupted before the answer was complete
`

// usageError is a command-line mistake, reported with exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// explain turns an error into an exit code and a message that says what
// failed and what to do.
func explain(err error, server string) (int, string) {
	var ue *usageError
	var te *requestor.TLSError
	var dm *mirror.DataMissingError
	switch {
	case errors.As(err, &ue):
		return exitUsage, ue.msg + " (see alq help)"
	case errors.Is(err, context.Canceled):
		return exitInterrupted, "interrupted; the output is incomplete"
	case errors.Is(err, requestor.ErrInvalidQuery):
		return exitUsage, err.Error() + " (see alq help)"
	case errors.Is(err, mirror.ErrOtherServer), errors.Is(err, mirror.ErrFormat):
		// The command name already leads the line.
		return exitUsage, strings.TrimPrefix(err.Error(), "mirror: ")
	case errors.As(err, &dm) && dm.StartTime == 0:
		return exitDataMissing, fmt.Sprintf("%s answered DataMissing: its history no longer reaches back to its oldest binding, so an empty mirror cannot be filled by catch-up; run alq mirror again with --bulk-link for every link (or --by)", server)
	case errors.As(err, &dm):
		return exitDataMissing, fmt.Sprintf("%s has no history from server time %d to %d (DataMissing), and without --bulk-link or --by the mirror cannot fetch what changed then; it stopped before that interval, so run alq mirror again with --bulk-link for every link (or --by) and it recovers", server, dm.StartTime, dm.BaseTime)
	case errors.Is(err, requestor.ErrUnreachable):
		return exitUnreachable, fmt.Sprintf("cannot reach %s: %v; check --server (host:port, port 547 by default) and that the server listens there", server, err)
	case errors.As(err, &te) && te.Outcome == requestor.TLSHandshakeFailed:
		return exitTLS, fmt.Sprintf("TLS handshake with %s failed: %v; check that --tls-ca holds the CA of the server certificate and that --tls-cert and --tls-key are a certificate the server accepts", server, te.Err)
	case errors.As(err, &te):
		return exitTLS, fmt.Sprintf("%s refused TLS (%v); it does not support TLS or runs in insecure mode. alq never falls back to plaintext: enable TLS on the server, or drop the --tls flags on a trusted network", server, te.Outcome)
	}

	if code, ok := requestor.StatusCode(err); ok {
		return explainStatus(code, err, server)
	}
	switch {
	case errors.Is(err, requestor.ErrConnectionLost), errors.Is(err, requestor.ErrReceiveTimeout), errors.Is(err, requestor.ErrSendTimeout):
		return exitIncomplete, fmt.Sprintf("%v; the output is incomplete, run the query again", err)
	case errors.Is(err, requestor.ErrProtocol):
		return exitFailure, fmt.Sprintf("%s sent an invalid answer: %v", server, err)
	}
	return exitFailure, err.Error()
}

// explainStatus explains a status code the server sent.
func explainStatus(code codec.StatusCode, err error, server string) (int, string) {
	var se *codec.StatusError
	errors.As(err, &se)
	detail := code.String()
	if se != nil && se.Msg != "" {
		detail += ": " + se.Msg
	}
	switch code {
	case codec.StatusNotAllowed:
		return exitNotAllowed, fmt.Sprintf("%s does not allow this requestor (%s); add this host to the server's requestor allow-list", server, detail)
	case codec.StatusMalformedQuery, codec.StatusUnknownQueryType:
		return exitRejected, fmt.Sprintf("%s rejected the query (%s); check --by and its value flags", server, detail)
	case codec.StatusNotConfigured:
		return exitRejected, fmt.Sprintf("%s is not configured to answer this query (%s)", server, detail)
	case codec.StatusNotSupported:
		return exitRejected, fmt.Sprintf("%s does not support Active Leasequery (%s); enable it on the server, or use alq bulk", server, detail)
	case codec.StatusQueryTerminated:
		return exitIncomplete, fmt.Sprintf("%s terminated the query (%s); the output is incomplete, run the query again later", server, detail)
	}
	return exitFailure, fmt.Sprintf("%s answered %s", server, detail)
}
