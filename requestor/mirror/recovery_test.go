package mirror_test

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/requestor"
	"github.com/alqd/alqd/requestor/mirror"
	"github.com/alqd/alqd/requestor/requestortest"
)

// bulkReplies returns the messages a server sends for bulk query xid: one
// active address binding of client1 per address at base-time base, then
// LEASEQUERY-DONE.
func bulkReplies(xid, base uint32, addrs ...string) [][]byte {
	var msgs [][]byte
	for i, a := range addrs {
		t := codec.MsgLeasequeryData
		if i == 0 {
			t = codec.MsgLeasequeryReply
		}
		msgs = append(msgs, msg(t, xid, optBase(base), binding(client1, a, 5, 100, 200)))
	}
	return append(msgs, msg(codec.MsgLeasequeryDone, xid))
}

// initialBulk returns the script of an initial bulk that reports one
// active address binding of client1 per address, all at base-time 1000.
func initialBulk(addrs ...string) func(c *requestortest.Conn, r requestortest.Received) {
	return func(c *requestortest.Conn, r requestortest.Received) {
		c.Send(bulkReplies(r.Msg.TransactionID, 1000, addrs...)...)
		c.WaitClosed(5 * time.Second)
	}
}

// readPlain reads the recovery query without times that follows the
// interval query r on the same connection.
func readPlain(t *testing.T, c *requestortest.Conn) (requestortest.Received, bool) {
	t.Helper()
	plain, err := c.ReadMessage()
	if err != nil || plain.Err != nil {
		t.Errorf("second recovery query: %v, %v", err, plain.Err)
		return plain, false
	}
	return plain, true
}

// fullRecovery returns the script of a full recovery that succeeds at
// base-time base: the interval query finds nothing, and the query without
// times reports one active address binding of client1 per address.
func fullRecovery(t *testing.T, base uint32, addrs ...string) func(c *requestortest.Conn, r requestortest.Received) {
	return func(c *requestortest.Conn, r requestortest.Received) {
		plain, ok := readPlain(t, c)
		if !ok {
			return
		}
		msgs := [][]byte{msg(codec.MsgLeasequeryReply, r.Msg.TransactionID, optBase(base))}
		c.Send(append(msgs, bulkReplies(plain.Msg.TransactionID, base, addrs...)...)...)
		c.WaitClosed(5 * time.Second)
	}
}

// seenMarkers counts the seen markers left in the closed mirror database
// in dir.
func seenMarkers(t *testing.T, dir string) int {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{Logger: quietLogger{t}})
	if err != nil {
		t.Fatalf("open %s: %v", dir, err)
	}
	defer db.Close()
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{'s'}, UpperBound: []byte{'s' + 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	n := 0
	for it.First(); it.Valid(); it.Next() {
		n++
	}
	return n
}

// wantRecoverySweep checks that the initial bulk ended nothing, that one
// full recovery ended n records, and that it left no seen marker in the
// closed mirror database in dir.
func wantRecoverySweep(t *testing.T, dir string, swept []mirror.Swept, n int) {
	t.Helper()
	want := []mirror.Swept{{Source: requestor.SourceInitial}, {Source: requestor.SourceRecovery, Ended: n}}
	if fmt.Sprint(swept) != fmt.Sprint(want) {
		t.Errorf("swept = %+v, want %+v", swept, want)
	}
	if n := seenMarkers(t, dir); n != 0 {
		t.Errorf("%d seen markers left after the sweep, want 0", n)
	}
}

// quietLogger drops Pebble's informational messages and reports its errors.
type quietLogger struct{ t *testing.T }

func (quietLogger) Infof(string, ...any) {}

func (l quietLogger) Errorf(format string, args ...any) { l.t.Errorf("pebble: "+format, args...) }

// Fatalf panics: Pebble calls it on a broken invariant, from any goroutine.
func (quietLogger) Fatalf(format string, args ...any) { panic(fmt.Sprintf("pebble: "+format, args...)) }

