package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// FanoutResult is one contender at one connection count and frame size.
type FanoutResult struct {
	Contender string
	Conns     int
	FrameSize int
	Filtered  bool
	// NotAvailable is the reason the contender could not run; the numbers
	// are zero then.
	NotAvailable string
	Subscribed   int
	ConnectError string
	// Note is the reason a run ended early, such as a contender that
	// stopped taking messages.
	Note string

	// Saturation: as many messages as the contender takes for the
	// saturation time, each to every matching subscriber.
	Published   int
	Deliveries  int64   // messages received by all subscribers
	Delivered   float64 // deliveries per second, first publish to last receipt
	MsgRate     float64 // messages published per second
	ServerCPU   float64 // seconds per million deliveries
	ClientCPU   float64 // seconds per million deliveries
	Missing     int64   // deliveries expected but not received after the drain
	SlowClosed  int64
	HealthyLost int // subscribers the server closed during the run

	// Latency: an offered rate that every contender gets the same.
	OfferedRate  float64 // messages per second
	LatPublished float64 // messages per second the contender took
	// LatDelivered is the fraction of the offered deliveries received: less
	// than 1 when the contender took fewer messages than offered or lost
	// some.
	LatDelivered  float64
	P50, P99, Max time.Duration
}

// expectedDeliveries returns how many deliveries published messages make
// when every subscriber takes its matches: each message reaches every
// subscriber, or (filtered, one key per subscriber) exactly one.
func expectedDeliveries(published, subscribed int, filtered bool) int64 {
	if filtered {
		return int64(published)
	}
	return int64(published) * int64(subscribed)
}

// queueBudget bounds the octets a contender may have queued for all its
// connections together in a gated run.
const queueBudget = 256 << 20

// fanoutWindow returns the window in messages per connection that keeps
// the octets queued for all connections near queueBudget.
func fanoutWindow(frameSize, conns int) int {
	return min(max(queueBudget/(frameSize*max(conns, 1)), 64), 4096)
}

// filteredWindow returns the window in messages in all of a filtered run,
// where each message is queued for one connection: queueBudget, within
// half the raw ring.
func filteredWindow(frameSize, ringSize int) int {
	return min(queueBudget/frameSize, ringSize/2)
}

// saturationBatch is the most messages a run publishes per step; a paced
// run publishes what is due. The alqd contender commits each step as one
// synced store Apply, so small steps would measure the disk's sync rate
// instead of the fanout.
const saturationBatch = 1024

// natsMaxPending returns nats-server's max_pending per connection for a
// run, so that all connections together stay near 4 GiB at worst.
func natsMaxPending(conns int) int64 {
	return min(max(int64(4<<30)/int64(max(conns, 1)), 256<<10), 64<<20)
}

