package requestor_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/requestor"
	"github.com/alqd/alqd/requestor/requestortest"
)

// errStop ends a Watcher.Run from its callback.
var errStop = errors.New("test done")

// watchServer runs scripts per connection: activeScript for connections
// that open with ACTIVELEASEQUERY, bulkScript for LEASEQUERY, each with
// the 1-based count of such connections.
type watchServer struct {
	*requestortest.Server
	mu     sync.Mutex
	active []requestortest.Received // first message of each active connection
	bulk   []requestortest.Received
}

func newWatchServer(t *testing.T,
	activeScript func(n int, c *requestortest.Conn, xid uint32),
	bulkScript func(n int, c *requestortest.Conn, q requestortest.Received)) *watchServer {
	ws := &watchServer{}
	ws.Server = requestortest.NewServer(t, func(c *requestortest.Conn) {
		r, err := c.ReadMessage()
		if err != nil || r.Err != nil {
			return
		}
		ws.mu.Lock()
		switch r.Msg.Type {
		case codec.MsgActiveLeasequery:
			ws.active = append(ws.active, r)
			n := len(ws.active)
			ws.mu.Unlock()
			activeScript(n, c, r.Msg.TransactionID)
		case codec.MsgLeasequery:
			ws.bulk = append(ws.bulk, r)
			n := len(ws.bulk)
			ws.mu.Unlock()
			if bulkScript == nil {
				t.Errorf("unexpected bulk query")
				return
			}
			bulkScript(n, c, r)
		default:
			ws.mu.Unlock()
			t.Errorf("connection opened with %s", r.Msg.Type)
		}
	})
	return ws
}

// activeStarts returns the OPTION_LQ_START_TIME of each active connection,
// -1 where there was none.
func (ws *watchServer) activeStarts() []int64 {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	var out []int64
	for _, r := range ws.active {
		if v, ok := startTime(r); ok {
			out = append(out, int64(v))
		} else {
			out = append(out, -1)
		}
	}
	return out
}

// stamped is an event with the checkpoint in force while it was delivered.
type stamped struct {
	ev         requestor.Event
	checkpoint requestor.Checkpoint
}

// watch runs a Watcher and returns its events with checkpoints and the
// error Run returned. until, when not nil, ends the run when it returns
// true for an event.
func watch(t *testing.T, cfg requestor.Config, req requestor.WatchRequest, until func(requestor.Event) bool) (*requestor.Watcher, []stamped, error) {
	t.Helper()
	w, err := requestor.NewWatcher(cfg, req)
	if err != nil {
		t.Fatal(err)
	}
	var got []stamped
	err = w.Run(testContext(t), func(ev requestor.Event) error {
		got = append(got, stamped{ev, w.Checkpoint()})
		if until != nil && until(ev) {
			return errStop
		}
		return nil
	})
	return w, got, err
}

func notAllowed(c *requestortest.Conn, xid uint32) {
	c.Send(msg(codec.MsgLeasequeryReply, xid, optStatus(codec.StatusNotAllowed, "stop here")))
}

// checkpointAt returns the checkpoint in force at the first event matching
// pred, failing the test if there is none.
func checkpointAt(t *testing.T, got []stamped, what string, pred func(requestor.Event) bool) requestor.Checkpoint {
	t.Helper()
	for _, s := range got {
		if pred(s.ev) {
			return s.checkpoint
		}
	}
	t.Fatalf("no %s event", what)
	return requestor.Checkpoint{}
}

