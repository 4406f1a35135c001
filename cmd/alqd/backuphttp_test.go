package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alqd/alqd/store"
)

// smallBufferListener sets a small send buffer on every accepted
// connection, so that a client that stops reading blocks the server's
// writes after a few KiB instead of after the several MiB that loopback
// autotuning allows.
type smallBufferListener struct{ net.Listener }

func (l smallBufferListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(4096)
	}
	return c, err
}

// stalledBindings is the store size of the tests with a stalled client.
// Its backup stream, about 300 KB, is far larger than what the socket
// buffers and the HTTP response buffer hold, so the backup blocks.
const stalledBindings = 20000

// startBackupServer serves a backup handler of a store with n bindings on
// 127.0.0.1 and returns the handler and the URL of /backup.
func startBackupServer(t *testing.T, n int) (*backupHandler, string) {
	t.Helper()
	st, err := store.Open(newTestStore(t, n), store.Options{TrimInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	h := newBackupHandler(st, slog.New(slog.DiscardHandler))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = smallBufferListener{ln}
	srv.Start()
	t.Cleanup(func() {
		h.close()
		srv.Close()
		if err := st.Close(); err != nil {
			t.Errorf("closing the store: %v", err)
		}
	})
	return h, srv.URL + backupPath
}

// stalledGet sends GET url on a connection with a small receive buffer,
// reads the status line, and then stops reading. The returned connection
// is closed at the end of the test.
func stalledGet(t *testing.T, url string) net.Conn {
	t.Helper()
	host := strings.TrimPrefix(strings.TrimSuffix(url, backupPath), "http://")
	c, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", backupPath, host)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 200") {
		t.Fatalf("status line of the stalled GET: %q, %v", line, err)
	}
	return c
}

// closeWithin calls h.close and fails the test when it does not return
// within timeout.
func closeWithin(t *testing.T, h *backupHandler, timeout time.Duration) {
	t.Helper()
	closed := make(chan struct{})
	go func() {
		h.close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(timeout):
		t.Fatalf("close did not end the stalled backup within %v", timeout)
	}
}

// waitBusy polls until a backup runs in h.
func waitBusy(t *testing.T, h *backupHandler) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !h.busy.Load(); {
		if time.Now().After(deadline) {
			t.Fatal("no backup running after 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}

// getBackup sends GET url and restores the body. It returns the status
// code, and the restore error for a 200.
func getBackup(t *testing.T, url string) (int, store.BackupInfo, error) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, store.BackupInfo{}, nil
	}
	info, err := store.Restore(context.Background(), filepath.Join(t.TempDir(), "restored"), resp.Body, store.Options{})
	return resp.StatusCode, info, err
}

// TestBackupEndpointSecondGetBusy checks that a GET while another backup
// runs gets 503 with Retry-After, and that the next GET after the first
// client went away gets a whole backup.
func TestBackupEndpointSecondGetBusy(t *testing.T) {
	h, url := startBackupServer(t, stalledBindings)
	first := stalledGet(t, url)
	waitBusy(t, h)

	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("GET during a backup: status %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}

	// The first client disconnects mid-stream. Its backup fails on the
	// next write, and the endpoint serves the next GET in full.
	first.Close()
	for deadline := time.Now().Add(10 * time.Second); ; {
		code, info, err := getBackup(t, url)
		if code == http.StatusServiceUnavailable && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
			continue
		}
		if code != http.StatusOK || err != nil {
			t.Fatalf("GET after the first client left: status %d, restore %v", code, err)
		}
		if info.Bindings != stalledBindings {
			t.Errorf("backup after the first client left has %d bindings, want %d", info.Bindings, stalledBindings)
		}
		break
	}
}

// TestBackupEndpointCloseDuringStalledGet checks that close ends a backup
// whose client stopped reading on a real connection, and that the client
// sees a broken transfer rather than a short clean one.
func TestBackupEndpointCloseDuringStalledGet(t *testing.T) {
	h, url := startBackupServer(t, stalledBindings)
	c := stalledGet(t, url)
	waitBusy(t, h)

	closeWithin(t, h, 10*time.Second)
	// The rest of the response never ends in the final chunk.
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	rest, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the rest of the aborted response: %v", err)
	}
	if strings.HasSuffix(string(rest), "\r\n0\r\n\r\n") {
		t.Error("the aborted backup ended with the final chunk, so a client takes it for complete")
	}

	code, _, _ := getBackup(t, url)
	if code != http.StatusServiceUnavailable {
		t.Errorf("GET after close: status %d, want 503", code)
	}
}

// TestBackupEndpointMethods checks that only GET starts a backup.
func TestBackupEndpointMethods(t *testing.T) {
	h, url := startBackupServer(t, 3)
	for _, method := range []string{http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete} {
		req, err := http.NewRequest(method, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != http.MethodGet {
			t.Errorf("%s /backup: status %d, Allow %q; want 405 and GET", method, resp.StatusCode, resp.Header.Get("Allow"))
		}
	}
	if h.busy.Load() {
		t.Error("a refused method left the endpoint busy")
	}
	if code, info, err := getBackup(t, url); code != http.StatusOK || err != nil || info.Bindings != 3 {
		t.Errorf("GET after refused methods: status %d, %d bindings, restore %v", code, info.Bindings, err)
	}
}

// TestBackupEndpointStalledClient checks that a backup whose client stops
// reading is aborted after the stall timeout, and that the endpoint then
// serves the next backup.
func TestBackupEndpointStalledClient(t *testing.T) {
	h, url := startBackupServer(t, stalledBindings)
	h.stallTimeout = 200 * time.Millisecond
	c := stalledGet(t, url)
	waitBusy(t, h)
	for deadline := time.Now().Add(10 * time.Second); h.busy.Load(); {
		if time.Now().After(deadline) {
			t.Fatal("the stalled backup still runs 10 s after its client stopped reading")
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.Close()

	code, info, err := getBackup(t, url)
	if code != http.StatusOK || err != nil {
		t.Fatalf("GET after the stalled one: status %d, restore error %v", code, err)
	}
	if info.Bindings != stalledBindings {
		t.Errorf("restored %d bindings, want %d", info.Bindings, stalledBindings)
	}
}
