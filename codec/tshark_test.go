package codec

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The capture for the tshark cross-check: messages built with this
// package's encoders, sent over UDP and over three framed TCP connections
// (bulk, active and STARTTLS), with frames packed several to a segment and
// split across segments.

var (
	capRequestor = netip.MustParseAddr("2001:db8::a")
	capServer    = netip.MustParseAddr("2001:db8::1")
	capServerID  = mustDUID(NewDUIDLLT(1, 757382400, b(0x00, 0x00, 0x5e, 0x00, 0x53, 0xfe)))
	capClientID  = mustDUID(NewDUIDLL(1, b(0x00, 0x00, 0x5e, 0x00, 0x53, 0xaa)))
	capBinding   = mustDUID(NewDUIDEN(32473, []byte("client2")))
	capRelayID   = mustDUID(NewDUIDEN(32473, []byte("relay-a")))
	capUUID      = mustDUID(NewDUIDUUID([16]byte{0x12, 0x34, 0x56, 0x78, 15: 0xef}))
)

func mustDUID(d DUID) []byte {
	out, err := d.AppendTo(nil)
	if err != nil {
		panic(err)
	}
	return out
}

// capMessage is one message of the capture and how it travelled.
type capMessage struct {
	msg []byte
	tcp bool
}

// capPacket lists the messages whose last octet is in one captured packet,
// which is where tshark reports them.
type capPacket struct {
	messages []capMessage
}

// capture is the pcap file and, per packet (index = frame number - 1), the
// messages tshark should report in it.
type capture struct {
	pcap    *pcapWriter
	packets []capPacket
}

func (c *capture) udp(t *testing.T, src, dst netip.AddrPort, m interface{ AppendTo([]byte) ([]byte, error) }) {
	t.Helper()
	msg, err := m.AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	c.pcap.udp(src, dst, msg)
	c.packets = append(c.packets, capPacket{messages: []capMessage{{msg: msg}}})
}

// tcpStream sends the framed messages from one side as segments cut at the
// given stream offsets.
func (c *capture) tcpStream(t *testing.T, conn *tcpConn, fromClient bool, msgs []*Message, cuts ...int) {
	t.Helper()
	var stream []byte
	var ends []int // stream offset just after each frame
	var plain [][]byte
	for _, m := range msgs {
		var err error
		if stream, err = m.AppendFrameTo(stream); err != nil {
			t.Fatal(err)
		}
		ends = append(ends, len(stream))
		plain = append(plain, stream[len(stream)-m.Len():])
	}
	cuts = append(cuts, len(stream))
	from, next := 0, 0
	for _, cut := range cuts {
		conn.send(fromClient, stream[from:cut])
		var p capPacket
		for next < len(ends) && ends[next] <= cut {
			p.messages = append(p.messages, capMessage{msg: plain[next], tcp: true})
			next++
		}
		c.packets = append(c.packets, p)
		from = cut
	}
}

// tcpControl records the packets of a handshake or close, which carry no
// message.
func (c *capture) tcpControl(n int) {
	for i := 0; i < n; i++ {
		c.packets = append(c.packets, capPacket{})
	}
}

func msgWith(t MsgType, xid uint32, opts ...Option) *Message {
	return &Message{Type: t, TransactionID: xid, Options: opts}
}

// opt encodes a typed option value and returns it as a raw Option.
func opt(t *testing.T, v interface{ AppendTo([]byte) ([]byte, error) }) Option {
	t.Helper()
	enc, err := v.AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	code := OptionCode(enc[0])<<8 | OptionCode(enc[1])
	return Option{Code: code, Data: enc[OptionHeaderLen:]}
}

func u32(code OptionCode, v uint32) Option {
	return Option{Code: code, Data: AppendUint32Option(nil, code, v)[OptionHeaderLen:]}
}

