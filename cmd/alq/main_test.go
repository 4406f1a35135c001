package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/requestor/requestortest"
)

func TestMain(m *testing.M) { requestortest.Main(m) }

// requestorDUID is the DUID the recorded vectors use for the requestor.
const requestorDUID = "000300010000 5e0053aa"

var (
	msg       = requestortest.Msg
	optBase   = requestortest.OptBaseTime
	optStatus = requestortest.OptStatus
	client1   = requestortest.DUIDLL(1)
)

// alq runs the command in-process and returns the exit code, stdout and
// stderr.
func alq(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, args, &stdout, &stderr, false)
	return code, stdout.String(), stderr.String()
}

func vector(t *testing.T, name string) []byte {
	t.Helper()
	b, err := requestortest.ReadHex(filepath.Join("..", "..", "testdata", "vectors", name+".hex"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func framed(t *testing.T, names ...string) []byte {
	t.Helper()
	var out []byte
	for _, n := range names {
		var err error
		if out, err = codec.AppendFrame(out, vector(t, n)); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// jsonLines decodes one JSON object per line.
func jsonLines(t *testing.T, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("output line %q is not JSON: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// replayServer answers one recorded exchange per connection.
func replayServer(t *testing.T, c2s, s2c []byte) *requestortest.Server {
	return requestortest.NewServer(t, func(c *requestortest.Conn) {
		if _, err := c.Replay(c2s, s2c, 0); err != nil {
			t.Errorf("replay: %v", err)
		}
		c.WaitClosed(5 * time.Second)
	})
}

func TestBulkJSON(t *testing.T) {
	// The recorded QUERY_BY_RELAY_ID and its two-client answer.
	srv := replayServer(t, framed(t, "c01_bulk_query_by_relay_id"),
		framed(t, "c02_bulk_reply_first_binding", "c03_bulk_data_second_binding", "c04_bulk_done_empty"))
	code, stdout, stderr := alq(t, "bulk", "--server", srv.Addr(), "--duid", requestorDUID,
		"--relay-id", "0002 00007ed9 72656c61792d61", "--json")
	if code != exitOK {
		t.Fatalf("exit code %d, stderr %q", code, stderr)
	}
	lines := jsonLines(t, stdout)
	if len(lines) != 4 {
		t.Fatalf("got %d JSON lines, want 3 bindings and a done:\n%s", len(lines), stdout)
	}
	first := lines[0]
	want := map[string]any{
		"event": "binding", "source": "bulk", "type": "IA_NA", "address": "2001:db8:1::10",
		"client_id": "000300010000 5e005301", "state": "active", "preferred_lifetime": 1740.0,
		"valid_lifetime": 3540.0, "clt_time": 60.0, "base_time": 820540800.0,
		"server_time": "2026-01-01T00:00:00Z", "link_address": "2001:db8:1::1",
		"relay_id": "000200007ed972656c61792d61", "interface_id": "67652d302f302f312e313030",
		"relay_peer": "2001:db8:1::1", "catch_up": false,
	}
	want["client_id"] = strings.ReplaceAll(want["client_id"].(string), " ", "")
	for k, v := range want {
		if first[k] != v {
			t.Errorf("binding field %s = %v, want %v", k, first[k], v)
		}
	}
	if r, ok := first["remote_id"].(map[string]any); !ok || r["enterprise"] != 32473.0 || r["id"] != "706f72742d37" {
		t.Errorf("remote_id = %v, want enterprise 32473 id 706f72742d37", first["remote_id"])
	}
	for _, k := range []string{"valid_until", "preferred_until", "last_transaction", "received"} {
		if _, err := time.Parse(time.RFC3339Nano, fmt.Sprint(first[k])); err != nil {
			t.Errorf("field %s = %v, want an RFC 3339 time", k, first[k])
		}
	}
	if lines[2]["prefix"] != "2001:db8:100:1200::/56" || lines[2]["type"] != "IA_PD" {
		t.Errorf("third binding = %v, want the IA_PD 2001:db8:100:1200::/56", lines[2])
	}
	if d := lines[3]; d["event"] != "done" || d["status"] != "Success" || d["bindings"] != 3.0 {
		t.Errorf("last line = %v, want done with Success and 3 bindings", d)
	}
}

func TestBulkTable(t *testing.T) {
	srv := replayServer(t, framed(t, "c01_bulk_query_by_relay_id"),
		framed(t, "c02_bulk_reply_first_binding", "c03_bulk_data_second_binding", "c04_bulk_done_empty"))
	code, stdout, stderr := alq(t, "bulk", "--server", srv.Addr(), "--duid", requestorDUID, "--by", "relay-id", "--relay-id", "000200007ed972656c61792d61")
	if code != exitOK {
		t.Fatalf("exit code %d, stderr %q", code, stderr)
	}
	rows := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(rows) != 4 || !strings.HasPrefix(rows[0], "TYPE") {
		t.Fatalf("table =\n%s\nwant a header and 3 rows", stdout)
	}
	for i, want := range []string{"2001:db8:1::10", "2001:db8:1::11", "2001:db8:100:1200::/56"} {
		if !strings.Contains(rows[i+1], want) {
			t.Errorf("row %d = %q, want %s", i+1, rows[i+1], want)
		}
	}
	if !strings.Contains(stderr, "3 bindings from") {
		t.Errorf("stderr = %q, want a summary", stderr)
	}
}

func TestExitCodes(t *testing.T) {
	closed := requestortest.ClosedPort(t)
	answer := func(reply func(xid uint32) [][]byte) *requestortest.Server {
		return requestortest.NewServer(t, func(c *requestortest.Conn) {
			r, err := c.ReadMessage()
			if err != nil {
				return
			}
			for _, m := range reply(r.Msg.TransactionID) {
				c.Send(m)
			}
		})
	}
	notAllowed := answer(func(x uint32) [][]byte {
		return [][]byte{msg(codec.MsgLeasequeryReply, x, optStatus(codec.StatusNotAllowed, "not on the allow-list"))}
	})
	malformed := answer(func(x uint32) [][]byte {
		return [][]byte{requestortest.WithXID(vector(t, "c08_bulk_reply_malformed"), x)}
	})
	cut := answer(func(x uint32) [][]byte {
		return [][]byte{msg(codec.MsgLeasequeryReply, x, requestortest.Binding(client1, "2001:db8:1::1", 1, 2, 3))}
	})
	garbage := answer(func(x uint32) [][]byte { return [][]byte{msg(codec.MsgAdvertise, x)} })
	notSupported := answer(func(x uint32) [][]byte {
		return [][]byte{requestortest.WithXID(vector(t, "c20_reply_not_supported"), x)}
	})
	tlsRefused := replayServer(t, vector(t, "stream_tls_c2s"), vector(t, "stream_tls_s2c"))
	pki := requestortest.NewPKI(t)
	caFile, certFile, keyFile := pki.WriteFiles(t, t.TempDir())
	untrusted := requestortest.NewServer(t, func(c *requestortest.Conn) {
		if r, err := c.ReadMessage(); err == nil {
			c.StartTLS(r.Msg.TransactionID, requestortest.NewPKI(t).ServerConfig())
		}
	})
	link := []string{"--link", "2001:db8:1::1"}

	tests := []struct {
		name string
		args []string
		code int
		say  string
	}{
		{"no server", append([]string{"bulk"}, link...), exitUsage, "--server is required"},
		{"bad query type", []string{"bulk", "--server", closed, "--by", "mac"}, exitUsage, "not a query type"},
		{"two keys", []string{"bulk", "--server", closed, "--address", "2001:db8::1", "--relay-id", "0003000100"}, exitUsage, "different query types"},
		{"bad hex", []string{"bulk", "--server", closed, "--client-id", "xyz"}, exitUsage, "not hex"},
		{"IPv4 address", []string{"query", "--server", closed, "--address", "192.0.2.1"}, exitUsage, "not an IPv6 address"},
		{"bulk-only type over UDP", []string{"query", "--server", closed, "--relay-id", "000300010000"}, exitUsage, "--by relay-id is defined for Bulk Leasequery over TCP only: use alq bulk"},
		{"end time on watch", []string{"watch", "--server", closed, "--end-time", "5"}, exitUsage, "--end-time is for alq bulk"},
		{"bad time", []string{"bulk", "--server", closed, "--link", "2001:db8::1", "--start-time", "yesterday"}, exitUsage, "RFC 3339"},
		{"unknown flag", []string{"bulk", "--colour"}, exitUsage, "flag provided but not defined"},
		{"positional argument", []string{"bulk", "--server", closed, "2001:db8::1"}, exitUsage, "unexpected argument"},
		{"unreachable", append([]string{"bulk", "--server", closed}, link...), exitUnreachable, "cannot reach"},
		{"not allowed", append([]string{"bulk", "--server", notAllowed.Addr()}, link...), exitNotAllowed, "allow-list"},
		{"malformed", append([]string{"bulk", "--server", malformed.Addr()}, link...), exitRejected, "MalformedQuery"},
		{"not supported", []string{"watch", "--server", notSupported.Addr()}, exitRejected, "does not support Active Leasequery"},
		{"cut short", append([]string{"bulk", "--server", cut.Addr()}, link...), exitIncomplete, "incomplete"},
		{"invalid answer", append([]string{"bulk", "--server", garbage.Addr()}, link...), exitFailure, "invalid answer"},
		{"TLS refused", append([]string{"bulk", "--server", tlsRefused.Addr(), "--tls-ca", caFile}, link...), exitTLS, "refused TLS"},
		{"TLS untrusted", append([]string{"bulk", "--server", untrusted.Addr(), "--tls-ca", caFile, "--tls-cert", certFile, "--tls-key", keyFile}, link...), exitTLS, "handshake"},
		{"TLS half a key pair", append([]string{"bulk", "--server", closed, "--tls-cert", certFile}, link...), exitUsage, "go together"},
		{"unknown command", []string{"fetch"}, exitUsage, "unknown command"},
		{"no command", nil, exitUsage, "Usage"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := alq(t, tc.args...)
			if code != tc.code {
				t.Errorf("exit code = %d, want %d; stderr %q", code, tc.code, stderr)
			}
			if !strings.Contains(stderr, tc.say) {
				t.Errorf("stderr = %q, want it to mention %q", stderr, tc.say)
			}
		})
	}
}

func TestQueryUDPJSON(t *testing.T) {
	srv := requestortest.NewUDPServer(t, func(r requestortest.Received) [][]byte {
		return [][]byte{msg(codec.MsgLeasequeryReply, r.Msg.TransactionID, optBase(820540800),
			requestortest.Binding(client1, "2001:db8:1::10", 60, 1740, 3540))}
	})
	code, stdout, stderr := alq(t, "query", "--server", srv.Addr(), "--address", "2001:db8:1::10", "--json")
	if code != exitOK {
		t.Fatalf("exit code %d, stderr %q", code, stderr)
	}
	lines := jsonLines(t, stdout)
	if len(lines) != 2 || lines[0]["address"] != "2001:db8:1::10" || lines[0]["source"] != "udp" || lines[1]["event"] != "done" {
		t.Errorf("output = %v, want one udp binding and a done", lines)
	}
}

func TestQueryUDPNoAnswer(t *testing.T) {
	srv := requestortest.NewUDPServer(t, func(requestortest.Received) [][]byte { return nil })
	code, _, stderr := alq(t, "query", "--server", srv.Addr(), "--address", "2001:db8:1::10", "--lq-timeout", "10ms", "--lq-max-rt", "20ms", "--lq-max-rc", "3")
	if code != exitUnreachable {
		t.Errorf("exit code = %d, want %d; stderr %q", code, exitUnreachable, stderr)
	}
	if n := len(srv.Received()); n != 3 {
		t.Errorf("server received %d datagrams, want --lq-max-rc 3", n)
	}
}

// TestWatchStateFile follows the recorded active stream, which ends with
// QueryTerminated, and resumes from the state file on the next run.
func TestWatchStateFile(t *testing.T) {
	stream := vector(t, "stream_act_s2c")
	frames, _ := requestortest.Frames(stream)
	starts := make(chan []int64, 2)
	srv := requestortest.NewServer(t, func(c *requestortest.Conn) {
		r, err := c.ReadMessage()
		if err != nil {
			return
		}
		s, ok := r.Msg.Options.StartTime()
		v := int64(-1)
		if ok {
			v = int64(s)
		}
		starts <- []int64{v}
		for _, f := range frames {
			c.Send(requestortest.WithXID(f, r.Msg.TransactionID))
		}
	})
	state := filepath.Join(t.TempDir(), "watch.json")
	args := []string{"watch", "--server", srv.Addr(), "--state", state, "--start-time", "820537200", "--max-attempts", "1", "--json"}
	code, stdout, stderr := alq(t, args...)
	if code != exitIncomplete || !strings.Contains(stderr, "QueryTerminated") {
		t.Fatalf("exit code %d, stderr %q; want %d with QueryTerminated", code, stderr, exitIncomplete)
	}
	want := "connected accepted binding binding catch_up_complete keepalive done disconnected"
	if got := eventKinds(t, stdout); got != want {
		t.Errorf("events = %s, want %s", got, want)
	}
	data, err := os.ReadFile(state)
	if err != nil || !strings.Contains(string(data), `"start_time":820540862`) {
		t.Fatalf("state file = %s, %v; want start_time 820540862", data, err)
	}

	// The second run resumes from the state file.
	code, _, _ = alq(t, "watch", "--server", srv.Addr(), "--state", state, "--max-attempts", "1")
	if code != exitIncomplete {
		t.Errorf("second run exit code = %d, want %d", code, exitIncomplete)
	}
	if got := []int64{(<-starts)[0], (<-starts)[0]}; got[0] != 820537200 || got[1] != 820540862 {
		t.Errorf("start times = %v, want [820537200 820540862]", got)
	}

	// A state file of another server is refused.
	code, _, stderr = alq(t, "watch", "--server", "[::1]:15470", "--state", state)
	if code != exitUsage || !strings.Contains(stderr, "belongs to server") {
		t.Errorf("other server: exit %d, stderr %q; want %d", code, stderr, exitUsage)
	}
}

func TestMirrorCommand(t *testing.T) {
	srv := requestortest.NewServer(t, func(c *requestortest.Conn) {
		r, err := c.ReadMessage()
		if err != nil {
			return
		}
		x := r.Msg.TransactionID
		c.Send(msg(codec.MsgLeasequeryReply, x, optBase(100), requestortest.Binding(client1, "2001:db8:1::1", 5, 100, 200)),
			msg(codec.MsgLeasequeryData, x, optBase(101), requestortest.OptClientData(requestortest.DUIDLL(2), requestortest.OptIAPrefix("2001:db8:ff::/56", 50, 60))),
			msg(codec.MsgLeasequeryData, x, optStatus(codec.StatusCatchUpComplete, ""), optBase(105)))
	})
	db := filepath.Join(t.TempDir(), "mirror")
	code, stdout, stderr := alq(t, "mirror", "--server", srv.Addr(), "--db", db, "--max-attempts", "1", "--json")
	if code != exitIncomplete {
		t.Fatalf("exit code %d, stderr %q; want %d after the one connection closed", code, stderr, exitIncomplete)
	}
	if !strings.Contains(stdout, `"event":"catch_up_complete"`) {
		t.Errorf("mirror output lacks catch-up complete:\n%s", stdout)
	}

	// --list reads the database without --server or a connection.
	code, stdout, stderr = alq(t, "mirror", "--db", db, "--list", "--json")
	if code != exitOK {
		t.Fatalf("--list exit code %d, stderr %q", code, stderr)
	}
	lines := jsonLines(t, stdout)
	if len(lines) != 2 || lines[0]["address"] != "2001:db8:1::1" || lines[1]["prefix"] != "2001:db8:ff::/56" {
		t.Errorf("listed = %v, want the address and the prefix", lines)
	}
	if !strings.Contains(stderr, "resume start time 105") {
		t.Errorf("stderr = %q, want the resume start time 105", stderr)
	}
	code, _, stderr = alq(t, "mirror", "--db", filepath.Join(t.TempDir(), "new"), "--list")
	if code != exitUsage {
		t.Errorf("new database without --server: exit %d, stderr %q; want %d", code, stderr, exitUsage)
	}
	code, _, stderr = alq(t, "mirror", "--db", db, "--server", "[::1]:1", "--list")
	if code != exitUsage || !strings.HasPrefix(stderr, "alq mirror: database follows another server: "+db) {
		t.Errorf("database of another server: exit %d, stderr %q; want %d and one command prefix", code, stderr, exitUsage)
	}
}

// TestMirrorDataMissingNoBulkLink runs alq mirror without --bulk-link or
// --by against a server that sends DataMissing: alq stops with exit code
// 8, and its message names --bulk-link, for an empty and a filled mirror.
func TestMirrorDataMissingNoBulkLink(t *testing.T) {
	tests := []struct {
		name   string
		filled bool
		want   string
	}{
		{"empty", false, "an empty mirror cannot be filled by catch-up"},
		{"filled", true, "no history from server time 160 to 300"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			conns := 0
			srv := requestortest.NewServer(t, func(c *requestortest.Conn) {
				r, err := c.ReadMessage()
				if err != nil || r.Err != nil {
					return
				}
				mu.Lock()
				conns++
				fill := tt.filled && conns == 1
				mu.Unlock()
				x := r.Msg.TransactionID
				if fill {
					c.Send(msg(codec.MsgLeasequeryReply, x, optBase(100), requestortest.Binding(client1, "2001:db8:1::1", 5, 100, 200)),
						msg(codec.MsgLeasequeryData, x, optStatus(codec.StatusCatchUpComplete, ""), optBase(105)),
						msg(codec.MsgLeasequeryData, x, optBase(160)))
					return
				}
				c.Send(msg(codec.MsgLeasequeryReply, x, optStatus(codec.StatusDataMissing, ""), optBase(300)))
				c.WaitClosed(5 * time.Second)
			})
			db := filepath.Join(t.TempDir(), "mirror")
			if tt.filled {
				if code, _, stderr := alq(t, "mirror", "--server", srv.Addr(), "--db", db, "--max-attempts", "1", "--quiet"); code != exitIncomplete {
					t.Fatalf("filling run: exit code %d, stderr %q; want %d", code, stderr, exitIncomplete)
				}
			}
			code, _, stderr := alq(t, "mirror", "--server", srv.Addr(), "--db", db, "--max-attempts", "3", "--quiet")
			if code != exitDataMissing {
				t.Fatalf("exit code %d, stderr %q; want %d", code, stderr, exitDataMissing)
			}
			if !strings.Contains(stderr, tt.want) || !strings.Contains(stderr, "--bulk-link") {
				t.Errorf("stderr = %q, want %q and advice to give --bulk-link", stderr, tt.want)
			}
		})
	}
}

// TestMirrorRecoveryQueries runs alq mirror with --bulk-link into
// DataMissing. By default the recovery connection carries the interval
// query and the query without times, and the output reports the sweep.
// With --windowed-recovery it carries only the interval query.
func TestMirrorRecoveryQueries(t *testing.T) {
	tests := []struct {
		name    string
		flags   []string
		queries int
	}{
		{"full", nil, 2},
		{"windowed", []string{"--windowed-recovery"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recovered := make(chan struct{})
			var mu sync.Mutex
			bulks, queries := 0, 0
			srv := requestortest.NewServer(t, func(c *requestortest.Conn) {
				r, err := c.ReadMessage()
				if err != nil || r.Err != nil {
					return
				}
				x := r.Msg.TransactionID
				if r.Msg.Type == codec.MsgActiveLeasequery {
					c.Send(msg(codec.MsgLeasequeryReply, x, optStatus(codec.StatusDataMissing, ""), optBase(200)))
					<-recovered
					return // closed: the one active attempt ends the run
				}
				mu.Lock()
				bulks++
				initial := bulks == 1
				mu.Unlock()
				if initial {
					c.Send(msg(codec.MsgLeasequeryReply, x, optBase(100), requestortest.Binding(client1, "2001:db8:1::1", 5, 100, 200)),
						msg(codec.MsgLeasequeryDone, x, optBase(100)))
					c.WaitClosed(5 * time.Second)
					return
				}
				n := 1
				c.Send(msg(codec.MsgLeasequeryReply, x, optBase(201)))
				for {
					r, err := c.ReadMessage()
					if err != nil || r.Err != nil {
						break // the requestor closed the connection
					}
					n++
					c.Send(msg(codec.MsgLeasequeryReply, r.Msg.TransactionID, optBase(201)))
				}
				mu.Lock()
				queries = n
				mu.Unlock()
				close(recovered)
			})
			db := filepath.Join(t.TempDir(), "mirror")
			args := append([]string{"mirror", "--server", srv.Addr(), "--db", db, "--bulk-link", "2001:db8:1::1", "--max-attempts", "2", "--json"}, tt.flags...)
			code, stdout, stderr := alq(t, args...)
			if code != exitIncomplete {
				t.Fatalf("exit code %d, stderr %q; want %d after the active connection closed", code, stderr, exitIncomplete)
			}
			mu.Lock()
			if queries != tt.queries {
				t.Errorf("recovery connection carried %d queries, want %d", queries, tt.queries)
			}
			mu.Unlock()
			var swept []map[string]any
			for _, l := range jsonLines(t, stdout) {
				if l["event"] == "swept" {
					swept = append(swept, l)
				}
			}
			wantSwept := 2 // after the initial bulk and after the recovery
			if tt.queries == 1 {
				wantSwept = 1
			}
			if len(swept) != wantSwept {
				t.Fatalf("swept events %v, want %d:\n%s", swept, wantSwept, stdout)
			}
			if last := swept[len(swept)-1]; tt.queries == 2 && (last["source"] != "recovery" || last["ended"] != 1.0) {
				t.Errorf("last swept event %v, want the recovery ending 2001:db8:1::1", last)
			}
		})
	}
}

func TestBulkOverTLS(t *testing.T) {
	pki := requestortest.NewPKI(t)
	caFile, certFile, keyFile := pki.WriteFiles(t, t.TempDir())
	srv := requestortest.NewServer(t, func(c *requestortest.Conn) {
		r, err := c.ReadMessage()
		if err != nil || r.Msg.Type != codec.MsgStartTLS {
			t.Errorf("first message %v, %v; want STARTTLS", r.Msg.Type, err)
			return
		}
		if err := c.StartTLS(r.Msg.TransactionID, pki.ServerConfig()); err != nil {
			t.Errorf("server handshake: %v", err)
			return
		}
		q, err := c.ReadMessage()
		if err != nil {
			return
		}
		c.Send(msg(codec.MsgLeasequeryReply, q.Msg.TransactionID, requestortest.Binding(client1, "2001:db8:1::1", 1, 2, 3)),
			msg(codec.MsgLeasequeryDone, q.Msg.TransactionID))
		c.WaitClosed(5 * time.Second)
	})
	code, stdout, stderr := alq(t, "bulk", "--server", srv.Addr(), "--link", "2001:db8:1::1",
		"--tls-ca", caFile, "--tls-cert", certFile, "--tls-key", keyFile, "--json")
	if code != exitOK {
		t.Fatalf("exit code %d, stderr %q", code, stderr)
	}
	if !strings.Contains(stdout, `"address":"2001:db8:1::1"`) {
		t.Errorf("output = %s, want the binding", stdout)
	}
}

func TestHelp(t *testing.T) {
	code, stdout, _ := alq(t, "help")
	if code != exitOK || !strings.Contains(stdout, "Exit codes:") || !strings.Contains(stdout, "mirror") {
		t.Errorf("alq help: exit %d, output %q", code, stdout)
	}
	code, stdout, _ = alq(t, "help", "watch")
	if code != exitOK || !strings.Contains(stdout, "-state") || !strings.Contains(stdout, "Exit codes:") {
		t.Errorf("alq help watch: exit %d, output %q", code, stdout)
	}
	if code, _, _ := alq(t, "bulk", "-h"); code != exitOK {
		t.Errorf("alq bulk -h: exit %d, want 0", code)
	}
	if code, _, _ := alq(t, "help", "nothing"); code != exitUsage {
		t.Errorf("alq help nothing: exit %d, want %d", code, exitUsage)
	}
}

func TestProgressLine(t *testing.T) {
	if p := startProgress(&bytes.Buffer{}, false); p != nil {
		t.Error("progress drawn on a non-terminal")
	}
	line := progressLine(12345, 5*time.Second)
	if !strings.HasPrefix(line, "\r") || !strings.Contains(line, "12345 bindings") || !strings.Contains(line, "2469/s") {
		t.Errorf("progress line = %q", line)
	}
	var buf bytes.Buffer
	p := startProgress(&buf, true)
	p.add()
	p.draw(time.Now())
	p.finish()
	if !strings.Contains(buf.String(), "1 bindings") || !strings.HasSuffix(buf.String(), "\r\033[K") {
		t.Errorf("terminal output = %q, want a drawn and cleared line", buf.String())
	}
}

func TestParseTime(t *testing.T) {
	tests := []struct {
		in   string
		want uint32
	}{
		{"820540800", 820540800},
		{"2026-01-01T00:00:00Z", 820540800},
		{"2026-01-01T01:00:00+01:00", 820540800},
		{"0", 0},
	}
	for _, tc := range tests {
		got, err := parseTime("--start-time", tc.in)
		if err != nil || got != tc.want {
			t.Errorf("parseTime(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "1999-12-31T23:59:59Z", "4294967296", "-1"} {
		if _, err := parseTime("--start-time", bad); err == nil {
			t.Errorf("parseTime(%q) succeeded", bad)
		}
	}
}

func TestWatchText(t *testing.T) {
	frames, _ := requestortest.Frames(vector(t, "stream_act_s2c"))
	srv := requestortest.NewServer(t, func(c *requestortest.Conn) {
		r, err := c.ReadMessage()
		if err != nil {
			return
		}
		for _, f := range frames {
			c.Send(requestortest.WithXID(f, r.Msg.TransactionID))
		}
	})
	_, stdout, _ := alq(t, "watch", "--server", srv.Addr(), "--start-time", "2025-12-31T23:00:00Z", "--max-attempts", "1")
	for _, want := range []string{
		"connected to " + srv.Addr() + " (attempt 1), catching up from 820537200",
		"IA_NA 2001:db8:1::10 client 000300010000" + "5e005301 active valid 3540",
		"IA_PD 2001:db8:100:1200::/56",
		"ended valid 0",
		"(catch-up)",
		"catch-up complete at server time 820540801 (2026-01-01T00:00:01Z)",
		"keepalive at server time 820540861",
		"done: QueryTerminated (server shutting down)",
		"disconnected:",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
}
