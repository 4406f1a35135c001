package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
)

var threeSources = []netip.Addr{
	netip.MustParseAddr("127.0.0.1"),
	netip.MustParseAddr("127.0.0.2"),
	netip.MustParseAddr("127.0.0.3"),
}

func runSwarm(t *testing.T, cfg SwarmConfig) *SwarmSummary {
	t.Helper()
	sum, err := RunSwarm(context.Background(), cfg)
	if err != nil {
		t.Fatalf("RunSwarm: %v", err)
	}
	return sum
}

// TestSwarmCountsAndLatency streams stamped updates, a keepalive and an
// unstamped update to six connections from three source addresses.
func TestSwarmCountsAndLatency(t *testing.T) {
	srv := startFakeServer(t, nil, func(c *fakeConn) {
		c.reply(codec.StatusSuccess)
		c.send(c.keepalive(), 0)
		c.send(c.update(1000, false), 0)
		for n := range uint32(40) {
			c.send(c.update(n, true), 0)
		}
		c.waitClosed()
	})

	var progress []SwarmProgress
	sum := runSwarm(t, SwarmConfig{
		Server:      srv.addr(),
		Connections: 6,
		Sources:     threeSources,
		Count:       6 * 41,
		Duration:    10 * time.Second,
		Progress:    func(p SwarmProgress) { progress = append(progress, p) },
	})

	if sum.StopReason != "count" {
		t.Errorf("stop reason %q, want count", sum.StopReason)
	}
	if sum.Updates != 6*41 || sum.Latency.Count != 6*40 || sum.Unstamped != 6 || sum.Keepalives != 6 {
		t.Errorf("updates %d, latencies %d, unstamped %d, keepalives %d; want 246, 240, 6, 6", sum.Updates, sum.Latency.Count, sum.Unstamped, sum.Keepalives)
	}
	if sum.Messages != 6*43 || sum.MessageTypes["LEASEQUERY-REPLY"] != 6 || sum.MessageTypes["LEASEQUERY-DATA"] != 6*42 {
		t.Errorf("messages %d, types %v; want 258: 6 replies and 252 data", sum.Messages, sum.MessageTypes)
	}
	if sum.DecodeFailures != 0 || sum.Errors != 0 || sum.Failed() {
		t.Errorf("decode failures %d, errors %d (%s): want none", sum.DecodeFailures, sum.Errors, sum.FirstError)
	}
	if sum.Latency.Max <= 0 || sum.Latency.Max > int64(10*time.Second/time.Microsecond) || sum.Latency.P50 > sum.Latency.P99 {
		t.Errorf("latency %+v: want a positive max below 10 s and p50 <= p99", sum.Latency)
	}
	if sum.Bytes == 0 || sum.Requestors.Normal.Established != 6 || sum.Requestors.Normal.MessagesPerSecond.Min <= 0 {
		t.Errorf("bytes %d, normal requestors %+v: want six with traffic", sum.Bytes, sum.Requestors.Normal)
	}
	if sum.Connections.Established != 6 || sum.Sources != 3 {
		t.Errorf("connections %+v from %d sources, want 6 from 3", sum.Connections, sum.Sources)
	}

	// The server saw every source address.
	seen := make(map[netip.Addr]int)
	for _, q := range srv.recorded() {
		seen[q.remote]++
		if q.msgType != codec.MsgActiveLeasequery || q.relayID != nil || q.relayData {
			t.Errorf("query %+v: want an unfiltered ACTIVELEASEQUERY without relay data", q)
		}
	}
	for _, a := range threeSources {
		if seen[a] != 2 {
			t.Errorf("source %v opened %d connections, want 2 (seen %v)", a, seen[a], seen)
		}
	}
	_ = progress // a run this short may end before the first report
}