// wantStates checks the state of each address in m.
func wantStates(t *testing.T, m *mirror.Mirror, want map[string]requestor.State) {
	t.Helper()
	for addr, state := range want {
		r, ok, err := m.Get(addrKey(addr))
		if err != nil || !ok {
			t.Errorf("%s: found %v, %v", addr, ok, err)
			continue
		}
		if r.State != state {
			t.Errorf("%s = %v from %v at base-time %d (has base-time %v), want %v", addr, r.State, r.Source, r.BaseTime, r.HasBaseTime, state)
		}
	}
}

// TestMirrorBulkWithoutBaseTime recovers with a bulk whose messages carry
// no OPTION_LQ_BASE_TIME. The active connection ends a binding while the
// bulk runs, and the bulk then reports the state from before: that older
// state must not replace the ended one.
func TestMirrorBulkWithoutBaseTime(t *testing.T) {
	recoveryOpen := make(chan struct{})
	activeSeen := make(chan struct{})
	recovered := make(chan struct{})
	srv := newServer(t,
		initialBulk("2001:db8:1::1", "2001:db8:1::2"),
		func(c *requestortest.Conn, r requestortest.Received) { // active
			x := r.Msg.TransactionID
			c.Send(msg(codec.MsgLeasequeryReply, x, optBase(1001)),
				msg(codec.MsgLeasequeryData, x, optStatus(codec.StatusDataMissing, ""), optBase(1002)))
			<-recoveryOpen
			c.Send(msg(codec.MsgLeasequeryData, x, optBase(1003), binding(client1, "2001:db8:1::1", 0, 0, 0)))
			<-recovered
			c.Send(msg(codec.MsgLeasequeryData, x, optBase(1010)))
			c.WaitClosed(5 * time.Second)
		},
		func(c *requestortest.Conn, r requestortest.Received) { // recovery without base-times
			plain, ok := readPlain(t, c)
			close(recoveryOpen)
			if !ok {
				return
			}
			c.Send(msg(codec.MsgLeasequeryReply, r.Msg.TransactionID))
			<-activeSeen
			x := plain.Msg.TransactionID
			c.Send(msg(codec.MsgLeasequeryReply, x, binding(client1, "2001:db8:1::1", 5, 100, 200)),
				msg(codec.MsgLeasequeryData, x, binding(client1, "2001:db8:1::2", 5, 100, 200)),
				msg(codec.MsgLeasequeryDone, x))
			c.WaitClosed(5 * time.Second)
		})
	cfg := config(t, t.TempDir(), srv.Addr())
	cfg.Recovery = []requestor.Query{linkQuery}
	var once sync.Once
	err := runMirror(t, cfg, func(ev requestor.Event) bool {
		switch e := ev.(type) {
		case requestor.Binding:
			if e.Source == requestor.SourceActive && e.Addr == netip.MustParseAddr("2001:db8:1::1") {
				close(activeSeen)
			}
		case requestor.RecoveryDone:
			if e.Source == requestor.SourceRecovery {
				once.Do(func() { close(recovered) })
			}
		case requestor.Keepalive:
			return e.BaseTime == 1010
		}
		return false
	})
	if err != nil {
		t.Fatal(err)
	}
	wantStates(t, open(t, cfg), map[string]requestor.State{
		"2001:db8:1::1": requestor.StateEnded, // ended on the active connection during the bulk
		"2001:db8:1::2": requestor.StateActive,
	})
}

