package keatest

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// These tests need neither root nor Kea.

// relayForward is a Relay-forward as perfdhcp -A1 sends it: one relay level
// around a Solicit.
var relayForward = []byte{
	0x0c,                                                                                           // msg-type RELAY-FORW
	0x00,                                                                                           // hop-count 0
	0x20, 0x01, 0x0d, 0xb8, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, // link-address 2001:db8:2::1
	0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, // peer-address 2001:db8:1::2
	0x00, 0x09, 0x00, 0x16, // OPTION_RELAY_MSG, 22 bytes
	0x01, 0x12, 0x34, 0x56, //   SOLICIT, transaction-id 0x123456
	0x00, 0x01, 0x00, 0x0e, //   OPTION_CLIENTID, 14 bytes
	0x00, 0x01, 0x00, 0x01, 0x32, 0xa5, 0xcf, 0x38, 0x00, 0x0c, 0x02, 0x00, 0x00, 0x01, // DUID-LLT, MAC 00:0c:02:00:00:01
}

// shimOptions are the options the shim appends to relayForward.
var shimOptions = []byte{
	0x00, 0x12, 0x00, 0x13, // OPTION_INTERFACE_ID, 19 bytes
	'r', 'e', 'l', 'a', 'y', '-', '2', '0', '0', '1', ':', 'd', 'b', '8', ':', '2', ':', ':', '1', // "relay-2001:db8:2::1"
	0x00, 0x25, 0x00, 0x0e, // OPTION_REMOTE_ID, 14 bytes
	0x00, 0x00, 0x0d, 0xe9, // enterprise number 3561
	's', 'u', 'b', '-', '0', '0', '0', '0', '0', '1', // "sub-" and the last 3 DUID bytes in hex
	0x00, 0x35, 0x00, 0x0a, // OPTION_RELAY_ID, 10 bytes
	0x00, 0x03, 0x00, 0x01, // DUID-LL, hardware type 1
	0x02, 0xaa, 0x00, 0x02, 0x00, 0x01, // 02:aa, link-address bytes 4-5 and 14-15
}

func TestAppendRelayOptions(t *testing.T) {
	got, err := appendRelayOptions(relayForward)
	if err != nil {
		t.Fatal(err)
	}
	want := append(slices.Clone(relayForward), shimOptions...)
	if !bytes.Equal(got, want) {
		t.Errorf("appendRelayOptions:\n got %x\nwant %x", got, want)
	}
	if &got[0] == &relayForward[0] {
		t.Error("appendRelayOptions returned its input buffer, want a copy")
	}
}

func TestAppendRelayOptionsWithoutClientID(t *testing.T) {
	msg := slices.Clone(relayForward[:relayHeaderLen])
	msg = appendOption(msg, optRelayMsg, []byte{0x01, 0x12, 0x34, 0x56}) // Solicit without options

	got, err := appendRelayOptions(msg)
	if err != nil {
		t.Fatal(err)
	}
	opts := got[len(msg):]
	if remoteID, _ := findOption(opts, optRemoteID); remoteID != nil {
		t.Errorf("Remote-ID %q added for a message without Client Identifier", remoteID)
	}
	if relayID, _ := findOption(opts, optRelayID); relayID == nil {
		t.Error("Relay-ID missing")
	}
}

func TestAppendRelayOptionsRejects(t *testing.T) {
	truncatedOption := slices.Clone(relayForward[:relayHeaderLen])
	truncatedOption = append(truncatedOption, 0x00, 0x09, 0x00, 0x30, 0x01) // claims 48 bytes, has 1

	cases := []struct {
		name string
		msg  []byte
	}{
		{"empty", nil},
		{"short header", relayForward[:relayHeaderLen-1]},
		{"not relay-forward", append([]byte{msgRelayRepl}, relayForward[1:]...)},
		{"no relay message", relayForward[:relayHeaderLen]},
		{"truncated option", truncatedOption},
		{"truncated option header", append(slices.Clone(relayForward[:relayHeaderLen]), 0x00, 0x09, 0x00)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if out, err := appendRelayOptions(c.msg); err == nil {
				t.Errorf("appendRelayOptions(%x) = %x, want an error", c.msg, out)
			}
		})
	}
}

