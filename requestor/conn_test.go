package requestor_test

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/requestor"
	"github.com/alqd/alqd/requestor/requestortest"
)

// linkQuery is a QUERY_BY_LINK_ADDRESS for 2001:db8:1::1.
var linkQuery = requestor.Query{Type: codec.QueryByLinkAddress, Link: netip.MustParseAddr("2001:db8:1::1")}

// Shorthands for the option builders.
var (
	optBase   = requestortest.OptBaseTime
	optStatus = requestortest.OptStatus
	binding   = requestortest.Binding
	opt       = requestortest.Opt
)

// runBulk runs one bulk query against a server whose connection runs
// script with the query's transaction-id, and returns the events and the
// error.
func runBulk(t *testing.T, cfg func(*requestor.Config), script func(c *requestortest.Conn, xid uint32)) ([]requestor.Event, error) {
	t.Helper()
	srv := requestortest.NewServer(t, func(c *requestortest.Conn) {
		r, ok := c.Expect(codec.MsgLeasequery)
		if !ok {
			return
		}
		script(c, r.Msg.TransactionID)
	})
	config := testConfig(srv.Addr())
	if cfg != nil {
		cfg(&config)
	}
	conn, err := requestor.Dial(testContext(t), config)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var rec recorder
	err = conn.Bulk(testContext(t), linkQuery, rec.add)
	return rec.all(), err
}

