package codec

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestDUID(t *testing.T) {
	mac := b(0x00, 0x00, 0x5e, 0x00, 0x53, 0xfe)
	uuid := [16]byte{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}
	tests := []struct {
		name   string
		duid   DUID
		wire   []byte
		string string
	}{
		{
			name: "LLT",
			duid: NewDUIDLLT(1, DHCPTime(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)), mac),
			wire: cat(
				b(0x00, 0x01),             // DUID-LLT
				b(0x00, 0x01),             // hardware type 1, Ethernet
				b(0x2d, 0x24, 0xbd, 0x00), // time 757382400, 2024-01-01
				mac,                       // link-layer address
			),
			string: "DUID-LLT hw=1 time=757382400 ll=00:00:5e:00:53:fe",
		},
		{
			name: "EN",
			duid: NewDUIDEN(32473, []byte("relay-a")),
			wire: cat(
				b(0x00, 0x02),             // DUID-EN
				b(0x00, 0x00, 0x7e, 0xd9), // enterprise number 32473
				[]byte("relay-a"),         // identifier
			),
			string: "DUID-EN en=32473 id=72656c61792d61",
		},
		{
			name: "LL",
			duid: NewDUIDLL(1, mac),
			wire: cat(
				b(0x00, 0x03), // DUID-LL
				b(0x00, 0x01), // hardware type 1
				mac,           // link-layer address
			),
			string: "DUID-LL hw=1 ll=00:00:5e:00:53:fe",
		},
		{
			name: "UUID",
			duid: NewDUIDUUID(uuid),
			wire: cat(
				b(0x00, 0x04), // DUID-UUID
				uuid[:],       // UUID
			),
			string: "DUID-UUID 12345678-9abc-def0-0123-456789abcdef",
		},
		{
			name: "unknown type",
			duid: DUID{Type: 9, Identifier: b(0xca, 0xfe)},
			wire: cat(
				b(0x00, 0x09), // type 9, not assigned
				b(0xca, 0xfe), // opaque rest
			),
			string: "DUIDType(9) cafe",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := tt.duid.AppendTo(nil)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, tt.wire) {
				t.Errorf("AppendTo = %x, want %x", out, tt.wire)
			}
			if tt.duid.Len() != len(tt.wire) {
				t.Errorf("Len = %d, want %d", tt.duid.Len(), len(tt.wire))
			}
			parsed, err := ParseDUID(tt.wire)
			if err != nil {
				t.Fatal(err)
			}
			if parsed.String() != tt.string {
				t.Errorf("String = %q, want %q", parsed.String(), tt.string)
			}
			again, _ := parsed.AppendTo(nil)
			if !bytes.Equal(again, tt.wire) {
				t.Errorf("parsed DUID re-encodes as %x", again)
			}
		})
	}
}

func TestDUIDInvalid(t *testing.T) {
	tests := []struct {
		name string
		wire []byte
	}{
		{"empty", nil},
		{"2 octets", b(0, 3)},
		{"131 octets", cat(b(0, 2, 0, 0, 0, 1), repeat('x', 125))},
		{"LLT without address", cat(b(0, 1, 0, 1), repeat(0, 4))},
		{"EN without identifier", b(0, 2, 0, 0, 0x7e, 0xd9)},
		{"LL without address", b(0, 3, 0, 1)},
		{"UUID of 15 octets", cat(b(0, 4), repeat(1, 15))},
		{"UUID of 17 octets", cat(b(0, 4), repeat(1, 17))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseDUID(tt.wire); !errors.Is(err, ErrInvalidDUID) {
				t.Errorf("ParseDUID = %v, want ErrInvalidDUID", err)
			}
		})
	}
	// The encoder refuses what the parser would refuse, leaving b as it was.
	d := NewDUIDLL(1, nil)
	out, err := d.AppendTo(b(7))
	if !errors.Is(err, ErrInvalidDUID) || !bytes.Equal(out, b(7)) {
		t.Errorf("AppendTo of an empty DUID-LL = %x, %v", out, err)
	}
	long := NewDUIDEN(1, repeat('x', 125))
	if _, err := long.AppendTo(nil); !errors.Is(err, ErrInvalidDUID) {
		t.Errorf("AppendTo of a 131-octet DUID = %v", err)
	}
	max := NewDUIDEN(1, repeat('x', 124))
	if out, err := max.AppendTo(nil); err != nil || len(out) != MaxDUIDLen {
		t.Errorf("AppendTo of a 130-octet DUID = %d octets, %v", len(out), err)
	}
}

