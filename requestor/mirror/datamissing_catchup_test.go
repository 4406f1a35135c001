package mirror_test

import (
	"errors"
	"testing"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/requestor"
	"github.com/alqd/alqd/requestor/mirror"
	"github.com/alqd/alqd/requestor/requestortest"
)

// TestMirrorDataMissingMidCatchUp resumes a mirror without bulk queries
// from a server that sends catch-up data and then, in a LEASEQUERY-DATA
// that carries one more binding, DataMissing. The catch-up bindings and
// the one beside the DataMissing are current server state, so the mirror
// keeps them. The checkpoint must stay at the start time, and nothing sent
// after the DataMissing may be stored. The next run with a bulk query
// sends that start time again and recovers.
func TestMirrorDataMissingMidCatchUp(t *testing.T) {
	active, bulk := recoveryScripts(320, binding(client2, "2001:db8:1::5", 5, 100, 200))
	srv := newServer(t,
		fillTo160,
		func(c *requestortest.Conn, r requestortest.Received) { // catch-up, then DataMissing
			x := r.Msg.TransactionID
			c.Send(msg(codec.MsgLeasequeryReply, x, optBase(200), binding(client2, "2001:db8:1::2", 5, 100, 200)),
				msg(codec.MsgLeasequeryData, x, optBase(201), binding(client2, "2001:db8:1::3", 5, 100, 200)),
				msg(codec.MsgLeasequeryData, x, optStatus(codec.StatusDataMissing, "trimmed during catch-up"), optBase(300),
					binding(client2, "2001:db8:1::4", 5, 100, 200)),
				msg(codec.MsgLeasequeryData, x, optBase(310), binding(client2, "2001:db8:1::5", 5, 100, 200)))
		},
		active, bulk)
	cfg := config(t, t.TempDir(), srv.Addr())
	if err := runMirror(t, cfg, nil); !errors.Is(err, requestor.ErrConnectionLost) {
		t.Fatalf("first run: %v", err)
	}

	events := runToDataMissing(t, cfg, 160, 300)
	if n := len(events); n == 0 {
		t.Fatal("fn saw no event")
	} else if _, ok := events[n-1].(requestor.DataMissing); !ok {
		t.Errorf("last event passed to fn is %T, want requestor.DataMissing", events[n-1])
	}

	m, err := mirror.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cp, cpErr := m.Checkpoint()
	stored := map[string]bool{}
	for _, addr := range []string{"2001:db8:1::1", "2001:db8:1::2", "2001:db8:1::3", "2001:db8:1::4", "2001:db8:1::5"} {
		_, found, err := m.Get(addrKey(addr))
		if err != nil {
			t.Fatal(err)
		}
		stored[addr] = found
	}
	m.Close()
	if cpErr != nil || !cp.Valid || cp.StartTime != 160 {
		t.Errorf("checkpoint after DataMissing in catch-up = %+v, %v; want 160", cp, cpErr)
	}
	for addr, want := range map[string]bool{
		"2001:db8:1::1": true,  // from the first run
		"2001:db8:1::2": true,  // catch-up in the LEASEQUERY-REPLY
		"2001:db8:1::3": true,  // catch-up in a LEASEQUERY-DATA
		"2001:db8:1::4": true,  // in the message with the DataMissing
		"2001:db8:1::5": false, // live, after the DataMissing
	} {
		if stored[addr] != want {
			t.Errorf("%s stored = %v, want %v", addr, stored[addr], want)
		}
	}

	cfg.Recovery = []requestor.Query{linkQuery}
	cfg.WindowedRecovery = true
	err = runMirror(t, cfg, func(ev requestor.Event) bool {
		done, ok := ev.(requestor.RecoveryDone)
		return ok && done.Err == nil
	})
	if err != nil {
		t.Fatalf("run with a recovery query: %v", err)
	}
	if s, ok := srv.firstMessages()[2].Msg.Options.StartTime(); !ok || s != 160 {
		t.Errorf("run with a recovery query sent start time %d (present %v), want 160", s, ok)
	}
	m = open(t, cfg)
	if _, ok, err := m.Get(addrKey("2001:db8:1::5")); !ok || err != nil {
		t.Errorf("2001:db8:1::5 after the recovery: found %v, %v; want stored", ok, err)
	}
}
