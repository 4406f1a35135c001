package main

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestReadiness(t *testing.T) {
	open := make(chan struct{})
	close(open)
	tests := []struct {
		name     string
		ready    chan struct{}
		storeErr error
		stopping bool
		code     int
		body     string
	}{
		{"starting", make(chan struct{}), nil, false, http.StatusServiceUnavailable, "starting"},
		{"ready", open, nil, false, http.StatusOK, "ready"},
		{"store failed", open, errors.New("disk full"), false, http.StatusServiceUnavailable, "the binding store failed: disk full"},
		{"shutting down", open, nil, true, http.StatusServiceUnavailable, "shutting down"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &health{ready: tt.ready, storeErr: func() error { return tt.storeErr }}
			h.stopping.Store(tt.stopping)
			rec := httptest.NewRecorder()
			h.serveReadiness(rec, httptest.NewRequest(http.MethodGet, readinessPath, nil))
			if rec.Code != tt.code {
				t.Errorf("status %d, want %d", rec.Code, tt.code)
			}
			if !strings.Contains(rec.Body.String(), tt.body) {
				t.Errorf("body %q, want it to contain %q", rec.Body.String(), tt.body)
			}
		})
	}
}

// TestHealthEndpoints checks the health checks of a running alqd on its
// metrics listener.
func TestHealthEndpoints(t *testing.T) {
	addrs := startRunServices(t, []string{"metrics", "tcp"}, "--metrics", "127.0.0.1:0")
	for _, path := range []string{livenessPath, readinessPath} {
		resp, err := http.Get("http://" + addrs["metrics"] + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: status %d (%q), want 200", path, resp.StatusCode, body)
		}
	}
	resp, err := http.Post("http://"+addrs["metrics"]+readinessPath, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST %s: status %d, want 405", readinessPath, resp.StatusCode)
	}
}