func TestWatcherBaseTimeOnlyAfterCatchUp(t *testing.T) {
	ws := newWatchServer(t, func(n int, c *requestortest.Conn, x uint32) {
		switch n {
		case 1: // catch-up, then the connection drops before CatchUpComplete
			c.Send(msg(codec.MsgLeasequeryReply, x, optBase(2000), binding(client1, "2001:db8:1::1", 5, 100, 200)),
				msg(codec.MsgLeasequeryData, x, optBase(2001), binding(client2, "2001:db8:1::2", 5, 100, 200)))
		case 2: // catch-up completes, then a keepalive
			c.Send(msg(codec.MsgLeasequeryReply, x, optBase(2010)),
				msg(codec.MsgLeasequeryData, x, optBase(2011), binding(client2, "2001:db8:1::2", 5, 100, 200)),
				msg(codec.MsgLeasequeryData, x, optStatus(codec.StatusCatchUpComplete, ""), optBase(2012)),
				msg(codec.MsgLeasequeryData, x, optBase(2070)))
		default:
			notAllowed(c, x)
		}
	}, nil)
	w, got, err := watch(t, testConfig(ws.Addr()), requestor.WatchRequest{Resume: requestor.Checkpoint{StartTime: 1000, Valid: true}}, nil)
	if code, _ := requestor.StatusCode(err); code != codec.StatusNotAllowed {
		t.Fatalf("Run error = %v, want the NotAllowed that ends the test", err)
	}

	// The first connection never completed catch-up, so the second resumes
	// from the same start time; the third from the last keepalive.
	if starts := ws.activeStarts(); len(starts) != 3 || starts[0] != 1000 || starts[1] != 1000 || starts[2] != 2070 {
		t.Errorf("start times sent = %v, want [1000 1000 2070]", starts)
	}
	for _, s := range got {
		if b, ok := s.ev.(requestor.Binding); ok && s.checkpoint.StartTime != 1000 {
			t.Errorf("checkpoint moved to %d during catch-up (binding at base-time %d)", s.checkpoint.StartTime, b.BaseTime)
		}
	}
	if c := checkpointAt(t, got, "CatchUpComplete", func(ev requestor.Event) bool { _, ok := ev.(requestor.CatchUpComplete); return ok }); c.StartTime != 2012 {
		t.Errorf("checkpoint at CatchUpComplete = %d, want its base-time 2012", c.StartTime)
	}
	if c := checkpointAt(t, got, "keepalive", func(ev requestor.Event) bool { _, ok := ev.(requestor.Keepalive); return ok }); c.StartTime != 2070 {
		t.Errorf("checkpoint at the keepalive = %d, want 2070", c.StartTime)
	}
	if c := w.Checkpoint(); !c.Valid || c.StartTime != 2070 {
		t.Errorf("final checkpoint = %+v, want 2070", c)
	}
}

func TestWatcherLiveOnlyTracksFromFirstMessage(t *testing.T) {
	ws := newWatchServer(t, func(n int, c *requestortest.Conn, x uint32) {
		if n == 1 {
			c.Send(msg(codec.MsgLeasequeryReply, x, optBase(300)), msg(codec.MsgLeasequeryData, x, optBase(301), binding(client1, "2001:db8:1::1", 0, 1, 2)))
			return
		}
		notAllowed(c, x)
	}, nil)
	w, _, _ := watch(t, testConfig(ws.Addr()), requestor.WatchRequest{}, nil)
	if starts := ws.activeStarts(); len(starts) != 2 || starts[0] != -1 || starts[1] != 301 {
		t.Errorf("start times sent = %v, want [none 301]", starts)
	}
	if c := w.Checkpoint(); c.StartTime != 301 {
		t.Errorf("checkpoint = %+v, want 301", c)
	}
}

