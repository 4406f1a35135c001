package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/alqd/alqd/ingest"
	"github.com/alqd/alqd/store"
)

// holdStoreEnv makes the test binary a child that holds the store in the
// named directory open until its standard input closes.
const holdStoreEnv = "ALQD_TEST_HOLD_STORE"

// TestMain runs the store-holding child when a test re-executes the test
// binary with holdStoreEnv set, and the tests otherwise.
func TestMain(m *testing.M) {
	if dir := os.Getenv(holdStoreEnv); dir != "" {
		os.Exit(holdStore(dir))
	}
	os.Exit(m.Run())
}

func holdStore(dir string) int {
	st, err := store.Open(dir, store.Options{TrimInterval: -1})
	if err != nil {
		fmt.Fprintln(os.Stderr, "holding the store:", err)
		return 1
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	if err := st.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "closing the store:", err)
		return 1
	}
	return 0
}

// newTestStore creates a store in a new directory with n IA_NA bindings,
// every third one released, and returns the directory.
func newTestStore(t *testing.T, n int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "store")
	st, err := store.Open(dir, store.Options{TrimInterval: -1, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	changes := make([]store.Binding, n)
	for i := range changes {
		changes[i] = store.Binding{
			Key:               store.Key{Type: store.TypeNA, Prefix: netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)}), 128)},
			ClientID:          fmt.Appendf(nil, "\x00\x03\x00\x01client%d", i),
			IAID:              uint32(i),
			PreferredLifetime: 3000,
			ValidLifetime:     4000,
			CLTT:              time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
			LinkAddress:       netip.MustParseAddr("2001:db8:ff::1"),
			RemoteID:          []byte("\x00\x00\x0d\xe9port-1"),
		}
		if i%3 == 0 {
			changes[i].State = store.StateReleased
			changes[i].PreferredLifetime, changes[i].ValidLifetime = 0, 0
		}
	}
	if _, err := st.Apply(context.Background(), changes, map[string][]byte{"test": []byte("meta")}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// runTool runs subcommand args[0] in-process with stdin and returns its
// exit code and output.
func runTool(t *testing.T, stdin io.Reader, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	command := storeCommand(args[0])
	if command == nil {
		t.Fatalf("%q is not a subcommand", args[0])
	}
	var out, errOut bytes.Buffer
	code = command(context.Background(), args[1:], toolIO{stdin: stdin, stdout: &out, stderr: &errOut})
	return code, out.String(), errOut.String()
}

func TestVerifyCommand(t *testing.T) {
	dir := newTestStore(t, 30)
	empty := t.TempDir()
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string // in stdout
		wantErr  string // in stderr
	}{
		{"consistent", []string{"verify", "--data-dir", dir}, exitOK, "is consistent: 30 bindings (10 released or expired), last seq 30", ""},
		{"help", []string{"verify", "-h"}, exitOK, "", "-data-dir"},
		{"no data dir", []string{"verify"}, exitUsage, "", "--data-dir is required"},
		{"extra argument", []string{"verify", "--data-dir", dir, "now"}, exitUsage, "", `unexpected argument "now"`},
		{"unknown flag", []string{"verify", "--data", dir}, exitUsage, "", "flag provided but not defined"},
		{"missing directory", []string{"verify", "--data-dir", filepath.Join(empty, "absent")}, exitUsage, "", "no store in"},
		{"empty directory", []string{"verify", "--data-dir", empty}, exitUsage, "", "no store in"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runTool(t, nil, tc.args...)
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d; stderr: %s", code, tc.wantCode, stderr)
			}
			if !strings.Contains(stdout, tc.wantOut) {
				t.Errorf("stdout %q lacks %q", stdout, tc.wantOut)
			}
			if !strings.Contains(stderr, tc.wantErr) {
				t.Errorf("stderr %q lacks %q", stderr, tc.wantErr)
			}
		})
	}
	// verify never creates a store.
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Errorf("verify of an empty directory left %d entries in it", len(entries))
	}
}

