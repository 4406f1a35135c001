package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/internal/keatest"
	"github.com/alqd/alqd/requestor"
	"github.com/alqd/alqd/store"
)

// The scenario's timing. Kea grants short lifetimes so that leases expire,
// are reclaimed and are flushed within the test; LFC runs every few seconds
// so that alqd follows several rotations of the lease file.
const (
	testBudget      = 150 * time.Second // the whole test, Kea start to teardown
	trafficDuration = 10 * time.Second
	restartAfter    = 4 * time.Second // into the traffic, alqd gets SIGTERM
	lfcInterval     = 3 * time.Second
	minRotations    = 2
)

// TestKeaToRequestors runs the whole chain on real input. perfdhcp clients
// get leases from Kea, directly and through a relay that adds Remote-ID and
// Relay-ID. alqd follows Kea's lease file across LFC rotations and one
// restart, and requestors query alqd over TCP. At a moment when Kea is
// quiet, every lease Kea holds must be what alqd serves in Bulk
// Leasequery, what an unfiltered and a relay-id filtered Active Leasequery
// received, and what alqd's store contains, field by field. Every binding
// alqd reports as ended must be released, reclaimed or flushed in Kea.
func TestKeaToRequestors(t *testing.T) {
	keatest.Require(t)
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), testBudget)
	defer cancel()

	// Build alqd while the namespaces and Kea come up.
	tmp := t.TempDir()
	type buildResult struct {
		bin string
		err error
	}
	built := make(chan buildResult, 1)
	go func() {
		bin, err := buildAlqd(ctx, tmp)
		built <- buildResult{bin, err}
	}()
	env := keatest.Start(t, keatest.Config{
		ValidLifetime:           15 * time.Second,
		PreferredLifetime:       10 * time.Second,
		RenewTimer:              5 * time.Second,
		RebindTimer:             8 * time.Second,
		HoldReclaimedTime:       3 * time.Second,
		ReclaimTimerWait:        time.Second,
		FlushReclaimedTimerWait: time.Second,
		LFCInterval:             lfcInterval,
	})
	b := <-built
	if b.err != nil {
		t.Fatal(b.err)
	}

	cfg := newAlqdConfig(t, b.bin, env.Kea.LeaseFile(), tmp)
	alqd, err := startAlqd(t, cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	checkMetrics(ctx, t, cfg.Metrics)
	server := cfg.Listen.String()

	relayLinks, err := keatest.RelayLinks()
	if err != nil {
		t.Fatal(err)
	}
	filterRelayID := keatest.RelayID(relayLinks[0])

	// Two active requestors, started before any lease exists.
	watchCtx, stopWatching := context.WithCancel(ctx)
	defer stopWatching()
	followAll, err := startActiveFollower(watchCtx, "unfiltered active requestor", server, nil)
	if err != nil {
		t.Fatal(err)
	}
	followRelay, err := startActiveFollower(watchCtx, "relay-id active requestor", server,
		&requestor.Query{Type: codec.QueryByRelayID, RelayID: filterRelayID})
	if err != nil {
		t.Fatal(err)
	}
	followers := []*activeFollower{followAll, followRelay}
	defer func() {
		stopWatching()
		for _, f := range followers {
			<-f.done
		}
	}()
	activeWorks := true
	for _, f := range followers {
		waitCtx, waitCancel := context.WithTimeout(ctx, 10*time.Second)
		if err := f.waitCaughtUp(waitCtx, 1); err != nil {
			t.Errorf("Active Leasequery does not work: %v", err)
			activeWorks = false
		}
		waitCancel()
	}

	rotations := watchRotations(ctx, t, env.Kea.LeaseFile())

	// Traffic, with alqd restarted in the middle of it.
	traffic := startTraffic(ctx, env)
	select {
	case <-time.After(restartAfter):
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	if err := alqd.Stop(); err != nil {
		t.Errorf("alqd restart: %v", err)
	}
	stoppedAt := time.Now()
	// The new alqd binds the same port at once, while the connections the
	// old one closed at shutdown are still in TIME_WAIT on it; Linux allows
	// that only with SO_REUSEADDR on the listening socket.
	alqd, err = startAlqd(t, cfg, 2)
	if err != nil {
		t.Fatalf("alqd restart: %v", err)
	}
	t.Logf("alqd restarted %.1f s into the traffic (down for %v)", restartAfter.Seconds(), time.Since(stoppedAt).Round(time.Millisecond))
	if err := <-traffic; err != nil {
		t.Fatal(err)
	}

	if activeWorks {
		checkResumed(ctx, t, followers)
	}

	// Wait until Kea holds assigned, reclaimed and flushed leases at once.
	if err := waitForExpiries(ctx, t, env.Kea, rotations); err != nil {
		t.Fatal(err)
	}

	// Freeze Kea for a consistent picture, and let alqd catch up.
	snap, frozen := freezeKea(ctx, t, env.Kea)
	if activeWorks {
		waitQuiet(ctx, t, followAll)
	}
	var activeView map[bindingKey]observed
	if activeWorks {
		activeView = followAll.View()
	}
	dump := dumpQueries(relayLinks, snap.directClients(activeView))
	if err := waitBulkStable(ctx, server, dump(true)); err != nil {
		t.Fatal(err)
	}

	history := compareBulk(ctx, t, snap, server, dump, filterRelayID)
	if activeWorks {
		compareActive(t, snap, followAll, nil)
		compareActive(t, snap, followRelay, filterRelayID)
		if p := compareViews(followAll.View(), history); len(p) > 0 {
			t.Errorf("the unfiltered active requestor and the bulk dump since start time 0 differ in %d bindings:\n%s", len(p), firstN(p, 20))
		}
	}
	for _, f := range followers {
		if p := f.Problems(); len(p) > 0 {
			t.Errorf("%s received %d unexpected events:\n%s", f.name, len(p), firstN(p, 10))
		}
	}

	// Stop alqd and compare its store, which holds what the wire does not.
	stopWatching()
	for _, f := range followers {
		<-f.done
	}
	if err := alqd.Stop(); err != nil {
		t.Errorf("alqd shutdown: %v", err)
	}
	compareStore(t, snap, cfg.DataDir)
	frozenFor := time.Since(frozen.at)
	if err := frozen.resume(); err != nil {
		t.Error(err)
	}
	if err := stopKea(env.Kea); err != nil {
		t.Error(err)
	}
	t.Logf("Kea paused for %v; %d lease file rotations; whole test %v",
		frozenFor.Round(time.Millisecond), rotations.Load(), time.Since(began).Round(time.Second))
}

func newAlqdConfig(t *testing.T, bin, leaseFile, dir string) alqdConfig {
	t.Helper()
	listenPort, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	metricsPort, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	loopback := netip.MustParseAddr("127.0.0.1")
	return alqdConfig{
		Binary:    bin,
		LeaseFile: leaseFile,
		DataDir:   filepath.Join(dir, "data"),
		Listen:    netip.AddrPortFrom(loopback, uint16(listenPort)),
		Metrics:   netip.AddrPortFrom(loopback, uint16(metricsPort)),
		LogDir:    dir,
	}
}

// checkMetrics checks that --metrics serves alqd's Prometheus metrics.
func checkMetrics(ctx context.Context, t *testing.T, addr netip.AddrPort) {
	t.Helper()
	body, err := scrapeMetrics(ctx, addr)
	if err != nil {
		t.Errorf("metrics: %v", err)
		return
	}
	if !bytes.Contains(body, []byte("alqd_")) {
		t.Errorf("metrics on %s hold no alqd_ metric:\n%s", addr, body)
	}
}

// watchRotations counts how often the live lease file is replaced by a new
// inode (Kea's LFC renames it to .1 and creates a new one), until ctx ends.
func watchRotations(ctx context.Context, t *testing.T, path string) *atomic.Int64 {
	var n atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	t.Cleanup(wg.Wait)
	go func() {
		defer wg.Done()
		last := inodeOf(path)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if ino := inodeOf(path); ino != 0 && ino != last {
				n.Add(1)
				last = ino
			}
		}
	}()
	return &n
}

