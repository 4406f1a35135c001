package server

import (
	"context"
	"errors"
	"fmt"
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

func TestActiveConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*Config)
		wantErr error
	}{
		{"active without transport", func(c *Config) { c.Active = true }, ErrActiveNotAvailable},
		{"insecure without active", func(c *Config) { c.Insecure = true }, ErrInvalidConfig},
		{"ring size not a power of two", func(c *Config) { c.Active, c.Insecure, c.ActiveRingSize = true, true, 1000 }, ErrInvalidConfig},
		{"negative send timeout", func(c *Config) { c.Active, c.Insecure, c.ActiveSendTimeout = true, true, -time.Second }, ErrInvalidConfig},
		{"negative idle timeout", func(c *Config) { c.Active, c.Insecure, c.ActiveIdleTimeout = true, true, -time.Second }, ErrInvalidConfig},
		{"active and insecure", func(c *Config) { c.Active, c.Insecure = true, true }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			tt.edit(&cfg)
			err := cfg.Validate()
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Validate = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestActiveRejectedQueries(t *testing.T) {
	relay := []byte{0x00, 0x02, 0x00, 0x00, 0x9d, 0x10, 'r', '1'}
	unknown := codec.LQQuery{QueryType: 77, LinkAddress: netip.IPv6Unspecified()}
	tests := []struct {
		name   string
		allow  bool
		query  *codec.LQQuery
		extra  []codec.Option
		status codec.StatusCode
		reason CloseReason
	}{
		{"not allowed", false, nil, nil, codec.StatusNotAllowed, CloseNotAllowed},
		{"end time", true, nil, []codec.Option{uint32Option(codec.OptLQEndTime, codec.DHCPTime(testNow))}, codec.StatusMalformedQuery, CloseQueryRejected},
		{"end time with start time", true, nil, []codec.Option{
			uint32Option(codec.OptLQStartTime, codec.DHCPTime(testNow.Add(-time.Hour))),
			uint32Option(codec.OptLQEndTime, codec.DHCPTime(testNow)),
		}, codec.StatusMalformedQuery, CloseQueryRejected},
		{"unknown query type", true, &unknown, nil, codec.StatusUnknownQueryType, CloseQueryRejected},
		{"bad link-address", true, ptr(byRelayID(relay, "ff02::1")), nil, codec.StatusMalformedQuery, CloseQueryRejected},
		{"link-address query without a link", true, ptr(byLink("::")), nil, codec.StatusMalformedQuery, CloseQueryRejected},
		{"other server", true, nil, []codec.Option{{Code: codec.OptServerID, Data: duid(99)}}, codec.StatusNotAllowed, CloseQueryRejected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := openStore(t, nil)
			cfg := activeConfig()
			if !tt.allow {
				cfg.Allow = nil
			}
			m := newTestMetrics(t)
			srv := startServer(t, st, cfg, WithMetrics(m))
			a := dialActive(t, srv)
			a.start(0x77, tt.query, tt.extra...)
			a.expect(codec.MsgLeasequeryReply, tt.status)
			a.readClosed(5 * time.Second)
			eventually(t, 5*time.Second, "close counted", func() bool {
				return closedCount(m, tt.reason) == 1
			})
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestActiveSecondRequestEnds(t *testing.T) {
	tests := []struct {
		name   string
		second []byte
	}{
		{"second active query", activeleasequery(0x02, nil)},
		{"bulk query", leasequery(0x02, byLink("2001:db8:1::1"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := openStore(t, nil)
			srv := startServer(t, st, activeConfig())
			a := dialActive(t, srv)
			a.start(0x01, nil)
			a.expect(codec.MsgLeasequeryReply, codec.StatusSuccess)

			a.send(tt.second)
			m, err := a.readMsg(10 * time.Second)
			if err != nil {
				t.Fatalf("reading the answer to the second request: %v", err)
			}
			if m.Type != codec.MsgLeasequeryReply || m.TransactionID != 0x02 || status(t, m) != codec.StatusNotAllowed {
				t.Fatalf("second request got %v xid %#x status %v, want LEASEQUERY-REPLY xid 0x2 NotAllowed", m.Type, m.TransactionID, status(t, m))
			}
			done := a.expect(codec.MsgLeasequeryDone, codec.StatusQueryTerminated)
			if !done.hasBase {
				t.Errorf("LEASEQUERY-DONE without OPTION_LQ_BASE_TIME")
			}
			a.readClosed(5 * time.Second)
		})
	}
}

func TestActiveWhileBulkRuns(t *testing.T) {
	st := openStore(t, nil)
	var bs []store.Binding
	for i := range 3000 {
		bs = append(bs, binding(fmt.Sprintf("2001:db8:1::%x/128", 0x1000+i), duid(i), "2001:db8:1::1"))
	}
	seed(t, st, bs...)
	srv := startServer(t, st, activeConfig())
	r := dial(t, srv)

	var both []byte
	both, _ = codec.AppendFrame(both, leasequery(0x10, byLink("2001:db8:1::1")))
	both, _ = codec.AppendFrame(both, activeleasequery(0x11, nil))
	r.write(both)
	for {
		m, err := r.tryNext(10 * time.Second)
		if err != nil {
			t.Fatalf("no NotAllowed for the ACTIVELEASEQUERY before the close: %v", err)
		}
		if m.TransactionID == 0x11 {
			if m.Type != codec.MsgLeasequeryReply || status(t, m) != codec.StatusNotAllowed {
				t.Fatalf("ACTIVELEASEQUERY got %v status %v, want LEASEQUERY-REPLY NotAllowed", m.Type, status(t, m))
			}
			break
		}
	}
	r.waitClosed(5 * time.Second)
}

func TestActiveKeepalive(t *testing.T) {
	st := openStore(t, nil)
	cfg := activeConfig()
	cfg.ActiveIdleTimeout = 150 * time.Millisecond
	m := newTestMetrics(t)
	srv := startServer(t, st, cfg, WithMetrics(m))
	a := dialActive(t, srv)
	a.start(0x0b, nil, oro(codec.OptLQBaseTime))
	a.expect(codec.MsgLeasequeryReply, codec.StatusSuccess)

	began := time.Now()
	ev := a.expect(codec.MsgLeasequeryData, codec.StatusSuccess)
	if waited := time.Since(began); waited < 100*time.Millisecond {
		t.Errorf("keepalive after %v, want about the idle timeout of 150ms", waited)
	}
	if len(ev.bindings) != 0 || ev.msg.Options.Has(codec.OptStatusCode) {
		t.Errorf("keepalive carries %d bindings, status %v", len(ev.bindings), ev.msg.Options.Has(codec.OptStatusCode))
	}
	if !ev.hasBase || ev.base != codec.DHCPTime(testNow) {
		t.Errorf("keepalive base-time %d (present %v), want %d", ev.base, ev.hasBase, codec.DHCPTime(testNow))
	}
	a.expect(codec.MsgLeasequeryData, codec.StatusSuccess)
	if a.keepalives != 2 {
		t.Errorf("%d keepalives counted by the requestor, want 2", a.keepalives)
	}
	if got := counterValue(m.active.keepalives); got < 2 {
		t.Errorf("alqd_active_keepalives_total = %v, want at least 2", got)
	}

	// Binding data resets the idle time: no keepalive right after it.
	seed(t, st, binding("2001:db8:1::10/128", duid(1), "2001:db8:1::1"))
	ev = a.expect(codec.MsgLeasequeryData, codec.StatusSuccess)
	if len(ev.bindings) != 1 {
		t.Fatalf("expected the binding, got %d bindings", len(ev.bindings))
	}
	if err := a.quiet(50 * time.Millisecond); err != nil {
		t.Errorf("right after binding data: %v", err)
	}
}

func TestActiveShutdownTerminates(t *testing.T) {
	for _, withORO := range []bool{true, false} {
		t.Run(fmt.Sprintf("oro=%v", withORO), func(t *testing.T) {
			st := openStore(t, nil)
			srv, err := New(activeConfig(), st, WithClock(func() time.Time { return testNow }), WithLogger(discardLogger()))
			if err != nil {
				t.Fatal(err)
			}
			runErr := make(chan error, 1)
			go func() { runErr <- srv.Run() }()
			<-srv.Ready()

			a := dialActive(t, srv)
			var extra []codec.Option
			if withORO {
				extra = append(extra, oro(codec.OptLQBaseTime))
			}
			a.start(0x0c, nil, extra...)
			a.expect(codec.MsgLeasequeryReply, codec.StatusSuccess)

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			if err := <-runErr; err != nil {
				t.Fatalf("Run: %v", err)
			}
			// RFC 7653 section 8.4: DONE with QueryTerminated and the
			// base-time, whether or not the ORO asked for it.
			done := a.expect(codec.MsgLeasequeryDone, codec.StatusQueryTerminated)
			if !done.hasBase || done.base != codec.DHCPTime(testNow) {
				t.Errorf("DONE base-time %d (present %v), want %d", done.base, done.hasBase, codec.DHCPTime(testNow))
			}
			a.readClosed(5 * time.Second)
		})
	}
}
