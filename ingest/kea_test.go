package ingest

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/alqd/alqd/store"
)

// keaHeader is the header of a Kea 2.2 lease file (memfile schema 4.0).
const keaHeader = "address,duid,valid_lifetime,expire,subnet_id,pref_lifetime,lease_type,iaid,prefix_len,fqdn_fwd,fqdn_rev,hostname,hwaddr,state,user_context,hwtype,hwaddr_source"

// keaRelayContext is the escaped user_context Kea 2.2 wrote for the relayed
// client 00:0c:02:00:00:01 in testdata/kea/leases6.csv.
const keaRelayContext = `{ "ISC": { "relays": [ { "hop": 0&#x2c "link": "2001:db8:2::1"&#x2c "options": "0x0012000C766574682D636C692E3130300025000E00000DE97375622D3030303030310035000A0003000102AABBCCDD01"&#x2c "peer": "2001:db8:1::2" } ] } }`

// mustHex decodes a hex fixture; spaces, tabs and newlines are ignored, and
// "#" starts a comment up to the end of the line.
func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	var digits strings.Builder
	for _, line := range strings.Split(s, "\n") {
		line, _, _ = strings.Cut(line, "#")
		digits.WriteString(strings.NewReplacer(" ", "", "\t", "").Replace(line))
	}
	b, err := hex.DecodeString(digits.String())
	if err != nil {
		t.Fatalf("bad hex fixture %q: %v", s, err)
	}
	return b
}

