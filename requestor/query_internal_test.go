package requestor

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/alqd/alqd/codec"
)

// cat joins byte fixtures.
func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

var (
	fixtureDUID = []byte{0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x5e, 0x00, 0x53, 0xaa} // DUID-LL 00:00:5e:00:53:aa
	fixtureLink = netip.MustParseAddr("2001:db8:1::1")
	linkBytes   = []byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1} // 2001:db8:1::1
	unspecified = make([]byte, 16)                                                   // ::
)

func TestQueryEncoding(t *testing.T) {
	tests := []struct {
		name  string
		query Query
		want  []byte
	}{
		{"address with link, relay data and times", Query{
			Type: codec.QueryByAddress, Link: fixtureLink, Address: netip.MustParseAddr("2001:db8:1::10"),
			RelayData: true, StartTime: 0x30e86770, HasStartTime: true, EndTime: 0x30e87580, HasEndTime: true,
		}, cat(
			[]byte{0x0e, 0x12, 0x34, 0x56}, // LEASEQUERY, transaction-id 0x123456
			[]byte{0x00, 0x01, 0x00, 0x0a}, // OPTION_CLIENTID, 10 octets
			fixtureDUID,                    //   requestor DUID
			[]byte{0x00, 0x06, 0x00, 0x02}, // OPTION_ORO, 2 octets
			[]byte{0x00, 0x64},             //   OPTION_LQ_BASE_TIME
			[]byte{0x00, 0x2c, 0x00, 0x33}, // OPTION_LQ_QUERY, 51 octets
			[]byte{0x01},                   //   QUERY_BY_ADDRESS
			linkBytes,                      //   link-address 2001:db8:1::1
			[]byte{0x00, 0x05, 0x00, 0x18}, //   OPTION_IAADDR, 24 octets
			[]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10}, //     2001:db8:1::10
			[]byte{0, 0, 0, 0, 0, 0, 0, 0},                                        //     lifetimes 0/0
			[]byte{0x00, 0x06, 0x00, 0x02},                                        //   OPTION_ORO, 2 octets
			[]byte{0x00, 0x2f},                                                    //     OPTION_LQ_RELAY_DATA
			[]byte{0x00, 0x65, 0x00, 0x04},                                        // OPTION_LQ_START_TIME
			[]byte{0x30, 0xe8, 0x67, 0x70},                                        //   820537200
			[]byte{0x00, 0x66, 0x00, 0x04},                                        // OPTION_LQ_END_TIME
			[]byte{0x30, 0xe8, 0x75, 0x80},                                        //   820540800
		)},
		{"client-id without base-time", Query{
			Type: codec.QueryByClientID, ClientID: []byte{0, 3, 0, 1, 0, 0, 0x5e, 0, 0x53, 0x01}, OmitBaseTime: true,
		}, cat(
			[]byte{0x0e, 0x12, 0x34, 0x56},                // LEASEQUERY
			[]byte{0x00, 0x01, 0x00, 0x0a},                // OPTION_CLIENTID
			fixtureDUID,                                   //   requestor DUID
			[]byte{0x00, 0x2c, 0x00, 0x1f},                // OPTION_LQ_QUERY, 31 octets
			[]byte{0x02},                                  //   QUERY_BY_CLIENTID
			unspecified,                                   //   link-address ::
			[]byte{0x00, 0x01, 0x00, 0x0a},                //   OPTION_CLIENTID
			[]byte{0, 3, 0, 1, 0, 0, 0x5e, 0, 0x53, 0x01}, //     client DUID
		)},
		{"remote-id", Query{
			Type: codec.QueryByRemoteID, RemoteID: codec.RemoteID{EnterpriseNumber: 32473, ID: []byte("port-7")},
		}, cat(
			[]byte{0x0e, 0x12, 0x34, 0x56}, // LEASEQUERY
			[]byte{0x00, 0x01, 0x00, 0x0a}, // OPTION_CLIENTID
			fixtureDUID,                    //   requestor DUID
			[]byte{0x00, 0x06, 0x00, 0x02}, // OPTION_ORO
			[]byte{0x00, 0x64},             //   OPTION_LQ_BASE_TIME
			[]byte{0x00, 0x2c, 0x00, 0x1f}, // OPTION_LQ_QUERY, 31 octets
			[]byte{0x05},                   //   QUERY_BY_REMOTE_ID
			unspecified,                    //   link-address ::
			[]byte{0x00, 0x25, 0x00, 0x0a}, //   OPTION_REMOTE_ID, 10 octets
			[]byte{0x00, 0x00, 0x7e, 0xd9}, //     enterprise 32473
			[]byte("port-7"),               //     remote-id
		)},
		{"link-address", Query{Type: codec.QueryByLinkAddress, Link: fixtureLink, OmitBaseTime: true}, cat(
			[]byte{0x0e, 0x12, 0x34, 0x56}, // LEASEQUERY
			[]byte{0x00, 0x01, 0x00, 0x0a}, // OPTION_CLIENTID
			fixtureDUID,                    //   requestor DUID
			[]byte{0x00, 0x2c, 0x00, 0x11}, // OPTION_LQ_QUERY, 17 octets
			[]byte{0x04},                   //   QUERY_BY_LINK_ADDRESS
			linkBytes,                      //   link-address 2001:db8:1::1
		)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.query.Validate(); err != nil {
				t.Fatal(err)
			}
			got, err := tc.query.appendLeasequery(nil, 0x123456, fixtureDUID)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := codec.AppendFrame(nil, tc.want)
			if !bytes.Equal(got, want) {
				t.Errorf("encoded\n% x\nwant\n% x", got, want)
			}
		})
	}
}