func buildCapture(t *testing.T) *capture {
	c := &capture{pcap: newPCAP(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))}
	requestor547 := netip.AddrPortFrom(capRequestor, 546)
	server547 := netip.AddrPortFrom(capServer, 547)
	base := uint32(820540800)

	storedRelay := mustAppend(t, (&RelayMessage{
		Type:        MsgRelayForw,
		LinkAddress: netip.MustParseAddr("2001:db8:1::1"),
		PeerAddress: netip.MustParseAddr("fe80::200:5eff:fe00:5302"),
		Options: Options{
			{Code: OptInterfaceID, Data: []byte("ge-0/0/2.100")},
			{Code: OptRelayID, Data: capRelayID},
		},
	}).AppendTo)
	binding := &ClientData{
		ClientID: capBinding, CLTTime: 5, HasCLTTime: true,
		Addrs:        []IAAddr{{Addr: netip.MustParseAddr("2001:db8:1::11"), PreferredLifetime: 1795, ValidLifetime: 3595}},
		Prefixes:     []IAPrefix{{Prefix: netip.MustParsePrefix("2001:db8:100:1200::/56"), PreferredLifetime: 1795, ValidLifetime: 3595}},
		HasRelayData: true,
		RelayData:    LQRelayData{PeerAddress: netip.MustParseAddr("2001:db8:1::1"), Message: storedRelay},
	}
	ended := &ClientData{
		ClientID: capUUID, CLTTime: 120, HasCLTTime: true,
		Addrs: []IAAddr{{Addr: netip.MustParseAddr("2001:db8:1::12")}},
	}

	// UDP: a query by client-id and its reply, a query whose client is on
	// two links, and a relayed query by address replied to in RELAY-REPL.
	byClient := &LQQuery{QueryType: QueryByClientID, Options: Options{{Code: OptClientID, Data: capBinding}}}
	c.udp(t, requestor547, server547, msgWith(MsgLeasequery, 0x4c5101,
		Option{Code: OptClientID, Data: capClientID}, opt(t, byClient)))
	c.udp(t, server547, requestor547, msgWith(MsgLeasequeryReply, 0x4c5101,
		Option{Code: OptServerID, Data: capServerID}, Option{Code: OptClientID, Data: capClientID}, opt(t, binding)))
	c.udp(t, requestor547, server547, msgWith(MsgLeasequery, 0x4c5102,
		Option{Code: OptClientID, Data: capClientID}, opt(t, &LQQuery{QueryType: QueryByClientID, Options: Options{{Code: OptClientID, Data: capUUID}}})))
	c.udp(t, server547, requestor547, msgWith(MsgLeasequeryReply, 0x4c5102,
		Option{Code: OptServerID, Data: capServerID}, Option{Code: OptClientID, Data: capClientID},
		opt(t, &LQClientLink{Links: []netip.Addr{netip.MustParseAddr("2001:db8:1::1"), netip.MustParseAddr("2001:db8:2::1")}})))

	byAddr := &LQQuery{QueryType: QueryByAddress, LinkAddress: netip.MustParseAddr("2001:db8:3::1"),
		Options: Options{opt(t, &IAAddr{Addr: netip.MustParseAddr("2001:db8:3::99")}), opt(t, &ORO{OptLQRelayData})}}
	query := mustAppend(t, msgWith(MsgLeasequery, 0x4c5103, Option{Code: OptClientID, Data: capClientID}, opt(t, byAddr)).AppendTo)
	relayLink := netip.MustParseAddr("2001:db8:3::1")
	relayPeer := netip.MustParseAddr("2001:db8:3::a")
	c.udp(t, netip.AddrPortFrom(relayLink, 547), server547, &RelayMessage{
		Type: MsgRelayForw, HopCount: 0, LinkAddress: relayLink, PeerAddress: relayPeer,
		Options: Options{
			{Code: OptInterfaceID, Data: []byte("eth0")},
			opt(t, &RemoteID{EnterpriseNumber: 32473, ID: []byte("port-9")}),
			{Code: OptRelayID, Data: capRelayID},
			{Code: OptRelayMsg, Data: query},
		},
	})
	reply := mustAppend(t, msgWith(MsgLeasequeryReply, 0x4c5103,
		Option{Code: OptServerID, Data: capServerID}, Option{Code: OptClientID, Data: capClientID},
		opt(t, &Status{Code: StatusNotConfigured, Message: []byte("no such link")})).AppendTo)
	c.udp(t, server547, netip.AddrPortFrom(relayLink, 547), &RelayMessage{
		Type: MsgRelayRepl, HopCount: 0, LinkAddress: relayLink, PeerAddress: relayPeer,
		Options: Options{{Code: OptInterfaceID, Data: []byte("eth0")}, {Code: OptRelayMsg, Data: reply}},
	})

	// TCP bulk: two pipelined queries in one segment; the reply stream is
	// cut inside a msg-size and inside a message.
	bulk := c.pcap.openTCP(netip.AddrPortFrom(capRequestor, 40001), server547)
	c.tcpControl(3)
	byRelay := &LQQuery{QueryType: QueryByRelayID, Options: Options{{Code: OptRelayID, Data: capRelayID}, opt(t, &ORO{OptLQRelayData})}}
	c.tcpStream(t, bulk, true, []*Message{
		msgWith(MsgLeasequery, 0xb10c01, Option{Code: OptClientID, Data: capClientID}, opt(t, &ORO{OptLQBaseTime}),
			u32(OptLQStartTime, base-3600), u32(OptLQEndTime, base), opt(t, byRelay)),
		msgWith(MsgLeasequery, 0xb10c02, Option{Code: OptClientID, Data: capClientID},
			opt(t, &LQQuery{QueryType: QueryByRemoteID, Options: Options{opt(t, &RemoteID{EnterpriseNumber: 32473, ID: []byte("port-7")})}})),
	})
	first := msgWith(MsgLeasequeryReply, 0xb10c01, Option{Code: OptServerID, Data: capServerID},
		Option{Code: OptClientID, Data: capClientID}, u32(OptLQBaseTime, base), opt(t, binding))
	c.tcpStream(t, bulk, false, []*Message{
		first,
		msgWith(MsgLeasequeryData, 0xb10c01, u32(OptLQBaseTime, base), opt(t, ended)),
		msgWith(MsgLeasequeryReply, 0xb10c02, Option{Code: OptServerID, Data: capServerID},
			Option{Code: OptClientID, Data: capClientID}, opt(t, &Status{Code: StatusSuccess, Message: []byte("no bindings")})),
		msgWith(MsgLeasequeryDone, 0xb10c01),
	}, FrameHeaderLen+first.Len()+1, FrameHeaderLen+first.Len()+20)
	bulk.close()
	c.tcpControl(3)

	// TCP active: query with catch-up, then reply, catch-up marker,
	// keepalive and shutdown.
	active := c.pcap.openTCP(netip.AddrPortFrom(capRequestor, 40002), server547)
	c.tcpControl(3)
	c.tcpStream(t, active, true, []*Message{
		msgWith(MsgActiveLeasequery, 0xa1a001, Option{Code: OptClientID, Data: capClientID}, opt(t, &ORO{OptLQBaseTime}), u32(OptLQStartTime, base-3600)),
	})
	c.tcpStream(t, active, false, []*Message{
		msgWith(MsgLeasequeryReply, 0xa1a001, Option{Code: OptServerID, Data: capServerID},
			Option{Code: OptClientID, Data: capClientID}, u32(OptLQBaseTime, base), opt(t, binding)),
		msgWith(MsgLeasequeryData, 0xa1a001, opt(t, &Status{Code: StatusCatchUpComplete, Message: []byte("catch-up complete")}), u32(OptLQBaseTime, base+1)),
	})
	c.tcpStream(t, active, false, []*Message{msgWith(MsgLeasequeryData, 0xa1a001, u32(OptLQBaseTime, base+61))})
	c.tcpStream(t, active, false, []*Message{
		msgWith(MsgLeasequeryDone, 0xa1a001, opt(t, &Status{Code: StatusQueryTerminated, Message: []byte("server shutting down")}), u32(OptLQBaseTime, base+62)),
	})
	active.close()
	c.tcpControl(3)

	// TCP STARTTLS refused.
	tls := c.pcap.openTCP(netip.AddrPortFrom(capRequestor, 40003), server547)
	c.tcpControl(3)
	c.tcpStream(t, tls, true, []*Message{msgWith(MsgStartTLS, 0x5a5a01)})
	c.tcpStream(t, tls, false, []*Message{
		msgWith(MsgReply, 0x5a5a01, Option{Code: OptServerID, Data: capServerID},
			opt(t, &Status{Code: StatusTLSConnectionRefused, Message: []byte("insecure mode")})),
	})
	tls.close()
	c.tcpControl(3)

	return c
}

