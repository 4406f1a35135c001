package server

import (
	"net/netip"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
)

// TestCatchUpCompleteWithoutLiveChange checks that CatchUpComplete follows
// the catch-up data at once when no live change comes after it (RFC 7653
// section 9.3). It covers catch-ups from the ring and from the store, over
// plaintext and TLS, filtered or not, alone or next to a live query. The
// idle timeout is an hour, so neither a keepalive nor a periodic check can
// send CatchUpComplete within the read timeout.
func TestCatchUpCompleteWithoutLiveChange(t *testing.T) {
	filters := []struct {
		name  string
		query *codec.LQQuery
		want  []int // indexes into the catchUpHistory bindings
	}{
		{"every binding", nil, []int{1, 2, 3}},
		{"one client", ptr(byClientID(duid(2), "::")), []int{1}},
		{"no match", ptr(byClientID(duid(99), "::")), nil},
	}
	for _, tls := range []bool{false, true} {
		for _, fromRing := range []bool{false, true} {
			for _, neighbour := range []bool{false, true} {
				for _, fc := range filters {
					name := catchUpCaseName(tls, fromRing, neighbour) + "/" + fc.name
					t.Run(name, func(t *testing.T) {
						testCatchUpCompleteAtOnce(t, tls, fromRing, neighbour, fc.query, fc.want)
					})
				}
			}
		}
	}
}

// catchUpCaseName names one combination of TestCatchUpCompleteWithoutLiveChange.
func catchUpCaseName(tls, fromRing, neighbour bool) string {
	name := "plaintext"
	if tls {
		name = "TLS"
	}
	if fromRing {
		name += "/ring"
	} else {
		name += "/store"
	}
	if neighbour {
		name += "/next to a live query"
	}
	return name
}

func testCatchUpCompleteAtOnce(t *testing.T, tls, fromRing, neighbour bool, q *codec.LQQuery, want []int) {
	clock := newTestClock(testNow)
	st := openStoreAt(t, t.TempDir(), clock, 0)
	closeAtEnd(t, st)
	cfg := activeConfig()
	var f *tlsFixture
	if tls {
		f = newTLSFixture(t)
		cfg = f.activeConfig()
	}
	cfg.ActiveIdleTimeout = time.Hour

	// The history goes into the store before the server starts (a store
	// catch-up) or while it runs (a ring catch-up).
	var srv *Server
	if fromRing {
		srv = startServerAt(t, st, cfg, clock)
	}
	bs := catchUpHistory(t, st, clock, testNow)
	if !fromRing {
		srv = startServerAt(t, st, cfg, clock)
	}
	dial := func() *activeRequestor {
		if tls {
			return dialActiveTLS(t, srv, f)
		}
		return dialActive(t, srv)
	}

	if neighbour {
		live := dial()
		live.start(0x0d01, nil)
		live.expect(codec.MsgLeasequeryReply, codec.StatusSuccess)
	}
	a := dial()
	a.start(0x0d02, q, oro(codec.OptLQBaseTime), startTime(testNow.Add(-30*time.Minute)))
	a.expect(codec.MsgLeasequeryReply, codec.StatusSuccess)

	// Catch-up data, then CatchUpComplete, and nothing else in between.
	seen := map[netip.Prefix]int{}
	for {
		ev, err := a.nextEvent(10 * time.Second)
		if err != nil {
			t.Fatalf("waiting for CatchUpComplete after %d bindings: %v", len(seen), err)
		}
		if ev.status == codec.StatusCatchUpComplete {
			break
		}
		if len(ev.bindings) == 0 {
			t.Fatalf("%v status %v without bindings before CatchUpComplete", ev.msg.Type, ev.status)
		}
		for _, l := range ev.bindings {
			seen[l.prefix]++
		}
	}

	if len(seen) != len(want) {
		t.Errorf("catch-up sent %d bindings, want %d", len(seen), len(want))
	}
	for _, i := range want {
		if n := seen[bs[i].Prefix]; n != 1 {
			t.Errorf("%v sent %d times during catch-up, want once", bs[i].Prefix, n)
		}
	}
}
