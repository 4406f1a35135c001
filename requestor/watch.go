package requestor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Checkpoint is the resume point of a Watcher: the OPTION_LQ_START_TIME for
// the next ACTIVELEASEQUERY, a time in the server's clock. Store it together
// with the bindings it covers. The zero value means there is none.
type Checkpoint struct {
	StartTime uint32
	Valid     bool
}

// InitialSync says how a Watcher without a valid Checkpoint starts.
type InitialSync uint8

// Ways to start without a checkpoint.
const (
	// InitialLive sends the first ACTIVELEASEQUERY without a start time:
	// only changes from now on arrive (RFC 7653 section 8.3).
	InitialLive InitialSync = iota
	// InitialCatchUp sends start time 0, the DHCP epoch, asking the
	// server's history for every binding. A server whose history covers
	// every current binding sends them all as catch-up; one whose history
	// is shorter answers DataMissing, and the missing part is fetched with
	// the Recovery queries like any DataMissing.
	InitialCatchUp
	// InitialBulk first runs the Recovery queries as a Bulk Leasequery
	// (RFC 7653 section 4: a bulk query brings an empty database up to date),
	// then the active query with catch-up from the earliest base-time of
	// that bulk, so that changes made while it ran arrive as catch-up. It
	// needs at least one Recovery query.
	InitialBulk
)

// WatchRequest says what a Watcher follows and how it starts and recovers.
type WatchRequest struct {
	// Filter and RelayData are as in ActiveQuery.
	Filter    *Query
	RelayData bool

	// Resume is the checkpoint of an earlier run. When valid it is sent as
	// the first OPTION_LQ_START_TIME and Initial is not used.
	Resume  Checkpoint
	Initial InitialSync

	// Recovery are the Bulk Leasequery queries that fetch what DataMissing
	// reports as missing (RFC 7653 section 8.4.1), with the start and end
	// time of the missing interval set on each, and that InitialBulk runs.
	// Their own start and end times are ignored. Empty means the Filter,
	// when there is one. Without any, a DataMissing cannot be recovered: the
	// event says so, and the Watcher accepts the gap and goes on.
	Recovery []Query

	// FullRecovery runs the Recovery queries after DataMissing twice on the
	// recovery connection: for the missing interval, as RFC 7653 section
	// 8.4.1 describes, and then without start and end time. So the bulk also
	// returns every binding they match that is still held. The interval
	// alone cannot report a binding the server removed while the requestor
	// was away (an ended binding whose history the server aged out is in no
	// reply). A caller that must equal the server ends every binding the
	// full bulk did not return, once RecoveryDone.Full is set, as
	// requestor/mirror does.
	FullRecovery bool

	// MaxAttempts ends Run, with the error of the last connection, after
	// this many active connections (initial bulk attempts included).
	// 0 means no limit.
	MaxAttempts int
}

// Watcher follows a server with Active Leasequery under the requestor
// rules of RFC 7653 section 8, across as many connections as it takes.
//
// Invariants of the checkpoint (the start time a restart would send):
//  1. It only moves to a base-time received outside the catch-up phase of
//     the connection it came from; a connection that ends during catch-up
//     leaves it where it was (section 8.4.1).
//  2. It does not move while a DataMissing interval is unrecovered. After
//     the recovery bulk succeeds it jumps to the highest base-time received
//     outside catch-up.
//  3. It moves before the last event of a message is delivered, never
//     earlier, so a caller that stores Checkpoint() with each event never
//     stores a base-time whose message it has not fully applied.
//  4. Connection attempts of one kind (active, recovery) start at least
//     Config.RetryInterval apart (section 8.1).
//
// The active connection and the recovery bulk run on their own goroutines
// and report to the goroutine of Run, which calls the callback, so events
// are delivered one at a time. The rejected alternative, a callback on each
// connection's goroutine, would leave checkpoint updates racing with the
// events they depend on.
type Watcher struct {
	cfg     Config
	req     WatchRequest
	skew    *skewEstimator
	running atomic.Bool

	mu         sync.Mutex
	checkpoint Checkpoint
}

