package loadgen

import (
	"bytes"
	"context"
	"errors"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alqd/alqd/ingest"
	"github.com/alqd/alqd/store"
)

// TestIngestSinkRoundTrip sends generated churn through the real ingest
// handler and checks that every change arrives valid, stamped, and in
// generation order for each client.
func TestIngestSinkRoundTrip(t *testing.T) {
	fake := newFakeStore()
	handler, err := ingest.NewHandler(fake, ingest.HandlerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(handler)
	defer srv.Close()
	client, err := ingest.NewClient(ingest.ClientConfig{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	sink, err := NewIngestSink(context.Background(), client, LaneConfig{Lanes: 3, MaxBatch: 100})
	if err != nil {
		t.Fatal(err)
	}

	cfg := ChurnConfig{Seed: 11, Clients: 200, Links: 8, Relays: 4}
	start := time.Now()
	sum, err := RunChurn(context.Background(), newTestChurn(t, cfg), sink, RunConfig{Rate: 1e5, Count: 3000, Duration: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Errors != 0 || sum.Requests == 0 || sum.RequestLatency == nil || sum.RequestLatency.Count != int64(sum.Requests) {
		t.Fatalf("summary %+v: want requests without errors, each with a latency", sum)
	}

	got := fake.bindings()
	if len(got) != 3000 {
		t.Fatalf("the store got %d bindings, want 3000", len(got))
	}
	// Per client, the bindings arrive in the order a Churn with the same
	// seed generates them. Only the CLTT and the stamp depend on the time.
	want := newTestChurn(t, cfg).NextChanges(nil, 3000, fixedNow)
	next := make(map[uint32][]Change)
	for _, ch := range want {
		next[ch.Client] = append(next[ch.Client], ch)
	}
	for i := range got {
		b := &got[i]
		client, ok := ClientNumber(b.ClientID)
		if !ok || len(next[client]) == 0 {
			t.Fatalf("binding %d: DUID %x is not that of a client with changes left", i, b.ClientID)
		}
		w := next[client][0]
		next[client] = next[client][1:]
		if b.Key != w.Binding.Key || b.State != w.Binding.State || !bytes.Equal(b.RemoteID, w.Binding.RemoteID) || b.LinkAddress != w.Binding.LinkAddress {
			t.Fatalf("binding %d of client %d: %v %v %v, want %v %v %v", i, client, b.Key, b.State, b.LinkAddress, w.Binding.Key, w.Binding.State, w.Binding.LinkAddress)
		}
		stamp, ok := StampFromDUID(b.ClientID)
		if !ok || stamp.Before(start) || stamp.After(time.Now()) {
			t.Fatalf("binding %d: stamp %v, %v; want a time during the run", i, stamp, ok)
		}
	}
}

func TestLaneSinkBoundsInFlight(t *testing.T) {
	var inFlight, peak atomic.Int64
	var mu sync.Mutex
	var sizes []int
	send := func(ctx context.Context, b []store.Binding) error {
		n := inFlight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		mu.Lock()
		sizes = append(sizes, len(b))
		mu.Unlock()
		time.Sleep(2 * time.Millisecond)
		inFlight.Add(-1)
		return nil
	}

	sink, err := NewLaneSink(context.Background(), send, LaneConfig{Lanes: 2, MaxBatch: 50, Backlog: 1})
	if err != nil {
		t.Fatal(err)
	}
	c := newTestChurn(t, ChurnConfig{})
	for range 40 {
		if err := sink.Write(context.Background(), c.NextChanges(nil, 60, fixedNow)); err != nil {
			t.Fatal(err)
		}
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}

	if p := peak.Load(); p > 2 {
		t.Errorf("%d requests in flight with 2 lanes", p)
	}
	total := 0
	for _, n := range sizes {
		if n > 50 {
			t.Errorf("request of %d changes, more than MaxBatch 50", n)
		}
		total += n
	}
	if total != 2400 {
		t.Errorf("sent %d changes, want 2400", total)
	}
	if st := sink.Stats(); st.Requests != uint64(len(sizes)) || st.Errors != 0 {
		t.Errorf("stats %+v, want %d requests without errors", st, len(sizes))
	}
}

func TestLaneSinkCountsErrors(t *testing.T) {
	errRejected := errors.New("server rejected the batch")
	sink, err := NewLaneSink(context.Background(), func(context.Context, []store.Binding) error { return errRejected }, LaneConfig{Lanes: 1})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := RunChurn(context.Background(), newTestChurn(t, ChurnConfig{}), sink, RunConfig{Rate: 1e5, Count: 500})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Errors == 0 || sum.FirstError != errRejected.Error() || !sum.Failed() {
		t.Errorf("summary %+v: want errors counted with the first one", sum)
	}
}

func TestLaneSinkWriteUnblocksOnCancel(t *testing.T) {
	release := make(chan struct{})
	sink, err := NewLaneSink(context.Background(), func(context.Context, []store.Binding) error { <-release; return nil }, LaneConfig{Lanes: 1, Backlog: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		close(release)
		sink.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	c := newTestChurn(t, ChurnConfig{})
	var werr error
	for i := 0; i < 10 && werr == nil; i++ {
		werr = sink.Write(ctx, c.NextChanges(nil, 1, fixedNow))
	}
	if !errors.Is(werr, context.DeadlineExceeded) {
		t.Errorf("Write on a full lane = %v, want the context's error", werr)
	}
}

// TestApplierSinkStore runs churn straight into a real store, as a
// benchmark would, and checks the store ends in the generated state.
func TestApplierSinkStore(t *testing.T) {
	st, err := store.Open(t.TempDir(), store.Options{NoSync: true, TrimInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sink, err := NewApplierSink(context.Background(), st, LaneConfig{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := ChurnConfig{Seed: 5, Clients: 300, Stamp: StampNone}
	sum, err := RunChurn(context.Background(), newTestChurn(t, cfg), sink, RunConfig{Rate: 1e5, Count: 2000})
	if err != nil || sum.Errors != 0 {
		t.Fatalf("RunChurn: %v, summary %+v", err, sum)
	}

	// The last change of each key decides its state; CLTTs differ from a
	// replay, so compare the rest.
	final := make(map[store.Key]store.Binding)
	for _, b := range newTestChurn(t, cfg).Next(nil, 2000, fixedNow) {
		final[b.Key] = b
	}
	for k, want := range final {
		got, ok, err := st.Get(k)
		if err != nil || !ok {
			t.Fatalf("Get(%v) = %v, %v", k, ok, err)
		}
		if got.State != want.State || !bytes.Equal(got.ClientID, want.ClientID) || !bytes.Equal(got.RelayMessage, want.RelayMessage) {
			t.Fatalf("%v: stored %v %x, want %v %x", k, got.State, got.ClientID, want.State, want.ClientID)
		}
	}
}

func TestLaneSinkCancelIsNotAnError(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{}, 1)
	sink, err := NewLaneSink(ctx, func(ctx context.Context, _ []store.Binding) error {
		started <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}, LaneConfig{Lanes: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.Write(context.Background(), newTestChurn(t, ChurnConfig{}).NextChanges(nil, 5, fixedNow)); err != nil {
		t.Fatal(err)
	}
	<-started
	cancel()
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	if st := sink.Stats(); st.Errors != 0 {
		t.Errorf("stats %+v: a request cut short by the sink's own cancellation counts as an error", st)
	}
}