func TestActiveQueryEncoding(t *testing.T) {
	relayFilter := &Query{Type: codec.QueryByRelayID, RelayID: []byte{0, 2, 0, 0, 0x7e, 0xd9, 'r'},
		EndTime: 99, HasEndTime: true, StartTime: 1, HasStartTime: true}
	tests := []struct {
		name  string
		query ActiveQuery
		want  []byte
	}{
		{"everything with relay data", ActiveQuery{RelayData: true, StartTime: 7, HasStartTime: true}, cat(
			[]byte{0x16, 0x12, 0x34, 0x56}, // ACTIVELEASEQUERY
			[]byte{0x00, 0x01, 0x00, 0x0a}, // OPTION_CLIENTID
			fixtureDUID,                    //   requestor DUID
			[]byte{0x00, 0x06, 0x00, 0x04}, // OPTION_ORO, 4 octets
			[]byte{0x00, 0x64, 0x00, 0x2f}, //   LQ_BASE_TIME, LQ_RELAY_DATA
			[]byte{0x00, 0x65, 0x00, 0x04}, // OPTION_LQ_START_TIME
			[]byte{0, 0, 0, 7},             //   7
		)},
		{"filter, whose own times are dropped", ActiveQuery{Filter: relayFilter, RelayData: true}, cat(
			[]byte{0x16, 0x12, 0x34, 0x56},      // ACTIVELEASEQUERY
			[]byte{0x00, 0x01, 0x00, 0x0a},      // OPTION_CLIENTID
			fixtureDUID,                         //   requestor DUID
			[]byte{0x00, 0x06, 0x00, 0x02},      // OPTION_ORO
			[]byte{0x00, 0x64},                  //   LQ_BASE_TIME
			[]byte{0x00, 0x2c, 0x00, 0x22},      // OPTION_LQ_QUERY, 34 octets
			[]byte{0x03},                        //   QUERY_BY_RELAY_ID
			unspecified,                         //   link-address ::
			[]byte{0x00, 0x35, 0x00, 0x07},      //   OPTION_RELAY_ID
			[]byte{0, 2, 0, 0, 0x7e, 0xd9, 'r'}, //     relay DUID
			[]byte{0x00, 0x06, 0x00, 0x02},      //   OPTION_ORO
			[]byte{0x00, 0x2f},                  //     LQ_RELAY_DATA
		)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.query.appendActiveLeasequery(nil, 0x123456, fixtureDUID)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := codec.AppendFrame(nil, tc.want)
			if !bytes.Equal(got, want) {
				t.Errorf("encoded\n% x\nwant\n% x", got, want)
			}
		})
	}
}

func TestQueryValidate(t *testing.T) {
	bad := []Query{
		{Type: codec.QueryByAddress},
		{Type: codec.QueryByAddress, Address: netip.MustParseAddr("192.0.2.1")},
		{Type: codec.QueryByAddress, Address: netip.MustParseAddr("::ffff:192.0.2.1")},
		{Type: codec.QueryByClientID, ClientID: []byte{1}},
		{Type: codec.QueryByRelayID},
		{Type: codec.QueryByLinkAddress},
		{Type: codec.QueryByRemoteID, RemoteID: codec.RemoteID{EnterpriseNumber: 1}},
		{Type: 0},
		{Type: 6, Link: fixtureLink},
		{Type: codec.QueryByLinkAddress, Link: netip.MustParseAddr("192.0.2.1")},
		{Type: codec.QueryByLinkAddress, Link: fixtureLink, StartTime: 10, HasStartTime: true, EndTime: 9, HasEndTime: true},
	}
	for i, q := range bad {
		if err := q.Validate(); err == nil {
			t.Errorf("query %d (%v) is valid, want ErrInvalidQuery", i, q.Type)
		}
	}
}

func TestServerAddress(t *testing.T) {
	tests := []struct{ in, want string }{
		{"192.0.2.1", "192.0.2.1:547"},
		{"192.0.2.1:1547", "192.0.2.1:1547"},
		{"2001:db8::1", "[2001:db8::1]:547"},
		{"[2001:db8::1]", "[2001:db8::1]:547"},
		{"[2001:db8::1]:15470", "[2001:db8::1]:15470"},
		{"dhcp.example", "dhcp.example:547"},
	}
	for _, tc := range tests {
		got, err := ServerAddress(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ServerAddress(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "host:0", "host:99999", ":547"} {
		if _, err := ServerAddress(in); err == nil {
			t.Errorf("ServerAddress(%q) succeeded, want an error", in)
		}
	}
}