// fileState is the identity and length of the live lease file.
type fileState struct {
	inode uint64
	size  int64
}

func statFile(path string) (fileState, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return fileState{}, err
	}
	return fileState{inode: st.Ino, size: st.Size}, nil
}

func inodeOf(path string) uint64 {
	st, err := statFile(path)
	if err != nil {
		return 0
	}
	return st.inode
}

// startTraffic runs direct and relayed perfdhcp clients, both with renews
// and releases, and reports on the channel when both have finished.
func startTraffic(ctx context.Context, env *keatest.Env) <-chan error {
	direct := keatest.Load{Rate: 60, RenewRate: 20, ReleaseRate: 8, Clients: 400, Duration: trafficDuration}
	relayed := keatest.Load{Relayed: true, Rate: 25, RenewRate: 8, ReleaseRate: 3, Clients: 200, Duration: trafficDuration}
	done := make(chan error, 1)
	go func() {
		results, err := env.RunAll(ctx, direct, relayed)
		if err != nil {
			done <- err
			return
		}
		var errs []error
		for i, name := range []string{"direct", "relayed"} {
			if results[i].Exchanges["REQUEST-REPLY"].Received == 0 {
				errs = append(errs, fmt.Errorf("%s perfdhcp run received no Reply to Request:\n%s", name, results[i].Output))
			}
		}
		if env.Shim.Forwarded() == 0 {
			errs = append(errs, errors.New("the relay shim forwarded no Relay-forward message"))
		}
		done <- errors.Join(errs...)
	}()
	return done
}