func TestTransactionIDsUniqueOnConnection(t *testing.T) {
	xids := make(chan uint32, 100)
	srv := requestortest.NewServer(t, func(c *requestortest.Conn) {
		for {
			r, err := c.ReadMessage()
			if err != nil {
				return
			}
			xids <- r.Msg.TransactionID
			c.Send(msg(codec.MsgLeasequeryReply, r.Msg.TransactionID))
		}
	})
	conn, err := requestor.Dial(testContext(t), testConfig(srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	// Five pipelined queries, then three one after the other.
	nop := func(requestor.Event) error { return nil }
	if err := conn.BulkPipelined(testContext(t), []requestor.Query{linkQuery, linkQuery, linkQuery, linkQuery, linkQuery}, nop); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := conn.Bulk(testContext(t), linkQuery, nop); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[uint32]bool{}
	for range 8 {
		x := <-xids
		if seen[x] {
			t.Errorf("transaction-id %#06x used twice on one connection", x)
		}
		if x >= 1<<24 {
			t.Errorf("transaction-id %#x does not fit in 24 bits", x)
		}
		seen[x] = true
	}
}

func TestBulkInterleavedAnswers(t *testing.T) {
	srv := requestortest.NewServer(t, func(c *requestortest.Conn) {
		r1, ok1 := c.Expect(codec.MsgLeasequery)
		r2, ok2 := c.Expect(codec.MsgLeasequery)
		if !ok1 || !ok2 {
			return
		}
		x1, x2 := r1.Msg.TransactionID, r2.Msg.TransactionID
		// The second query's answer starts first, and the two interleave.
		c.Send(
			msg(codec.MsgLeasequeryReply, x2, optBase(1000), binding(client2, "2001:db8:2::1", 1, 100, 200)),
			msg(codec.MsgLeasequeryReply, x1, optBase(1000), binding(client1, "2001:db8:1::1", 1, 100, 200)),
			msg(codec.MsgLeasequeryData, x2, optBase(1001), binding(client2, "2001:db8:2::2", 1, 100, 200)),
			msg(codec.MsgLeasequeryDone, x2),
			msg(codec.MsgLeasequeryData, x1, optBase(1001), binding(client1, "2001:db8:1::2", 1, 100, 200)),
			msg(codec.MsgLeasequeryDone, x1),
		)
		c.WaitClosed(5 * time.Second)
	})
	conn, err := requestor.Dial(testContext(t), testConfig(srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var rec recorder
	if err := conn.BulkPipelined(testContext(t), []requestor.Query{linkQuery, linkQuery}, rec.add); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range rec.all() {
		switch e := ev.(type) {
		case requestor.Binding:
			got = append(got, string(rune('0'+e.Query))+" "+e.Addr.String())
		case requestor.Done:
			got = append(got, string(rune('0'+e.Query))+" done")
		}
	}
	want := []string{"1 2001:db8:2::1", "0 2001:db8:1::1", "1 2001:db8:2::2", "1 done", "0 2001:db8:1::2", "0 done"}
	if !slices.Equal(got, want) {
		t.Errorf("events = %q, want %q", got, want)
	}
}

// TestBulkServerMisbehaviour checks that every broken answer ends the query
// with the right error class and leaves the connection unusable.
func TestBulkServerMisbehaviour(t *testing.T) {
	reply := func(xid uint32) []byte {
		return msg(codec.MsgLeasequeryReply, xid, optBase(1000), binding(client1, "2001:db8:1::1", 1, 100, 200))
	}
	tests := []struct {
		name   string
		script func(c *requestortest.Conn, xid uint32)
		want   error
	}{
		{"close mid-message", func(c *requestortest.Conn, xid uint32) {
			frame, _ := codec.AppendFrame(nil, reply(xid))
			c.Write(frame[:len(frame)/2])
		}, requestor.ErrConnectionLost},
		{"close mid msg-size", func(c *requestortest.Conn, xid uint32) {
			frame, _ := codec.AppendFrame(nil, reply(xid))
			c.Write(append(frame, 0x00))
		}, requestor.ErrConnectionLost},
		{"close before done", func(c *requestortest.Conn, xid uint32) {
			c.Send(reply(xid))
		}, requestor.ErrConnectionLost},
		{"stall after reply", func(c *requestortest.Conn, xid uint32) {
			c.Send(reply(xid))
			c.WaitClosed(5 * time.Second)
		}, requestor.ErrReceiveTimeout},
		{"data before reply", func(c *requestortest.Conn, xid uint32) {
			c.Send(msg(codec.MsgLeasequeryData, xid, binding(client1, "2001:db8:1::1", 1, 100, 200)))
			c.WaitClosed(5 * time.Second)
		}, requestor.ErrProtocol},
		{"done before reply", func(c *requestortest.Conn, xid uint32) {
			c.Send(msg(codec.MsgLeasequeryDone, xid))
			c.WaitClosed(5 * time.Second)
		}, requestor.ErrProtocol},
		{"second reply", func(c *requestortest.Conn, xid uint32) {
			c.Send(reply(xid), reply(xid))
			c.WaitClosed(5 * time.Second)
		}, requestor.ErrProtocol},
		{"unknown transaction-id", func(c *requestortest.Conn, xid uint32) {
			c.Send(reply(xid ^ 0x800000))
			c.WaitClosed(5 * time.Second)
		}, requestor.ErrProtocol},
		{"wrong message type", func(c *requestortest.Conn, xid uint32) {
			c.Send(msg(codec.MsgAdvertise, xid))
			c.WaitClosed(5 * time.Second)
		}, requestor.ErrProtocol},
		{"undecodable message", func(c *requestortest.Conn, xid uint32) {
			c.Send(append(msg(codec.MsgLeasequeryReply, xid), 0, 1, 0, 9, 0))
			c.WaitClosed(5 * time.Second)
		}, codec.ErrOptionOverrun},
		{"undecodable client data", func(c *requestortest.Conn, xid uint32) {
			c.Send(msg(codec.MsgLeasequeryReply, xid, opt(codec.OptClientData, []byte{0, 5, 0, 3, 1, 2, 3})))
			c.WaitClosed(5 * time.Second)
		}, requestor.ErrProtocol},
		{"msg-size zero", func(c *requestortest.Conn, xid uint32) {
			c.Write([]byte{0, 0})
			c.WaitClosed(5 * time.Second)
		}, codec.ErrFrameEmpty},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := requestortest.NewServer(t, func(c *requestortest.Conn) {
				r, ok := c.Expect(codec.MsgLeasequery)
				if ok {
					tc.script(c, r.Msg.TransactionID)
				}
			})
			cfg := testConfig(srv.Addr())
			cfg.BulkDataTimeout = 100 * time.Millisecond
			conn, err := requestor.Dial(testContext(t), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			err = conn.Bulk(testContext(t), linkQuery, func(requestor.Event) error { return nil })
			if !errors.Is(err, tc.want) {
				t.Fatalf("Bulk error = %v, want %v", err, tc.want)
			}
			if !errors.Is(conn.Err(), tc.want) {
				t.Errorf("sticky error = %v, want %v", conn.Err(), tc.want)
			}
			if again := conn.Bulk(testContext(t), linkQuery, func(requestor.Event) error { return nil }); !errors.Is(again, tc.want) {
				t.Errorf("second Bulk error = %v, want the sticky %v", again, tc.want)
			}
		})
	}
}

// TestBulkTolerance checks that answers real servers send, although the
// RFCs word them differently, are accepted.
func TestBulkTolerance(t *testing.T) {
	tests := []struct {
		name     string
		answer   func(xid uint32) [][]byte
		bindings int
		check    func(t *testing.T, bs []requestor.Binding)
	}{
		{"no match with Success status", func(xid uint32) [][]byte {
			return [][]byte{msg(codec.MsgLeasequeryReply, xid, requestortest.OptServerID(requestortest.ServerDUID), optStatus(codec.StatusSuccess, "no active leases"))}
		}, 0, nil},
		{"no match without status", func(xid uint32) [][]byte {
			return [][]byte{msg(codec.MsgLeasequeryReply, xid)}
		}, 0, nil},
		{"status in data", func(xid uint32) [][]byte {
			return [][]byte{
				msg(codec.MsgLeasequeryReply, xid, binding(client1, "2001:db8:1::1", 1, 100, 200)),
				msg(codec.MsgLeasequeryData, xid, optStatus(codec.StatusSuccess, ""), binding(client2, "2001:db8:1::2", 1, 100, 200)),
				msg(codec.MsgLeasequeryData, xid, optStatus(codec.StatusSuccess, "nothing here")),
				msg(codec.MsgLeasequeryDone, xid, optStatus(codec.StatusSuccess, ""), optBase(5)),
			}
		}, 2, nil},
		{"several bindings in one client data", func(xid uint32) [][]byte {
			cd := requestortest.OptClientData(client1, requestortest.OptCLTTime(3),
				requestortest.OptIAAddr("2001:db8:1::1", 100, 200),
				requestortest.OptIAAddr("2001:db8:1::2", 0, 200),
				requestortest.OptIAPrefix("2001:db8:ff::/48", requestor.Infinity, requestor.Infinity))
			return [][]byte{msg(codec.MsgLeasequeryReply, xid, optBase(1000), cd), msg(codec.MsgLeasequeryDone, xid)}
		}, 3, func(t *testing.T, bs []requestor.Binding) {
			if bs[1].PreferredUntil != bs[1].LocalBase {
				t.Errorf("deprecated address preferred-until = %v, want the base-time %v", bs[1].PreferredUntil, bs[1].LocalBase)
			}
			if !bs[2].ValidUntil.IsZero() || !bs[2].PreferredUntil.IsZero() {
				t.Errorf("infinite prefix ends at %v/%v, want zero times", bs[2].PreferredUntil, bs[2].ValidUntil)
			}
			if bs[2].Type != requestor.TypePD || bs[2].State != requestor.StateActive {
				t.Errorf("prefix binding = %v %v, want active IA_PD", bs[2].Type, bs[2].State)
			}
		}},
		{"IA containers in client data", func(xid uint32) [][]byte {
			iana := opt(codec.OptIANA, append([]byte{0, 0, 0, 7, 0, 0, 0, 50, 0, 0, 0, 80}, requestortest.OptIAAddr("2001:db8:1::7", 100, 200)...))
			iapd := opt(codec.OptIAPD, append([]byte{0, 0, 0, 9, 0, 0, 0, 50, 0, 0, 0, 80}, requestortest.OptIAPrefix("2001:db8:aa::/56", 100, 200)...))
			iata := opt(codec.OptIATA, append([]byte{0, 0, 0, 11}, requestortest.OptIAAddr("2001:db8:1::b", 100, 200)...))
			cd := requestortest.OptClientData(client1, iana, iapd, iata)
			return [][]byte{msg(codec.MsgLeasequeryReply, xid, cd), msg(codec.MsgLeasequeryDone, xid)}
		}, 3, func(t *testing.T, bs []requestor.Binding) {
			want := []struct {
				typ  requestor.BindingType
				iaid uint32
			}{{requestor.TypeNA, 7}, {requestor.TypePD, 9}, {requestor.TypeTA, 11}}
			for i, w := range want {
				if bs[i].Type != w.typ || !bs[i].HasIAID || bs[i].IAID != w.iaid {
					t.Errorf("binding %d = %v IAID %d (present %v), want %v IAID %d", i, bs[i].Type, bs[i].IAID, bs[i].HasIAID, w.typ, w.iaid)
				}
			}
		}},
		{"unknown options", func(xid uint32) [][]byte {
			cd := requestortest.OptClientData(client1, opt(999, []byte("x")), requestortest.OptIAAddr("2001:db8:1::1", 1, 2))
			return [][]byte{msg(codec.MsgLeasequeryReply, xid, opt(4242, []byte{1, 2}), cd), msg(codec.MsgLeasequeryDone, xid, opt(4243, nil))}
		}, 1, func(t *testing.T, bs []requestor.Binding) {
			if len(bs[0].Options) != 1 || bs[0].Options[0].Code != 999 || string(bs[0].Options[0].Data) != "x" {
				t.Errorf("unknown client-data options = %v, want option 999 \"x\"", bs[0].Options)
			}
		}},
		{"ended binding", func(xid uint32) [][]byte {
			return [][]byte{msg(codec.MsgLeasequeryReply, xid, binding(client1, "2001:db8:1::1", 9, 0, 0)), msg(codec.MsgLeasequeryDone, xid)}
		}, 1, func(t *testing.T, bs []requestor.Binding) {
			if !bs[0].Ended() || !bs[0].ValidUntil.IsZero() {
				t.Errorf("binding with lifetimes 0/0: ended %v, valid until %v; want ended, zero", bs[0].Ended(), bs[0].ValidUntil)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			events, err := runBulk(t, nil, func(c *requestortest.Conn, xid uint32) {
				c.Send(tc.answer(xid)...)
				c.WaitClosed(5 * time.Second)
			})
			if err != nil {
				t.Fatalf("Bulk error = %v", err)
			}
			var bs []requestor.Binding
			for _, ev := range events {
				if b, ok := ev.(requestor.Binding); ok {
					bs = append(bs, b)
				}
			}
			if len(bs) != tc.bindings {
				t.Fatalf("got %d bindings, want %d", len(bs), tc.bindings)
			}
			if d, ok := events[len(events)-1].(requestor.Done); !ok || d.Err() != nil || d.Bindings != tc.bindings {
				t.Errorf("last event = %#v, want Done with Success and %d bindings", events[len(events)-1], tc.bindings)
			}
			if tc.check != nil {
				tc.check(t, bs)
			}
		})
	}
}

func TestBulkLateDoneIgnored(t *testing.T) {
	srv := requestortest.NewServer(t, func(c *requestortest.Conn) {
		r1, ok := c.Expect(codec.MsgLeasequery)
		if !ok {
			return
		}
		// A REPLY without a binding completes the query; a DONE after it is
		// redundant but harmless.
		c.Send(msg(codec.MsgLeasequeryReply, r1.Msg.TransactionID))
		r2, ok := c.Expect(codec.MsgLeasequery)
		if !ok {
			return
		}
		c.Send(msg(codec.MsgLeasequeryDone, r1.Msg.TransactionID), msg(codec.MsgLeasequeryReply, r2.Msg.TransactionID))
		c.WaitClosed(5 * time.Second)
	})
	conn, err := requestor.Dial(testContext(t), testConfig(srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	nop := func(requestor.Event) error { return nil }
	if err := conn.Bulk(testContext(t), linkQuery, nop); err != nil {
		t.Fatal(err)
	}
	if err := conn.Bulk(testContext(t), linkQuery, nop); err != nil {
		t.Fatalf("second query after a late DONE: %v", err)
	}
}

func TestBulkCallbackErrorStops(t *testing.T) {
	stop := errors.New("enough")
	srv := requestortest.NewServer(t, func(c *requestortest.Conn) {
		r, ok := c.Expect(codec.MsgLeasequery)
		if !ok {
			return
		}
		x := r.Msg.TransactionID
		c.Send(msg(codec.MsgLeasequeryReply, x, binding(client1, "2001:db8:1::1", 1, 2, 3)),
			msg(codec.MsgLeasequeryData, x, binding(client2, "2001:db8:1::2", 1, 2, 3)))
		c.WaitClosed(5 * time.Second)
	})
	conn, err := requestor.Dial(testContext(t), testConfig(srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	calls := 0
	err = conn.Bulk(testContext(t), linkQuery, func(requestor.Event) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("Bulk = %v after %d calls, want the callback's error after 1", err, calls)
	}
	if !errors.Is(conn.Err(), requestor.ErrClosed) {
		t.Errorf("connection error = %v, want ErrClosed", conn.Err())
	}
}

func TestBulkContextCancel(t *testing.T) {
	srv := requestortest.NewServer(t, func(c *requestortest.Conn) {
		c.Expect(codec.MsgLeasequery)
		c.WaitClosed(10 * time.Second)
	})
	conn, err := requestor.Dial(testContext(t), testConfig(srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(testContext(t))
	time.AfterFunc(50*time.Millisecond, cancel)
	if err := conn.Bulk(ctx, linkQuery, func(requestor.Event) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("Bulk error = %v, want context.Canceled", err)
	}
}

// TestActiveCancelBetweenReads cancels an active query between two reads,
// after the context's watcher has already moved the deadline into the
// past: the next read must not set a new deadline and wait out the
// receive timeout.
func TestActiveCancelBetweenReads(t *testing.T) {
	srv := requestortest.NewServer(t, func(c *requestortest.Conn) {
		if r, ok := c.Expect(codec.MsgActiveLeasequery); ok {
			c.Send(msg(codec.MsgLeasequeryReply, r.Msg.TransactionID, optBase(10)))
			c.WaitClosed(20 * time.Second)
		}
	})
	cfg := testConfig(srv.Addr())
	cfg.ReceiveTimeout = time.Hour
	conn, err := requestor.Dial(testContext(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- conn.Active(ctx, requestor.ActiveQuery{}, func(ev requestor.Event) error {
			if _, ok := ev.(requestor.Accepted); ok {
				cancel()
				// Let the watcher set its deadline before the next read.
				time.Sleep(20 * time.Millisecond)
			}
			return nil
		})
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Active error = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Active still reading 10 s after its context was cancelled")
	}
}

func TestDialUnreachable(t *testing.T) {
	_, err := requestor.Dial(testContext(t), testConfig(requestortest.ClosedPort(t)))
	if !errors.Is(err, requestor.ErrUnreachable) {
		t.Errorf("Dial error = %v, want ErrUnreachable", err)
	}
	if requestor.Permanent(err) {
		t.Error("an unreachable server counts as permanent, want retryable")
	}
}

func TestActiveServerMisbehaviour(t *testing.T) {
	tests := []struct {
		name   string
		script func(c *requestortest.Conn, xid uint32)
		want   error
	}{
		{"silent after reply", func(c *requestortest.Conn, xid uint32) {
			c.Send(msg(codec.MsgLeasequeryReply, xid, optBase(10)))
			c.WaitClosed(5 * time.Second)
		}, requestor.ErrReceiveTimeout},
		{"silent from the start", func(c *requestortest.Conn, xid uint32) {
			c.WaitClosed(5 * time.Second)
		}, requestor.ErrReceiveTimeout},
		{"data before reply", func(c *requestortest.Conn, xid uint32) {
			c.Send(msg(codec.MsgLeasequeryData, xid, optBase(10)))
			c.WaitClosed(5 * time.Second)
		}, requestor.ErrProtocol},
		{"second reply", func(c *requestortest.Conn, xid uint32) {
			c.Send(msg(codec.MsgLeasequeryReply, xid), msg(codec.MsgLeasequeryReply, xid))
			c.WaitClosed(5 * time.Second)
		}, requestor.ErrProtocol},
		{"other transaction-id", func(c *requestortest.Conn, xid uint32) {
			c.Send(msg(codec.MsgLeasequeryReply, xid), msg(codec.MsgLeasequeryData, xid+1))
			c.WaitClosed(5 * time.Second)
		}, requestor.ErrProtocol},
		{"close mid-message", func(c *requestortest.Conn, xid uint32) {
			frame, _ := codec.AppendFrame(nil, msg(codec.MsgLeasequeryReply, xid, optBase(10)))
			c.Write(frame[:5])
		}, io.ErrUnexpectedEOF},
		{"done without status", func(c *requestortest.Conn, xid uint32) {
			c.Send(msg(codec.MsgLeasequeryReply, xid), msg(codec.MsgLeasequeryDone, xid))
			c.WaitClosed(5 * time.Second)
		}, requestor.ErrConnectionLost},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := requestortest.NewServer(t, func(c *requestortest.Conn) {
				if r, ok := c.Expect(codec.MsgActiveLeasequery); ok {
					tc.script(c, r.Msg.TransactionID)
				}
			})
			cfg := testConfig(srv.Addr())
			cfg.ReceiveTimeout = 100 * time.Millisecond
			conn, err := requestor.Dial(testContext(t), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			err = conn.Active(testContext(t), requestor.ActiveQuery{}, func(requestor.Event) error { return nil })
			if !errors.Is(err, tc.want) {
				t.Errorf("Active error = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestActiveDataMissingMidCatchUp has the server lose its history while it
// sends catch-up data.
func TestActiveDataMissingMidCatchUp(t *testing.T) {
	srv := requestortest.NewServer(t, func(c *requestortest.Conn) {
		r, ok := c.Expect(codec.MsgActiveLeasequery)
		if !ok {
			return
		}
		x := r.Msg.TransactionID
		c.Send(
			msg(codec.MsgLeasequeryReply, x, optBase(2000), binding(client1, "2001:db8:1::1", 5, 100, 200)),
			msg(codec.MsgLeasequeryData, x, optBase(2001), binding(client2, "2001:db8:1::2", 5, 100, 200)),
			msg(codec.MsgLeasequeryData, x, optStatus(codec.StatusDataMissing, "history trimmed"), optBase(2002)),
			msg(codec.MsgLeasequeryData, x, optBase(2003), binding(client1, "2001:db8:1::3", 0, 100, 200)),
			msg(codec.MsgLeasequeryData, x, optStatus(codec.StatusSuccess, "idle"), optBase(2060)),
		)
	})
	conn, err := requestor.Dial(testContext(t), testConfig(srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var rec recorder
	conn.Active(testContext(t), requestor.ActiveQuery{StartTime: 1500, HasStartTime: true}, rec.add)

	events := rec.all()
	type kind struct {
		name    string
		catchUp bool
	}
	var got []kind
	for _, ev := range events {
		switch e := ev.(type) {
		case requestor.Binding:
			got = append(got, kind{"binding", e.CatchUp})
		case requestor.DataMissing:
			got = append(got, kind{"missing", e.CatchUp})
			if e.StartTime != 1500 || e.BaseTime != 2002 {
				t.Errorf("DataMissing covers %d to %d, want 1500 to 2002", e.StartTime, e.BaseTime)
			}
		case requestor.Keepalive:
			got = append(got, kind{"keepalive", e.CatchUp})
			if !e.HasStatus || e.Status != codec.StatusSuccess {
				t.Errorf("keepalive status = %v (present %v), want Success", e.Status, e.HasStatus)
			}
		}
	}
	want := []kind{{"binding", true}, {"binding", true}, {"missing", false}, {"binding", false}, {"keepalive", false}}
	if !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
}

// TestBulkSendTimeout pipelines far more queries than the socket buffers
// hold to a server that never reads them, so the write blocks until
// BulkDataTimeout (RFC 7653 section 8.3).
func TestBulkSendTimeout(t *testing.T) {
	done := make(chan struct{})
	srv := requestortest.NewServer(t, func(c *requestortest.Conn) {
		c.SetReadBuffer(4096)
		<-done // never reads
	})
	t.Cleanup(func() { close(done) }) // runs before the server's Close
	cfg := testConfig(srv.Addr())
	cfg.BulkDataTimeout = 200 * time.Millisecond
	conn, err := requestor.Dial(testContext(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// About 8 MB of queries: twice the usual 4 MB maximum of tcp_wmem, with
	// the server's receive buffer shrunk to 4 KiB.
	queries := make([]requestor.Query, 150_000)
	for i := range queries {
		queries[i] = linkQuery
	}
	err = conn.BulkPipelined(testContext(t), queries, func(requestor.Event) error { return nil })
	if !errors.Is(err, requestor.ErrSendTimeout) {
		t.Errorf("BulkPipelined error = %v, want ErrSendTimeout", err)
	}
}
