package e2e

import (
	"fmt"
	"os"
	"testing"

	"github.com/alqd/alqd/requestor/requestortest"
)

// TestMain fails the run when a requestor goroutine outlives the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if err := requestortest.CheckLeaks(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}
