package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/alqd/alqd/requestor"
	"github.com/alqd/alqd/requestor/mirror"
)

// runMirror runs "alq mirror": keep a Pebble copy of the bindings current,
// or print it with --list.
func runMirror(ctx context.Context, fs *flag.FlagSet, args []string, e env) (string, error) {
	var common commonFlags
	var qf queryFlags
	var wf watchFlags
	common.register(fs)
	common.registerTCP(fs, true)
	qf.register(fs, false)
	wf.register(fs)
	dir := fs.String("db", "", "`directory` of the mirror database (created if missing)")
	list := fs.Bool("list", false, "print the bindings stored in --db and exit, without connecting")
	quiet := fs.Bool("quiet", false, "print nothing while mirroring")
	sync := fs.Bool("sync", false, "wait for the disk on every write")
	retention := fs.Duration("retention", mirror.DefaultTombstoneRetention, "keep ended bindings this long before pruning them")
	windowed := fs.Bool("windowed-recovery", false, "after DataMissing fetch only the missing interval (RFC 7653 8.4.1), not also every binding;\nbindings removed meanwhile then stay in the mirror until their lifetime runs out")
	setUsage(fs, "alq mirror --db DIR [--server HOST[:PORT]] [--bulk-link ADDR ...] [--by TYPE <value flag>] [flags]",
		"Keeps a local database of the server's bindings current with Active Leasequery,\n"+
			"and resumes where it stopped when restarted. An empty database is filled by a\n"+
			"Bulk Leasequery per --bulk-link (or for the --by filter), or, without either,\n"+
			"by catch-up from the start of the server's history. After DataMissing the\n"+
			"same bulk queries fetch the missing interval and every binding still held;\n"+
			"bindings in neither are marked ended. Without them, DataMissing stops the\n"+
			"mirror before the gap (exit code 8); alqd answers it once it has trimmed its\n"+
			"history, so give --bulk-link for every link. --server may be left out once the\n"+
			"database exists. With --list, prints the stored bindings and exits.")
	if err := parse(fs, args); err != nil {
		return "", err
	}
	if *dir == "" {
		return common.server, usagef("--db is required")
	}
	cfg := mirror.Config{Dir: *dir, RelayData: qf.relayData, MaxAttempts: wf.maxAttempts, Sync: *sync, TombstoneRetention: *retention, WindowedRecovery: *windowed}
	// Without --server the database names the server.
	var err error
	if cfg.Requestor, err = common.configFor(common.server); err != nil {
		return common.server, err
	}
	if cfg.Filter, err = filterOf(&qf); err != nil {
		return common.server, err
	}
	if cfg.Recovery, err = linkQueries(wf.bulkLinks, qf.relayData); err != nil {
		return common.server, err
	}

	m, err := mirror.Open(cfg)
	if err != nil {
		return common.server, err
	}
	defer m.Close()
	server := m.Server()
	if *list {
		return server, listMirror(m, e, common.json)
	}

	var p *printer
	if !*quiet {
		p = newPrinter(e.stdout, common.json, true)
		defer p.close()
	}
	err = m.Run(ctx, func(ev requestor.Event) error {
		if p != nil {
			return p.event(ev)
		}
		return nil
	})
	if ctx.Err() != nil {
		return server, nil // interrupted: the normal way to stop mirroring
	}
	return server, err
}

// listMirror prints every stored binding, as JSON lines or a table.
func listMirror(m *mirror.Mirror, e env, asJSON bool) error {
	now := time.Now()
	out := bufio.NewWriter(e.stdout)
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	tw := tabwriter.NewWriter(out, 2, 8, 2, ' ', 0)
	if !asJSON {
		fmt.Fprintln(tw, "TYPE\tADDRESS/PREFIX\tCLIENT-ID\tSTATE\tVALID-UNTIL\tLAST-TRANSACTION\tLINK\tRELAY-ID\tSOURCE")
	}
	n := 0
	err := m.Scan(func(r *mirror.Record) error {
		n++
		if asJSON {
			return enc.Encode(jsonRecordOf(r, now))
		}
		fmt.Fprintln(tw, strings.Join([]string{
			r.Type.String(), recordTarget(r), hex.EncodeToString(r.ClientID), recordState(r, now),
			clock(r.ValidUntil), clock(r.LastTransaction), addrOrDash(r.LinkAddress.String(), r.LinkAddress.IsValid()),
			hexOrDash(r.RelayID), r.Source.String(),
		}, "\t"))
		if n%tableFlushRows == 0 {
			return tw.Flush()
		}
		return nil
	})
	tw.Flush()
	if ferr := out.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return err
	}
	cp, err := m.Checkpoint()
	if err != nil {
		return err
	}
	resume := "none (next run fills the database first)"
	if cp.Valid {
		resume = strconv.FormatUint(uint64(cp.StartTime), 10)
	}
	fmt.Fprintf(e.stderr, "%s from %s; resume start time %s\n", bindingCount(n), m.Server(), resume)
	return nil
}

func recordTarget(r *mirror.Record) string {
	if r.Type == requestor.TypePD {
		return r.Prefix.String()
	}
	return r.Prefix.Addr().String()
}

// recordState is "active", "ended", or "expired" for a binding whose valid
// lifetime ran out without the server saying so.
func recordState(r *mirror.Record, now time.Time) string {
	if r.State == requestor.StateActive && r.Expired(now) {
		return "expired"
	}
	return r.State.String()
}

// jsonRecord is the JSON form of a stored binding in "alq mirror --list".
type jsonRecord struct {
	Type            string      `json:"type"`
	Address         string      `json:"address,omitempty"`
	Prefix          string      `json:"prefix,omitempty"`
	ClientID        string      `json:"client_id"`
	IAID            *uint32     `json:"iaid,omitempty"`
	State           string      `json:"state"`
	ValidLifetime   uint32      `json:"valid_lifetime"`
	ValidUntil      *time.Time  `json:"valid_until"`
	LastTransaction *time.Time  `json:"last_transaction,omitempty"`
	BaseTime        *uint32     `json:"base_time,omitempty"`
	Source          string      `json:"source"`
	Received        time.Time   `json:"received"`
	LinkAddress     string      `json:"link_address,omitempty"`
	RelayID         string      `json:"relay_id,omitempty"`
	RemoteID        *jsonRemote `json:"remote_id,omitempty"`
	InterfaceID     string      `json:"interface_id,omitempty"`
}

func jsonRecordOf(r *mirror.Record, now time.Time) jsonRecord {
	j := jsonRecord{
		Type: r.Type.String(), ClientID: hex.EncodeToString(r.ClientID), State: recordState(r, now),
		ValidLifetime: r.ValidLifetime, ValidUntil: timePtr(r.ValidUntil), LastTransaction: timePtr(r.LastTransaction),
		Source: r.Source.String(), Received: r.Received,
		RelayID: hex.EncodeToString(r.RelayID), InterfaceID: hex.EncodeToString(r.InterfaceID),
	}
	if r.Type == requestor.TypePD {
		j.Prefix = r.Prefix.String()
	} else {
		j.Address = r.Prefix.Addr().String()
	}
	if r.HasIAID {
		j.IAID = ptr(r.IAID)
	}
	if r.HasBaseTime {
		j.BaseTime = ptr(r.BaseTime)
	}
	if r.LinkAddress.IsValid() {
		j.LinkAddress = r.LinkAddress.String()
	}
	if id, ok := r.RemoteIDValue(); ok {
		j.RemoteID = &jsonRemote{Enterprise: id.EnterpriseNumber, ID: hex.EncodeToString(id.ID)}
	}
	return j
}
