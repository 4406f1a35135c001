package requestor

import (
	"context"
	"errors"
	"fmt"

	"github.com/alqd/alqd/codec"
)

// bulkPhase is where one bulk query is in the reply sequence of RFC 5460
// section 5.2: one LEASEQUERY-REPLY, then LEASEQUERY-DATA, then
// LEASEQUERY-DONE.
type bulkPhase uint8

const (
	awaitingReply bulkPhase = iota // nothing received yet
	streaming                      // REPLY with a binding received; DATA or DONE next
	complete                       // DONE, or a REPLY that ends the query, received
)

// bulkQuery is the state of one outstanding query of BulkPipelined.
type bulkQuery struct {
	index    int
	xid      uint32
	phase    bulkPhase
	bindings int
}

// Bulk runs one Bulk Leasequery (RFC 5460) and calls fn for every event, in
// arrival order: one Binding per address or prefix, then a Done. It returns
// nil when the query completed with Success (including a query that matched
// nothing), a *codec.StatusError when the server rejected or terminated it,
// the error fn returned, or the error that ended the connection. After a
// nil or *codec.StatusError return the Conn can run another query.
func (c *Conn) Bulk(ctx context.Context, q Query, fn func(Event) error) error {
	return c.BulkPipelined(ctx, []Query{q}, fn)
}

// BulkPipelined sends every query at once, each with its own transaction-id,
// and calls fn for the events of all of them in arrival order;
// MessageInfo.Query tells which query an event belongs to. A server may
// answer pipelined queries one after the other or interleaved (RFC 5460
// section 6). It returns after every query has its Done, with nil or the
// *codec.StatusError of each failed query joined by errors.Join; other
// errors are as for Bulk.
func (c *Conn) BulkPipelined(ctx context.Context, queries []Query, fn func(Event) error) error {
	return c.bulk(ctx, queries, SourceBulk, func(evs []Event) error {
		for _, ev := range evs {
			if err := fn(ev); err != nil {
				return err
			}
		}
		return nil
	})
}

// bulk runs queries and hands deliver the events of each message together.
func (c *Conn) bulk(ctx context.Context, queries []Query, source Source, deliver func([]Event) error) error {
	if err := c.Err(); err != nil {
		return err
	}
	if len(queries) == 0 {
		return nil
	}
	for i := range queries {
		if err := queries[i].Validate(); err != nil {
			return fmt.Errorf("query %d: %w", i, err)
		}
	}
	stop := c.watch(ctx)
	defer stop()

	// Encode every query, then send them in one write.
	pending := make(map[uint32]*bulkQuery, len(queries))
	b := c.wbuf[:0]
	for i := range queries {
		xid, err := c.nextXID()
		if err != nil {
			return err
		}
		if b, err = queries[i].appendLeasequery(b, xid, c.cfg.ClientID); err != nil {
			return fmt.Errorf("query %d: %w", i, err)
		}
		pending[xid] = &bulkQuery{index: i, xid: xid}
	}
	c.wbuf = b[:0]
	if err := c.write(ctx, b); err != nil {
		return err
	}

	// Read until every query has completed.
	var failed []error
	var evs []Event
	var m message
	for open := len(queries); open > 0; {
		frame, received, err := c.read(ctx, c.cfg.BulkDataTimeout)
		if err != nil {
			return err
		}
		if err := c.dec.decode(frame, received, source, &m); err != nil {
			return c.fail(err)
		}
		q := pending[m.info.TransactionID]
		if q == nil {
			if c.wasCompleted(m.info.TransactionID) {
				continue // a late message for a query that already ended
			}
			return c.fail(&ProtocolError{Type: m.info.Type, TransactionID: m.info.TransactionID, Reason: "transaction-id matches no outstanding query"})
		}
		m.info.Query = q.index

		if evs, err = c.bulkMessage(q, &m, evs[:0]); err != nil {
			return c.fail(err)
		}
		if q.phase == complete {
			open--
			delete(pending, q.xid)
			c.finished(q.xid)
			if done, ok := evs[len(evs)-1].(Done); ok && done.Err() != nil {
				failed = append(failed, fmt.Errorf("query %d: %w", q.index, done.Err()))
			}
		}
		if err := deliver(evs); err != nil {
			c.fail(fmt.Errorf("%w: query abandoned by the caller", ErrClosed))
			return err
		}
	}
	if len(queries) == 1 && len(failed) == 1 {
		return errors.Unwrap(failed[0])
	}
	return errors.Join(failed...)
}

// bulkMessage applies one message to q's phase and appends its events.
func (c *Conn) bulkMessage(q *bulkQuery, m *message, evs []Event) ([]Event, error) {
	violation := func(reason string) error {
		return &ProtocolError{Type: m.info.Type, TransactionID: m.info.TransactionID, Reason: reason}
	}
	// Every message of a bulk answer carries the server's clock when it was
	// built (RFC 7653 section 9.3).
	c.dec.sampleSkew(m, sampleCurrent)
	var err error
	switch m.info.Type {
	case codec.MsgLeasequeryReply:
		if q.phase != awaitingReply {
			return evs, violation("second LEASEQUERY-REPLY for one query")
		}
		if m.serverID != nil {
			c.serverID = append(c.serverID[:0], m.serverID...)
		}
		// A REPLY with an error status, or without a binding, is the whole
		// answer: no DONE follows (RFC 5460 section 5.2).
		if !m.ok() || !m.hasClientData {
			q.phase = complete
			return append(evs, doneEvent(m, q.bindings)), nil
		}
		q.phase = streaming

	case codec.MsgLeasequeryData:
		if q.phase != streaming {
			return evs, violation("LEASEQUERY-DATA before a LEASEQUERY-REPLY with a binding")
		}
		// A DATA without OPTION_CLIENT_DATA carries no binding; a bulk
		// requestor skips it, whatever status it has.
		if !m.hasClientData {
			return evs, nil
		}

	case codec.MsgLeasequeryDone:
		if q.phase != streaming {
			return evs, violation("LEASEQUERY-DONE before a LEASEQUERY-REPLY with a binding")
		}
		q.phase = complete
		return append(evs, doneEvent(m, q.bindings)), nil

	default:
		return evs, violation("message type not part of a Bulk Leasequery answer")
	}

	n := len(evs)
	if evs, err = c.dec.bindings(m, evs); err != nil {
		return evs, err
	}
	q.bindings += len(evs) - n
	return evs, nil
}

// doneEvent returns the Done event for a message that ends a query.
func doneEvent(m *message, bindings int) Done {
	d := Done{MessageInfo: m.info, Bindings: bindings}
	if m.hasStatus {
		d.Status, d.HasStatus, d.StatusMessage = m.status, true, m.statusMessage
	}
	return d
}