// NewWatcher checks cfg and req and returns a Watcher ready to Run.
func NewWatcher(cfg Config, req WatchRequest) (*Watcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	aq := ActiveQuery{Filter: req.Filter}
	if err := aq.Validate(); err != nil {
		return nil, err
	}
	for i := range req.Recovery {
		q := req.Recovery[i]
		q.HasStartTime, q.HasEndTime = false, false
		if err := q.Validate(); err != nil {
			return nil, fmt.Errorf("recovery query %d: %w", i, err)
		}
	}
	if req.Initial == InitialBulk && len(req.Recovery) == 0 && req.Filter == nil {
		return nil, fmt.Errorf("%w: InitialBulk needs at least one recovery query", ErrInvalidQuery)
	}
	if req.MaxAttempts < 0 {
		return nil, fmt.Errorf("%w: MaxAttempts is negative (%d)", ErrInvalidQuery, req.MaxAttempts)
	}
	w := &Watcher{cfg: cfg.withDefaults(), req: req, skew: &skewEstimator{}, checkpoint: req.Resume}
	return w, nil
}

// Checkpoint returns the start time a new run should resume from, valid
// for the events delivered so far. It is safe to call from the callback of
// Run and from other goroutines.
func (w *Watcher) Checkpoint() Checkpoint {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.checkpoint
}

// Skew returns the estimate of the local clock minus the server's.
func (w *Watcher) Skew() time.Duration { return w.skew.estimate() }

func (w *Watcher) setCheckpoint(c Checkpoint) {
	w.mu.Lock()
	w.checkpoint = c
	w.mu.Unlock()
}

// Run follows the server until ctx ends, fn returns an error, a permanent
// error occurs (see Permanent), or MaxAttempts connections have ended. It
// calls fn for every event on the goroutine of Run, one at a time. It
// returns ctx's error, fn's error, or the error that ended the last
// connection or recovery; every goroutine it started has ended by then.
// A Watcher runs once.
func (w *Watcher) Run(ctx context.Context, fn func(Event) error) error {
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("requestor: Watcher.Run called twice")
	}
	ctx, cancel := context.WithCancel(ctx)
	r := &watchRun{w: w, ctx: ctx, fn: fn, reports: make(chan report)}
	defer func() {
		cancel()
		r.wg.Wait()
	}()
	return r.loop()
}

// reportKind says what a connection goroutine reports.
type reportKind uint8

const (
	reportSent   reportKind = iota + 1 // ACTIVELEASEQUERY written
	reportEvents                       // the events of one message
	reportEnd                          // the goroutine is ending with err
)

// report is what a connection goroutine sends to Run.
type report struct {
	kind   reportKind
	source Source
	seq    int // generation of the connection, to drop reports of a cancelled one
	evs    []Event
	err    error
}

// window is an interval of server time that a recovery bulk fetches.
type window struct {
	start, end uint32
	hasEnd     bool
}

// split returns w as intervals a query can carry. An interval across the
// wrap of the 32-bit server time (in 2136) becomes two, to the last second
// before the wrap and from 0, because a query's end time may not be below
// its start time.
func (w window) split() []window {
	if !w.hasEnd || w.end >= w.start {
		return []window{w}
	}
	return []window{{start: w.start, end: 0xffffffff, hasEnd: true}, {start: 0, end: w.end, hasEnd: true}}
}

