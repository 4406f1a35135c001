// Command alqd is the DHCPv6 leasequery server: Active Leasequery (RFC
// 7653, with STARTTLS), Bulk Leasequery over TCP (RFC 5460 with the RFC
// 7653 time options) and Leasequery over UDP (RFC 5007), served from a
// Pebble binding store that the Kea lease file follower and the HTTP
// ingest API fill. The --metrics listener serves Prometheus metrics,
// pprof and the /healthz and /readyz checks.
//
// Usage:
//
//	alqd --data-dir /var/lib/alqd --allow 2001:db8:ffff::/48 [flags]
//
// The subcommands verify, backup and restore work on a store that no alqd
// has open:
//
//	alqd verify --data-dir DIR
//	alqd backup --data-dir DIR --out FILE
//	alqd restore --data-dir DIR --in FILE
//
// Run alqd -h for the flags. SIGTERM or SIGINT shuts it down: running bulk
// queries end with LEASEQUERY-DONE QueryTerminated and the store is closed.
// SIGHUP rereads the TLS certificate, key and client CA files; connections
// already established keep running.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/alqd/alqd/ingest"
	"github.com/alqd/alqd/server"
	"github.com/alqd/alqd/store"
)

func main() {
	if len(os.Args) > 1 {
		if command := storeCommand(os.Args[1]); command != nil {
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			code := command(ctx, os.Args[2:], toolIO{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr})
			stop()
			os.Exit(code)
		}
	}

	o, err := parseOptions(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "alqd:", err)
		os.Exit(2)
	}
	log := newLogger(o)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, o, log); err != nil {
		log.Error("alqd stopped", "err", err)
		os.Exit(1)
	}
}

func newLogger(o *options) *slog.Logger {
	ho := &slog.HandlerOptions{Level: o.logLevel}
	if o.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, ho))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, ho))
}

// run serves until ctx ends (a signal) or the server fails, then shuts
// everything down in order: server, ingest, HTTP, store.
func run(ctx context.Context, o *options, log *slog.Logger) (err error) {
	st, err := store.Open(o.dataDir, store.Options{
		Retention:      o.retention,
		TrimInterval:   o.trimInterval,
		BlockCacheSize: o.blockCacheSize,
		Logger:         log.With("component", "store"),
	})
	if err != nil {
		return fmt.Errorf("opening the store in %s: %w", o.dataDir, err)
	}
	defer func() {
		if cerr := st.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("closing the store: %w", cerr))
		} else {
			log.Info("store closed")
		}
	}()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics, err := server.NewMetrics(reg)
	if err != nil {
		return err
	}
	srv, err := server.New(o.server, st, server.WithLogger(log.With("component", "server")), server.WithMetrics(metrics))
	if err != nil {
		return err
	}

	// Side services: metrics and ingest HTTP, Kea follower.
	var side sync.WaitGroup
	sideCtx, cancelSide := context.WithCancel(context.Background())
	defer func() {
		cancelSide()
		side.Wait()
	}()
	sideErr := make(chan error, 3)
	checks := &health{ready: srv.Ready(), storeErr: st.Err}
	if o.metricsAddr != "" {
		var backups *backupHandler
		if o.backupEndpoint {
			backups = newBackupHandler(st, log.With("component", "backup"))
			// Deferred after the side services, so it runs first: running
			// backups end before the listener shuts down and the store
			// closes.
			defer backups.close()
		}
		if err := startHTTP(sideCtx, &side, sideErr, log, "metrics", o.metricsAddr, metricsMux(reg, backups, checks)); err != nil {
			return err
		}
	}
	var handler *ingest.Handler
	if o.ingestAddr != "" {
		if handler, err = ingest.NewHandler(st, ingest.HandlerConfig{Logger: log.With("component", "ingest")}); err != nil {
			return err
		}
		// The handler serves every path, so that a wrong one gets its JSON
		// 404 body rather than a ServeMux's plain text.
		if err := startHTTP(sideCtx, &side, sideErr, log, "ingest", o.ingestAddr, handler); err != nil {
			return err
		}
	}
	var follower *ingest.Follower
	if o.keaLeaseFile != "" {
		if follower, err = startFollower(sideCtx, &side, sideErr, o, st, log); err != nil {
			return err
		}
	}
	if err := reg.Register(newIngestCollector(handler, follower)); err != nil {
		return fmt.Errorf("registering the ingest metrics: %w", err)
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	side.Add(1)
	go func() {
		defer side.Done()
		reloadOnSignal(sideCtx, hup, srv.ReloadTLS, o.server.TLS.Enabled(), log)
	}()

	runErr := make(chan error, 1)
	go func() { runErr <- srv.Run() }()

	select {
	case err := <-runErr:
		return fmt.Errorf("server: %w", err)
	case err := <-sideErr:
		checks.stopping.Store(true)
		shutdown(srv, o, log)
		<-runErr
		return err
	case <-ctx.Done():
		log.Info("shutting down", "timeout", o.shutdownTimeout)
		checks.stopping.Store(true)
		shutdown(srv, o, log)
		// A signal right at start-up can shut the server down before its
		// Run began; Run then returns ErrServerClosed, which is no failure.
		if err := <-runErr; err != nil && !errors.Is(err, server.ErrServerClosed) {
			return fmt.Errorf("server: %w", err)
		}
		return nil
	}
}

func shutdown(srv *server.Server, o *options, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Warn("shutdown did not finish in time; connections were closed", "err", err)
	}
}

// startHTTP serves h on addr until ctx ends. A failure to listen is
// returned before the server starts, so start-up fails cleanly; a later
// failure to serve is sent to errs.
func startHTTP(ctx context.Context, wg *sync.WaitGroup, errs chan<- error, log *slog.Logger, name, addr string, h http.Handler) error {
	hs := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s HTTP listener on %s: %w", name, addr, err)
	}
	ln = newLimitListener(ln, maxHTTPConns)
	log.Info("HTTP listening", "service", name, "addr", ln.Addr().String())
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs <- fmt.Errorf("%s HTTP server: %w", name, err)
		}
	}()
	go func() {
		defer wg.Done()
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	}()
	return nil
}

// metricsMux serves the metrics, the health checks, pprof and, when
// backups is not nil, the online backup.
func metricsMux(reg *prometheus.Registry, backups *backupHandler, checks *health) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+livenessPath, checks.serveLiveness)
	mux.HandleFunc("GET "+readinessPath, checks.serveReadiness)
	if backups != nil {
		mux.Handle(backupPath, backups)
	}
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// startFollower follows the Kea lease file. Bindings that the follower
// stored and Kea deleted while alqd was down are ended after a full load;
// bindings from the ingest API are never touched by that, so the flag set
// may change between restarts without losing any.
func startFollower(ctx context.Context, wg *sync.WaitGroup, errs chan<- error, o *options, st *store.Store, log *slog.Logger) (*ingest.Follower, error) {
	f, err := ingest.NewFollower(st, followerConfig(o, st, log))
	if err != nil {
		return nil, fmt.Errorf("following the Kea lease file: %w", err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := f.Run(ctx); err != nil {
			errs <- fmt.Errorf("following the Kea lease file: %w", err)
		}
	}()
	return f, nil
}

// followerConfig is the configuration of the Kea lease file follower.
func followerConfig(o *options, st *store.Store, log *slog.Logger) ingest.FollowerConfig {
	return ingest.FollowerConfig{
		Path:         o.keaLeaseFile,
		SubnetLinks:  o.keaSubnetLinks,
		ListBindings: ingest.StoreBindings(st),
		Logger:       log.With("component", "kea-follower"),
	}
}