// tsharkFields are the fields the cross-check compares, in the order given
// to tshark -e.
var tsharkFields = []string{
	"udp.checksum.status",
	"tcp.checksum.status",
	"dhcpv6.msgtype",
	"dhcpv6.xid",
	"dhcpv6.hopcount",
	"dhcpv6.linkaddr",
	"dhcpv6.peeraddr",
	"dhcpv6.bulk_leasequery.size",
	"dhcpv6.bulk_leasequery.msgtype",
	"dhcpv6.bulk_leasequery.reserved",
	"dhcpv6.bulk_leasequery.trans_id",
	"dhcpv6.option.type",
	"dhcpv6.duid.bytes",
	"dhcpv6.duid.type",
	"dhcpv6.duiden.enterprise",
	"dhcpv6.requested_option_code",
	"dhcpv6.status_code",
	"dhcpv6.status_msg",
	"dhcpv6.interface_id",
	"dhcpv6.remoteid.enterprise",
	"dhcpv6.lq_query",
	"dhcpv6.lq_query_link_address",
	"dhcpv6.clt_time",
	"dhcpv6.iaaddr.ip",
	"dhcpv6.iaaddr.pref_lifetime",
	"dhcpv6.iaaddr.valid_lifetime",
	"dhcpv6.iaprefix.pref_addr",
	"dhcpv6.iaprefix.pref_len",
	"dhcpv6.iaprefix.pref_lifetime",
	"dhcpv6.iaprefix.valid_lifetime",
	"dhcpv6.lq_relay_data_peer_addr",
	"dhcpv6.lq_client_link",
	"_ws.expert.message",
	"_ws.expert.severity",
}