// TestWatcherDataMissingRecovery checks that DataMissing starts a bulk
// query for the missing interval on a second connection while the active
// connection keeps delivering, and that the checkpoint waits for it.
func TestWatcherDataMissingRecovery(t *testing.T) {
	// Each step waits for the previous one, the requestor's delivery of the
	// live binding included, because events of two connections may arrive
	// in either order.
	bulkStarted, liveSeen, recovered := make(chan struct{}), make(chan struct{}), make(chan struct{})
	ws := newWatchServer(t, func(n int, c *requestortest.Conn, x uint32) {
		if n > 1 {
			notAllowed(c, x)
			return
		}
		c.Send(msg(codec.MsgLeasequeryReply, x, optStatus(codec.StatusDataMissing, "history starts later"), optBase(5000)))
		<-bulkStarted
		c.Send(msg(codec.MsgLeasequeryData, x, optBase(5001), binding(client1, "2001:db8:1::1", 0, 100, 200)))
		<-recovered
		c.Send(msg(codec.MsgLeasequeryData, x, optBase(5060)))
		c.WaitClosed(5 * time.Second)
	}, func(n int, c *requestortest.Conn, q requestortest.Received) {
		if s, ok := startTime(q); !ok || s != 100 {
			t.Errorf("recovery start time = %d (present %v), want 100", s, ok)
		}
		if e, ok := endTime(q); !ok || e != 5000 {
			t.Errorf("recovery end time = %d (present %v), want 5000", e, ok)
		}
		close(bulkStarted)
		<-liveSeen
		x := q.Msg.TransactionID
		c.Send(msg(codec.MsgLeasequeryReply, x, optBase(5002), binding(client2, "2001:db8:1::2", 50, 100, 200)),
			msg(codec.MsgLeasequeryDone, x, optBase(5002)))
		c.WaitClosed(5 * time.Second)
	})
	req := requestor.WatchRequest{Resume: requestor.Checkpoint{StartTime: 100, Valid: true}, Recovery: []requestor.Query{linkQuery}}
	_, got, err := watch(t, testConfig(ws.Addr()), req, func(ev requestor.Event) bool {
		if b, ok := ev.(requestor.Binding); ok && b.Source == requestor.SourceActive {
			close(liveSeen)
		}
		if _, ok := ev.(requestor.RecoveryDone); ok {
			close(recovered)
		}
		k, ok := ev.(requestor.Keepalive)
		return ok && k.BaseTime == 5060
	})
	if !errors.Is(err, errStop) {
		t.Fatalf("Run error = %v", err)
	}

	var order []string
	for _, s := range got {
		switch e := s.ev.(type) {
		case requestor.DataMissing:
			if !e.Recovery {
				t.Error("DataMissing event says no recovery runs")
			}
			order = append(order, "missing")
		case requestor.RecoveryStarted:
			if !e.HasStartTime || e.StartTime != 100 || !e.HasEndTime || e.EndTime != 5000 {
				t.Errorf("RecoveryStarted = %+v, want 100 to 5000", e)
			}
			order = append(order, "recovery")
		case requestor.Binding:
			order = append(order, e.Source.String())
			if s.checkpoint.StartTime != 100 {
				t.Errorf("checkpoint = %d while the recovery runs, want 100", s.checkpoint.StartTime)
			}
		case requestor.RecoveryDone:
			if e.Err != nil || e.Bindings != 1 {
				t.Errorf("RecoveryDone = %+v, want success with 1 binding", e)
			}
			if s.checkpoint.StartTime != 5001 {
				t.Errorf("checkpoint after recovery = %d, want the highest live base-time 5001", s.checkpoint.StartTime)
			}
			order = append(order, "recovered")
		case requestor.Keepalive:
			if s.checkpoint.StartTime != 5060 {
				t.Errorf("checkpoint at the keepalive = %d, want 5060", s.checkpoint.StartTime)
			}
		}
	}
	want := []string{"missing", "recovery", "active", "recovery", "recovered"}
	if len(order) != len(want) {
		t.Fatalf("events = %v, want %v", order, want)
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("events = %v, want %v", order, want)
		}
	}
	if n := len(ws.Accepts()); n != 2 {
		t.Errorf("server accepted %d connections, want the active and one recovery", n)
	}
}

// TestWatcherFullRecovery sends, after DataMissing, the interval query and
// then the same query without times, pipelined on one connection, and
// reports the bulk as full.
func TestWatcherFullRecovery(t *testing.T) {
	second := make(chan requestortest.Received, 1)
	ws := newWatchServer(t, func(n int, c *requestortest.Conn, x uint32) {
		c.Send(msg(codec.MsgLeasequeryReply, x, optStatus(codec.StatusDataMissing, ""), optBase(5000)))
		c.WaitClosed(5 * time.Second)
	}, func(n int, c *requestortest.Conn, q requestortest.Received) {
		plain, err := c.ReadMessage()
		if err != nil || plain.Err != nil {
			t.Errorf("second recovery query: %v, %v", err, plain.Err)
			return
		}
		second <- plain
		c.Send(msg(codec.MsgLeasequeryReply, q.Msg.TransactionID, optBase(5001), binding(client1, "2001:db8:1::1", 0, 0, 0)),
			msg(codec.MsgLeasequeryDone, q.Msg.TransactionID, optBase(5001)),
			msg(codec.MsgLeasequeryReply, plain.Msg.TransactionID, optBase(5001), binding(client2, "2001:db8:1::2", 50, 100, 200)),
			msg(codec.MsgLeasequeryDone, plain.Msg.TransactionID, optBase(5001)))
		c.WaitClosed(5 * time.Second)
	})

	req := requestor.WatchRequest{Resume: requestor.Checkpoint{StartTime: 100, Valid: true}, Recovery: []requestor.Query{linkQuery}, FullRecovery: true}
	_, got, err := watch(t, testConfig(ws.Addr()), req, func(ev requestor.Event) bool { _, ok := ev.(requestor.RecoveryDone); return ok })
	if !errors.Is(err, errStop) {
		t.Fatalf("Run error = %v", err)
	}

	var queries []int
	for _, s := range got {
		switch e := s.ev.(type) {
		case requestor.RecoveryStarted:
			if !e.Full || e.StartTime != 100 || e.EndTime != 5000 {
				t.Errorf("RecoveryStarted = %+v, want full with the interval 100 to 5000", e)
			}
		case requestor.Binding:
			queries = append(queries, e.Query)
		case requestor.RecoveryDone:
			if !e.Full || e.Err != nil || e.Bindings != 2 {
				t.Errorf("RecoveryDone = %+v, want full, 2 bindings, no error", e)
			}
			if s.checkpoint.StartTime != 5000 {
				t.Errorf("checkpoint after recovery = %d, want 5000, the DataMissing base-time", s.checkpoint.StartTime)
			}
		}
	}
	if len(queries) != 2 || queries[0] != 0 || queries[1] != 1 {
		t.Errorf("bindings came from queries %v, want [0 1]", queries)
	}

	ws.mu.Lock()
	first := ws.bulk
	ws.mu.Unlock()
	if len(first) != 1 {
		t.Fatalf("%d recovery connections, want 1", len(first))
	}
	if s, ok := startTime(first[0]); !ok || s != 100 {
		t.Errorf("first recovery query start time = %d (present %v), want 100", s, ok)
	}
	plain := <-second
	if plain.Msg.Type != codec.MsgLeasequery {
		t.Errorf("second recovery message is %s, want LEASEQUERY", plain.Msg.Type)
	}
	if _, ok := startTime(plain); ok {
		t.Error("second recovery query has a start time")
	}
	if _, ok := endTime(plain); ok {
		t.Error("second recovery query has an end time")
	}
}

