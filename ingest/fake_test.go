package ingest

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alqd/alqd/store"
)

// fakeStore is an in-memory Store. Apply commits changes and meta together
// under one lock, skips changes identical to the stored state as the real
// store does, and records every binding it was given.
type fakeStore struct {
	mu       sync.Mutex
	state    map[store.Key]store.Binding
	meta     map[string][]byte
	applied  []store.Binding // every binding of every successful Apply, deep copies
	changes  []store.Binding // the applied bindings that changed the state
	applies  int
	failNext int  // Apply calls still to fail
	closed   bool // set by the test after Run returned: Apply must not be called
	late     int  // Apply calls while closed
	seq      uint64
	onApply  func() // called after each commit, outside the lock
	lastMeta []byte
	gate     chan struct{} // when set, Apply waits for it to close
	waiting  int           // Apply calls that waited on gate
}

func newFakeStore() *fakeStore {
	return &fakeStore{state: make(map[store.Key]store.Binding), meta: make(map[string][]byte)}
}

var errInjected = errors.New("fake store: injected failure")

func (s *fakeStore) Apply(ctx context.Context, changes []store.Binding, meta map[string][]byte) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	gate := s.gate
	if gate != nil {
		s.waiting++
	}
	s.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}

	s.mu.Lock()
	if s.closed {
		s.late++
	}
	if s.failNext > 0 {
		s.failNext--
		s.mu.Unlock()
		return 0, errInjected
	}
	s.applies++
	for i := range changes {
		c := changes[i].Clone()
		s.applied = append(s.applied, c)
		if prev, ok := s.state[c.Key]; ok && bindingsEqual(&prev, &c) {
			continue
		}
		s.seq++
		c.Seq = s.seq
		s.state[c.Key] = c
		s.changes = append(s.changes, c)
	}
	for k, v := range meta {
		s.meta[k] = bytes.Clone(v)
		s.lastMeta = s.meta[k]
	}
	seq := s.seq
	onApply := s.onApply
	s.mu.Unlock()
	if onApply != nil {
		onApply()
	}
	return seq, nil
}

func (s *fakeStore) Meta(key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.meta[key]), nil
}

// list is a FollowerConfig.ListBindings over the fake's state, in key order.
func (s *fakeStore) list(ctx context.Context, yield func(*store.Binding) bool) error {
	s.mu.Lock()
	all := make([]store.Binding, 0, len(s.state))
	for _, b := range s.state {
		all = append(all, b.Clone())
	}
	s.mu.Unlock()
	slices.SortFunc(all, func(a, b store.Binding) int { return cmp.Compare(a.Prefix.String(), b.Prefix.String()) })
	for i := range all {
		if !yield(&all[i]) {
			return nil
		}
	}
	return nil
}

func (s *fakeStore) appliedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.applied)
}

func (s *fakeStore) snapshotApplied() []store.Binding {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.applied)
}

func (s *fakeStore) snapshotState() map[store.Key]store.Binding {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[store.Key]store.Binding, len(s.state))
	for k, v := range s.state {
		m[k] = v
	}
	return m
}

// bindingsEqual compares everything but Seq and ChangeTime, which the store
// assigns.
func bindingsEqual(a, b *store.Binding) bool {
	x, y := *a, *b
	x.Seq, y.Seq = 0, 0
	x.ChangeTime, y.ChangeTime = time.Time{}, time.Time{}
	x.CLTT, y.CLTT = x.CLTT.UTC(), y.CLTT.UTC()
	norm := func(b []byte) []byte {
		if len(b) == 0 {
			return nil
		}
		return b
	}
	for _, p := range []*[]byte{&x.ClientID, &x.RelayID, &x.RemoteID, &x.InterfaceID, &x.RelayMessage, &y.ClientID, &y.RelayID, &y.RemoteID, &y.InterfaceID, &y.RelayMessage} {
		*p = norm(*p)
	}
	return reflect.DeepEqual(x, y)
}

