package server

import (
	"context"
	"encoding/binary"
	"errors"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/fanout"
)

// loopActive is one event loop's share of Active Leasequery: its fanout
// group and the sink that writes the group's batches. Everything but wake
// runs on the loop.
//
// A Pump runs as a task the wake function queues with EventLoop.Execute;
// the group queues at most one until it has pumped. Each Deliver writes all
// pending updates of one connection with one writev: per update a header of
// its own (msg-size, LEASEQUERY-DATA, the connection's transaction-id and,
// when requested, OPTION_LQ_BASE_TIME) and the shared body, or a copy of
// the body moved on to the message's base-time (see dataBase).
type loopActive struct {
	loop      *loop
	group     *fanout.Group
	pumpTask  gnet.Runnable
	bytesSent prometheus.Counter

	// Times taken once per Pump: the server clock for base-times, in Unix
	// seconds, and the wall clock for timeouts.
	nowUnix int64
	wallNow time.Time
	pumps   uint64

	iov   [][]byte // writev slices of one Deliver
	heads []byte   // headers of one Deliver

	// catching lists the queries of the loop whose catch-up may still
	// need CatchUpComplete; checkCatchUps drops the others.
	catching []*activeQuery

	// aged holds the bodies of this Pump moved on to a later second;
	// agedCache finds them again, since a walk hands the same update to many
	// connections.
	aged      []byte
	agedCache [agedSlots]agedEntry
}

// agedSlots is the size of the direct-mapped aged-body cache; a power of two
// of at least two entries per update of one walk.
const agedSlots = 2 * maxDeliverBatch

// maxAgedRetained caps the aged arena a loop keeps between Pumps.
const maxAgedRetained = 1 << 20

// frameHeadLen is the msg-size and message header before the options of a
// LEASEQUERY-DATA.
const frameHeadLen = codec.FrameHeaderLen + codec.HeaderLen

type agedEntry struct {
	u       *fanout.Update
	view    int
	elapsed int64
	pump    uint64
	body    []byte
}

// newLoop creates the Active Leasequery state of the event loop l.
func (a *activeServer) newLoop(l *loop) *loopActive {
	la := &loopActive{
		loop:      l,
		bytesSent: l.srv.metrics.tcpSent,
		iov:       make([][]byte, 0, 2*maxDeliverBatch),
	}
	la.pumpTask = gnet.RunnableFunc(la.runPump)
	g, err := a.ring.NewGroup(a.src, la.wake)
	if err != nil {
		// NewGroup fails only for a nil source or wake function.
		panic("server: " + err.Error())
	}
	la.group = g
	return la
}

// wake queues a Pump on the loop. It runs on the store's writer goroutine
// (through Ring.Publish) or on the loop. Execute returns an error only when
// it cannot wake the loop, which happens while the engine stops and no
// connection is left to pump for.
func (la *loopActive) wake() {
	_ = la.loop.el.Execute(context.Background(), la.pumpTask)
}

// runPump is the Pump task.
func (la *loopActive) runPump(context.Context) error {
	la.nowUnix = la.loop.srv.clock().Unix()
	la.wallNow = time.Now()
	la.pumps++
	if cap(la.aged) > maxAgedRetained {
		la.aged = nil
	}
	la.aged = la.aged[:0]
	la.group.Pump(la)
	la.checkCatchUps()
	return nil
}

// checkCatchUps sends CatchUpComplete to the queries whose cursor the Pump
// moved past their catch-up target.
func (la *loopActive) checkCatchUps() {
	if len(la.catching) == 0 {
		return
	}
	kept := la.catching[:0]
	for _, q := range la.catching {
		q.checkCatchUp()
		if q.catchingUp && q.sub != nil {
			kept = append(kept, q)
		}
	}
	clear(la.catching[len(kept):])
	la.catching = kept
}

// queryOf returns the active query that owns s, or nil when the connection
// has moved on (closed, or re-subscribed after DataMissing).
func queryOf(s *fanout.Subscriber) (*conn, *activeQuery) {
	c, _ := s.Owner().(*conn)
	if c == nil || c.active == nil || c.active.sub != s {
		return c, nil
	}
	return c, c.active
}