// checkResumed checks that every active requestor reconnected after the
// restart with OPTION_LQ_START_TIME set to the last base-time it had
// received, and that the server completed its catch-up.
func checkResumed(ctx context.Context, t *testing.T, followers []*activeFollower) {
	t.Helper()
	for _, f := range followers {
		waitCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
		err := f.waitCaughtUp(waitCtx, 2)
		cancel()
		if err != nil {
			t.Errorf("after the restart: %v", err)
			continue
		}
		conns := f.Connections()
		first, resumed := conns[0], conns[1]
		if first.Ended == nil {
			t.Errorf("%s: the first connection has no recorded end, although alqd restarted", f.name)
		}
		switch {
		case !resumed.Connected.HasStartTime:
			t.Errorf("%s: the connection after the restart sent no OPTION_LQ_START_TIME", f.name)
		case !resumed.HasWantStart:
			t.Errorf("%s: no base-time was received before the restart", f.name)
		case resumed.Connected.StartTime != resumed.WantStart:
			t.Errorf("%s: the connection after the restart sent OPTION_LQ_START_TIME %d, the last base-time received was %d",
				f.name, resumed.Connected.StartTime, resumed.WantStart)
		}
		t.Logf("%s: first connection ended with %v; reconnected with start time %v", f.name, first.Ended,
			codec.TimeFromDHCP(resumed.Connected.StartTime).Format(time.TimeOnly))
	}
}

