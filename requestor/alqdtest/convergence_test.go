package alqdtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand"
	"sync"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/loadgen"
	"github.com/alqd/alqd/requestor"
	"github.com/alqd/alqd/requestor/mirror"
	"github.com/alqd/alqd/store"
)

// Settings of TestAlqdMirrorConvergence. The churn is bounded in count
// (convergenceBatches of convergenceBatchSize changes) and in time (it
// stops when the script ends, whichever comes first).
const (
	convergenceSeed      = 7653
	convergenceLinks     = 4
	convergenceBatches   = 400
	convergenceBatchSize = 8
	// convergenceRetention is the store's history retention. Trim drops
	// the released and expired bindings whose last change is older.
	convergenceRetention = 10 * time.Minute
)

// churnStore is the store the churn applies to, swapped by server
// restarts. The churn holds the read lock for each batch, and a restart or
// a trim holds the write lock. So no batch runs against a closed store,
// and none moves the clock while a trim runs.
type churnStore struct {
	mu sync.RWMutex
	st *store.Store
}

// TestAlqdMirrorConvergence runs a mirror against alqd under binding churn.
// Meanwhile the mirror disconnects and reconnects at random points, and
// alqd restarts twice on its store. Once, while the mirror is away, the
// history is trimmed above the mirror's checkpoint, so the mirror gets
// DataMissing (RFC 7653 section 8.4.1) and recovers with a full Bulk
// Leasequery, after which it ends the bindings the trim removed. Once the
// churn has stopped and the mirror has caught up, the mirror must contain
// exactly the server's bindings (see compareMirror).
func TestAlqdMirrorConvergence(t *testing.T) {
	rng := rand.New(rand.NewSource(convergenceSeed))
	clock := &fakeClock{t: now}
	storeDir := t.TempDir()
	storeOpts := store.Options{NoSync: true, TrimInterval: -1, Retention: convergenceRetention, Clock: clock.Now, Logger: slog.New(slog.DiscardHandler)}
	open := func() *store.Store {
		st, err := store.Open(storeDir, storeOpts)
		if err != nil {
			t.Fatalf("open the store in %s: %v", storeDir, err)
		}
		return st
	}
	cs := &churnStore{st: open()}
	t.Cleanup(func() {
		cs.mu.Lock()
		cs.st.Close()
		cs.mu.Unlock()
	})

	// As in TestAlqdMirrorAcrossRestarts: a one-second receive timeout
	// ends connections that a restart left silent behind the proxy, and
	// keepalives at a third of it keep the healthy ones open.
	const receiveTimeout = time.Second
	srvCfg := activeConfig()
	srvCfg.ActiveIdleTimeout = receiveTimeout / 3
	srv, stopServer := startServer(t, cs.st, srvCfg, clock.Now)
	// The mirror records the address it follows, so it reaches every
	// server through the same proxy address.
	px := newProxy(t, srv.Addr().String())

	cfg := mirror.Config{Dir: t.TempDir(), Requestor: config(px.addr()), RelayData: true}
	cfg.Requestor.RetryInterval = 50 * time.Millisecond
	cfg.Requestor.ReceiveTimeout = receiveTimeout
	for j := range convergenceLinks {
		cfg.Recovery = append(cfg.Recovery, requestor.Query{Type: codec.QueryByLinkAddress, Link: loadgen.LinkAddress(j)})
	}

	// The mirror's events, for the checks and for the log of a failure.
	var mu sync.Mutex
	var history []string
	var dataMissing, recovered, swept int
	t.Cleanup(func() {
		if t.Failed() {
			mu.Lock()
			defer mu.Unlock()
			for _, h := range history {
				t.Log(h)
			}
		}
	})
	var m *mirror.Mirror
	var stopMirror func()
	startMirror := func() {
		run, err := mirror.Open(cfg)
		if err != nil {
			t.Fatalf("open the mirror: %v", err)
		}
		m = run
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- run.Run(ctx, func(ev requestor.Event) error {
				mu.Lock()
				defer mu.Unlock()
				switch e := ev.(type) {
				case requestor.Binding:
					return nil // too many to log
				case requestor.DataMissing:
					dataMissing++
				case requestor.RecoveryDone:
					if e.Source == requestor.SourceRecovery && e.Err == nil {
						recovered++
					}
				case mirror.Swept:
					swept += e.Ended
				}
				history = append(history, fmt.Sprintf("%T %+v", ev, ev))
				return nil
			})
		}()
		stopMirror = func() {
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Errorf("mirror Run: %v", err)
			}
			if err := run.Close(); err != nil {
				t.Errorf("close the mirror: %v", err)
			}
		}
	}
	startMirror()
	t.Cleanup(func() { stopMirror() })

	// The churn: deterministic changes, one batch every few milliseconds,
	// each a second later on the server's clock.
	churn, err := loadgen.NewChurn(loadgen.ChurnConfig{Seed: convergenceSeed, Clients: 300, Links: convergenceLinks, Relays: 2})
	if err != nil {
		t.Fatal(err)
	}
	stopChurn := make(chan struct{})
	var stopChurnOnce sync.Once
	endChurn := func() { stopChurnOnce.Do(func() { close(stopChurn) }) }
	t.Cleanup(endChurn)
	churnDone := make(chan error, 1)
	var applied int
	go func() {
		var batch []store.Binding
		for range convergenceBatches {
			select {
			case <-stopChurn:
				churnDone <- nil
				return
			case <-time.After(5 * time.Millisecond):
			}
			cs.mu.RLock()
			clock.Advance(time.Second)
			batch = churn.Next(batch[:0], convergenceBatchSize, clock.Now())
			_, err := cs.st.Apply(context.Background(), batch, nil)
			cs.mu.RUnlock()
			if err != nil {
				churnDone <- fmt.Errorf("apply churn batch %d: %w", applied, err)
				return
			}
			applied++
		}
		churnDone <- nil
	}()

	// The script: each step at a random point of the churn.
	pause := func() { time.Sleep(time.Duration(50+rng.Intn(200)) * time.Millisecond) }
	reconnectMirror := func() {
		stopMirror()
		pause()
		startMirror()
	}
	restartServer := func() {
		cs.mu.Lock()
		defer cs.mu.Unlock()
		stopServer()
		if err := cs.st.Close(); err != nil {
			t.Fatalf("close the store: %v", err)
		}
		cs.st = open()
		srv, stopServer = startServer(t, cs.st, srvCfg, clock.Now)
		px.retarget(srv.Addr().String())
	}
	// releasedAway are the bindings that ended while the mirror was away and
	// that the trim then removed: no reply reports them, and only the sweep
	// after the full recovery bulk ends them in the mirror.
	releasedAway := map[mirror.BindingKey]bool{}
	trimBehindMirror := func() {
		// The trim must fall above a checkpoint, which the mirror stores
		// once its first connection has caught up.
		waitFor(t, "a mirror checkpoint", func() bool {
			cp, err := m.Checkpoint()
			return err == nil && cp.Valid
		})
		stopMirror()
		cp, err := storedCheckpoint(cfg)
		if err != nil || !cp.Valid {
			t.Fatalf("mirror checkpoint before the trim = %+v, %v", cp, err)
		}
		pause() // churn the mirror misses, releases included
		cs.mu.Lock()
		ended := cs.st.All()
		for ended.Next() {
			b := ended.Binding()
			if b.State.Ended() && codec.DHCPTime(b.ChangeTime) >= cp.StartTime {
				releasedAway[mirror.BindingKey{Type: wireType[b.Type], Prefix: b.Prefix}] = true
			}
		}
		if err := ended.Close(); err != nil {
			cs.mu.Unlock()
			t.Fatalf("read the store: %v", err)
		}
		clock.Advance(convergenceRetention + time.Minute)
		err = cs.st.Trim(clock.Now())
		floor, _ := cs.st.Floor()
		cs.mu.Unlock()
		if err != nil {
			t.Fatalf("trim: %v", err)
		}
		if codec.DHCPTime(floor) <= cp.StartTime {
			t.Fatalf("history floor %v (%d) is not above the mirror's checkpoint %d", floor, codec.DHCPTime(floor), cp.StartTime)
		}
		startMirror()
	}
	steps := []func(){reconnectMirror, restartServer, trimBehindMirror, reconnectMirror, restartServer, reconnectMirror}
	rng.Shuffle(len(steps), func(i, j int) { steps[i], steps[j] = steps[j], steps[i] })
	for _, step := range steps {
		pause()
		step()
	}
	pause()
	endChurn()
	if err := <-churnDone; err != nil {
		t.Fatal(err)
	}
	t.Logf("applied %d churn batches of %d changes", applied, convergenceBatchSize)

	// Caught up: the checkpoint reached a time after the last change,
	// which it only does once no DataMissing interval is left unrecovered.
	// The clock moves a second on so that only a message sent after the
	// last change can carry that time.
	clock.Advance(time.Second)
	end := codec.DHCPTime(clock.Now())
	waitForWithin(t, 20*time.Second, "the mirror to catch up", func() bool {
		cp, err := m.Checkpoint()
		return err == nil && cp.Valid && cp.StartTime >= end
	})
	var diff []string
	waitForWithin(t, 10*time.Second, "the mirror to equal the server", func() bool {
		cs.mu.RLock()
		defer cs.mu.RUnlock()
		diff = compareMirror(t, cs.st, m)
		return len(diff) == 0
	})
	if t.Failed() {
		for _, d := range diff {
			t.Error(d)
		}
	}

	mu.Lock()
	defer mu.Unlock()
	if dataMissing == 0 || recovered == 0 {
		t.Errorf("after the trim the mirror got %d DataMissing and %d recoveries, want at least one of each", dataMissing, recovered)
	}
	// The run must have had bindings that only the sweep can end; that the
	// mirror holds none of them as active, compareMirror checked.
	if len(releasedAway) == 0 {
		t.Error("no binding ended while the mirror was away and was then trimmed; the script does not test the sweep")
	}
	if swept == 0 {
		t.Error("no full recovery ended a record")
	}
	t.Logf("%d bindings ended while the mirror was away and were trimmed; sweeps ended %d records", len(releasedAway), swept)
}

