package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/alqd/alqd/server"
	"github.com/alqd/alqd/store"
)

// The alqd contender runs the real server package on the real store in the
// server child, and publishes by committing bindings to the store, as the
// ingest API does. Its subscribers are the same epoll clients as the raw
// and goroutine contenders', sending ACTIVELEASEQUERY.

// alqdActive reports whether this build's server serves Active Leasequery.
// The fanout measurements of the alqd contender need it; until then they
// are reported as not available with the server's own reason.
func alqdActive() error {
	cfg := server.Config{Active: true, Insecure: true}
	if err := cfg.Validate(); errors.Is(err, server.ErrActiveNotAvailable) {
		return fmt.Errorf("%w: %v", errNotAvailable, err)
	}
	return nil
}

// alqdConfig configures an alqdServer.
type alqdConfig struct {
	// Active turns on Active Leasequery (insecure mode, RFC 7653 section
	// 9.1); off, connections can only idle or run bulk queries.
	Active   bool
	MaxConns int
	// Gate holds the producer back while the server's own count of
	// undelivered updates exceeds Window per subscriber (Window in all when
	// Filtered), as the raw contender's gate does. alqd itself never holds
	// back a producer, so without the gate a run can only measure overload.
	Gate     bool
	Window   int
	Filtered bool
	// FrameSize is the size of the probe frames the bindings should encode
	// to, which sets the size of their relay data.
	FrameSize int
}

// alqdServer is the alqd contender's server side: a store in a temporary
// directory and a server on an ephemeral loopback port.
type alqdServer struct {
	dir    string
	st     *store.Store
	srv    *server.Server
	reg    *prometheus.Registry
	relay  []byte // RELAY-FORW of OPTION_LQ_RELAY_DATA, nil for none
	runErr chan error
	seq    uint32 // IAID counter, so that no two changes are equal
	cfg    alqdConfig

	sinceCheck int // messages published since the gate last looked
}

// discardLogger drops every record: the harness reports through its results.
var discardLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

// newAlqdServer opens a fresh store and starts the server.
func newAlqdServer(cfg alqdConfig) (*alqdServer, error) {
	padding, err := relayPadding(cfg.FrameSize)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "alqd-bench-store-")
	if err != nil {
		return nil, err
	}
	a := &alqdServer{dir: dir, reg: prometheus.NewRegistry(), runErr: make(chan error, 1), cfg: cfg}
	if padding > 0 {
		a.relay = relayMessage(padding)
	}

	a.st, err = store.Open(dir, store.Options{TrimInterval: -1, Logger: discardLogger})
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("bench: opening the alqd store: %w", err)
	}
	metrics, err := server.NewMetrics(a.reg)
	if err == nil {
		a.srv, err = server.New(alqdServerConfig(cfg), a.st, server.WithLogger(discardLogger), server.WithMetrics(metrics))
	}
	if err != nil {
		a.st.Close()
		os.RemoveAll(dir)
		if errors.Is(err, server.ErrActiveNotAvailable) {
			return nil, fmt.Errorf("%w: %v", errNotAvailable, err)
		}
		return nil, fmt.Errorf("bench: starting the alqd server: %w", err)
	}

	go func() { a.runErr <- a.srv.Run() }()
	select {
	case <-a.srv.Ready():
	case <-time.After(10 * time.Second):
	}
	select {
	case err := <-a.runErr:
		a.st.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("bench: alqd server stopped at start: %w", err)
	default:
	}
	return a, nil
}

// alqdServerConfig is the server configuration every alqd measurement uses:
// loopback only, limits sized for the connection counts of the harness.
func alqdServerConfig(cfg alqdConfig) server.Config {
	return server.Config{
		Listen:               "127.0.0.1:0",
		ListenUDP:            "off",
		Allow:                []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		MaxConns:             cfg.MaxConns,
		MaxConnsPerRequestor: cfg.MaxConns,
		IdleTimeout:          time.Hour,
		Active:               cfg.Active,
		Insecure:             cfg.Active,
	}
}

func (a *alqdServer) addr() string { return a.srv.Addr().String() }

// publish commits one binding per key and stamp in one store Apply; the
// server sends each change once the commit is synced.
func (a *alqdServer) publish(keys []uint32, stamps []int64) error {
	changes := make([]store.Binding, len(keys))
	now := time.Now()
	for i, key := range keys {
		a.seq++
		b := &changes[i]
		b.Key = store.Key{Type: store.TypeNA, Prefix: netip.PrefixFrom(probeAddr(key, stamps[i]), 128)}
		b.ClientID = probeClientID
		b.IAID = a.seq
		b.PreferredLifetime, b.ValidLifetime = preferredLifetime, validLifetime
		b.State = store.StateActive
		b.CLTT = now
		b.LinkAddress = probeLink
		if key != allKeys {
			b.RelayID = relayDUID(key)
		}
		if a.relay != nil {
			b.RelayPeer, b.RelayMessage = probeLink, a.relay
		}
	}
	// Gathering the registry costs tens of microseconds, so the gate looks
	// only every quarter window of messages.
	if a.sinceCheck += len(keys); a.cfg.Gate && a.sinceCheck >= max(a.cfg.Window/4, 1) {
		a.sinceCheck = 0
		a.waitBacklog()
	}
	_, err := a.st.Apply(context.Background(), changes, nil)
	return err
}

// waitBacklog waits, for at most a minute, until the server has handed out
// all but Window updates per subscriber of what it published.
func (a *alqdServer) waitBacklog() {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		m := a.readMetrics()
		subscribers := max(m.activeConns, 1)
		backlog := m.published*subscribers - m.delivered
		allowed := int64(a.cfg.Window) * subscribers
		if a.cfg.Filtered {
			backlog = m.published - m.delivered
			allowed = int64(a.cfg.Window)
		}
		if backlog <= allowed {
			return
		}
		time.Sleep(500 * time.Microsecond)
	}
}

// alqdMetrics are the server counters the harness reads; -1 for one the
// registry lacks.
type alqdMetrics struct {
	conns, activeConns   int64
	published, delivered int64
	lapped, slowClosed   int64
}

// readMetrics gathers the server's Prometheus registry.
func (a *alqdServer) readMetrics() alqdMetrics {
	m := alqdMetrics{-1, -1, -1, -1, -1, -1}
	families, err := a.reg.Gather()
	if err != nil {
		return m
	}
	for _, f := range families {
		var value float64
		if metrics := f.GetMetric(); len(metrics) == 1 {
			if g := metrics[0].GetGauge(); g != nil {
				value = g.GetValue()
			} else {
				value = metrics[0].GetCounter().GetValue()
			}
		}
		switch f.GetName() {
		case "alqd_connections":
			m.conns = int64(value)
		case "alqd_active_connections":
			m.activeConns = int64(value)
		case "alqd_active_published_total":
			m.published = int64(value)
		case "alqd_active_updates_delivered_total":
			m.delivered = int64(value)
		case "alqd_active_lapped_total":
			m.lapped = int64(value)
		case "alqd_connections_closed_total":
			for _, series := range f.GetMetric() {
				for _, l := range series.GetLabel() {
					if l.GetName() == "reason" && l.GetValue() == server.CloseSlowConsumer.String() {
						m.slowClosed = int64(series.GetCounter().GetValue())
					}
				}
			}
		}
	}
	return m
}

func (a *alqdServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a.srv.Shutdown(ctx)
	a.st.Close()
	os.RemoveAll(a.dir)
}