func FuzzAppendRelayOptions(f *testing.F) {
	f.Add(relayForward)
	f.Add(relayForward[:relayHeaderLen])
	f.Fuzz(func(t *testing.T, msg []byte) {
		out, err := appendRelayOptions(msg)
		if err != nil {
			return
		}
		// The message is kept as it was, followed by well-formed options
		// that include the Relay-ID of the link.
		if !bytes.HasPrefix(out, msg) {
			t.Fatalf("output %x does not start with the input %x", out, msg)
		}
		link := netip.AddrFrom16([16]byte(msg[2:18]))
		relayID, err := findOption(out[len(msg):], optRelayID)
		if err != nil || !bytes.Equal(relayID, RelayID(link)) {
			t.Fatalf("appended options %x: Relay-ID %x, error %v; want %x", out[len(msg):], relayID, err, RelayID(link))
		}
	})
}

func TestRelayIdentifiersPerLink(t *testing.T) {
	links, err := RelayLinks()
	if err != nil {
		t.Fatal(err)
	}
	if len(links) < 2 {
		t.Fatalf("relays.txt lists %d links, want at least 2 so that relay-ids can be told apart", len(links))
	}
	seen := make(map[string]netip.Addr)
	for _, link := range links {
		id := string(RelayID(link))
		if other, ok := seen[id]; ok {
			t.Errorf("links %v and %v share relay-id %x", other, link, id)
		}
		seen[id] = link
		if !bytes.Equal(RelayID(link), RelayID(link)) || string(InterfaceID(link)) != "relay-"+link.String() {
			t.Errorf("identifiers of link %v are not deterministic", link)
		}
	}
}

func TestRemoteID(t *testing.T) {
	cases := []struct {
		name string
		duid []byte
		want string
	}{
		{"DUID-LLT", []byte{0, 1, 0, 1, 0x32, 0xa5, 0xcf, 0x38, 0, 0x0c, 2, 0, 0, 0x2b}, "\x00\x00\x0d\xe9sub-00002b"},
		{"short DUID", []byte{0xab}, "\x00\x00\x0d\xe9sub-ab"},
		{"empty DUID", nil, "\x00\x00\x0d\xe9sub-"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := string(RemoteID(c.duid)); got != c.want {
				t.Errorf("RemoteID(%x) = %q, want %q", c.duid, got, c.want)
			}
		})
	}
}

// leaseJSON is a lease6-get-all response of Kea 2.2 for a relayed IA_PD
// lease whose Relay-forward went through the shim.
const leaseJSON = `{"leases": [{"cltt": 1796419982, "duid": "00:01:00:01:32:a5:ee:0e:00:0c:02:00:00:01",
 "fqdn-fwd": false, "fqdn-rev": false, "hostname": "", "hw-address": "00:0c:02:00:00:01", "iaid": 1,
 "ip-address": "2001:db8:9000::", "preferred-lft": 20, "prefix-len": 56, "state": 0, "subnet-id": 2,
 "type": "IA_PD", "user-context": {"ISC": {"relays": [{"hop": 0, "link": "2001:db8:2::1",
 "options": "0x0012001372656C61792D323030313A6462383A323A3A310025000E00000DE97375622D3030303030310035000A0003000102AA00020001",
 "peer": "2001:db8:1::2"}]}}, "valid-lft": 30},
 {"cltt": 1796419983, "duid": "00:01:00:01:32:a5:ee:0e:00:0c:01:00:00:07", "fqdn-fwd": false, "fqdn-rev": false,
 "hostname": "", "hw-address": "00:0c:01:00:00:07", "iaid": 1, "ip-address": "2001:db8:1::1005",
 "preferred-lft": 20, "state": 2, "subnet-id": 1, "type": "IA_NA", "valid-lft": 30}]}`