// Expert-info messages of tshark 4.0 that are wrong for valid leasequery
// traffic. The test predicts exactly where each appears and fails on any
// other warning or error.
const (
	// The Bulk Leasequery dissector predates RFC 7653 and flags the message
	// types Active Leasequery adds to TCP: REPLY (to STARTTLS),
	// ACTIVELEASEQUERY and STARTTLS.
	tsharkTypeNotAllowed = "Message Type %d not allowed by DHCPv6 Bulk Leasequery"
	// The dissector throws on a framed message with no options, which RFC
	// 5460 allows (an empty LEASEQUERY-DONE) and RFC 7653 recommends
	// (STARTTLS).
	tsharkMalformed = "Malformed Packet (Exception occurred)"
	// The dissector shows the relay message inside OPTION_LQ_RELAY_DATA as
	// text instead of dissecting it, and flags its binary octets.
	tsharkStrayCharacters = "Trailing stray characters"

	// Severity values of _ws.expert.severity (PI_WARN and PI_ERROR).
	tsharkSeverityWarn  = 6291456
	tsharkSeverityError = 8388608
)

// expectation collects the field values tshark should show for one packet.
type expectation map[string][]string

func (e expectation) add(field string, v any) {
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case []byte:
		s = hexString(x)
	case netip.Addr:
		s = x.String()
	default:
		s = fmt.Sprint(x)
	}
	e[field] = append(e[field], s)
}

// expectPacket predicts the fields and the known false expert messages of
// one packet from its messages, with this package's decoders.
func expectPacket(t *testing.T, p capPacket, proto string) (expectation, []string) {
	e := expectation{}
	switch proto {
	case "udp":
		e.add("udp.checksum.status", 1) // 1 is "Good"
	case "tcp":
		e.add("tcp.checksum.status", 1)
	}
	var expert []string
	malformed := false
	for _, m := range p.messages {
		typ, _ := PeekType(m.msg)
		if m.tcp {
			var msg Message
			if err := msg.Decode(m.msg); err != nil {
				t.Fatal(err)
			}
			// tshark shows the 24-bit transaction-id as an 8-bit
			// "reserved" field and a 16-bit one.
			e.add("dhcpv6.bulk_leasequery.size", len(m.msg))
			e.add("dhcpv6.bulk_leasequery.msgtype", int(msg.Type))
			e.add("dhcpv6.bulk_leasequery.reserved", msg.TransactionID>>16)
			e.add("dhcpv6.bulk_leasequery.trans_id", msg.TransactionID&0xffff)
			if typ == MsgReply || typ == MsgActiveLeasequery || typ == MsgStartTLS {
				expert = append(expert, fmt.Sprintf(tsharkTypeNotAllowed, typ))
			}
			if len(msg.Options) == 0 {
				malformed = true
			}
			expert = append(expert, expectOptions(t, e, msg.Options)...)
			continue
		}
		expert = append(expert, expectUDPMessage(t, e, m.msg)...)
	}
	if malformed {
		expert = append(expert, tsharkMalformed)
	}
	return e, expert
}

