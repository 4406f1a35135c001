package e2e

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/alqd/alqd/ingest"
	"github.com/alqd/alqd/internal/keatest"
	"github.com/alqd/alqd/loadgen"
	"github.com/alqd/alqd/store"
)

// Settings of BenchmarkFollowerVsKea.
const (
	// followerBenchRows is the size of the generated lease file, in rows.
	followerBenchRows = 300000
	// followerBenchLinks is the number of links of the generated clients;
	// every client is behind one of 16 relays.
	followerBenchLinks = 64
	// followerBenchTimeout bounds one cold-start load of the file.
	followerBenchTimeout = 60 * time.Second
)

// keaSaturatingLoad is a direct IA_NA+IA_PD perfdhcp run that offers Kea
// about 10,400 lease rows per second (two rows per Reply, plus Renew and
// Release). On two cores it gives about the highest row rate Kea 2.2's
// memfile backend reaches: Kea wrote about 9,800 rows/s at this load, and
// higher offered rates gave fewer (about 7,800 rows/s at rate 5000, 5,600 at
// 8000), because Kea and perfdhcp then compete for the cores. The 50,000
// clients stay below the 61,440 addresses of the direct pool.
var keaSaturatingLoad = keatest.Load{
	Rate:        4000,
	RenewRate:   800,
	ReleaseRate: 400,
	Clients:     50000,
	Duration:    3 * time.Second,
}

// BenchmarkFollowerVsKea compares the rate at which Kea writes lease rows
// with the rate at which alqd's Kea follower commits them to a synced store.
// Each iteration measures Kea's own row rate under a saturating perfdhcp
// load (keatest.MeasureRowRate, LFC off), then loads a generated lease file
// of followerBenchRows rows into a new, empty store.Store with default
// options. The load is a cold start, as when alqd starts next to a Kea that
// has been running. The follower rate runs from NewFollower to the commit that marks the full load
// complete, reconciliation included.
//
// Reported: kea-rows/s, follower-rows/s and follower/kea, the factor by
// which the follower outruns the server it follows. A factor above 1 means
// the follower keeps up with Kea at full load on the same machine.
func BenchmarkFollowerVsKea(b *testing.B) {
	// Long lifetimes keep reclamation rows out of Kea's measurement.
	env := keatest.Start(b, keatest.Config{
		ValidLifetime:     300 * time.Second,
		PreferredLifetime: 200 * time.Second,
		RenewTimer:        100 * time.Second,
		RebindTimer:       160 * time.Second,
	})
	leaseFile := filepath.Join(b.TempDir(), "kea-leases6.csv")
	rows, size := writeChurnLeaseFile(b, leaseFile, followerBenchRows)
	b.Logf("generated lease file: %d rows, %d bytes", rows, size)

	ctx := context.Background()
	var kea keatest.RowRate
	var followerRows int64
	var followerTime time.Duration
	b.ResetTimer()
	for range b.N {
		rate, err := keatest.MeasureRowRate(ctx, env, keaSaturatingLoad)
		if err != nil {
			b.Fatal(err)
		}
		kea.Rows += rate.Rows
		kea.Elapsed += rate.Elapsed

		elapsed := coldLoad(b, leaseFile, rows)
		followerRows += rows
		followerTime += elapsed
	}
	b.StopTimer()

	if kea.Rows == 0 || kea.Elapsed <= 0 {
		b.Fatalf("Kea wrote %d lease rows in %v under perfdhcp load; its log is in %s", kea.Rows, kea.Elapsed, env.Kea.LogFile())
	}
	keaRate := kea.PerSecond()
	followerRate := float64(followerRows) / followerTime.Seconds()
	b.ReportMetric(keaRate, "kea-rows/s")
	b.ReportMetric(followerRate, "follower-rows/s")
	b.ReportMetric(followerRate/keaRate, "follower/kea")
	b.ReportMetric(float64(size)*float64(b.N)/followerTime.Seconds()/1e6, "follower-MB/s")
}

