package store

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
)

// testEpoch is the start of every fake clock: 2024-01-01 00:00:00 UTC.
var testEpoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// fakeClock is a settable clock for Options.Clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: testEpoch} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// openTest opens a store in dir with the background trim off and closes it
// at the end of the test.
func openTest(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	if opts.TrimInterval == 0 {
		opts.TrimInterval = -1
	}
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func mustApply(t testing.TB, s *Store, changes ...Binding) uint64 {
	t.Helper()
	seq, err := s.Apply(context.Background(), changes, nil)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return seq
}

func mustVerify(t testing.TB, s *Store) {
	t.Helper()
	if err := s.Verify(); err != nil {
		t.Fatalf("Verify: %v", err)
	}
}

// na returns an active IA_NA binding of addr for client duid on link.
func na(addr, duid, link string) Binding {
	return Binding{
		Key:               Key{Type: TypeNA, Prefix: netip.PrefixFrom(netip.MustParseAddr(addr), 128)},
		ClientID:          []byte(duid),
		IAID:              1,
		PreferredLifetime: 3000,
		ValidLifetime:     4000,
		State:             StateActive,
		CLTT:              testEpoch,
		LinkAddress:       parseAddrOrZero(link),
	}
}

// pd returns an active IA_PD binding of prefix for client duid on link.
func pd(prefix, duid, link string) Binding {
	b := na("::", duid, link)
	b.Key = Key{Type: TypePD, Prefix: netip.MustParsePrefix(prefix)}
	return b
}

func parseAddrOrZero(s string) netip.Addr {
	if s == "" {
		return netip.Addr{}
	}
	return netip.MustParseAddr(s)
}

// with returns b changed by fn, leaving b alone.
func with(b Binding, fn func(*Binding)) Binding {
	fn(&b)
	return b
}

func released(b Binding) Binding {
	return with(b, func(b *Binding) {
		b.State = StateReleased
		b.PreferredLifetime, b.ValidLifetime = 0, 0
	})
}

// collect drains it and returns the bindings, failing the test on error.
func collect(t testing.TB, it Iterator) []Binding {
	t.Helper()
	var out []Binding
	for it.Next() {
		out = append(out, *it.Binding())
	}
	if err := it.Close(); err != nil {
		t.Fatalf("iterator: %v", err)
	}
	return out
}

// prefixes returns the address or prefix of each binding, as strings.
func prefixes(bs []Binding) []string {
	out := make([]string, 0, len(bs))
	for _, b := range bs {
		out = append(out, b.Prefix.String())
	}
	return out
}

func sortedPrefixes(bs []Binding) []string {
	out := prefixes(bs)
	slices.Sort(out)
	return out
}

// sameFields reports whether a and b are equal in every field but Seq and
// ChangeTime, comparing times with Equal.
func sameFields(a, b Binding) bool {
	ea := appendValue(nil, &a)
	eb := appendValue(nil, &b)
	return a.Key == b.Key && sameState(ea, eb)
}

func isCorrupt(err error) bool { return errors.Is(err, ErrCorrupt) }
