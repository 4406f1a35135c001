package keatest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
	"time"
)

// Env is a complete Kea test setup: a Topology, Kea in its server namespace
// and a RelayShim in its client namespace. Everything is torn down in
// t.Cleanup.
type Env struct {
	Topology *Topology
	Kea      *Kea
	Shim     *RelayShim
}

// Start calls Require, then builds a Topology, starts Kea with cfg and starts
// the relay shim.
func Start(t testing.TB, cfg Config) *Env {
	t.Helper()
	Require(t)

	topo := NewTopology(t)
	kea := StartKea(t, topo, cfg)
	shim := StartRelayShim(t, topo)
	return &Env{Topology: topo, Kea: kea, Shim: shim}
}

// Run runs perfdhcp with load in the client namespace; see RunPerfdhcp.
func (e *Env) Run(ctx context.Context, load Load) (PerfdhcpResult, error) {
	return RunPerfdhcp(ctx, e.Topology, load)
}

// RunAll runs the loads concurrently and waits for all of them. The results
// are in the order of loads; the error joins the errors of all runs.
func (e *Env) RunAll(ctx context.Context, loads ...Load) ([]PerfdhcpResult, error) {
	results := make([]PerfdhcpResult, len(loads))
	errs := make([]error, len(loads))
	var wg sync.WaitGroup
	for i, load := range loads {
		wg.Go(func() {
			results[i], errs[i] = e.Run(ctx, load)
		})
	}
	wg.Wait()
	return results, errors.Join(errs...)
}

// RowRate is the number of rows Kea appended to its lease file during a
// measurement, and the time over which it wrote them.
type RowRate struct {
	Rows    int64
	Elapsed time.Duration // from the first to the last observed growth of the file
}

// PerSecond returns rows per second, or 0 if nothing was written.
func (r RowRate) PerSecond() float64 {
	if r.Rows == 0 || r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Rows) / r.Elapsed.Seconds()
}

// rateSamplePeriod is how often MeasureRowRate checks the lease file size.
// Checking the size, not counting lines, keeps the measurement from
// competing with Kea for CPU.
const rateSamplePeriod = 50 * time.Millisecond

// MeasureRowRate runs the loads concurrently and measures how fast Kea
// appends rows to its live lease file meanwhile. Every row is one lease
// change (a new, extended, released, expired or flushed lease). Kea must run
// with LFC off (Config.LFCInterval 0), because LFC replaces the live file.
// Rows from the reclamation of expired leases are counted too, so keep the
// load's Duration below Config.ValidLifetime to measure client traffic only.
//
// The elapsed time runs from the first to the last change of the file size,
// sampled every 50 ms, so it excludes perfdhcp's start-up and its wait for
// late replies.
func MeasureRowRate(ctx context.Context, env *Env, loads ...Load) (RowRate, error) {
	if env.Kea.Config().LFCInterval != 0 {
		return RowRate{}, fmt.Errorf("keatest: MeasureRowRate needs LFC off, but Kea runs with lfc-interval %v", env.Kea.Config().LFCInterval)
	}
	path := env.Kea.LeaseFile()
	before, err := countLines(path)
	if err != nil {
		return RowRate{}, err
	}
	startSize, err := fileSize(path)
	if err != nil {
		return RowRate{}, err
	}

	// Sample the file size while the loads run.
	done := make(chan struct{})
	var first, last time.Time
	sampled := make(chan error, 1)
	go func() {
		size := startSize
		ticker := time.NewTicker(rateSamplePeriod)
		defer ticker.Stop()
		for {
			select {
			case <-done:
				sampled <- nil
				return
			case now := <-ticker.C:
				s, err := fileSize(path)
				if err != nil {
					sampled <- err
					return
				}
				if s != size {
					if first.IsZero() {
						first = now
					}
					last, size = now, s
				}
			}
		}
	}()
	_, runErr := env.RunAll(ctx, loads...)
	close(done)
	if err := <-sampled; err != nil {
		return RowRate{}, err
	}
	if runErr != nil {
		return RowRate{}, runErr
	}

	after, err := countLines(path)
	if err != nil {
		return RowRate{}, err
	}
	rate := RowRate{Rows: after - before}
	if !first.IsZero() {
		// Each observed growth happened up to one sample period before it
		// was seen, so the span is exact to within one period.
		rate.Elapsed = max(last.Sub(first), rateSamplePeriod)
	}
	return rate, nil
}

// countLines returns the number of complete lines in a file.
func countLines(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()

	var lines int64
	buf := make([]byte, 1<<16)
	for {
		n, err := f.Read(buf)
		lines += int64(bytes.Count(buf[:n], []byte{'\n'}))
		if errors.Is(err, io.EOF) {
			return lines, nil
		}
		if err != nil {
			return 0, err
		}
	}
}

func fileSize(path string) (int64, error) {
	info, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return info.Size(), nil
}
