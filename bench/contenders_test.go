package bench

import (
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// testClient is the receiving side of an in-process contender test.
type testClient interface {
	stats(reset bool) clientStats
	close()
}

// connectTest connects conns subscribers of the right kind to srv and
// waits until all are subscribed.
func connectTest(t *testing.T, srv fanoutServer, conns, stallEvery int, filtered bool) testClient {
	t.Helper()
	args := connectArgs{
		Kind: srv.Kind(), Addr: srv.Addr(), Conns: conns, Filtered: filtered,
		StallEvery: stallEvery, DecodeEvery: 1, MaxConnecting: 64,
	}
	deadline := time.Now().Add(20 * time.Second)
	var c testClient
	var res connectResult
	if args.Kind == kindLQ {
		lq, err := newLQClient(args)
		if err != nil {
			t.Fatal(err)
		}
		c, res = lq, lq.connect(deadline)
	} else {
		nc := newNatsClient(args)
		c, res = nc, nc.connect(deadline)
	}
	t.Cleanup(c.close)
	if res.Connected != conns || res.Failed != 0 {
		t.Fatalf("connected %d of %d, failed %d: %s", res.Connected, conns, res.Failed, res.FirstError)
	}
	for c.stats(false).Subscribed < conns {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d subscribed by the deadline", c.stats(false).Subscribed, conns)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return c
}

// waitMessages polls c until its healthy subscribers received want
// messages or 20 s passed, and returns the stats.
func waitMessages(c testClient, want int64) clientStats {
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := c.stats(false)
		if s.Healthy.Messages >= want || time.Now().After(deadline) {
			return s
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func startTestServer(t *testing.T, args startArgs) fanoutServer {
	t.Helper()
	srv, err := startFanoutServer(args)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}

func TestContendersDeliverEverything(t *testing.T) {
	const conns = 8
	tests := []struct {
		contender string
		filtered  bool
		rate      float64 // 0 saturates
	}{
		{contenderRaw, false, 0},
		{contenderRaw, true, 0},
		{contenderRaw, false, 20000},
		{contenderGoroutine, false, 0},
		{contenderGoroutine, true, 0},
		{contenderNATS, false, 0},
		{contenderNATS, true, 0},
		{contenderAlqd, false, 0},
	}
	for _, tt := range tests {
		name := tt.contender
		if tt.filtered {
			name += "/filtered"
		}
		if tt.rate > 0 {
			name += "/paced"
		}
		t.Run(name, func(t *testing.T) {
			if tt.contender == contenderAlqd {
				if err := alqdActive(); err != nil {
					t.Skipf("alqd contender: %v", err)
				}
			}
			srv := startTestServer(t, startArgs{
				Contender: tt.contender, Filtered: tt.filtered, Window: 128, QueueLen: 128, RingSize: 1 << 10,
				MaxPending: 1 << 20, MaxConns: 100, FrameSize: 256,
			})
			c := connectTest(t, srv, conns, 0, tt.filtered)
			keys := 0
			if tt.filtered {
				keys = conns
			}
			pr, err := runProducer(srv, produceArgs{Rate: tt.rate, Duration: 300 * time.Millisecond, MaxCount: 2000, Keys: keys, Batch: 16})
			if err != nil {
				t.Fatal(err)
			}
			if pr.Published == 0 {
				t.Fatal("published nothing")
			}
			want := expectedDeliveries(pr.Published, conns, tt.filtered)
			s := waitMessages(c, want)
			if s.Healthy.Messages != want {
				t.Errorf("received %d messages, want %d (%d published to %d subscribers)", s.Healthy.Messages, want, pr.Published, conns)
			}
			if s.DecodeErrors != 0 {
				t.Errorf("%d decode errors, first: %s", s.DecodeErrors, s.FirstDecodeError)
			}
			if s.Healthy.Closed != 0 {
				t.Errorf("%d subscribers closed by the server", s.Healthy.Closed)
			}
			if n := hdrhistogram.Import(s.Latency).TotalCount(); n != s.Decoded {
				t.Errorf("latency histogram holds %d samples, want one per decoded message (%d)", n, s.Decoded)
			}
		})
	}
}

func TestGoroutineDropsStalledSubscriber(t *testing.T) {
	srv := startTestServer(t, startArgs{
		Contender: contenderGoroutine, Drop: true, QueueLen: 256, FrameSize: 16 << 10,
	})
	// Subscriber 0 stops reading after its subscription.
	c := connectTest(t, srv, 2, 2, false)
	// 2,000 frames of 16 KiB (32 MiB) outgrow the kernel socket buffers and
	// the queue of 256 of the reader that never reads, so the policy closes
	// it. The reading one has half a second of queue to spare.
	pr, err := runProducer(srv, produceArgs{Rate: 1000, Duration: 5 * time.Second, MaxCount: 2000, Batch: 8})
	if err != nil {
		t.Fatal(err)
	}
	s := waitMessages(c, int64(pr.Published))
	if s.Healthy.Messages != int64(pr.Published) {
		t.Errorf("reading subscriber got %d of %d messages", s.Healthy.Messages, pr.Published)
	}
	if _, dropped := srv.Status(); dropped != 1 {
		t.Errorf("server dropped %d subscribers, want 1 (the stalled one)", dropped)
	}
}

func TestNatsRawSubscriberCounts(t *testing.T) {
	srv := startTestServer(t, startArgs{Contender: contenderNATS, MaxPending: 1 << 20, MaxConns: 100, FrameSize: minFrameSize})
	nc := newNatsClient(connectArgs{Kind: kindNATSRaw, Addr: srv.Addr(), Conns: 5, MaxConnecting: 8})
	t.Cleanup(nc.close)
	res := nc.connect(time.Now().Add(10 * time.Second))
	if res.Connected != 5 {
		t.Fatalf("connected %d of 5: %s", res.Connected, res.FirstError)
	}
	if subs, _ := srv.Status(); subs != 5 {
		t.Errorf("nats-server counts %d subscriptions, want 5", subs)
	}
}