// TestWatcherRecoveryAcrossWrap recovers an interval that crosses the wrap
// of the 32-bit server time with two queries, one on each side of it.
func TestWatcherRecoveryAcrossWrap(t *testing.T) {
	second := make(chan requestortest.Received, 1)
	ws := newWatchServer(t, func(n int, c *requestortest.Conn, x uint32) {
		c.Send(msg(codec.MsgLeasequeryReply, x, optStatus(codec.StatusDataMissing, ""), optBase(5)))
		c.WaitClosed(5 * time.Second)
	}, func(n int, c *requestortest.Conn, q requestortest.Received) {
		next, err := c.ReadMessage()
		if err != nil || next.Err != nil {
			t.Errorf("second recovery query: %v, %v", err, next.Err)
			return
		}
		second <- next
		c.Send(msg(codec.MsgLeasequeryReply, q.Msg.TransactionID, optBase(6)), msg(codec.MsgLeasequeryReply, next.Msg.TransactionID, optBase(6)))
		c.WaitClosed(5 * time.Second)
	})
	req := requestor.WatchRequest{Resume: requestor.Checkpoint{StartTime: 0xfffffff0, Valid: true}, Recovery: []requestor.Query{linkQuery}}
	_, got, err := watch(t, testConfig(ws.Addr()), req, func(ev requestor.Event) bool { _, ok := ev.(requestor.RecoveryDone); return ok })
	if !errors.Is(err, errStop) {
		t.Fatalf("Run error = %v", err)
	}
	if d := got[len(got)-1].ev.(requestor.RecoveryDone); d.Err != nil {
		t.Fatalf("recovery failed: %v", d.Err)
	}
	ws.mu.Lock()
	first := ws.bulk[0]
	ws.mu.Unlock()
	next := <-second
	for i, tc := range []struct {
		r          requestortest.Received
		start, end uint32
	}{{first, 0xfffffff0, 0xffffffff}, {next, 0, 5}} {
		s, okS := startTime(tc.r)
		e, okE := endTime(tc.r)
		if !okS || !okE || s != tc.start || e != tc.end {
			t.Errorf("query %d covers %d to %d (present %v, %v), want %d to %d", i+1, s, e, okS, okE, tc.start, tc.end)
		}
	}
}

func TestWatcherDataMissingWithoutRecoveryQuery(t *testing.T) {
	ws := newWatchServer(t, func(n int, c *requestortest.Conn, x uint32) {
		c.Send(msg(codec.MsgLeasequeryReply, x, optStatus(codec.StatusDataMissing, ""), optBase(5000)))
		c.WaitClosed(5 * time.Second)
	}, nil)
	req := requestor.WatchRequest{Resume: requestor.Checkpoint{StartTime: 100, Valid: true}}
	_, got, _ := watch(t, testConfig(ws.Addr()), req, func(ev requestor.Event) bool { _, ok := ev.(requestor.DataMissing); return ok })
	dm := got[len(got)-1]
	if e := dm.ev.(requestor.DataMissing); e.Recovery {
		t.Error("DataMissing says a recovery runs, but there is no query for one")
	}
	if dm.checkpoint.StartTime != 5000 {
		t.Errorf("checkpoint = %d, want 5000: the gap is accepted", dm.checkpoint.StartTime)
	}
}