func TestParseLeases(t *testing.T) {
	leases, err := parseLeases(json.RawMessage(leaseJSON))
	if err != nil {
		t.Fatal(err)
	}
	if len(leases) != 2 {
		t.Fatalf("parsed %d leases, want 2", len(leases))
	}

	pd := leases[0]
	if pd.Type != TypePD || pd.Prefix() != netip.MustParsePrefix("2001:db8:9000::/56") {
		t.Errorf("lease 0 is %v %v, want IA_PD 2001:db8:9000::/56", pd.Type, pd.Prefix())
	}
	if pd.IAID != 1 || pd.SubnetID != 2 || pd.ValidLifetime != 30 || pd.PreferredLifetime != 20 || pd.CLTT != 1796419982 || pd.State != StateDefault {
		t.Errorf("lease 0 fields: %+v", pd)
	}
	wantDUID := []byte{0, 1, 0, 1, 0x32, 0xa5, 0xee, 0x0e, 0, 0x0c, 2, 0, 0, 1}
	if !bytes.Equal(pd.DUID, wantDUID) {
		t.Errorf("lease 0 DUID %x, want %x", pd.DUID, wantDUID)
	}
	if len(pd.Relays) != 1 {
		t.Fatalf("lease 0 has %d relays, want 1", len(pd.Relays))
	}
	r := pd.Relays[0]
	link := netip.MustParseAddr("2001:db8:2::1")
	if r.Hop != 0 || r.Link != link || r.Peer != ClientAddr {
		t.Errorf("relay hop %d link %v peer %v, want 0 %v %v", r.Hop, r.Link, r.Peer, link, ClientAddr)
	}
	if !bytes.Equal(r.InterfaceID, InterfaceID(link)) || !bytes.Equal(r.RemoteID, RemoteID(wantDUID)) || !bytes.Equal(r.RelayID, RelayID(link)) {
		t.Errorf("relay options: interface-id %q remote-id %q relay-id %x", r.InterfaceID, r.RemoteID, r.RelayID)
	}

	na := leases[1]
	if na.Type != TypeNA || na.PrefixLen != 128 || na.State != StateExpiredReclaimed || na.Relays != nil || na.UserContext != nil {
		t.Errorf("lease 1 is %+v, want a direct IA_NA /128 in state 2 without user context", na)
	}
}

func TestParseUserContext(t *testing.T) {
	cases := []struct {
		name    string
		context string
		relays  int
		wantErr bool
	}{
		{"none", ``, 0, false},
		{"null", `null`, 0, false},
		{"no ISC entry", `{"other": 1}`, 0, false},
		{"Kea 2.2 without options", `{"ISC":{"relays":[{"hop":0,"link":"2001:db8:2::1","peer":"2001:db8:1::2"}]}}`, 1, false},
		{"Kea 2.4 relay-info", `{"ISC":{"relay-info":[{"hop":0,"link":"2001:db8:2::1","peer":"2001:db8:1::2","options":"0x00350002ABCD"}]}}`, 1, false},
		{"two relays", `{"ISC":{"relays":[{"hop":1,"link":"::","peer":"2001:db8:5::1"},{"hop":0,"link":"2001:db8:2::1","peer":"fe80::1"}]}}`, 2, false},
		{"invalid JSON", `{"ISC":`, 0, true},
		{"invalid link", `{"ISC":{"relays":[{"hop":0,"link":"x","peer":"::"}]}}`, 0, true},
		{"invalid hex", `{"ISC":{"relays":[{"hop":0,"link":"::","peer":"::","options":"0xZZ"}]}}`, 0, true},
		{"truncated option", `{"ISC":{"relays":[{"hop":0,"link":"::","peer":"::","options":"0x00350004AB"}]}}`, 0, true},
		{"truncated option header", `{"ISC":{"relays":[{"hop":0,"link":"::","peer":"::","options":"0x003500"}]}}`, 0, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			relays, err := ParseUserContext([]byte(c.context))
			if (err != nil) != c.wantErr {
				t.Fatalf("ParseUserContext(%s) error = %v, want error %v", c.context, err, c.wantErr)
			}
			if len(relays) != c.relays {
				t.Errorf("ParseUserContext(%s) returned %d relays, want %d", c.context, len(relays), c.relays)
			}
		})
	}

	relays, err := ParseUserContext([]byte(cases[4].context))
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte{0xab, 0xcd}; !bytes.Equal(relays[0].RelayID, want) {
		t.Errorf("Kea 2.4 layout: relay-id %x, want %x", relays[0].RelayID, want)
	}
}

