package server

// CloseReason says why the server closed a TCP connection, or that the
// requestor did. Every close is logged and counted with its reason.
type CloseReason uint8

// Close reasons.
const (
	ClosePeerClosed         CloseReason = iota + 1 // the requestor closed or reset the connection
	CloseReadError                                 // read(2) failed
	CloseWriteError                                // write(2) failed
	CloseProtocolViolation                         // bad framing, unexpected message type, flooding
	CloseSlowConsumer                              // no write progress for BULK_LQ_DATA_TIMEOUT, or blocked for ACTIVE_LQ_SEND_TIMEOUT
	CloseIdle                                      // nothing or only part of a frame received for the idle timeout
	CloseTooManyConnections                        // over the server-wide or per-requestor connection limit
	CloseNotAllowed                                // requestor not on the allow-list
	CloseNotSupported                              // ACTIVELEASEQUERY on a server without Active Leasequery
	CloseQueryAborted                              // a bulk query failed after its first reply (store error)
	CloseShutdown                                  // server shutdown
	CloseQueryRejected                             // an ACTIVELEASEQUERY answered with an error status (RFC 7653 section 9.3)
	CloseNotSecured                                // secure mode: the first message was not STARTTLS
	CloseTLSHandshake                              // the TLS handshake after STARTTLS failed or timed out
)

// String returns the label used in logs and metrics, such as "slow_consumer".
func (r CloseReason) String() string {
	switch r {
	case ClosePeerClosed:
		return "peer_closed"
	case CloseReadError:
		return "read_error"
	case CloseWriteError:
		return "write_error"
	case CloseProtocolViolation:
		return "protocol_violation"
	case CloseSlowConsumer:
		return "slow_consumer"
	case CloseIdle:
		return "idle"
	case CloseTooManyConnections:
		return "too_many_connections"
	case CloseNotAllowed:
		return "not_allowed"
	case CloseNotSupported:
		return "not_supported"
	case CloseQueryAborted:
		return "query_aborted"
	case CloseShutdown:
		return "shutdown"
	case CloseQueryRejected:
		return "query_rejected"
	case CloseNotSecured:
		return "not_secured"
	case CloseTLSHandshake:
		return "tls_handshake"
	}
	return "unknown"
}

// closeReasons lists every reason, for pre-creating metric series.
var closeReasons = []CloseReason{
	ClosePeerClosed, CloseReadError, CloseWriteError, CloseProtocolViolation,
	CloseSlowConsumer, CloseIdle, CloseTooManyConnections, CloseNotAllowed,
	CloseNotSupported, CloseQueryAborted, CloseShutdown, CloseQueryRejected,
	CloseNotSecured, CloseTLSHandshake,
}
