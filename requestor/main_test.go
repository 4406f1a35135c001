package requestor_test

import (
	"testing"

	"github.com/alqd/alqd/requestor/requestortest"
)

func TestMain(m *testing.M) { requestortest.Main(m) }
