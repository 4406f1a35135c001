package fanout

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestMain fails the package when a test leaves goroutines running.
func TestMain(m *testing.M) {
	before := runtime.NumGoroutine()
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<16)
			buf = buf[:runtime.Stack(buf, true)]
			fmt.Fprintf(os.Stderr, "fanout: %d goroutines leaked:\n%s\n", n-before, buf)
			code = 1
		}
	}
	os.Exit(code)
}

// binding is one binding of the fake store. Its attributes are small
// integers that map to keys, so that random tests can choose them.
type binding struct {
	id      int
	version int
	seq     uint64
	relay   int // relay-id index
	link    int // link-address index
	prefix  netip.Prefix
}

func relayID(i int) []byte { return []byte{0, 2, 0, 0, 0, 9, byte(i >> 8), byte(i)} }

func linkAddr(i int) netip.Addr {
	return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0xff, byte(i), 15: 1})
}

// prefixFor returns the binding's address or delegated prefix. Even ids get
// a /128 address and odd ids a /56 prefix, both spread by the id in bytes 4
// to 6.
func prefixFor(id int) netip.Prefix {
	a := [16]byte{0x20, 0x01, 0x0d, 0xb8, byte(id >> 16), byte(id >> 8), byte(id)}
	if id%2 == 0 {
		a[15] = 1
		return netip.PrefixFrom(netip.AddrFrom16(a), 128)
	}
	return netip.PrefixFrom(netip.AddrFrom16(a), 56)
}

// update encodes b the way a server would: keys, prefix, link and a body
// that holds the binding id and version for the tests to check.
func (b binding) update() *Update {
	body := make([]byte, 16)
	binary.BigEndian.PutUint64(body, uint64(b.id))
	binary.BigEndian.PutUint64(body[8:], uint64(b.version))
	return &Update{
		Seq:    b.seq,
		Prefix: b.prefix,
		Link:   linkAddr(b.link),
		Keys:   []FilterKey{ClientIDKey([]byte{0, 1, byte(b.id >> 8), byte(b.id)}), RelayIDKey(relayID(b.relay))},
		Bodies: [][]byte{body},
	}
}

func bodyOf(u *Update) (id, version int) {
	return int(binary.BigEndian.Uint64(u.Bodies[0])), int(binary.BigEndian.Uint64(u.Bodies[0][8:]))
}

// fakeStore is an in-memory last-change index: one record per binding, moved
// to a new Seq on every change, as the store's index keeps it. Commits are
// visible to scans before they are published, as with Pebble.
type fakeStore struct {
	mu       sync.Mutex
	seq      uint64
	gaps     bool // skip a Seq now and then
	bindings map[int]*binding
	pending  []*Update // committed, not yet published
	failNext error     // the next scan fails with it
	scans    int
}

func newFakeStore() *fakeStore { return &fakeStore{bindings: make(map[int]*binding)} }

// commit applies a change to binding id and returns its update, which stays
// pending until publish.
func (fs *fakeStore) commit(id, relay, link int) *Update {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.seq++
	if fs.gaps && fs.seq%5 == 0 {
		fs.seq++
	}
	b := fs.bindings[id]
	if b == nil {
		b = &binding{id: id, prefix: prefixFor(id)}
		fs.bindings[id] = b
	}
	b.version++
	b.seq = fs.seq
	b.relay, b.link = relay, link
	u := b.update()
	fs.pending = append(fs.pending, u)
	return u
}

// publish hands every pending update to r, in commit order.
func (fs *fakeStore) publish(r *Ring) {
	fs.mu.Lock()
	p := fs.pending
	fs.pending = nil
	fs.mu.Unlock()
	r.Publish(p...)
}

func (fs *fakeStore) lastSeq() uint64 {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.seq
}

// current returns a copy of every binding's current state.
func (fs *fakeStore) current() []binding {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	out := make([]binding, 0, len(fs.bindings))
	for _, b := range fs.bindings {
		out = append(out, *b)
	}
	return out
}

func (fs *fakeStore) ChangedSince(after uint64, f Filter) Iterator {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.scans++
	if err := fs.failNext; err != nil {
		fs.failNext = nil
		return &sliceIter{err: err}
	}
	var us []*Update
	for _, b := range fs.bindings {
		if b.seq > after {
			u := b.update()
			if f.Match(u) {
				us = append(us, u)
			}
		}
	}
	slices.SortFunc(us, func(a, b *Update) int { return cmp.Compare(a.Seq, b.Seq) })
	return &sliceIter{updates: us, snapshot: fs.seq, i: -1}
}

