package alqdtest

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/requestor"
	"github.com/alqd/alqd/requestor/mirror"
	"github.com/alqd/alqd/store"
)

// TestAlqdMirrorTrimmedHistory fills an empty mirror from an alqd whose
// history was trimmed, so that catch-up from start time 0 gets
// DataMissing. A mirror without bulk queries then stops with a
// *DataMissingError and stores nothing. With a QUERY_BY_LINK_ADDRESS per
// link it fills.
func TestAlqdMirrorTrimmedHistory(t *testing.T) {
	clock := &fakeClock{t: now}
	st := openStore(t, clock.Now)
	apply(t, st, fixtures...)
	released := bind("2001:db8:1::99/128", client3, linkA, nil, nil)
	released.State = store.StateReleased
	apply(t, st, released)

	// A trim a day and an hour later removes the released binding and
	// raises the floor above every change so far.
	clock.Advance(25 * time.Hour)
	if err := st.Trim(clock.Now()); err != nil {
		t.Fatal(err)
	}
	if floor, _ := st.Floor(); !floor.After(now) {
		t.Fatalf("floor %v after the trim, want after %v", floor, now)
	}
	// The clients renew, so their bindings are current in the server's
	// clock again.
	for _, b := range fixtures {
		b.CLTT = clock.Now().Add(-time.Minute)
		apply(t, st, b)
	}
	srv, _ := startServer(t, st, activeConfig(), clock.Now)

	// run runs a mirror until it stops or until returns true. The caller
	// closes the mirror.
	run := func(cfg mirror.Config, until func(requestor.Event) bool) (*mirror.Mirror, error) {
		t.Helper()
		m, err := mirror.Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return m, runMirrorUntil(m, until)
	}

	cfg := mirror.Config{Dir: t.TempDir(), Requestor: config(srv.Addr().String()), MaxAttempts: 1}
	m, err := run(cfg, func(requestor.Event) bool { return false })
	defer func() { m.Close() }()
	var dm *mirror.DataMissingError
	if !errors.As(err, &dm) || dm.StartTime != 0 {
		t.Fatalf("mirror without bulk queries: Run returned %v, want a *DataMissingError with start time 0", err)
	}
	if cp, err := m.Checkpoint(); err != nil || cp.Valid {
		t.Errorf("checkpoint = %+v, %v; want none", cp, err)
	}
	if n := countRecords(t, m); n != 0 {
		t.Errorf("mirror holds %d records, want 0", n)
	}
	m.Close()

	cfg.Recovery = []requestor.Query{
		{Type: codec.QueryByLinkAddress, Link: linkA},
		{Type: codec.QueryByLinkAddress, Link: linkB},
	}
	cfg.MaxAttempts = 0
	m, err = run(cfg, func(ev requestor.Event) bool {
		done, ok := ev.(requestor.RecoveryDone)
		return ok && done.Err == nil
	})
	if err != nil {
		t.Fatalf("mirror with a query per link: %v", err)
	}
	want := map[netip.Prefix]bool{}
	for _, b := range fixtures {
		want[b.Prefix] = true
	}
	if !mirrorMatches(t, m, want) {
		t.Errorf("mirror after the bulk holds other active bindings than the %d fixtures", len(fixtures))
	}
}

