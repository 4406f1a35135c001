package loadgen

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alqd/alqd/internal/leaktest"
	"github.com/alqd/alqd/store"
)

// TestMain runs the tests and then checks that no goroutine of this package
// outlived them.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := leaktest.Check(5*time.Second, []string{"alqd/alqd/loadgen."}); leaked != "" {
			fmt.Fprintf(os.Stderr, "goroutines left running after the tests:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// fakeStore is an in-memory ingest.Store: it records every binding it is
// given, deep-copied, and keeps metadata.
type fakeStore struct {
	mu      sync.Mutex
	applied []store.Binding
	meta    map[string][]byte
}

func newFakeStore() *fakeStore { return &fakeStore{meta: make(map[string][]byte)} }

func (s *fakeStore) Apply(ctx context.Context, changes []store.Binding, meta map[string][]byte) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range changes {
		s.applied = append(s.applied, changes[i].Clone())
	}
	for k, v := range meta {
		s.meta[k] = bytes.Clone(v)
	}
	return uint64(len(s.applied)), nil
}

func (s *fakeStore) Meta(key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.meta[key]), nil
}

func (s *fakeStore) bindings() []store.Binding {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]store.Binding(nil), s.applied...)
}

// bindingDiff describes how got differs from want in the fields a caller
// of store.Apply sets (not Seq and ChangeTime), or returns "".
func bindingDiff(got, want *store.Binding) string {
	var d []string
	check := func(name string, equal bool, g, w any) {
		if !equal {
			d = append(d, fmt.Sprintf("%s: got %v, want %v", name, g, w))
		}
	}
	check("key", got.Key == want.Key, got.Key, want.Key)
	check("client id", bytes.Equal(got.ClientID, want.ClientID), fmt.Sprintf("%x", got.ClientID), fmt.Sprintf("%x", want.ClientID))
	check("iaid", got.IAID == want.IAID, got.IAID, want.IAID)
	check("preferred", got.PreferredLifetime == want.PreferredLifetime, got.PreferredLifetime, want.PreferredLifetime)
	check("valid", got.ValidLifetime == want.ValidLifetime, got.ValidLifetime, want.ValidLifetime)
	check("state", got.State == want.State, got.State, want.State)
	check("cltt", got.CLTT.Equal(want.CLTT), got.CLTT, want.CLTT)
	check("link", got.LinkAddress == want.LinkAddress, got.LinkAddress, want.LinkAddress)
	check("relay id", bytes.Equal(got.RelayID, want.RelayID), fmt.Sprintf("%x", got.RelayID), fmt.Sprintf("%x", want.RelayID))
	check("remote id", bytes.Equal(got.RemoteID, want.RemoteID), fmt.Sprintf("%x", got.RemoteID), fmt.Sprintf("%x", want.RemoteID))
	check("interface id", bytes.Equal(got.InterfaceID, want.InterfaceID), fmt.Sprintf("%x", got.InterfaceID), fmt.Sprintf("%x", want.InterfaceID))
	check("relay peer", got.RelayPeer == want.RelayPeer, got.RelayPeer, want.RelayPeer)
	check("relay message", bytes.Equal(got.RelayMessage, want.RelayMessage), fmt.Sprintf("%x", got.RelayMessage), fmt.Sprintf("%x", want.RelayMessage))
	return strings.Join(d, "; ")
}

// waitFor polls cond every 5 ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fixedNow is the time of changes generated in tests that need exact values.
var fixedNow = time.Date(2026, 12, 4, 19, 21, 29, 123456789, time.UTC)

func newTestChurn(t testing.TB, cfg ChurnConfig) *Churn {
	t.Helper()
	c, err := NewChurn(cfg)
	if err != nil {
		t.Fatalf("NewChurn(%+v): %v", cfg, err)
	}
	return c
}