// Deliver writes batch to the connection of s with one writev and reports
// it blocked when gnet kept part of it (fanout.Sink).
//
// hot path: once per connection with pending updates per Pump.
func (la *loopActive) Deliver(s *fanout.Subscriber, batch []*fanout.Update) (int, bool) {
	c, q := queryOf(s)
	if q == nil {
		return len(batch), false
	}

	perHead := frameHeadLen
	if q.head.baseTime {
		perHead += baseTimeOptionLen
	}
	if need := perHead * len(batch); cap(la.heads) < need {
		la.heads = make([]byte, 0, need)
	}
	heads, iov := la.heads[:0], la.iov[:0]
	bases := newBatchBases(la.nowUnix, s, la.loop.srv.active.ring, batch)
	var base int64
	for i, u := range batch {
		if len(u.Bodies) <= q.view {
			continue // a placeholder from a store scan or an unencodable binding
		}
		base = bases.at(i)
		body := la.bodyAt(u, q.view, base)
		start := len(heads)
		heads = appendDataHead(heads, q.head.xid, len(body), q.head.baseTime, dhcpSeconds(base))
		iov = append(iov, heads[start:len(heads):len(heads)], body)
	}
	if len(iov) == 0 {
		return len(batch), false
	}
	q.lastBase = base

	n, err := c.gc.Writev(iov)
	clear(iov)
	la.iov = iov[:0]
	if err != nil {
		c.reason = CloseWriteError
		q.release(c)
		c.closeNow()
		return 0, false
	}
	la.bytesSent.Add(float64(n))
	q.lastWrite = la.wallNow
	if c.gc.OutboundBuffered() > 0 {
		q.markBlocked(c, la.wallNow)
		return len(batch), true
	}
	return len(batch), false
}

// appendDataHead appends the frame and message header of a LEASEQUERY-DATA
// whose body is bodyLen octets, and its OPTION_LQ_BASE_TIME when withBase.
//
// hot path: once per delivered update.
func appendDataHead(b []byte, xid uint32, bodyLen int, withBase bool, base uint32) []byte {
	msgLen := codec.HeaderLen + bodyLen
	if withBase {
		msgLen += baseTimeOptionLen
	}
	b = append(b, byte(msgLen>>8), byte(msgLen), byte(codec.MsgLeasequeryData), byte(xid>>16), byte(xid>>8), byte(xid))
	if withBase {
		b = codec.AppendUint32Option(b, codec.OptLQBaseTime, base)
	}
	return b
}

// dataBase returns the base-time, in Unix seconds, of the LEASEQUERY-DATA
// that carries u. It is the current second, but never past the change time
// of next, the update that follows u in the batch. When published updates
// are still to come for the connection (upToDate false), it is never past
// u's own change time either. Changes have non-decreasing ChangeTime in Seq
// order, so every change not yet sent when the message goes out is at or
// after its base-time. A requestor that resumes with that base-time as
// OPTION_LQ_START_TIME (RFC 7653 section 8.3) therefore misses none. For a
// connection that keeps up, the base-time is the current second, as RFC
// 7653 section 9.3 asks; one that lags gets the time it has reached.
//
// hot path: once per delivered update.
func dataBase(nowUnix int64, u, next *fanout.Update, upToDate bool) int64 {
	limit := nowUnix
	switch {
	case next != nil:
		limit = min(limit, next.ChangeTime.Unix())
	case !upToDate:
		limit = min(limit, u.ChangeTime.Unix())
	}
	// Never before the body's own second, which would need negative aging
	// (a server clock behind the store's).
	return max(limit, u.ChangeTime.Unix())
}

// batchBases computes the base-times of the LEASEQUERY-DATA messages of one
// Deliver batch (see dataBase). The event loops and the TLS hubs both use
// it, so that a requestor resumes as losslessly over TLS as over plaintext.
type batchBases struct {
	nowUnix  int64
	batch    []*fanout.Update
	upToDate bool // the batch ends at the ring's last change for a live subscriber
}

// newBatchBases returns the base-times of batch, delivered to s at the
// Unix second nowUnix. batch must not be empty.
func newBatchBases(nowUnix int64, s *fanout.Subscriber, ring *fanout.Ring, batch []*fanout.Update) batchBases {
	upToDate := s.State() == fanout.StateLive && batch[len(batch)-1].Seq >= ring.LastSeq()
	return batchBases{nowUnix: nowUnix, batch: batch, upToDate: upToDate}
}

// at returns the base-time, in Unix seconds, of the message that carries
// batch[i].
//
// hot path: once per delivered update.
func (b *batchBases) at(i int) int64 {
	var next *fanout.Update
	if i+1 < len(b.batch) {
		next = b.batch[i+1]
	}
	return dataBase(b.nowUnix, b.batch[i], next, b.upToDate)
}