// TestWatcherRecoveryRetried fails the first recovery bulk; the second,
// RetryInterval later, succeeds.
func TestWatcherRecoveryRetried(t *testing.T) {
	ws := newWatchServer(t, func(n int, c *requestortest.Conn, x uint32) {
		c.Send(msg(codec.MsgLeasequeryReply, x, optStatus(codec.StatusDataMissing, ""), optBase(900)))
		c.WaitClosed(5 * time.Second)
	}, func(n int, c *requestortest.Conn, q requestortest.Received) {
		if n == 1 {
			return // closes without an answer
		}
		c.Send(msg(codec.MsgLeasequeryReply, q.Msg.TransactionID))
	})
	req := requestor.WatchRequest{Resume: requestor.Checkpoint{StartTime: 10, Valid: true}, Recovery: []requestor.Query{linkQuery}}
	cfg := testConfig(ws.Addr())
	cfg.RetryInterval = 100 * time.Millisecond
	_, got, _ := watch(t, cfg, req, func(ev requestor.Event) bool {
		d, ok := ev.(requestor.RecoveryDone)
		return ok && d.Err == nil
	})
	var results []error
	for _, s := range got {
		if d, ok := s.ev.(requestor.RecoveryDone); ok {
			results = append(results, d.Err)
		}
	}
	if len(results) != 2 || !errors.Is(results[0], requestor.ErrConnectionLost) || results[1] != nil {
		t.Fatalf("recovery results = %v, want a lost connection, then success", results)
	}
	if last := got[len(got)-1]; last.checkpoint.StartTime != 900 {
		t.Errorf("checkpoint after the recovery = %d, want 900", last.checkpoint.StartTime)
	}
	accepts := ws.Accepts()
	if gap := accepts[2].Sub(accepts[1]); gap < 80*time.Millisecond {
		t.Errorf("second recovery attempt came %v after the first, want at least the 100 ms retry interval", gap)
	}
}

func TestWatcherRetrySpacing(t *testing.T) {
	ws := newWatchServer(t, func(int, *requestortest.Conn, uint32) {}, nil) // close at once
	cfg := testConfig(ws.Addr())
	cfg.RetryInterval = 150 * time.Millisecond
	_, got, err := watch(t, cfg, requestor.WatchRequest{MaxAttempts: 4}, nil)
	if !errors.Is(err, requestor.ErrConnectionLost) {
		t.Fatalf("Run error = %v, want the ErrConnectionLost of the last attempt", err)
	}
	accepts := ws.Accepts()
	if len(accepts) != 4 {
		t.Fatalf("server accepted %d connections, want MaxAttempts = 4", len(accepts))
	}
	for i := 1; i < len(accepts); i++ {
		// Connection setup time varies a little between attempts.
		if gap := accepts[i].Sub(accepts[i-1]); gap < 130*time.Millisecond {
			t.Errorf("attempt %d came %v after the previous one, want at least the 150 ms retry interval", i+1, gap)
		}
	}
	var disconnects int
	for _, s := range got {
		if d, ok := s.ev.(requestor.Disconnected); ok {
			disconnects++
			if disconnects < 4 && d.RetryAt.IsZero() {
				t.Errorf("Disconnected %d has no retry time", disconnects)
			}
			if disconnects == 4 && !d.RetryAt.IsZero() {
				t.Error("the last Disconnected announces a retry")
			}
		}
	}
	if disconnects != 4 {
		t.Errorf("got %d Disconnected events, want 4", disconnects)
	}
}

func TestWatcherReceiveTimeoutReconnects(t *testing.T) {
	ws := newWatchServer(t, func(n int, c *requestortest.Conn, x uint32) {
		if n == 1 {
			c.Send(msg(codec.MsgLeasequeryReply, x, optBase(50)))
			c.WaitClosed(5 * time.Second) // then silence
			return
		}
		notAllowed(c, x)
	}, nil)
	cfg := testConfig(ws.Addr())
	cfg.ReceiveTimeout = 100 * time.Millisecond
	_, got, _ := watch(t, cfg, requestor.WatchRequest{}, nil)
	var first *requestor.Disconnected
	for _, s := range got {
		if d, ok := s.ev.(requestor.Disconnected); ok {
			first = &d
			break
		}
	}
	if first == nil || !errors.Is(first.Err, requestor.ErrReceiveTimeout) {
		t.Fatalf("first disconnect = %+v, want ErrReceiveTimeout", first)
	}
	if starts := ws.activeStarts(); len(starts) != 2 || starts[1] != 50 {
		t.Errorf("start times sent = %v, want a reconnect from 50", starts)
	}
}

