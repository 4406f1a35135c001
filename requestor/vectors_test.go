package requestor_test

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/requestor"
	"github.com/alqd/alqd/requestor/requestortest"
)

// recordedBulkQueries are the three pipelined queries of
// stream_bulk_c2s.hex, in order.
func recordedBulkQueries() []requestor.Query {
	relayA := []byte{0, 2, 0, 0, 0x7e, 0xd9, 'r', 'e', 'l', 'a', 'y', '-', 'a'}
	return []requestor.Query{
		{Type: codec.QueryByRelayID, RelayID: relayA, RelayData: true},
		{Type: codec.QueryByRemoteID, RemoteID: codec.RemoteID{EnterpriseNumber: 32473, ID: []byte("port-99")}, OmitBaseTime: true},
		{Type: codec.QueryByLinkAddress, Link: netip.IPv6Unspecified(), OmitBaseTime: true},
	}
}

// wantBinding is the part of a Binding that the recorded streams fix.
type wantBinding struct {
	query                    int
	clientID                 []byte
	typ                      requestor.BindingType
	addr                     string
	prefix                   string
	preferred, valid, clt    uint32
	catchUp                  bool
	relayPeer, link          string
	relayID, remoteID, iface string
}

var (
	client1    = []byte{0, 3, 0, 1, 0x00, 0x00, 0x5e, 0x00, 0x53, 0x01}
	client2    = []byte{0, 2, 0, 0, 0x7e, 0xd9, 'c', 'l', 'i', 'e', 'n', 't', '2'}
	relayADUID = string([]byte{0, 2, 0, 0, 0x7e, 0xd9, 'r', 'e', 'l', 'a', 'y', '-', 'a'})
)

func checkBinding(t *testing.T, got requestor.Binding, want wantBinding) {
	t.Helper()
	if got.Query != want.query {
		t.Errorf("query index = %d, want %d", got.Query, want.query)
	}
	if !bytes.Equal(got.ClientID, want.clientID) {
		t.Errorf("client DUID = %x, want %x", got.ClientID, want.clientID)
	}
	if got.Type != want.typ {
		t.Errorf("type = %v, want %v", got.Type, want.typ)
	}
	if want.addr != "" && got.Addr != netip.MustParseAddr(want.addr) {
		t.Errorf("address = %v, want %s", got.Addr, want.addr)
	}
	if want.prefix != "" && got.Prefix != netip.MustParsePrefix(want.prefix) {
		t.Errorf("prefix = %v, want %s", got.Prefix, want.prefix)
	}
	if got.PreferredLifetime != want.preferred || got.ValidLifetime != want.valid {
		t.Errorf("lifetimes = %d/%d, want %d/%d", got.PreferredLifetime, got.ValidLifetime, want.preferred, want.valid)
	}
	if !got.HasCLTTime || got.CLTTime != want.clt {
		t.Errorf("CLT_TIME = %d (present %v), want %d", got.CLTTime, got.HasCLTTime, want.clt)
	}
	if got.CatchUp != want.catchUp {
		t.Errorf("catch-up = %v, want %v", got.CatchUp, want.catchUp)
	}
	wantState := requestor.StateActive
	if want.valid == 0 {
		wantState = requestor.StateEnded
	}
	if got.State != wantState {
		t.Errorf("state = %v, want %v", got.State, wantState)
	}

	// Local times count from the base-time converted to local time.
	if !got.HasBaseTime || got.BaseTime != 820540800 {
		t.Errorf("base-time = %d (present %v), want 820540800", got.BaseTime, got.HasBaseTime)
	}
	if d := got.LastTransaction.Sub(got.LocalBase); d != -time.Duration(want.clt)*time.Second {
		t.Errorf("last transaction is %v from the base-time, want -%ds", d, want.clt)
	}
	if want.valid != 0 {
		if d := got.ValidUntil.Sub(got.LocalBase); d != time.Duration(want.valid)*time.Second {
			t.Errorf("valid until is %v after the base-time, want %ds", d, want.valid)
		}
	} else if !got.ValidUntil.IsZero() {
		t.Errorf("ended binding has valid-until %v, want zero", got.ValidUntil)
	}
	// The recorded base-times are far from today, so the skew estimate
	// carries them to about the receive time; scheduling delays between
	// messages only move the local base-time earlier.
	if d := got.LocalBase.Sub(got.Received); d > time.Second || d < -time.Minute {
		t.Errorf("local base-time is %v from the receive time, want within -1 min to 1 s", d)
	}

	// Relay data, decoded from the innermost RELAY-FORW.
	if got.HasRelayData != (want.relayPeer != "") {
		t.Fatalf("relay data present = %v, want %v", got.HasRelayData, want.relayPeer != "")
	}
	if want.relayPeer == "" {
		return
	}
	if got.RelayPeer != netip.MustParseAddr(want.relayPeer) {
		t.Errorf("relay peer = %v, want %s", got.RelayPeer, want.relayPeer)
	}
	if got.LinkAddress != netip.MustParseAddr(want.link) {
		t.Errorf("link-address = %v, want %s", got.LinkAddress, want.link)
	}
	if string(got.RelayID) != want.relayID {
		t.Errorf("relay-id = %x, want %x", got.RelayID, want.relayID)
	}
	if string(got.InterfaceID) != want.iface {
		t.Errorf("interface-id = %q, want %q", got.InterfaceID, want.iface)
	}
	if want.remoteID == "" {
		if got.HasRemoteID {
			t.Errorf("remote-id = %q, want none", got.RemoteID.ID)
		}
	} else if !got.HasRemoteID || got.RemoteID.EnterpriseNumber != 32473 || string(got.RemoteID.ID) != want.remoteID {
		t.Errorf("remote-id = %d/%q, want 32473/%q", got.RemoteID.EnterpriseNumber, got.RemoteID.ID, want.remoteID)
	}
	if len(got.RelayMessage) == 0 || got.RelayMessage[0] != byte(codec.MsgRelayForw) {
		t.Errorf("raw relay message = % x, want a RELAY-FORW", got.RelayMessage)
	}
}

