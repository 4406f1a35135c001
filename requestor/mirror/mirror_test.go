package mirror_test

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/requestor"
	"github.com/alqd/alqd/requestor/mirror"
	"github.com/alqd/alqd/requestor/requestortest"
)

func TestMain(m *testing.M) { requestortest.Main(m) }

var (
	msg       = requestortest.Msg
	optBase   = requestortest.OptBaseTime
	optStatus = requestortest.OptStatus
	binding   = requestortest.Binding
	client1   = requestortest.DUIDLL(1)
	client2   = requestortest.DUIDLL(2)
	linkQuery = requestor.Query{Type: codec.QueryByLinkAddress, Link: netip.MustParseAddr("2001:db8:1::1")}
)

// server runs one script per connection, in the order they open, and
// records the first message of each.
type server struct {
	*requestortest.Server
	mu    sync.Mutex
	first []requestortest.Received
}

func newServer(t *testing.T, scripts ...func(c *requestortest.Conn, r requestortest.Received)) *server {
	s := &server{}
	s.Server = requestortest.NewServer(t, func(c *requestortest.Conn) {
		r, err := c.ReadMessage()
		if err != nil || r.Err != nil {
			return
		}
		s.mu.Lock()
		s.first = append(s.first, r)
		n := len(s.first)
		s.mu.Unlock()
		if n > len(scripts) {
			c.Send(msg(codec.MsgLeasequeryReply, r.Msg.TransactionID, optStatus(codec.StatusNotAllowed, "no more connections in this test")))
			return
		}
		scripts[n-1](c, r)
	})
	return s
}

func (s *server) firstMessages() []requestortest.Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]requestortest.Received(nil), s.first...)
}

func config(t *testing.T, dir, addr string) mirror.Config {
	return mirror.Config{
		Dir: dir,
		Requestor: requestor.Config{
			Server:         addr,
			ClientID:       requestortest.DUIDLL(0xaa),
			ReceiveTimeout: 2 * time.Second,
			RetryInterval:  20 * time.Millisecond,
		},
		MaxAttempts: 1,
	}
}

// runMirror opens the mirror, runs it until it stops or until returns
// true, and closes it.
func runMirror(t *testing.T, cfg mirror.Config, until func(requestor.Event) bool) error {
	t.Helper()
	m, err := mirror.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stop := errors.New("stop")
	err = m.Run(ctx, func(ev requestor.Event) error {
		if until != nil && until(ev) {
			return stop
		}
		return nil
	})
	if errors.Is(err, stop) {
		return nil
	}
	return err
}