func countRecords(t *testing.T, m *mirror.Mirror) int {
	t.Helper()
	n := 0
	if err := m.Scan(func(*mirror.Record) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// runMirrorUntil runs m until it stops, until returns true (which is not
// an error), or 20 s have passed.
func runMirrorUntil(m *mirror.Mirror, until func(requestor.Event) bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stop := errors.New("stop")
	err := m.Run(ctx, func(ev requestor.Event) error {
		if until(ev) {
			return stop
		}
		return nil
	})
	if errors.Is(err, stop) {
		return nil
	}
	return err
}

// TestAlqdMirrorResumeAfterTrim fills a mirror without bulk queries from
// alqd, then lets the server release one binding, add another and trim
// past the mirror's checkpoint. The resumed mirror must stop with a
// *DataMissingError and keep its checkpoint and records. A run with a
// QUERY_BY_LINK_ADDRESS per link must then end with exactly the server's
// active bindings.
func TestAlqdMirrorResumeAfterTrim(t *testing.T) {
	clock := &fakeClock{t: now}
	st := openStore(t, clock.Now)
	apply(t, st, fixtures...)
	srv, _ := startServer(t, st, activeConfig(), clock.Now)

	// run runs a mirror until it stops or until returns true, and returns
	// its checkpoint and active records afterwards.
	run := func(cfg mirror.Config, until func(requestor.Event) bool) (requestor.Checkpoint, map[netip.Prefix]bool, error) {
		t.Helper()
		m, err := mirror.Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		err = runMirrorUntil(m, until)
		cp, cpErr := m.Checkpoint()
		if cpErr != nil {
			t.Fatal(cpErr)
		}
		active := map[netip.Prefix]bool{}
		if scanErr := m.Scan(func(r *mirror.Record) error {
			if r.State == requestor.StateActive {
				active[r.Prefix] = true
			}
			return nil
		}); scanErr != nil {
			t.Fatal(scanErr)
		}
		return cp, active, err
	}

	cfg := mirror.Config{Dir: t.TempDir(), Requestor: config(srv.Addr().String()), MaxAttempts: 1}
	filled, filledActive, err := run(cfg, func(ev requestor.Event) bool {
		_, done := ev.(requestor.CatchUpComplete)
		return done
	})
	if err != nil || !filled.Valid || len(filledActive) != len(fixtures) {
		t.Fatalf("filling run: %v, checkpoint %+v, %d active records; want %d", err, filled, len(filledActive), len(fixtures))
	}

	// The server changes and trims a day and an hour later.
	clock.Advance(time.Minute)
	released := fixtures[2]
	released.State = store.StateReleased
	released.PreferredLifetime, released.ValidLifetime = 0, 0
	// The added binding lasts three days, so that its only change is in
	// the trimmed interval.
	added := bind("2001:db8:2::20/128", client2, linkB, nil, nil)
	added.CLTT = clock.Now()
	added.PreferredLifetime, added.ValidLifetime = 2*86400, 3*86400
	apply(t, st, released, added)
	clock.Advance(25 * time.Hour)
	if err := st.Trim(clock.Now()); err != nil {
		t.Fatal(err)
	}
	want := map[netip.Prefix]bool{added.Prefix: true}
	for _, b := range fixtures {
		if b.Prefix != released.Prefix {
			b.CLTT = clock.Now().Add(-time.Minute)
			apply(t, st, b)
			want[b.Prefix] = true
		}
	}

	cp, active, err := run(cfg, func(requestor.Event) bool { return false })
	var dm *mirror.DataMissingError
	if !errors.As(err, &dm) || dm.StartTime != filled.StartTime {
		t.Fatalf("resumed mirror without bulk queries: %v; want a *DataMissingError from start time %d", err, filled.StartTime)
	}
	if cp != filled {
		t.Errorf("checkpoint after DataMissing = %+v, want %+v as filled", cp, filled)
	}
	if len(active) != len(filledActive) || !active[released.Prefix] || active[added.Prefix] {
		t.Errorf("records after DataMissing = %v, want the %d filled ones", active, len(filledActive))
	}

	cfg.Recovery = []requestor.Query{
		{Type: codec.QueryByLinkAddress, Link: linkA},
		{Type: codec.QueryByLinkAddress, Link: linkB},
	}
	cfg.MaxAttempts = 0
	_, active, err = run(cfg, func(ev requestor.Event) bool {
		done, ok := ev.(requestor.RecoveryDone)
		return ok && done.Full && done.Err == nil
	})
	if err != nil {
		t.Fatalf("run with a query per link: %v", err)
	}
	if len(active) != len(want) {
		t.Errorf("active records after the recovery = %v, want %v", active, want)
	}
	for p := range want {
		if !active[p] {
			t.Errorf("active records after the recovery lack %s (have %v)", p, active)
		}
	}
}