// TestBulkVectorStream replays stream_bulk: three pipelined queries whose
// answers interleave, sent at once and then one octet per write.
func TestBulkVectorStream(t *testing.T) {
	c2s, s2c := vector(t, "stream_bulk_c2s"), vector(t, "stream_bulk_s2c")
	wantQueries, _ := requestortest.Frames(c2s)

	for _, chunk := range []int{0, 1, 7} {
		t.Run(map[int]string{0: "whole", 1: "byte_by_byte", 7: "seven_octets"}[chunk], func(t *testing.T) {
			sent := make(chan []requestortest.Received, 1)
			srv := requestortest.NewServer(t, func(c *requestortest.Conn) {
				got, err := c.Replay(c2s, s2c, chunk)
				if err != nil {
					t.Errorf("replay: %v", err)
				}
				sent <- got
				c.WaitClosed(5 * time.Second)
			})
			conn, err := requestor.Dial(testContext(t), testConfig(srv.Addr()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()

			var rec recorder
			err = conn.BulkPipelined(testContext(t), recordedBulkQueries(), rec.add)
			if code, ok := requestor.StatusCode(err); !ok || code != codec.StatusMalformedQuery {
				t.Fatalf("BulkPipelined error = %v, want the MalformedQuery of query 2", err)
			}

			// The queries match the recording except for transaction-ids.
			got := <-sent
			for i, r := range got {
				if want := requestortest.WithXID(wantQueries[i], r.Msg.TransactionID); !bytes.Equal(r.Raw, want) {
					t.Errorf("query %d =\n% x\nwant\n% x", i, r.Raw, want)
				}
			}

			bindings := rec.bindings()
			if len(bindings) != 3 {
				t.Fatalf("got %d bindings, want 3", len(bindings))
			}
			checkBinding(t, bindings[0], wantBinding{query: 0, clientID: client1, typ: requestor.TypeNA, addr: "2001:db8:1::10",
				preferred: 1740, valid: 3540, clt: 60, relayPeer: "2001:db8:1::1", link: "2001:db8:1::1",
				relayID: relayADUID, remoteID: "port-7", iface: "ge-0/0/1.100"})
			checkBinding(t, bindings[1], wantBinding{query: 0, clientID: client2, typ: requestor.TypeNA, addr: "2001:db8:1::11",
				preferred: 1795, valid: 3595, clt: 5, relayPeer: "2001:db8:1::1", link: "2001:db8:1::1",
				relayID: relayADUID, iface: "ge-0/0/2.100"})
			checkBinding(t, bindings[2], wantBinding{query: 0, clientID: client2, typ: requestor.TypePD, prefix: "2001:db8:100:1200::/56",
				preferred: 1795, valid: 3595, clt: 5, relayPeer: "2001:db8:1::1", link: "2001:db8:1::1",
				relayID: relayADUID, iface: "ge-0/0/2.100"})

			// One Done per query, in the order the server ended them.
			var dones []requestor.Done
			for _, ev := range rec.all() {
				if d, ok := ev.(requestor.Done); ok {
					dones = append(dones, d)
				}
			}
			want := []struct {
				query    int
				status   codec.StatusCode
				bindings int
			}{{1, codec.StatusSuccess, 0}, {0, codec.StatusSuccess, 3}, {2, codec.StatusMalformedQuery, 0}}
			if len(dones) != len(want) {
				t.Fatalf("got %d Done events, want %d", len(dones), len(want))
			}
			for i, w := range want {
				if dones[i].Query != w.query || dones[i].Status != w.status || dones[i].Bindings != w.bindings {
					t.Errorf("Done %d = query %d %v %d bindings, want query %d %v %d bindings",
						i, dones[i].Query, dones[i].Status, dones[i].Bindings, w.query, w.status, w.bindings)
				}
			}
			if dones[2].StatusMessage != "link-address must not be ::" {
				t.Errorf("status message = %q", dones[2].StatusMessage)
			}
			if !bytes.Equal(conn.ServerID(), requestortest.ServerDUID) {
				t.Errorf("server DUID = %x, want %x", conn.ServerID(), requestortest.ServerDUID)
			}
		})
	}
}

// TestActiveVectorStream replays stream_act: catch-up with a binding and a
// released binding, CatchUpComplete, a keepalive, and the QueryTerminated
// of a server shutdown.
func TestActiveVectorStream(t *testing.T) {
	c2s, s2c := vector(t, "stream_act_c2s"), vector(t, "stream_act_s2c")
	wantQuery, _ := requestortest.Frames(c2s)
	sent := make(chan []requestortest.Received, 1)
	srv := requestortest.NewServer(t, func(c *requestortest.Conn) {
		got, err := c.Replay(c2s, s2c, 1)
		if err != nil {
			t.Errorf("replay: %v", err)
		}
		sent <- got
	})
	conn, err := requestor.Dial(testContext(t), testConfig(srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	var rec recorder
	err = conn.Active(testContext(t), requestor.ActiveQuery{StartTime: 820537200, HasStartTime: true}, rec.add)
	if code, ok := requestor.StatusCode(err); !ok || code != codec.StatusQueryTerminated {
		t.Fatalf("Active error = %v, want QueryTerminated", err)
	}
	got := <-sent
	if want := requestortest.WithXID(wantQuery[0], got[0].Msg.TransactionID); !bytes.Equal(got[0].Raw, want) {
		t.Errorf("ACTIVELEASEQUERY =\n% x\nwant\n% x", got[0].Raw, want)
	}

	events := rec.all()
	if len(events) != 6 {
		t.Fatalf("got %d events, want 6: %v", len(events), events)
	}
	if a, ok := events[0].(requestor.Accepted); !ok || a.BaseTime != 820540800 || !bytes.Equal(a.ServerID, requestortest.ServerDUID) {
		t.Errorf("event 0 = %#v, want Accepted at base-time 820540800", events[0])
	}
	events = events[1:]
	b0, ok0 := events[0].(requestor.Binding)
	b1, ok1 := events[1].(requestor.Binding)
	if !ok0 || !ok1 {
		t.Fatalf("events 0 and 1 = %T, %T, want two Binding", events[0], events[1])
	}
	checkBinding(t, b0, wantBinding{clientID: client1, typ: requestor.TypeNA, addr: "2001:db8:1::10", preferred: 1740, valid: 3540, clt: 60, catchUp: true})
	checkBinding(t, b1, wantBinding{clientID: client2, typ: requestor.TypePD, prefix: "2001:db8:100:1200::/56", clt: 120, catchUp: true})
	if c, ok := events[2].(requestor.CatchUpComplete); !ok || c.BaseTime != 820540801 || c.CatchUp {
		t.Errorf("event 2 = %#v, want CatchUpComplete at base-time 820540801", events[2])
	}
	if k, ok := events[3].(requestor.Keepalive); !ok || k.BaseTime != 820540861 || k.HasStatus {
		t.Errorf("event 3 = %#v, want a keepalive at base-time 820540861", events[3])
	}
	if d, ok := events[4].(requestor.Done); !ok || d.Status != codec.StatusQueryTerminated || d.BaseTime != 820540862 || d.StatusMessage != "server shutting down" {
		t.Errorf("event 4 = %#v, want Done QueryTerminated", events[4])
	}
	if err := conn.Err(); err == nil {
		t.Error("connection still usable after the active query ended")
	}
}

// TestStartTLSVectorRefused replays stream_tls: the server is in insecure
// mode and refuses STARTTLS.
func TestStartTLSVectorRefused(t *testing.T) {
	c2s, s2c := vector(t, "stream_tls_c2s"), vector(t, "stream_tls_s2c")
	after := make(chan error, 1)
	srv := requestortest.NewServer(t, func(c *requestortest.Conn) {
		if _, err := c.Replay(c2s, s2c, 0); err != nil {
			t.Errorf("replay: %v", err)
		}
		_, err := c.ReadMessage() // no plaintext query may follow
		after <- err
	})
	cfg := testConfig(srv.Addr())
	cfg.TLS = requestortest.NewPKI(t).ClientConfig()
	conn, err := requestor.Dial(testContext(t), cfg)
	if err == nil {
		conn.Close()
		t.Fatal("Dial succeeded, want TLS refused")
	}
	var te *requestor.TLSError
	if !errors.As(err, &te) || te.Outcome != requestor.TLSRefused || !errors.Is(err, requestor.ErrTLSRefused) {
		t.Fatalf("Dial error = %v, want a TLSError with outcome refused", err)
	}
	if code, ok := requestor.StatusCode(err); !ok || code != codec.StatusTLSConnectionRefused {
		t.Errorf("status = %v, want TLSConnectionRefused", code)
	}
	if err := <-after; err == nil {
		t.Error("requestor sent a message after STARTTLS was refused")
	}
}

// TestVectorReplies answers queries with single recorded replies.
func TestVectorReplies(t *testing.T) {
	tests := []struct {
		name   string
		reply  string
		active bool
		status codec.StatusCode
	}{
		{"bulk no binding", "c06_bulk_reply_no_binding", false, codec.StatusSuccess},
		{"bulk malformed", "c08_bulk_reply_malformed", false, codec.StatusMalformedQuery},
		{"active end time malformed", "c18_active_reply_end_time_malformed", true, codec.StatusMalformedQuery},
		{"active not supported", "c20_reply_not_supported", true, codec.StatusNotSupported},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reply := vector(t, tc.reply)
			srv := requestortest.NewServer(t, func(c *requestortest.Conn) {
				r, err := c.ReadMessage()
				if err != nil {
					return
				}
				c.Send(requestortest.WithXID(reply, r.Msg.TransactionID))
				c.WaitClosed(5 * time.Second)
			})
			conn, err := requestor.Dial(testContext(t), testConfig(srv.Addr()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			var rec recorder
			if tc.active {
				err = conn.Active(testContext(t), requestor.ActiveQuery{}, rec.add)
			} else {
				err = conn.Bulk(testContext(t), requestor.Query{Type: codec.QueryByLinkAddress, Link: netip.MustParseAddr("2001:db8:1::1")}, rec.add)
			}
			if tc.status == codec.StatusSuccess {
				if err != nil {
					t.Fatalf("error = %v, want nil", err)
				}
			} else if code, ok := requestor.StatusCode(err); !ok || code != tc.status {
				t.Fatalf("error = %v, want status %v", err, tc.status)
			}
			events := rec.all()
			if len(events) != 1 {
				t.Fatalf("got %d events, want one Done", len(events))
			}
			if d, ok := events[0].(requestor.Done); !ok || d.Status != tc.status {
				t.Errorf("event = %#v, want Done %v", events[0], tc.status)
			}
			if !requestor.Permanent(err) && tc.status != codec.StatusSuccess {
				t.Errorf("Permanent(%v) = false, want true", err)
			}
		})
	}
}

// TestActiveVectorDataMissing replays c16: DataMissing in the REPLY, with
// live data following on the same connection.
func TestActiveVectorDataMissing(t *testing.T) {
	reply := vector(t, "c16_active_reply_data_missing")
	srv := requestortest.NewServer(t, func(c *requestortest.Conn) {
		r, ok := c.Expect(codec.MsgActiveLeasequery)
		if !ok {
			return
		}
		xid := r.Msg.TransactionID
		c.Send(requestortest.WithXID(reply, xid),
			msg(codec.MsgLeasequeryData, xid, requestortest.OptBaseTime(820540805), requestortest.Binding(client1, "2001:db8:1::10", 0, 1800, 3600)))
	})
	conn, err := requestor.Dial(testContext(t), testConfig(srv.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var rec recorder
	err = conn.Active(testContext(t), requestor.ActiveQuery{StartTime: 817948800, HasStartTime: true}, rec.add)
	if !errors.Is(err, requestor.ErrConnectionLost) {
		t.Fatalf("error = %v, want ErrConnectionLost", err)
	}
	events := rec.all()
	if len(events) != 3 {
		t.Fatalf("got %d events, want Accepted, DataMissing and a Binding", len(events))
	}
	if _, ok := events[0].(requestor.Accepted); !ok {
		t.Errorf("event 0 = %T, want Accepted", events[0])
	}
	events = events[1:]
	dm, ok := events[0].(requestor.DataMissing)
	if !ok || dm.StartTime != 817948800 || dm.BaseTime != 820540800 || dm.StatusMessage != "history starts later" {
		t.Errorf("event 0 = %#v, want DataMissing from 817948800 to 820540800", events[0])
	}
	if b, ok := events[1].(requestor.Binding); !ok || b.CatchUp {
		t.Errorf("event 1 = %#v, want a live Binding", events[1])
	}
}
