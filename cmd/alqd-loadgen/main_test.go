package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/ingest"
	"github.com/alqd/alqd/internal/leaktest"
	"github.com/alqd/alqd/loadgen"
	"github.com/alqd/alqd/store"
)

// runMainEnv makes the test binary act as alqd-loadgen, so that --procs can
// start it as its children.
const runMainEnv = "ALQD_LOADGEN_TEST_RUN_MAIN"

// TestMain runs the command when a test starts this binary as a --procs
// child, and otherwise runs the tests and then checks that no goroutine of
// the command or of package loadgen outlived them.
func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
	}
	code := m.Run()
	if code == 0 {
		if leaked := leaktest.Check(5*time.Second, []string{"/cmd/alqd-loadgen/", "alqd/alqd/loadgen."}, "_test.go"); leaked != "" {
			fmt.Fprintf(os.Stderr, "goroutines left running after the tests:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// runCommand runs the command in this process and returns its exit status,
// stdout and stderr.
func runCommand(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func decodeSummary[T any](t *testing.T, stdout string) *T {
	t.Helper()
	var s T
	if err := json.Unmarshal([]byte(stdout), &s); err != nil {
		t.Fatalf("the summary does not decode: %v\n%s", err, stdout)
	}
	return &s
}

func TestChurnKeaFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "leases6.csv")
	code, stdout, stderr := runCommand(t, "churn", "--sink", "kea", "--kea-file", path, "--rate", "100000", "--count", "500", "--quiet")
	if code != exitOK {
		t.Fatalf("exit status %d: %s", code, stderr)
	}
	sum := decodeSummary[loadgen.ChurnSummary](t, stdout)
	if sum.Sink != "kea" || sum.Changes != 500 || sum.Rows != 500 || sum.StopReason != "count" {
		t.Errorf("summary %+v: want 500 rows written to the Kea file", sum)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n"); len(lines) != 501 || lines[0] != loadgen.KeaHeader {
		t.Errorf("the file has %d lines starting with %q, want the header and 500 rows", len(lines), lines[0])
	}
}

// countingApplier counts the bindings the ingest handler commits.
type countingApplier struct{ n atomic.Int64 }

func (a *countingApplier) Apply(_ context.Context, changes []store.Binding, _ map[string][]byte) (uint64, error) {
	return uint64(a.n.Add(int64(len(changes)))), nil
}

func TestChurnIngest(t *testing.T) {
	applier := &countingApplier{}
	handler, err := ingest.NewHandler(applier, ingest.HandlerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(handler)
	defer srv.Close()
	code, stdout, stderr := runCommand(t, "churn", "--ingest-url", srv.URL, "--rate", "100000", "--count", "2000", "--seed", "3", "--stamp", "relay")
	if code != exitOK {
		t.Fatalf("exit status %d: %s", code, stderr)
	}
	sum := decodeSummary[loadgen.ChurnSummary](t, stdout)
	if sum.Changes != 2000 || applier.n.Load() != 2000 || sum.Errors != 0 || sum.RequestLatency == nil {
		t.Errorf("summary %+v, %d committed: want 2000 changes committed with request latencies", sum, applier.n.Load())
	}
}

func TestChurnUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"churn", "--ingest-url", "http://192.0.2.1:8547"}, "--allow-remote"},
		{[]string{"churn", "--sink", "bogus"}, "--sink"},
		{[]string{"churn", "--sink", "kea"}, "--kea-file"},
		{[]string{"churn", "--pd-fraction", "2"}, "--pd-fraction"},
		{[]string{"churn", "--stamp", "iaid"}, "stamp mode"},
		{[]string{"churn", "--relays", "100", "--links", "10"}, "relays"},
		{[]string{"churn", "--valid-lifetime", "-1"}, "valid-lifetime"},
		{[]string{"churn", "extra"}, "unexpected argument"},
		{[]string{"bogus"}, "unknown subcommand"},
		{nil, "usage"},
	} {
		code, _, stderr := runCommand(t, tc.args...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit status %d, stderr %q; want %d mentioning %q", tc.args, code, stderr, exitUsage, tc.want)
		}
	}
}