// sliceIter is an Iterator over a snapshot taken when the scan started.
type sliceIter struct {
	updates  []*Update
	snapshot uint64
	i        int
	err      error
	closed   int
}

func (it *sliceIter) Next() bool {
	if it.err != nil || it.i+1 >= len(it.updates) {
		return false
	}
	it.i++
	return true
}
func (it *sliceIter) Update() *Update     { return it.updates[it.i] }
func (it *sliceIter) SnapshotSeq() uint64 { return it.snapshot }
func (it *sliceIter) Err() error          { return it.err }
func (it *sliceIter) Close() error {
	it.closed++
	if it.closed > 1 {
		return fmt.Errorf("iterator closed %d times", it.closed)
	}
	return nil
}

// stream is what one subscriber received.
type stream struct {
	seqs     []uint64
	latest   map[int]int // binding id -> last version received
	caughtUp int
	failed   error
}

// recordingSink records every delivery and checks order and filter on the
// spot. policy, when set, decides how much of a batch is written.
type recordingSink struct {
	t       testing.TB
	streams map[*Subscriber]*stream
	order   []string // "deliver" and "caughtup" events, for ordering checks
	policy  func(s *Subscriber, batch []*Update) (int, bool)
}

func newRecordingSink(t testing.TB) *recordingSink {
	return &recordingSink{t: t, streams: make(map[*Subscriber]*stream)}
}

func (k *recordingSink) stream(s *Subscriber) *stream {
	st := k.streams[s]
	if st == nil {
		st = &stream{latest: make(map[int]int)}
		k.streams[s] = st
	}
	return st
}

func (k *recordingSink) Deliver(s *Subscriber, batch []*Update) (int, bool) {
	k.t.Helper()
	if len(batch) == 0 {
		k.t.Errorf("Deliver called with an empty batch")
	}
	written, blocked := len(batch), false
	if k.policy != nil {
		written, blocked = k.policy(s, batch)
	}
	st := k.stream(s)
	for _, u := range batch[:max(0, min(written, len(batch)))] {
		if n := len(st.seqs); n > 0 && u.Seq <= st.seqs[n-1] {
			k.t.Errorf("subscriber %v: Seq %d delivered after Seq %d", s.Owner(), u.Seq, st.seqs[n-1])
		}
		if !s.Filter().Match(u) {
			k.t.Errorf("subscriber %v: Seq %d delivered but not selected by its filter", s.Owner(), u.Seq)
		}
		st.seqs = append(st.seqs, u.Seq)
		id, version := bodyOf(u)
		st.latest[id] = version
	}
	k.order = append(k.order, "deliver")
	return written, blocked
}

func (k *recordingSink) CaughtUp(s *Subscriber) {
	k.stream(s).caughtUp++
	k.order = append(k.order, "caughtup")
}

func (k *recordingSink) Failed(s *Subscriber, err error) { k.stream(s).failed = err }

// wakeCounter is a wake function that only counts.
type wakeCounter struct{ n int }

func (w *wakeCounter) wake() { w.n++ }

// newTestGroup returns a ring, its fake store and one group whose wake only
// counts.
func newTestGroup(t testing.TB, cfg Config) (*Ring, *fakeStore, *Group, *wakeCounter) {
	t.Helper()
	fs := newFakeStore()
	r, err := NewRing(cfg, 0)
	if err != nil {
		t.Fatalf("NewRing: %v", err)
	}
	w := &wakeCounter{}
	g, err := r.NewGroup(fs, w.wake)
	if err != nil {
		t.Fatalf("NewGroup: %v", err)
	}
	return r, fs, g, w
}

// pumpUntilIdle pumps while the group has a wake pending, failing the test
// if it never settles.
func pumpUntilIdle(t testing.TB, g *Group, sink Sink) {
	t.Helper()
	for i := 0; i < 100000; i++ {
		if !g.scheduled.Load() {
			return
		}
		g.Pump(sink)
	}
	t.Fatalf("group still scheduled after 100000 pumps")
}

func mustSubscribe(t testing.TB, g *Group, f Filter, after uint64, owner any) *Subscriber {
	t.Helper()
	s, err := g.Subscribe(f, after, owner)
	if err != nil {
		t.Fatalf("Subscribe(%+v): %v", f, err)
	}
	return s
}
