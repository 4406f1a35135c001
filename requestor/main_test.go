package requestor_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/alqd/alqd/requestor/requestortest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if err := requestortest.CheckLeaks(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}
