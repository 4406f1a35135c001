package store

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// historyFixture applies changes at known times (offsets from testEpoch)
// and returns the store:
//
//	seq  time    change
//	1    0s      ::1 active
//	2    0s      ::2 active
//	3    10.5s   ::3 active
//	4    20s     ::1 lifetime changed (its second change)
//	5    30s     ::4 active
//	6    30s     ::2 released
func historyFixture(t *testing.T) *Store {
	t.Helper()
	clock := newFakeClock()
	s := openTest(t, t.TempDir(), Options{Clock: clock.Now})
	b1, b2 := na("2001:db8::1", "c1", ""), na("2001:db8::2", "c2", "")
	mustApply(t, s, b1, b2)
	clock.Advance(10500 * time.Millisecond)
	mustApply(t, s, na("2001:db8::3", "c3", ""))
	clock.Advance(9500 * time.Millisecond)
	mustApply(t, s, with(b1, func(b *Binding) { b.ValidLifetime = 9999 }))
	clock.Advance(10 * time.Second)
	mustApply(t, s, na("2001:db8::4", "c4", ""), released(b2))
	return s
}

func TestChangedTimeRange(t *testing.T) {
	s := historyFixture(t)
	at := func(d time.Duration) time.Time { return testEpoch.Add(d) }

	tests := []struct {
		name       string
		start, end time.Time
		want       []string // addresses in seq order
	}{
		{"everything", time.Time{}, time.Time{}, []string{"::3", "::1", "::4", "::2"}},
		{"from the first second", at(0), time.Time{}, []string{"::3", "::1", "::4", "::2"}},
		{"whole second includes 10.5s", at(10 * time.Second), time.Time{}, []string{"::3", "::1", "::4", "::2"}},
		{"sub-second start skips 10.5s", at(10600 * time.Millisecond), time.Time{}, []string{"::1", "::4", "::2"}},
		{"from 11s", at(11 * time.Second), time.Time{}, []string{"::1", "::4", "::2"}},
		{"from 30s", at(30 * time.Second), time.Time{}, []string{"::4", "::2"}},
		{"after the last change", at(31 * time.Second), time.Time{}, nil},
		{"up to 10.5s", time.Time{}, at(10500 * time.Millisecond), []string{"::3"}},
		{"between", at(5 * time.Second), at(25 * time.Second), []string{"::3", "::1"}},
		{"one instant", at(20 * time.Second), at(20 * time.Second), []string{"::1"}},
		{"end before start", at(20 * time.Second), at(10 * time.Second), nil},
		{"before the store existed", at(-time.Hour), time.Time{}, []string{"::3", "::1", "::4", "::2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := collect(t, s.Changed(tt.start, tt.end))
			var addrs []string
			for i, b := range got {
				addrs = append(addrs, b.Prefix.Addr().String()[len("2001:db8"):])
				if i > 0 && b.Seq <= got[i-1].Seq {
					t.Errorf("seq %d follows seq %d", b.Seq, got[i-1].Seq)
				}
			}
			if !slices.Equal(addrs, tt.want) {
				t.Errorf("Changed = %v, want %v", addrs, tt.want)
			}
		})
	}
}

func TestChangedYieldsLatestState(t *testing.T) {
	s := historyFixture(t)
	got := collect(t, s.Changed(time.Time{}, time.Time{}))
	for _, b := range got {
		switch b.Prefix.Addr().String() {
		case "2001:db8::1":
			if b.Seq != 4 || b.ValidLifetime != 9999 {
				t.Errorf("::1 = seq %d, valid %d; want its second change (seq 4, 9999)", b.Seq, b.ValidLifetime)
			}
		case "2001:db8::2":
			if b.State != StateReleased || b.Seq != 6 {
				t.Errorf("::2 = %s at seq %d, want released at seq 6", b.State, b.Seq)
			}
		}
	}
}

func TestChangedSince(t *testing.T) {
	s := historyFixture(t)
	tests := []struct {
		after    uint64
		wantSeqs []uint64
	}{
		{0, []uint64{3, 4, 5, 6}},
		{2, []uint64{3, 4, 5, 6}},
		{3, []uint64{4, 5, 6}},
		{5, []uint64{6}},
		{6, nil},
		{100, nil},
		{math.MaxUint64, nil},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.after), func(t *testing.T) {
			var seqs []uint64
			for _, b := range collect(t, s.ChangedSince(tt.after)) {
				seqs = append(seqs, b.Seq)
			}
			if !slices.Equal(seqs, tt.wantSeqs) {
				t.Errorf("ChangedSince(%d) seqs = %v, want %v", tt.after, seqs, tt.wantSeqs)
			}
		})
	}
}