// readLeaseFile returns the lines of testdata/kea/leases6.csv, without
// newlines; index 0 is line 1, the header.
func readLeaseFile(t testing.TB) []string {
	t.Helper()
	file, err := os.Open("../testdata/kea/leases6.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	var lines []string
	scanner := bufio.NewScanner(file)
	scanner.Buffer(make([]byte, 64<<10), 1<<20)
	for scanner.Scan() {
		lines = append(lines, scanner.Text())
	}
	if err := scanner.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

// relayedBinding is the binding of the relayed client 00:0c:02:00:00:01 of
// the test file with the given key, lifetimes, CLTT and state.
func relayedBinding(t testing.TB, prefix string, typ store.BindingType, preferred, valid uint32, cltt int64, state store.State) store.Binding {
	return store.Binding{
		Key:               store.Key{Type: typ, Prefix: netip.MustParsePrefix(prefix)},
		ClientID:          mustHex(t, "0001000132a5cf38000c02000001"),
		IAID:              1,
		PreferredLifetime: preferred,
		ValidLifetime:     valid,
		State:             state,
		CLTT:              time.Unix(cltt, 0).UTC(),
		LinkAddress:       netip.MustParseAddr("2001:db8:2::1"),
		InterfaceID:       []byte("veth-cli.100"),
		RemoteID:          mustHex(t, "00000de9 7375622d303030303031"), // enterprise 3561, "sub-000001"
		RelayID:           mustHex(t, "0003 0001 02aabbccdd01"),        // DUID-LL, Ethernet
		RelayPeer:         netip.MustParseAddr("2001:db8:1::2"),
		Source:            store.SourceKea,
		RelayMessage: mustHex(t, `
			0c                                   # msg-type RELAY-FORW
			00                                   # hop-count 0
			20010db8000200000000000000000001     # link-address 2001:db8:2::1
			20010db8000100000000000000000002     # peer-address 2001:db8:1::2
			0012 000c 766574682d636c692e313030   # OPTION_INTERFACE_ID "veth-cli.100"
			0025 000e 00000de9 7375622d303030303031 # OPTION_REMOTE_ID 3561 "sub-000001"
			0035 000a 0003000102aabbccdd01       # OPTION_RELAY_ID DUID-LL
		`),
	}
}

// directBinding is a binding of a direct client of subnet 1 of the test file.
func directBinding(t testing.TB, prefix string, typ store.BindingType, duid string, preferred, valid uint32, cltt int64, state store.State) store.Binding {
	return store.Binding{
		Key:               store.Key{Type: typ, Prefix: netip.MustParsePrefix(prefix)},
		ClientID:          mustHex(t, duid),
		IAID:              1,
		PreferredLifetime: preferred,
		ValidLifetime:     valid,
		State:             state,
		CLTT:              time.Unix(cltt, 0).UTC(),
		LinkAddress:       netip.MustParseAddr("2001:db8:1::1"), // from SubnetLinks
		Source:            store.SourceKea,
	}
}

func TestParseRowShapes(t *testing.T) {
	lines := readLeaseFile(t)
	tests := []struct {
		name string
		line int // line number in testdata/kea/leases6.csv
		kind RowKind
		want store.Binding
	}{
		{"relayed IA_NA new", 2, RowAssign,
			relayedBinding(t, "2001:db8:2::1000/128", store.TypeNA, 20, 30, 1796412089, store.StateActive)},
		{"relayed IA_PD new", 3, RowAssign,
			relayedBinding(t, "2001:db8:9000::/56", store.TypePD, 20, 30, 1796412089, store.StateActive)},
		{"direct IA_NA new", 4, RowAssign,
			directBinding(t, "2001:db8:1::1000/128", store.TypeNA, "0001000132a5cf39000c01020304", 20, 30, 1796412089, store.StateActive)},
		{"direct IA_PD new", 5, RowAssign,
			directBinding(t, "2001:db8:8000::/56", store.TypePD, "0001000132a5cf39000c01020304", 20, 30, 1796412089, store.StateActive)},
		{"relayed IA_NA extend", 27, RowAssign,
			relayedBinding(t, "2001:db8:2::1000/128", store.TypeNA, 20, 30, 1796412090, store.StateActive)},
		{"direct IA_PD expire", 423, RowExpire,
			directBinding(t, "2001:db8:8000:2700::/56", store.TypePD, "0001000132a5cf39000c0102032b", 0, 0, 1796412099, store.StateExpired)},
		{"direct IA_PD flush", 503, RowFlush,
			directBinding(t, "2001:db8:8000:2700::/56", store.TypePD, "0001000132a5cf39000c0102032b", 0, 0, 1796412099, store.StateExpired)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Parser{SubnetLinks: map[uint32]netip.Addr{1: netip.MustParseAddr("2001:db8:1::1")}}
			if err := p.SetHeader(lines[0]); err != nil {
				t.Fatal(err)
			}
			var row Row
			if err := p.ParseRow(lines[tt.line-1], &row); err != nil {
				t.Fatalf("ParseRow(line %d): %v", tt.line, err)
			}
			if row.Kind != tt.kind {
				t.Errorf("kind = %v, want %v", row.Kind, tt.kind)
			}
			assertBinding(t, row.Binding, tt.want)
		})
	}
}

// TestParseRowRelayedRelease checks a relayed release row: valid 0, state 0,
// expire holding the old CLTT, relay information kept.
func TestParseRowRelayedRelease(t *testing.T) {
	lines := readLeaseFile(t)
	var p Parser
	if err := p.SetHeader(lines[0]); err != nil {
		t.Fatal(err)
	}
	var row Row
	if err := p.ParseRow(lines[26-1], &row); err != nil {
		t.Fatal(err)
	}
	if row.Kind != RowRelease {
		t.Errorf("kind = %v, want release", row.Kind)
	}
	b := row.Binding
	if b.State != store.StateReleased || b.ValidLifetime != 0 || b.PreferredLifetime != 0 {
		t.Errorf("state %v lifetimes %d/%d, want released 0/0", b.State, b.PreferredLifetime, b.ValidLifetime)
	}
	if want := time.Unix(1796412089, 0).UTC(); !b.CLTT.Equal(want) {
		t.Errorf("CLTT = %v, want %v (the expire column of a release row)", b.CLTT, want)
	}
	if want := mustHex(t, "00000de97375622d303030303032"); !bytes.Equal(b.RemoteID, want) {
		t.Errorf("RemoteID = %x, want %x", b.RemoteID, want)
	}
}

// TestParseRowRelayedExpireFlush checks that the reclaim row and the flush row
// of a relayed lease give the same binding, so the store records one change.
func TestParseRowRelayedExpireFlush(t *testing.T) {
	lines := readLeaseFile(t)
	var p Parser
	if err := p.SetHeader(lines[0]); err != nil {
		t.Fatal(err)
	}
	var reclaim, flush Row
	if err := p.ParseRow(lines[488-1], &reclaim); err != nil {
		t.Fatal(err)
	}
	if err := p.ParseRow(lines[568-1], &flush); err != nil {
		t.Fatal(err)
	}
	if reclaim.Kind != RowExpire || flush.Kind != RowFlush {
		t.Errorf("kinds = %v, %v; want expire, flush", reclaim.Kind, flush.Kind)
	}
	if reclaim.Binding.State != store.StateExpired {
		t.Errorf("reclaim state = %v, want expired", reclaim.Binding.State)
	}
	assertBinding(t, flush.Binding, reclaim.Binding)
}

// TestParseRowWholeFile parses every row of the test file and checks the
// counts of each shape against the file's known content.
func TestParseRowWholeFile(t *testing.T) {
	lines := readLeaseFile(t)
	var p Parser
	if err := p.SetHeader(lines[0]); err != nil {
		t.Fatal(err)
	}
	var counts [NumRowKinds]int
	relayed := 0
	var row Row
	for i, line := range lines[1:] {
		if err := p.ParseRow(line, &row); err != nil {
			t.Fatalf("line %d: %v", i+2, err)
		}
		counts[row.Kind]++
		if row.Binding.RelayMessage != nil {
			relayed++
		}
	}
	// 348 assignments, 80 reclaims, 72 releases, 80 flushes; 178 rows relayed.
	want := [NumRowKinds]int{RowAssign: 348, RowExpire: 80, RowRelease: 72, RowFlush: 80}
	if counts != want {
		t.Errorf("counts by kind = %v, want %v", counts, want)
	}
	if relayed != 178 {
		t.Errorf("relayed rows = %d, want 178", relayed)
	}
}

func TestParseRowDecline(t *testing.T) {
	var p Parser
	if err := p.SetHeader(keaHeader); err != nil {
		t.Fatal(err)
	}
	var row Row
	// A declined address: empty DUID "00", valid_lifetime is the probation period.
	line := "2001:db8:1::1005,00,86400,1796498500,1,0,0,0,128,0,0,,,1,,0,0"
	if err := p.ParseRow(line, &row); err != nil {
		t.Fatal(err)
	}
	if row.Kind != RowDecline || row.Binding.State != store.StateDeclined {
		t.Errorf("kind %v state %v, want decline, declined", row.Kind, row.Binding.State)
	}
	if !bytes.Equal(row.Binding.ClientID, []byte{0}) {
		t.Errorf("ClientID = %x, want 00, Kea's empty DUID", row.Binding.ClientID)
	}
	if row.Binding.ValidLifetime != 86400 {
		t.Errorf("ValidLifetime = %d, want the probation period 86400", row.Binding.ValidLifetime)
	}
	if want := time.Unix(1796498500-86400, 0).UTC(); !row.Binding.CLTT.Equal(want) {
		t.Errorf("CLTT = %v, want %v", row.Binding.CLTT, want)
	}
}

// TestParseRowSchemas checks that columns are found by name in older and
// newer schemas.
func TestParseRowSchemas(t *testing.T) {
	tests := []struct {
		name   string
		header string
		line   string
		state  store.State
		relay  bool
	}{
		{"schema 1.0 without state",
			"address,duid,valid_lifetime,expire,subnet_id,pref_lifetime,lease_type,iaid,prefix_len,fqdn_fwd,fqdn_rev,hostname",
			"2001:db8:1::1,00:01:02:03,30,1796412119,1,20,0,7,128,0,0,",
			store.StateActive, false},
		{"schema 3.0 with state, no user_context",
			"address,duid,valid_lifetime,expire,subnet_id,pref_lifetime,lease_type,iaid,prefix_len,fqdn_fwd,fqdn_rev,hostname,hwaddr,state",
			"2001:db8:1::1,00:01:02:03,30,1796412119,1,20,0,7,128,0,0,,,2",
			store.StateExpired, false},
		{"schema 5.0 with pool_id",
			keaHeader + ",pool_id",
			"2001:db8:1::1,00:01:02:03,30,1796412119,1,20,0,7,128,0,0,,,0," + keaRelayContext + ",1,2,0",
			store.StateActive, true},
		{"reordered columns",
			"duid,address,state,valid_lifetime,expire,subnet_id,pref_lifetime,lease_type,iaid,prefix_len,user_context",
			"00:01:02:03,2001:db8:1::1,0,30,1796412119,1,20,0,7,128," + keaRelayContext,
			store.StateActive, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Parser
			if err := p.SetHeader(tt.header); err != nil {
				t.Fatal(err)
			}
			var row Row
			if err := p.ParseRow(tt.line, &row); err != nil {
				t.Fatal(err)
			}
			b := row.Binding
			if b.Prefix != netip.MustParsePrefix("2001:db8:1::1/128") || b.IAID != 7 || !bytes.Equal(b.ClientID, []byte{0, 1, 2, 3}) {
				t.Errorf("binding %v iaid %d duid %x, want 2001:db8:1::1/128, 7, 00010203", b.Prefix, b.IAID, b.ClientID)
			}
			if b.State != tt.state {
				t.Errorf("state = %v, want %v", b.State, tt.state)
			}
			if got := b.RelayMessage != nil; got != tt.relay {
				t.Errorf("relayed = %v, want %v", got, tt.relay)
			}
		})
	}
}