// describe renders a binding in one line for comparisons and failure output.
func describe(b *store.Binding) string {
	return fmt.Sprintf("%v %v duid=%x iaid=%d lt=%d/%d %v cltt=%d link=%v rid=%x relay=%x if=%x peer=%v msg=%x source=%v",
		b.Type, b.Prefix, b.ClientID, b.IAID, b.PreferredLifetime, b.ValidLifetime, b.State, b.CLTT.Unix(),
		b.LinkAddress, b.RemoteID, b.RelayID, b.InterfaceID, b.RelayPeer, b.RelayMessage, b.Source)
}

// keaSim writes a lease file and rotates it the way kea-dhcp6 2.2 and
// kea-lfc do. Kea writes one row per write, renames the live file to .1 and
// creates a new live file with a header. Then kea-lfc writes its pid file,
// compacts .2 and .1 into .output and renames it to .completed. It removes
// .2 and .1, renames .completed to .2 and removes the pid file.
type keaSim struct {
	t       testing.TB
	path    string
	live    *os.File
	written []string // complete rows in the order written, over all files
}

func newKeaSim(t testing.TB, dir string) *keaSim {
	k := &keaSim{t: t, path: filepath.Join(dir, "leases6.csv")}
	k.openLive()
	t.Cleanup(func() {
		if k.live != nil {
			k.live.Close()
		}
	})
	return k
}

func (k *keaSim) openLive() {
	file, err := os.OpenFile(k.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		k.t.Fatal(err)
	}
	k.live = file
	if fi, _ := file.Stat(); fi.Size() == 0 {
		k.raw(keaHeader + "\n")
	}
}

func (k *keaSim) raw(s string) {
	if _, err := k.live.WriteString(s); err != nil {
		k.t.Fatal(err)
	}
}

// write appends complete rows, one write each.
func (k *keaSim) write(rows ...string) {
	for _, row := range rows {
		k.raw(row + "\n")
		k.written = append(k.written, row)
	}
}

// rotate is Kea's part of LFC: close, rename to .1, new live file.
func (k *keaSim) rotate() {
	k.live.Close()
	if err := os.Rename(k.path, k.path+".1"); err != nil {
		k.t.Fatal(err)
	}
	k.openLive()
}

// lfcStart is kea-lfc up to .completed: pid file, compaction of .2 and .1.
func (k *keaSim) lfcStart() {
	if err := os.WriteFile(k.path+".pid", fmt.Appendf(nil, "%d\n", os.Getpid()), 0o644); err != nil {
		k.t.Fatal(err)
	}
	var rows []string
	for _, suffix := range []string{".2", ".1"} {
		data, err := os.ReadFile(k.path + suffix)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			k.t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
		rows = append(rows, lines[1:]...)
	}
	compacted := compact(rows)
	out := keaHeader + "\n" + strings.Join(compacted, "\n")
	if len(compacted) > 0 {
		out += "\n"
	}
	if err := os.WriteFile(k.path+".output", []byte(out), 0o644); err != nil {
		k.t.Fatal(err)
	}
	if err := os.Rename(k.path+".output", k.path+".completed"); err != nil {
		k.t.Fatal(err)
	}
}

// lfcFinish is the rest of kea-lfc: remove .2 and .1, rename .completed to
// .2, remove the pid file.
func (k *keaSim) lfcFinish() {
	for _, suffix := range []string{".2", ".1"} {
		if err := os.Remove(k.path + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			k.t.Fatal(err)
		}
	}
	if err := os.Rename(k.path+".completed", k.path+".2"); err != nil {
		k.t.Fatal(err)
	}
	if err := os.Remove(k.path + ".pid"); err != nil {
		k.t.Fatal(err)
	}
}

// lfc runs a whole cleanup: rotation and kea-lfc.
func (k *keaSim) lfc() {
	k.rotate()
	k.lfcStart()
	k.lfcFinish()
}