func TestSwarmSummaryJSON(t *testing.T) {
	srv := startFakeServer(t, nil, func(c *fakeConn) {
		c.reply(codec.StatusSuccess)
		c.send(c.update(1, true), 0)
		c.waitClosed()
	})
	sum := runSwarm(t, SwarmConfig{Server: srv.addr(), Connections: 2, Count: 2})
	raw, err := json.Marshal(sum)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{
		"mode", "server", "processes", "elapsed_s", "stop_reason", "sources",
		"connections.requested", "connections.established", "connections.failed", "connections.closed_by_server",
		"messages", "updates", "keepalives", "bytes", "messages_per_s", "updates_per_s", "bytes_per_s",
		"message_types.LEASEQUERY-DATA", "statuses", "decode_failures", "unstamped", "errors",
		"latency_us.count", "latency_us.p50", "latency_us.p90", "latency_us.p99", "latency_us.p999", "latency_us.max",
		"requestors.normal.messages_per_s.min", "requestors.normal.messages_per_s.median", "requestors.normal.messages_per_s.max",
		"requestors.normal.bytes_per_s.median", "requestors.slow.count", "requestors.stalled.closed_by_server",
	} {
		if _, ok := lookupJSON(doc, path); !ok {
			t.Errorf("summary JSON has no %s: %s", path, raw)
		}
	}
	if _, ok := doc["requestor_results"]; ok {
		t.Error("summary without IncludeRaw carries the per-connection results")
	}
}

func lookupJSON(doc map[string]any, path string) (any, bool) {
	var v any = doc
	for _, key := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[key]; !ok {
			return nil, false
		}
	}
	return v, true
}

func TestSwarmDecodeFailures(t *testing.T) {
	for _, tc := range []struct {
		name     string
		bad      func(c *fakeConn) error
		updates  int64
		failures int64
	}{
		// The stream goes on after a message that does not decode.
		{"bad option", func(c *fakeConn) error { return c.send(c.corrupt(), 0) }, 10, 2},
		// A msg-size of 0 ends the stream: nothing after it is read.
		{"empty frame", func(c *fakeConn) error { _, err := c.conn.Write([]byte{0, 0}); return err }, 0, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startFakeServer(t, nil, func(c *fakeConn) {
				c.reply(codec.StatusSuccess)
				tc.bad(c)
				for n := range uint32(5) {
					c.send(c.update(n, true), 0)
				}
				c.waitClosed()
			})
			sum := runSwarm(t, SwarmConfig{Server: srv.addr(), Connections: 2, Count: 10, Duration: 2 * time.Second})
			if sum.DecodeFailures != tc.failures || sum.Updates != tc.updates {
				t.Errorf("decode failures %d, updates %d; want %d and %d", sum.DecodeFailures, sum.Updates, tc.failures, tc.updates)
			}
			if !sum.Failed() {
				t.Error("a run with decode failures does not count as failed")
			}
		})
	}
}

func TestSwarmUnstampedRelayData(t *testing.T) {
	// A relay stamp is found in OPTION_LQ_RELAY_DATA.
	c := newTestChurn(t, ChurnConfig{Stamp: StampRelay})
	b := c.Next(nil, 1, fixedNow)[0]
	srv := startFakeServer(t, nil, func(fc *fakeConn) {
		fc.reply(codec.StatusSuccess)
		d := codec.ClientData{ClientID: b.ClientID, HasRelayData: true, RelayData: codec.LQRelayData{PeerAddress: b.RelayPeer, Message: b.RelayMessage}}
		msg, _ := codec.AppendHeader(nil, codec.MsgLeasequeryData, fc.xid)
		msg, _ = d.AppendTo(msg)
		fc.send(msg, 0)
		fc.waitClosed()
	})
	sum := runSwarm(t, SwarmConfig{Server: srv.addr(), Connections: 1, Count: 1, RelayData: true})
	if sum.Updates != 1 || sum.Latency.Count != 1 || sum.Unstamped != 0 {
		t.Errorf("updates %d, latencies %d, unstamped %d: want the relay stamp read", sum.Updates, sum.Latency.Count, sum.Unstamped)
	}
	if q := srv.recorded(); len(q) != 1 || !q[0].relayData {
		t.Errorf("queries %+v: want OPTION_LQ_RELAY_DATA requested", q)
	}
}