func TestDHCPTime(t *testing.T) {
	tests := []struct {
		name string
		time time.Time
		dhcp uint32
	}{
		{"epoch", time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), 0},
		{"vectors base time", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), 820540800},
		{"other zone", time.Date(2026, 1, 1, 1, 0, 0, 0, time.FixedZone("CET", 3600)), 820540800},
		{"fraction dropped", time.Date(2026, 1, 1, 0, 0, 0, 999999999, time.UTC), 820540800},
		{"last before wrap", time.Date(2136, 2, 7, 6, 28, 15, 0, time.UTC), 0xffffffff},
		{"wraps", time.Date(2136, 2, 7, 6, 28, 16, 0, time.UTC), 0},
		{"before epoch", time.Date(1999, 12, 31, 23, 59, 59, 0, time.UTC), 0xffffffff},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := DHCPTime(tt.time); got != tt.dhcp {
				t.Errorf("DHCPTime = %d, want %d", got, tt.dhcp)
			}
		})
	}
	if got := TimeFromDHCP(820540800); !got.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) || got.Location() != time.UTC {
		t.Errorf("TimeFromDHCP = %v", got)
	}
	if got := TimeFromDHCP(0xffffffff); !got.Equal(time.Date(2136, 2, 7, 6, 28, 15, 0, time.UTC)) {
		t.Errorf("TimeFromDHCP(max) = %v", got)
	}
}

func TestTimeFromDHCPNear(t *testing.T) {
	ref := time.Date(2136, 2, 7, 6, 28, 0, 0, time.UTC) // 16 s before the wrap
	tests := []struct {
		name string
		v    uint32
		want time.Time
	}{
		{"after wrap", 5, time.Date(2136, 2, 7, 6, 28, 21, 0, time.UTC)},
		{"before wrap", 0xffffffef, time.Date(2136, 2, 7, 6, 27, 59, 0, time.UTC)},
		{"exactly ref", DHCPTime(ref), ref},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := TimeFromDHCPNear(tt.v, ref); !got.Equal(tt.want) {
				t.Errorf("TimeFromDHCPNear = %v, want %v", got, tt.want)
			}
		})
	}
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	if got := TimeFromDHCPNear(DHCPTime(now.Add(-time.Hour)), now); !got.Equal(now.Add(-time.Hour)) {
		t.Errorf("an hour ago = %v", got)
	}
}

func TestCodeStrings(t *testing.T) {
	tests := []struct {
		got, want string
	}{
		{MsgActiveLeasequery.String(), "ACTIVELEASEQUERY"},
		{MsgStartTLS.String(), "STARTTLS"},
		{MsgLeasequeryData.String(), "LEASEQUERY-DATA"},
		{MsgRelayForw.String(), "RELAY-FORW"},
		{MsgType(0).String(), "MsgType(0)"},
		{MsgType(200).String(), "MsgType(200)"},
		{OptLQQuery.String(), "OPTION_LQ_QUERY"},
		{OptLQEndTime.String(), "OPTION_LQ_END_TIME"},
		{OptionCode(999).String(), "OptionCode(999)"},
		{StatusSuccess.String(), "Success"},
		{StatusTLSConnectionRefused.String(), "TLSConnectionRefused"},
		{StatusCode(16).String(), "StatusCode(16)"},
		{QueryByRemoteID.String(), "QUERY_BY_REMOTE_ID"},
		{QueryType(0).String(), "QueryType(0)"},
		{DUIDUUID.String(), "DUID-UUID"},
		{DUIDType(0).String(), "DUIDType(0)"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("String() = %q, want %q", tt.got, tt.want)
		}
	}
	// Every status code 0-15 has a name.
	for s := StatusSuccess; s <= StatusTLSConnectionRefused; s++ {
		if s.String() == "" || s.String()[0] == 'S' && s.String() != "Success" {
			t.Errorf("status %d has no name: %q", s, s.String())
		}
	}
	// Every message type 1-23 has a name.
	for m := MsgSolicit; m <= MsgStartTLS; m++ {
		if m.String()[:3] == "Msg" {
			t.Errorf("message type %d has no name", m)
		}
	}
	if !QueryByLinkAddress.BulkOnly() || QueryByClientID.BulkOnly() || !QueryByAddress.Known() || QueryType(6).Known() {
		t.Error("QueryType predicates wrong")
	}
	if !MsgRelayRepl.IsRelay() || MsgLeasequery.IsRelay() {
		t.Error("IsRelay wrong")
	}
}