func TestVerifyCommandJSON(t *testing.T) {
	dir := newTestStore(t, 5)
	code, stdout, _ := runTool(t, nil, "verify", "--data-dir", dir, "--json")
	var report verifyReport
	if err := json.Unmarshal([]byte(stdout), &report); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, stdout)
	}
	if code != exitOK || !report.Consistent || report.Bindings != 5 || report.LastSeq != 5 || report.ServerDUID == "" {
		t.Errorf("exit code %d, report %+v; want 0 and a consistent store of 5 bindings", code, report)
	}
}

func TestVerifyCommandInconsistent(t *testing.T) {
	dir := newTestStore(t, 5)
	db, err := pebble.Open(dir, &pebble.Options{FormatMajorVersion: pebble.FormatNewest})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Set([]byte("zz-foreign"), []byte("x"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	code, stdout, stderr := runTool(t, nil, "verify", "--data-dir", dir)
	if code != exitFailure {
		t.Errorf("exit code %d, want %d; stderr: %s", code, exitFailure, stderr)
	}
	for _, want := range []string{"is inconsistent: 1 problems", "key is in no known keyspace", "restore the store from a backup"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout %q lacks %q", stdout, want)
		}
	}
}

func TestVerifyCommandStoreInUse(t *testing.T) {
	dir := newTestStore(t, 5)
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), holdStoreEnv+"="+dir)
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = stdin.Close()
		if err := child.Wait(); err != nil {
			t.Errorf("store-holding child: %v", err)
		}
	})
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("store-holding child said %q, %v", line, err)
	}

	for _, args := range [][]string{{"verify", "--data-dir", dir}, {"backup", "--data-dir", dir, "--out", filepath.Join(t.TempDir(), "b")}} {
		code, _, stderr := runTool(t, nil, args...)
		if code != exitUsage || !strings.Contains(stderr, "is locked by another process, usually a running alqd") {
			t.Errorf("%s of a store in use: exit code %d, stderr %q; want %d and the lock explained", args[0], code, stderr, exitUsage)
		}
	}
}

func TestBackupRestoreCommands(t *testing.T) {
	dir := newTestStore(t, 40)
	file := filepath.Join(t.TempDir(), "alqd.backup.zst")

	code, _, stderr := runTool(t, nil, "backup", "--data-dir", dir, "--out", file)
	if code != exitOK || !strings.Contains(stderr, "alqd backup: 40 bindings") {
		t.Fatalf("backup: exit code %d, stderr %q", code, stderr)
	}
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("backup file mode %v, want 0600", fi.Mode().Perm())
	}
	if _, err := os.Stat(file + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("the temporary file is still there: %v", err)
	}

	target := filepath.Join(t.TempDir(), "restored")
	code, _, stderr = runTool(t, nil, "restore", "--data-dir", target, "--in", file, "--json")
	var summary backupSummary
	if err := json.Unmarshal([]byte(stderr), &summary); err != nil {
		t.Fatalf("restore --json summary is not JSON: %v\n%s", err, stderr)
	}
	if code != exitOK || summary.Bindings != 40 || summary.LastSeq != 40 || summary.Floor.IsZero() {
		t.Errorf("restore: exit code %d, summary %+v; want 0, 40 bindings, last seq 40, a raised floor", code, summary)
	}
	code, stdout, _ := runTool(t, nil, "verify", "--data-dir", target)
	if code != exitOK || !strings.Contains(stdout, "40 bindings (14 released or expired)") {
		t.Errorf("verify of the restored store: exit code %d, stdout %q", code, stdout)
	}
}

func TestBackupRestoreCommandsStdio(t *testing.T) {
	dir := newTestStore(t, 10)
	var stream bytes.Buffer
	command := storeCommand("backup")
	var errOut bytes.Buffer
	if code := command(context.Background(), []string{"--data-dir", dir, "--out", "-", "--json"}, toolIO{stdout: &stream, stderr: &errOut}); code != exitOK {
		t.Fatalf("backup --out -: exit code %d, stderr %s", code, errOut.String())
	}
	var summary backupSummary
	if err := json.Unmarshal(errOut.Bytes(), &summary); err != nil || summary.StreamBytes != int64(stream.Len()) {
		t.Errorf("backup summary %s (%v); want stream_bytes %d", errOut.String(), err, stream.Len())
	}

	target := filepath.Join(t.TempDir(), "restored")
	code, _, stderr := runTool(t, &stream, "restore", "--data-dir", target, "--in", "-")
	if code != exitOK || !strings.Contains(stderr, "alqd restore: 10 bindings") || !strings.Contains(stderr, "history floor raised to") {
		t.Errorf("restore --in -: exit code %d, stderr %q", code, stderr)
	}
}