func TestSetHeaderErrors(t *testing.T) {
	tests := []struct {
		name   string
		header string
	}{
		{"missing expire", "address,duid,valid_lifetime,subnet_id,pref_lifetime,lease_type,iaid,prefix_len"},
		{"duplicate address", "address,duid,valid_lifetime,expire,subnet_id,pref_lifetime,lease_type,iaid,prefix_len,address"},
		{"a row, not a header", "2001:db8:1::1000,00:01:00:01,30,1796412119,1,20,0,1,128,0,0,,00:0c:01:02:03:04,0,,1,2"},
		{"empty", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Parser
			err := p.SetHeader(tt.header)
			if !errors.Is(err, ErrNoHeader) {
				t.Fatalf("SetHeader = %v, want ErrNoHeader", err)
			}
			var row Row
			if err := p.ParseRow("2001:db8::1,00:01:02,30,100,1,20,0,1,128", &row); !errors.Is(err, ErrNoHeader) {
				t.Errorf("ParseRow after a bad header = %v, want ErrNoHeader", err)
			}
		})
	}
}

func TestParseRowMalformed(t *testing.T) {
	const good = "2001:db8:1::1000,00:01:00:01:32:a5:cf:39,30,1796412119,1,20,0,1,128,0,0,,00:0c:01:02:03:04,0,,1,2"
	// replace returns good with column i set to value.
	replace := func(i int, value string) string {
		fields := strings.Split(good, ",")
		fields[i] = value
		return strings.Join(fields, ",")
	}
	const (
		colAddress, colDUID, colValid, colExpire, colSubnet, colPreferred = 0, 1, 2, 3, 4, 5
		colType, colIAID, colPrefixLen, colHostname, colState, colContext = 6, 7, 8, 11, 13, 14
	)
	const pd = "2001:db8:8000::,00:01:00:01:32:a5:cf:39,30,1796412119,1,20,2,1,56,0,0,,00:0c:01:02:03:04,0,,1,2"
	replacePD := func(i int, value string) string {
		fields := strings.Split(pd, ",")
		fields[i] = value
		return strings.Join(fields, ",")
	}
	tests := []struct {
		name   string
		line   string
		column string
		want   error
	}{
		{"prefix accepted", pd, "", nil},
		{"too few columns", "2001:db8:1::1000,00:01,30", "", ErrColumnCount},
		{"too many columns", good + ",extra", "", ErrColumnCount},
		{"escaped comma split", replace(colHostname, "a,b"), "", ErrColumnCount},
		{"address not IP", replace(colAddress, "2001:db8:1::zz"), "address", ErrInvalidAddress},
		{"address IPv4", replace(colAddress, "192.0.2.1"), "address", ErrInvalidAddress},
		{"address IPv4-mapped", replace(colAddress, "::ffff:192.0.2.1"), "address", ErrInvalidAddress},
		{"address with zone", replace(colAddress, "fe80::1%eth0"), "address", ErrInvalidAddress},
		{"address empty", replace(colAddress, ""), "address", ErrInvalidAddress},
		{"prefix with host bits", replacePD(colAddress, "2001:db8:8000::1"), "address", ErrInvalidAddress},
		{"prefix_len too long", replacePD(colPrefixLen, "129"), "prefix_len", ErrInvalidNumber},
		{"prefix_len not a number", replacePD(colPrefixLen, "x"), "prefix_len", ErrInvalidNumber},
		{"DUID bad hex digit", replace(colDUID, "00:01:0g"), "duid", ErrInvalidHex},
		{"DUID three digit group", replace(colDUID, "00:001:02"), "duid", ErrInvalidHex},
		{"DUID empty group", replace(colDUID, "00::02"), "duid", ErrInvalidHex},
		{"DUID trailing colon", replace(colDUID, "00:01:"), "duid", ErrInvalidHex},
		{"DUID odd plain hex", replace(colDUID, "0001020"), "duid", ErrInvalidHex},
		{"empty DUID on an assigned lease", replace(colDUID, "00"), "duid", ErrEmptyDUID},
		{"valid negative", replace(colValid, "-1"), "valid_lifetime", ErrInvalidNumber},
		{"valid over 32 bits", replace(colValid, "4294967296"), "valid_lifetime", ErrInvalidNumber},
		{"valid with sign", replace(colValid, "+30"), "valid_lifetime", ErrInvalidNumber},
		{"valid empty", replace(colValid, ""), "valid_lifetime", ErrInvalidNumber},
		{"preferred fraction", replace(colPreferred, "2.5"), "pref_lifetime", ErrInvalidNumber},
		{"expire not a number", replace(colExpire, "soon"), "expire", ErrInvalidNumber},
		{"expire before valid", replace(colExpire, "10"), "expire", ErrInvalidNumber},
		{"expire huge", replace(colExpire, "99999999999999999999"), "expire", ErrInvalidNumber},
		{"CLTT after 2262", replace(colExpire, "9300000000"), "expire", ErrInvalidNumber},
		{"CLTT before 2000", replace(colExpire, "946684829"), "expire", ErrInvalidNumber},
		{"CLTT at 2000-01-01", replace(colExpire, "946684830"), "", nil},
		{"CLTT after 2136-02-07", replace(colExpire, "5241652126"), "expire", ErrInvalidNumber},
		{"address unspecified", replace(colAddress, "::"), "address", ErrInvalidAddress},
		{"address loopback", replace(colAddress, "::1"), "address", ErrInvalidAddress},
		{"address multicast", replace(colAddress, "ff02::1"), "address", ErrInvalidAddress},
		{"address link-local", replace(colAddress, "fe80::1"), "address", ErrInvalidAddress},
		{"prefix multicast", replacePD(colAddress, "ff00::"), "address", ErrInvalidAddress},
		{"DUID over 130 bytes", replace(colDUID, strings.Repeat("ab", 131)), "duid", ErrInvalidHex},
		{"iaid over 32 bits", replace(colIAID, "4294967296"), "iaid", ErrInvalidNumber},
		{"subnet_id hex", replace(colSubnet, "0x1"), "subnet_id", ErrInvalidNumber},
		{"lease_type 3", replace(colType, "3"), "lease_type", ErrInvalidNumber},
		{"state 5", replace(colState, "5"), "state", ErrInvalidNumber},
		{"user_context not JSON", replace(colContext, "{ISC"), "user_context", ErrInvalidUserContext},
		{"user_context bad escape", replace(colContext, `{"a":"&#xZZ"}`), "user_context", ErrInvalidEscape},
		{"user_context cut escape", replace(colContext, `{"a":1}&#x2`), "user_context", ErrInvalidEscape},
		{"user_context relays not a list", replace(colContext, `{"ISC":{"relays":{}}}`), "user_context", ErrInvalidUserContext},
		{"relay without link", replace(colContext, `{"ISC":{"relays":[{"hop":0&#x2c"peer":"2001:db8::2"}]}}`), "user_context", ErrInvalidUserContext},
		{"relay link not IPv6", replace(colContext, `{"ISC":{"relays":[{"hop":0&#x2c"link":"10.0.0.1"&#x2c"peer":"2001:db8::2"}]}}`), "user_context", ErrInvalidAddress},
		{"relay hop too big", replace(colContext, `{"ISC":{"relays":[{"hop":256&#x2c"link":"::"&#x2c"peer":"::"}]}}`), "user_context", ErrInvalidUserContext},
		{"relay options bad hex", replace(colContext, `{"ISC":{"relays":[{"hop":0&#x2c"link":"::"&#x2c"peer":"::"&#x2c"options":"0x00120"}]}}`), "user_context", ErrInvalidHex},
		{"relay options truncated", replace(colContext, `{"ISC":{"relays":[{"hop":0&#x2c"link":"::"&#x2c"peer":"::"&#x2c"options":"0x0012000C7665"}]}}`), "user_context", ErrInvalidRelayOptions},
		{"relay options repeat interface-id", replace(colContext, `{"ISC":{"relays":[{"hop":0&#x2c"link":"::"&#x2c"peer":"::"&#x2c"options":"0x00120001410012000142"}]}}`), "user_context", ErrInvalidRelayOptions},
		{"relay options short remote-id", replace(colContext, `{"ISC":{"relays":[{"hop":0&#x2c"link":"::"&#x2c"peer":"::"&#x2c"options":"0x00250002ABCD"}]}}`), "user_context", ErrInvalidRelayOptions},
		{"relay options carry relay message", replace(colContext, `{"ISC":{"relays":[{"hop":0&#x2c"link":"::"&#x2c"peer":"::"&#x2c"options":"0x00090000"}]}}`), "user_context", ErrInvalidRelayOptions},
		{"relay-info remote-id bad hex", replace(colContext, `{"ISC":{"relay-info":[{"hop":0&#x2c"link":"::"&#x2c"peer":"::"&#x2c"remote-id":"XY"}]}}`), "user_context", ErrInvalidHex},
		{"relay chain over 4096 bytes", replace(colContext, `{"ISC":{"relays":[{"hop":0&#x2c"link":"::"&#x2c"peer":"::"&#x2c"options":"0x00120FDB`+strings.Repeat("41", 4059)+`"}]}}`), "user_context", ErrInvalidRelayOptions},
		{"relay chain at 4096 bytes", replace(colContext, `{"ISC":{"relays":[{"hop":0&#x2c"link":"::"&#x2c"peer":"::"&#x2c"options":"0x00120FDA`+strings.Repeat("41", 4058)+`"}]}}`), "", nil},
		{"too many relays", replace(colContext, `{"ISC":{"relays":[`+strings.Repeat(`{"hop":0&#x2c"link":"::"&#x2c"peer":"::"}&#x2c`, 32)+`{"hop":0&#x2c"link":"::"&#x2c"peer":"::"}]}}`), "user_context", ErrTooManyRelays},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Parser
			if err := p.SetHeader(keaHeader); err != nil {
				t.Fatal(err)
			}
			var row Row
			err := p.ParseRow(tt.line, &row)
			if !errors.Is(err, tt.want) {
				t.Fatalf("ParseRow = %v, want %v", err, tt.want)
			}
			if tt.want == nil {
				return
			}
			var rowErr *RowError
			if !errors.As(err, &rowErr) {
				t.Fatalf("error %T is not a *RowError", err)
			}
			if rowErr.Column != tt.column {
				t.Errorf("column = %q, want %q", rowErr.Column, tt.column)
			}
			// The parser must still work for the next good row.
			if err := p.ParseRow(good, &row); err != nil {
				t.Errorf("ParseRow(good) after the error: %v", err)
			}
		})
	}
}