// watchRun is the state of one Watcher.Run, owned by its goroutine.
type watchRun struct {
	w       *Watcher
	ctx     context.Context
	fn      func(Event) error
	reports chan report
	wg      sync.WaitGroup

	attempts int

	// The active connection.
	activeSeq     int
	activeStart   Checkpoint
	activeAt      time.Time // start of the last attempt
	activeTimer   *time.Timer
	activeTimerC  <-chan time.Time
	catchUp       bool
	high          uint32 // highest base-time received outside catch-up
	hasHigh       bool
	firstBaseTime uint32 // earliest base-time of the initial bulk
	hasFirstBase  bool

	// The recovery or initial bulk.
	recSeq      int
	recSource   Source
	recFull     bool // the bulk includes the queries without start and end time
	recCancel   context.CancelFunc
	recPending  bool // a DataMissing interval is not recovered yet
	recWanted   bool // start the recovery once the current message is delivered
	recWindow   window
	recAt       time.Time
	recTimer    *time.Timer
	recTimerC   <-chan time.Time
	recBindings int
}

func (r *watchRun) loop() error {
	defer r.stopTimers()
	if err := r.begin(); err != nil {
		return err
	}
	for {
		select {
		case <-r.ctx.Done():
			return r.ctx.Err()
		case rep := <-r.reports:
			if err := r.handle(rep); err != nil {
				return err
			}
		case <-r.activeTimerC:
			r.activeTimerC = nil
			r.startActive()
		case <-r.recTimerC:
			r.recTimerC = nil
			if err := r.startBulk(r.recSource); err != nil {
				return err
			}
		}
	}
}

func (r *watchRun) stopTimers() {
	if r.activeTimer != nil {
		r.activeTimer.Stop()
	}
	if r.recTimer != nil {
		r.recTimer.Stop()
	}
}

// begin starts the first connection: the active query from the checkpoint,
// or the initial bulk.
func (r *watchRun) begin() error {
	if !r.w.Checkpoint().Valid && r.w.req.Initial == InitialBulk {
		return r.startBulk(SourceInitial)
	}
	r.startActive()
	return nil
}

// emit calls the callback.
func (r *watchRun) emit(ev Event) error { return r.fn(ev) }

// send hands a report to Run, giving up when ctx ends.
func (r *watchRun) send(ctx context.Context, rep report) bool {
	select {
	case r.reports <- rep:
		return true
	case <-ctx.Done():
		return false
	}
}

// startActive opens the next active connection on its own goroutine.
func (r *watchRun) startActive() {
	start := r.w.Checkpoint()
	if !start.Valid && r.w.req.Initial == InitialCatchUp {
		start = Checkpoint{StartTime: 0, Valid: true}
	}
	r.attempts++
	r.activeSeq++
	r.activeStart = start
	r.activeAt = time.Now()
	r.catchUp = start.Valid

	q := ActiveQuery{Filter: r.w.req.Filter, RelayData: r.w.req.RelayData, StartTime: start.StartTime, HasStartTime: start.Valid}
	seq, ctx := r.activeSeq, r.ctx
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		conn, err := dial(ctx, r.w.cfg, r.w.skew)
		if err == nil {
			err = conn.active(ctx, q, SourceActive, func(evs []Event) error {
				// The connection reuses evs for its next message.
				if !r.send(ctx, report{kind: reportEvents, source: SourceActive, seq: seq, evs: slices.Clone(evs)}) {
					return ctx.Err()
				}
				return nil
			}, func() { r.send(ctx, report{kind: reportSent, source: SourceActive, seq: seq}) })
			conn.Close()
		}
		r.send(ctx, report{kind: reportEnd, source: SourceActive, seq: seq, err: err})
	}()
}

// recoveryQueries returns the queries a recovery or initial bulk runs.
func (r *watchRun) recoveryQueries() []Query {
	if len(r.w.req.Recovery) > 0 {
		return r.w.req.Recovery
	}
	if r.w.req.Filter != nil {
		return []Query{*r.w.req.Filter}
	}
	return nil
}

