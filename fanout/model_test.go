package fanout

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"
)

// modelSub is a subscriber of the model tests with the cursor it started
// from.
type modelSub struct {
	s     *Subscriber
	g     int // index of its group
	after uint64
}

// randomFilter returns one of the filters the model tests use; their keys
// overlap the bindings' attributes so that every kind matches now and then.
func randomFilter(rng *rand.Rand) Filter {
	switch rng.IntN(7) {
	case 0:
		return Filter{}
	case 1:
		return Filter{Key: RelayIDKey(relayID(rng.IntN(4)))}
	case 2:
		return Filter{Key: RelayIDKey(relayID(rng.IntN(4))), Link: linkAddr(rng.IntN(3))}
	case 3:
		return Filter{Key: LinkAddressKey(linkAddr(rng.IntN(3)))}
	case 4:
		id := rng.IntN(16)
		return Filter{Key: ClientIDKey([]byte{0, 1, byte(id >> 8), byte(id)})}
	case 5:
		// An address inside an odd binding's /56 or an even binding's /128.
		p := prefixFor(rng.IntN(16))
		a := p.Addr().As16()
		if p.Bits() < 128 {
			a[7] = byte(rng.IntN(256))
			a[15] = byte(rng.IntN(256))
		}
		return Filter{Key: AddressKey(netip.AddrFrom16(a))}
	default:
		return Filter{Key: AddressKey(netip.MustParseAddr("2001:db8:ffff::1"))} // matches nothing
	}
}

// blockingPolicy returns a Deliver policy that, with probability p, writes
// a random part of the batch and reports the subscriber blocked.
func blockingPolicy(rng *rand.Rand, p *float64) func(*Subscriber, []*Update) (int, bool) {
	return func(_ *Subscriber, batch []*Update) (int, bool) {
		if rng.Float64() >= *p {
			return len(batch), false
		}
		return rng.IntN(len(batch) + 1), true
	}
}

// TestModelRandom drives two groups on one ring with random commits,
// publishes, pumps, subscriptions, removals and blocking, on small rings so
// that laps and store resyncs are frequent. After quiescence every
// subscriber must hold the latest state of every binding it selects that
// changed after its start. On every delivery the sink checks that Seq
// increases and that the filter selects the update.
func TestModelRandom(t *testing.T) {
	seeds := 60
	if testing.Short() {
		seeds = 10
	}
	var total Stats
	for seed := range uint64(seeds) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			total.add(runModel(t, seed))
		})
	}

	// The model is only as good as the paths it reaches.
	if total.Lapped == 0 || total.Blocked == 0 || total.Resyncs == 0 {
		t.Errorf("the random runs never reached some paths: %+v", total)
	}
}

// runModel runs one random scenario and returns the ring's counters.
func runModel(t *testing.T, seed uint64) Stats {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	cfg := Config{
		Capacity:     []int{4, 8, 32}[rng.IntN(3)],
		MaxBatch:     []int{1, 2, 3, 16}[rng.IntN(4)],
		ResyncBudget: []int{1, 5, 100}[rng.IntN(3)],
	}
	fs := newFakeStore()
	fs.gaps = rng.IntN(2) == 0
	r, err := NewRing(cfg, 0)
	if err != nil {
		t.Fatal(err)
	}

	blockP := 0.0
	var groups []*Group
	var sinks []*recordingSink
	for range 2 {
		g, err := r.NewGroup(fs, func() {})
		if err != nil {
			t.Fatal(err)
		}
		sink := newRecordingSink(t)
		sink.policy = blockingPolicy(rng, &blockP)
		groups = append(groups, g)
		sinks = append(sinks, sink)
	}

	var subs, removed []modelSub
	subscribe := func() {
		gi := rng.IntN(len(groups))
		after := r.LastSeq()
		if rng.IntN(3) == 0 && after > 0 {
			after = rng.Uint64N(after)
		}
		s, err := groups[gi].Subscribe(randomFilter(rng), after, len(subs)+len(removed))
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, modelSub{s: s, g: gi, after: after})
	}
	for range 6 {
		subscribe()
	}

	for step := 0; step < 1500; step++ {
		switch op := rng.IntN(100); {
		case op < 30:
			for range 1 + rng.IntN(3) {
				fs.commit(rng.IntN(16), rng.IntN(4), rng.IntN(3))
			}
		case op < 45:
			fs.publish(r)
		case op < 75:
			gi := rng.IntN(len(groups))
			groups[gi].Pump(sinks[gi])
		case op < 82:
			m := subs[rng.IntN(len(subs))]
			groups[m.g].Block(m.s)
		case op < 90:
			m := subs[rng.IntN(len(subs))]
			groups[m.g].Unblock(m.s)
		case op < 93:
			subscribe()
		case op < 95 && len(subs) > 2:
			i := rng.IntN(len(subs))
			groups[subs[i].g].Remove(subs[i].s)
			removed = append(removed, subs[i])
			subs = append(subs[:i], subs[i+1:]...)
		case op < 100:
			blockP = []float64{0, 0.1, 0.5}[rng.IntN(3)]
		}
	}

	// Quiescence: publish everything, accept every write, unblock everybody.
	fs.publish(r)
	blockP = 0
	for _, m := range subs {
		groups[m.g].Unblock(m.s)
	}
	for gi, g := range groups {
		pumpUntilIdle(t, g, sinks[gi])
	}

	for _, m := range subs {
		if m.s.State() != StateLive {
			t.Errorf("subscriber %v: State %v after quiescence, want live", m.s.Owner(), m.s.State())
		}
		if m.s.Seq() < fs.lastSeq() {
			t.Errorf("subscriber %v: cursor %d after quiescence, want %d", m.s.Owner(), m.s.Seq(), fs.lastSeq())
		}
		checkLatest(t, fs, sinks[m.g], m.s, m.after)
		if m.s.CatchingUp() {
			t.Errorf("subscriber %v: catch-up never reported", m.s.Owner())
		}
	}
	for _, m := range removed {
		if m.s.iter != nil {
			t.Errorf("removed subscriber %v still holds a store scan", m.s.Owner())
		}
	}
	return r.Stats()
}