func TestWatcherQueryTerminatedRetries(t *testing.T) {
	stream := vector(t, "stream_act_s2c")
	frames, _ := requestortest.Frames(stream)
	ws := newWatchServer(t, func(n int, c *requestortest.Conn, x uint32) {
		if n > 1 {
			notAllowed(c, x)
			return
		}
		for _, f := range frames {
			c.Send(requestortest.WithXID(f, x))
		}
	}, nil)
	req := requestor.WatchRequest{Resume: requestor.Checkpoint{StartTime: 820537200, Valid: true}}
	_, _, err := watch(t, testConfig(ws.Addr()), req, nil)
	if code, _ := requestor.StatusCode(err); code != codec.StatusNotAllowed {
		t.Fatalf("Run error = %v, want the NotAllowed of the second connection", err)
	}
	// The QueryTerminated DONE of the recording carries base-time 820540862,
	// received after catch-up completed.
	if starts := ws.activeStarts(); len(starts) != 2 || starts[1] != 820540862 {
		t.Errorf("start times sent = %v, want a reconnect from 820540862", starts)
	}
}

func TestWatcherPermanentErrorStops(t *testing.T) {
	ws := newWatchServer(t, func(n int, c *requestortest.Conn, x uint32) { notAllowed(c, x) }, nil)
	_, got, err := watch(t, testConfig(ws.Addr()), requestor.WatchRequest{}, nil)
	if code, _ := requestor.StatusCode(err); code != codec.StatusNotAllowed {
		t.Fatalf("Run error = %v, want NotAllowed", err)
	}
	if n := len(ws.Accepts()); n != 1 {
		t.Errorf("server accepted %d connections, want 1: NotAllowed is not retried", n)
	}
	if d, ok := got[len(got)-1].ev.(requestor.Disconnected); !ok || !d.RetryAt.IsZero() {
		t.Errorf("last event = %#v, want a Disconnected without retry", got[len(got)-1].ev)
	}
}

func TestWatcherInitialBulk(t *testing.T) {
	ws := newWatchServer(t, func(n int, c *requestortest.Conn, x uint32) {
		notAllowed(c, x)
	}, func(n int, c *requestortest.Conn, q requestortest.Received) {
		if _, ok := startTime(q); ok {
			t.Error("initial bulk carries a start time")
		}
		x := q.Msg.TransactionID
		c.Send(msg(codec.MsgLeasequeryReply, x, optBase(7000), binding(client1, "2001:db8:1::1", 5, 100, 200)),
			msg(codec.MsgLeasequeryData, x, optBase(7002), binding(client2, "2001:db8:1::2", 5, 100, 200)),
			msg(codec.MsgLeasequeryDone, x, optBase(7003)))
		c.WaitClosed(5 * time.Second)
	})
	req := requestor.WatchRequest{Initial: requestor.InitialBulk, Recovery: []requestor.Query{linkQuery}}
	_, got, _ := watch(t, testConfig(ws.Addr()), req, nil)
	if starts := ws.activeStarts(); len(starts) != 1 || starts[0] != 7000 {
		t.Errorf("active start times = %v, want catch-up from the bulk's first base-time 7000", starts)
	}
	done := checkpointAt(t, got, "RecoveryDone", func(ev requestor.Event) bool { _, ok := ev.(requestor.RecoveryDone); return ok })
	if !done.Valid || done.StartTime != 7000 {
		t.Errorf("checkpoint after the initial bulk = %+v, want 7000", done)
	}
	var initial int
	for _, s := range got {
		if b, ok := s.ev.(requestor.Binding); ok && b.Source == requestor.SourceInitial {
			initial++
		}
	}
	if initial != 2 {
		t.Errorf("got %d initial bindings, want 2", initial)
	}
}

func TestWatcherInitialCatchUpFromZero(t *testing.T) {
	ws := newWatchServer(t, func(n int, c *requestortest.Conn, x uint32) { notAllowed(c, x) }, nil)
	w, _, _ := watch(t, testConfig(ws.Addr()), requestor.WatchRequest{Initial: requestor.InitialCatchUp}, nil)
	if starts := ws.activeStarts(); len(starts) != 1 || starts[0] != 0 {
		t.Errorf("start times sent = %v, want [0]", starts)
	}
	if w.Checkpoint().Valid {
		t.Error("checkpoint valid although catch-up never completed")
	}
}