func open(t *testing.T, cfg mirror.Config) *mirror.Mirror {
	t.Helper()
	m, err := mirror.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func addrKey(a string) mirror.BindingKey {
	return mirror.BindingKey{Type: requestor.TypeNA, Prefix: netip.PrefixFrom(netip.MustParseAddr(a), 128)}
}

// TestMirrorFillsAndResumes fills an empty mirror by catch-up from start
// time 0, then restarts it: the second run resumes from the stored
// checkpoint.
func TestMirrorFillsAndResumes(t *testing.T) {
	srv := newServer(t,
		func(c *requestortest.Conn, r requestortest.Received) {
			x := r.Msg.TransactionID
			c.Send(msg(codec.MsgLeasequeryReply, x, optBase(100), binding(client1, "2001:db8:1::1", 5, 100, 200)),
				msg(codec.MsgLeasequeryData, x, optBase(101), binding(client2, "2001:db8:1::2", 5, 100, 200)),
				msg(codec.MsgLeasequeryData, x, optStatus(codec.StatusCatchUpComplete, ""), optBase(105)),
				msg(codec.MsgLeasequeryData, x, optBase(160)))
		},
		func(c *requestortest.Conn, r requestortest.Received) {
			x := r.Msg.TransactionID
			c.Send(msg(codec.MsgLeasequeryReply, x, optBase(170)),
				msg(codec.MsgLeasequeryData, x, optBase(171), binding(client1, "2001:db8:1::1", 0, 0, 0)),
				msg(codec.MsgLeasequeryData, x, optStatus(codec.StatusCatchUpComplete, ""), optBase(172)))
		})
	cfg := config(t, t.TempDir(), srv.Addr())
	if err := runMirror(t, cfg, nil); !errors.Is(err, requestor.ErrConnectionLost) {
		t.Fatalf("first run: %v", err)
	}
	if err := runMirror(t, cfg, nil); !errors.Is(err, requestor.ErrConnectionLost) {
		t.Fatalf("second run: %v", err)
	}

	first := srv.firstMessages()
	if len(first) != 2 {
		t.Fatalf("server saw %d connections, want 2", len(first))
	}
	if s, ok := first[0].Msg.Options.StartTime(); !ok || s != 0 {
		t.Errorf("first run start time = %d (present %v), want 0", s, ok)
	}
	if s, ok := first[1].Msg.Options.StartTime(); !ok || s != 160 {
		t.Errorf("second run start time = %d (present %v), want the stored 160", s, ok)
	}

	m := open(t, cfg)
	if cp, err := m.Checkpoint(); err != nil || !cp.Valid || cp.StartTime != 172 {
		t.Errorf("checkpoint = %+v, %v; want 172", cp, err)
	}
	r1, ok1, _ := m.Get(addrKey("2001:db8:1::1"))
	r2, ok2, _ := m.Get(addrKey("2001:db8:1::2"))
	if !ok1 || r1.State != requestor.StateEnded || r1.BaseTime != 171 {
		t.Errorf("2001:db8:1::1 = %+v, want ended at base-time 171", r1)
	}
	if !ok2 || r2.State != requestor.StateActive || string(r2.ClientID) != string(client2) {
		t.Errorf("2001:db8:1::2 = %+v, want active for client 2", r2)
	}
	if st, err := m.Stats(); err != nil || st.Active != 1 || st.Expired != 1 {
		t.Errorf("stats = %+v, %v; want 1 active, 1 expired", st, err)
	}
}

// TestMirrorInitialBulkAndRecovery fills the mirror with a bulk query, then
// gets DataMissing on the active connection and recovers the missing
// interval on a second one (WindowedRecovery). Stale states from the bulks
// never replace newer ones.
func TestMirrorInitialBulkAndRecovery(t *testing.T) {
	bulkSeen := make(chan struct{})
	srv := newServer(t,
		func(c *requestortest.Conn, r requestortest.Received) { // initial bulk
			x := r.Msg.TransactionID
			c.Send(msg(codec.MsgLeasequeryReply, x, optBase(1000), binding(client1, "2001:db8:1::1", 5, 100, 200)),
				msg(codec.MsgLeasequeryData, x, optBase(1000), binding(client2, "2001:db8:1::2", 5, 100, 200)),
				msg(codec.MsgLeasequeryDone, x))
			c.WaitClosed(5 * time.Second)
		},
		func(c *requestortest.Conn, r requestortest.Received) { // active
			x := r.Msg.TransactionID
			c.Send(msg(codec.MsgLeasequeryReply, x, optBase(1001), binding(client1, "2001:db8:1::1", 0, 0, 0)),
				msg(codec.MsgLeasequeryData, x, optStatus(codec.StatusDataMissing, ""), optBase(1002)))
			<-bulkSeen
			c.Send(msg(codec.MsgLeasequeryData, x, optBase(1010)))
			c.WaitClosed(5 * time.Second)
		},
		func(c *requestortest.Conn, r requestortest.Received) { // recovery
			x := r.Msg.TransactionID
			// An older state of ::1, which the active connection ended.
			c.Send(msg(codec.MsgLeasequeryReply, x, optBase(999), binding(client1, "2001:db8:1::1", 5, 100, 200)),
				msg(codec.MsgLeasequeryData, x, optBase(1002), binding(client2, "2001:db8:1::3", 5, 100, 200)),
				msg(codec.MsgLeasequeryDone, x))
			c.WaitClosed(5 * time.Second)
		})
	cfg := config(t, t.TempDir(), srv.Addr())
	cfg.Recovery = []requestor.Query{linkQuery}
	cfg.WindowedRecovery = true
	var once sync.Once
	err := runMirror(t, cfg, func(ev requestor.Event) bool {
		if d, ok := ev.(requestor.RecoveryDone); ok && d.Source == requestor.SourceRecovery {
			once.Do(func() { close(bulkSeen) })
		}
		k, ok := ev.(requestor.Keepalive)
		return ok && k.BaseTime == 1010
	})
	if err != nil {
		t.Fatal(err)
	}

	first := srv.firstMessages()
	if len(first) != 3 {
		t.Fatalf("server saw %d connections, want initial bulk, active, recovery", len(first))
	}
	if s, ok := first[1].Msg.Options.StartTime(); !ok || s != 1000 {
		t.Errorf("active start time = %d (present %v), want the bulk's base-time 1000", s, ok)
	}
	s, okS := first[2].Msg.Options.StartTime()
	e, okE := first[2].Msg.Options.EndTime()
	if !okS || !okE || s != 1000 || e != 1002 {
		t.Errorf("recovery interval = %d to %d, want 1000 to 1002", s, e)
	}

	m := open(t, cfg)
	if r, _, _ := m.Get(addrKey("2001:db8:1::1")); r.State != requestor.StateEnded {
		t.Errorf("2001:db8:1::1 = %v from %v at %d, want still ended: the recovery's older state must not win", r.State, r.Source, r.BaseTime)
	}
	if _, ok, _ := m.Get(addrKey("2001:db8:1::3")); !ok {
		t.Error("2001:db8:1::3 from the recovery bulk is missing")
	}
	if cp, _ := m.Checkpoint(); cp.StartTime != 1010 {
		t.Errorf("checkpoint = %+v, want 1010", cp)
	}
}

// relayed returns the OPTION_CLIENT_DATA of an address binding that came
// through a relay on link, with its OPTION_LQ_RELAY_DATA.
func relayed(duid []byte, addr, link string, preferred, valid uint32) []byte {
	fw := []byte{byte(codec.MsgRelayForw), 0}
	l := netip.MustParseAddr(link).As16()
	peer := netip.MustParseAddr("fe80::1").As16()
	fw = append(append(fw, l[:]...), peer[:]...)
	data := append(peer[:], fw...)
	return requestortest.OptClientData(duid, requestortest.OptCLTTime(5), requestortest.OptIAAddr(addr, preferred, valid),
		requestortest.Opt(codec.OptLQRelayData, data))
}

// TestMirrorFullRecoveryEndsRemoved recovers from DataMissing with the
// interval query and a full one on the same connection. Afterwards the
// mirror ends the one binding that neither the bulk nor the active
// connection reported since the bulk started. It keeps the one that arrived
// on the active connection meanwhile, and the one whose relay data puts it
// on a link the recovery does not query.
func TestMirrorFullRecoveryEndsRemoved(t *testing.T) {
	recoveryOpen := make(chan struct{})
	activeSeen := make(chan struct{})
	second := make(chan requestortest.Received, 1)
	recovered := make(chan struct{})
	srv := newServer(t,
		func(c *requestortest.Conn, r requestortest.Received) { // initial bulk
			x := r.Msg.TransactionID
			c.Send(msg(codec.MsgLeasequeryReply, x, optBase(1000), binding(client1, "2001:db8:1::1", 5, 100, 200)),
				msg(codec.MsgLeasequeryData, x, optBase(1000), binding(client2, "2001:db8:1::2", 5, 100, 200)),
				msg(codec.MsgLeasequeryData, x, optBase(1000), relayed(client2, "2001:db8:9::5", "2001:db8:9::1", 100, 200)),
				msg(codec.MsgLeasequeryDone, x))
			c.WaitClosed(5 * time.Second)
		},
		func(c *requestortest.Conn, r requestortest.Received) { // active
			x := r.Msg.TransactionID
			c.Send(msg(codec.MsgLeasequeryReply, x, optBase(1001)),
				msg(codec.MsgLeasequeryData, x, optStatus(codec.StatusDataMissing, ""), optBase(1002)))
			<-recoveryOpen
			c.Send(msg(codec.MsgLeasequeryData, x, optBase(1003), binding(client1, "2001:db8:1::4", 0, 100, 200)))
			<-recovered
			c.Send(msg(codec.MsgLeasequeryData, x, optBase(1010)))
			c.WaitClosed(5 * time.Second)
		},
		func(c *requestortest.Conn, r requestortest.Received) { // recovery: interval, then full
			close(recoveryOpen)
			plain, ok := readPlain(t, c)
			if !ok {
				return
			}
			second <- plain
			c.Send(msg(codec.MsgLeasequeryReply, r.Msg.TransactionID, optBase(1002)))
			x := plain.Msg.TransactionID
			c.Send(msg(codec.MsgLeasequeryReply, x, optBase(1002), binding(client2, "2001:db8:1::2", 7, 100, 200)))
			<-activeSeen
			c.Send(msg(codec.MsgLeasequeryDone, x))
			c.WaitClosed(5 * time.Second)
		})
	cfg := config(t, t.TempDir(), srv.Addr())
	cfg.Recovery = []requestor.Query{linkQuery}
	var swept []mirror.Swept
	err := runMirror(t, cfg, func(ev requestor.Event) bool {
		switch e := ev.(type) {
		case requestor.Binding:
			if e.Addr == netip.MustParseAddr("2001:db8:1::4") {
				close(activeSeen)
			}
		case mirror.Swept:
			swept = append(swept, e)
		case requestor.RecoveryDone:
			if e.Source == requestor.SourceRecovery {
				if !e.Full || e.Err != nil {
					t.Errorf("recovery done = %+v, want a full one without error", e)
				}
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

	first := srv.firstMessages()
	if len(first) != 3 {
		t.Fatalf("server saw %d connections, want initial bulk, active, recovery", len(first))
	}
	s, okS := first[2].Msg.Options.StartTime()
	e, okE := first[2].Msg.Options.EndTime()
	if !okS || !okE || s != 1000 || e != 1002 {
		t.Errorf("first recovery query for %d (present %v) to %d (present %v), want 1000 to 1002", s, okS, e, okE)
	}
	plain := <-second
	_, okS = plain.Msg.Options.StartTime()
	_, okE = plain.Msg.Options.EndTime()
	if okS || okE {
		t.Errorf("second recovery query has start time %v, end time %v; want neither", okS, okE)
	}
	want := []mirror.Swept{{Source: requestor.SourceInitial}, {Source: requestor.SourceRecovery, Ended: 1}}
	if len(swept) != len(want) || swept[0] != want[0] || swept[1] != want[1] {
		t.Errorf("swept = %+v, want %+v", swept, want)
	}

	m := open(t, cfg)
	tests := []struct {
		addr   string
		state  requestor.State
		source requestor.Source
		base   uint32
		clt    uint32
	}{
		{"2001:db8:1::1", requestor.StateEnded, requestor.SourceRecovery, 1002, 7}, // in no reply: removed
		{"2001:db8:1::2", requestor.StateActive, requestor.SourceRecovery, 1002, 7},
		{"2001:db8:1::4", requestor.StateActive, requestor.SourceActive, 1003, 0},  // after the bulk's snapshot
		{"2001:db8:9::5", requestor.StateActive, requestor.SourceInitial, 1000, 5}, // on a link not queried
	}
	for _, tt := range tests {
		r, ok, err := m.Get(addrKey(tt.addr))
		if err != nil || !ok {
			t.Errorf("%s: found %v, %v", tt.addr, ok, err)
			continue
		}
		if r.State != tt.state || r.Source != tt.source || r.BaseTime != tt.base || r.CLTTime != tt.clt {
			t.Errorf("%s = %v from %v at base-time %d, CLT %d; want %v from %v at %d, CLT %d",
				tt.addr, r.State, r.Source, r.BaseTime, r.CLTTime, tt.state, tt.source, tt.base, tt.clt)
		}
	}
	if cp, _ := m.Checkpoint(); cp.StartTime != 1010 {
		t.Errorf("checkpoint = %+v, want 1010", cp)
	}
}

func TestMirrorRefusesOtherServer(t *testing.T) {
	dir := t.TempDir()
	m, err := mirror.Open(config(t, dir, "127.0.0.1:15470"))
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	if _, err := mirror.Open(config(t, dir, "127.0.0.2:15470")); !errors.Is(err, mirror.ErrOtherServer) {
		t.Errorf("Open with another server: %v, want ErrOtherServer", err)
	}
	m, err = mirror.Open(config(t, dir, "127.0.0.1:15470"))
	if err != nil {
		t.Fatalf("Open with the same server: %v", err)
	}
	m.Close()
}

func TestMirrorPrune(t *testing.T) {
	srv := newServer(t, func(c *requestortest.Conn, r requestortest.Received) {
		x := r.Msg.TransactionID
		c.Send(msg(codec.MsgLeasequeryReply, x, optBase(100), binding(client1, "2001:db8:1::1", 5, 100, 200)),
			msg(codec.MsgLeasequeryData, x, optBase(101), binding(client2, "2001:db8:1::2", 5, 0, 0)))
	})
	cfg := config(t, t.TempDir(), srv.Addr())
	runMirror(t, cfg, nil)
	m := open(t, cfg)
	if n, err := m.Prune(time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Errorf("Prune of an hour ago = %d, %v; want 0", n, err)
	}
	if n, err := m.Prune(time.Now().Add(time.Second)); err != nil || n != 1 {
		t.Errorf("Prune of now = %d, %v; want the one tombstone", n, err)
	}
	var left []string
	m.Scan(func(r *mirror.Record) error { left = append(left, r.Prefix.Addr().String()); return nil })
	if len(left) != 1 || left[0] != "2001:db8:1::1" {
		t.Errorf("records after pruning = %v, want [2001:db8:1::1]", left)
	}
}
