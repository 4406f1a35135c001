package requestor_test

import (
	"errors"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/requestor"
	"github.com/alqd/alqd/requestor/requestortest"
)

// udpConfig returns a Config with a 20 ms LQ_TIMEOUT and 80 ms LQ_MAX_RT.
func udpConfig(addr string) requestor.Config {
	cfg := testConfig(addr)
	cfg.LQTimeout = 20 * time.Millisecond
	cfg.LQMaxRT = 80 * time.Millisecond
	return cfg
}

var addrQuery = requestor.Query{Type: codec.QueryByAddress, Address: netip.MustParseAddr("2001:db8:1::10")}

func TestUDPRetransmitsUntilAnswered(t *testing.T) {
	var seen atomic.Int32
	srv := requestortest.NewUDPServer(t, func(r requestortest.Received) [][]byte {
		if seen.Add(1) < 3 {
			return nil // the first two are lost
		}
		return [][]byte{msg(codec.MsgLeasequeryReply, r.Msg.TransactionID,
			requestortest.OptServerID(requestortest.ServerDUID), requestortest.OptClientID(requestorDUID),
			optBase(820540800), binding(client1, "2001:db8:1::10", 60, 1740, 3540))}
	})
	var rec recorder
	if err := requestor.QueryUDP(testContext(t), udpConfig(srv.Addr()), addrQuery, rec.add); err != nil {
		t.Fatal(err)
	}
	got := srv.Received()
	if len(got) != 3 {
		t.Fatalf("server received %d datagrams, want 3", len(got))
	}
	for i, r := range got {
		if r.Err != nil || r.Msg.Type != codec.MsgLeasequery {
			t.Errorf("datagram %d: %v %v, want a LEASEQUERY", i, r.Msg.Type, r.Err)
		}
		if r.Msg.TransactionID != got[0].Msg.TransactionID {
			t.Errorf("retransmission %d has transaction-id %#06x, want the first's %#06x", i, r.Msg.TransactionID, got[0].Msg.TransactionID)
		}
	}
	bs := rec.bindings()
	if len(bs) != 1 || bs[0].Addr != addrQuery.Address || bs[0].Source != requestor.SourceUDP {
		t.Errorf("bindings = %v, want the one UDP binding of %v", bs, addrQuery.Address)
	}
}

func TestUDPNoAnswerIsUnreachable(t *testing.T) {
	srv := requestortest.NewUDPServer(t, func(requestortest.Received) [][]byte { return nil })
	err := requestor.QueryUDP(testContext(t), udpConfig(srv.Addr()), addrQuery, func(requestor.Event) error { return nil })
	if !errors.Is(err, requestor.ErrUnreachable) {
		t.Fatalf("QueryUDP error = %v, want ErrUnreachable", err)
	}
	if n := len(srv.Received()); n != requestor.DefaultLQMaxRC {
		t.Errorf("server received %d datagrams, want LQ_MAX_RC = %d", n, requestor.DefaultLQMaxRC)
	}
}

func TestUDPIgnoresStrayDatagrams(t *testing.T) {
	srv := requestortest.NewUDPServer(t, func(r requestortest.Received) [][]byte {
		x := r.Msg.TransactionID
		return [][]byte{
			{1, 2, 3},                          // garbage
			msg(codec.MsgLeasequeryReply, x^1), // another transaction
			msg(codec.MsgAdvertise, x),         // another message type
			msg(codec.MsgLeasequeryReply, x, requestortest.OptClientID(client2)), // another requestor
			msg(codec.MsgLeasequeryReply, x, requestortest.OptClientID(requestorDUID), binding(client1, "2001:db8:1::10", 1, 2, 3)),
		}
	})
	var rec recorder
	if err := requestor.QueryUDP(testContext(t), udpConfig(srv.Addr()), addrQuery, rec.add); err != nil {
		t.Fatal(err)
	}
	if n := len(rec.bindings()); n != 1 {
		t.Errorf("got %d bindings, want 1 from the only valid reply", n)
	}
}

// TestUDPClientLinkRequery answers a QUERY_BY_CLIENTID without a link with
// the recorded OPTION_LQ_CLIENT_LINK of c25, then answers once per link.
func TestUDPClientLinkRequery(t *testing.T) {
	linkReply := vector(t, "c25_udp_reply_client_link")
	srv := requestortest.NewUDPServer(t, func(r requestortest.Received) [][]byte {
		var q codec.LQQuery
		if ok, err := r.Msg.Options.LQQuery(&q); !ok || err != nil {
			t.Errorf("query without OPTION_LQ_QUERY: %v", err)
			return nil
		}
		x := r.Msg.TransactionID
		switch q.LinkAddress {
		case netip.IPv6Unspecified():
			return [][]byte{requestortest.WithXID(linkReply, x)}
		case netip.MustParseAddr("2001:db8:1::1"):
			return [][]byte{msg(codec.MsgLeasequeryReply, x, binding(client1, "2001:db8:1::10", 1, 2, 3))}
		default:
			return [][]byte{msg(codec.MsgLeasequeryReply, x, binding(client1, "2001:db8:2::10", 1, 2, 3))}
		}
	})
	q := requestor.Query{Type: codec.QueryByClientID, ClientID: client1}
	var rec recorder
	if err := requestor.QueryUDP(testContext(t), udpConfig(srv.Addr()), q, rec.add); err != nil {
		t.Fatal(err)
	}
	if n := len(srv.Received()); n != 3 {
		t.Errorf("server received %d queries, want 3 (one, then one per link)", n)
	}
	bs := rec.bindings()
	if len(bs) != 2 || bs[0].Addr.String() != "2001:db8:1::10" || bs[1].Addr.String() != "2001:db8:2::10" {
		t.Errorf("bindings = %v, want one per link", bs)
	}
	events := rec.all()
	if d, ok := events[len(events)-1].(requestor.Done); !ok || d.Bindings != 2 {
		t.Errorf("last event = %#v, want Done with 2 bindings", events[len(events)-1])
	}
}

func TestUDPRejectsTCPOnlyQueries(t *testing.T) {
	for _, q := range []requestor.Query{
		{Type: codec.QueryByRelayID, RelayID: client1},
		{Type: codec.QueryByLinkAddress, Link: netip.MustParseAddr("2001:db8::1")},
		{Type: codec.QueryByAddress, Address: netip.MustParseAddr("2001:db8::1"), StartTime: 5, HasStartTime: true},
	} {
		err := requestor.QueryUDP(testContext(t), udpConfig("127.0.0.1:9"), q, func(requestor.Event) error { return nil })
		if !errors.Is(err, requestor.ErrInvalidQuery) {
			t.Errorf("QueryUDP(%v) error = %v, want ErrInvalidQuery", q.Type, err)
		}
	}
}

func TestUDPStatusError(t *testing.T) {
	srv := requestortest.NewUDPServer(t, func(r requestortest.Received) [][]byte {
		return [][]byte{msg(codec.MsgLeasequeryReply, r.Msg.TransactionID, optStatus(codec.StatusNotAllowed, "requestor not on the allow-list"))}
	})
	err := requestor.QueryUDP(testContext(t), udpConfig(srv.Addr()), addrQuery, func(requestor.Event) error { return nil })
	if code, ok := requestor.StatusCode(err); !ok || code != codec.StatusNotAllowed {
		t.Errorf("QueryUDP error = %v, want NotAllowed", err)
	}
}