// perfdhcpOutput is an abridged report of perfdhcp 2.2.
const perfdhcpOutput = `Running: perfdhcp -6 -g single -l veth-cli -r 50 -R 200 -p 3 -e address-and-prefix -f 10 -F 5
Scenario: basic.
***Rate statistics***
Rate: 49.6654 4-way exchanges/second, expected rate: 50

***Malformed Packets***
Malformed packets: 0
***Statistics for: SOLICIT-ADVERTISE***
sent packets: 149
received packets: 148
drops: 1
drops ratio: 0.67 %
orphans: 0

min delay: 0.115 ms
***Statistics for: REQUEST-REPLY***
sent packets: 148
received packets: 148
drops: 0
drops ratio: 0.000 %
orphans: 41
***Statistics for: RELEASE-REPLY***
sent packets: 13
received packets: 13
drops: 0
`

func TestParsePerfdhcpStats(t *testing.T) {
	got := parsePerfdhcpStats(perfdhcpOutput)
	want := map[string]ExchangeStats{
		"SOLICIT-ADVERTISE": {Sent: 149, Received: 148, Drops: 1},
		"REQUEST-REPLY":     {Sent: 148, Received: 148, Drops: 0},
		"RELEASE-REPLY":     {Sent: 13, Received: 13, Drops: 0},
	}
	if len(got) != len(want) {
		t.Errorf("parsed %d exchanges %v, want %d", len(got), got, len(want))
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s: got %+v, want %+v", name, got[name], w)
		}
	}
}

func TestPerfdhcpArgs(t *testing.T) {
	cases := []struct {
		name string
		load Load
		want string
	}{
		{
			"direct defaults",
			Load{Rate: 10, Duration: 2 * time.Second},
			"-6 -g single -r 10 -R 1000 -p 2 -e address-and-prefix -b mac=00:0c:01:00:00:01 -l veth-cli",
		},
		{
			"direct with renew, release and count",
			Load{Rate: 10, RenewRate: 3, ReleaseRate: 1, Clients: 50, Duration: time.Second, MaxExchanges: 99,
				BaseMAC: net.HardwareAddr{0, 0x0c, 9, 0, 0, 1}},
			"-6 -g single -r 10 -R 50 -p 1 -e address-and-prefix -b mac=00:0c:09:00:00:01 -f 3 -F 1 -n 99 -l veth-cli",
		},
		{
			"relayed",
			Load{Relayed: true, Rate: 5, Duration: 4 * time.Second},
			"-6 -g single -r 5 -R 1000 -p 4 -e address-and-prefix -b mac=00:0c:02:00:00:01 -l 2001:db8:1::2 -A1 -J relays.txt 2001:db8:1::3",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := c.load.validate(); err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(c.load.perfdhcpArgs("relays.txt"), " "); got != c.want {
				t.Errorf("perfdhcp arguments:\n got %s\nwant %s", got, c.want)
			}
		})
	}
}