func TestSwarmFilteredQueries(t *testing.T) {
	srv := startFakeServer(t, nil, func(c *fakeConn) { c.reply(codec.StatusSuccess) })
	sum := runSwarm(t, SwarmConfig{Server: srv.addr(), Connections: 4, Filtered: 2, FilterRelays: 2, RelayData: true, Duration: 5 * time.Second})

	if sum.StopReason != "closed" || sum.Connections.ClosedByServer != 4 || sum.Connections.Filtered != 2 {
		t.Errorf("stop reason %q, connections %+v: want all 4 closed by the server, 2 filtered", sum.StopReason, sum.Connections)
	}
	var relays []string
	for _, q := range srv.recorded() {
		if q.relayID == nil {
			continue
		}
		if !q.relayData {
			t.Errorf("filtered query without relay data in its ORO: %+v", q)
		}
		relays = append(relays, string(q.relayID))
	}
	if len(relays) != 2 || relays[0] == relays[1] {
		t.Fatalf("filtered queries for relays %q, want two different ones", relays)
	}
	for _, r := range relays {
		if r != string(RelayID(0)) && r != string(RelayID(1)) {
			t.Errorf("query for relay-id %x, want that of relay 0 or 1", r)
		}
	}
}

func TestSwarmRejectedQuery(t *testing.T) {
	srv := startFakeServer(t, nil, func(c *fakeConn) { c.reply(codec.StatusNotSupported) })
	sum := runSwarm(t, SwarmConfig{Server: srv.addr(), Connections: 3, Duration: 5 * time.Second})
	if sum.Statuses["NotSupported"] != 3 || sum.Errors != 3 || !sum.Failed() {
		t.Errorf("statuses %v, errors %d: want 3 NotSupported counted as errors", sum.Statuses, sum.Errors)
	}
	if !strings.Contains(sum.FirstError, "NotSupported") {
		t.Errorf("first error %q does not name the status", sum.FirstError)
	}
}

func TestSwarmConnectFailure(t *testing.T) {
	srv := startFakeServer(t, nil, func(*fakeConn) {})
	addr := srv.addr()
	srv.close() // nothing listens there any more
	sum := runSwarm(t, SwarmConfig{Server: addr, Connections: 2, Duration: 5 * time.Second})
	if sum.Connections.Failed != 2 || sum.Connections.Established != 0 || !sum.Failed() {
		t.Errorf("connections %+v: want both failed", sum.Connections)
	}
}

