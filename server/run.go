package server

import (
	"context"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// bulkRun is one bulk query on a gnet connection: a producer goroutine
// that scans the store and encodes chunks, and the event loop that writes
// them.
//
// Invariants:
//
//  1. Flow control: the producer hands a chunk to the loop only with a
//     credit. The loop returns the credit after writing a chunk if the
//     connection's pending output is at most creditBacklog chunks, else once
//     a drain check sees it fall that low. So gnet holds at most
//     creditBacklog+1 chunks per connection, and TCP_NOTSENT_LOWAT keeps the
//     kernel's share small.
//  2. Buffers: the producer alternates two buffers. A buffer is handed over
//     with AsyncWrite and is free again once its write callback ran, which
//     happens before the credit for the next handover; so the buffer
//     returned for refilling is never still queued. After a cancel with
//     errShutdown or errTerminated, handovers skip the credit and use
//     fresh buffers instead.
//  3. Ending: exactly one chunk is marked last; its write callback returns
//     the connection to idle (runDone). A producer that ends without
//     handing over a last chunk, while its connection is open, closes the
//     connection, so the loop never waits for a run that is gone.
//  4. Ownership: job, bufs, cur, credit and shutdown belong to the producer
//     goroutine; the loop touches only the credit channel and cancel.
//
// The rejected alternative, encoding on the event loop in slices between
// other work, would put store reads (which may wait for disk) on the loop.
type bulkRun struct {
	conn   *conn
	gc     gnet.Conn
	job    *bulkJob
	ctx    context.Context
	cancel context.CancelCauseFunc
	credit chan struct{}

	bufs     [2][]byte
	cur      int
	shutdown bool // set once ctx was cancelled with errShutdown or errTerminated
	handed   bool // the last chunk was handed over
}

// creditBacklog is the pending output, in chunks, up to which a written
// chunk earns the next credit at once. With one chunk, a requestor that
// reads as fast as the server writes still made the producer wait for
// drain checks often in BenchmarkBulkDump; three keep it streaming.
const creditBacklog = 3

// startBulkRun starts the producer for r on connection c.
func startBulkRun(c *conn, r *request) *bulkRun {
	s := c.srv
	ctx, cancel := context.WithCancelCause(context.Background())
	run := &bulkRun{
		conn:   c,
		gc:     c.gc,
		job:    newBulkJob(r, &s.policy, s.src, s.clock, s.cfg.ChunkSize, s.metrics),
		ctx:    ctx,
		cancel: cancel,
		credit: make(chan struct{}, 1),
	}
	run.credit <- struct{}{}
	s.producers.Add(1)
	go run.produce()
	return run
}

// produce is the producer goroutine.
func (r *bulkRun) produce() {
	s := r.conn.srv
	defer s.producers.Done()
	defer r.cancel(nil)

	size := s.cfg.ChunkSize + s.cfg.ChunkSize/4
	r.bufs[0] = make([]byte, 0, size)
	r.bufs[1] = make([]byte, 0, size)

	var out bulkOutcome
	if err := r.conn.requestor.acquire(r.ctx); err != nil {
		// Stopped while waiting for a query slot.
		out = r.job.abort(r.ctx, r.bufs[0][:0], false, err, r.emit)
	} else {
		out = r.job.run(r.ctx, r.bufs[0][:0], r.emit)
		r.conn.requestor.release()
	}

	q := r.job.req.query.QueryType
	s.metrics.countQuery(transportTCP, q, out.status)
	log := r.conn.log
	s.noteEncodeTrouble(log, r.job.req.xid, &out)
	switch {
	case out.abort && !isConnError(out.err) && !endsInOrder(out.err):
		log.Error("bulk query failed", "xid", r.job.req.xid, "type", queryLabel(q), "err", out.err)
	default:
		log.Debug("bulk query done", "xid", r.job.req.xid, "type", queryLabel(q),
			"bindings", out.bindings, "status", out.status)
	}

	if !r.handed && r.ctx.Err() == nil {
		// Invariant 3: the loop would wait forever for this run.
		_ = r.gc.CloseWithCallback(nil)
	}
}

// emit is the emitFunc of the run (see bulkRun invariants 1 and 2).
func (r *bulkRun) emit(chunk []byte, last bool) ([]byte, error) {
	var stop error
	if !r.shutdown {
		select {
		case <-r.credit:
		case <-r.ctx.Done():
			cause := context.Cause(r.ctx)
			if !endsInOrder(cause) {
				return chunk[:0], cause
			}
			r.shutdown = true
			stop = cause
		}
	}

	n := len(chunk)
	err := r.gc.AsyncWrite(chunk, func(gc gnet.Conn, err error) error {
		r.written(gc, n, last, err)
		return nil
	})
	if err != nil {
		return chunk[:0], &connError{err: err}
	}
	if last {
		r.handed = true
	}
	if r.shutdown {
		return make([]byte, 0, cap(chunk)), stop
	}
	// Slot cur now holds the buffer in flight (append may have moved it);
	// the other slot's write callback has run (invariant 2).
	r.bufs[r.cur] = chunk[:0]
	r.cur ^= 1
	return r.bufs[r.cur][:0], nil
}

// written runs on the loop after gnet tried to write a chunk.
func (r *bulkRun) written(gc gnet.Conn, n int, last bool, err error) {
	c := r.conn
	if err != nil {
		return // the connection is closing; OnClose cancels the run
	}
	c.srv.metrics.tcpSent.Add(float64(n))
	if last {
		c.runDone(r)
		return
	}

	backlog := gc.OutboundBuffered()
	c.notePending(backlog, time.Now())
	if backlog <= creditBacklog*c.srv.cfg.ChunkSize {
		r.giveCredit()
		return
	}
	c.startDraining()
}

// giveCredit lets the producer hand over its next chunk.
func (r *bulkRun) giveCredit() {
	select {
	case r.credit <- struct{}{}:
	default:
	}
}