// trimFixture applies 100 rounds, one second apart from testEpoch, each of
// one IA_NA and one IA_PD binding whose state depends on the round (see the
// switch), and returns the store and its clock.
func trimFixture(t *testing.T, chunk int) (*Store, *fakeClock) {
	t.Helper()
	clock := newFakeClock()
	s := openTest(t, t.TempDir(), Options{Clock: clock.Now, Retention: time.Hour})
	s.trimChunkLimit = chunk
	link := "2001:db8:a::1"
	for i := range 100 {
		b := with(na(fmt.Sprintf("2001:db8::%x", i+1), fmt.Sprintf("c%d", i), link), func(b *Binding) {
			b.RelayID, b.RemoteID = []byte("relay"), []byte(fmt.Sprintf("port-%d", i))
		})
		p := pd(fmt.Sprintf("2001:db8:%x::/48", i+1), fmt.Sprintf("c%d", i), link)
		switch {
		case i%10 == 3: // active, unchanged since
		case i%10 == 7:
			b.State = StateDeclined
		case i%10 == 9:
			b, p = with(b, func(b *Binding) { b.State = StateExpired }), released(p)
		default:
			b, p = released(b), with(p, func(b *Binding) { b.State = StateExpired })
		}
		mustApply(t, s, b, p)
		clock.Advance(time.Second)
	}
	return s, clock
}

func TestTrimRemovesOldTombstones(t *testing.T) {
	for _, chunk := range []int{defaultTrimChunk, 7, 50} {
		t.Run(fmt.Sprintf("chunk %d", chunk), func(t *testing.T) {
			s, clock := trimFixture(t, chunk)
			// Bindings of rounds 0-49 are older than the cutoff.
			clock.Advance(time.Hour - 50*time.Second)
			if err := s.Trim(clock.Now()); err != nil {
				t.Fatal(err)
			}
			mustVerify(t, s)

			floorTime, floorSeq := s.Floor()
			if want := testEpoch.Add(50 * time.Second); !floorTime.Equal(want) || floorSeq != 100 {
				t.Errorf("Floor = %s, %d; want %s, 100", floorTime, floorSeq, want)
			}
			for i := range 100 {
				addr := fmt.Sprintf("2001:db8::%x", i+1)
				_, ok, err := s.Get(na(addr, "", "").Key)
				if err != nil {
					t.Fatal(err)
				}
				ended := i%10 != 3 && i%10 != 7
				if wantGone := ended && i < 50; ok == wantGone {
					t.Errorf("binding %s (round %d) present = %v, want %v", addr, i, ok, !wantGone)
				}
			}

			// Queries and history agree with the trimmed bindings.
			all := collect(t, s.All())
			changed := collect(t, s.Changed(time.Time{}, time.Time{}))
			if len(changed) != len(all) {
				t.Errorf("Changed yields %d bindings, All %d", len(changed), len(all))
			}
			relay := collect(t, s.ByRelayID([]byte("relay"), netip.Addr{}))
			if want := 50 + 10; len(relay) != want {
				t.Errorf("ByRelayID yields %d bindings, want %d", len(relay), want)
			}
			// LookupAddress still finds the remaining /48s after counts dropped.
			if _, ok, _ := s.LookupAddress(netip.MustParseAddr("2001:db8:64::1")); !ok {
				t.Error("LookupAddress misses the /48 of round 99")
			}
		})
	}
}

