package mirror_test

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/requestor"
	"github.com/alqd/alqd/requestor/mirror"
	"github.com/alqd/alqd/requestor/requestortest"
)

// initialBulk returns the script of an initial bulk that reports one
// active address binding of client1 per address, all at base-time 1000.
func initialBulk(addrs ...string) func(c *requestortest.Conn, r requestortest.Received) {
	return func(c *requestortest.Conn, r requestortest.Received) {
		x := r.Msg.TransactionID
		var msgs [][]byte
		for i, a := range addrs {
			t := codec.MsgLeasequeryData
			if i == 0 {
				t = codec.MsgLeasequeryReply
			}
			msgs = append(msgs, msg(t, x, optBase(1000), binding(client1, a, 5, 100, 200)))
		}
		c.Send(append(msgs, msg(codec.MsgLeasequeryDone, x))...)
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
