package bench

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Results holds everything one run measured.
type Results struct {
	Machine  Machine
	Started  time.Time
	Elapsed  time.Duration
	Command  string
	Short    bool
	Fanout   []FanoutResult // unfiltered, every connection count and frame size
	Filtered []FanoutResult
	Idle     []IdleResult
	Slow     []SlowResult
	Store    *StoreResult
	Goals    []Goal
	// NotAvailable lists what could not be measured in this build, why.
	NotAvailable []NotAvailable
	// Failures lists crashes and decode errors; a run with any fails.
	Failures []string
}

// NotAvailable is one measurement this build cannot make.
type NotAvailable struct {
	What   string
	Reason string
}

// Goal status values.
const (
	GoalPass         = "PASS"
	GoalMiss         = "MISS"
	GoalNotAvailable = "NOT AVAILABLE"
)

// Goal is one target the harness reports against. Goals are information:
// a MISS never fails a run.
type Goal struct {
	Name     string
	Target   string
	Measured string
	Status   string
}

// evaluateGoals checks res against alqd's targets.
func evaluateGoals(res *Results) []Goal {
	var goals []Goal
	for _, n := range []int{1000, 19000} {
		goals = append(goals, fanoutGoal(res, n))
	}
	goals = append(goals, filteredGoal(res), idleGoal(res), slowGoal(res))
	goals = append(goals, bulkGoal(res), catchUpGoal(res))
	return goals
}

// findFanout returns the result of contender at conns with the sweep's
// frame size.
func findFanout(results []FanoutResult, contender string, conns int) (FanoutResult, bool) {
	for _, f := range results {
		if f.Contender == contender && f.Conns == conns && f.FrameSize == minFrameSize {
			return f, true
		}
	}
	return FanoutResult{}, false
}

func fanoutGoal(res *Results, conns int) Goal {
	g := Goal{
		Name:   fmt.Sprintf("fanout at %d connections", conns),
		Target: "delivered >= 0.8x the raw limit",
		Status: GoalNotAvailable,
	}
	alqd, ok1 := findFanout(res.Fanout, contenderAlqd, conns)
	raw, ok2 := findFanout(res.Fanout, contenderRaw, conns)
	switch {
	case !ok1 || !ok2:
		g.Measured = "not measured in this run"
	case alqd.NotAvailable != "":
		g.Measured = alqd.NotAvailable
	case raw.Delivered <= 0:
		g.Measured = "the raw limit delivered nothing"
	default:
		ratio := alqd.Delivered / raw.Delivered
		g.Measured = fmt.Sprintf("%.3gx (%s/s vs %s/s; alqd took %s changes/s)", ratio, si(alqd.Delivered), si(raw.Delivered), si(alqd.MsgRate))
		g.Status = passMiss(ratio >= 0.8)
	}
	return g
}

func filteredGoal(res *Results) Goal {
	g := Goal{
		Name:   "filtered fanout cost",
		Target: "server CPU per delivery at the largest count <= 2x that at the smallest (cost follows matches, not connections)",
		Status: GoalNotAvailable,
	}
	var lo, hi *FanoutResult
	for i := range res.Filtered {
		f := &res.Filtered[i]
		if f.Contender != contenderAlqd {
			continue
		}
		if f.NotAvailable != "" {
			g.Measured = f.NotAvailable
			return g
		}
		if lo == nil || f.Conns < lo.Conns {
			lo = f
		}
		if hi == nil || f.Conns > hi.Conns {
			hi = f
		}
	}
	switch {
	case lo == nil || lo == hi:
		g.Measured = "needs alqd at two connection counts"
	case lo.ServerCPU <= 0:
		g.Measured = "no CPU time measured at the smallest count"
	default:
		ratio := hi.ServerCPU / lo.ServerCPU
		g.Measured = fmt.Sprintf("%.2fx (%.2f s/M at %d, %.2f s/M at %d)", ratio, hi.ServerCPU, hi.Conns, lo.ServerCPU, lo.Conns)
		g.Status = passMiss(ratio <= 2)
	}
	return g
}

