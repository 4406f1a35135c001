package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/ingest"
	"github.com/alqd/alqd/requestor"
	"github.com/alqd/alqd/requestor/requestortest"
	"github.com/alqd/alqd/store"
)

// postBindings posts IA_NA bindings 2001:db8::first to 2001:db8::last to
// the ingest API at addr, in state.
func postBindings(t *testing.T, addr string, first, last int, state string) {
	t.Helper()
	var body strings.Builder
	for i := first; i <= last; i++ {
		lifetimes := `"preferred_lifetime":300,"valid_lifetime":600`
		if state != "active" {
			lifetimes = `"preferred_lifetime":0,"valid_lifetime":0`
		}
		fmt.Fprintf(&body, `{"type":"na","address":"2001:db8::%x","client_id":"000300010a0b0c0d0e%02x","iaid":7,%s,"state":"%s","cltt":"2026-12-04T22:05:00Z"}`+"\n", i, i%256, lifetimes, state)
	}
	resp, err := http.Post("http://"+addr+ingest.BindingsPath, ingest.ContentTypeNDJSON, strings.NewReader(body.String()))
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("ingest: status %d: %s", resp.StatusCode, msg)
	}
}

// catchUpOutcome sends an Active Leasequery with start time start to the
// server at addr and returns the event that ends its catch-up:
// CatchUpComplete or DataMissing.
func catchUpOutcome(t *testing.T, addr string, start uint32) requestor.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := requestor.Dial(ctx, requestor.Config{Server: addr, ClientID: requestortest.DUIDLL(0xaa), BulkDataTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var outcome requestor.Event
	stop := errors.New("catch-up ended")
	err = conn.Active(ctx, requestor.ActiveQuery{StartTime: start, HasStartTime: true}, func(ev requestor.Event) error {
		switch ev.(type) {
		case requestor.CatchUpComplete, requestor.DataMissing:
			outcome = ev
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("active query from start time %d ended with %v before its catch-up did", start, err)
	}
	return outcome
}

// TestRestoredServerAnswersDataMissing runs alqd, takes an online backup,
// commits a change that a requestor may see and the backup lacks, and
// starts a second alqd on the restored store. A requestor that reconnects
// to it with the start time it had reached gets DataMissing, while the
// original server gives it a normal catch-up.
func TestRestoredServerAnswersDataMissing(t *testing.T) {
	common := []string{"--active", "--insecure", "--metrics", "127.0.0.1:0", "--backup-endpoint"}
	orig := startRunServices(t, []string{"ingest", "metrics", "tcp"}, common...)
	postBindings(t, orig["ingest"], 1, 10, "active")

	resp, err := http.Get("http://" + orig["metrics"] + backupPath)
	if err != nil {
		t.Fatal(err)
	}
	backup, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /backup: status %d, %v", resp.StatusCode, err)
	}

	// A change after the backup, in a later second, which a requestor
	// receives. The start time it reaches is then after every change in
	// the backup, so only the floor time can make it DataMissing.
	backedUp := codec.DHCPTime(time.Now())
	for codec.DHCPTime(time.Now()) == backedUp {
		time.Sleep(20 * time.Millisecond)
	}
	postBindings(t, orig["ingest"], 3, 3, "released")
	seen := codec.DHCPTime(time.Now())
	if got := catchUpOutcome(t, orig["tcp"], seen); !isCatchUpComplete(got) {
		t.Fatalf("the original server ends a catch-up from %d with %T, want CatchUpComplete", seen, got)
	}

	// Restore once the clock has left that second, as a real restore
	// would, and serve the restored store.
	for codec.DHCPTime(time.Now()) == seen {
		time.Sleep(20 * time.Millisecond)
	}
	dir := filepath.Join(t.TempDir(), "restored")
	if _, err := store.Restore(context.Background(), dir, bytes.NewReader(backup), store.Options{}); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	restoredAt := codec.DHCPTime(time.Now())
	restored := startRunServices(t, []string{"ingest", "tcp"}, append(common, "--data-dir", dir)...)

	got := catchUpOutcome(t, restored["tcp"], seen)
	if _, ok := got.(requestor.DataMissing); !ok {
		t.Errorf("the restored server ends a catch-up from %d with %T, want DataMissing", seen, got)
	}

	// A requestor whose start time is after the restore catches up
	// normally.
	for codec.DHCPTime(time.Now()) <= restoredAt {
		time.Sleep(20 * time.Millisecond)
	}
	after := codec.DHCPTime(time.Now())
	postBindings(t, restored["ingest"], 20, 20, "active")
	if got := catchUpOutcome(t, restored["tcp"], after); !isCatchUpComplete(got) {
		t.Errorf("the restored server ends a catch-up from %d, after the restore, with %T, want CatchUpComplete", after, got)
	}
}

func isCatchUpComplete(ev requestor.Event) bool {
	_, ok := ev.(requestor.CatchUpComplete)
	return ok
}
