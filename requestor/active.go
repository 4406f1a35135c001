package requestor

import (
	"bytes"
	"context"
	"fmt"

	"github.com/alqd/alqd/codec"
)

// Active sends one ACTIVELEASEQUERY and calls fn for every event until the
// connection ends. It always returns an error: ctx's error, the error fn
// returned, ErrReceiveTimeout after Config.ReceiveTimeout without a message,
// ErrConnectionLost, a *ProtocolError, or a *TLSError when a TLS 1.3 server
// rejected the requestor certificate. A LEASEQUERY-REPLY that rejected
// the query, or a LEASEQUERY-DONE that ended it (QueryTerminated when the
// server shuts down), gives a *codec.StatusError. The Conn is unusable
// afterwards. Active applies no reconnect or resume logic; Watcher does.
func (c *Conn) Active(ctx context.Context, q ActiveQuery, fn func(Event) error) error {
	return c.active(ctx, q, SourceActive, func(evs []Event) error {
		for _, ev := range evs {
			if err := fn(ev); err != nil {
				return err
			}
		}
		return nil
	})
}

// activeState follows one active query through RFC 7653 section 8.4.
type activeState struct {
	xid       uint32
	startTime uint32
	replied   bool // the LEASEQUERY-REPLY arrived
	catchUp   bool // in the catch-up phase
	bindings  int

	// newestBase is the newest base-time received on the connection, for
	// skewSample.
	newestBase    uint32
	hasNewestBase bool
}

// skewSample returns how m's base-time feeds the skew estimate and records
// it. The REPLY carries the server's clock when it sent the reply (RFC 7653
// section 9.3). Binding data may carry an older base-time: catch-up
// replays older changes, and a server may give a lagging connection the
// time it has reached, which rises with each message while staying behind
// the server's clock. A message without binding data (keepalive,
// CatchUpComplete, DataMissing, LEASEQUERY-DONE) carries the server's
// clock or, on a lagging connection, the base-time of the last binding
// data, so one with a base-time after every one received so far is
// current.
func (st *activeState) skewSample(m *message) skewSample {
	base := m.info.BaseTime
	newer := !st.hasNewestBase || serialAfter(base, st.newestBase)
	if newer {
		st.newestBase, st.hasNewestBase = base, true
	}
	switch {
	case m.info.Type == codec.MsgLeasequeryReply:
		return sampleCurrent
	case newer && !m.hasClientData:
		return sampleCurrent
	}
	return sampleBound
}

// sent reports the query as written, so that a Watcher can announce the
// connection; it is nil for Conn.Active.
type sentFunc func()

// active runs q and hands deliver the events of each message together.
func (c *Conn) active(ctx context.Context, q ActiveQuery, source Source, deliver func([]Event) error, sent ...sentFunc) error {
	if err := c.Err(); err != nil {
		return err
	}
	if err := q.Validate(); err != nil {
		return err
	}
	stop := c.watch(ctx)
	defer stop()

	xid, err := c.nextXID()
	if err != nil {
		return err
	}
	b, err := q.appendActiveLeasequery(c.wbuf[:0], xid, c.cfg.ClientID)
	if err != nil {
		return err
	}
	c.wbuf = b[:0]
	if err := c.write(ctx, b); err != nil {
		return err
	}
	for _, f := range sent {
		f()
	}

	// A query with a start time begins in the catch-up phase (section 8.4).
	st := activeState{xid: xid, startTime: q.StartTime, catchUp: q.HasStartTime}
	var evs []Event
	var m message
	for {
		frame, received, err := c.read(ctx, c.cfg.ReceiveTimeout)
		if err != nil {
			return err
		}
		if err := c.dec.decode(frame, received, source, &m); err != nil {
			return c.fail(err)
		}
		if m.info.TransactionID != xid {
			if c.wasCompleted(m.info.TransactionID) {
				continue
			}
			return c.fail(&ProtocolError{Type: m.info.Type, TransactionID: m.info.TransactionID, Reason: fmt.Sprintf("transaction-id is not the active query's 0x%06x", xid)})
		}
		var end error
		evs, end = c.activeMessage(&st, &m, evs[:0])
		if perr, ok := end.(*ProtocolError); ok {
			return c.fail(perr)
		}
		if len(evs) > 0 {
			if err := deliver(evs); err != nil {
				c.fail(fmt.Errorf("%w: query abandoned by the caller", ErrClosed))
				return err
			}
		}
		if end != nil {
			return c.fail(end)
		}
	}
}