func TestBackupCommandErrors(t *testing.T) {
	dir := newTestStore(t, 3)
	outDir := t.TempDir()
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"no out", []string{"backup", "--data-dir", dir}, exitUsage, "--out is required"},
		{"no store", []string{"backup", "--data-dir", filepath.Join(outDir, "absent"), "--out", filepath.Join(outDir, "b")}, exitUsage, "no store in"},
		{"unwritable out", []string{"backup", "--data-dir", dir, "--out", filepath.Join(outDir, "absent", "b")}, exitFailure, "creating the backup file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runTool(t, nil, tc.args...)
			if code != tc.wantCode || !strings.Contains(stderr, tc.wantErr) {
				t.Errorf("exit code %d, stderr %q; want %d and %q", code, stderr, tc.wantCode, tc.wantErr)
			}
		})
	}
	if entries, _ := os.ReadDir(outDir); len(entries) != 0 {
		t.Errorf("failed backups left %d entries in %s", len(entries), outDir)
	}
}

func TestRestoreCommandErrors(t *testing.T) {
	dir := newTestStore(t, 3)
	backup := filepath.Join(t.TempDir(), "b.zst")
	if code, _, stderr := runTool(t, nil, "backup", "--data-dir", dir, "--out", backup); code != exitOK {
		t.Fatalf("backup: %s", stderr)
	}
	garbage := filepath.Join(t.TempDir(), "garbage")
	if err := os.WriteFile(garbage, []byte("not a backup"), 0o600); err != nil {
		t.Fatal(err)
	}
	parent := t.TempDir()
	target := filepath.Join(parent, "restored")

	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"no in", []string{"restore", "--data-dir", target}, exitUsage, "--in is required"},
		{"absent file", []string{"restore", "--data-dir", target, "--in", garbage + ".absent"}, exitUsage, "no such file"},
		{"not a backup", []string{"restore", "--data-dir", target, "--in", garbage}, exitFailure, "store: invalid backup"},
		{"target holds a store", []string{"restore", "--data-dir", dir, "--in", backup}, exitUsage, "restore target is not empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runTool(t, nil, tc.args...)
			if code != tc.wantCode || !strings.Contains(stderr, tc.wantErr) {
				t.Errorf("exit code %d, stderr %q; want %d and %q", code, stderr, tc.wantCode, tc.wantErr)
			}
		})
	}
	if entries, _ := os.ReadDir(parent); len(entries) != 0 {
		t.Errorf("failed restores left %d entries in %s", len(entries), parent)
	}
	// The store the refused restore pointed at still verifies.
	if code, stdout, _ := runTool(t, nil, "verify", "--data-dir", dir); code != exitOK {
		t.Errorf("verify after a refused restore: exit code %d, %s", code, stdout)
	}
}