// runFanout measures one contender at one connection count: a saturation
// run, then a latency run at offered messages per second, or, when offered
// is 0, at latFraction of the contender's own saturation message rate.
func (r *runner) runFanout(ctx context.Context, c contender, conns, frameSize int, filtered bool, offered float64) (res FanoutResult, err error) {
	res = FanoutResult{Contender: c.name, Conns: conns, FrameSize: frameSize, Filtered: filtered}
	if err := c.available(); err != nil {
		res.NotAvailable = notAvailableReason(err)
		return res, nil
	}
	const ringSize = 1 << 16
	window, queueLen := fanoutWindow(frameSize, conns), fanoutWindow(frameSize, conns)
	keys := 0
	if filtered {
		keys = conns
		window = filteredWindow(frameSize, ringSize)
	}
	f, cr, err := startFleet(ctx, fleetArgs{
		start: startArgs{
			Contender: c.name, Filtered: filtered, Window: window, QueueLen: queueLen, RingSize: ringSize,
			MaxPending: natsMaxPending(conns), MaxConns: conns + 100, FrameSize: frameSize,
			CPUProfile: profilePath(r.cfg.ProfileDir, scenarioOf(filtered, frameSize), c.name, conns),
		},
		conns: conns, filtered: filtered, perClient: r.scale.connsPerClient,
		minClients: min(2, conns), decode: r.scale.decodeEvery,
	})
	if err != nil {
		if errors.Is(err, errNotAvailable) {
			res.NotAvailable = notAvailableReason(err)
			return res, nil
		}
		return res, err
	}
	defer func() {
		if cerr := f.close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	res.ConnectError = cr.FirstError
	if res.Subscribed, err = f.waitSubscribed(ctx, conns); err != nil {
		return res, err
	}
	if res.Subscribed == 0 {
		return res, fmt.Errorf("bench: %s: no connection of %d subscribed: %s", c.name, conns, cr.FirstError)
	}

	sat, err := r.measure(ctx, f, produceArgs{Duration: r.scale.satTime, Batch: saturationBatch, Keys: keys}, res.Subscribed, filtered)
	if err != nil {
		return res, err
	}
	res.Published, res.Deliveries, res.Missing = sat.published, sat.deliveries, sat.missing
	res.Delivered, res.ServerCPU, res.ClientCPU = sat.rate, sat.serverCPU, sat.clientCPU
	res.MsgRate = sat.msgRate
	res.Note = sat.note
	if offered == 0 {
		offered = sat.msgRate * r.scale.latFraction
	}
	if offered > 0 {
		lat, err := r.measure(ctx, f, produceArgs{Rate: offered, Duration: r.scale.latTime, Batch: saturationBatch, Keys: keys}, res.Subscribed, filtered)
		if err != nil {
			return res, err
		}
		res.OfferedRate = offered
		res.LatPublished = lat.msgRate
		res.LatDelivered = lat.fraction
		res.P50, res.P99, res.Max = lat.p50, lat.p99, lat.max
		if res.Note == "" && lat.note != "" {
			res.Note = "latency run: " + lat.note
		}
	}
	st, err := f.status(ctx, false)
	if err != nil {
		return res, err
	}
	final, err := f.clientStats(ctx, false)
	if err != nil {
		return res, err
	}
	res.SlowClosed = st.SlowClosed
	res.HealthyLost = final.Healthy.Closed
	r.checkDecode(c.name, final)
	return res, nil
}

// scenarioOf names a fanout measurement for profile files.
func scenarioOf(filtered bool, frameSize int) string {
	if filtered {
		return ScenarioFiltered
	}
	return fmt.Sprintf("%s%d", ScenarioFanout, frameSize)
}

// measurement is the outcome of one publishing run and its drain.
type measurement struct {
	published  int
	deliveries int64
	missing    int64
	fraction   float64
	rate       float64 // deliveries per second
	msgRate    float64 // messages published per second
	serverCPU  float64 // seconds per million deliveries
	clientCPU  float64
	p50, p99   time.Duration
	max        time.Duration
	stalled    flowStats
	mem        []memPoint
	note       string // reason the producer stopped early, "" when it did not
}

// drainIdle ends the wait for a run's deliveries when none arrived for this
// long. It is longer than the one-second sweeps with which a server may
// resume a blocked connection, so that a late delivery is not counted as
// missing.
const drainIdle = 3 * time.Second

// measure runs one publishing run on f and waits for its deliveries to
// drain: until every expected delivery arrived, or none arrived for
// drainIdle, or 20 s passed.
func (r *runner) measure(ctx context.Context, f *fleet, args produceArgs, subscribed int, filtered bool) (measurement, error) {
	var m measurement
	if _, err := f.clientStats(ctx, true); err != nil {
		return m, err
	}
	srv0, cli0 := f.cpu()
	var pr produceResult
	if err := f.server.call(ctx, "produce", args, &pr); err != nil {
		return m, err
	}
	m.published = pr.Published
	m.mem = pr.Mem
	m.note = pr.Error

	expected := expectedDeliveries(pr.Published, subscribed, filtered)
	// A paced run is judged against what was offered, so that a contender
	// that took fewer messages than offered does not look complete.
	offered := expected
	if args.Rate > 0 {
		offered = max(offered, expectedDeliveries(int(args.Rate*args.Duration.Seconds()), subscribed, filtered))
	}
	var s clientStats
	var last int64 = -1
	lastChange := time.Now()
	drainEnd := time.Now().Add(20 * time.Second)
	for {
		var err error
		if s, err = f.clientStats(ctx, false); err != nil {
			return m, err
		}
		got := s.Healthy.Messages + s.Stalled.Messages
		if got >= expected || time.Now().After(drainEnd) {
			break
		}
		if got != last {
			last, lastChange = got, time.Now()
		} else if time.Since(lastChange) > drainIdle {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	srv1, cli1 := f.cpu()

	m.deliveries = s.Healthy.Messages + s.Stalled.Messages
	m.missing = max(expected-m.deliveries, 0)
	if offered > 0 {
		m.fraction = float64(m.deliveries) / float64(offered)
	}
	if span := time.Duration(s.LastRecv - pr.Start); span > 0 && m.deliveries > 0 {
		m.rate = float64(m.deliveries) / span.Seconds()
	}
	if span := time.Duration(pr.End - pr.Start); span > 0 {
		m.msgRate = float64(pr.Published) / span.Seconds()
	}
	if m.deliveries > 0 {
		perMillion := 1e6 / float64(m.deliveries)
		m.serverCPU = (srv1 - srv0).Seconds() * perMillion
		m.clientCPU = (cli1 - cli0).Seconds() * perMillion
	}
	m.stalled = s.Stalled
	if s.Latency != nil {
		h := hdrhistogram.Import(s.Latency)
		if h.TotalCount() > 0 {
			m.p50 = time.Duration(h.ValueAtQuantile(50)) * time.Microsecond
			m.p99 = time.Duration(h.ValueAtQuantile(99)) * time.Microsecond
			m.max = time.Duration(h.Max()) * time.Microsecond
		}
	}
	return m, nil
}

// checkDecode records a decode failure of a contender's messages: the one
// failure, with a crash, that makes a run fail.
func (r *runner) checkDecode(name string, s clientStats) {
	if s.DecodeErrors > 0 {
		r.failures = append(r.failures, fmt.Sprintf("%s: %d received messages failed to decode; first: %s", name, s.DecodeErrors, s.FirstDecodeError))
	}
}

// notAvailableReason returns the text of a not-available error.
func notAvailableReason(err error) string {
	return err.Error()
}
