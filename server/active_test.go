package server

import (
	"net/netip"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/store"
)

func TestActiveUnfilteredStream(t *testing.T) {
	st := openStore(t, nil)
	seed(t, st, binding("2001:db8:1::10/128", duid(1), "2001:db8:1::1"))
	srv := startServer(t, st, activeConfig())
	a := dialActive(t, srv)

	a.start(0x0a0001, nil, oro(codec.OptLQBaseTime))
	ev := a.expect(codec.MsgLeasequeryReply, codec.StatusSuccess)
	if sid, _ := ev.msg.Options.ServerID(); string(sid) != string(testServerDUID) {
		t.Errorf("REPLY SERVERID = %x, want %x", sid, testServerDUID)
	}
	if cid, _ := ev.msg.Options.ClientID(); string(cid) != string(requestorDUID) {
		t.Errorf("REPLY CLIENTID = %x, want the requestor's %x", cid, requestorDUID)
	}
	if !ev.hasBase || ev.base != codec.DHCPTime(testNow) {
		t.Errorf("REPLY base-time %d (present %v), want %d", ev.base, ev.hasBase, codec.DHCPTime(testNow))
	}
	if ev.msg.Options.Has(codec.OptClientData) {
		t.Errorf("REPLY carries OPTION_CLIENT_DATA of a binding that did not change")
	}

	// A new binding, a change and a release, each reported once.
	b2 := binding("2001:db8:1::20/128", duid(2), "2001:db8:1::1")
	seed(t, st, b2)
	ev = a.expect(codec.MsgLeasequeryData, codec.StatusSuccess)
	if len(ev.bindings) != 1 || ev.bindings[0].prefix != b2.Prefix {
		t.Fatalf("DATA bindings %v, want %v", ev.bindings, b2.Prefix)
	}
	if !ev.hasBase || ev.base != codec.DHCPTime(testNow) {
		t.Errorf("DATA base-time %d (present %v), want %d", ev.base, ev.hasBase, codec.DHCPTime(testNow))
	}
	b2.ValidLifetime = 9000
	seed(t, st, b2)
	b2.State = store.StateReleased
	seed(t, st, b2)
	a.readUntil(5*time.Second, "release reported", func() bool { return a.view[b2.Prefix].ended })
	if a.data != 3 {
		t.Errorf("%d LEASEQUERY-DATA for three changes, want 3", a.data)
	}
	want := map[netip.Prefix]leaseState{b2.Prefix: expectedState(&b2, false)}
	if d := diffViews(a.view, want); len(d) > 0 {
		t.Errorf("view differs from the store:\n%v", d)
	}
	if err := a.quiet(100 * time.Millisecond); err != nil {
		t.Errorf("after the last change: %v", err)
	}
}