func TestTrimFloorAndLaterChanges(t *testing.T) {
	s, clock := trimFixture(t, defaultTrimChunk)
	if ft, fs := s.Floor(); !ft.IsZero() || fs != 0 {
		t.Errorf("Floor of a store never trimmed = %s, %d; want zero", ft, fs)
	}
	// Nothing is older than an hour: the floor still rises to the cutoff,
	// because the retention is all the history the store promises.
	if err := s.Trim(clock.Now()); err != nil {
		t.Fatal(err)
	}
	if ft, fs := s.Floor(); !ft.Equal(clock.Now().Add(-time.Hour)) || fs != 0 {
		t.Errorf("Floor after a trim below the data = %s, %d; want %s, 0", ft, fs, clock.Now().Add(-time.Hour))
	}
	if n := len(collect(t, s.All())); n != 200 {
		t.Errorf("%d bindings remain after a trim below the data, want 200", n)
	}

	// Past everything: every tombstone goes, the floor reaches the cutoff.
	clock.Advance(2 * time.Hour)
	if err := s.Trim(clock.Now()); err != nil {
		t.Fatal(err)
	}
	floorTime, floorSeq := s.Floor()
	if want := clock.Now().Add(-time.Hour); !floorTime.Equal(want) || floorSeq != s.LastSeq() {
		t.Errorf("Floor = %s, %d; want %s, %d", floorTime, floorSeq, want, s.LastSeq())
	}
	// Rounds 3 and 7 of every ten keep both bindings (active, declined or
	// active IA_PD).
	if n := len(collect(t, s.All())); n != 40 {
		t.Errorf("%d bindings remain, want the 40 active and declined ones", n)
	}

	// A clock behind the floor still gives new changes a time at or above it.
	clock.Advance(-3 * time.Hour)
	seq := mustApply(t, s, na("2001:db8::1:1", "late", ""))
	changed := collect(t, s.Changed(floorTime, time.Time{}))
	if len(changed) != 1 || changed[0].Seq != seq || changed[0].ChangeTime.Before(floorTime) {
		t.Errorf("Changed(floor) = %v, want the one change at seq %d at or after %s", prefixes(changed), seq, floorTime)
	}
	mustVerify(t, s)
}

func TestTrimUsesRangeDeletions(t *testing.T) {
	clock := newFakeClock()
	s := openTest(t, t.TempDir(), Options{Clock: clock.Now, Retention: time.Hour})
	var bs []Binding
	for i := range 3 * trimRangeMin {
		bs = append(bs, released(na(fmt.Sprintf("2001:db8::%x", i+1), "c", "")))
	}
	mustApply(t, s, bs...)
	// One active binding in the middle of the run splits it in two.
	mustApply(t, s, na("2001:db8::1:1", "c", ""))
	mustApply(t, s, bs[0]) // unchanged: no new seq
	clock.Advance(2 * time.Hour)
	if err := s.Trim(clock.Now()); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, s)

	// The history holds only the active binding's entry.
	v, err := s.acquireView()
	if err != nil {
		t.Fatal(err)
	}
	defer s.releaseView(v)
	it, err := v.snap.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixHistory}, UpperBound: []byte{prefixHistory + 1}})
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for valid := it.First(); valid; valid = it.Next() {
		seq, _, _ := decodeHistoryKey(it.Key())
		seqs = append(seqs, seq)
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	if want := []uint64{uint64(len(bs) + 1)}; !slices.Equal(seqs, want) {
		t.Errorf("history seqs after trim = %v, want %v", seqs, want)
	}
}

func TestBackgroundTrim(t *testing.T) {
	clock := newFakeClock()
	s := openTest(t, t.TempDir(), Options{Clock: clock.Now, Retention: time.Second, TrimInterval: time.Millisecond})
	mustApply(t, s, released(na("2001:db8::1", "c", "")))
	clock.Advance(time.Minute)

	deadline := time.Now().Add(10 * time.Second)
	for {
		_, ok, err := s.Get(na("2001:db8::1", "", "").Key)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the background trim did not remove the tombstone within 10 s")
		}
		time.Sleep(time.Millisecond)
	}
	if err := s.Err(); err != nil {
		t.Errorf("Err = %v", err)
	}
}

func TestChangedStartBelowFloor(t *testing.T) {
	clock := newFakeClock()
	s := openTest(t, t.TempDir(), Options{Clock: clock.Now, Retention: time.Hour, TrimInterval: -1})
	start := clock.Now()

	// A binding that stays active, one that is released, then a second of
	// quiet each, so that each change has its own time-index entry.
	mustApply(t, s, na("2001:db8::1", "stays", ""))
	clock.Advance(time.Second)
	gone := na("2001:db8::2", "goes", "")
	mustApply(t, s, gone)
	clock.Advance(time.Second)
	mustApply(t, s, released(gone))

	// Past the retention: the tombstone goes and the floor rises above
	// every change, taking the time-index entries below it.
	clock.Advance(2 * time.Hour)
	if err := s.Trim(clock.Now()); err != nil {
		t.Fatal(err)
	}
	if floor, _ := s.Floor(); !floor.After(start) {
		t.Fatalf("floor %s is not above the start %s", floor, start)
	}

	got := prefixes(collect(t, s.Changed(start, clock.Now())))
	if len(got) != 1 || got[0] != "2001:db8::1/128" {
		t.Errorf("Changed(start below floor) = %v, want the binding that stayed active", got)
	}
}
