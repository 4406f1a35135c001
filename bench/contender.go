package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Contender names, as used in flags and results.
const (
	contenderAlqd      = "alqd"
	contenderRaw       = "raw"
	contenderNATS      = "nats"
	contenderGoroutine = "goroutine"
)

// contender is one fanout implementation the harness compares. Adding one
// means a server side in startFanoutServer (children.go) and an entry here;
// the clients and every scenario are shared.
type contender struct {
	name  string
	label string // name in tables and plots
	// available returns nil, or an error wrapping errNotAvailable whose
	// text is the reason, printed in place of its numbers.
	available func() error
	// separateClients marks contenders whose subscribers are not the
	// shared epoll client, so that client CPU is not comparable.
	separateClients bool
}

// contenders lists every contender in the order they run: the raw limit
// first, because the offered rates of the later runs derive from it.
var contenders = []contender{
	{name: contenderRaw, label: "raw limit (epoll writer)", available: func() error { return nil }},
	{name: contenderAlqd, label: "alqd", available: alqdActive},
	{name: contenderNATS, label: "nats-server", available: func() error { return nil }, separateClients: true},
	{name: contenderGoroutine, label: "goroutine per connection", available: func() error { return nil }},
}

// contenderLabel returns the label of a contender name.
func contenderLabel(name string) string {
	for _, c := range contenders {
		if c.name == name {
			return c.label
		}
	}
	return name
}

// fleet is one server child and the client children connected to it for
// one measurement.
type fleet struct {
	server  *child
	clients []*child
	kind    string
	conns   int
}

// fleetArgs describes a fleet to start.
type fleetArgs struct {
	start      startArgs
	conns      int
	filtered   bool
	stallEvery int
	perClient  int // connections per client child
	minClients int
	decode     int
}

// startFleet starts the server child, then the client children, and waits
// until every connection is subscribed or no more subscribe. It returns the
// fleet even when some connections failed; the caller reads the counts.
func startFleet(ctx context.Context, a fleetArgs) (*fleet, connectResult, error) {
	var res connectResult
	srv, err := startChild("server")
	if err != nil {
		return nil, res, err
	}
	f := &fleet{server: srv, conns: a.conns}
	var st startResult
	if err := srv.call(ctx, "start", a.start, &st); err != nil {
		f.close()
		return nil, res, err
	}
	f.kind = st.Kind
	if a.start.NoQuery && st.Kind == kindNATS {
		f.kind = kindNATSRaw
	}

	procs := max(a.minClients, (a.conns+a.perClient-1)/a.perClient)
	procs = min(procs, a.conns)
	for p := range procs {
		c, err := startChild("client")
		if err != nil {
			f.close()
			return nil, res, err
		}
		f.clients = append(f.clients, c)
		first := a.conns * p / procs
		last := a.conns * (p + 1) / procs
		args := connectArgs{
			Kind:          f.kind,
			Addr:          st.Addr,
			Conns:         last - first,
			FirstKey:      uint32(first),
			Filtered:      a.filtered,
			NoQuery:       a.start.NoQuery,
			StallEvery:    a.stallEvery,
			Source:        sourceAddr(p, a.conns),
			DecodeEvery:   a.decode,
			MaxConnecting: 256,
		}
		var r connectResult
		if err := c.call(ctx, "connect", args, &r); err != nil {
			f.close()
			return nil, res, err
		}
		res.Connected += r.Connected
		res.Failed += r.Failed
		if res.FirstError == "" {
			res.FirstError = r.FirstError
		}
	}
	_, err = f.waitSubscribed(ctx, res.Connected)
	return f, res, err
}

// sourceAddr returns the source address of client child p: the default
// below about 28,000 connections to one server, else 127.0.0.2 and up, so
// that no source address runs out of ephemeral ports (32768-60999 by
// default on Linux).
func sourceAddr(p, total int) string {
	if total <= 28000 {
		return ""
	}
	return fmt.Sprintf("127.0.0.%d", 2+p%250)
}

// waitSubscribed polls the clients until want connections are subscribed
// or refused, or until that count has not grown for 5 s, and returns the
// subscribed connections still open.
func (f *fleet) waitSubscribed(ctx context.Context, want int) (int, error) {
	best, since := -1, time.Now()
	for {
		s, err := f.clientStats(ctx, false)
		if err != nil {
			return 0, err
		}
		held := s.Subscribed - s.Healthy.Closed - s.Stalled.Closed
		settled := s.Subscribed + s.Rejected + s.ClosedEarly
		if settled >= want {
			return held, nil
		}
		if settled > best {
			best, since = settled, time.Now()
		} else if time.Since(since) > 5*time.Second {
			return held, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// clientStats merges the stats of every client child; with reset they
// start over. The merged latency histogram is in Latency.
func (f *fleet) clientStats(ctx context.Context, reset bool) (clientStats, error) {
	var total clientStats
	hist := newLatencyHistogram()
	for _, c := range f.clients {
		var s clientStats
		if err := c.call(ctx, "stats", reset, &s); err != nil {
			return total, err
		}
		total.merge(&s)
		if s.Latency != nil {
			hist.Merge(hdrhistogram.Import(s.Latency))
		}
	}
	total.Latency = hist.Export()
	return total, nil
}

// cpu returns the CPU time used so far by the server child and, summed, by
// the client children.
func (f *fleet) cpu() (server, clients time.Duration) {
	server, _ = procCPU(f.server.pid())
	for _, c := range f.clients {
		d, _ := procCPU(c.pid())
		clients += d
	}
	return server, clients
}

// status returns the server child's status.
func (f *fleet) status(ctx context.Context, settle bool) (serverStatus, error) {
	var st serverStatus
	err := f.server.call(ctx, "status", settle, &st)
	return st, err
}

// close ends the clients, then the server, and returns the first failure
// of a child (a crash).
func (f *fleet) close() error {
	var first error
	for _, c := range f.clients {
		if err := c.close(20 * time.Second); err != nil && first == nil {
			first = err
		}
	}
	if f.server != nil {
		if err := f.server.close(30 * time.Second); err != nil && first == nil {
			first = err
		}
	}
	return first
}
