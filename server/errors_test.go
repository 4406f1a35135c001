package server

import (
	"net/netip"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
)

// message builds a client/server message with the given options.
func message(t codec.MsgType, xid uint32, opts ...codec.Option) []byte {
	m := codec.Message{Type: t, TransactionID: xid, Options: opts}
	b, err := m.AppendTo(nil)
	if err != nil {
		panic(err)
	}
	return b
}

func TestQueryErrors(t *testing.T) {
	st := openStore(t, nil)
	seed(t, st, binding("2001:db8:1::10/128", duid(1), "2001:db8:1::1"))
	cfg := testConfig()
	cfg.Served = []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")}
	srv := startServer(t, st, cfg)

	lqOption := func(q codec.LQQuery) codec.Option {
		b, _ := q.AppendTo(nil)
		return codec.Option{Code: codec.OptLQQuery, Data: b[codec.OptionHeaderLen:]}
	}
	otherServer := []byte{0x00, 0x03, 0x00, 0x01, 0x02, 0x00, 0x5e, 0x00, 0x53, 0x99}

	tests := []struct {
		name string
		msg  []byte
		want codec.StatusCode
	}{
		{"unknown query type", leasequery(1, codec.LQQuery{QueryType: 9, LinkAddress: netip.IPv6Unspecified()}), codec.StatusUnknownQueryType},
		{"no LQ_QUERY", message(codec.MsgLeasequery, 2, codec.Option{Code: codec.OptClientID, Data: requestorDUID}), codec.StatusMalformedQuery},
		{"no CLIENTID", message(codec.MsgLeasequery, 3, lqOption(byLink("2001:db8:1::1"))), codec.StatusMalformedQuery},
		{"address query without IAADDR", leasequery(4, codec.LQQuery{QueryType: codec.QueryByAddress, LinkAddress: netip.IPv6Unspecified()}), codec.StatusMalformedQuery},
		{"link query with ::", leasequery(5, byLink("::")), codec.StatusMalformedQuery},
		{"multicast link-address", leasequery(6, byLink("ff02::1:2")), codec.StatusMalformedQuery},
		{"link not served", leasequery(7, byLink("2001:db9::1")), codec.StatusNotConfigured},
		{"address not served", leasequery(8, byAddress("2001:db9::10")), codec.StatusNotConfigured},
		{"other server", leasequery(9, byLink("2001:db8:1::1"), codec.Option{Code: codec.OptServerID, Data: otherServer}), codec.StatusNotAllowed},
		{"undecodable option", append(leasequery(10, byLink("2001:db8:1::1")), 0, 1, 0), codec.StatusMalformedQuery},
	}
	r := dial(t, srv)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r.send(tt.msg)
			m := r.next()
			if m.Type != codec.MsgLeasequeryReply {
				t.Fatalf("got %v, want LEASEQUERY-REPLY", m.Type)
			}
			if m.TransactionID != xidOf(tt.msg) {
				t.Errorf("xid %#x, want %#x", m.TransactionID, xidOf(tt.msg))
			}
			if got := status(t, m); got != tt.want {
				t.Errorf("status %v, want %v", got, tt.want)
			}
			if m.Options.Has(codec.OptClientData) {
				t.Errorf("error reply carries OPTION_CLIENT_DATA")
			}
			if sid, _ := m.Options.ServerID(); string(sid) != string(testServerDUID) {
				t.Errorf("SERVERID %x, want ours", sid)
			}
		})
	}

	// Every error above keeps the connection usable.
	if a := r.query(0x99, byLink("2001:db8:1::1")); len(a.clientData(t)) != 1 {
		t.Errorf("query after the errors: %d CLIENT_DATA, want 1", len(a.clientData(t)))
	}
}

func TestClosingErrors(t *testing.T) {
	st := openStore(t, nil)
	seed(t, st, binding("2001:db8:1::10/128", duid(1), "2001:db8:1::1"))
	srv := startServer(t, st, testConfig())

	tests := []struct {
		name      string
		send      []byte // raw bytes, framing included
		wantType  codec.MsgType
		wantState codec.StatusCode
	}{
		{"active leasequery", frame(message(codec.MsgActiveLeasequery, 0xa1a001)), codec.MsgLeasequeryReply, codec.StatusNotSupported},
		{"unexpected message type", frame(message(codec.MsgSolicit, 1)), 0, 0},
		{"relay message type", frame(make([]byte, 40)), 0, 0},
		{"msg-size zero", []byte{0, 0}, 0, 0},
		{"msg-size over limit", []byte{0xff, 0xff, 14, 0, 0, 1}, 0, 0},
		{"garbage", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := dial(t, srv)
			r.write(tt.send)
			if tt.wantType != 0 {
				m := r.next()
				if m.Type != tt.wantType || status(t, m) != tt.wantState {
					t.Errorf("got %v %v, want %v %v", m.Type, status(t, m), tt.wantType, tt.wantState)
				}
			}
			r.waitClosed(5 * time.Second)

			// Other connections are not affected.
			if a := dial(t, srv).query(2, byLink("2001:db8:1::1")); len(a.clientData(t)) != 1 {
				t.Errorf("other connection: %d CLIENT_DATA, want 1", len(a.clientData(t)))
			}
		})
	}
}

func TestStartTLSRefused(t *testing.T) {
	srv := startServer(t, openStore(t, nil), testConfig())
	r := dial(t, srv)
	r.send(message(codec.MsgStartTLS, 0x5a5a01))
	m := r.next()
	if m.Type != codec.MsgReply || m.TransactionID != 0x5a5a01 {
		t.Fatalf("got %v xid %#x, want REPLY xid 5a5a01", m.Type, m.TransactionID)
	}
	if got := status(t, m); got != codec.StatusTLSConnectionRefused {
		t.Errorf("status %v, want TLSConnectionRefused", got)
	}
}

func TestNotAllowed(t *testing.T) {
	st := openStore(t, nil)
	seed(t, st, binding("2001:db8:1::10/128", duid(1), "2001:db8:1::1"))
	cfg := testConfig()
	cfg.Allow = []netip.Prefix{netip.MustParsePrefix("2001:db8:ffff::/48")}
	r := dial(t, startServer(t, st, cfg))

	r.send(leasequery(0x77, byLink("2001:db8:1::1")))
	m := r.next()
	if m.Type != codec.MsgLeasequeryReply || status(t, m) != codec.StatusNotAllowed {
		t.Fatalf("got %v %v, want LEASEQUERY-REPLY NotAllowed", m.Type, status(t, m))
	}
	if cid, _ := m.Options.ClientID(); string(cid) != string(requestorDUID) {
		t.Errorf("CLIENTID echo %x, want %x", cid, requestorDUID)
	}
	r.waitClosed(5 * time.Second)
}

func frame(msg []byte) []byte {
	b, err := codec.AppendFrame(nil, msg)
	if err != nil {
		panic(err)
	}
	return b
}