// startBulk starts the initial bulk or the recovery of r.recWindow on a
// connection of its own, cancelling a recovery still running.
func (r *watchRun) startBulk(source Source) error {
	if r.recCancel != nil {
		r.recCancel()
	}
	base := r.recoveryQueries()
	full := source == SourceInitial || r.w.req.FullRecovery
	started := RecoveryStarted{Source: source, Full: full}
	var windowed, plain []Query
	for _, q := range base {
		q.RelayData = q.RelayData || r.w.req.RelayData
		q.OmitBaseTime = false
		q.HasStartTime, q.HasEndTime = false, false
		if full {
			plain = append(plain, q)
		}
		if source == SourceRecovery {
			started.StartTime, started.HasStartTime = r.recWindow.start, true
			started.EndTime, started.HasEndTime = r.recWindow.end, r.recWindow.hasEnd
			for _, w := range r.recWindow.split() {
				q.StartTime, q.HasStartTime = w.start, true
				q.EndTime, q.HasEndTime = w.end, w.hasEnd
				windowed = append(windowed, q)
			}
		}
	}
	// The interval queries go first, because they also report the bindings
	// that ended in the interval, which a query without times leaves out.
	queries := append(windowed, plain...)
	if source == SourceInitial {
		r.attempts++
	}
	r.recSeq++
	r.recSource = source
	r.recFull = full
	r.recAt = time.Now()
	r.recBindings = 0
	r.hasFirstBase = false
	ctx, cancel := context.WithCancel(r.ctx)
	r.recCancel = cancel
	seq := r.recSeq

	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		conn, err := dial(ctx, r.w.cfg, r.w.skew)
		if err != nil {
			r.send(ctx, report{kind: reportEnd, source: source, seq: seq, err: err})
			return
		}
		err = conn.bulk(ctx, queries, source, func(evs []Event) error {
			if !r.send(ctx, report{kind: reportEvents, source: source, seq: seq, evs: slices.Clone(evs)}) {
				return ctx.Err()
			}
			return nil
		})
		// Report the end before closing, so that Run has it before
		// anything the close may cause, such as a server ending the
		// active connection too. Otherwise a Watcher stopping on that
		// loss could drop a recovery that had completed.
		r.send(ctx, report{kind: reportEnd, source: source, seq: seq, err: err})
		conn.Close()
	}()
	return r.emit(started)
}

// handle applies one report.
func (r *watchRun) handle(rep report) error {
	if rep.source == SourceActive {
		switch rep.kind {
		case reportSent:
			return r.emit(Connected{Server: r.w.cfg.Server, StartTime: r.activeStart.StartTime, HasStartTime: r.activeStart.Valid, Attempt: r.attempts})
		case reportEvents:
			return r.activeEvents(rep.evs)
		}
		return r.activeEnded(rep.err)
	}
	if rep.seq != r.recSeq {
		return nil // a cancelled recovery
	}
	if rep.kind == reportEvents {
		return r.bulkEvents(rep.evs)
	}
	return r.bulkEnded(rep.err)
}

// activeEvents applies the checkpoint rules to one message of the active
// connection and delivers its events.
func (r *watchRun) activeEvents(evs []Event) error {
	info := evs[0].Info()
	for i, ev := range evs {
		switch e := ev.(type) {
		case CatchUpComplete:
			r.catchUp = false
		case DataMissing:
			r.catchUp = false
			evs[i] = r.dataMissing(e)
		}
	}
	if !r.catchUp && info.HasBaseTime && (!r.hasHigh || serialAfter(info.BaseTime, r.high)) {
		r.high, r.hasHigh = info.BaseTime, true
	}

	last := len(evs) - 1
	for _, ev := range evs[:last] {
		if err := r.emit(ev); err != nil {
			return err
		}
	}
	r.advance()
	if err := r.emit(evs[last]); err != nil {
		return err
	}
	if r.recWanted {
		r.recWanted = false
		return r.startBulk(SourceRecovery)
	}
	return nil
}