// TestSwarmSlowAndStalled streams to a normal, a slow and a stalled
// connection through small socket buffers, and closes a connection whose
// write stays blocked.
func TestSwarmSlowAndStalled(t *testing.T) {
	srv := startFakeServer(t, nil, func(c *fakeConn) {
		c.conn.(interface{ SetWriteBuffer(int) error }).SetWriteBuffer(8 << 10)
		c.reply(codec.StatusSuccess)
		for n := uint32(0); ; n++ {
			if c.send(c.update(n, true), 300*time.Millisecond) != nil {
				return // blocked for 300 ms, or the requestor left
			}
			if n%50 == 49 {
				time.Sleep(5 * time.Millisecond)
			}
		}
	})
	sum := runSwarm(t, SwarmConfig{
		Server:            srv.addr(),
		Connections:       3,
		Slow:              1,
		Stalled:           1,
		SlowReadDelay:     10 * time.Millisecond,
		SlowReceiveBuffer: 4096,
		Duration:          1500 * time.Millisecond,
		IncludeRaw:        true,
	})

	byClass := make(map[string]RequestorResult)
	for _, r := range sum.Results {
		byClass[r.Class] = r
	}
	normal, slow, stalled := byClass["normal"], byClass["slow"], byClass["stalled"]
	if !normal.Established || !slow.Established || !stalled.Established {
		t.Fatalf("results %+v: want one established connection per class", sum.Results)
	}
	if stalled.Messages != 0 {
		t.Errorf("the stalled connection read %d messages", stalled.Messages)
	}
	if slow.Messages == 0 || slow.Messages >= normal.Messages {
		t.Errorf("slow connection read %d messages, normal %d: want fewer, but some", slow.Messages, normal.Messages)
	}
	if sum.Requestors.Stalled.Count != 1 || sum.Requestors.Slow.Count != 1 || sum.Requestors.Normal.Count != 1 {
		t.Errorf("requestor summaries %+v: want one per class", sum.Requestors)
	}

	// The server's writes to the stalled connection blocked, it closed the
	// connection, and the swarm saw that at the end.
	stalledQuery := -1
	for i, q := range srv.recorded() {
		if q.xid == uint32(stalled.Index+1) {
			stalledQuery = i
		}
	}
	if stalledQuery < 0 || !srv.wasBlocked(stalledQuery) {
		t.Fatalf("the server did not see the stalled connection blocked")
	}
	if !stalled.ClosedByServer || sum.Requestors.Stalled.ClosedByServer != 1 {
		t.Errorf("stalled result %+v: want closed by the server", stalled)
	}
	if sum.DecodeFailures != 0 || sum.Errors != 0 {
		t.Errorf("decode failures %d, errors %d (%s)", sum.DecodeFailures, sum.Errors, sum.FirstError)
	}
}

func TestSwarmStartTLS(t *testing.T) {
	serverTLS, clientTLS := testTLSConfigs(t)
	srv := startFakeServer(t, serverTLS, func(c *fakeConn) {
		c.reply(codec.StatusSuccess)
		for n := range uint32(5) {
			c.send(c.update(n, true), 0)
		}
		c.waitClosed()
	})
	sum := runSwarm(t, SwarmConfig{Server: srv.addr(), Connections: 2, Count: 10, TLS: clientTLS, Duration: 5 * time.Second})
	if sum.Updates != 10 || sum.Errors != 0 || sum.Latency.Count != 10 {
		t.Errorf("updates %d, errors %d (%s), latencies %d: want 10 updates over TLS", sum.Updates, sum.Errors, sum.FirstError, sum.Latency.Count)
	}
	for _, q := range srv.recorded() {
		if !q.tls || q.msgType != codec.MsgActiveLeasequery {
			t.Errorf("query %+v: want an ACTIVELEASEQUERY after STARTTLS", q)
		}
	}
}

func TestSwarmStartTLSRefused(t *testing.T) {
	_, clientTLS := testTLSConfigs(t)
	srv := startFakeServer(t, nil, func(*fakeConn) { t.Error("the query went on after TLS was refused") })
	sum := runSwarm(t, SwarmConfig{Server: srv.addr(), Connections: 2, TLS: clientTLS, Duration: 5 * time.Second})
	if sum.Connections.Established != 0 || sum.Errors != 2 || !strings.Contains(sum.FirstError, "TLSConnectionRefused") {
		t.Errorf("connections %+v, errors %d (%s): want both refused", sum.Connections, sum.Errors, sum.FirstError)
	}
}

