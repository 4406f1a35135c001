package alqdtest

import (
	"bytes"
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/requestor"
	"github.com/alqd/alqd/requestor/requestortest"
	"github.com/alqd/alqd/server"
)

// TestAlqdUDPRelayData queries alqd over UDP for a relayed client with relay
// data requested. RFC 5007 places OPTION_LQ_RELAY_DATA next to
// OPTION_CLIENT_DATA in the LEASEQUERY-REPLY, and the binding must carry
// the relay fields decoded from it, as a bulk answer's do.
func TestAlqdUDPRelayData(t *testing.T) {
	rm := codec.RelayMessage{
		Type:        codec.MsgRelayForw,
		LinkAddress: linkA,
		PeerAddress: netip.MustParseAddr("fe80::c1"),
	}
	rm.Options.Add(codec.OptInterfaceID, []byte("port-7"))
	rm.Options.Add(codec.OptRelayID, relayA)
	rm.Options.Add(codec.OptRemoteID, remote7)
	relayMessage, err := rm.AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	b := bind("2001:db8:1::77/128", requestortest.DUIDLL(9), linkA, relayA, remote7)
	b.RelayPeer = netip.MustParseAddr("2001:db8:1::2")
	b.RelayMessage = relayMessage

	clock := func() time.Time { return now }
	st := openStore(t, clock)
	if _, err := st.Apply(context.Background(), append(fixtures, b), nil); err != nil {
		t.Fatal(err)
	}
	srv, _ := startServer(t, st, server.Config{}, clock)

	for _, relayData := range []bool{true, false} {
		var got []requestor.Binding
		q := requestor.Query{Type: codec.QueryByAddress, Address: b.Prefix.Addr(), RelayData: relayData}
		err := requestor.QueryUDP(testContext(t), config(srv.UDPAddr().String()), q, func(ev requestor.Event) error {
			if b, ok := ev.(requestor.Binding); ok {
				got = append(got, b)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 {
			t.Fatalf("relay data %v: %d bindings, want 1", relayData, len(got))
		}
		r := got[0]
		if !relayData {
			if r.HasRelayData {
				t.Errorf("binding has relay data although the query did not ask for it")
			}
			continue
		}
		if !r.HasRelayData || r.RelayPeer != b.RelayPeer || !bytes.Equal(r.RelayMessage, relayMessage) {
			t.Fatalf("relay data = %v, peer %v, message %x; want peer %v and the stored message", r.HasRelayData, r.RelayPeer, r.RelayMessage, b.RelayPeer)
		}
		if r.LinkAddress != linkA || !bytes.Equal(r.RelayID, relayA) || !bytes.Equal(r.InterfaceID, []byte("port-7")) {
			t.Errorf("relay fields = link %v, relay-id %x, interface-id %q; want %v, %x, port-7", r.LinkAddress, r.RelayID, r.InterfaceID, linkA, relayA)
		}
		if !r.HasRemoteID || !bytes.Equal(r.RemoteID.ID, remote7[4:]) {
			t.Errorf("remote-id = %+v, want %x", r.RemoteID, remote7[4:])
		}
	}
}
