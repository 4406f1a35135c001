package server

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/store"
)

// maxGroup caps the bindings in one OPTION_CLIENT_DATA, so that a client
// with very many bindings on one link still fits in 65535-octet messages;
// the rest of its bindings go on in the next message.
const maxGroup = 256

// emitFunc hands a chunk of whole frames to the transport. last marks the
// chunk that ends the query (it holds the LEASEQUERY-DONE or the only
// LEASEQUERY-REPLY). emit may block for flow control. It returns an empty
// buffer for the next chunk, which may be chunk itself once written, and
// an error to stop the query: errShutdown when the server shuts down (the
// chunk was still handed over, and later calls skip flow control so that
// the final DONE goes out), anything else when the connection is gone
// (nothing was handed over).
type emitFunc func(chunk []byte, last bool) ([]byte, error)

// bulkJob answers one request on a stream transport (RFC 5460 section 5.2):
// one LEASEQUERY-REPLY with the first client, a LEASEQUERY-DATA per further
// client, then a LEASEQUERY-DONE; a query that matches nothing gets only the
// REPLY. It encodes into chunks of about chunkSize octets so that neither
// the event loop nor memory ever holds the whole result.
type bulkJob struct {
	req       *request
	head      replyHead
	view      view
	src       Store
	clock     func() time.Time
	chunkSize int
	metrics   *Metrics

	group []store.Binding // reused between groups

	// aborted is set by abort before it hands over the final message, so
	// the transport can close the connection after it.
	aborted bool
}

// bulkOutcome reports how a bulk query ended.
type bulkOutcome struct {
	bindings int
	status   string // metrics label
	// abort is set when the query ended with QueryTerminated or a store
	// error; RFC 7653 section 9.5 then asks the server to close the
	// connection.
	abort bool
	err   error // the store or encoding error behind abort, or the cancellation cause

	// relayOmitted counts the clients sent without their
	// OPTION_LQ_RELAY_DATA because it did not fit in the message;
	// unencodable counts the bindings left out because they could not be
	// encoded at all. trouble is one binding of either kind, and encodeErr
	// the first encoding error, for the log (noteEncodeTrouble).
	relayOmitted int
	unencodable  int
	trouble      netip.Prefix
	encodeErr    error
}

// newBulkJob prepares the job for r. policy supplies the server DUID and
// the deny list.
func newBulkJob(r *request, p *policy, src Store, clock func() time.Time, chunkSize int, m *Metrics) *bulkJob {
	return &bulkJob{
		req: r,
		head: replyHead{
			xid:      r.xid,
			serverID: p.serverID,
			clientID: r.clientID,
			framed:   true,
			baseTime: r.wantBaseTime,
		},
		view:      view{relayData: r.wantRelayData, cltTime: !p.deny.has(codec.OptCLTTime)},
		src:       src,
		clock:     clock,
		chunkSize: chunkSize,
		metrics:   m,
	}
}

// run streams the answer through emit, starting with buf. Cancelling ctx
// with cause errShutdown ends the query with QueryTerminated; any other
// cause stops it without another message.
func (j *bulkJob) run(ctx context.Context, buf []byte, emit emitFunc) bulkOutcome {
	now := j.clock()
	began := time.Now()
	sel, err := openSelection(j.src, j.req, now, j.metrics)
	if err != nil {
		return j.abort(ctx, buf, false, err, emit)
	}
	defer sel.close()

	var out bulkOutcome
	first := true
	j.group = j.group[:0]
	timed := false
	for {
		bd, ok := sel.next()
		if !timed {
			j.metrics.observeStore("open", began)
			timed = true
		}
		if !ok {
			break
		}
		if len(j.group) > 0 && (len(j.group) >= maxGroup || !sameClientLink(&j.group[len(j.group)-1], bd)) {
			buf = j.appendGroup(buf, first, now, &out)
			first = first && len(j.group) == 0
			j.group = j.group[:0]
			if len(buf) >= j.chunkSize {
				if ctx.Err() != nil {
					return j.abort(ctx, buf, !first, context.Cause(ctx), emit)
				}
				if buf, err = emit(buf, false); err != nil {
					// The chunk went out unless the connection is gone, so a
					// shutdown still ends the stream with DONE.
					return j.abort(ctx, buf, true, err, emit)
				}
				now = j.clock()
			}
		}
		j.group = append(j.group, *bd)
	}
	if err := sel.it.Err(); err != nil {
		return j.abort(ctx, buf, !first, err, emit)
	}
	if len(j.group) > 0 {
		buf = j.appendGroup(buf, first, now, &out)
		first = first && len(j.group) == 0
		j.group = j.group[:0]
	}

	// End of the answer: the REPLY alone when nothing matched (RFC 5460
	// section 5.2.1: no status and no OPTION_CLIENT_DATA), else DONE.
	if first {
		buf, err = j.head.appendStatusReply(buf, now, nil)
		out.status = "no_data"
	} else {
		buf, err = j.head.appendDone(buf, now, nil)
		out.status = codec.StatusSuccess.String()
	}
	if err != nil {
		return j.abort(ctx, buf, !first, err, emit)
	}
	if _, err := emit(buf, true); err != nil {
		return bulkOutcome{bindings: out.bindings, status: "terminated", err: err}
	}
	return out
}

