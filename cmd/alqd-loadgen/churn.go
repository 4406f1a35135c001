package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"time"

	"github.com/alqd/alqd/ingest"
	"github.com/alqd/alqd/loadgen"
)

// churnFlags are the flags of the churn subcommand.
type churnFlags struct {
	sink        string
	ingestURL   string
	keaFile     string
	keaRotate   time.Duration
	allowRemote bool
	quiet       bool
	pdFraction  float64
	stamp       string

	run   loadgen.RunConfig
	churn loadgen.ChurnConfig
	lanes loadgen.LaneConfig
}

// uint32Value is a flag.Value for a uint32.
type uint32Value struct{ p *uint32 }

func (v uint32Value) String() string {
	if v.p == nil {
		return "0"
	}
	return strconv.FormatUint(uint64(*v.p), 10)
}

func (v uint32Value) Set(s string) error {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return errors.New("not a number from 0 to 4294967295")
	}
	*v.p = uint32(n)
	return nil
}

func newChurnFlags() (*flag.FlagSet, *churnFlags) {
	f := &churnFlags{}
	fs := flag.NewFlagSet("churn", flag.ContinueOnError)
	fs.StringVar(&f.sink, "sink", "ingest", "where changes go: ingest (alqd's ingest API), kea (a Kea 2.2 memfile lease file) or discard")
	fs.StringVar(&f.ingestURL, "ingest-url", "http://127.0.0.1:8547", "base URL of alqd's ingest API, for --sink ingest")
	fs.StringVar(&f.keaFile, "kea-file", "", "lease file to append to, for --sink kea; created with a header when missing")
	fs.DurationVar(&f.keaRotate, "kea-rotate", 0, "rotate and compact the lease file this often, as Kea's lfc-interval does (0: never)")
	fs.BoolVar(&f.allowRemote, "allow-remote", false, "allow an ingest URL that is not on loopback")
	fs.BoolVar(&f.quiet, "quiet", false, "print no progress line")

	fs.Float64Var(&f.run.Rate, "rate", loadgen.DefaultRate, "target binding changes per second")
	fs.DurationVar(&f.run.Duration, "duration", loadgen.DefaultDuration, "stop after this long")
	fs.Int64Var(&f.run.Count, "count", loadgen.DefaultCount, "stop after this many changes")
	fs.DurationVar(&f.run.MaxLag, "max-lag", loadgen.DefaultMaxLag, "how far the run may fall behind its schedule before it drops changes")

	fs.Uint64Var(&f.churn.Seed, "seed", 1, "seed of the change sequence: the same seed and flags give the same changes")
	fs.IntVar(&f.churn.Clients, "clients", loadgen.DefaultClients, "client population")
	fs.IntVar(&f.churn.Links, "links", loadgen.DefaultLinks, "links the clients are spread over; link j is Kea subnet j+1")
	fs.IntVar(&f.churn.Relays, "relays", loadgen.DefaultRelays, "relay agents; each adds relay-id, remote-id and interface-id")
	fs.BoolVar(&f.churn.Direct, "direct", false, "clients talk to the server without relay agents")
	fs.Float64Var(&f.pdFraction, "pd-fraction", loadgen.DefaultPDFraction, "fraction of clients that also hold an IA_PD prefix, 0 to 1")
	fs.IntVar(&f.churn.RenewWeight, "renew-weight", loadgen.DefaultRenewWeight, "odds of a renewal for a client with bindings")
	fs.IntVar(&f.churn.ReleaseWeight, "release-weight", loadgen.DefaultReleaseWeight, "odds of a release for a client with bindings")
	fs.IntVar(&f.churn.ExpireWeight, "expire-weight", loadgen.DefaultExpireWeight, "odds of an expiry for a client with bindings")
	f.churn.PreferredLifetime, f.churn.ValidLifetime = loadgen.DefaultPreferredLifetime, loadgen.DefaultValidLifetime
	fs.Var(uint32Value{&f.churn.PreferredLifetime}, "preferred-lifetime", "preferred lifetime granted, in seconds")
	fs.Var(uint32Value{&f.churn.ValidLifetime}, "valid-lifetime", "valid lifetime granted, in seconds")
	fs.IntVar(&f.churn.PrefixLength, "prefix-length", loadgen.DefaultPrefixLength, "length of delegated prefixes, 36 to 64")
	fs.StringVar(&f.stamp, "stamp", "duid", "where each change carries its send time: duid (the client DUID, which then changes with every change), relay (a vendor option in the relay message; swarm needs --relay-data) or none")

	fs.IntVar(&f.lanes.Lanes, "inflight", loadgen.DefaultLanes, "ingest requests in flight at most")
	fs.IntVar(&f.lanes.MaxBatch, "batch", loadgen.DefaultMaxBatch, "changes per ingest request at most")

	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: alqd-loadgen churn [flags]\n\n"+
			"Simulates DHCPv6 binding churn at --rate changes per second and prints a JSON summary.\n\n")
		fs.PrintDefaults()
	}
	return fs, f
}

