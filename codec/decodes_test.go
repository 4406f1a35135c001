package codec

import (
	"bufio"
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestVectorsMatchDecodes prints every vector with the typed decoders in the
// layout of DECODES.txt, which an independent decoder wrote, and compares
// the two listings line by line, so every field value of every vector is
// checked.
func TestVectorsMatchDecodes(t *testing.T) {
	want := readDecodes(t)
	for _, v := range loadVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			lines, ok := want[v.Name]
			if !ok {
				t.Fatalf("DECODES.txt has no entry for %s", v.Name)
			}
			var got []string
			if v.Kind == "tcp-stream" {
				got = dumpStream(t, v.bytes)
			} else {
				got = dumpMessage(t, v.bytes, 3)
			}
			if strings.Join(got, "\n") != strings.Join(lines, "\n") {
				t.Errorf("listing differs\n got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(lines, "\n"))
			}
		})
	}
}

// TestDecodedFieldsSpotCheck reads fields of several vectors through the
// typed accessors, with the expected values copied from DECODES.txt.
func TestDecodedFieldsSpotCheck(t *testing.T) {
	t.Run("c02 bulk reply", func(t *testing.T) {
		var m Message
		if err := m.Decode(vectorBytes(t, "c02_bulk_reply_first_binding")); err != nil {
			t.Fatal(err)
		}
		if m.Type != MsgLeasequeryReply || m.TransactionID != 0xb10c01 {
			t.Errorf("header = %v xid %#x", m.Type, m.TransactionID)
		}
		sid, _ := m.Options.ServerID()
		d, err := ParseDUID(sid)
		if err != nil || d.Type != DUIDLLT || d.HardwareType != 1 || d.Time != 757382400 {
			t.Errorf("SERVERID = %+v, %v", d, err)
		}
		if got := TimeFromDHCP(d.Time).Format("2006-01-02"); got != "2024-01-01" {
			t.Errorf("DUID-LLT time = %s, want 2024-01-01", got)
		}
		if base, ok := m.Options.BaseTime(); !ok || base != 820540800 {
			t.Errorf("BaseTime = %d, %v", base, ok)
		}
		raw, _ := m.Options.ClientData()
		var cd ClientData
		if err := cd.Decode(raw); err != nil {
			t.Fatal(err)
		}
		if !cd.HasCLTTime || cd.CLTTime != 60 {
			t.Errorf("CLT_TIME = %d", cd.CLTTime)
		}
		if len(cd.Addrs) != 1 || cd.Addrs[0].Addr.String() != "2001:db8:1::10" ||
			cd.Addrs[0].PreferredLifetime != 1740 || cd.Addrs[0].ValidLifetime != 3540 {
			t.Errorf("IAADDR = %+v", cd.Addrs)
		}
		if !cd.HasRelayData || cd.RelayData.PeerAddress.String() != "2001:db8:1::1" {
			t.Fatalf("LQ_RELAY_DATA = %+v", cd.RelayData)
		}
		var r RelayMessage
		if err := r.Decode(cd.RelayData.Message); err != nil {
			t.Fatal(err)
		}
		if r.Type != MsgRelayForw || r.HopCount != 0 || r.PeerAddress.String() != "fe80::200:5eff:fe00:5301" {
			t.Errorf("relay = %v hop %d peer %v", r.Type, r.HopCount, r.PeerAddress)
		}
		if _, ok := r.InnerMessage(); ok {
			t.Error("stored RELAY-FORW still carries OPTION_RELAY_MSG")
		}
		if id, _ := r.Options.InterfaceID(); string(id) != "ge-0/0/1.100" {
			t.Errorf("INTERFACE_ID = %q", id)
		}
		rid, ok, err := r.Options.RemoteID()
		if !ok || err != nil || rid.EnterpriseNumber != 32473 || string(rid.ID) != "port-7" {
			t.Errorf("REMOTE_ID = %+v, %v, %v", rid, ok, err)
		}
	})
	t.Run("c03 prefix", func(t *testing.T) {
		var m Message
		if err := m.Decode(vectorBytes(t, "c03_bulk_data_second_binding")); err != nil {
			t.Fatal(err)
		}
		raw, _ := m.Options.ClientData()
		var cd ClientData
		if err := cd.Decode(raw); err != nil {
			t.Fatal(err)
		}
		cid, err := ParseDUID(cd.ClientID)
		if err != nil || cid.Type != DUIDEN || cid.EnterpriseNumber != 32473 || string(cid.Identifier) != "client2" {
			t.Errorf("CLIENTID = %+v, %v", cid, err)
		}
		if len(cd.Prefixes) != 1 || cd.Prefixes[0].Prefix.String() != "2001:db8:100:1200::/56" ||
			cd.Prefixes[0].PreferredLifetime != 1795 || cd.Prefixes[0].ValidLifetime != 3595 {
			t.Errorf("IAPREFIX = %+v", cd.Prefixes)
		}
	})
	t.Run("c08 status", func(t *testing.T) {
		var m Message
		if err := m.Decode(vectorBytes(t, "c08_bulk_reply_malformed")); err != nil {
			t.Fatal(err)
		}
		s, ok, err := m.Options.Status()
		if !ok || err != nil || s.Code != StatusMalformedQuery || string(s.Message) != "link-address must not be ::" {
			t.Errorf("STATUS_CODE = %+v, %v, %v", s, ok, err)
		}
		var se *StatusError
		if !asStatusError(s.Err(), &se) || se.Code != StatusMalformedQuery {
			t.Errorf("Status.Err = %v", s.Err())
		}
	})
	t.Run("c09 start time", func(t *testing.T) {
		var m Message
		if err := m.Decode(vectorBytes(t, "c09_active_query_with_start_time")); err != nil {
			t.Fatal(err)
		}
		start, ok := m.Options.StartTime()
		if !ok || start != 820537200 {
			t.Errorf("START_TIME = %d", start)
		}
		if got := TimeFromDHCP(start).Format("2006-01-02T15:04:05"); got != "2025-12-31T23:00:00" {
			t.Errorf("START_TIME as time = %s", got)
		}
		if !m.Options.Requests(OptLQBaseTime) {
			t.Error("ORO does not request LQ_BASE_TIME")
		}
		if m.Options.Has(OptLQQuery) {
			t.Error("unexpected LQ_QUERY")
		}
	})
	t.Run("c19 relay-id filter", func(t *testing.T) {
		var m Message
		if err := m.Decode(vectorBytes(t, "c19_active_query_filtered_by_relay_id")); err != nil {
			t.Fatal(err)
		}
		var q LQQuery
		if ok, err := m.Options.LQQuery(&q); !ok || err != nil {
			t.Fatalf("LQQuery: %v %v", ok, err)
		}
		if q.QueryType != QueryByRelayID || !q.LinkAddress.IsUnspecified() {
			t.Errorf("query = %v link %v", q.QueryType, q.LinkAddress)
		}
		rid, _ := q.Options.RelayID()
		d, err := ParseDUID(rid)
		if err != nil || d.String() != "DUID-EN en=32473 id=72656c61792d61" {
			t.Errorf("RELAY_ID = %v, %v", d.String(), err)
		}
		if err := q.Validate(); err != nil {
			t.Errorf("Validate: %v", err)
		}
	})
	t.Run("c25 client link", func(t *testing.T) {
		var m Message
		if err := m.Decode(vectorBytes(t, "c25_udp_reply_client_link")); err != nil {
			t.Fatal(err)
		}
		raw, _ := m.Options.Get(OptLQClientLink)
		var l LQClientLink
		if err := l.Decode(raw); err != nil {
			t.Fatal(err)
		}
		if len(l.Links) != 2 || l.Links[0].String() != "2001:db8:1::1" || l.Links[1].String() != "2001:db8:2::1" {
			t.Errorf("links = %v", l.Links)
		}
	})
}

