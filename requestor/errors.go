package requestor

import (
	"errors"
	"strconv"

	"github.com/alqd/alqd/codec"
)

// Sentinel errors. Functions return them wrapped with the address, option or
// value involved; test for them with errors.Is.
var (
	// ErrUnreachable is returned by Dial when no TCP connection to the server
	// could be opened, and by QueryUDP when no answer came back after the
	// last retransmission.
	ErrUnreachable = errors.New("requestor: server unreachable")

	// ErrTLSRefused is returned inside a *TLSError by Dial in secure mode when
	// the server does not agree to TLS: no answer to STARTTLS, the connection
	// closed, or a REPLY with TLSConnectionRefused (RFC 7653 section 8.2).
	ErrTLSRefused = errors.New("requestor: server refused TLS")

	// ErrTLSHandshake is returned inside a *TLSError by Dial in secure mode
	// when the server accepted STARTTLS but the TLS handshake failed, for
	// example because its certificate did not verify. With TLS 1.3 the
	// first query on the connection returns it instead when the server
	// rejects the requestor certificate (see TLSHandshakeFailed).
	ErrTLSHandshake = errors.New("requestor: TLS handshake failed")

	// ErrInvalidQuery is returned before anything is sent when a Query or
	// Config cannot be encoded: a missing key for the query type, an IPv4
	// address, a DUID of the wrong size, an end time before the start time.
	ErrInvalidQuery = errors.New("requestor: invalid query")

	// ErrReceiveTimeout is returned when the server sent nothing for
	// Config.ReceiveTimeout on an active query or Config.BulkDataTimeout on a
	// bulk query; the connection is closed.
	ErrReceiveTimeout = errors.New("requestor: server sent nothing within the receive timeout")

	// ErrSendTimeout is returned when the query could not be written within
	// Config.BulkDataTimeout (RFC 7653 section 8.3); the connection is
	// closed.
	ErrSendTimeout = errors.New("requestor: query could not be sent within the send timeout")

	// ErrConnectionLost is returned when the server closed the connection,
	// or it failed, before every outstanding query completed. Bindings
	// delivered before it are valid, but the answer is incomplete.
	ErrConnectionLost = errors.New("requestor: connection lost before the query completed")

	// ErrProtocol is returned inside a *ProtocolError when the server sent
	// something a requestor cannot accept: an undecodable message, a
	// transaction-id that matches no outstanding query, or a message type out
	// of sequence. The connection is closed.
	ErrProtocol = errors.New("requestor: protocol violation by the server")

	// ErrClosed is returned by a Conn method called after Close, or after
	// an earlier error ended the connection.
	ErrClosed = errors.New("requestor: connection closed")

	// ErrTransactionIDs is returned when a connection has used all 2^24
	// transaction-ids; open a new connection.
	ErrTransactionIDs = errors.New("requestor: transaction-ids of this connection used up")
)

// ProtocolError reports a message from the server that breaks the rules of
// RFC 5007, RFC 5460 or RFC 7653, or that does not decode.
type ProtocolError struct {
	TransactionID uint32        // transaction-id of the message; 0 when it did not decode
	Type          codec.MsgType // msg-type of the message; 0 when it did not decode
	Reason        string        // what was wrong, for people
	Err           error         // the decode error, if any
}

// Error returns the reason with the message type and transaction-id.
func (e *ProtocolError) Error() string {
	s := "requestor: protocol violation by the server: " + e.Reason
	if e.Type != 0 {
		s += " (" + e.Type.String() + " xid 0x" + strconv.FormatUint(uint64(e.TransactionID), 16) + ")"
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Is makes errors.Is(err, ErrProtocol) true.
func (e *ProtocolError) Is(target error) bool { return target == ErrProtocol }

// Unwrap returns the decode error, so that errors.As finds a
// *codec.DecodeError or *codec.FrameError.
func (e *ProtocolError) Unwrap() error { return e.Err }

// TLSOutcome says how a STARTTLS exchange failed.
type TLSOutcome uint8

// The failed outcomes of STARTTLS, the first three of which RFC 7653 section
// 8.2 lists as "the server does not support TLS".
const (
	TLSNoAnswer        TLSOutcome = iota + 1 // no REPLY within Config.StartTLSTimeout
	TLSClosed                                // the server closed the connection
	TLSRefused                               // REPLY with a status code, normally TLSConnectionRefused
	TLSHandshakeFailed                       // REPLY without status, then a failed handshake or a TLS alert before any message
)

// String returns a short description of o.
func (o TLSOutcome) String() string {
	switch o {
	case TLSNoAnswer:
		return "no answer to STARTTLS"
	case TLSClosed:
		return "connection closed after STARTTLS"
	case TLSRefused:
		return "STARTTLS refused"
	case TLSHandshakeFailed:
		return "TLS handshake failed"
	}
	return "TLSOutcome(" + strconv.Itoa(int(o)) + ")"
}

// TLSError reports a failed STARTTLS exchange. The TCP connection has been
// closed (RFC 7653 section 8.2 forbids going on without TLS).
//
// Dial returns it for every outcome but one case of TLSHandshakeFailed. In
// TLS 1.3 the client's side of the handshake ends before the server has
// checked the client certificate, so a server that rejects the certificate
// (none given, another CA, not on its allow-list) sends its alert after
// Dial returned. The first read then returns a *TLSError with
// TLSHandshakeFailed wrapping the *net.OpError of crypto/tls. An alert after
// a message has arrived is a lost connection, not a TLSError.
type TLSError struct {
	Server  string
	Outcome TLSOutcome
	Status  *codec.StatusError // the REPLY's status for TLSRefused
	Err     error              // handshake or read error, if any
}

// Error names the server and the outcome.
func (e *TLSError) Error() string {
	s := "requestor: STARTTLS with " + e.Server + ": " + e.Outcome.String()
	if e.Status != nil {
		s += ": " + e.Status.Error()
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Is makes errors.Is match ErrTLSHandshake for a failed handshake and
// ErrTLSRefused for the other outcomes.
func (e *TLSError) Is(target error) bool {
	if e.Outcome == TLSHandshakeFailed {
		return target == ErrTLSHandshake
	}
	return target == ErrTLSRefused
}

// Unwrap returns the underlying error and the status, so that errors.As
// finds a *codec.StatusError or a *tls.CertificateVerificationError.
func (e *TLSError) Unwrap() []error {
	var errs []error
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	if e.Status != nil {
		errs = append(errs, e.Status)
	}
	return errs
}

// StatusCode returns the status code of a *codec.StatusError in err's chain,
// and false when there is none.
func StatusCode(err error) (codec.StatusCode, bool) {
	var se *codec.StatusError
	if errors.As(err, &se) {
		return se.Code, true
	}
	return 0, false
}

// Permanent reports whether retrying the same query against the same server
// cannot succeed: the server rejected it (UnknownQueryType, MalformedQuery,
// NotConfigured, NotAllowed, NotSupported), TLS failed, or the query is
// invalid. RFC 5007 leaves retries to the requestor; repeating such a query
// unchanged only loads the server.
func Permanent(err error) bool {
	if errors.Is(err, ErrInvalidQuery) || errors.Is(err, ErrTLSRefused) || errors.Is(err, ErrTLSHandshake) {
		return true
	}
	code, ok := StatusCode(err)
	if !ok {
		return false
	}
	switch code {
	case codec.StatusUnknownQueryType, codec.StatusMalformedQuery, codec.StatusNotConfigured,
		codec.StatusNotAllowed, codec.StatusNotSupported, codec.StatusTLSConnectionRefused:
		return true
	}
	return false
}
