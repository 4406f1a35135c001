package codec

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
)

// The tests in this file parse what this package encodes with an independent
// DHCPv6 decoder, github.com/insomniacslk/dhcp/dhcpv6, used by tests only. It
// parses the leasequery message types generically (it has no names for 22 and
// 23) and keeps the leasequery options as generic options, whose option-data
// the tests then parse with its option parser where the content is made of
// options it parses.

// crossCheckMessages returns the messages for the cross-checks: every vector
// message and frame, and messages built with the typed encoders.
func crossCheckMessages(t *testing.T) map[string][]byte {
	out := map[string][]byte{}
	for i, msg := range vectorMessages(t) {
		out["vector "+itoa3(i)] = msg
	}
	bindings := benchBindings(t, 3)
	stream, err := appendBulkReply(nil, bindings)
	if err != nil {
		t.Fatal(err)
	}
	var f Framer
	f.Feed(stream)
	for i := 0; ; i++ {
		msg, err := f.Next()
		if err != nil {
			t.Fatal(err)
		}
		if msg == nil {
			break
		}
		out["built bulk reply "+itoa3(i)] = bytes.Clone(msg)
	}
	out["built relayed LEASEQUERY"] = relayChain(t, vectorBytes(t, "c24_udp_query_by_clientid"), 2)
	return out
}

func itoa3(i int) string {
	return string([]byte{'0' + byte(i/100%10), '0' + byte(i/10%10), '0' + byte(i%10)})
}

func TestCrossCheckInsomniacslk(t *testing.T) {
	for name, msg := range crossCheckMessages(t) {
		t.Run(name, func(t *testing.T) {
			theirs, err := dhcpv6.FromBytes(msg)
			if err != nil {
				t.Fatalf("dhcpv6.FromBytes: %v", err)
			}
			// Their encoder rebuilds the message from the parsed options; it
			// must give back our bytes.
			if back := theirs.ToBytes(); !bytes.Equal(back, msg) {
				t.Errorf("dhcpv6 re-encodes differently\n got %x\nwant %x", back, msg)
			}
			if theirs.IsRelay() {
				checkRelayAgainstDHCPv6(t, msg, theirs.(*dhcpv6.RelayMessage))
				return
			}
			checkMessageAgainstDHCPv6(t, msg, theirs.(*dhcpv6.Message))
		})
	}
}

func checkMessageAgainstDHCPv6(t *testing.T, msg []byte, theirs *dhcpv6.Message) {
	t.Helper()
	var ours Message
	if err := ours.Decode(msg); err != nil {
		t.Fatal(err)
	}
	if uint8(theirs.MessageType) != uint8(ours.Type) {
		t.Errorf("type %v, ours %v", theirs.MessageType, ours.Type)
	}
	tid := theirs.TransactionID
	if got := uint32(tid[0])<<16 | uint32(tid[1])<<8 | uint32(tid[2]); got != ours.TransactionID {
		t.Errorf("transaction-id %#x, ours %#x", got, ours.TransactionID)
	}
	checkOptionsAgainstDHCPv6(t, ours.Options, theirs.Options.Options)
}

func checkRelayAgainstDHCPv6(t *testing.T, msg []byte, theirs *dhcpv6.RelayMessage) {
	t.Helper()
	var ours RelayMessage
	if err := ours.Decode(msg); err != nil {
		t.Fatal(err)
	}
	if uint8(theirs.MessageType) != uint8(ours.Type) || theirs.HopCount != ours.HopCount {
		t.Errorf("header %v hop %d, ours %v hop %d", theirs.MessageType, theirs.HopCount, ours.Type, ours.HopCount)
	}
	if !bytes.Equal(theirs.LinkAddr, ours.LinkAddress.AsSlice()) || !bytes.Equal(theirs.PeerAddr, ours.PeerAddress.AsSlice()) {
		t.Errorf("addresses %v %v, ours %v %v", theirs.LinkAddr, theirs.PeerAddr, ours.LinkAddress, ours.PeerAddress)
	}
	checkOptionsAgainstDHCPv6(t, ours.Options, theirs.Options.Options)
}

