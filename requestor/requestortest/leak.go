package requestortest

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// CheckLeaks waits up to five seconds for every goroutine running code
// from the packages under github.com/alqd/alqd/requestor (requestortest
// excluded) to end, and returns an error with their stacks if some do
// not.
func CheckLeaks() error {
	var leaked []string
	deadline := time.Now().Add(5 * time.Second)
	for {
		leaked = leaked[:0]
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "github.com/alqd/alqd/requestor") &&
				!strings.Contains(g, "requestor/requestortest.CheckLeaks") &&
				!strings.Contains(g, "requestor/requestortest.") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("requestortest: %d goroutines still running:\n\n%s", len(leaked), strings.Join(leaked, "\n\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Main runs the tests of m, then CheckLeaks when they passed, and exits
// with the result. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if err := CheckLeaks(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}