func idleGoal(res *Results) Goal {
	g := Goal{Name: "idle plaintext connection", Target: "< 3 KiB server memory each", Status: GoalNotAvailable, Measured: "not measured in this run"}
	for _, i := range res.Idle {
		if i.Contender != contenderAlqd {
			continue
		}
		if i.NotAvailable != "" {
			g.Measured = i.NotAvailable
			return g
		}
		g.Measured = fmt.Sprintf("%.0f B RSS per connection (%s, %d held)", i.RSSPerConn, i.Mode, i.Held)
		g.Status = passMiss(i.RSSPerConn < 3<<10)
		if i.Mode != "subscribed" {
			g.Status += " (without ACTIVELEASEQUERY)"
		}
	}
	return g
}

func slowGoal(res *Results) Goal {
	g := Goal{Name: "slow consumers", Target: "10% stalled cut the others' delivery rate by < 10%", Status: GoalNotAvailable, Measured: "not measured in this run"}
	for _, s := range res.Slow {
		if s.Contender != contenderAlqd {
			continue
		}
		if s.NotAvailable != "" {
			g.Measured = s.NotAvailable
			return g
		}
		g.Measured = fmt.Sprintf("%.1f%% (p99 %v -> %v)", 100*s.Cost(), s.BaseP99, s.StallP99)
		g.Status = passMiss(s.Cost() < 0.10)
	}
	return g
}

func bulkGoal(res *Results) Goal {
	g := Goal{Name: "bulk dump", Target: "> 1,000,000 bindings/s", Status: GoalNotAvailable, Measured: "not measured in this run"}
	if s := res.Store; s != nil && s.BulkAlqd > 0 {
		g.Measured = fmt.Sprintf("%s bindings/s over %d bindings", si(s.BulkAlqd), s.BulkBindings)
		g.Status = passMiss(s.BulkAlqd > 1e6)
	}
	return g
}

func catchUpGoal(res *Results) Goal {
	g := Goal{Name: "catch-up of 500,000 changed bindings", Target: "< 1 s", Status: GoalNotAvailable, Measured: "not measured in this run"}
	s := res.Store
	if s == nil || s.CatchUp == 0 {
		return g
	}
	took, how := s.CatchUpActive, "ACTIVELEASEQUERY with OPTION_LQ_START_TIME"
	if took <= 0 {
		took, how = s.CatchUpBulk, "Bulk Leasequery with OPTION_LQ_START_TIME (Active catch-up not available)"
	}
	if took <= 0 {
		return g
	}
	// The goal is about 500,000 bindings; a smaller run is scaled.
	scaled := time.Duration(float64(took) * 500_000 / float64(s.CatchUp))
	g.Measured = fmt.Sprintf("%v for %d through %s", took.Round(time.Millisecond), s.CatchUp, how)
	if s.CatchUp != 500_000 {
		g.Measured += fmt.Sprintf(" (%v scaled to 500,000)", scaled.Round(time.Millisecond))
	}
	g.Status = passMiss(scaled < time.Second)
	return g
}

func passMiss(ok bool) string {
	if ok {
		return GoalPass
	}
	return GoalMiss
}

// SectionHeading starts the part of docs/BENCHMARKS.md this package owns.
const SectionHeading = "## End-to-end harness"

// WriteSummary prints the goals, what was not available and the failures.
func (res *Results) WriteSummary(w io.Writer) {
	fmt.Fprintf(w, "\n== goals (information only; timings never fail a run)\n")
	for _, g := range res.Goals {
		fmt.Fprintf(w, "%-14s %-38s target %s; measured %s\n", g.Status, g.Name, g.Target, g.Measured)
	}
	for _, n := range res.NotAvailable {
		fmt.Fprintf(w, "not available: %s: %s\n", n.What, n.Reason)
	}
	for _, f := range res.Failures {
		fmt.Fprintf(w, "FAILURE: %s\n", f)
	}
	fmt.Fprintf(w, "run took %v\n", res.Elapsed.Round(time.Second))
}

// UpdateDocument replaces the SectionHeading section of the Markdown file
// at path (up to the next level-2 heading) with section, or appends it;
// the file is created when missing.
func UpdateDocument(path, section string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	if len(old) == 0 {
		old = []byte("# Benchmarks\n")
	}
	return os.WriteFile(path, replaceSection(old, section), 0o644)
}

