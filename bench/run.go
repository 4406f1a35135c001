package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Scenario names, for Config.Only.
const (
	ScenarioFanout   = "fanout"
	ScenarioFiltered = "filtered"
	ScenarioIdle     = "idle"
	ScenarioSlow     = "slow"
	ScenarioStore    = "store" // ingest, bulk dump, catch-up
)

// Scenarios lists every scenario in the order Run runs them.
var Scenarios = []string{ScenarioFanout, ScenarioFiltered, ScenarioIdle, ScenarioSlow, ScenarioStore}

// Config configures Run. The zero value runs every scenario at full scale
// and writes nothing but the progress log to nowhere.
type Config struct {
	// Short runs every contender at small scale, in well under three
	// minutes, to prove that the harness and the contenders work.
	Short bool

	// Only restricts the run to these scenarios; empty means all.
	Only []string

	// Contenders restricts the fanout scenarios to these contenders; empty
	// means all.
	Contenders []string

	// Log receives progress lines and the summary. Nil discards them.
	Log io.Writer

	// Command is the command line to record in the report.
	Command string

	// ProfileDir, when set, receives a CPU profile of the server child of
	// every fanout, filtered and slow-consumer measurement, named
	// <scenario>-<contender>-<connections>.cpu.pprof.
	ProfileDir string
}

// Validate reports an unknown scenario or contender name.
func (c *Config) Validate() error {
	for _, s := range c.Only {
		if !slices.Contains(Scenarios, s) {
			return fmt.Errorf("bench: unknown scenario %q: want one of %s", s, strings.Join(Scenarios, ", "))
		}
	}
	for _, name := range c.Contenders {
		if !slices.ContainsFunc(contenders, func(c contender) bool { return c.name == name }) {
			return fmt.Errorf("bench: unknown contender %q: want one of %s", name, strings.Join(contenderNames(), ", "))
		}
	}
	return nil
}

func contenderNames() []string {
	var names []string
	for _, c := range contenders {
		names = append(names, c.name)
	}
	return names
}

// scale sizes every scenario.
type scale struct {
	fanoutConns    []int // connection counts of the unfiltered sweep
	frameSizes     []int // the sweep uses the first; the others run at sizeConns
	sizeConns      int
	satTime        time.Duration // saturation run
	latTime        time.Duration // latency run
	latFraction    float64       // latency offered rate, as a fraction of the raw limit's saturation message rate
	filteredConns  []int
	idleConns      int
	slowConns      int
	slowStallEvery int
	slowTime       time.Duration
	slowFraction   float64 // slow-consumer offered rate, as a fraction of the contender's own saturation message rate
	bulkBindings   int
	catchUp        int
	ingestTime     time.Duration
	connsPerClient int
	decodeEvery    int
}

// fullScale fits a 2-core machine with a 20,000-descriptor limit per
// process in about ten minutes.
var fullScale = scale{
	fanoutConns:    []int{100, 1000, 5000, 19000},
	frameSizes:     []int{minFrameSize, 256},
	sizeConns:      1000,
	satTime:        3 * time.Second,
	latTime:        3 * time.Second,
	latFraction:    0.1,
	filteredConns:  []int{1000, 19000},
	idleConns:      19800,
	slowConns:      1000,
	slowStallEvery: 10,
	slowTime:       12 * time.Second,
	slowFraction:   0.5,
	bulkBindings:   1_000_000,
	catchUp:        500_000,
	ingestTime:     4 * time.Second,
	connsPerClient: 5000,
	decodeEvery:    8,
}

// shortScale runs every contender and scenario once at small scale.
var shortScale = scale{
	fanoutConns:    []int{20, 200},
	frameSizes:     []int{minFrameSize, 256},
	sizeConns:      200,
	satTime:        500 * time.Millisecond,
	latTime:        500 * time.Millisecond,
	latFraction:    0.1,
	filteredConns:  []int{200},
	idleConns:      300,
	slowConns:      100,
	slowStallEvery: 10,
	slowTime:       2 * time.Second,
	slowFraction:   0.5,
	bulkBindings:   20_000,
	catchUp:        10_000,
	ingestTime:     time.Second,
	connsPerClient: 5000,
	decodeEvery:    1,
}

// runner carries one run's state.
type runner struct {
	cfg      Config
	scale    scale
	log      io.Writer
	res      *Results
	failures []string // crashes and decode errors: these fail the run
}

// ErrFailed is returned by Run when a contender crashed or a received
// message failed to decode; timings never fail a run.
var ErrFailed = errors.New("bench: run failed")

// Run runs the selected scenarios and returns their results. It fails
// (wrapping ErrFailed) only when a contender or child process crashed or a
// received message failed to decode; the results are returned either way.
// A process that runs Run must call RunChild when ChildRole returns a role.
func Run(ctx context.Context, cfg Config) (*Results, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &runner{cfg: cfg, scale: fullScale, log: cfg.Log}
	if cfg.Short {
		r.scale = shortScale
	}
	if r.log == nil {
		r.log = io.Discard
	}
	if _, err := raiseFileLimit(); err != nil {
		return nil, err
	}
	r.res = &Results{
		Machine: readMachine(),
		Started: time.Now(),
		Command: cfg.Command,
		Short:   cfg.Short,
	}
	for _, c := range r.contenders() {
		if err := c.available(); err != nil {
			r.res.NotAvailable = append(r.res.NotAvailable, NotAvailable{What: c.label + " fanout", Reason: notAvailableReason(err)})
		}
	}

	steps := []struct {
		name string
		run  func(context.Context) error
	}{
		{ScenarioFanout, r.fanoutScenario},
		{ScenarioFiltered, r.filteredScenario},
		{ScenarioIdle, r.idleScenario},
		{ScenarioSlow, r.slowScenario},
		{ScenarioStore, r.storeScenario},
	}
	for _, step := range steps {
		if len(cfg.Only) > 0 && !slices.Contains(cfg.Only, step.name) {
			continue
		}
		began := time.Now()
		fmt.Fprintf(r.log, "== %s\n", step.name)
		if err := step.run(ctx); err != nil {
			r.failures = append(r.failures, fmt.Sprintf("%s: %v", step.name, err))
			fmt.Fprintf(r.log, "%s failed: %v\n", step.name, err)
			if ctx.Err() != nil {
				break
			}
		}
		fmt.Fprintf(r.log, "%s took %v\n", step.name, time.Since(began).Round(time.Second))
	}
	r.res.Elapsed = time.Since(r.res.Started)
	r.res.Goals = evaluateGoals(r.res)
	r.res.Failures = r.failures
	if len(r.failures) > 0 {
		return r.res, fmt.Errorf("%w: %s", ErrFailed, strings.Join(r.failures, "; "))
	}
	return r.res, nil
}

