package server

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/store"
)

// modelRequestor is one requestor of the model test. It follows the
// requestor rules of RFC 7653 section 8.4: it keeps the base-time of the
// last message only outside the catch-up phase, and resumes a lost
// connection with that base-time as OPTION_LQ_START_TIME.
type modelRequestor struct {
	*activeRequestor
	name  string
	query *codec.LQQuery
	match func(*store.Binding) bool
	relay bool
	slow  bool
	conns int

	// fromTime is the OPTION_LQ_START_TIME of the last connection that did
	// not resume: the view holds every selected binding changed since.
	fromTime uint32

	catching      bool
	checkpoint    uint32
	hasCheckpoint bool
}

// connect opens a connection and sends the query with start; the view is
// kept when the connection resumes, else emptied.
func (r *modelRequestor) connect(t *testing.T, srv *Server, start uint32, resume bool) {
	t.Helper()
	if r.activeRequestor != nil {
		_ = r.conn.Close()
	}
	var tr *testRequestor
	if r.slow {
		tr = dialSmallBuffer(t, srv, 4096)
	} else {
		tr = dial(t, srv)
	}
	view := map[netip.Prefix]leaseState{}
	if resume {
		view = r.view
	} else {
		r.fromTime = start
	}
	r.activeRequestor = &activeRequestor{testRequestor: tr, view: view}
	r.conns++
	wants := []codec.OptionCode{codec.OptLQBaseTime}
	if r.relay {
		wants = append(wants, codec.OptLQRelayData)
	}
	r.start(uint32(r.conns), r.query, oro(wants...), uint32Option(codec.OptLQStartTime, start))
	r.catching = true
}

// step reads up to budget messages without waiting long.
func (r *modelRequestor) step(t *testing.T, budget int) {
	t.Helper()
	for range budget {
		ev, err := r.nextEvent(time.Millisecond)
		if isTimeout(err) {
			return
		}
		if err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
		switch {
		case ev.status == codec.StatusDataMissing:
			t.Fatalf("%s: DataMissing although the history was never trimmed", r.name)
		case ev.msg.Type == codec.MsgLeasequeryReply && ev.status != codec.StatusSuccess:
			t.Fatalf("%s: query rejected with %v", r.name, ev.status)
		case ev.msg.Type == codec.MsgLeasequeryDone:
			t.Fatalf("%s: LEASEQUERY-DONE status %v", r.name, ev.status)
		case ev.status == codec.StatusCatchUpComplete:
			r.catching = false
		}
		if !r.catching && ev.hasBase {
			r.checkpoint, r.hasCheckpoint = ev.base, true
		}
	}
}

// expected is the view r must end with.
func (r *modelRequestor) expected(t *testing.T, st *store.Store) map[netip.Prefix]leaseState {
	from := codec.TimeFromDHCP(r.fromTime).Unix()
	return storeView(t, st, r.relay, func(b *store.Binding) bool {
		return r.match(b) && b.ChangeTime.Unix() >= from
	})
}

// TestActiveModel runs random changes against random requestors: filtered
// and unfiltered, fast and slow, some of which drop their connection and
// resume from their last base-time, or start over from a random start
// time. Once the changes stop, every requestor's view must equal the
// store's bindings it selects, field by field.
func TestActiveModel(t *testing.T) {
	seeds := []uint64{1, 2, 3}
	if testing.Short() {
		seeds = seeds[:1]
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) { runActiveModel(t, seed) })
	}
}