// writeChurnLeaseFile writes n rows of generated churn to path in Kea
// 2.2's memfile format, without rotation, and returns the rows written and
// the file size. The clients do all four events (new bindings, renewals,
// releases, expiry with reclamation), half of them hold an IA_PD prefix
// besides their address, and every one is relayed with Interface-ID,
// Remote-ID and Relay-ID in the row's user context.
func writeChurnLeaseFile(tb testing.TB, path string, n int) (rows, size int64) {
	tb.Helper()
	churn, err := loadgen.NewChurn(loadgen.ChurnConfig{
		Seed:    7653,
		Clients: 100000,
		Links:   followerBenchLinks,
		Relays:  16,
		Stamp:   loadgen.StampNone,
	})
	if err != nil {
		tb.Fatal(err)
	}
	w, err := loadgen.NewKeaWriter(loadgen.KeaConfig{Path: path})
	if err != nil {
		tb.Fatal(err)
	}

	ctx := context.Background()
	now := time.Now()
	var changes []loadgen.Change
	for w.Stats().Rows < uint64(n) {
		changes = churn.NextChanges(changes[:0], min(4096, n-int(w.Stats().Rows)), now)
		if err := w.Write(ctx, changes); err != nil {
			tb.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	stats := w.Stats()
	if stats.Errors != 0 {
		tb.Fatalf("writing the lease file failed: %s", stats.FirstError)
	}
	fi, err := os.Stat(path)
	if err != nil {
		tb.Fatal(err)
	}
	return int64(stats.Rows), fi.Size()
}

// coldLoad opens a new store, runs a Follower on leaseFile until it has
// committed all rows and marked the full load complete, and returns the
// time from NewFollower to that commit. It fails the benchmark if a row was
// malformed or the load does not finish within followerBenchTimeout.
func coldLoad(b *testing.B, leaseFile string, rows int64) time.Duration {
	b.Helper()
	st, err := store.Open(filepath.Join(b.TempDir(), "store"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := st.Close(); err != nil {
			b.Errorf("closing the store: %v", err)
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), followerBenchTimeout)
	defer cancel()
	done := &loadWatcher{Store: st, rows: rows, done: make(chan struct{})}
	began := time.Now()
	f, err := ingest.NewFollower(done, ingest.FollowerConfig{
		Path:         leaseFile,
		SubnetLinks:  loadgen.SubnetLinks(followerBenchLinks),
		ListBindings: ingest.StoreBindings(st),
	})
	if err != nil {
		b.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- f.Run(ctx) }()

	var elapsed time.Duration
	select {
	case <-done.done:
		elapsed = time.Since(began)
	case <-ctx.Done():
	}
	cancel()
	if err := <-runErr; err != nil {
		b.Fatal(err)
	}
	stats := f.Stats()
	if elapsed == 0 {
		b.Fatalf("the follower committed %d of %d rows in %v without completing the full load", done.applied(), rows, followerBenchTimeout)
	}
	if stats.RowsRead != uint64(rows) || stats.MalformedRows != 0 || stats.ApplyErrors != 0 {
		b.Fatalf("follower read %d rows of %d, %d malformed, %d failed Apply calls", stats.RowsRead, rows, stats.MalformedRows, stats.ApplyErrors)
	}
	return elapsed
}

// loadWatcher is the follower's store: it passes every Apply to the real
// store and closes done after the commit that follows the last row. On a
// cold start, the follower commits the rows of the file, reconciles with the
// store and then calls Apply once without changes to store its position as
// complete. That commit ends the full load.
type loadWatcher struct {
	*store.Store
	rows int64
	done chan struct{}

	mu      sync.Mutex
	changes int64
	closed  bool
}

func (w *loadWatcher) Apply(ctx context.Context, changes []store.Binding, meta map[string][]byte) (uint64, error) {
	seq, err := w.Store.Apply(ctx, changes, meta)
	if err != nil {
		return seq, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.changes >= w.rows && len(changes) == 0 && !w.closed {
		w.closed = true
		close(w.done)
	}
	w.changes += int64(len(changes))
	return seq, nil
}

// applied returns the number of changes committed so far.
func (w *loadWatcher) applied() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.changes
}