// replaceSection returns doc with the SectionHeading section replaced by
// section, or with section appended when doc has none.
func replaceSection(doc []byte, section string) []byte {
	section = strings.TrimRight(section, "\n") + "\n"
	lines := strings.SplitAfter(string(doc), "\n")
	start, end := -1, len(lines)
	for i, line := range lines {
		trimmed := strings.TrimRight(line, "\r\n")
		if start < 0 && trimmed == SectionHeading {
			start = i
			continue
		}
		if start >= 0 && strings.HasPrefix(trimmed, "## ") {
			end = i
			break
		}
	}
	var b bytes.Buffer
	if start < 0 {
		b.WriteString(strings.TrimRight(string(doc), "\n"))
		b.WriteString("\n\n")
		b.WriteString(section)
		return b.Bytes()
	}
	for _, line := range lines[:start] {
		b.WriteString(line)
	}
	b.WriteString(section)
	if end < len(lines) {
		b.WriteString("\n")
		for _, line := range lines[end:] {
			b.WriteString(line)
		}
	}
	return b.Bytes()
}

// Markdown renders the results as the SectionHeading section. imgDir is
// the directory of the plots relative to the document, "" for none.
func (res *Results) Markdown(imgDir string) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }

	w("%s\n\n", SectionHeading)
	w("`make bench` runs the `go test` benchmarks, then `bin/alqd-bench`, which starts each contender on\n")
	w("loopback in its own process, puts the same load through it from separate client processes and\n")
	w("reports ratios against anchors measured in the same run. `make bench-smoke` runs the same harness\n")
	w("with `-short` at small scale; it fails only when a contender crashes or a message fails to decode.\n")
	w("Timings never fail a run. Generated by `alqd-bench`; edit the harness, not this section.\n\n")

	res.markdownRun(w)
	res.markdownGoals(w)
	res.markdownFanout(w, imgDir)
	res.markdownFiltered(w)
	res.markdownIdle(w)
	res.markdownSlow(w, imgDir)
	res.markdownStore(w)
	res.markdownMethod(w)
	return b.String()
}

func (res *Results) markdownRun(w func(string, ...any)) {
	m := res.Machine
	w("### Run\n\n")
	w("| | |\n|---|---|\n")
	w("| date | %s |\n", res.Started.UTC().Format("2006-01-02 15:04 MST"))
	w("| command | `%s` |\n", res.Command)
	w("| duration | %v |\n", res.Elapsed.Round(time.Second))
	w("| machine | %d CPUs (nproc), %s, %.1f GiB memory |\n", m.CPUs, m.CPUModel, float64(m.MemTotal)/(1<<30))
	w("| kernel | %s |\n", m.Kernel)
	w("| Go | %s |\n", m.GoVersion)
	if res.Short {
		w("| scale | short (`-short`): smoke-test sizes, numbers not comparable to a full run |\n")
	}
	w("\nServer, clients and the harness share the machine, so absolute rates say little; compare the\n")
	w("ratios between contenders of the same run.\n\n")
}

func (res *Results) markdownGoals(w func(string, ...any)) {
	w("### Goals\n\n")
	w("| goal | target | measured | status |\n|---|---|---|---|\n")
	for _, g := range res.Goals {
		w("| %s | %s | %s | %s |\n", g.Name, mdEscape(g.Target), mdEscape(g.Measured), g.Status)
	}
	if len(res.NotAvailable) > 0 {
		w("\nNot available in this build:\n\n")
		for _, n := range res.NotAvailable {
			w("- %s: %s\n", n.What, mdEscape(n.Reason))
		}
	}
	if len(res.Failures) > 0 {
		w("\nFailures (crashes or decode errors):\n\n")
		for _, f := range res.Failures {
			w("- %s\n", mdEscape(f))
		}
	}
	w("\n")
}