// readDecodes returns, per vector name, the decoded lines of DECODES.txt:
// those after the hex line up to the blank line ending the entry.
func readDecodes(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open(filepath.Join(vectorDir, "DECODES.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	var name string
	inTree := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "== "):
			name = strings.Fields(line)[1]
			inTree = false
		case name != "" && strings.HasPrefix(strings.TrimSpace(line), "hex: "):
			inTree = true
			out[name] = []string{}
		case strings.TrimSpace(line) == "":
			inTree = false
		case inTree:
			out[name] = append(out[name], line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func dumpStream(t *testing.T, b []byte) []string {
	var f Framer
	f.Feed(b)
	var out []string
	for {
		msg, err := f.Next()
		if err != nil {
			t.Fatal(err)
		}
		if msg == nil {
			return out
		}
		out = append(out, "   [frame len="+strconv.Itoa(len(msg))+"]")
		out = append(out, dumpMessage(t, msg, 5)...)
	}
}

// dumpMessage lists a message of either header format at the given indent.
func dumpMessage(t *testing.T, b []byte, indent int) []string {
	pad := strings.Repeat(" ", indent)
	typ, err := PeekType(b)
	if err != nil {
		t.Fatal(err)
	}
	if typ.IsRelay() {
		var r RelayMessage
		if err := r.Decode(b); err != nil {
			t.Fatal(err)
		}
		head := pad + r.Type.String() + "(" + strconv.Itoa(int(r.Type)) + ") hop=" + strconv.Itoa(int(r.HopCount)) +
			" link=" + r.LinkAddress.String() + " peer=" + r.PeerAddress.String()
		return append([]string{head}, dumpOptions(t, r.Options, indent+2)...)
	}
	var m Message
	if err := m.Decode(b); err != nil {
		t.Fatal(err)
	}
	head := pad + m.Type.String() + "(" + strconv.Itoa(int(m.Type)) + ") xid=0x" + strconv.FormatUint(uint64(m.TransactionID), 16)
	return append([]string{head}, dumpOptions(t, m.Options, indent+2)...)
}

func dumpOptions(t *testing.T, opts Options, indent int) []string {
	pad := strings.Repeat(" ", indent)
	var out []string
	for _, o := range opts {
		head := pad + strings.TrimPrefix(o.Code.String(), "OPTION_") + "(" + strconv.Itoa(int(o.Code)) + ") len=" + strconv.Itoa(len(o.Data))
		var detail string
		var nested []string
		switch o.Code {
		case OptClientID, OptServerID, OptRelayID:
			d, err := ParseDUID(o.Data)
			if err != nil {
				t.Fatal(err)
			}
			detail = d.String()
		case OptORO:
			var oro ORO
			if err := oro.Decode(o.Data); err != nil {
				t.Fatal(err)
			}
			var codes []string
			for _, c := range oro {
				codes = append(codes, strconv.Itoa(int(c))+"("+strings.TrimPrefix(c.String(), "OPTION_")+")")
			}
			detail = "codes=" + strings.Join(codes, ",")
		case OptLQQuery:
			var q LQQuery
			if err := q.Decode(o.Data); err != nil {
				t.Fatal(err)
			}
			detail = "query-type=" + strconv.Itoa(int(q.QueryType)) + " link=" + q.LinkAddress.String()
			nested = dumpOptions(t, q.Options, indent+2)
		case OptClientData:
			var inner Options
			if err := inner.Decode(o.Data); err != nil {
				t.Fatal(err)
			}
			nested = dumpOptions(t, inner, indent+2)
		case OptCLTTime:
			detail = strconv.FormatUint(uint64(binary.BigEndian.Uint32(o.Data)), 10) + " s"
		case OptIAAddr:
			var a IAAddr
			if err := a.Decode(o.Data); err != nil {
				t.Fatal(err)
			}
			detail = "addr=" + a.Addr.String() + " pref=" + strconv.FormatUint(uint64(a.PreferredLifetime), 10) +
				" valid=" + strconv.FormatUint(uint64(a.ValidLifetime), 10)
		case OptIAPrefix:
			var p IAPrefix
			if err := p.Decode(o.Data); err != nil {
				t.Fatal(err)
			}
			detail = "prefix=" + p.Prefix.String() + " pref=" + strconv.FormatUint(uint64(p.PreferredLifetime), 10) +
				" valid=" + strconv.FormatUint(uint64(p.ValidLifetime), 10)
		case OptLQRelayData:
			var r LQRelayData
			if err := r.Decode(o.Data); err != nil {
				t.Fatal(err)
			}
			detail = "peer=" + r.PeerAddress.String()
			nested = dumpMessage(t, r.Message, indent+2)
		case OptInterfaceID:
			detail = "b'" + string(o.Data) + "'"
		case OptRemoteID:
			var r RemoteID
			if err := r.Decode(o.Data); err != nil {
				t.Fatal(err)
			}
			detail = "enterprise=" + strconv.FormatUint(uint64(r.EnterpriseNumber), 10) + " remote-id=" + hexString(r.ID)
		case OptStatusCode:
			var s Status
			if err := s.Decode(o.Data); err != nil {
				t.Fatal(err)
			}
			detail = strconv.Itoa(int(s.Code)) + "(" + s.Code.String() + ") msg='" + string(s.Message) + "'"
		case OptLQBaseTime, OptLQStartTime, OptLQEndTime:
			v := binary.BigEndian.Uint32(o.Data)
			detail = strconv.FormatUint(uint64(v), 10) + " (=" + TimeFromDHCP(v).Format("2006-01-02T15:04:05") + " UTC)"
		case OptLQClientLink:
			var l LQClientLink
			if err := l.Decode(o.Data); err != nil {
				t.Fatal(err)
			}
			var links []string
			for _, a := range l.Links {
				links = append(links, a.String())
			}
			detail = "links=" + strings.Join(links, ",")
		default:
			t.Fatalf("no listing format for %v", o.Code)
		}
		if detail != "" {
			head += " " + detail
		}
		out = append(out, head)
		out = append(out, nested...)
	}
	return out
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&0xf])
	}
	return string(out)
}
