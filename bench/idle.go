package bench

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// IdleResult is the server memory per idle connection of one contender.
type IdleResult struct {
	Contender    string
	Mode         string // state of an idle connection: "subscribed" or "connected, no query"
	NotAvailable string
	Opened       int // connections the clients opened
	Held         int // connections the server held at the end
	// ClientHeld and ServerHeld are the two counts Held is the smaller of:
	// subscribed connections the clients saw open, and the server's own
	// count (-1 when it has none).
	ClientHeld, ServerHeld int
	// Refused counts connections the server closed or rejected before
	// accepting them, such as those over its connection limit.
	Refused     int
	RSSPerConn  float64
	HeapPerConn float64 // Go heap objects plus goroutine stacks
	RSSBefore   int64
	RSSAfter    int64
}

// idleScenario opens as many connections as one server process can hold
// and measures the server's memory before and after.
func (r *runner) idleScenario(ctx context.Context) error {
	for _, c := range r.contenders() {
		res, err := r.runIdle(ctx, c)
		r.res.Idle = append(r.res.Idle, res)
		if res.NotAvailable != "" {
			fmt.Fprintf(r.log, "%-10s idle not available: %s\n", c.name, res.NotAvailable)
		} else {
			fmt.Fprintf(r.log, "%-10s idle (%s) opened=%d held=%d (clients %d, server %d) refused=%d rss/conn=%.0fB heap+stack/conn=%.0fB\n",
				c.name, res.Mode, res.Opened, res.Held, res.ClientHeld, res.ServerHeld, res.Refused, res.RSSPerConn, res.HeapPerConn)
		}
		if err := r.cellFailed(ctx, err, "idle %s", c.name); err != nil {
			return err
		}
	}
	return nil
}

func (r *runner) runIdle(ctx context.Context, c contender) (res IdleResult, err error) {
	res = IdleResult{Contender: c.name, Mode: "subscribed", Opened: r.scale.idleConns}
	noQuery := false
	if err := c.available(); err != nil {
		if c.name != contenderAlqd {
			res.NotAvailable = notAvailableReason(err)
			return res, nil
		}
		// Without Active Leasequery an alqd connection can still idle; it
		// is measured as such and labelled.
		noQuery, res.Mode = true, "connected, no query"
	}

	srv, err := startChild("server")
	if err != nil {
		return res, err
	}
	f := &fleet{server: srv, conns: r.scale.idleConns}
	defer func() {
		if cerr := f.close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	var st startResult
	start := startArgs{
		Contender: c.name, Window: 64, QueueLen: 64, RingSize: 1 << 10, MaxPending: 64 << 20,
		MaxConns: r.scale.idleConns + 100, FrameSize: minFrameSize, NoQuery: noQuery,
	}
	if err := srv.call(ctx, "start", start, &st); err != nil {
		if errors.Is(err, errNotAvailable) {
			res.NotAvailable = notAvailableReason(err)
			return res, nil
		}
		return res, err
	}
	before, err := f.status(ctx, true)
	if err != nil {
		return res, err
	}

	kind := st.Kind
	if kind == kindNATS {
		// Idle NATS subscribers that never read cost the server what an
		// idle nats.go client would, without 20,000 client goroutines.
		kind = kindNATSRaw
	}
	began := time.Now()
	procs := (r.scale.idleConns + r.scale.connsPerClient - 1) / r.scale.connsPerClient
	for p := range procs {
		cl, err := startChild("client")
		if err != nil {
			return res, err
		}
		f.clients = append(f.clients, cl)
		first := r.scale.idleConns * p / procs
		last := r.scale.idleConns * (p + 1) / procs
		var cr connectResult
		err = cl.call(ctx, "connect", connectArgs{
			Kind: kind, Addr: st.Addr, Conns: last - first, FirstKey: uint32(first), NoQuery: noQuery,
			Source: sourceAddr(p, r.scale.idleConns), DecodeEvery: 1, MaxConnecting: 256,
		}, &cr)
		if err != nil {
			return res, err
		}
	}
	connected := time.Since(began)
	held, err := f.waitSubscribed(ctx, r.scale.idleConns)
	if err != nil {
		return res, err
	}
	fmt.Fprintf(r.log, "%-10s idle: %d connections made in %v, settled in %v\n", c.name, r.scale.idleConns,
		connected.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
	cs, err := f.clientStats(ctx, false)
	if err != nil {
		return res, err
	}
	res.Refused = cs.Rejected + cs.ClosedEarly
	// Let the server finish what accepting left behind (deferred frees,
	// connections it closes over a limit) before the second sample.
	time.Sleep(time.Second)
	after, err := f.status(ctx, true)
	if err != nil {
		return res, err
	}
	res.ClientHeld, res.ServerHeld = held, int(after.Subscribed)
	if after.Subscribed >= 0 {
		held = min(held, int(after.Subscribed))
	}
	res.Held = held
	res.RSSBefore, res.RSSAfter = before.Mem.RSS, after.Mem.RSS
	if held > 0 {
		res.RSSPerConn = float64(after.Mem.RSS-before.Mem.RSS) / float64(held)
		res.HeapPerConn = float64(after.Mem.Heap+after.Mem.Stacks-before.Mem.Heap-before.Mem.Stacks) / float64(held)
	}
	return res, nil
}