// config checks the flags and fills in the configurations they describe.
func (f *churnFlags) config(ctx context.Context) error {
	switch {
	case f.run.Rate <= 0:
		return fmt.Errorf("--rate %v: want a positive number of changes per second", f.run.Rate)
	case f.run.Duration <= 0 || f.run.Count <= 0:
		return fmt.Errorf("--duration %v and --count %d must be positive", f.run.Duration, f.run.Count)
	case f.pdFraction < 0 || f.pdFraction > 1:
		return fmt.Errorf("--pd-fraction %v is outside 0 to 1", f.pdFraction)
	}
	f.churn.PDFraction = f.pdFraction
	if f.pdFraction == 0 {
		f.churn.PDFraction = -1 // ChurnConfig reads 0 as the default
	}
	stamp, err := loadgen.ParseStampMode(f.stamp)
	if err != nil {
		return err
	}
	f.churn.Stamp = stamp
	if err := f.churn.Validate(); err != nil {
		return err
	}

	switch f.sink {
	case "ingest":
		u, err := url.Parse(f.ingestURL)
		if err != nil || u.Host == "" {
			return fmt.Errorf("--ingest-url %q is not a URL such as http://127.0.0.1:8547", f.ingestURL)
		}
		return loadgen.RequireLoopback(ctx, u.Host, f.allowRemote)
	case "kea":
		if f.keaFile == "" {
			return errors.New("--sink kea needs --kea-file")
		}
	case "discard":
	default:
		return fmt.Errorf("--sink %q is not one of ingest, kea, discard", f.sink)
	}
	return nil
}

// newSink opens the sink the flags select.
func (f *churnFlags) newSink(ctx context.Context) (loadgen.Sink, error) {
	switch f.sink {
	case "ingest":
		client, err := ingest.NewClient(ingest.ClientConfig{URL: f.ingestURL})
		if err != nil {
			return nil, err
		}
		return loadgen.NewIngestSink(ctx, client, f.lanes)
	case "kea":
		return loadgen.NewKeaWriter(loadgen.KeaConfig{Path: f.keaFile, RotateInterval: f.keaRotate})
	}
	return loadgen.DiscardSink{}, nil
}

func runChurn(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, f := newChurnFlags()
	if ok, code := parseFlags(fs, args, stderr); !ok {
		return code
	}
	if err := f.config(ctx); err != nil {
		return usageError(stderr, "churn", err)
	}
	churn, err := loadgen.NewChurn(f.churn)
	if err != nil {
		return usageError(stderr, "churn", err)
	}
	sink, err := f.newSink(ctx)
	if err != nil {
		return usageError(stderr, "churn", err)
	}

	if !f.quiet {
		f.run.Progress = func(p loadgen.ChurnProgress) {
			fmt.Fprintln(stderr, churnProgressLine(p, f.run.Rate))
		}
	}
	sum, runErr := loadgen.RunChurn(ctx, churn, sink, f.run)
	if sum == nil {
		return usageError(stderr, "churn", runErr)
	}
	sum.Sink = f.sink
	if runErr != nil {
		fmt.Fprintf(stderr, "alqd-loadgen churn: the sink stopped: %v\n", runErr)
	}
	if err := writeJSON(stdout, sum); err != nil {
		fmt.Fprintf(stderr, "alqd-loadgen churn: writing the summary failed: %v\n", err)
		return exitFailed
	}
	if sum.Failed() {
		return exitFailed
	}
	return exitOK
}

func churnProgressLine(p loadgen.ChurnProgress, target float64) string {
	seconds := p.Elapsed.Seconds()
	line := fmt.Sprintf("churn %4.0fs: %d changes (%.0f/s, target %.0f/s)", seconds, p.Changes, float64(p.Changes)/seconds, target)
	if p.Sink.Requests > 0 || p.Sink.Errors > 0 {
		line += fmt.Sprintf(", %d requests, %d errors", p.Sink.Requests, p.Sink.Errors)
	}
	if p.Sink.Latency.Count > 0 {
		line += ", request p99 " + formatMicros(p.Sink.Latency.P99)
	}
	if p.Sink.Rows > 0 {
		line += fmt.Sprintf(", %d rows, %d rotations", p.Sink.Rows, p.Sink.Rotations)
	}
	return line
}
