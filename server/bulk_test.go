package server

import (
	"net/netip"
	"testing"

	"github.com/alqd/alqd/codec"
)

func TestBulkByLinkAddress(t *testing.T) {
	st := openStore(t, nil)
	seed(t, st,
		binding("2001:db8:1::10/128", duid(1), "2001:db8:1::1"),
		binding("2001:db8:1::11/128", duid(2), "2001:db8:1::1"),
		binding("2001:db8:2::10/128", duid(3), "2001:db8:2::1"),
	)
	srv := startServer(t, st, testConfig())
	r := dial(t, srv)

	a := r.query(0x010203, byLink("2001:db8:1::1"))
	if a.done == nil {
		t.Fatal("no LEASEQUERY-DONE")
	}
	if got := status(t, a.reply); got != codec.StatusSuccess {
		t.Errorf("REPLY status = %v, want Success", got)
	}
	sid, _ := a.reply.Options.ServerID()
	if string(sid) != string(testServerDUID) {
		t.Errorf("SERVERID = %x, want %x", sid, testServerDUID)
	}
	cid, _ := a.reply.Options.ClientID()
	if string(cid) != string(requestorDUID) {
		t.Errorf("CLIENTID = %x, want the requestor's %x", cid, requestorDUID)
	}
	cds := a.clientData(t)
	if len(cds) != 2 {
		t.Fatalf("got %d OPTION_CLIENT_DATA, want 2", len(cds))
	}
	want := map[netip.Addr]bool{netip.MustParseAddr("2001:db8:1::10"): true, netip.MustParseAddr("2001:db8:1::11"): true}
	for _, cd := range cds {
		if len(cd.Addrs) != 1 || !want[cd.Addrs[0].Addr] {
			t.Errorf("unexpected CLIENT_DATA addresses %+v", cd.Addrs)
			continue
		}
		if cd.Addrs[0].ValidLifetime != 7100 || cd.Addrs[0].PreferredLifetime != 3500 {
			t.Errorf("lifetimes %d/%d, want 3500/7100 (granted minus 100 s)", cd.Addrs[0].PreferredLifetime, cd.Addrs[0].ValidLifetime)
		}
		if !cd.HasCLTTime || cd.CLTTime != 100 {
			t.Errorf("CLT_TIME = %d (present %v), want 100", cd.CLTTime, cd.HasCLTTime)
		}
	}
}