// waitForExpiries polls Kea until it holds leases that are assigned,
// leases that are expired and reclaimed, and has flushed at least one
// reclaimed lease, and until LFC has rotated the lease file often enough.
func waitForExpiries(ctx context.Context, t *testing.T, kea *keatest.Kea, rotations *atomic.Int64) error {
	t.Helper()
	type seen struct {
		key  bindingKey
		duid string
	}
	reclaimed := make(map[seen]bool)
	var flushed, held, assigned int
	for {
		leases, err := kea.Control().Leases(ctx)
		if err != nil {
			return err
		}
		present := make(map[seen]bool, len(leases))
		held, assigned = 0, 0
		for _, l := range leases {
			k, err := keaKey(l)
			if err != nil {
				return err
			}
			s := seen{k, string(l.DUID)}
			present[s] = true
			switch l.State {
			case keatest.StateExpiredReclaimed:
				held++
				reclaimed[s] = true
			case keatest.StateDefault:
				assigned++
			}
		}
		for s := range reclaimed {
			if !present[s] {
				flushed++
				delete(reclaimed, s)
			}
		}
		if flushed > 0 && held > 0 && assigned > 0 && rotations.Load() >= minRotations {
			t.Logf("Kea holds %d assigned and %d reclaimed leases, flushed %d so far; %d rotations",
				assigned, held, flushed, rotations.Load())
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for expiries: %w (assigned %d, reclaimed %d, flushed %d, rotations %d)",
				ctx.Err(), assigned, held, flushed, rotations.Load())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// frozenKea is a kea-dhcp6 process stopped with SIGSTOP.
type frozenKea struct {
	pid int
	at  time.Time // when Kea was stopped

	once sync.Once
	err  error
}

// freezeKea takes Kea's leases at a moment when the lease file does not
// change, and stops Kea (SIGSTOP) so that it stays that way: the lease file
// then holds exactly the state lease6-get-all returned. Kea continues at the
// latest in t.Cleanup.
func freezeKea(ctx context.Context, t *testing.T, kea *keatest.Kea) (keaSnapshot, *frozenKea) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		before, err := statFile(kea.LeaseFile())
		if err != nil {
			t.Fatal(err)
		}
		leases, err := kea.Control().Leases(ctx)
		if err != nil {
			t.Fatal(err)
		}
		frozen := &frozenKea{pid: kea.PID(), at: time.Now()}
		if err := syscall.Kill(frozen.pid, syscall.SIGSTOP); err != nil {
			t.Fatalf("stop Kea (pid %d): %v", frozen.pid, err)
		}
		after, err := statFile(kea.LeaseFile())
		if err != nil {
			frozen.resume()
			t.Fatal(err)
		}
		if before == after {
			t.Cleanup(func() {
				if err := frozen.resume(); err != nil {
					t.Error(err)
				}
			})
			snap, err := newKeaSnapshot(leases)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("Kea paused (SIGSTOP) with %d leases, live lease file at %d bytes (attempt %d)", len(leases), after.size, attempt)
			return snap, frozen
		}
		if err := frozen.resume(); err != nil {
			t.Fatal(err)
		}
		if attempt == 50 {
			t.Fatal("the lease file changed during each of 50 lease6-get-all calls")
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// resume continues Kea (SIGCONT). It is idempotent.
func (f *frozenKea) resume() error {
	f.once.Do(func() {
		err := syscall.Kill(f.pid, syscall.SIGCONT)
		if err != nil && !errors.Is(err, syscall.ESRCH) {
			f.err = fmt.Errorf("continue Kea (pid %d): %w", f.pid, err)
		}
	})
	return f.err
}

// stopKea stops Kea and waits until no kea-lfc it started is left. Kea
// renames the lease file to .1 before it starts kea-lfc, and kea-lfc
// deletes .1 and then its .pid file when it finishes. Kea.Stop waits only
// for the .pid file, which a kea-lfc started just before SIGTERM may not
// have written yet; LFC falls due at once after a long SIGSTOP.
func stopKea(kea *keatest.Kea) error {
	if err := kea.Stop(); err != nil {
		return err
	}
	const timeout = 10 * time.Second
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); {
		_, errRotated := os.Stat(kea.LeaseFile() + ".1")
		_, errLFC := os.Stat(kea.LeaseFile() + ".pid")
		if errors.Is(errRotated, os.ErrNotExist) && errors.Is(errLFC, os.ErrNotExist) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("kea-lfc had not finished %v after Kea stopped: %s.1 or .pid still exists", timeout, kea.LeaseFile())
}

// waitQuiet waits until the unfiltered active requestor has received no
// binding for a while: it receives every change alqd commits, so alqd has
// then applied everything Kea wrote before it was stopped.
func waitQuiet(ctx context.Context, t *testing.T, f *activeFollower) {
	t.Helper()
	const quiet = 1500 * time.Millisecond
	for {
		if d, _ := f.Quiet(); d >= quiet {
			return
		}
		select {
		case <-ctx.Done():
			_, n := f.Quiet()
			t.Fatalf("%s kept receiving bindings (%d so far): %v", f.name, n, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// dumpQueries returns the Bulk Leasequery queries that together cover every
// binding: QUERY_BY_LINK_ADDRESS for each relay link, and QUERY_BY_CLIENTID
// for each direct client, because a binding without a relay has no
// link-address to query (alqd rejects link-address ::). With since set,
// each carries OPTION_LQ_START_TIME 0, so that released and expired
// bindings are reported too (RFC 7653 section 6.3.2).
func dumpQueries(links []netip.Addr, directClients [][]byte) func(since bool) []requestor.Query {
	return func(since bool) []requestor.Query {
		var qs []requestor.Query
		for _, l := range links {
			qs = append(qs, requestor.Query{Type: codec.QueryByLinkAddress, Link: l})
		}
		for _, duid := range directClients {
			qs = append(qs, requestor.Query{Type: codec.QueryByClientID, ClientID: duid})
		}
		for i := range qs {
			qs[i].RelayData = true
			qs[i].HasStartTime = since
		}
		return qs
	}
}

// waitBulkStable repeats the Bulk Leasequery queries until two runs in a
// row return the same bindings, clients and CLTTs: alqd's view no longer
// changes.
func waitBulkStable(ctx context.Context, server string, queries []requestor.Query) error {
	digest := func(view map[bindingKey]observed) string {
		var b bytes.Buffer
		for _, k := range sortedKeys(view) {
			o := view[k]
			fmt.Fprintf(&b, "%s %x %d\n", k, o.ClientID, o.CLTT)
		}
		return b.String()
	}
	var last string
	for attempt := 0; ; attempt++ {
		view, _, _, err := bulkDump(ctx, server, queries)
		if err != nil {
			return err
		}
		d := digest(view)
		if attempt > 0 && d == last {
			return nil
		}
		last = d
		select {
		case <-ctx.Done():
			return fmt.Errorf("alqd's bindings kept changing after Kea stopped: %w", ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// compareBulk compares Kea's leases with three kinds of Bulk Leasequery:
// the dump without a time range (only bindings with valid lifetime left),
// the dump with OPTION_LQ_START_TIME 0 (ended ones too), and the relay-id of
// one relay. It returns the bindings of the dump since start time 0.
func compareBulk(ctx context.Context, t *testing.T, snap keaSnapshot, server string, dump func(since bool) []requestor.Query, relayID []byte) map[bindingKey]observed {
	t.Helper()
	everything := func(keatest.Lease) bool { return true }
	byRelay := func(l keatest.Lease) bool {
		r := keaRelay(l)
		return r != nil && bytes.Equal(r.RelayID, relayID)
	}

	cases := []struct {
		name       string
		queries    []requestor.Query
		want       func(keatest.Lease) bool
		activeOnly bool
	}{
		{"bulk by link-address and client-id", dump(false), everything, true},
		{"bulk by link-address and client-id since start time 0", dump(true), everything, false},
		{"bulk by relay-id", []requestor.Query{{Type: codec.QueryByRelayID, RelayID: relayID, RelayData: true}}, byRelay, true},
	}
	var history map[bindingKey]observed
	for _, c := range cases {
		view, _, last, err := bulkDump(ctx, server, c.queries)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if !c.activeOnly {
			history = view
		}
		res := snap.compareView(view, c.want, c.activeOnly, last)
		reportView(t, c.name, len(view), res)
		if c.activeOnly && res.Active == 0 {
			t.Errorf("%s: no active binding was compared, so the check proved nothing", c.name)
		}
	}
	return history
}

// compareActive compares an active requestor's bindings with Kea; with a
// relay-id, only Kea's leases through that relay are expected, and every
// binding received must carry it.
func compareActive(t *testing.T, snap keaSnapshot, f *activeFollower, relayID []byte) {
	t.Helper()
	want := func(keatest.Lease) bool { return true }
	view := f.View()
	if relayID != nil {
		want = func(l keatest.Lease) bool {
			r := keaRelay(l)
			return r != nil && bytes.Equal(r.RelayID, relayID)
		}
		for _, k := range sortedKeys(view) {
			if o := view[k]; !bytes.Equal(o.RelayID, relayID) {
				t.Errorf("%s: %s has relay-id %x, the query asked for %x", f.name, k, o.RelayID, relayID)
			}
		}
	}
	res := snap.compareView(view, want, false, 0)
	reportView(t, f.name, len(view), res)
	if res.Active == 0 || res.EndedHeld+res.EndedGone == 0 {
		t.Errorf("%s: compared %d active and %d ended bindings, want some of each", f.name, res.Active, res.EndedHeld+res.EndedGone)
	}
}

func reportView(t *testing.T, name string, size int, res viewCheck) {
	t.Helper()
	t.Logf("%s: %d bindings; %d Kea leases expected, %d active and %d ended equal, %d ended and gone from Kea",
		name, size, res.Expected, res.Active, res.EndedHeld, res.EndedGone)
	if len(res.Problems) > 0 {
		t.Errorf("%s: %d differences from Kea:\n%s", name, len(res.Problems), firstN(res.Problems, 20))
	}
}

// compareStore opens the store alqd left in dir and compares every binding
// with Kea's leases: IAID, granted lifetimes and exact CLTT, which no reply
// carries, are checked here. A binding Kea does not hold must be ended.
func compareStore(t *testing.T, snap keaSnapshot, dir string) {
	t.Helper()
	st, err := store.Open(dir, store.Options{TrimInterval: -1, Logger: discardLogger()})
	if err != nil {
		t.Fatalf("open alqd's store after it stopped: %v", err)
	}
	defer st.Close()

	var problems []string
	counts := make(map[string]int)
	found := make(map[bindingKey]bool)
	it := st.All()
	for it.Next() {
		b := it.Binding()
		k := storeKey(b.Key)
		l, ok := snap.leases[k]
		switch {
		case ok:
			found[k] = true
			if diffs := compareStored(*b, l); len(diffs) > 0 {
				problems = append(problems, fmt.Sprintf("%s: %v", k, diffs))
			}
			counts[fmt.Sprintf("%s in Kea", b.State)]++
		case b.State.Ended():
			counts[fmt.Sprintf("%s, gone from Kea", b.State)]++
		default:
			problems = append(problems, fmt.Sprintf("%s: %s in the store for DUID %x, Kea has no such lease", k, b.State, b.ClientID))
		}
	}
	if err := it.Close(); err != nil {
		t.Fatalf("read alqd's store: %v", err)
	}
	for _, k := range sortedKeys(snap.leases) {
		if !found[k] {
			problems = append(problems, fmt.Sprintf("%s: missing from the store (Kea state %d)", k, snap.leases[k].State))
		}
	}

	t.Logf("alqd's store: %v", counts)
	if len(problems) > 0 {
		t.Errorf("alqd's store differs from Kea in %d bindings:\n%s", len(problems), firstN(problems, 20))
	}
	for _, want := range []string{"active in Kea", "expired in Kea", "released, gone from Kea", "expired, gone from Kea"} {
		if counts[want] == 0 {
			t.Errorf("alqd's store has no binding %s, so the scenario did not cover that case", want)
		}
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