// activeMessage applies one message to st and appends its events. A
// non-nil error ends the query: a *ProtocolError, or the status that a
// rejecting REPLY or a DONE carried (delivered as a Done event first).
func (c *Conn) activeMessage(st *activeState, m *message, evs []Event) ([]Event, error) {
	violation := func(reason string) error {
		return &ProtocolError{Type: m.info.Type, TransactionID: m.info.TransactionID, Reason: reason}
	}
	m.info.CatchUp = st.catchUp
	if m.info.HasBaseTime {
		c.dec.sampleSkew(m, st.skewSample(m))
	}

	switch m.info.Type {
	case codec.MsgLeasequeryReply:
		if st.replied {
			return evs, violation("second LEASEQUERY-REPLY on an active query")
		}
		st.replied = true
		if m.serverID != nil {
			c.serverID = append(c.serverID[:0], m.serverID...)
		}
		switch {
		case m.ok():
		case m.status == codec.StatusDataMissing:
			// Not a failure: catch-up is over and live updates follow
			// (section 8.4.1).
			return c.dataMissing(st, m, append(evs, Accepted{MessageInfo: m.info, ServerID: bytes.Clone(m.serverID)}))
		default:
			evs = append(evs, doneEvent(m, st.bindings))
			return evs, &codec.StatusError{Code: m.status, Msg: m.statusMessage}
		}
		return c.activeBindings(st, m, append(evs, Accepted{MessageInfo: m.info, ServerID: bytes.Clone(m.serverID)}))

	case codec.MsgLeasequeryData:
		if !st.replied {
			return evs, violation("LEASEQUERY-DATA before the LEASEQUERY-REPLY")
		}
		return c.activeData(st, m, evs)

	case codec.MsgLeasequeryDone:
		if !st.replied {
			return evs, violation("LEASEQUERY-DONE before the LEASEQUERY-REPLY")
		}
		evs = append(evs, doneEvent(m, st.bindings))
		if m.ok() {
			return evs, fmt.Errorf("%w: %s ended the active query with LEASEQUERY-DONE", ErrConnectionLost, c.server)
		}
		return evs, &codec.StatusError{Code: m.status, Msg: m.statusMessage}
	}
	return evs, violation("message type not part of an Active Leasequery answer")
}

// activeData handles a LEASEQUERY-DATA: bindings first, then the catch-up
// status it may carry, or a keepalive when it carries neither.
func (c *Conn) activeData(st *activeState, m *message, evs []Event) ([]Event, error) {
	evs, err := c.activeBindings(st, m, evs)
	if err != nil {
		return evs, err
	}
	switch {
	case m.hasStatus && m.status == codec.StatusCatchUpComplete:
		st.catchUp = false
		info := m.info
		info.CatchUp = false
		return append(evs, CatchUpComplete{MessageInfo: info}), nil
	case m.hasStatus && m.status == codec.StatusDataMissing:
		return c.dataMissing(st, m, evs)
	case !m.hasClientData:
		k := Keepalive{MessageInfo: m.info}
		if m.hasStatus {
			k.Status, k.HasStatus, k.StatusMessage = m.status, true, m.statusMessage
		}
		return append(evs, k), nil
	}
	return evs, nil
}

// activeBindings appends the bindings of m, if any.
func (c *Conn) activeBindings(st *activeState, m *message, evs []Event) ([]Event, error) {
	if !m.hasClientData {
		return evs, nil
	}
	n := len(evs)
	evs, err := c.dec.bindings(m, evs)
	st.bindings += len(evs) - n
	return evs, err
}

// dataMissing ends catch-up and appends the DataMissing event, after the
// bindings the message may carry.
func (c *Conn) dataMissing(st *activeState, m *message, evs []Event) ([]Event, error) {
	evs, err := c.activeBindings(st, m, evs)
	if err != nil {
		return evs, err
	}
	st.catchUp = false
	info := m.info
	info.CatchUp = false
	return append(evs, DataMissing{MessageInfo: info, StartTime: st.startTime, StatusMessage: m.statusMessage}), nil
}
