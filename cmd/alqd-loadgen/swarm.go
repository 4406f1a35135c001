package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/alqd/alqd/loadgen"
)

// connectionsPerSource is how many connections the automatic --sources
// puts on one local address. Linux gives one address about 28,000
// ephemeral ports by default (ip_local_port_range 32768 to 60999), so this
// leaves room for other sockets.
const connectionsPerSource = 10000

// maxSources is the largest --sources: 127.0.0.1 to 127.0.0.254.
const maxSources = 254

// swarmFlags are the flags of the swarm subcommand.
type swarmFlags struct {
	cfg         loadgen.SwarmConfig
	sources     int
	procs       int
	allowRemote bool
	quiet       bool
	raw         bool

	tls           bool
	tlsCA         string
	tlsCert       string
	tlsKey        string
	tlsServerName string

	childRange string // set by a parent process: first:count of the connections this child runs
}

func newSwarmFlags() (*flag.FlagSet, *swarmFlags) {
	f := &swarmFlags{}
	c := &f.cfg
	fs := flag.NewFlagSet("swarm", flag.ContinueOnError)
	fs.StringVar(&c.Server, "server", "127.0.0.1:15470", "TCP address of the alqd server, host:port")
	fs.IntVar(&c.Connections, "connections", loadgen.DefaultConnections, "requestor connections to open")
	fs.IntVar(&f.sources, "sources", 0, "bind the local addresses 127.0.0.1 to 127.0.0.N, one per connection in turn; 0 picks one per 10,000 connections for an IPv4 loopback server")

	fs.IntVar(&c.Filtered, "filtered", 0, "connections that ask only for the bindings of one relay (OPTION_LQ_QUERY with QUERY_BY_RELAY_ID)")
	fs.IntVar(&c.FilterRelays, "filter-relays", loadgen.DefaultRelays, "relay-ids the filtered connections cycle through; match churn --relays")

	fs.IntVar(&c.Slow, "slow", 0, "connections that read slowly")
	fs.DurationVar(&c.SlowReadDelay, "slow-delay", loadgen.DefaultSlowReadDelay, "pause of a slow connection after each read")
	fs.IntVar(&c.SlowReadBytes, "slow-read-bytes", loadgen.DefaultSlowReadBytes, "octets a slow connection reads at a time")
	fs.IntVar(&c.Stalled, "stalled", 0, "connections that never read after their query")
	fs.IntVar(&c.SlowReceiveBuffer, "slow-rcvbuf", 0, "SO_RCVBUF of slow and stalled connections in octets (0: the kernel's default)")
	fs.IntVar(&c.ReadBufferBytes, "read-buffer", loadgen.DefaultReadBufferBytes, "read buffer of the other connections in octets")

	fs.BoolVar(&c.RelayData, "relay-data", false, "ask for OPTION_LQ_RELAY_DATA, which churn --stamp relay needs")
	fs.DurationVar(&c.DialTimeout, "dial-timeout", loadgen.DefaultDialTimeout, "time limit for the TCP connect and STARTTLS of one connection")
	fs.Float64Var(&c.DialRate, "dial-rate", loadgen.DefaultDialRate, "connections opened per second, over all processes")

	fs.DurationVar(&c.Duration, "duration", loadgen.DefaultSwarmDuration, "stop after this long")
	fs.Int64Var(&c.Count, "count", loadgen.DefaultSwarmCount, "stop after this many updates received, over all processes")
	fs.IntVar(&f.procs, "procs", 1, "run the swarm as this many child processes, each with its share of the connections, and merge their summaries; use it above about 19,000 connections, since a process may hold at most RLIMIT_NOFILE descriptors")

	fs.BoolVar(&f.allowRemote, "allow-remote", false, "allow a server address that is not on loopback")
	fs.BoolVar(&f.quiet, "quiet", false, "print no progress line")
	fs.BoolVar(&f.raw, "raw", false, "add the latency histogram and every connection's result to the summary")

	fs.BoolVar(&f.tls, "tls", false, "send STARTTLS and run TLS on every connection (RFC 7653 section 8.2)")
	fs.StringVar(&f.tlsCA, "tls-ca", "", "PEM file of the CA certificates that verify the server (default: the system's)")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "PEM file of the requestor's certificate, for servers that require one")
	fs.StringVar(&f.tlsKey, "tls-key", "", "PEM file of the key of --tls-cert")
	fs.StringVar(&f.tlsServerName, "tls-server-name", "", "name to verify in the server's certificate (default: the host of --server)")

	fs.StringVar(&f.childRange, "child-range", "", "internal: the first:count connections of a child process")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: alqd-loadgen swarm [flags]\n\n"+
			"Opens --connections Active Leasequery connections to --server, measures them and prints a JSON summary.\n\n")
		fs.PrintDefaults()
	}
	return fs, f
}