func expectUDPMessage(t *testing.T, e expectation, b []byte) []string {
	if typ, _ := PeekType(b); typ.IsRelay() {
		var r RelayMessage
		if err := r.Decode(b); err != nil {
			t.Fatal(err)
		}
		e.add("dhcpv6.msgtype", int(r.Type))
		e.add("dhcpv6.hopcount", r.HopCount)
		e.add("dhcpv6.linkaddr", r.LinkAddress)
		e.add("dhcpv6.peeraddr", r.PeerAddress)
		return expectOptions(t, e, r.Options)
	}
	var m Message
	if err := m.Decode(b); err != nil {
		t.Fatal(err)
	}
	e.add("dhcpv6.msgtype", int(m.Type))
	e.add("dhcpv6.xid", fmt.Sprintf("0x%06x", m.TransactionID))
	return expectOptions(t, e, m.Options)
}

// expectOptions adds the fields of each option, depth first as tshark walks
// the option tree, and returns the false expert messages they cause.
func expectOptions(t *testing.T, e expectation, opts Options) []string {
	var expert []string
	for _, o := range opts {
		e.add("dhcpv6.option.type", int(o.Code))
		switch o.Code {
		case OptClientID, OptServerID, OptRelayID:
			d, err := ParseDUID(o.Data)
			if err != nil {
				t.Fatal(err)
			}
			e.add("dhcpv6.duid.bytes", o.Data)
			e.add("dhcpv6.duid.type", int(d.Type))
			if d.Type == DUIDEN {
				e.add("dhcpv6.duiden.enterprise", d.EnterpriseNumber)
			}
		case OptORO:
			var oro ORO
			if err := oro.Decode(o.Data); err != nil {
				t.Fatal(err)
			}
			for _, c := range oro {
				e.add("dhcpv6.requested_option_code", int(c))
			}
		case OptStatusCode:
			var s Status
			if err := s.Decode(o.Data); err != nil {
				t.Fatal(err)
			}
			e.add("dhcpv6.status_code", int(s.Code))
			e.add("dhcpv6.status_msg", string(s.Message))
		case OptInterfaceID:
			e.add("dhcpv6.interface_id", o.Data)
		case OptRemoteID:
			var r RemoteID
			if err := r.Decode(o.Data); err != nil {
				t.Fatal(err)
			}
			e.add("dhcpv6.remoteid.enterprise", r.EnterpriseNumber)
		case OptLQQuery:
			var q LQQuery
			if err := q.Decode(o.Data); err != nil {
				t.Fatal(err)
			}
			e.add("dhcpv6.lq_query", int(q.QueryType))
			e.add("dhcpv6.lq_query_link_address", q.LinkAddress)
			expert = append(expert, expectOptions(t, e, q.Options)...)
		case OptClientData:
			var inner Options
			if err := inner.Decode(o.Data); err != nil {
				t.Fatal(err)
			}
			expert = append(expert, expectOptions(t, e, inner)...)
		case OptCLTTime:
			v, _ := opts.CLTTime()
			e.add("dhcpv6.clt_time", v)
		case OptIAAddr:
			var a IAAddr
			if err := a.Decode(o.Data); err != nil {
				t.Fatal(err)
			}
			e.add("dhcpv6.iaaddr.ip", a.Addr)
			e.add("dhcpv6.iaaddr.pref_lifetime", a.PreferredLifetime)
			e.add("dhcpv6.iaaddr.valid_lifetime", a.ValidLifetime)
			expert = append(expert, expectOptions(t, e, a.Options)...)
		case OptIAPrefix:
			var p IAPrefix
			if err := p.Decode(o.Data); err != nil {
				t.Fatal(err)
			}
			e.add("dhcpv6.iaprefix.pref_addr", p.Prefix.Addr())
			e.add("dhcpv6.iaprefix.pref_len", p.Prefix.Bits())
			e.add("dhcpv6.iaprefix.pref_lifetime", p.PreferredLifetime)
			e.add("dhcpv6.iaprefix.valid_lifetime", p.ValidLifetime)
			expert = append(expert, expectOptions(t, e, p.Options)...)
		case OptLQRelayData:
			var r LQRelayData
			if err := r.Decode(o.Data); err != nil {
				t.Fatal(err)
			}
			e.add("dhcpv6.lq_relay_data_peer_addr", r.PeerAddress)
			expert = append(expert, tsharkStrayCharacters)
		case OptLQClientLink:
			var l LQClientLink
			if err := l.Decode(o.Data); err != nil {
				t.Fatal(err)
			}
			for _, a := range l.Links {
				e.add("dhcpv6.lq_client_link", a)
			}
		case OptRelayMsg:
			expert = append(expert, expectUDPMessage(t, e, o.Data)...)
		}
	}
	return expert
}