// contenders returns the contenders selected by the config.
func (r *runner) contenders() []contender {
	var out []contender
	for _, c := range contenders {
		if len(r.cfg.Contenders) == 0 || slices.Contains(r.cfg.Contenders, c.name) {
			out = append(out, c)
		}
	}
	return out
}

// rawMsgRate returns the saturation message rate the raw contender reached
// at conns connections and frameSize, or 0 when it did not run.
func (r *runner) rawMsgRate(results []FanoutResult, conns, frameSize int) float64 {
	for _, f := range results {
		if f.Contender == contenderRaw && f.Conns == conns && f.FrameSize == frameSize && f.NotAvailable == "" {
			return f.MsgRate
		}
	}
	return 0
}

// fanoutScenario sweeps the connection counts with every contender, then
// runs the other frame sizes at sizeConns.
func (r *runner) fanoutScenario(ctx context.Context) error {
	type cell struct{ conns, size int }
	var cells []cell
	for _, n := range r.scale.fanoutConns {
		cells = append(cells, cell{n, r.scale.frameSizes[0]})
	}
	for _, size := range r.scale.frameSizes[1:] {
		cells = append(cells, cell{r.scale.sizeConns, size})
	}
	for _, cl := range cells {
		for _, c := range r.contenders() {
			offered := r.offeredRate(r.res.Fanout, cl.conns, cl.size, r.scale.latFraction)
			res, err := r.runFanout(ctx, c, cl.conns, cl.size, false, offered)
			r.res.Fanout = append(r.res.Fanout, res)
			r.printFanout(res)
			if err := r.cellFailed(ctx, err, "fanout %s at %d connections", c.name, cl.conns); err != nil {
				return err
			}
		}
	}
	return nil
}

// offeredRate returns the latency-run rate at conns: fraction of the raw
// limit's saturation message rate, or of the first contender's when the
// raw limit did not run, or 0 when none ran yet.
func (r *runner) offeredRate(results []FanoutResult, conns, size int, fraction float64) float64 {
	if rate := r.rawMsgRate(results, conns, size); rate > 0 {
		return rate * fraction
	}
	for _, f := range results {
		if f.Conns == conns && f.FrameSize == size && f.MsgRate > 0 {
			return f.MsgRate * fraction
		}
	}
	return 0
}

// filteredScenario runs every contender with one relay key per connection.
func (r *runner) filteredScenario(ctx context.Context) error {
	for _, n := range r.scale.filteredConns {
		for _, c := range r.contenders() {
			offered := r.offeredRate(r.res.Filtered, n, minFrameSize, r.scale.latFraction)
			res, err := r.runFanout(ctx, c, n, minFrameSize, true, offered)
			r.res.Filtered = append(r.res.Filtered, res)
			r.printFanout(res)
			if err := r.cellFailed(ctx, err, "filtered %s at %d connections", c.name, n); err != nil {
				return err
			}
		}
	}
	return nil
}

// cellFailed records the failure of one measurement, so that the others
// still run, and returns an error only when the run is being stopped.
func (r *runner) cellFailed(ctx context.Context, err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	msg := fmt.Sprintf(format, args...)
	r.failures = append(r.failures, fmt.Sprintf("%s: %v", msg, err))
	fmt.Fprintf(r.log, "%s failed: %v\n", msg, err)
	return ctx.Err()
}

func (r *runner) printFanout(f FanoutResult) {
	mode := "all"
	if f.Filtered {
		mode = "filtered"
	}
	if f.NotAvailable != "" {
		fmt.Fprintf(r.log, "%-10s %-8s conns=%-6d size=%-4d not available: %s\n", f.Contender, mode, f.Conns, f.FrameSize, f.NotAvailable)
		return
	}
	fmt.Fprintf(r.log, "%-10s %-8s conns=%-6d size=%-4d subscribed=%-6d delivered=%s/s msgs=%s/s server=%.2fs/M client=%.2fs/M missing=%d offered=%s/s got=%.3f p50=%v p99=%v %s\n",
		f.Contender, mode, f.Conns, f.FrameSize, f.Subscribed, si(f.Delivered), si(f.MsgRate), f.ServerCPU, f.ClientCPU,
		f.Missing, si(f.OfferedRate), f.LatDelivered, f.P50, f.P99, f.Note)
}

// si formats v with an SI prefix, three significant digits.
func si(v float64) string {
	switch {
	case v >= 1e9:
		return fmt.Sprintf("%.3gG", v/1e9)
	case v >= 1e6:
		return fmt.Sprintf("%.3gM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.3gk", v/1e3)
	}
	return fmt.Sprintf("%.3g", v)
}