// TestConcurrentProducer runs the producer and two event-loop goroutines at
// once, with random blocking on the loops, and checks the same end state as
// the model test. Run it with -race.
func TestConcurrentProducer(t *testing.T) {
	const commits = 5000
	fs := newFakeStore()
	r, err := NewRing(Config{Capacity: 64, MaxBatch: 8, ResyncBudget: 64}, 0)
	if err != nil {
		t.Fatal(err)
	}

	done := make(chan struct{})
	type loop struct {
		g     *Group
		sink  *recordingSink
		wakes chan struct{}
		subs  []modelSub
	}
	var loops []*loop
	for i := range 2 {
		l := &loop{sink: newRecordingSink(t), wakes: make(chan struct{}, 1)}
		l.g, err = r.NewGroup(fs, func() {
			select {
			case l.wakes <- struct{}{}:
			default:
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(uint64(i), 1))
		for j := range 20 {
			s := mustSubscribe(t, l.g, randomFilter(rng), 0, fmt.Sprint(i, "/", j))
			l.subs = append(l.subs, modelSub{s: s, g: i})
		}
		loops = append(loops, l)
	}

	var wg sync.WaitGroup
	for i, l := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runLoop(t, l.g, l.sink, l.wakes, l.subs, done, uint64(i))
		}()
	}

	rng := rand.New(rand.NewPCG(99, 2))
	for range commits {
		fs.commit(rng.IntN(64), rng.IntN(4), rng.IntN(3))
		fs.publish(r)
	}
	close(done)
	wg.Wait()

	for _, l := range loops {
		for _, m := range l.subs {
			checkLatest(t, fs, l.sink, m.s, 0)
		}
		if l.g.Stats().Delivered == 0 {
			t.Errorf("a group delivered nothing")
		}
	}
	if st := r.Stats(); st.Published != commits {
		t.Errorf("Stats.Published = %d, want %d", st.Published, commits)
	}
}

// runLoop is one event loop of TestConcurrentProducer: it pumps on every
// wake and blocks and unblocks subscribers at random until done, then
// unblocks everybody and drains.
func runLoop(t *testing.T, g *Group, sink *recordingSink, wakes chan struct{}, subs []modelSub, done chan struct{}, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 3))
	blockP := 0.05
	sink.policy = blockingPolicy(rng, &blockP)
	for {
		select {
		case <-wakes:
			g.Pump(sink)
			m := subs[rng.IntN(len(subs))]
			if rng.IntN(2) == 0 {
				g.Block(m.s)
			} else {
				g.Unblock(m.s)
			}
		case <-done:
			blockP = 0
			for _, m := range subs {
				g.Unblock(m.s)
			}
			for g.scheduled.Load() {
				g.Pump(sink)
			}
			for _, m := range subs {
				if m.s.State() != StateLive {
					t.Errorf("subscriber %v: State %v after draining, want live", m.s.Owner(), m.s.State())
				}
			}
			return
		}
	}
}
