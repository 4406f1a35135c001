package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/alqd/alqd/requestor"
)

// runQuery runs "alq query": one UDP Leasequery.
func runQuery(ctx context.Context, fs *flag.FlagSet, args []string, e env) (string, error) {
	var common commonFlags
	var qf queryFlags
	common.register(fs)
	qf.register(fs, false)
	lqTimeout := fs.Duration("lq-timeout", requestor.DefaultLQTimeout, "first retransmission timeout (LQ_TIMEOUT)")
	lqMaxRT := fs.Duration("lq-max-rt", requestor.DefaultLQMaxRT, "largest retransmission timeout (LQ_MAX_RT)")
	lqMaxRC := fs.Int("lq-max-rc", requestor.DefaultLQMaxRC, "transmissions in all before giving up (LQ_MAX_RC)")
	setUsage(fs, "alq query --server HOST[:PORT] (--address ADDR | --client-id HEX) [--link ADDR] [flags]",
		"Sends one LEASEQUERY over UDP and prints the bindings of the answer. A client\n"+
			"found on several links is queried again once per link. relay-id, link-address\n"+
			"and remote-id queries exist over TCP only: use alq bulk.")
	if err := parse(fs, args); err != nil {
		return "", err
	}
	cfg, err := common.config()
	if err != nil {
		return common.server, err
	}
	cfg.LQTimeout, cfg.LQMaxRT, cfg.LQMaxRC = *lqTimeout, *lqMaxRT, *lqMaxRC
	q, err := qf.query()
	if err != nil {
		return common.server, err
	}
	if q.Type.BulkOnly() {
		return common.server, usagef("--by %s is defined for Bulk Leasequery over TCP only: use alq bulk", queryTypeName(q.Type))
	}

	p := newPrinter(e.stdout, common.json, false)
	bindings := 0
	err = requestor.QueryUDP(ctx, cfg, q, func(ev requestor.Event) error {
		if _, ok := ev.(requestor.Binding); ok {
			bindings++
		}
		return p.event(ev)
	})
	if cerr := p.close(); err == nil {
		err = cerr
	}
	if err == nil && !common.json {
		fmt.Fprintf(e.stderr, "%s from %s\n", bindingCount(bindings), cfg.Server)
	}
	return common.server, err
}

// runBulk runs "alq bulk": one Bulk Leasequery over TCP.
func runBulk(ctx context.Context, fs *flag.FlagSet, args []string, e env) (string, error) {
	var common commonFlags
	var qf queryFlags
	common.register(fs)
	common.registerTCP(fs, false)
	qf.register(fs, true)
	setUsage(fs, "alq bulk --server HOST[:PORT] --by TYPE <value flag> [--link ADDR] [--start-time T] [--end-time T] [flags]",
		"Sends one Bulk Leasequery over TCP and prints every binding of the answer.\n"+
			"With --start-time and --end-time only bindings changed in that interval come\n"+
			"back (RFC 7653 section 6.3). A progress line is drawn on stderr when it is a\n"+
			"terminal.")
	if err := parse(fs, args); err != nil {
		return "", err
	}
	cfg, err := common.config()
	if err != nil {
		return common.server, err
	}
	q, err := qf.query()
	if err != nil {
		return common.server, err
	}

	conn, err := requestor.Dial(ctx, cfg)
	if err != nil {
		return common.server, err
	}
	defer conn.Close()
	p := newPrinter(e.stdout, common.json, false)
	bar := startProgress(e.stderr, e.terminal && !common.json)
	start, bindings := time.Now(), 0
	err = conn.Bulk(ctx, q, func(ev requestor.Event) error {
		if _, ok := ev.(requestor.Binding); ok {
			bindings++
			bar.add()
		}
		return p.event(ev)
	})
	bar.finish()
	if cerr := p.close(); err == nil {
		err = cerr
	}
	if err == nil && !common.json {
		fmt.Fprintf(e.stderr, "%s from %s in %.1f s\n", bindingCount(bindings), cfg.Server, time.Since(start).Seconds())
	}
	return common.server, err
}

// watchFlags are the flags of watch and mirror.
type watchFlags struct {
	bulkLinks   stringList
	maxAttempts int
}

func (w *watchFlags) register(fs *flag.FlagSet) {
	fs.Var(&w.bulkLinks, "bulk-link", "link-`address` to fetch with a Bulk Leasequery after DataMissing (and to fill an empty mirror); repeatable")
	fs.IntVar(&w.maxAttempts, "max-attempts", 0, "stop after this many connections (0: reconnect for ever)")
}

// filter returns the --by filter of watch and mirror, or nil.
func filterOf(qf *queryFlags) (*requestor.Query, error) {
	if !qf.set() {
		return nil, nil
	}
	q, err := qf.query()
	if err != nil {
		return nil, err
	}
	return &q, nil
}

// runWatch runs "alq watch": Active Leasequery until interrupted.
func runWatch(ctx context.Context, fs *flag.FlagSet, args []string, e env) (string, error) {
	var common commonFlags
	var qf queryFlags
	var wf watchFlags
	common.register(fs)
	common.registerTCP(fs, true)
	qf.register(fs, true)
	wf.register(fs)
	statePath := fs.String("state", "", "`file` that keeps the resume point across runs: read at start, rewritten as it moves")
	setUsage(fs, "alq watch --server HOST[:PORT] [--by TYPE <value flag>] [--start-time T | --state FILE] [flags]",
		"Sends an ACTIVELEASEQUERY and prints binding changes as they happen, one line\n"+
			"(or one JSON object) per event, reconnecting when the connection ends. With a\n"+
			"start time (--start-time, or the one kept in --state) the server first sends\n"+
			"what changed since then. Without --by it follows every binding. Interrupt to stop.")
	if err := parse(fs, args); err != nil {
		return "", err
	}
	if qf.endTime != "" {
		return common.server, usagef("--end-time is for alq bulk; an active query never carries one (RFC 7653 section 6.3.3)")
	}
	cfg, err := common.config()
	if err != nil {
		return common.server, err
	}
	startFlag := qf.startTime
	qf.startTime = ""
	filter, err := filterOf(&qf)
	if err != nil {
		return common.server, err
	}
	recovery, err := linkQueries(wf.bulkLinks, qf.relayData)
	if err != nil {
		return common.server, err
	}

	req := requestor.WatchRequest{Filter: filter, RelayData: qf.relayData, Recovery: recovery, MaxAttempts: wf.maxAttempts}
	var state *stateFile
	if *statePath != "" {
		if state, err = loadState(*statePath, cfg.Server); err != nil {
			return common.server, err
		}
		req.Resume = state.checkpoint()
	}
	if startFlag != "" {
		v, err := parseTime("--start-time", startFlag)
		if err != nil {
			return common.server, err
		}
		req.Resume = requestor.Checkpoint{StartTime: v, Valid: true}
	}
	w, err := requestor.NewWatcher(cfg, req)
	if err != nil {
		return common.server, err
	}

	p := newPrinter(e.stdout, common.json, true)
	err = w.Run(ctx, func(ev requestor.Event) error {
		if err := p.event(ev); err != nil {
			return err
		}
		if state != nil {
			return state.save(w.Checkpoint())
		}
		return nil
	})
	p.close()
	if ctx.Err() != nil {
		return common.server, nil // interrupted: the normal way to stop watching
	}
	return common.server, err
}
