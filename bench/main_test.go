package bench

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/alqd/alqd/internal/leaktest"
)

// TestMain runs a harness child when Run re-executes the test binary, and
// otherwise runs the tests and then checks that no goroutine of this
// package outlived them.
func TestMain(m *testing.M) {
	if role := ChildRole(); role != "" {
		os.Exit(RunChild(role))
	}
	code := m.Run()
	if code == 0 {
		if leaked := leaktest.Check(5*time.Second, []string{"alqd/alqd/bench."}); leaked != "" {
			fmt.Fprintf(os.Stderr, "goroutines left running after the tests:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}