func TestBackupEndpointNeedsMetrics(t *testing.T) {
	_, err := parseOptions([]string{"--data-dir", t.TempDir(), "--backup-endpoint"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--backup-endpoint needs --metrics") {
		t.Errorf("parseOptions = %v, want the --metrics requirement", err)
	}
}

func TestBackupEndpoint(t *testing.T) {
	addrs := startRunServices(t, []string{"ingest", "metrics"}, "--metrics", "127.0.0.1:0", "--backup-endpoint")
	const record = `{"type":"na","address":"2001:db8::%d","client_id":"000300010a0b0c0d0e0f","iaid":7,"preferred_lifetime":300,"valid_lifetime":600,"state":"active","cltt":"2026-12-04T22:05:00Z"}`
	var body strings.Builder
	for i := 1; i <= 20; i++ {
		fmt.Fprintf(&body, record+"\n", i)
	}
	resp, err := http.Post("http://"+addrs["ingest"]+ingest.BindingsPath, ingest.ContentTypeNDJSON, strings.NewReader(body.String()))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("ingest: status %d", resp.StatusCode)
	}

	resp, err = http.Get("http://" + addrs["metrics"] + backupPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/zstd" {
		t.Fatalf("GET /backup: status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if cd := resp.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, `attachment; filename="alqd-backup-`) || !strings.HasSuffix(cd, `Z.zst"`) {
		t.Errorf("Content-Disposition %q", cd)
	}
	info, err := store.Restore(context.Background(), filepath.Join(t.TempDir(), "restored"), resp.Body, store.Options{})
	if err != nil {
		t.Fatalf("Restore of the online backup: %v", err)
	}
	if info.Bindings != 20 || info.LastSeq != 20 {
		t.Errorf("online backup has %d bindings up to seq %d, want 20 and 20", info.Bindings, info.LastSeq)
	}

	resp, err = http.Post("http://"+addrs["metrics"]+backupPath, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != http.MethodGet {
		t.Errorf("POST /backup: status %d, Allow %q; want 405 and GET", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

func TestBackupEndpointOffByDefault(t *testing.T) {
	addrs := startRunServices(t, []string{"metrics"}, "--metrics", "127.0.0.1:0")
	resp, err := http.Get("http://" + addrs["metrics"] + backupPath)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /backup without --backup-endpoint: status %d, want 404", resp.StatusCode)
	}
}

func TestBackupHandlerBusyAndClosed(t *testing.T) {
	dir := newTestStore(t, 3)
	st, err := store.Open(dir, store.Options{TrimInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	h := newBackupHandler(st, slog.New(slog.NewTextHandler(io.Discard, nil)))

	h.busy.Store(true)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, backupPath, nil))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Errorf("GET during another backup: status %d, Retry-After %q; want 503 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
	h.busy.Store(false)

	h.close()
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, backupPath, nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "shutting down") {
		t.Errorf("GET after close: status %d, body %q; want 503 shutting down", rec.Code, rec.Body.String())
	}
}

// stalledWriter is a ResponseWriter whose client stopped reading after
// the first write: later writes block until a write deadline is set, then
// fail.
type stalledWriter struct {
	header   http.Header
	written  int
	writing  chan struct{} // closed at the first blocked Write
	deadline chan struct{} // closed by SetWriteDeadline
}

func (w *stalledWriter) Header() http.Header { return w.header }
func (w *stalledWriter) WriteHeader(int)     {}

func (w *stalledWriter) Write(p []byte) (int, error) {
	if w.written == 0 {
		w.written = len(p)
		return len(p), nil
	}
	select {
	case <-w.writing:
	default:
		close(w.writing)
	}
	<-w.deadline
	return 0, os.ErrDeadlineExceeded
}

func (w *stalledWriter) SetWriteDeadline(time.Time) error {
	select {
	case <-w.deadline:
	default:
		close(w.deadline)
	}
	return nil
}

func TestBackupHandlerCloseEndsStalledBackup(t *testing.T) {
	dir := newTestStore(t, 2000) // enough for several zstd blocks, so several writes
	st, err := store.Open(dir, store.Options{TrimInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	h := newBackupHandler(st, slog.New(slog.NewTextHandler(io.Discard, nil)))

	w := &stalledWriter{header: http.Header{}, writing: make(chan struct{}), deadline: make(chan struct{})}
	served := make(chan any, 1)
	go func() {
		defer func() { served <- recover() }()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, backupPath, nil))
	}()
	select {
	case <-w.writing:
	case <-time.After(10 * time.Second):
		t.Fatal("the backup did not write twice within 10 s")
	}

	closeWithin(t, h, 10*time.Second)
	if got := <-served; got != http.ErrAbortHandler {
		t.Errorf("ServeHTTP of a stalled backup ended with %v, want the http.ErrAbortHandler panic", got)
	}
}