// compact keeps the last row of every lease, drops deleted leases
// (valid_lifetime 0) and sorts by address, as kea-lfc does.
func compact(rows []string) []string {
	last := make(map[string]string)
	for _, row := range rows {
		f := strings.Split(row, ",")
		last[f[6]+"|"+f[0]] = row
	}
	var out []string
	for _, row := range last {
		if strings.Split(row, ",")[2] != "0" {
			out = append(out, row)
		}
	}
	slices.Sort(out)
	return out
}

// churn generates rows of a realistic mix for a fixed set of clients: new
// bindings, extensions, releases, reclaims and flushes, IA_NA and IA_PD,
// direct and relayed, with the expire times Kea would write.
type churn struct {
	rng     *rand.Rand
	now     int64
	clients []simClient
}

type simClient struct {
	state  int // 0 none, 1 assigned, 2 reclaimed
	expire int64
}

func newChurn(seed uint64, clients int) *churn {
	return &churn{rng: rand.New(rand.NewPCG(seed, 1)), now: 1796412089, clients: make([]simClient, clients)}
}

const simValid, simPreferred = 30, 20

func (c *churn) rows(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = c.next()
	}
	return out
}

func (c *churn) next() string {
	c.now += int64(c.rng.IntN(2))
	i := c.rng.IntN(len(c.clients))
	cl := &c.clients[i]
	switch cl.state {
	case 0:
		cl.state, cl.expire = 1, c.now+simValid
		return c.row(i, simValid, cl.expire, simPreferred, 0)
	case 1:
		switch r := c.rng.IntN(10); {
		case r < 6:
			cl.expire = c.now + simValid
			return c.row(i, simValid, cl.expire, simPreferred, 0)
		case r < 8:
			cl.state = 0
			return c.row(i, 0, cl.expire-simValid, 0, 0)
		default:
			cl.state = 2
			return c.row(i, simValid, cl.expire, simPreferred, 2)
		}
	default:
		cl.state = 0
		return c.row(i, 0, cl.expire-simValid, simPreferred, 2)
	}
}

// row formats one Kea 2.2 row for client i. Every third client is an IA_PD,
// every even one is relayed.
func (c *churn) row(i int, valid, expire int64, preferred, state int) string {
	address, leaseType, prefixLen, subnet := fmt.Sprintf("2001:db8:1::%x:%x", 1+i>>16, i&0xffff), 0, 128, 1
	if i%3 == 0 {
		address, leaseType, prefixLen = fmt.Sprintf("2001:db8:%x:%x00::", 0x8000+i>>8, i&0xff), 2, 56
	}
	context := ""
	if i%2 == 0 {
		subnet = 2
		context = fmt.Sprintf(`{ "ISC": { "relays": [ { "hop": 0&#x2c "link": "2001:db8:2::1"&#x2c "options": "0x0012000C766574682D636C692E3130300025000E00000DE97375622D30303030%04X0035000A0003000102AABBCCDD01"&#x2c "peer": "2001:db8:1::2" } ] } }`,
			0x3030+i%8)
	}
	return fmt.Sprintf("%s,00:01:00:01:32:a5:cf:39:00:0c:%02x:%02x:%02x:%02x,%d,%d,%d,%d,%d,1,%d,0,0,,00:0c:01:02:03:04,%d,%s,1,2",
		address, byte(i>>24), byte(i>>16), byte(i>>8), byte(i), valid, expire, subnet, preferred, leaseType, prefixLen, state, context)
}

// replay parses rows in order and returns the bindings and the state a
// store ends in after applying them.
func replay(t testing.TB, rows []string) ([]store.Binding, map[store.Key]store.Binding) {
	t.Helper()
	var p Parser
	if err := p.SetHeader(keaHeader); err != nil {
		t.Fatal(err)
	}
	bindings := make([]store.Binding, 0, len(rows))
	state := make(map[store.Key]store.Binding)
	var row Row
	for i, line := range rows {
		if err := p.ParseRow(line, &row); err != nil {
			t.Fatalf("row %d of the test's own rows: %v", i, err)
		}
		bindings = append(bindings, row.Binding)
		state[row.Binding.Key] = row.Binding
	}
	return bindings, state
}

// syncBuffer is a goroutine-safe buffer for log output.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