// appendGroup appends the message for j.group. A group that does not fit
// in a message with its OPTION_LQ_RELAY_DATA goes out without it. A group
// that cannot be encoded even so (a binding the codec rejects) is left out.
// Both are counted in out and the metrics; j.group is then emptied so that
// first stays true when nothing was written.
func (j *bulkJob) appendGroup(buf []byte, first bool, now time.Time, out *bulkOutcome) []byte {
	next, err := j.head.appendBindings(buf, first, j.group, j.view, now)
	if err != nil && j.view.relayData && relaySource(j.group) != nil {
		plain := j.view
		plain.relayData = false
		if next, err = j.head.appendBindings(buf, first, j.group, plain, now); err == nil {
			j.metrics.tcpRelayOmitted.Inc()
			out.relayOmitted++
			out.noteTrouble(relaySource(j.group).Prefix, nil)
		}
	}
	if err != nil {
		j.metrics.encodeErrors.Add(float64(len(j.group)))
		out.unencodable += len(j.group)
		out.noteTrouble(j.group[0].Prefix, err)
		j.group = j.group[:0]
		return buf
	}
	out.bindings += len(j.group)
	j.metrics.tcpBindings.Add(float64(len(j.group)))
	return next
}

// noteEncodeTrouble logs, at most once per WarnInterval for the whole
// server, that a bulk query sent clients without their relay data or left
// bindings out. The metrics count every case.
func (s *Server) noteEncodeTrouble(log *slog.Logger, xid uint32, out *bulkOutcome) {
	if out.relayOmitted == 0 && out.unencodable == 0 {
		return
	}
	ok, suppressed := s.encodeWarn.allow(time.Now())
	if !ok {
		return
	}
	args := []any{"xid", xid, "without_relay_data", out.relayOmitted, "left_out", out.unencodable, "binding", out.trouble.String()}
	if out.encodeErr != nil {
		args = append(args, "err", out.encodeErr)
	}
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	log.Warn("bindings did not fit in a reply", args...)
}

// noteTrouble keeps the first binding and the first error of an encoding
// problem.
func (o *bulkOutcome) noteTrouble(p netip.Prefix, err error) {
	if !o.trouble.IsValid() {
		o.trouble = p
	}
	if o.encodeErr == nil {
		o.encodeErr = err
	}
}

// abort ends the query after a failure or a shutdown. Before any reply the
// answer is a LEASEQUERY-REPLY with the status; after the first reply it is
// a LEASEQUERY-DONE with QueryTerminated (RFC 5460 section 5.2.2). A query
// whose connection went away sends nothing.
func (j *bulkJob) abort(ctx context.Context, buf []byte, replied bool, cause error, emit emitFunc) bulkOutcome {
	out := bulkOutcome{status: "terminated", abort: true, err: cause}
	j.aborted = true
	if !errors.Is(cause, errShutdown) && isConnError(cause) {
		return out
	}

	status := &codec.StatusError{Code: codec.StatusQueryTerminated, Msg: "the server stopped this query"}
	switch {
	case errors.Is(cause, errShutdown):
		status.Msg = "the server is shutting down"
	case errors.Is(cause, errTerminated):
		status.Msg = "the server is closing the connection because the requestor sent more queries than it reads ahead"
	}
	var err error
	if replied {
		buf, err = j.head.appendDone(buf, j.clock(), status)
	} else {
		if !endsInOrder(cause) {
			status = &codec.StatusError{Code: codec.StatusUnspecFail, Msg: "the binding store failed"}
		}
		buf, err = j.head.appendStatusReply(buf, j.clock(), status)
	}
	out.status = status.Code.String()
	if err == nil {
		_, _ = emit(buf[:len(buf):len(buf)], true)
	}
	return out
}

// endsInOrder reports whether cause stops a bulk query that must still end
// with QueryTerminated: a shutdown, or a connection the server closes after
// the answers it owes.
func endsInOrder(cause error) bool {
	return errors.Is(cause, errShutdown) || errors.Is(cause, errTerminated)
}

// isConnError reports whether err says the connection is gone, as opposed
// to a store or encoding failure that the requestor should hear about.
func isConnError(err error) bool {
	var ce *connError
	return errors.Is(err, errConnClosed) || errors.As(err, &ce)
}

// connError wraps a write failure reported by a transport.
type connError struct{ err error }

func (e *connError) Error() string { return "server: connection write failed: " + e.err.Error() }
func (e *connError) Unwrap() error { return e.err }