// storedCheckpoint opens the mirror database of cfg, which no Run may be
// using, and returns its checkpoint.
func storedCheckpoint(cfg mirror.Config) (requestor.Checkpoint, error) {
	m, err := mirror.Open(cfg)
	if err != nil {
		return requestor.Checkpoint{}, err
	}
	defer m.Close()
	return m.Checkpoint()
}

// waitForWithin is waitFor with its own deadline; it reports a timeout
// with t.Errorf so that the caller can log what differs.
func waitForWithin(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Errorf("timed out after %v waiting for %s", d, what)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// compareMirror returns how the mirror differs from the store, one line
// per binding, at most 20 lines.
//
// Every binding in the store must be in the mirror with the fields the
// wire carries (OPTION_CLIENT_DATA has no IAID): type and address or
// prefix, client DUID, whether it
// ended (any state but active is sent with lifetimes 0 and read as
// ended), the lifetimes of an active binding, the client last transaction
// time to the second (base-time minus OPTION_CLT_TIME), link-address,
// relay-id, remote-id, interface-id, and the peer-address and
// Relay-forward of OPTION_LQ_RELAY_DATA.
//
// A record that the store no longer has is a binding the store trimmed,
// which only happens to an ended binding: the mirror may keep it only as
// ended. An active record of a trimmed binding would be one the mirror
// wrongly believes still leased.
func compareMirror(t *testing.T, st *store.Store, m *mirror.Mirror) []string {
	t.Helper()
	want := map[mirror.BindingKey]store.Binding{}
	it := st.All()
	for it.Next() {
		b := it.Binding()
		want[mirror.BindingKey{Type: wireType[b.Type], Prefix: b.Prefix}] = *b
	}
	if err := it.Close(); err != nil {
		t.Fatalf("read the store: %v", err)
	}
	var diff []string
	add := func(format string, args ...any) {
		if len(diff) < 20 {
			diff = append(diff, fmt.Sprintf(format, args...))
		}
	}
	seen := map[mirror.BindingKey]bool{}
	err := m.Scan(func(r *mirror.Record) error {
		seen[r.BindingKey] = true
		b, ok := want[r.BindingKey]
		if !ok {
			if r.State != requestor.StateEnded {
				add("%v: in the mirror as %v, trimmed from the store", r.Prefix, r.State)
			}
			return nil
		}
		if d := recordDiff(&b, r); d != "" {
			add("%v: %s", r.Prefix, d)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("scan the mirror: %v", err)
	}
	for k, b := range want {
		if !seen[k] {
			add("%v (%v): in the store, missing from the mirror", k.Prefix, b.State)
		}
	}
	return diff
}

// recordDiff describes the first field in which r differs from b as the
// wire carries it, or returns "".
func recordDiff(b *store.Binding, r *mirror.Record) string {
	ended := b.State != store.StateActive
	if (r.State == requestor.StateEnded) != ended {
		return fmt.Sprintf("mirror state %v from %v at base-time %d, store state %v changed at %d", r.State, r.Source, r.BaseTime, b.State, codec.DHCPTime(b.ChangeTime))
	}
	if !bytes.Equal(r.ClientID, b.ClientID) {
		return fmt.Sprintf("client DUID %x from %v at base-time %d, want %x changed at %d", r.ClientID, r.Source, r.BaseTime, b.ClientID, codec.DHCPTime(b.ChangeTime))
	}
	if !r.HasCLTTime || !r.HasBaseTime {
		return fmt.Sprintf("OPTION_CLT_TIME present %v, base-time present %v", r.HasCLTTime, r.HasBaseTime)
	}
	// The wire carries the lifetimes left at base-time, so the granted
	// ones are those plus OPTION_CLT_TIME.
	if !ended && (!nearlyGranted(r.PreferredLifetime, r.CLTTime, b.PreferredLifetime) || !nearlyGranted(r.ValidLifetime, r.CLTTime, b.ValidLifetime)) {
		return fmt.Sprintf("lifetimes %d/%d at %d s after the last transaction, want %d/%d granted", r.PreferredLifetime, r.ValidLifetime, r.CLTTime, b.PreferredLifetime, b.ValidLifetime)
	}
	if got, want := int64(r.BaseTime)-int64(r.CLTTime), int64(codec.DHCPTime(b.CLTT)); got < want-1 || got > want+1 {
		return fmt.Sprintf("last transaction at %d, want %d", got, want)
	}
	if r.LinkAddress != b.LinkAddress {
		return fmt.Sprintf("link-address %v, want %v", r.LinkAddress, b.LinkAddress)
	}
	if !bytes.Equal(r.RelayID, b.RelayID) {
		return fmt.Sprintf("relay-id %x, want %x", r.RelayID, b.RelayID)
	}
	if !bytes.Equal(r.RemoteID, b.RemoteID) {
		return fmt.Sprintf("remote-id %x, want %x", r.RemoteID, b.RemoteID)
	}
	if !bytes.Equal(r.InterfaceID, b.InterfaceID) {
		return fmt.Sprintf("interface-id %x, want %x", r.InterfaceID, b.InterfaceID)
	}
	if r.RelayPeer != b.RelayPeer || !bytes.Equal(r.RelayMessage, b.RelayMessage) {
		return fmt.Sprintf("relay data from %v (%d octets), want from %v (%d octets)", r.RelayPeer, len(r.RelayMessage), b.RelayPeer, len(b.RelayMessage))
	}
	return ""
}

// nearlyGranted reports whether a lifetime left after clt seconds is the
// granted one, to the second. Infinity (0xffffffff) never decreases.
func nearlyGranted(left, clt, granted uint32) bool {
	if granted == 0xffffffff {
		return left == granted
	}
	d := int64(left) + int64(clt) - int64(granted)
	return d >= -1 && d <= 1
}

// wireType maps the store's binding types to the requestor's.
var wireType = map[store.BindingType]requestor.BindingType{
	store.TypeNA: requestor.TypeNA,
	store.TypeTA: requestor.TypeTA,
	store.TypePD: requestor.TypePD,
}
