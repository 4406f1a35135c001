package requestor_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/requestor"
	"github.com/alqd/alqd/requestor/requestortest"
)

// requestorDUID is the DUID-LL 00:00:5e:00:53:aa that the recorded vectors
// use for the requestor.
var requestorDUID = requestortest.DUIDLL(0xaa)

// testConfig returns a Config for server addr with the recorded requestor
// DUID and timers short enough for tests.
func testConfig(addr string) requestor.Config {
	return requestor.Config{
		Server:          addr,
		ClientID:        requestorDUID,
		DialTimeout:     2 * time.Second,
		StartTLSTimeout: 2 * time.Second,
		BulkDataTimeout: 2 * time.Second,
		ReceiveTimeout:  2 * time.Second,
		RetryInterval:   50 * time.Millisecond,
	}
}

// testContext returns a context that ends with the test or after 20 s.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// vector reads testdata/vectors/<name>.hex.
func vector(t *testing.T, name string) []byte {
	t.Helper()
	b, err := requestortest.ReadHex(filepath.Join("..", "testdata", "vectors", name+".hex"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// recorder collects events; it is safe for concurrent use.
type recorder struct {
	mu     sync.Mutex
	events []requestor.Event
}

func (r *recorder) add(ev requestor.Event) error {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
	return nil
}

func (r *recorder) all() []requestor.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]requestor.Event(nil), r.events...)
}

func (r *recorder) bindings() []requestor.Binding {
	var out []requestor.Binding
	for _, ev := range r.all() {
		if b, ok := ev.(requestor.Binding); ok {
			out = append(out, b)
		}
	}
	return out
}

// startTime returns the OPTION_LQ_START_TIME of a received query.
func startTime(r requestortest.Received) (uint32, bool) { return r.Msg.Options.StartTime() }

// endTime returns the OPTION_LQ_END_TIME of a received query.
func endTime(r requestortest.Received) (uint32, bool) { return r.Msg.Options.EndTime() }

// msg builds a server message; a shorthand for the tests.
func msg(t codec.MsgType, xid uint32, opts ...[]byte) []byte {
	return requestortest.Msg(t, xid, opts...)
}