// TestMirrorFullRecoveryStopped stops the mirror in the middle of a full
// recovery, after the bulk reported a binding that the server removes
// before the next run. The stopped run must end nothing and keep its
// checkpoint. The next run recovers again and must end that binding,
// although the stopped run left a seen marker for it.
func TestMirrorFullRecoveryStopped(t *testing.T) {
	srv := newServer(t,
		initialBulk("2001:db8:1::1", "2001:db8:1::2", "2001:db8:1::3"),
		func(c *requestortest.Conn, r requestortest.Received) { // first run: active
			x := r.Msg.TransactionID
			c.Send(msg(codec.MsgLeasequeryReply, x, optBase(1001)),
				msg(codec.MsgLeasequeryData, x, optStatus(codec.StatusDataMissing, ""), optBase(1002)))
			c.WaitClosed(5 * time.Second)
		},
		func(c *requestortest.Conn, r requestortest.Received) { // first run: recovery, never done
			plain, ok := readPlain(t, c)
			if !ok {
				return
			}
			c.Send(msg(codec.MsgLeasequeryReply, r.Msg.TransactionID, optBase(1002)),
				msg(codec.MsgLeasequeryReply, plain.Msg.TransactionID, optBase(1002), binding(client1, "2001:db8:1::1", 5, 100, 200)))
			c.WaitClosed(5 * time.Second)
		},
		func(c *requestortest.Conn, r requestortest.Received) { // second run: active
			if s, ok := r.Msg.Options.StartTime(); !ok || s != 1000 {
				t.Errorf("second run start time = %d (present %v), want the initial bulk's 1000", s, ok)
			}
			x := r.Msg.TransactionID
			c.Send(msg(codec.MsgLeasequeryReply, x, optStatus(codec.StatusDataMissing, ""), optBase(1005)))
			c.WaitClosed(5 * time.Second)
		},
		fullRecovery(t, 1005, "2001:db8:1::2", "2001:db8:1::3")) // second run
	dir := t.TempDir()
	cfg := config(t, dir, srv.Addr())
	cfg.Recovery = []requestor.Query{linkQuery}
	cfg.MaxAttempts = 0

	err := runMirror(t, cfg, func(ev requestor.Event) bool {
		b, ok := ev.(requestor.Binding)
		return ok && b.Source == requestor.SourceRecovery
	})
	if err != nil {
		t.Fatalf("first run: %v", err)
	}
	m, err := mirror.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"2001:db8:1::1", "2001:db8:1::2", "2001:db8:1::3"} {
		if r, _, _ := m.Get(addrKey(a)); r.State != requestor.StateActive {
			t.Errorf("after the stopped recovery %s = %v, want still active", a, r.State)
		}
	}
	if cp, _ := m.Checkpoint(); cp.StartTime != 1000 {
		t.Errorf("checkpoint after the stopped recovery = %+v, want 1000", cp)
	}
	m.Close()

	var swept []mirror.Swept
	err = runMirror(t, cfg, func(ev requestor.Event) bool {
		s, ok := ev.(mirror.Swept)
		if ok {
			swept = append(swept, s)
		}
		return ok
	})
	if err != nil {
		t.Fatalf("second run: %v", err)
	}
	if len(swept) != 1 || swept[0].Ended != 1 {
		t.Errorf("second run swept %+v, want one sweep ending 1", swept)
	}
	if n := seenMarkers(t, dir); n != 0 {
		t.Errorf("%d seen markers left after the sweep, want 0", n)
	}
	m = open(t, cfg)
	wantStates(t, m, map[string]requestor.State{
		"2001:db8:1::1": requestor.StateEnded,
		"2001:db8:1::2": requestor.StateActive,
		"2001:db8:1::3": requestor.StateActive,
	})
	if cp, _ := m.Checkpoint(); cp.StartTime != 1005 {
		t.Errorf("checkpoint after the recovery = %+v, want 1005", cp)
	}
}

