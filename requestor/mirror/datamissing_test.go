package mirror_test

import (
	"errors"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/requestor"
	"github.com/alqd/alqd/requestor/mirror"
	"github.com/alqd/alqd/requestor/requestortest"
)

// TestMirrorDataMissingWithoutRecovery checks that a mirror without bulk
// queries stops at DataMissing instead of going on without the missing
// changes: an empty mirror whose catch-up from start time 0 is refused,
// and a filled one whose history gap cannot be fetched. The checkpoint
// stays before the gap, so a run with a bulk query recovers it.
func TestMirrorDataMissingWithoutRecovery(t *testing.T) {
	dataMissingReply := func(base uint32) func(c *requestortest.Conn, r requestortest.Received) {
		return func(c *requestortest.Conn, r requestortest.Received) {
			x := r.Msg.TransactionID
			c.Send(msg(codec.MsgLeasequeryReply, x, optStatus(codec.StatusDataMissing, "trimmed"), optBase(base)),
				msg(codec.MsgLeasequeryData, x, optBase(base+1), binding(client2, "2001:db8:1::2", 5, 100, 200)))
		}
	}

	t.Run("empty mirror", func(t *testing.T) {
		srv := newServer(t, dataMissingReply(500))
		cfg := config(t, t.TempDir(), srv.Addr())
		events := runToDataMissing(t, cfg, 0, 500)
		if n := len(events); n == 0 {
			t.Error("fn saw no event, want the DataMissing")
		} else if _, ok := events[n-1].(requestor.DataMissing); !ok {
			t.Errorf("last event passed to fn is %T, want requestor.DataMissing", events[n-1])
		}

		m := open(t, cfg)
		if cp, err := m.Checkpoint(); err != nil || cp.Valid {
			t.Errorf("checkpoint = %+v, %v; want none, because nothing was fetched", cp, err)
		}
		if _, found, _ := m.Get(addrKey("2001:db8:1::2")); found {
			t.Error("the live binding after DataMissing was stored; the mirror must stop before it")
		}
	})

	t.Run("resumed mirror", func(t *testing.T) {
		active, bulk := recoveryScripts(310, binding(client1, "2001:db8:1::1", 0, 0, 0))
		srv := newServer(t, fillTo160, dataMissingReply(300), active, bulk)
		cfg := config(t, t.TempDir(), srv.Addr())
		if err := runMirror(t, cfg, nil); !errors.Is(err, requestor.ErrConnectionLost) {
			t.Fatalf("first run: %v", err)
		}

		runToDataMissing(t, cfg, 160, 300)
		m, err := mirror.Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		cp, err := m.Checkpoint()
		m.Close()
		if err != nil || !cp.Valid || cp.StartTime != 160 {
			t.Fatalf("checkpoint after the refused gap = %+v, %v; want 160", cp, err)
		}

		// With a bulk query the next run sends start time 160 again and recovers.
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
		if r, ok, _ := m.Get(addrKey("2001:db8:1::1")); !ok || r.State != requestor.StateEnded {
			t.Errorf("2001:db8:1::1 = %+v (found %v), want ended by the recovery bulk", r, ok)
		}
	})
}

// runToDataMissing runs the mirror of cfg, which must stop with a
// *DataMissingError for the interval from start to base. It returns the
// events the mirror passed to its callback.
func runToDataMissing(t *testing.T, cfg mirror.Config, start, base uint32) []requestor.Event {
	t.Helper()
	var events []requestor.Event
	err := runMirror(t, cfg, func(ev requestor.Event) bool {
		events = append(events, ev)
		return false
	})
	var dm *mirror.DataMissingError
	if !errors.As(err, &dm) {
		t.Fatalf("Run returned %v, want a *DataMissingError", err)
	}
	if dm.StartTime != start || dm.BaseTime != base {
		t.Errorf("DataMissingError = %+v, want start time %d and base-time %d", *dm, start, base)
	}
	return events
}

// fillTo160 is the script of a first connection that fills the mirror with
// 2001:db8:1::1, completes catch-up and leaves the checkpoint at 160.
func fillTo160(c *requestortest.Conn, r requestortest.Received) {
	x := r.Msg.TransactionID
	c.Send(msg(codec.MsgLeasequeryReply, x, optBase(100), binding(client1, "2001:db8:1::1", 5, 100, 200)),
		msg(codec.MsgLeasequeryData, x, optStatus(codec.StatusCatchUpComplete, ""), optBase(105)),
		msg(codec.MsgLeasequeryData, x, optBase(160)))
}

// recoveryScripts returns the scripts of a run with a bulk query: the
// active query, which gets DataMissing at base-time base and stays open
// until the requestor closes it, and its recovery bulk, which reports
// clientData.
func recoveryScripts(base uint32, clientData []byte) (active, bulk func(c *requestortest.Conn, r requestortest.Received)) {
	active = func(c *requestortest.Conn, r requestortest.Received) {
		c.Send(msg(codec.MsgLeasequeryReply, r.Msg.TransactionID, optStatus(codec.StatusDataMissing, ""), optBase(base)))
		c.WaitClosed(10 * time.Second)
	}
	bulk = func(c *requestortest.Conn, r requestortest.Received) {
		x := r.Msg.TransactionID
		c.Send(msg(codec.MsgLeasequeryReply, x, optBase(base+1), clientData), msg(codec.MsgLeasequeryDone, x))
	}
	return active, bulk
}