// controlBase returns the base-time of a message without binding data
// (keepalive, CatchUpComplete, LEASEQUERY-DONE) for the subscriber sub,
// which may be nil. It is now when sub has been sent every published
// change. Else it is lastBase, the base-time of the connection's last
// LEASEQUERY-DATA with binding data (or of its REPLY), so that no change
// still to come is before it (see dataBase). Call it on the goroutine that
// owns sub.
func controlBase(sub *fanout.Subscriber, ring *fanout.Ring, lastBase int64, now time.Time) time.Time {
	if sub != nil && sub.State() == fanout.StateLive && sub.Seq() >= ring.LastSeq() {
		return now
	}
	return time.Unix(lastBase, 0)
}

// dhcpSeconds converts Unix seconds to a DHCP absolute time.
func dhcpSeconds(unix int64) uint32 { return codec.DHCPTime(time.Unix(unix, 0)) }

// bodyAt returns the body of u in view as of the Unix second base: the
// shared encoding when base is the second u was encoded against, else a
// copy whose lifetimes and OPTION_CLT_TIME are moved on to base (see
// updateEncoder).
//
// hot path: once per delivered update.
func (la *loopActive) bodyAt(u *fanout.Update, view int, base int64) []byte {
	body := u.Bodies[view]
	elapsed := base - u.ChangeTime.Unix()
	if elapsed <= 0 {
		return body
	}

	e := &la.agedCache[(u.Seq*viewCount+uint64(view))&(agedSlots-1)]
	if e.u == u && e.view == view && e.elapsed == elapsed && e.pump == la.pumps {
		return e.body
	}
	start := len(la.aged)
	la.aged = appendAged(la.aged, body, uint32(min(elapsed, infinity)))
	aged := la.aged[start:len(la.aged):len(la.aged)]
	*e = agedEntry{u: u, view: view, elapsed: elapsed, pump: la.pumps, body: aged}
	return aged
}

// appendAged appends body, an OPTION_CLIENT_DATA, with its time values
// moved on by elapsed seconds: the preferred and valid lifetimes of every
// OPTION_IAADDR and OPTION_IAPREFIX run down (infinity stays), and
// OPTION_CLT_TIME grows. Because bodies are encoded against a whole second,
// the result equals an encoding at that second plus elapsed.
func appendAged(dst, body []byte, elapsed uint32) []byte {
	start := len(dst)
	dst = append(dst, body...)
	b := dst[start:]
	for off := codec.OptionHeaderLen; off+codec.OptionHeaderLen <= len(b); {
		code := codec.OptionCode(binary.BigEndian.Uint16(b[off:]))
		n := int(binary.BigEndian.Uint16(b[off+2:]))
		data := b[off+codec.OptionHeaderLen:]
		if n > len(data) {
			break
		}
		data = data[:n]
		switch {
		case code == codec.OptCLTTime && n == 4:
			v := uint64(binary.BigEndian.Uint32(data)) + uint64(elapsed)
			binary.BigEndian.PutUint32(data, uint32(min(v, infinity)))
		case code == codec.OptIAAddr && n >= 24:
			runDownAt(data[16:20], elapsed)
			runDownAt(data[20:24], elapsed)
		case code == codec.OptIAPrefix && n >= 25:
			runDownAt(data[0:4], elapsed)
			runDownAt(data[4:8], elapsed)
		}
		off += codec.OptionHeaderLen + n
	}
	return dst
}

// runDownAt rewrites the lifetime in b, 4 octets, as runDown does.
func runDownAt(b []byte, elapsed uint32) {
	binary.BigEndian.PutUint32(b, runDown(binary.BigEndian.Uint32(b), elapsed))
}

// CaughtUp checks whether a catch-up from OPTION_LQ_START_TIME is complete
// (fanout.Sink). The end of a later resync, after a lap or a block, is not
// part of the catch-up phase and sends nothing.
func (la *loopActive) CaughtUp(s *fanout.Subscriber) {
	if _, q := queryOf(s); q != nil {
		q.checkCatchUp()
	}
}

// Failed handles a store scan that failed for s: DataMissing when the scan
// started below the history floor, else the end of the query with
// QueryTerminated (RFC 7653 section 9.3: an error in later processing gets
// LEASEQUERY-DONE and the connection closes) (fanout.Sink).
func (la *loopActive) Failed(s *fanout.Subscriber, err error) {
	c, q := queryOf(s)
	if q == nil {
		la.group.Remove(s)
		return
	}
	if errors.Is(err, errHistoryTrimmed) {
		q.dataMissing(c)
		return
	}
	c.log.Error("active query store scan failed", "xid", q.head.xid, "err", err)
	q.terminate(c, CloseQueryAborted, "the binding store failed")
}

// shutdown ends every active query of the loop and closes the group.
func (la *loopActive) shutdown() { la.group.Close() }