// checkOptionsAgainstDHCPv6 compares an option list, option by option, with
// what dhcpv6 parsed, and recurses into the leasequery containers.
func checkOptionsAgainstDHCPv6(t *testing.T, ours Options, theirs dhcpv6.Options) {
	t.Helper()
	if len(ours) != len(theirs) {
		t.Fatalf("%d options, ours %d", len(theirs), len(ours))
	}
	for i, o := range ours {
		their := theirs[i]
		if uint16(their.Code()) != uint16(o.Code) {
			t.Errorf("option %d: code %v, ours %v", i, their.Code(), o.Code)
			continue
		}
		if !bytes.Equal(their.ToBytes(), o.Data) {
			t.Errorf("%v: option-data %x, ours %x", o.Code, their.ToBytes(), o.Data)
		}
		checkOptionAgainstDHCPv6(t, o, their)
	}
}

func checkOptionAgainstDHCPv6(t *testing.T, o Option, their dhcpv6.Option) {
	t.Helper()
	switch o.Code {
	case OptClientID, OptServerID:
		// dhcpv6 parses these two into its DUID types.
		d, _ := ParseDUID(o.Data)
		theirDUID, err := dhcpv6.DUIDFromBytes(o.Data)
		if err != nil {
			t.Fatalf("%v: dhcpv6 DUID: %v", o.Code, err)
		}
		checkDUIDAgainstDHCPv6(t, d, theirDUID)
	case OptStatusCode:
		var s Status
		_ = s.Decode(o.Data)
		sc := their.(*dhcpv6.OptStatusCode)
		if uint16(sc.StatusCode) != uint16(s.Code) || sc.StatusMessage != string(s.Message) {
			t.Errorf("status %v %q, ours %v %q", sc.StatusCode, sc.StatusMessage, s.Code, s.Message)
		}
	case OptORO:
		var oro ORO
		_ = oro.Decode(o.Data)
		var codes dhcpv6.OptionCodes
		if err := codes.FromBytes(o.Data); err != nil || len(codes) != len(oro) {
			t.Fatalf("ORO %v, %v; ours %v", codes, err, oro)
		}
		for i := range oro {
			if uint16(codes[i]) != uint16(oro[i]) {
				t.Errorf("ORO code %d: %v, ours %v", i, codes[i], oro[i])
			}
		}
	case OptRemoteID:
		var r RemoteID
		_ = r.Decode(o.Data)
		rid := their.(*dhcpv6.OptRemoteID)
		if rid.EnterpriseNumber != r.EnterpriseNumber || !bytes.Equal(rid.RemoteID, r.ID) {
			t.Errorf("remote-id %d %x, ours %d %x", rid.EnterpriseNumber, rid.RemoteID, r.EnterpriseNumber, r.ID)
		}
	case OptLQQuery:
		// Generic to dhcpv6: parse the query-options after the fixed fields.
		var q LQQuery
		_ = q.Decode(o.Data)
		var inner dhcpv6.Options
		if err := inner.FromBytes(o.Data[lqQueryLen:]); err != nil {
			t.Fatalf("LQ_QUERY query-options: %v", err)
		}
		if !bytes.Equal(o.Data[1:17], q.LinkAddress.AsSlice()) || o.Data[0] != byte(q.QueryType) {
			t.Errorf("LQ_QUERY fixed fields differ")
		}
		checkOptionsAgainstDHCPv6(t, q.Options, inner)
	case OptClientData:
		var inner dhcpv6.Options
		if err := inner.FromBytes(o.Data); err != nil {
			t.Fatalf("CLIENT_DATA options: %v", err)
		}
		var ours Options
		_ = ours.Decode(o.Data)
		checkOptionsAgainstDHCPv6(t, ours, inner)
		checkClientDataAgainstDHCPv6(t, o.Data, inner)
	case OptLQRelayData:
		var r LQRelayData
		_ = r.Decode(o.Data)
		relay, err := dhcpv6.RelayMessageFromBytes(r.Message)
		if err != nil {
			t.Fatalf("LQ_RELAY_DATA relay message: %v", err)
		}
		checkRelayAgainstDHCPv6(t, r.Message, relay)
	case OptRelayMsg:
		inner, err := dhcpv6.FromBytes(o.Data)
		if err != nil {
			t.Fatalf("RELAY_MSG: %v", err)
		}
		if inner.IsRelay() {
			checkRelayAgainstDHCPv6(t, o.Data, inner.(*dhcpv6.RelayMessage))
		} else {
			checkMessageAgainstDHCPv6(t, o.Data, inner.(*dhcpv6.Message))
		}
	}
}