// startServer starts a minimal Active Leasequery server on loopback. It
// responds to every ACTIVELEASEQUERY with LEASEQUERY-REPLY and five stamped
// updates, then waits for the requestor to leave.
func startServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				serveActive(t, c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func serveActive(t *testing.T, c net.Conn) {
	defer c.Close()
	query, err := codec.NewFrameReader(c, 0).ReadFrame()
	if err != nil {
		return
	}
	typ, xid, err := codec.PeekHeader(query)
	if err != nil || typ != codec.MsgActiveLeasequery {
		t.Errorf("server got %v, %v; want ACTIVELEASEQUERY", typ, err)
		return
	}
	var out []byte
	msg, _ := codec.AppendHeader(nil, codec.MsgLeasequeryReply, xid)
	out, _ = codec.AppendFrame(out, msg)
	for n := range uint32(5) {
		d := codec.ClientData{ClientID: loadgen.ClientDUID(n, time.Now())}
		msg, _ = codec.AppendHeader(nil, codec.MsgLeasequeryData, xid)
		msg, _ = d.AppendTo(msg)
		out, _ = codec.AppendFrame(out, msg)
	}
	if _, err := c.Write(out); err != nil {
		return
	}
	io.Copy(io.Discard, c)
}

func TestSwarm(t *testing.T) {
	addr := startServer(t)
	code, stdout, stderr := runCommand(t, "swarm", "--server", addr, "--connections", "4", "--count", "20", "--duration", "10s")
	if code != exitOK {
		t.Fatalf("exit status %d: %s", code, stderr)
	}
	sum := decodeSummary[loadgen.SwarmSummary](t, stdout)
	if sum.Updates != 20 || sum.Latency.Count != 20 || sum.Connections.Established != 4 || sum.Sources != 1 {
		t.Errorf("summary %+v: want 20 stamped updates on 4 connections from 127.0.0.1", sum)
	}
	if sum.Results != nil || sum.LatencyHistogram != "" {
		t.Error("the summary carries raw data without --raw")
	}
}

// TestSwarmProcesses splits the swarm over two child processes, which are
// this test binary acting as the command.
func TestSwarmProcesses(t *testing.T) {
	t.Setenv(runMainEnv, "1")
	addr := startServer(t)
	code, stdout, stderr := runCommand(t, "swarm", "--server", addr, "--connections", "4", "--procs", "2", "--count", "20", "--sources", "2", "--duration", "10s")
	if code != exitOK {
		t.Fatalf("exit status %d: %s", code, stderr)
	}
	sum := decodeSummary[loadgen.SwarmSummary](t, stdout)
	if sum.Processes != 2 || sum.Connections.Requested != 4 || sum.Updates != 20 || sum.Latency.Count != 20 || sum.Sources != 2 {
		t.Errorf("summary %+v: want 2 processes, 4 connections from 2 sources, 20 updates", sum)
	}
}

func TestSwarmUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"swarm", "--server", "192.0.2.1:547"}, "--allow-remote"},
		{[]string{"swarm", "--server", "[::1]:547", "--sources", "2"}, "IPv4 loopback"},
		{[]string{"swarm", "--server", "127.0.0.1"}, "host:port"},
		{[]string{"swarm", "--connections", "2", "--procs", "3"}, "--procs"},
		{[]string{"swarm", "--slow", "80", "--stalled", "30"}, "do not fit"},
		{[]string{"swarm", "--sources", "300"}, "--sources"},
		{[]string{"swarm", "--tls-cert", "x.pem"}, "--tls-key"},
	} {
		code, _, stderr := runCommand(t, tc.args...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit status %d, stderr %q; want %d mentioning %q", tc.args, code, stderr, exitUsage, tc.want)
		}
	}
}

func TestSwarmFailsWithoutServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close() // nothing listens there any more
	code, stdout, _ := runCommand(t, "swarm", "--server", closed, "--connections", "2", "--quiet")
	if code != exitFailed {
		t.Errorf("exit status %d, want %d", code, exitFailed)
	}
	if sum := decodeSummary[loadgen.SwarmSummary](t, stdout); sum.Connections.Failed != 2 {
		t.Errorf("connections %+v: want 2 failed", sum.Connections)
	}
}