func (res *Results) markdownFanout(w func(string, ...any), imgDir string) {
	if len(res.Fanout) == 0 {
		return
	}
	w("### Fanout to every subscriber\n\n")
	w("Each message goes to every connection. *delivered* counts messages received by all subscribers\n")
	w("per second, from the first publish to the last receipt, when the producer publishes as fast as the\n")
	w("contender takes messages. *vs raw* divides it by the raw limit's at the same count and size.\n")
	w("*taken* is the messages per second the producer published in that run: for alqd, the rate of durable\n")
	w("binding changes at which its fanout saturates. CPU is per million deliveries: *server* is the server\n")
	w("process, which for alqd includes committing every change to the store and for nats-server the\n")
	w("nats.go publisher. *clients* are the subscriber processes (nats.go clients are not the shared epoll\n")
	w("client, so their CPU is not comparable). The latency columns come from a second run at the offered\n")
	w("rate: a tenth of the raw limit's saturation message rate at that count, the same for every\n")
	w("contender. *received* is the fraction of the offered deliveries that arrived, below 1 when a\n")
	w("contender took fewer messages than offered.\n\n")
	fanoutTable(w, res.Fanout)
	if imgDir != "" {
		w("\n![delivered messages per second by connection count](%s/fanout-throughput.png)\n", imgDir)
		w("\n![p99 latency at the offered rate by connection count](%s/fanout-latency.png)\n", imgDir)
	}
	w("\n")
}

func (res *Results) markdownFiltered(w func(string, ...any)) {
	if len(res.Filtered) == 0 {
		return
	}
	w("### Filtered fanout\n\n")
	w("Every connection subscribes with QUERY_BY_RELAY_ID for its own relay-id (a subject of its own for\n")
	w("nats), and each message matches exactly one connection, round-robin. Cost that follows matches\n")
	w("keeps the server CPU per delivery flat as connections grow. alqd's server CPU includes the durable\n")
	w("store commit of each change, which weighs more here, with one delivery per change, than in the\n")
	w("unfiltered runs.\n\n")
	fanoutTable(w, res.Filtered)
	w("\n")
}