func TestMergeSwarmSummaries(t *testing.T) {
	srv := startFakeServer(t, nil, func(c *fakeConn) {
		c.reply(codec.StatusSuccess)
		for n := range uint32(10) {
			c.send(c.update(n, true), 0)
		}
		c.waitClosed()
	})
	var parts []*SwarmSummary
	for first := 0; first < 6; first += 3 {
		parts = append(parts, runSwarm(t, SwarmConfig{
			Server: srv.addr(), Connections: 3, FirstIndex: first, TotalConnections: 6,
			Stalled: 2, Count: 20, IncludeRaw: true, Duration: 5 * time.Second,
		}))
	}
	merged, err := MergeSwarmSummaries(parts)
	if err != nil {
		t.Fatal(err)
	}
	if merged.Processes != 2 || merged.Updates != parts[0].Updates+parts[1].Updates || merged.Latency.Count != parts[0].Latency.Count+parts[1].Latency.Count {
		t.Errorf("merged %d processes, %d updates, %d latencies; want 2 and the sums of %d+%d and %d+%d",
			merged.Processes, merged.Updates, merged.Latency.Count, parts[0].Updates, parts[1].Updates, parts[0].Latency.Count, parts[1].Latency.Count)
	}
	if merged.Connections.Requested != 6 || merged.Requestors.Stalled.Count != 2 || merged.Requestors.Normal.Count != 4 {
		t.Errorf("merged connections %+v, requestors %+v: want 6, of them 2 stalled", merged.Connections, merged.Requestors)
	}
	for i, r := range merged.Results {
		if r.Index != i {
			t.Fatalf("merged result %d has index %d", i, r.Index)
		}
	}

	// A merged summary merges again; one without raw data does not.
	if again, err := MergeSwarmSummaries([]*SwarmSummary{merged}); err != nil || again.Latency != merged.Latency {
		t.Errorf("merging the merged summary: %v, latency %+v want %+v", err, again.Latency, merged.Latency)
	}
	bare := *parts[0]
	bare.LatencyHistogram, bare.Results = "", nil
	if _, err := MergeSwarmSummaries([]*SwarmSummary{&bare}); !errors.Is(err, ErrMerge) {
		t.Errorf("merging a summary without raw data = %v, want ErrMerge", err)
	}
}

func TestSwarmRoles(t *testing.T) {
	for _, tc := range []struct {
		n, slow, stalled, filtered, relays int
		wantFiltered                       [numClasses]int
	}{
		{1000, 130, 70, 333, 16, [numClasses]int{333, 0, 0}},
		{1000, 50, 50, 10, 16, [numClasses]int{10, 0, 0}},
		{100, 30, 20, 70, 4, [numClasses]int{50, 20, 0}},
		{100, 30, 20, 100, 4, [numClasses]int{50, 30, 20}},
		{7, 0, 7, 3, 2, [numClasses]int{0, 0, 3}},
		{5, 0, 0, 0, 1, [numClasses]int{}},
	} {
		var classes, filtered [numClasses]int
		relays := make(map[int]int)
		firstStalled, lastStalled := -1, -1
		for i := range tc.n {
			class, relay := connectionRole(i, tc.n, tc.slow, tc.stalled, tc.filtered, tc.relays)
			classes[class]++
			if relay >= 0 {
				filtered[class]++
				relays[relay]++
			}
			if class == classStalled {
				if firstStalled < 0 {
					firstStalled = i
				}
				lastStalled = i
			}
		}
		if classes[classSlow] != tc.slow || classes[classStalled] != tc.stalled || filtered != tc.wantFiltered {
			t.Errorf("%+v: classes %v, filtered by class %v; want %d slow, %d stalled, filtered %v", tc, classes, filtered, tc.slow, tc.stalled, tc.wantFiltered)
		}
		// Relays are used evenly.
		for r := range tc.relays {
			if want := tc.filtered / tc.relays; relays[r] < want || relays[r] > want+1 {
				t.Errorf("%+v: relay %d filtered by %d connections, want %d or %d", tc, r, relays[r], want, want+1)
			}
		}
		// Spread out, so that every process of a split swarm gets some.
		if tc.stalled > 1 && lastStalled-firstStalled < tc.n/2 {
			t.Errorf("%+v: stalled connections only from %d to %d", tc, firstStalled, lastStalled)
		}
	}
}