// dataMissing records the interval a DataMissing leaves unrecovered and
// returns the event with Recovery set.
func (r *watchRun) dataMissing(e DataMissing) DataMissing {
	if len(r.recoveryQueries()) == 0 {
		e.Recovery = false // nothing to run: the gap is accepted
		return e
	}
	e.Recovery = true
	r.recPending = true
	r.recWanted = true
	r.recWindow = window{start: r.activeStart.StartTime, end: e.BaseTime, hasEnd: e.HasBaseTime}
	return e
}

// advance moves the checkpoint to the highest base-time received outside
// catch-up, unless a DataMissing interval is still unrecovered.
func (r *watchRun) advance() {
	if r.recPending || !r.hasHigh {
		return
	}
	r.w.setCheckpoint(Checkpoint{StartTime: r.high, Valid: true})
}

// activeEnded handles the end of the active connection.
func (r *watchRun) activeEnded(err error) error {
	if r.ctx.Err() != nil {
		return r.ctx.Err()
	}
	final := Permanent(err) || (r.w.req.MaxAttempts > 0 && r.attempts >= r.w.req.MaxAttempts)
	d := Disconnected{Err: err}
	if !final {
		d.RetryAt = r.retryAt(r.activeAt)
	}
	if emitErr := r.emit(d); emitErr != nil {
		return emitErr
	}
	if final {
		return err
	}
	r.activeTimer, r.activeTimerC = newTimer(r.activeTimer, time.Until(d.RetryAt))
	return nil
}

// bulkEvents delivers the events of the initial or recovery bulk.
func (r *watchRun) bulkEvents(evs []Event) error {
	for _, ev := range evs {
		if _, ok := ev.(Binding); ok {
			r.recBindings++
		}
		info := ev.Info()
		if r.recSource == SourceInitial && info.HasBaseTime && (!r.hasFirstBase || serialAfter(r.firstBaseTime, info.BaseTime)) {
			r.firstBaseTime, r.hasFirstBase = info.BaseTime, true
		}
		if err := r.emit(ev); err != nil {
			return err
		}
	}
	return nil
}

// bulkEnded handles the end of the initial or recovery bulk.
func (r *watchRun) bulkEnded(err error) error {
	r.recCancel()
	r.recCancel = nil
	source := r.recSource
	if err != nil {
		if emitErr := r.emit(RecoveryDone{Source: source, Full: r.recFull, Bindings: r.recBindings, Err: err}); emitErr != nil {
			return emitErr
		}
		if r.ctx.Err() != nil {
			return r.ctx.Err()
		}
		if Permanent(err) || (source == SourceInitial && r.w.req.MaxAttempts > 0 && r.attempts >= r.w.req.MaxAttempts) {
			return err
		}
		r.recTimer, r.recTimerC = newTimer(r.recTimer, time.Until(r.retryAt(r.recAt)))
		return nil
	}

	if source == SourceInitial {
		// Changes made while the bulk ran come as catch-up from its
		// earliest base-time; without base-times only live changes can.
		if r.hasFirstBase {
			r.w.setCheckpoint(Checkpoint{StartTime: r.firstBaseTime, Valid: true})
		}
	} else {
		r.recPending = false
		r.advance()
	}
	if err := r.emit(RecoveryDone{Source: source, Full: r.recFull, Bindings: r.recBindings}); err != nil {
		return err
	}
	if source == SourceInitial {
		r.startActive()
	}
	return nil
}

// retryAt returns when the next attempt after one started at last may
// begin: Config.RetryInterval later, or now if that has passed.
func (r *watchRun) retryAt(last time.Time) time.Time {
	at := last.Add(r.w.cfg.RetryInterval)
	if now := time.Now(); at.Before(now) {
		return now
	}
	return at
}

// newTimer replaces t with a timer firing after d.
func newTimer(t *time.Timer, d time.Duration) (*time.Timer, <-chan time.Time) {
	if t != nil {
		t.Stop()
	}
	t = time.NewTimer(max(d, 0))
	return t, t.C
}

// serialAfter reports whether absolute time a is after b, modulo 2^32.
func serialAfter(a, b uint32) bool { return int32(a-b) > 0 }