// fanoutTable writes one row per result, ratios against the raw limit.
func fanoutTable(w func(string, ...any), results []FanoutResult) {
	w("| connections | frame | contender | subscribed | delivered/s | vs raw | taken msg/s | server CPU s/M | clients CPU s/M | missing | offered msg/s | received | p50 | p99 |\n")
	w("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	var notes []string
	for _, f := range results {
		if f.NotAvailable != "" {
			w("| %d | %d | %s | not available | | | | | | | | | | |\n", f.Conns, f.FrameSize, contenderLabel(f.Contender))
			notes = append(notes, fmt.Sprintf("%s at %d connections: %s", contenderLabel(f.Contender), f.Conns, f.NotAvailable))
			continue
		}
		if f.Note != "" {
			notes = append(notes, fmt.Sprintf("%s at %d connections: %s", contenderLabel(f.Contender), f.Conns, f.Note))
		}
		if f.Subscribed < f.Conns && f.ConnectError != "" {
			notes = append(notes, fmt.Sprintf("%s at %d connections: %d subscribed; %s", contenderLabel(f.Contender), f.Conns, f.Subscribed, f.ConnectError))
		}
		ratio := "-"
		for _, raw := range results {
			if raw.Contender == contenderRaw && raw.Conns == f.Conns && raw.FrameSize == f.FrameSize && raw.Delivered > 0 {
				ratio = fmt.Sprintf("%.2fx", f.Delivered/raw.Delivered)
			}
		}
		w("| %d | %d | %s | %d | %s | %s | %s | %.2f | %.2f | %d | %s | %.3f | %s | %s |\n",
			f.Conns, f.FrameSize, contenderLabel(f.Contender), f.Subscribed, si(f.Delivered), ratio, si(f.MsgRate),
			f.ServerCPU, f.ClientCPU, f.Missing, si(f.OfferedRate), f.LatDelivered, ms(f.P50), ms(f.P99))
	}
	if len(notes) > 0 {
		w("\n")
		for _, n := range notes {
			w("- %s\n", mdEscape(n))
		}
	}
}

func (res *Results) markdownIdle(w func(string, ...any)) {
	if len(res.Idle) == 0 {
		return
	}
	w("### Idle connections\n\n")
	w("Client processes open as many connections as one server process can hold under its file\n")
	w("descriptor limit; the server's VmRSS (after a garbage collection) before and after, divided by\n")
	w("the connections it held. *heap+stacks* is the Go runtime's share of that.\n\n")
	w("| contender | idle connection | opened | held | RSS per connection | heap+stacks per connection |\n")
	w("|---|---|---:|---:|---:|---:|\n")
	for _, i := range res.Idle {
		if i.NotAvailable != "" {
			w("| %s | not available: %s | | | | |\n", contenderLabel(i.Contender), mdEscape(i.NotAvailable))
			continue
		}
		w("| %s | %s | %d | %d | %s | %s |\n", contenderLabel(i.Contender), i.Mode, i.Opened, i.Held, bytesIEC(i.RSSPerConn), bytesIEC(i.HeapPerConn))
	}
	w("\n")
}

func (res *Results) markdownSlow(w func(string, ...any), imgDir string) {
	if len(res.Slow) == 0 {
		return
	}
	w("### Slow consumers\n\n")
	w("Two runs at the same offered rate, half the contender's own saturation rate at that count: all\n")
	w("subscribers reading, then every tenth one never reading after its subscription. The offered rate\n")
	w("differs between contenders, so compare each one's two runs. The raw and goroutine contenders close a\n")
	w("connection that falls a ring (16,384 messages) or a queue behind. nats-server closes one with 8 MiB\n")
	w("pending, and alqd applies its own policy (a blocked connection keeps only its cursor and is closed\n")
	w("after ACTIVE_LQ_SEND_TIMEOUT). *rate* is deliveries per second per reading subscriber, *cost* the\n")
	w("loss in the second run.\n\n")
	w("| contender | connections | stalled | offered msg/s | rate | rate with stalled | cost | p99 | p99 with stalled | closed by policy | reading ones closed | peak RSS |\n")
	w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range res.Slow {
		if s.NotAvailable != "" {
			w("| %s | not available | | | | | | | | | | |\n", contenderLabel(s.Contender))
			continue
		}
		var peak int64
		for _, p := range s.Mem {
			peak = max(peak, p.RSS)
		}
		w("| %s | %d | %d | %s | %.0f | %.0f | %.1f%% | %s | %s | %d | %d | %s |\n",
			contenderLabel(s.Contender), s.Conns, s.Stalled, si(s.OfferedRate), s.BaseRate, s.StallRate,
			100*s.Cost(), ms(s.BaseP99), ms(s.StallP99), s.SlowClosed, s.HealthyLost, bytesIEC(float64(peak)))
	}
	if imgDir != "" {
		w("\n![server RSS during the run with stalled subscribers](%s/slow-memory.png)\n", imgDir)
	}
	w("\n")
}

func (res *Results) markdownStore(w func(string, ...any)) {
	s := res.Store
	if s == nil {
		return
	}
	w("### Ingest, bulk dump and catch-up\n\n")
	w("| measurement | alqd | anchor | ratio |\n|---|---:|---|---:|\n")
	w("| durable changes/s, `store.Apply` (%d writers x %d) | %s | plain Pebble synced batches: %s | %.2fx |\n",
		s.IngestWriters, s.IngestBatch, si(s.IngestApply), si(s.IngestPebble), ratio(s.IngestApply, s.IngestPebble))
	w("| durable changes/s, ingest HTTP API | %s | `store.Apply`: %s | %.2fx |\n",
		si(s.IngestAPI), si(s.IngestApply), ratio(s.IngestAPI, s.IngestApply))
	w("| bulk dump of %d bindings, bindings/s (decoding reader) | %s | store relay-id scan: %s | %.2fx |\n",
		s.BulkBindings, si(s.BulkAlqd), si(s.BulkStoreScan), ratio(s.BulkAlqd, s.BulkStoreScan))
	w("| same, bindings/s | %s | raw frames of %d octets (alqd's averaged %.0f) on one connection: %s | %.2fx |\n",
		si(s.BulkAlqd), nearestFrameSize(s.BulkFrameSize), s.BulkFrameSize, si(s.BulkRawWire), ratio(s.BulkAlqd, s.BulkRawWire))
	w("| same, read by the `requestor` package | %s | decoding reader: %s | %.2fx |\n",
		si(s.BulkRequestor), si(s.BulkAlqd), ratio(s.BulkRequestor, s.BulkAlqd))
	if s.CatchUpActiveNA != "" {
		w("| catch-up of %d changed bindings, ACTIVELEASEQUERY with OPTION_LQ_START_TIME | not available | | |\n", s.CatchUp)
	} else {
		w("| catch-up of %d changed bindings, ACTIVELEASEQUERY with OPTION_LQ_START_TIME until CatchUpComplete | %s | store `Changed` scan: %s | %.2fx |\n",
			s.CatchUp, ms(s.CatchUpActive), ms(s.CatchUpStore), ratio(s.CatchUpStore.Seconds(), s.CatchUpActive.Seconds()))
	}
	w("| catch-up of %d changed bindings, Bulk Leasequery with OPTION_LQ_START_TIME | %s | store `Changed` scan: %s | %.2fx |\n",
		s.CatchUp, ms(s.CatchUpBulk), ms(s.CatchUpStore), ratio(s.CatchUpStore.Seconds(), s.CatchUpBulk.Seconds()))
	w("| same | %s | raw frames on one connection: %s | %.2fx |\n",
		ms(s.CatchUpBulk), ms(s.CatchUpRaw), ratio(s.CatchUpRaw.Seconds(), s.CatchUpBulk.Seconds()))
	w("\nRatios are alqd over the anchor for rates and anchor over alqd for times, so above 1 is faster.\n\n")
}

func (res *Results) markdownMethod(w func(string, ...any)) {
	w("### How the harness measures\n\n")
	w("- Every process is started by the harness and bounded in time; every address is 127.0.0.1 with an\n")
	w("  ephemeral port. RLIMIT_NOFILE is raised to the hard limit in every process.\n")
	w("- Messages are LEASEQUERY-DATA frames with one OPTION_CLIENT_DATA (client-id, OPTION_CLT_TIME, one\n")
	w("  OPTION_IAADDR, OPTION_LQ_RELAY_DATA padding for larger frames) and OPTION_LQ_BASE_TIME. The\n")
	w("  address carries the publish time, so latency needs no side channel; nats carries the same message\n")
	w("  without the 2-octet TCP framing, which NATS replaces with its own.\n")
	w("- Each client process decodes every n-th message it receives in full (every message with `-short`)\n")
	w("  and checks the framing, type and option headers of all others; latency comes from the decoded\n")
	w("  ones. Messages without OPTION_CLIENT_DATA (keepalives) are not counted as deliveries.\n")
	w("- The raw limit: one goroutine per core with its own epoll set, a ring of frames encoded once, one\n")
	w("  write(2) of the shared pass buffer per connection and pass, TCP_NOTSENT_LOWAT 64 KiB. In the\n")
	w("  fanout runs the producer waits when the slowest connection is a window behind (about 256 MiB over\n")
	w("  all connections; in filtered runs a window of up to 32,768 messages in all). alqd's producer waits\n")
	w("  on the server's own count of undelivered updates with the same window. The goroutine contender has\n")
	w("  a queue of the same length per connection, and nats-server's max_pending is 4 GiB divided by the\n")
	w("  connections (256 KiB to 64 MiB).\n")
	w("- Server and client memory and CPU come from /proc/<pid>/status and /proc/<pid>/stat.\n")
}

// mdEscape keeps text from breaking a table row.
func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// ms formats a duration with three significant digits, in milliseconds
// below a second and in seconds from there.
func ms(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d >= time.Second:
		return fmt.Sprintf("%.3g s", d.Seconds())
	}
	return fmt.Sprintf("%.3g ms", float64(d)/float64(time.Millisecond))
}

// bytesIEC formats a byte count with a binary prefix.
func bytesIEC(v float64) string {
	switch {
	case v >= 1<<30:
		return fmt.Sprintf("%.1f GiB", v/(1<<30))
	case v >= 1<<20:
		return fmt.Sprintf("%.1f MiB", v/(1<<20))
	case v >= 1<<10:
		return fmt.Sprintf("%.1f KiB", v/(1<<10))
	}
	return fmt.Sprintf("%.0f B", v)
}

// WritePlots renders the plots of res into dir as PNG files.
func (res *Results) WritePlots(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	plots := map[string]*Plot{
		"fanout-throughput.png": res.throughputPlot(),
		"fanout-latency.png":    res.latencyPlot(),
		"slow-memory.png":       res.slowMemoryPlot(),
	}
	for name, p := range plots {
		if p == nil {
			continue
		}
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		err = p.WritePNG(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("bench: writing %s: %w", name, err)
		}
	}
	return nil
}