// TestParseRowKeepsBytes checks that bindings stay intact while the parser
// goes on: their bytes live in blocks the parser never writes again.
func TestParseRowKeepsBytes(t *testing.T) {
	lines := readLeaseFile(t)
	var p Parser
	if err := p.SetHeader(lines[0]); err != nil {
		t.Fatal(err)
	}
	kept := make([]store.Binding, 0, len(lines))
	var row Row
	for _, line := range lines[1:] {
		if err := p.ParseRow(line, &row); err != nil {
			t.Fatal(err)
		}
		kept = append(kept, row.Binding)
	}
	var again Parser
	if err := again.SetHeader(lines[0]); err != nil {
		t.Fatal(err)
	}
	for i, line := range lines[1:] {
		if err := again.ParseRow(line, &row); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(kept[i], row.Binding) {
			t.Fatalf("binding of line %d changed after later rows were parsed", i+2)
		}
	}
}

// assertBinding compares two bindings field by field, for readable failures.
func assertBinding(t testing.TB, got, want store.Binding) {
	t.Helper()
	if got.Key != want.Key {
		t.Errorf("Key = %v %v, want %v %v", got.Type, got.Prefix, want.Type, want.Prefix)
	}
	if !bytes.Equal(got.ClientID, want.ClientID) {
		t.Errorf("ClientID = %x, want %x", got.ClientID, want.ClientID)
	}
	if got.IAID != want.IAID {
		t.Errorf("IAID = %d, want %d", got.IAID, want.IAID)
	}
	if got.Source != want.Source {
		t.Errorf("Source = %v, want %v", got.Source, want.Source)
	}
	if got.PreferredLifetime != want.PreferredLifetime || got.ValidLifetime != want.ValidLifetime {
		t.Errorf("lifetimes = %d/%d, want %d/%d", got.PreferredLifetime, got.ValidLifetime, want.PreferredLifetime, want.ValidLifetime)
	}
	if got.State != want.State {
		t.Errorf("State = %v, want %v", got.State, want.State)
	}
	if !got.CLTT.Equal(want.CLTT) {
		t.Errorf("CLTT = %v, want %v", got.CLTT, want.CLTT)
	}
	if got.LinkAddress != want.LinkAddress {
		t.Errorf("LinkAddress = %v, want %v", got.LinkAddress, want.LinkAddress)
	}
	if !bytes.Equal(got.InterfaceID, want.InterfaceID) {
		t.Errorf("InterfaceID = %x, want %x", got.InterfaceID, want.InterfaceID)
	}
	if !bytes.Equal(got.RemoteID, want.RemoteID) {
		t.Errorf("RemoteID = %x, want %x", got.RemoteID, want.RemoteID)
	}
	if !bytes.Equal(got.RelayID, want.RelayID) {
		t.Errorf("RelayID = %x, want %x", got.RelayID, want.RelayID)
	}
	if got.RelayPeer != want.RelayPeer {
		t.Errorf("RelayPeer = %v, want %v", got.RelayPeer, want.RelayPeer)
	}
	if !bytes.Equal(got.RelayMessage, want.RelayMessage) {
		t.Errorf("RelayMessage = %x, want %x", got.RelayMessage, want.RelayMessage)
	}
}