func runActiveModel(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 11))
	clock := newTestClock(testNow)
	st := openStoreAt(t, t.TempDir(), clock, 0)
	closeAtEnd(t, st)
	cfg := activeConfig()
	cfg.NotSentLowWater = 1024
	cfg.ActiveRingSize = 128
	srv := startServerAt(t, st, cfg, clock)

	ch := newChurn(clock, seed, 150)
	ctx := context.Background()
	if err := ch.all(ctx, st); err != nil {
		t.Fatal(err)
	}
	reqs := modelRequestors(ch, rng)
	origin := codec.DHCPTime(testNow.Add(-time.Hour))
	for _, r := range reqs {
		r.connect(t, srv, origin, false)
	}

	// Changes run on their own goroutine while the requestors read.
	applied := make(chan error, 1)
	go func() {
		var err error
		for i := 0; i < 80 && err == nil; i++ {
			err = ch.round(ctx, st, 20)
			time.Sleep(3 * time.Millisecond)
		}
		applied <- err
	}()

	done := false
	for !done {
		select {
		case err := <-applied:
			if err != nil {
				t.Fatalf("applying changes: %v", err)
			}
			done = true
		default:
		}
		for _, r := range reqs {
			r.step(t, stepBudget(r))
		}
		if rng.IntN(8) == 0 {
			r := reqs[rng.IntN(len(reqs))]
			if r.hasCheckpoint && rng.IntN(3) > 0 {
				r.connect(t, srv, r.checkpoint, true)
			} else {
				r.connect(t, srv, codec.DHCPTime(clock.now().Add(-time.Duration(rng.IntN(30))*time.Second)), false)
			}
		}
	}

	// Quiescence: every requestor reads until its view is the store's.
	deadline := time.Now().Add(30 * time.Second)
	for _, r := range reqs {
		want := r.expected(t, st)
		for len(diffViews(r.view, want)) > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%s (%d connections, from %v) differs from the store:\n%v", r.name, r.conns,
					codec.TimeFromDHCP(r.fromTime), diffViews(r.view, want))
			}
			r.step(t, 100)
		}
	}
	for _, r := range reqs {
		r.drain(100 * time.Millisecond)
		if d := diffViews(r.view, r.expected(t, st)); len(d) > 0 {
			t.Errorf("%s after the last message differs from the store:\n%v", r.name, d)
		}
	}
	stats := srv.active.ring.Stats()
	t.Logf("fanout: delivered %d, blocked %d, lapped %d, resyncs %d", stats.Delivered, stats.Blocked, stats.Lapped, stats.Resyncs)
}

func stepBudget(r *modelRequestor) int {
	if r.slow {
		return 12
	}
	return 200
}

// modelRequestors returns the requestors of one model run: one per filter
// kind, each randomly slow and randomly asking for relay data, plus two
// unfiltered ones.
func modelRequestors(ch *churn, rng *rand.Rand) []*modelRequestor {
	pick := func() *store.Binding { return &ch.pool[rng.IntN(len(ch.pool))] }
	var reqs []*modelRequestor
	add := func(name string, q *codec.LQQuery, match func(*store.Binding) bool) {
		reqs = append(reqs, &modelRequestor{name: name, query: q, match: match, relay: rng.IntN(2) == 0, slow: rng.IntN(3) == 0})
	}
	add("all", nil, func(*store.Binding) bool { return true })
	add("all slow", nil, func(*store.Binding) bool { return true })
	reqs[1].slow = true

	relay := pick().RelayID
	add("relay-id", ptr(byRelayID(relay, "::")), func(b *store.Binding) bool { return string(b.RelayID) == string(relay) })
	linkBd := pick()
	add("link-address", ptr(byLink(linkBd.LinkAddress.String())), func(b *store.Binding) bool { return b.LinkAddress == linkBd.LinkAddress })
	remote := pick().RemoteID
	add("remote-id", ptr(byRemoteID(remote, "::")), func(b *store.Binding) bool { return string(b.RemoteID) == string(remote) })
	client := pick()
	add("client-id", ptr(byClientID(client.ClientID, client.LinkAddress.String())), func(b *store.Binding) bool {
		return string(b.ClientID) == string(client.ClientID) && b.LinkAddress == client.LinkAddress
	})
	addr := pick().Prefix.Addr()
	add("address", ptr(byAddress(addr.String())), func(b *store.Binding) bool { return b.Prefix.Contains(addr) })
	return reqs
}
