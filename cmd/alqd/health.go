package main

import (
	"fmt"
	"net/http"
	"sync/atomic"
)

// Paths of the health checks on the metrics listener.
const (
	livenessPath  = "/healthz"
	readinessPath = "/readyz"
)

// health serves the liveness and readiness checks of process supervisors
// and load balancers. Liveness is 200 while the process serves HTTP.
// Readiness is 200 once the leasequery listeners accept connections, while
// the store works and until a shutdown begins, and 503 with the reason
// otherwise.
type health struct {
	ready    <-chan struct{} // closed once the server listens
	storeErr func() error    // the error that failed the store, or nil
	stopping atomic.Bool     // set when the shutdown begins
}

// notReady returns why alqd is not ready, or "" when it is.
func (h *health) notReady() string {
	select {
	case <-h.ready:
	default:
		return "starting: the leasequery listeners are not open yet"
	}
	if h.stopping.Load() {
		return "shutting down"
	}
	if err := h.storeErr(); err != nil {
		return fmt.Sprintf("the binding store failed: %v", err)
	}
	return ""
}

func (h *health) serveLiveness(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "alive")
}

func (h *health) serveReadiness(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if reason := h.notReady(); reason != "" {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, reason)
		return
	}
	fmt.Fprintln(w, "ready")
}
