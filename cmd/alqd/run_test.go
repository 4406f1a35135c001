package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alqd/alqd/ingest"
)

// syncBuffer is a bytes.Buffer safe for a logger and a test reading it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startRun runs alqd with args on loopback until the test ends, and
// returns the address of its ingest API.
func startRun(t *testing.T, args ...string) string {
	t.Helper()
	return startRunServices(t, []string{"ingest"}, args...)["ingest"]
}

// startRunServices runs alqd with args on loopback until the test ends,
// waits until each HTTP service in services listens, and returns their
// addresses by service name. The service "tcp" is the leasequery server's
// TCP listener.
func startRunServices(t *testing.T, services []string, args ...string) map[string]string {
	t.Helper()
	args = append([]string{"--data-dir", t.TempDir(), "--listen", "[::1]:0", "--allow", "::1/128", "--ingest-listen", "127.0.0.1:0"}, args...)
	o, err := parseOptions(args, io.Discard)
	if err != nil {
		t.Fatalf("parseOptions: %v", err)
	}
	var logs syncBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, o, log) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})

	deadline := time.Now().Add(10 * time.Second)
	for {
		addrs := make(map[string]string)
		for _, line := range strings.Split(logs.String(), "\n") {
			var rec struct{ Msg, Service, Addr, TCP string }
			if json.Unmarshal([]byte(line), &rec) != nil {
				continue
			}
			if rec.Msg == "HTTP listening" && slices.Contains(services, rec.Service) {
				addrs[rec.Service] = rec.Addr
			}
			if rec.Msg == "listening" && slices.Contains(services, "tcp") {
				addrs["tcp"] = rec.TCP
			}
		}
		if len(addrs) == len(services) {
			return addrs
		}
		select {
		case err := <-done:
			t.Fatalf("run stopped: %v; log:\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("HTTP services %v not all listening after 10 s; log:\n%s", services, logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestIngestWrongPathJSON checks that alqd answers a path other than
// /v1/bindings with the JSON 404 body that docs/INGEST.md describes.
func TestIngestWrongPathJSON(t *testing.T) {
	addr := startRun(t)
	for _, path := range []string{"/v1/binding", "/", "/v1/bindings/"} {
		t.Run(path, func(t *testing.T) {
			resp, err := http.Post("http://"+addr+path, ingest.ContentTypeNDJSON, strings.NewReader("{}"))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("status %d, want 404", resp.StatusCode)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			var body struct{ Error string }
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Error == "" {
				t.Errorf("body is not {\"error\": ...}: %v, %+v", err, body)
			}
		})
	}
}

// TestRunCanceledAtStart stops alqd before its server may have begun to
// run, as a SIGTERM right at start-up does: run must return nil, not the
// server's ErrServerClosed.
func TestRunCanceledAtStart(t *testing.T) {
	for i := range 10 {
		o, err := parseOptions([]string{"--data-dir", t.TempDir(), "--listen", "[::1]:0", "--allow", "::1/128"}, io.Discard)
		if err != nil {
			t.Fatalf("parseOptions: %v", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := run(ctx, o, slog.New(slog.DiscardHandler)); err != nil {
			t.Fatalf("run %d with a canceled context: %v", i, err)
		}
	}
}