// TestTsharkDissectsEncodedMessages writes a capture of messages built with
// this package and checks, packet by packet, the field values tshark shows
// and its expert messages. tshark must be installed; set ALQD_SKIP_TSHARK=1
// to skip the check on a machine without it.
func TestTsharkDissectsEncodedMessages(t *testing.T) {
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		if os.Getenv("ALQD_SKIP_TSHARK") == "1" {
			t.Skip("tshark not installed and ALQD_SKIP_TSHARK=1: skipping the tshark cross-check")
		}
		t.Fatal("tshark not found in PATH: install it (Debian: apt-get install tshark) or set ALQD_SKIP_TSHARK=1 to skip this check")
	}

	c := buildCapture(t)
	path := filepath.Join(t.TempDir(), "leasequery.pcap")
	if err := os.WriteFile(path, c.pcap.buf, 0o644); err != nil {
		t.Fatal(err)
	}
	rows := runTshark(t, tshark, path)
	if len(rows) != len(c.packets) {
		t.Fatalf("tshark shows %d packets, the capture has %d", len(rows), len(c.packets))
	}

	var messages, allowed int
	for i, p := range c.packets {
		proto := "tcp"
		if i < c.udpPackets() {
			proto = "udp"
		}
		want, wantExpert := expectPacket(t, p, proto)
		got := rows[i]
		for _, field := range tsharkFields {
			if strings.HasPrefix(field, "_ws.expert") {
				continue
			}
			if g, w := strings.Join(got[field], "|"), strings.Join(want[field], "|"); g != w {
				t.Errorf("frame %d: %s = %q, want %q", i+1, field, g, w)
			}
		}

		// Warnings and errors must be exactly the predicted false ones.
		var gotExpert []string
		for j, msg := range got["_ws.expert.message"] {
			sev, _ := strconv.Atoi(got["_ws.expert.severity"][j])
			if sev >= tsharkSeverityWarn {
				gotExpert = append(gotExpert, msg)
			}
		}
		slices.Sort(gotExpert)
		slices.Sort(wantExpert)
		if !slices.Equal(gotExpert, wantExpert) {
			t.Errorf("frame %d: tshark warnings and errors %q, want the known false ones %q", i+1, gotExpert, wantExpert)
		}
		messages += len(p.messages)
		allowed += len(wantExpert)
	}
	t.Logf("tshark dissected %d messages in %d packets; %d known false warnings or errors were expected and found", messages, len(rows), allowed)
}

// udpPackets returns how many packets at the start of the capture are UDP.
func (c *capture) udpPackets() int {
	n := 0
	for _, p := range c.packets {
		if len(p.messages) == 0 || p.messages[0].tcp {
			break
		}
		n++
	}
	return n
}

// runTshark dissects the capture and returns, per packet, the values of
// tsharkFields.
func runTshark(t *testing.T, tshark, path string) []map[string][]string {
	args := []string{"-n", "-r", path,
		"-o", "udp.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE",
		"-T", "fields", "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=|"}
	for _, f := range tsharkFields {
		args = append(args, "-e", f)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, tshark, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("tshark failed: %v\n%s", err, stderr.String())
	}

	var rows []map[string][]string
	for _, line := range strings.Split(strings.TrimRight(stdout.String(), "\n"), "\n") {
		cols := strings.Split(line, "\t")
		if len(cols) != len(tsharkFields) {
			t.Fatalf("tshark line has %d columns, want %d: %q", len(cols), len(tsharkFields), line)
		}
		row := map[string][]string{}
		for i, f := range tsharkFields {
			if cols[i] != "" {
				row[f] = strings.Split(cols[i], "|")
			}
		}
		rows = append(rows, row)
	}
	return rows
}