func checkDUIDAgainstDHCPv6(t *testing.T, d DUID, theirs dhcpv6.DUID) {
	t.Helper()
	if uint16(theirs.DUIDType()) != uint16(d.Type) {
		t.Fatalf("DUID type %v, ours %v", theirs.DUIDType(), d.Type)
	}
	switch v := theirs.(type) {
	case *dhcpv6.DUIDLLT:
		if uint16(v.HWType) != d.HardwareType || v.Time != d.Time || !bytes.Equal(v.LinkLayerAddr, d.LinkLayerAddr) {
			t.Errorf("DUID-LLT %v, ours %v", v, d.String())
		}
	case *dhcpv6.DUIDLL:
		if uint16(v.HWType) != d.HardwareType || !bytes.Equal(v.LinkLayerAddr, d.LinkLayerAddr) {
			t.Errorf("DUID-LL %v, ours %v", v, d.String())
		}
	case *dhcpv6.DUIDEN:
		if v.EnterpriseNumber != d.EnterpriseNumber || !bytes.Equal(v.EnterpriseIdentifier, d.Identifier) {
			t.Errorf("DUID-EN %v, ours %v", v, d.String())
		}
	case *dhcpv6.DUIDUUID:
		if v.UUID != d.UUID {
			t.Errorf("DUID-UUID %v, ours %v", v, d.String())
		}
	default:
		t.Errorf("unexpected dhcpv6 DUID %T", theirs)
	}
}

// checkClientDataAgainstDHCPv6 compares the typed ClientData fields with the
// IAADDR and IAPREFIX options dhcpv6 parsed.
func checkClientDataAgainstDHCPv6(t *testing.T, data []byte, theirs dhcpv6.Options) {
	t.Helper()
	var cd ClientData
	if err := cd.Decode(data); err != nil {
		t.Fatal(err)
	}
	var addrs []*dhcpv6.OptIAAddress
	var prefixes []*dhcpv6.OptIAPrefix
	for _, o := range theirs {
		switch v := o.(type) {
		case *dhcpv6.OptIAAddress:
			addrs = append(addrs, v)
		case *dhcpv6.OptIAPrefix:
			prefixes = append(prefixes, v)
		}
	}
	if len(addrs) != len(cd.Addrs) || len(prefixes) != len(cd.Prefixes) {
		t.Fatalf("%d addresses and %d prefixes, ours %d and %d", len(addrs), len(prefixes), len(cd.Addrs), len(cd.Prefixes))
	}
	for i, a := range addrs {
		ours := cd.Addrs[i]
		if !a.IPv6Addr.Equal(ours.Addr.AsSlice()) ||
			a.PreferredLifetime != time.Duration(ours.PreferredLifetime)*time.Second ||
			a.ValidLifetime != time.Duration(ours.ValidLifetime)*time.Second {
			t.Errorf("IAADDR %v %v %v, ours %+v", a.IPv6Addr, a.PreferredLifetime, a.ValidLifetime, ours)
		}
	}
	for i, p := range prefixes {
		ours := cd.Prefixes[i]
		ones, _ := p.Prefix.Mask.Size()
		addr, _ := netip.AddrFromSlice(p.Prefix.IP)
		if netip.PrefixFrom(addr, ones) != ours.Prefix ||
			p.PreferredLifetime != time.Duration(ours.PreferredLifetime)*time.Second ||
			p.ValidLifetime != time.Duration(ours.ValidLifetime)*time.Second {
			t.Errorf("IAPREFIX %v %v %v, ours %+v", p.Prefix, p.PreferredLifetime, p.ValidLifetime, ours)
		}
	}
	if cd.ClientID != nil {
		cid := dhcpv6.MessageOptions{Options: theirs}.ClientID()
		if cid == nil || !bytes.Equal(cid.ToBytes(), cd.ClientID) {
			t.Errorf("CLIENTID %v, ours %x", cid, cd.ClientID)
		}
	}
}

// TestCrossCheckInsomniacslkStatusNames checks our status names against the
// registry names of an independent implementation.
func TestCrossCheckInsomniacslkStatusNames(t *testing.T) {
	for s := StatusSuccess; s <= StatusTLSConnectionRefused; s++ {
		theirs := iana.StatusCode(s).String()
		if theirs != s.String() {
			t.Errorf("status %d: %q, ours %q", s, theirs, s.String())
		}
	}
}