// TestWatcherSkew runs against a server whose clock is an hour ahead: the
// estimate follows, and local times come out in the local clock. The
// bounds allow for the delay each message really had, measured from the
// server's send time to the requestor's receive time, so a loaded machine
// cannot fail the test.
func TestWatcherSkew(t *testing.T) {
	const ahead = time.Hour
	var mu sync.Mutex
	var sent []time.Time
	ws := newWatchServer(t, func(n int, c *requestortest.Conn, x uint32) {
		for i := range 5 {
			at := time.Now()
			base := codec.DHCPTime(at.Add(ahead))
			var m []byte
			if i == 0 {
				m = msg(codec.MsgLeasequeryReply, x, optBase(base))
			} else {
				m = msg(codec.MsgLeasequeryData, x, optBase(base), binding(client1, "2001:db8:1::1", 30, 300, 600))
			}
			mu.Lock()
			sent = append(sent, at)
			mu.Unlock()
			if c.Send(m) != nil {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		c.WaitClosed(5 * time.Second)
	}, nil)
	var received []time.Time
	var last requestor.Binding
	w, _, _ := watch(t, testConfig(ws.Addr()), requestor.WatchRequest{}, func(ev requestor.Event) bool {
		switch e := ev.(type) {
		case requestor.Accepted:
			received = append(received, e.Received)
		case requestor.Binding:
			received = append(received, e.Received)
			last = e
		}
		return len(received) == 5
	})

	mu.Lock()
	defer mu.Unlock()
	if len(sent) != 5 || len(received) != 5 {
		t.Fatalf("%d messages sent, %d received; want 5", len(sent), len(received))
	}
	var maxDelay time.Duration
	for i := range sent {
		maxDelay = max(maxDelay, received[i].Sub(sent[i]))
	}
	// A sample is the delay plus the truncation of the base-time to whole
	// seconds, minus the half second the estimator adds back.
	skew := w.Skew()
	if low, high := -ahead-time.Second, -ahead+maxDelay+time.Second; skew < low || skew > high {
		t.Errorf("skew estimate = %v, want within %v to %v", skew, low, high)
	}
	if d := last.LocalBase.Sub(last.ServerTime()); d != skew {
		t.Errorf("local base-time is %v from the server time, want the skew %v", d, skew)
	}
	if d := last.ValidUntil.Sub(last.LocalBase); d != 600*time.Second {
		t.Errorf("valid-until is %v after the local base-time, want 600 s", d)
	}
	if d := last.LocalBase.Sub(last.LastTransaction); d != 30*time.Second {
		t.Errorf("last transaction is %v before the local base-time, want 30 s", d)
	}
	if d := last.ServerTime().Sub(last.Received); d < ahead-maxDelay-time.Second || d > ahead {
		t.Errorf("server time is %v from the receive time, want %v less the delay", d, ahead)
	}
}

// TestWatcherSkewIgnoresOldBaseTimes runs against a server whose clock
// matches the requestor's, with catch-up data an hour old and then data of
// a connection five minutes behind. Neither may move the estimate away
// from the REPLY's, however many messages carry them.
func TestWatcherSkewIgnoresOldBaseTimes(t *testing.T) {
	const old, lag = time.Hour, 5 * time.Minute
	var mu sync.Mutex
	var sent []time.Time
	ws := newWatchServer(t, func(n int, c *requestortest.Conn, x uint32) {
		send := func(m []byte) bool {
			mu.Lock()
			sent = append(sent, time.Now())
			mu.Unlock()
			return c.Send(m) == nil
		}
		at := func(d time.Duration) []byte { return optBase(codec.DHCPTime(time.Now().Add(-d))) }
		if !send(msg(codec.MsgLeasequeryReply, x, at(0))) {
			return
		}
		for i := range 8 {
			if !send(msg(codec.MsgLeasequeryData, x, at(old), binding(client1, "2001:db8:1::1", uint32(i), 300, 600))) {
				return
			}
		}
		if !send(msg(codec.MsgLeasequeryData, x, optStatus(codec.StatusCatchUpComplete, ""), at(0))) {
			return
		}
		for i := range 8 {
			if !send(msg(codec.MsgLeasequeryData, x, at(lag), binding(client2, "2001:db8:1::2", uint32(i), 300, 600))) {
				return
			}
		}
		c.WaitClosed(5 * time.Second)
	}, nil)

	var received []time.Time
	var catchUp requestor.Binding
	bindings := 0
	req := requestor.WatchRequest{Resume: requestor.Checkpoint{StartTime: codec.DHCPTime(time.Now().Add(-2 * old)), Valid: true}}
	w, _, _ := watch(t, testConfig(ws.Addr()), req, func(ev requestor.Event) bool {
		if info := ev.Info(); info.HasBaseTime {
			received = append(received, info.Received)
		}
		if b, ok := ev.(requestor.Binding); ok {
			bindings++
			if b.CatchUp {
				catchUp = b
			}
		}
		return bindings == 16
	})

	mu.Lock()
	defer mu.Unlock()
	if len(received) == 0 || len(sent) < len(received) {
		t.Fatalf("%d messages sent, %d received", len(sent), len(received))
	}
	var maxDelay time.Duration
	for i := range received {
		maxDelay = max(maxDelay, received[i].Sub(sent[i]))
	}
	// As in TestWatcherSkew: the delay plus the truncation of the base-time
	// to whole seconds, minus the half second the estimator adds back.
	skew := w.Skew()
	low, high := -time.Second, maxDelay+time.Second
	if skew < low || skew > high {
		t.Errorf("skew estimate = %v, want within %v to %v", skew, low, high)
	}
	if d := catchUp.LocalBase.Sub(catchUp.ServerTime()); d < low || d > high {
		t.Errorf("catch-up binding's local base-time is %v from its server time, want within %v to %v", d, low, high)
	}
}

func TestWatcherRunOnce(t *testing.T) {
	w, err := requestor.NewWatcher(testConfig("127.0.0.1:9"), requestor.WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w.Run(ctx, func(requestor.Event) error { return nil })
	if err := w.Run(ctx, func(requestor.Event) error { return nil }); err == nil {
		t.Error("second Run succeeded, want an error")
	}
}

func TestNewWatcherRejectsBadRequests(t *testing.T) {
	bad := []requestor.WatchRequest{
		{Initial: requestor.InitialBulk},
		{Filter: &requestor.Query{Type: codec.QueryByRelayID}},
		{Recovery: []requestor.Query{{Type: 99}}},
		{MaxAttempts: -1},
	}
	for i, req := range bad {
		if _, err := requestor.NewWatcher(testConfig("127.0.0.1:9"), req); !errors.Is(err, requestor.ErrInvalidQuery) {
			t.Errorf("request %d: error = %v, want ErrInvalidQuery", i, err)
		}
	}
}

// TestWatcherDataMissingMidCatchUp loses the server's history after some
// catch-up data: the recovery covers the start time to the DataMissing
// base-time, and no catch-up base-time ever becomes the checkpoint.
func TestWatcherDataMissingMidCatchUp(t *testing.T) {
	ws := newWatchServer(t, func(n int, c *requestortest.Conn, x uint32) {
		c.Send(msg(codec.MsgLeasequeryReply, x, optBase(3000), binding(client1, "2001:db8:1::1", 5, 100, 200)),
			msg(codec.MsgLeasequeryData, x, optBase(3001), binding(client2, "2001:db8:1::2", 5, 100, 200)),
			msg(codec.MsgLeasequeryData, x, optStatus(codec.StatusDataMissing, "trimmed"), optBase(3002)),
			msg(codec.MsgLeasequeryData, x, optBase(3003), binding(client2, "2001:db8:1::2", 0, 100, 200)))
		c.WaitClosed(5 * time.Second)
	}, func(n int, c *requestortest.Conn, q requestortest.Received) {
		s, okS := startTime(q)
		e, okE := endTime(q)
		if !okS || !okE || s != 2500 || e != 3002 {
			t.Errorf("recovery interval = %d to %d, want 2500 to 3002", s, e)
		}
		c.Send(msg(codec.MsgLeasequeryReply, q.Msg.TransactionID))
	})
	req := requestor.WatchRequest{Resume: requestor.Checkpoint{StartTime: 2500, Valid: true}, Recovery: []requestor.Query{linkQuery}}
	_, got, err := watch(t, testConfig(ws.Addr()), req, func(ev requestor.Event) bool {
		_, ok := ev.(requestor.RecoveryDone)
		return ok
	})
	if !errors.Is(err, errStop) {
		t.Fatalf("Run error = %v", err)
	}
	for _, s := range got[:len(got)-1] {
		if s.checkpoint.StartTime != 2500 {
			t.Errorf("checkpoint = %d at %T before the recovery ended, want 2500", s.checkpoint.StartTime, s.ev)
		}
	}
	// The live binding after DataMissing (3003) was delivered before the
	// recovery ended, or the checkpoint is the DataMissing base-time.
	if last := got[len(got)-1].checkpoint.StartTime; last != 3003 && last != 3002 {
		t.Errorf("checkpoint after the recovery = %d, want 3002 or 3003", last)
	}
}