func TestLoadValidate(t *testing.T) {
	cases := []struct {
		name string
		load Load
	}{
		{"no rate", Load{Duration: time.Second}},
		{"no duration", Load{Rate: 1}},
		{"fractional duration", Load{Rate: 1, Duration: 1500 * time.Millisecond}},
		{"negative renew rate", Load{Rate: 1, Duration: time.Second, RenewRate: -1}},
		{"short MAC", Load{Rate: 1, Duration: time.Second, BaseMAC: net.HardwareAddr{1, 2}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := c.load.validate(); err == nil {
				t.Errorf("validate(%+v) returned nil, want an error", c.load)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name    string
		config  Config
		wantErr bool
	}{
		{"zero value", Config{}, false},
		{"LFC every 2 s", Config{LFCInterval: 2 * time.Second}, false},
		{"fractional lifetime", Config{ValidLifetime: 1500 * time.Millisecond}, true},
		{"negative LFC interval", Config{LFCInterval: -time.Second}, true},
		{"preferred above valid", Config{ValidLifetime: 10 * time.Second, PreferredLifetime: 20 * time.Second}, true},
		{"renew above rebind", Config{RenewTimer: 17 * time.Second}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := c.config.Validate(); (err != nil) != c.wantErr {
				t.Errorf("Validate() = %v, want error %v", err, c.wantErr)
			}
		})
	}
}

// TestRenderConfig renders the template of testdata/kea and checks the
// settings the harness relies on, and that every link of relays.txt falls
// into a relayed subnet.
func TestRenderConfig(t *testing.T) {
	path, err := testdataFile("kea-dhcp6.json.tmpl")
	if err != nil {
		t.Fatal(err)
	}
	tmplText, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text, err := renderConfig(string(tmplText), Config{LFCInterval: 7 * time.Second}, "/tmp/alqd-kea-x", "/hooks/libdhcp_lease_cmds.so")
	if err != nil {
		t.Fatal(err)
	}

	var cfg struct {
		Dhcp6 struct {
			Interfaces struct {
				Interfaces []string `json:"interfaces"`
			} `json:"interfaces-config"`
			LeaseDatabase struct {
				Name        string `json:"name"`
				LFCInterval int    `json:"lfc-interval"`
			} `json:"lease-database"`
			Expired struct {
				HoldReclaimedTime int `json:"hold-reclaimed-time"`
			} `json:"expired-leases-processing"`
			StoreExtendedInfo bool `json:"store-extended-info"`
			ValidLifetime     int  `json:"valid-lifetime"`
			ControlSocket     struct {
				SocketName string `json:"socket-name"`
			} `json:"control-socket"`
			Hooks []struct {
				Library string `json:"library"`
			} `json:"hooks-libraries"`
			Subnets []struct {
				ID     int    `json:"id"`
				Subnet string `json:"subnet"`
			} `json:"subnet6"`
		} `json:"Dhcp6"`
	}
	if err := json.Unmarshal(text, &cfg); err != nil {
		t.Fatalf("rendered configuration: %v\n%s", err, text)
	}
	d := cfg.Dhcp6
	checks := []struct {
		name     string
		got, exp any
	}{
		{"interfaces", strings.Join(d.Interfaces.Interfaces, " "), "veth-srv/2001:db8:1::1"},
		{"lease file", d.LeaseDatabase.Name, "/tmp/alqd-kea-x/leases6.csv"},
		{"lfc-interval", d.LeaseDatabase.LFCInterval, 7},
		{"hold-reclaimed-time", d.Expired.HoldReclaimedTime, 20},
		{"store-extended-info", d.StoreExtendedInfo, true},
		{"valid-lifetime", d.ValidLifetime, 30},
		{"control socket", d.ControlSocket.SocketName, "/tmp/alqd-kea-x/kea6-ctrl.sock"},
		{"hook count", len(d.Hooks), 1},
	}
	for _, c := range checks {
		if c.got != c.exp {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.exp)
		}
	}

	links, err := RelayLinks()
	if err != nil {
		t.Fatal(err)
	}
	for _, link := range links {
		found := false
		for _, s := range d.Subnets {
			prefix := netip.MustParsePrefix(s.Subnet)
			if prefix.Contains(link) {
				found = true
				if s.ID == 1 {
					t.Errorf("relay link %v falls into the direct subnet %s", link, s.Subnet)
				}
			}
		}
		if !found {
			t.Errorf("relay link %v falls into no subnet of the configuration", link)
		}
	}
}

func TestParseProcNetAddr(t *testing.T) {
	// /proc/net/udp6 prints each 32-bit word of the address in host byte
	// order; on a little-endian host 2001:db8:1::1 reads as below (seen in
	// /proc/<kea pid>/net/udp6 on x86_64).
	text := "B80D0120000001000000000001000000:0223"
	if binary.NativeEndian.Uint16([]byte{0, 1}) == 1 { // big-endian host
		text = "20010DB8000100000000000000000001:0223"
	}
	got, err := parseProcNetAddr(text)
	if err != nil {
		t.Fatal(err)
	}
	if want := netip.MustParseAddrPort("[2001:db8:1::1]:547"); got != want {
		t.Errorf("parseProcNetAddr(%s) = %v, want %v", text, got, want)
	}

	for _, bad := range []string{"", "0223", "B80D0120:0223", "Z80D0120000001000000000001000000:0223", "B80D0120000001000000000001000000:XYZW"} {
		if _, err := parseProcNetAddr(bad); err == nil {
			t.Errorf("parseProcNetAddr(%q) returned no error", bad)
		}
	}
}

func TestCreatorPID(t *testing.T) {
	cases := []struct {
		name   string
		pid    int
		parsed bool
	}{
		{"alqd-srv-123-1", 123, true},
		{"alqd-cli-99-12", 99, true},
		{"alqd-dns-123-1", 0, false},
		{"alqd-srv-123", 0, false},
		{"alqd-srv-x-1", 0, false},
		{"alqd-srv-0-1", 0, false},
		{"alqd-srv-5-x", 0, false},
		{"kea-srv", 0, false},
	}
	for _, c := range cases {
		pid, ok := creatorPID(c.name)
		if pid != c.pid || ok != c.parsed {
			t.Errorf("creatorPID(%q) = %d, %v; want %d, %v", c.name, pid, ok, c.pid, c.parsed)
		}
	}
}

func TestMeasureRowRateNeedsLFCOff(t *testing.T) {
	env := &Env{Kea: &Kea{config: Config{LFCInterval: time.Second}}}
	if _, err := MeasureRowRate(t.Context(), env, Load{Rate: 1, Duration: time.Second}); err == nil {
		t.Error("MeasureRowRate accepted a Kea with LFC on")
	}
}

func TestRowRatePerSecond(t *testing.T) {
	if got := (RowRate{Rows: 300, Elapsed: 2 * time.Second}).PerSecond(); got != 150 {
		t.Errorf("PerSecond = %v, want 150", got)
	}
	if got := (RowRate{}).PerSecond(); got != 0 {
		t.Errorf("PerSecond of nothing = %v, want 0", got)
	}
}

func TestRequireSkipVariable(t *testing.T) {
	cases := []struct {
		value     string
		wantSkip  bool
		wantFatal bool
	}{
		{"1", true, false},
		{"yes", false, true},
		{"0", false, true},
	}
	for _, c := range cases {
		t.Run(c.value, func(t *testing.T) {
			t.Setenv(SkipEnv, c.value)
			rec := &stopRecorder{TB: t}
			func() {
				defer func() { _ = recover() }()
				Require(rec)
			}()
			if rec.skipped != c.wantSkip || rec.fatal != c.wantFatal {
				t.Errorf("Require with %s=%s: skipped %v, fatal %v; want %v, %v", SkipEnv, c.value, rec.skipped, rec.fatal, c.wantSkip, c.wantFatal)
			}
			if !strings.Contains(rec.message, SkipEnv) {
				t.Errorf("Require message %q does not name %s", rec.message, SkipEnv)
			}
		})
	}
}

// stopRecorder records Skipf and Fatalf instead of stopping the test, and
// unwinds the caller with a panic as the real methods do with Goexit.
type stopRecorder struct {
	testing.TB
	skipped bool
	fatal   bool
	message string
}

func (r *stopRecorder) Helper() {}

func (r *stopRecorder) Skipf(format string, args ...any) {
	r.skipped = true
	r.message = fmt.Sprintf(format, args...)
	panic("skip")
}

func (r *stopRecorder) Fatalf(format string, args ...any) {
	r.fatal = true
	r.message = fmt.Sprintf(format, args...)
	panic("fatal")
}