// TestMirrorFullRecoveryRetried fails the first full recovery after it
// reported a binding, and the retry no longer reports that binding. The
// failed attempt must end nothing, and the sweep after the retry must end
// that binding as well as the one neither attempt reported.
func TestMirrorFullRecoveryRetried(t *testing.T) {
	tests := []struct {
		name string
		fail func(c *requestortest.Conn, xid uint32)
	}{
		{"QueryTerminated", func(c *requestortest.Conn, xid uint32) {
			c.Send(msg(codec.MsgLeasequeryDone, xid, optStatus(codec.StatusQueryTerminated, "shutting down"), optBase(1002)))
		}},
		{"connection closed", func(c *requestortest.Conn, xid uint32) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recovered := make(chan struct{})
			srv := newServer(t,
				initialBulk("2001:db8:1::1", "2001:db8:1::2", "2001:db8:1::3"),
				func(c *requestortest.Conn, r requestortest.Received) { // active
					x := r.Msg.TransactionID
					c.Send(msg(codec.MsgLeasequeryReply, x, optBase(1001)),
						msg(codec.MsgLeasequeryData, x, optStatus(codec.StatusDataMissing, ""), optBase(1002)))
					<-recovered
					c.Send(msg(codec.MsgLeasequeryData, x, optBase(1010)))
					c.WaitClosed(5 * time.Second)
				},
				func(c *requestortest.Conn, r requestortest.Received) { // failing recovery
					plain, ok := readPlain(t, c)
					if !ok {
						return
					}
					c.Send(msg(codec.MsgLeasequeryReply, r.Msg.TransactionID, optBase(1002)),
						msg(codec.MsgLeasequeryReply, plain.Msg.TransactionID, optBase(1002), binding(client1, "2001:db8:1::2", 5, 100, 200)))
					tt.fail(c, plain.Msg.TransactionID)
				},
				fullRecovery(t, 1003, "2001:db8:1::3")) // retry
			dir := t.TempDir()
			cfg := config(t, dir, srv.Addr())
			cfg.Recovery = []requestor.Query{linkQuery}
			var swept []mirror.Swept
			var done []requestor.RecoveryDone
			err := runMirror(t, cfg, func(ev requestor.Event) bool {
				switch e := ev.(type) {
				case mirror.Swept:
					swept = append(swept, e)
				case requestor.RecoveryDone:
					if e.Source == requestor.SourceRecovery {
						done = append(done, e)
						if e.Err == nil {
							close(recovered)
						}
					}
				case requestor.Keepalive:
					return e.BaseTime == 1010
				}
				return false
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(done) != 2 || done[0].Err == nil || done[1].Err != nil {
				t.Fatalf("recoveries = %+v, want a failed one, then one without error", done)
			}
			wantRecoverySweep(t, dir, swept, 2)
			wantStates(t, open(t, cfg), map[string]requestor.State{
				"2001:db8:1::1": requestor.StateEnded,
				"2001:db8:1::2": requestor.StateEnded, // reported only by the failed attempt
				"2001:db8:1::3": requestor.StateActive,
			})
		})
	}
}

// TestMirrorSecondDataMissing reconnects the active connection while a
// full recovery runs, and gets DataMissing again. The Watcher cancels the
// running recovery and starts another: what the cancelled one reported
// must not keep a binding that the second no longer reports.
func TestMirrorSecondDataMissing(t *testing.T) {
	firstReported := make(chan struct{})
	recovered := make(chan struct{})
	srv := newServer(t,
		initialBulk("2001:db8:1::1", "2001:db8:1::2", "2001:db8:1::3"),
		func(c *requestortest.Conn, r requestortest.Received) { // first active
			x := r.Msg.TransactionID
			c.Send(msg(codec.MsgLeasequeryReply, x, optBase(1001)),
				msg(codec.MsgLeasequeryData, x, optStatus(codec.StatusDataMissing, ""), optBase(1002)))
			<-firstReported
		},
		func(c *requestortest.Conn, r requestortest.Received) { // first recovery, cancelled
			plain, ok := readPlain(t, c)
			if !ok {
				return
			}
			c.Send(msg(codec.MsgLeasequeryReply, r.Msg.TransactionID, optBase(1002)),
				msg(codec.MsgLeasequeryReply, plain.Msg.TransactionID, optBase(1002), binding(client1, "2001:db8:1::1", 5, 100, 200)))
			c.WaitClosed(5 * time.Second)
		},
		func(c *requestortest.Conn, r requestortest.Received) { // second active
			x := r.Msg.TransactionID
			c.Send(msg(codec.MsgLeasequeryReply, x, optStatus(codec.StatusDataMissing, ""), optBase(1004)))
			<-recovered
			c.Send(msg(codec.MsgLeasequeryData, x, optBase(1010)))
			c.WaitClosed(5 * time.Second)
		},
		fullRecovery(t, 1004, "2001:db8:1::2", "2001:db8:1::3")) // second recovery
	dir := t.TempDir()
	cfg := config(t, dir, srv.Addr())
	cfg.Recovery = []requestor.Query{linkQuery}
	cfg.MaxAttempts = 0
	var started int
	var swept []mirror.Swept
	err := runMirror(t, cfg, func(ev requestor.Event) bool {
		switch e := ev.(type) {
		case requestor.Binding:
			if e.Source == requestor.SourceRecovery && e.Addr == netip.MustParseAddr("2001:db8:1::1") {
				close(firstReported)
			}
		case requestor.RecoveryStarted:
			if e.Source == requestor.SourceRecovery {
				started++
			}
		case mirror.Swept:
			swept = append(swept, e)
		case requestor.RecoveryDone:
			if e.Source == requestor.SourceRecovery && e.Err == nil {
				close(recovered)
			}
		case requestor.Keepalive:
			return e.BaseTime == 1010
		}
		return false
	})
	if err != nil {
		t.Fatal(err)
	}
	if started != 2 {
		t.Errorf("%d recoveries started, want 2", started)
	}
	wantRecoverySweep(t, dir, swept, 1)
	wantStates(t, open(t, cfg), map[string]requestor.State{
		"2001:db8:1::1": requestor.StateEnded,
		"2001:db8:1::2": requestor.StateActive,
		"2001:db8:1::3": requestor.StateActive,
	})
}

// TestMirrorLargeSweep fills the mirror with 20,000 bindings, of which a
// full recovery reports half: the sweep ends the other half in one batch
// and leaves no seen marker behind.
func TestMirrorLargeSweep(t *testing.T) {
	const (
		total  = 20000
		perMsg = 1000 // OPTION_IAADDRs per OPTION_CLIENT_DATA, about 28,000 octets
		kept   = total / 2
	)
	// messages returns the reply messages of a bulk query with
	// transaction-id x that report the first n of the addresses.
	messages := func(x uint32, n int) [][]byte {
		var out [][]byte
		for start := 0; start < n; start += perMsg {
			opts := [][]byte{requestortest.OptCLTTime(5)}
			for i := start; i < start+perMsg; i++ {
				opts = append(opts, requestortest.OptIAAddr(largeAddr(i).String(), 100, 200))
			}
			t := codec.MsgLeasequeryData
			if start == 0 {
				t = codec.MsgLeasequeryReply
			}
			out = append(out, msg(t, x, optBase(1000), requestortest.OptClientData(requestortest.DUIDLL(byte(start/perMsg)), opts...)))
		}
		return append(out, msg(codec.MsgLeasequeryDone, x))
	}
	srv := newServer(t,
		func(c *requestortest.Conn, r requestortest.Received) { // initial bulk
			c.Send(messages(r.Msg.TransactionID, total)...)
			c.WaitClosed(10 * time.Second)
		},
		func(c *requestortest.Conn, r requestortest.Received) { // active
			c.Send(msg(codec.MsgLeasequeryReply, r.Msg.TransactionID, optStatus(codec.StatusDataMissing, ""), optBase(1002)))
			c.WaitClosed(10 * time.Second)
		},
		func(c *requestortest.Conn, r requestortest.Received) { // recovery
			plain, ok := readPlain(t, c)
			if !ok {
				return
			}
			c.Send(msg(codec.MsgLeasequeryReply, r.Msg.TransactionID, optBase(1002)))
			c.Send(messages(plain.Msg.TransactionID, kept)...)
			c.WaitClosed(10 * time.Second)
		})
	dir := t.TempDir()
	cfg := config(t, dir, srv.Addr())
	cfg.Recovery = []requestor.Query{linkQuery}
	var swept []mirror.Swept
	err := runMirror(t, cfg, func(ev requestor.Event) bool {
		s, ok := ev.(mirror.Swept)
		if ok {
			swept = append(swept, s)
		}
		return ok && s.Source == requestor.SourceRecovery
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(swept) != 2 || swept[1].Ended != total-kept {
		t.Errorf("swept = %+v, want the recovery to end %d", swept, total-kept)
	}
	if n := seenMarkers(t, dir); n != 0 {
		t.Errorf("%d seen markers left after the sweep, want 0", n)
	}
	m := open(t, cfg)
	if st, err := m.Stats(); err != nil || st.Active != kept || st.Expired != total-kept {
		t.Errorf("stats = %+v, %v; want %d active, %d expired", st, err, kept, total-kept)
	}
}

// largeAddr returns the i-th address of TestMirrorLargeSweep.
func largeAddr(i int) netip.Addr {
	a := netip.MustParseAddr("2001:db8:2::").As16()
	a[14], a[15] = byte(i>>8), byte(i)
	return netip.AddrFrom16(a)
}
