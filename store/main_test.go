package store

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/alqd/alqd/internal/leaktest"
)

// TestMain runs the crash-test child when the crash test re-executes the
// test binary, and otherwise runs the tests and then checks that no store
// or Pebble goroutine outlived them.
func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildDirEnv); dir != "" {
		os.Exit(runCrashChild(dir))
	}
	code := m.Run()
	if code == 0 {
		if leaked := leaktest.Check(5*time.Second, []string{"alqd/alqd/store.", "cockroachdb/pebble"}); leaked != "" {
			fmt.Fprintf(os.Stderr, "goroutines left running after the tests:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}
