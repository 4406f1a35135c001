package ingest

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/alqd/alqd/internal/leaktest"
)

// TestMain fails the run when a follower or its inotify reader outlives the
// tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := leaktest.Check(2*time.Second, []string{"ingest.(*notifier).read", "ingest.(*Follower).Run"}); leaked != "" {
			fmt.Fprintf(os.Stderr, "goroutines still running after the tests:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}