// config checks the flags and completes f.cfg.
func (f *swarmFlags) config(ctx context.Context) error {
	c := &f.cfg
	host, _, err := net.SplitHostPort(c.Server)
	if err != nil {
		return fmt.Errorf("--server %q is not host:port", c.Server)
	}
	if err := loadgen.RequireLoopback(ctx, c.Server, f.allowRemote); err != nil {
		return err
	}
	switch {
	case c.Connections < 1:
		return fmt.Errorf("--connections %d: want at least 1", c.Connections)
	case f.procs < 1 || f.procs > c.Connections:
		return fmt.Errorf("--procs %d is outside 1 to --connections (%d)", f.procs, c.Connections)
	case c.Duration <= 0 || c.Count <= 0:
		return fmt.Errorf("--duration %v and --count %d must be positive", c.Duration, c.Count)
	case f.sources < 0 || f.sources > maxSources:
		return fmt.Errorf("--sources %d is outside 0 to %d", f.sources, maxSources)
	}
	c.TotalConnections = c.Connections

	// Source addresses exist only on IPv4 loopback.
	server, _ := netip.ParseAddr(host)
	ipv4Loopback := server.Is4() && server.IsLoopback()
	switch {
	case f.sources > 0 && !ipv4Loopback:
		return fmt.Errorf("--sources binds 127.0.0.x, which needs an IPv4 loopback --server, not %s", host)
	case f.sources == 0 && ipv4Loopback:
		f.sources = min((c.Connections+connectionsPerSource-1)/connectionsPerSource, maxSources)
	}
	for i := range f.sources {
		c.Sources = append(c.Sources, netip.AddrFrom4([4]byte{127, 0, 0, byte(i + 1)}))
	}

	if f.tls || f.tlsCA != "" || f.tlsCert != "" {
		if c.TLS, err = f.tlsConfig(host); err != nil {
			return err
		}
	}
	if f.childRange != "" {
		return f.applyChildRange()
	}
	return c.Validate()
}

// tlsConfig builds the client TLS configuration from the --tls flags.
func (f *swarmFlags) tlsConfig(host string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.tlsServerName}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	if f.tlsCA != "" {
		pem, err := os.ReadFile(f.tlsCA)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca %s contains no PEM certificate", f.tlsCA)
		}
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	if f.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
		if err != nil {
			return nil, fmt.Errorf("loading --tls-cert and --tls-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// applyChildRange narrows the configuration to the connections of one
// child process.
func (f *swarmFlags) applyChildRange() error {
	first, count, ok := strings.Cut(f.childRange, ":")
	a, errA := strconv.Atoi(first)
	n, errN := strconv.Atoi(count)
	if !ok || errA != nil || errN != nil {
		return fmt.Errorf("--child-range %q is not first:count", f.childRange)
	}
	f.cfg.FirstIndex, f.cfg.Connections = a, n
	f.cfg.IncludeRaw = true
	return f.cfg.Validate()
}

func runSwarm(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, f := newSwarmFlags()
	if ok, code := parseFlags(fs, args, stderr); !ok {
		return code
	}
	if err := f.config(ctx); err != nil {
		return usageError(stderr, "swarm", err)
	}
	if f.procs > 1 && f.childRange == "" {
		return runParent(ctx, fs, f, stdout, stderr)
	}

	child := f.childRange != ""
	switch {
	case child:
		// The parent reads these lines and prints the combined progress.
		f.cfg.Progress = func(p loadgen.SwarmProgress) {
			line, _ := json.Marshal(p)
			fmt.Fprintf(stderr, "%s%s\n", childProgressPrefix, line)
		}
	case !f.quiet:
		f.cfg.Progress = func(p loadgen.SwarmProgress) {
			fmt.Fprintln(stderr, swarmProgressLine(p, f.cfg.Connections))
		}
	}
	f.cfg.IncludeRaw = f.cfg.IncludeRaw || f.raw
	sum, err := loadgen.RunSwarm(ctx, f.cfg)
	if err != nil {
		return usageError(stderr, "swarm", err)
	}
	if err := writeJSON(stdout, sum); err != nil {
		fmt.Fprintf(stderr, "alqd-loadgen swarm: writing the summary failed: %v\n", err)
		return exitFailed
	}
	if sum.Failed() {
		if !child && sum.FirstError != "" {
			fmt.Fprintf(stderr, "alqd-loadgen swarm: %d errors, the first: %s\n", sum.Errors, sum.FirstError)
		}
		return exitFailed
	}
	return exitOK
}

func swarmProgressLine(p loadgen.SwarmProgress, connections int) string {
	seconds := max(p.Elapsed.Seconds(), 1e-3)
	line := fmt.Sprintf("swarm %4.0fs: %d/%d connected, %d messages (%.0f/s), %d updates, %s (%s/s)",
		seconds, p.Established, connections, p.Messages, float64(p.Messages)/seconds, p.Updates,
		formatBytes(float64(p.Bytes)), formatBytes(float64(p.Bytes)/seconds))
	if p.Latency.Count > 0 {
		line += fmt.Sprintf(", latency p50 %s p99 %s", formatMicros(p.Latency.P50), formatMicros(p.Latency.P99))
	}
	return line + fmt.Sprintf(", %d decode failures, %d errors", p.DecodeFailures, p.Errors)
}