func TestSwarmConfigInvalid(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  SwarmConfig
	}{
		{"no server", SwarmConfig{}},
		{"server without port", SwarmConfig{Server: "127.0.0.1"}},
		{"negative connections", SwarmConfig{Server: "127.0.0.1:1", Connections: -1}},
		{"beyond the swarm", SwarmConfig{Server: "127.0.0.1:1", Connections: 10, FirstIndex: 5, TotalConnections: 12}},
		{"too many slow", SwarmConfig{Server: "127.0.0.1:1", Connections: 10, Slow: 6, Stalled: 5}},
		{"too many filtered", SwarmConfig{Server: "127.0.0.1:1", Connections: 10, Filtered: 11}},
		{"negative rate", SwarmConfig{Server: "127.0.0.1:1", DialRate: -1}},
		{"invalid source", SwarmConfig{Server: "127.0.0.1:1", Sources: []netip.Addr{{}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := RunSwarm(context.Background(), tc.cfg); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("RunSwarm(%+v) = %v, want ErrInvalidConfig", tc.cfg, err)
			}
		})
	}
}

func TestSwarmFileLimit(t *testing.T) {
	limit, err := RaiseFileLimit()
	if err != nil {
		t.Skipf("no file limit on this system: %v", err)
	}
	_, err = RunSwarm(context.Background(), SwarmConfig{Server: "127.0.0.1:1", Connections: int(limit)})
	if !errors.Is(err, ErrFileLimit) {
		t.Errorf("RunSwarm with %d connections = %v, want ErrFileLimit", limit, err)
	}
}

func TestRequireLoopback(t *testing.T) {
	for _, tc := range []struct {
		target string
		ok     bool
	}{
		{"127.0.0.1:15470", true},
		{"127.0.0.9", true},
		{"[::1]:547", true},
		{"::1", true},
		{"localhost:8547", true},
		{"192.0.2.1:547", false},
		{"[2001:db8::1]:547", false},
		{"0.0.0.0:547", false},
	} {
		err := RequireLoopback(context.Background(), tc.target, false)
		if tc.ok && err != nil {
			t.Errorf("RequireLoopback(%q) = %v, want nil", tc.target, err)
		}
		if !tc.ok && !errors.Is(err, ErrNotLoopback) {
			t.Errorf("RequireLoopback(%q) = %v, want ErrNotLoopback", tc.target, err)
		}
		if err := RequireLoopback(context.Background(), tc.target, true); err != nil {
			t.Errorf("RequireLoopback(%q, allowRemote) = %v", tc.target, err)
		}
	}
}

func TestSwarmQueryEncoding(t *testing.T) {
	s := &swarm{cfg: SwarmConfig{TotalConnections: 2, Filtered: 1, FilterRelays: 3, RelayData: true}.withDefaults()}
	for i := range 2 {
		r := newRequestor(s, i)
		frame, err := r.appendQuery(nil)
		if err != nil {
			t.Fatal(err)
		}
		var m codec.Message
		if err := m.Decode(frame[codec.FrameHeaderLen:]); err != nil {
			t.Fatalf("query %x does not decode: %v", frame, err)
		}
		if m.Type != codec.MsgActiveLeasequery || m.TransactionID != uint32(i+1) || !m.Options.Requests(codec.OptLQBaseTime) {
			t.Errorf("query %d: %v xid %d: want ACTIVELEASEQUERY asking for OPTION_LQ_BASE_TIME", i, m.Type, m.TransactionID)
		}
		var q codec.LQQuery
		ok, err := m.Options.LQQuery(&q)
		if err != nil {
			t.Fatal(err)
		}
		if r.filterRelay < 0 {
			if ok || !m.Options.Requests(codec.OptLQRelayData) {
				t.Errorf("unfiltered query: OPTION_LQ_QUERY %v, relay data in the message ORO %v", ok, m.Options.Requests(codec.OptLQRelayData))
			}
			continue
		}
		id, _ := q.Options.RelayID()
		if !ok || q.QueryType != codec.QueryByRelayID || !bytes.Equal(id, RelayID(r.filterRelay)) || q.Validate() != nil {
			t.Errorf("filtered query: %v %x, want a valid QUERY_BY_RELAY_ID for relay %d", q.QueryType, id, r.filterRelay)
		}
	}
}
