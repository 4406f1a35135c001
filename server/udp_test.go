package server

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/store"
)

// udpExchange sends pkt to the server's UDP port and returns the reply, or
// nil when none arrives within 300 ms.
func udpExchange(t testing.TB, srv *Server, pkt []byte) []byte {
	t.Helper()
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(srv.UDPAddr()))
	if err != nil {
		t.Fatalf("DialUDP: %v", err)
	}
	defer c.Close()
	if _, err := c.Write(pkt); err != nil {
		t.Fatalf("UDP write: %v", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	buf := make([]byte, 65536)
	n, err := c.Read(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

func udpFixture(t testing.TB, cfg Config) *Server {
	pd := binding("2001:db8:100::/56", duid(1), "2001:db8:1::1")
	pd.RelayPeer = netip.MustParseAddr("fe80::1")
	pd.RelayMessage = relayForw(t, "2001:db8:1::1", "fe80::c1")
	na := binding("2001:db8:1::10/128", duid(1), "2001:db8:1::1")
	other := binding("2001:db8:2::10/128", duid(1), "2001:db8:2::1")
	single := binding("2001:db8:2::20/128", duid(2), "2001:db8:2::1")
	released := binding("2001:db8:2::30/128", duid(3), "2001:db8:2::1")
	released.State = store.StateReleased
	st := openStore(t, nil)
	seed(t, st, pd, na, other, single, released)
	return startServer(t, st, cfg)
}

func decodeReply(t testing.TB, b []byte) *codec.Message {
	t.Helper()
	if b == nil {
		t.Fatal("no UDP reply")
	}
	m := &codec.Message{}
	if err := m.Decode(b); err != nil {
		t.Fatalf("decoding the UDP reply: %v", err)
	}
	if m.Type != codec.MsgLeasequeryReply {
		t.Fatalf("UDP reply type %v, want LEASEQUERY-REPLY", m.Type)
	}
	return m
}

func TestUDPQueries(t *testing.T) {
	srv := udpFixture(t, testConfig())

	t.Run("address in delegated prefix", func(t *testing.T) {
		q := byAddress("2001:db8:100:7::1")
		q.Options = append(q.Options, oro(codec.OptLQRelayData))
		m := decodeReply(t, udpExchange(t, srv, leasequery(0x0a, q)))
		if cid, _ := m.Options.ClientID(); string(cid) != string(requestorDUID) {
			t.Errorf("CLIENTID echo %x", cid)
		}
		if sid, _ := m.Options.ServerID(); string(sid) != string(testServerDUID) {
			t.Errorf("SERVERID %x", sid)
		}
		data, ok := m.Options.ClientData()
		if !ok {
			t.Fatal("no OPTION_CLIENT_DATA")
		}
		var cd codec.ClientData
		if err := cd.Decode(data); err != nil {
			t.Fatal(err)
		}
		if string(cd.ClientID) != string(duid(1)) || len(cd.Prefixes) != 1 || len(cd.Addrs) != 1 {
			t.Errorf("CLIENT_DATA %x prefixes %v addrs %v, want client 1 with its /56 and its address on the link", cd.ClientID, cd.Prefixes, cd.Addrs)
		}
		if cd.HasRelayData {
			t.Errorf("UDP carries OPTION_LQ_RELAY_DATA inside CLIENT_DATA; RFC 5007 puts it in the reply")
		}
		if !m.Options.Has(codec.OptLQRelayData) {
			t.Errorf("no OPTION_LQ_RELAY_DATA in the reply although the ORO asked for it")
		}
		if !cd.HasCLTTime || cd.CLTTime != 100 {
			t.Errorf("CLT_TIME %d, want 100", cd.CLTTime)
		}
	})

	t.Run("client on several links", func(t *testing.T) {
		m := decodeReply(t, udpExchange(t, srv, leasequery(0x0b, byClientID(duid(1), "::"))))
		data, ok := m.Options.Get(codec.OptLQClientLink)
		if !ok {
			t.Fatal("no OPTION_LQ_CLIENT_LINK")
		}
		var cl codec.LQClientLink
		if err := cl.Decode(data); err != nil {
			t.Fatal(err)
		}
		if len(cl.Links) != 2 || m.Options.Has(codec.OptClientData) {
			t.Errorf("links %v, CLIENT_DATA present %v; want two links and no CLIENT_DATA", cl.Links, m.Options.Has(codec.OptClientData))
		}
	})

	t.Run("client on one link", func(t *testing.T) {
		m := decodeReply(t, udpExchange(t, srv, leasequery(0x0c, byClientID(duid(1), "2001:db8:2::1"))))
		if !m.Options.Has(codec.OptClientData) || m.Options.Has(codec.OptLQClientLink) {
			t.Error("want CLIENT_DATA for a query with a link-address")
		}
	})

	t.Run("released binding not reported", func(t *testing.T) {
		m := decodeReply(t, udpExchange(t, srv, leasequery(0x0d, byAddress("2001:db8:2::30"))))
		if m.Options.Has(codec.OptClientData) || m.Options.Has(codec.OptStatusCode) {
			t.Errorf("released binding: options %v, want neither CLIENT_DATA nor status", m.Options)
		}
	})

	t.Run("bulk-only query type", func(t *testing.T) {
		m := decodeReply(t, udpExchange(t, srv, leasequery(0x0e, byLink("2001:db8:1::1"))))
		if got := status(t, m); got != codec.StatusNotAllowed {
			t.Errorf("status %v, want NotAllowed", got)
		}
	})

	t.Run("no CLIENTID is discarded", func(t *testing.T) {
		q := byAddress("2001:db8:1::10")
		lq, _ := q.AppendTo(nil)
		pkt := message(codec.MsgLeasequery, 0x0f, codec.Option{Code: codec.OptLQQuery, Data: lq[codec.OptionHeaderLen:]})
		if b := udpExchange(t, srv, pkt); b != nil {
			t.Errorf("got a reply to a LEASEQUERY without CLIENTID")
		}
	})

	t.Run("relayed", func(t *testing.T) {
		inner := leasequery(0x10, byAddress("2001:db8:1::10"))
		rm := codec.RelayMessage{Type: codec.MsgRelayForw, HopCount: 0,
			LinkAddress: netip.MustParseAddr("2001:db8:9::1"), PeerAddress: netip.MustParseAddr("::1")}
		rm.Options.Add(codec.OptInterfaceID, []byte("ge-0/0/1"))
		rm.Options.Add(codec.OptRelayMsg, inner)
		pkt, err := rm.AppendTo(nil)
		if err != nil {
			t.Fatal(err)
		}
		b := udpExchange(t, srv, pkt)
		if b == nil {
			t.Fatal("no reply to a relayed LEASEQUERY")
		}
		var repl codec.RelayMessage
		if err := repl.Decode(b); err != nil {
			t.Fatalf("decoding RELAY-REPL: %v", err)
		}
		if repl.Type != codec.MsgRelayRepl || repl.PeerAddress != rm.PeerAddress || repl.LinkAddress != rm.LinkAddress {
			t.Errorf("relay header %v link %v peer %v", repl.Type, repl.LinkAddress, repl.PeerAddress)
		}
		if iid, _ := repl.Options.InterfaceID(); string(iid) != "ge-0/0/1" {
			t.Errorf("interface-id %q not echoed", iid)
		}
		innerReply, _ := repl.InnerMessage()
		m := decodeReply(t, innerReply)
		if m.TransactionID != 0x10 || !m.Options.Has(codec.OptClientData) {
			t.Errorf("inner reply xid %#x CLIENT_DATA %v", m.TransactionID, m.Options.Has(codec.OptClientData))
		}
	})
}

func TestUDPNotAllowed(t *testing.T) {
	cfg := testConfig()
	cfg.Allow = []netip.Prefix{netip.MustParsePrefix("2001:db8:ffff::/48")}
	srv := udpFixture(t, cfg)
	m := decodeReply(t, udpExchange(t, srv, leasequery(0x20, byAddress("2001:db8:1::10"))))
	if got := status(t, m); got != codec.StatusNotAllowed {
		t.Errorf("status %v, want NotAllowed", got)
	}
	if m.Options.Has(codec.OptClientData) {
		t.Error("a requestor not allowed got binding data")
	}
}
