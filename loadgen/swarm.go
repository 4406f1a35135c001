package loadgen

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alqd/alqd/codec"
)

// Defaults of SwarmConfig.
const (
	DefaultConnections     = 100
	DefaultSlowReadDelay   = 10 * time.Millisecond
	DefaultSlowReadBytes   = 1024
	DefaultReadBufferBytes = 8 << 10
	DefaultDialTimeout     = 5 * time.Second
	DefaultDialRate        = 2000
	DefaultSwarmDuration   = 10 * time.Second
	DefaultSwarmCount      = 100_000_000
)

// fileMargin is the number of descriptors a swarm process keeps for
// itself (standard streams, the runtime's poller, listeners in tests)
// besides one per connection.
const fileMargin = 64

// SwarmConfig describes a swarm of Active Leasequery requestors. The zero
// value of every field but Server works.
//
// A swarm may be split over several processes: each runs the connections
// FirstIndex to FirstIndex+Connections-1 of a swarm of TotalConnections.
// Filtered, Slow and Stalled count connections of the whole swarm, spread
// evenly over the indexes, so every process gets its share.
type SwarmConfig struct {
	// Server is the TCP address of the server, host:port. Required.
	Server string

	// Connections is the number of connections this process opens.
	// Default 100.
	Connections int

	// FirstIndex is the index of this process's first connection in the
	// whole swarm; TotalConnections is the size of the whole swarm,
	// default Connections.
	FirstIndex       int
	TotalConnections int

	// Sources are the local addresses to bind: connection i binds
	// Sources[i mod len(Sources)]. Empty leaves the choice to the kernel.
	// Each source address has its own range of ephemeral ports, so N of
	// them allow N times as many connections to one server.
	Sources []netip.Addr

	// Filtered connections send OPTION_LQ_QUERY with QUERY_BY_RELAY_ID
	// for RelayID(k), k cycling through 0 to FilterRelays-1; the others
	// follow every binding. They are taken from the normal readers first,
	// then from the slow and the stalled ones. FilterRelays defaults to
	// DefaultRelays, the relays of a default Churn.
	Filtered     int
	FilterRelays int

	// Slow connections read SlowReadBytes at a time and wait SlowReadDelay
	// after each read (defaults 1024 octets and 10 ms). Stalled connections
	// never read after sending their query. When SlowReceiveBuffer is set,
	// slow and stalled connections get that SO_RCVBUF (octets), so the
	// server finds them blocked sooner.
	Slow              int
	SlowReadDelay     time.Duration
	SlowReadBytes     int
	Stalled           int
	SlowReceiveBuffer int

	// ReadBufferBytes is the read buffer of the other connections. Default
	// 8 KiB.
	ReadBufferBytes int

	// RelayData requests OPTION_LQ_RELAY_DATA, which relay stamps need
	// (StampRelay).
	RelayData bool

	// TLS, when set, makes every connection send STARTTLS (RFC 7653 section
	// 8.2) and run a TLS handshake with this configuration before its
	// query. A connection whose server refuses TLS fails; it never goes on
	// in plaintext.
	TLS *tls.Config

	// DialTimeout bounds the TCP connect and STARTTLS of one connection.
	// Default 5 s. DialRate is how many connections are opened per second,
	// so that a large swarm does not overflow the server's accept queue.
	// Default 2000.
	DialTimeout time.Duration
	DialRate    float64

	// Duration and Count end the run, whichever comes first: after
	// Duration, or once this process received Count updates. Defaults
	// 10 s and 100,000,000.
	Duration time.Duration
	Count    int64

	// Progress, when set, is called about once a second from the goroutine
	// that runs RunSwarm.
	Progress func(SwarmProgress)

	// IncludeRaw adds the latency histogram and the result of every
	// connection to the summary, which MergeSwarmSummaries needs.
	IncludeRaw bool
}

func (c SwarmConfig) withDefaults() SwarmConfig {
	setDefault(&c.Connections, DefaultConnections)
	setDefault(&c.TotalConnections, c.FirstIndex+c.Connections)
	setDefault(&c.FilterRelays, DefaultRelays)
	setDefault(&c.SlowReadBytes, DefaultSlowReadBytes)
	setDefault(&c.ReadBufferBytes, DefaultReadBufferBytes)
	if c.SlowReadDelay == 0 {
		c.SlowReadDelay = DefaultSlowReadDelay
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.DialRate == 0 {
		c.DialRate = DefaultDialRate
	}
	if c.Duration == 0 {
		c.Duration = DefaultSwarmDuration
	}
	if c.Count == 0 {
		c.Count = DefaultSwarmCount
	}
	return c
}

// Validate reports the first setting that can not work, after applying
// the defaults to a copy.
func (c *SwarmConfig) Validate() error {
	d := c.withDefaults()
	if _, _, err := net.SplitHostPort(d.Server); err != nil {
		return fmt.Errorf("%w: server %q is not host:port: %v", ErrInvalidConfig, d.Server, err)
	}
	switch {
	case d.Connections < 0 || d.FirstIndex < 0 || d.TotalConnections < d.FirstIndex+d.Connections:
		return fmt.Errorf("%w: connections %d from index %d do not fit a swarm of %d", ErrInvalidConfig, d.Connections, d.FirstIndex, d.TotalConnections)
	case d.Filtered < 0 || d.Slow < 0 || d.Stalled < 0 || d.Filtered > d.TotalConnections || d.Slow+d.Stalled > d.TotalConnections:
		return fmt.Errorf("%w: %d filtered, %d slow and %d stalled connections do not fit a swarm of %d", ErrInvalidConfig, d.Filtered, d.Slow, d.Stalled, d.TotalConnections)
	case d.FilterRelays < 1:
		return fmt.Errorf("%w: filter relays %d, want at least 1", ErrInvalidConfig, d.FilterRelays)
	case d.SlowReadBytes < 1 || d.ReadBufferBytes < 1 || d.SlowReceiveBuffer < 0:
		return fmt.Errorf("%w: read sizes %d and %d must be positive and the receive buffer %d not negative", ErrInvalidConfig, d.SlowReadBytes, d.ReadBufferBytes, d.SlowReceiveBuffer)
	case d.SlowReadDelay < 0 || d.DialTimeout < 0 || d.Duration < 0 || d.Count < 0 || !(d.DialRate > 0):
		return fmt.Errorf("%w: delays, timeouts, duration and count must not be negative, and the dial rate %v must be positive", ErrInvalidConfig, d.DialRate)
	}
	for _, a := range d.Sources {
		if !a.IsValid() {
			return fmt.Errorf("%w: invalid source address", ErrInvalidConfig)
		}
	}
	return nil
}

// requestorClass is the reading behaviour of a connection.
type requestorClass uint8

const (
	classNormal requestorClass = iota
	classSlow
	classStalled
	numClasses
)

var classNames = [numClasses]string{"normal", "slow", "stalled"}

func (c requestorClass) String() string { return classNames[c] }

// spreadOver reports whether index i of n is one of k indexes spread
// evenly over 0 to n-1, and how many of them come before i.
func spreadOver(i, k, n int) (bool, int) {
	before := int(int64(i) * int64(k) / int64(n))
	return int(int64(i+1)*int64(k)/int64(n)) > before, before
}

// connectionRole returns the class of connection i of a swarm of n and
// the relay whose bindings its query requests, -1 for none. The slow and
// stalled connections are spread evenly over the swarm, and the stalled
// ones evenly among them. Filtered connections are spread evenly within
// the normal readers first, then within the slow ones, then within the
// stalled ones, so that a few filtered connections all read normally.
func connectionRole(i, n, slow, stalled, filtered, relays int) (requestorClass, int) {
	// The class, the rank of i within its class and the class's size.
	special, specialsBefore := spreadOver(i, slow+stalled, n)
	class, rank, size := classNormal, i-specialsBefore, n-slow-stalled
	if special {
		if isStalled, stalledBefore := spreadOver(specialsBefore, stalled, slow+stalled); isStalled {
			class, rank, size = classStalled, stalledBefore, stalled
		} else {
			class, rank, size = classSlow, specialsBefore-stalledBefore, slow
		}
	}

	// The filtered connections of each class, and how many the classes
	// before it hold.
	inNormal := min(filtered, n-slow-stalled)
	inSlow := min(filtered-inNormal, slow)
	share, offset := inNormal, 0
	switch class {
	case classSlow:
		share, offset = inSlow, inNormal
	case classStalled:
		share, offset = filtered-inNormal-inSlow, inNormal+inSlow
	}
	if share == 0 {
		return class, -1
	}
	if isFiltered, before := spreadOver(rank, share, size); isFiltered {
		return class, (offset + before) % relays
	}
	return class, -1
}

// SwarmProgress is the state of a running swarm, passed to
// SwarmConfig.Progress.
type SwarmProgress struct {
	Elapsed        time.Duration
	Established    int64 // connections that sent their query
	Open           int64 // connections not yet ended
	Messages       int64
	Updates        int64
	Bytes          int64
	DecodeFailures int64
	Errors         int64
	Latency        LatencySummary // µs, so far
}

// swarm is the shared state of the requestors of one RunSwarm.
type swarm struct {
	cfg    SwarmConfig
	cancel context.CancelFunc
	lat    *latencyRecorder

	established, open                 atomic.Int64
	messages, updates, bytes          atomic.Int64
	keepalives, unstamped, decodeFail atomic.Int64
	errors                            atomic.Int64
	types                             [256]atomic.Int64
	statuses                          [maxCountedStatus + 1]atomic.Int64 // the last counts every other code
	countReached                      atomic.Bool

	mu         sync.Mutex
	firstError string
}

// maxCountedStatus is the highest status code counted under its own name.
const maxCountedStatus = int(codec.StatusTLSConnectionRefused)

func (s *swarm) fail(err error) {
	s.errors.Add(1)
	s.mu.Lock()
	if s.firstError == "" {
		s.firstError = err.Error()
	}
	s.mu.Unlock()
}

// addUpdates counts n updates and stops the run once Count is reached.
func (s *swarm) addUpdates(n int64) {
	if n == 0 {
		return
	}
	if s.updates.Add(n) >= s.cfg.Count && s.countReached.CompareAndSwap(false, true) {
		s.cancel()
	}
}

func (s *swarm) progress(start time.Time) SwarmProgress {
	return SwarmProgress{
		Elapsed:        time.Since(start),
		Established:    s.established.Load(),
		Open:           s.open.Load(),
		Messages:       s.messages.Load(),
		Updates:        s.updates.Load(),
		Bytes:          s.bytes.Load(),
		DecodeFailures: s.decodeFail.Load(),
		Errors:         s.errors.Load(),
		Latency:        summarizeLatency(s.lat.merged()),
	}
}

// RunSwarm runs a swarm of requestors against cfg.Server until
// cfg.Duration passes, cfg.Count updates arrived, every connection ended,
// or ctx ends, and returns its summary. It raises RLIMIT_NOFILE first and
// fails with ErrFileLimit when the connections do not fit under it. The
// error is about the configuration; failures of connections are in the
// summary (SwarmSummary.Failed).
func RunSwarm(ctx context.Context, cfg SwarmConfig) (*SwarmSummary, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if limit, err := RaiseFileLimit(); err == nil && uint64(cfg.Connections+fileMargin) > limit {
		return nil, fmt.Errorf("%w: %d connections need about %d descriptors, RLIMIT_NOFILE allows %d; split the swarm over processes (--procs)",
			ErrFileLimit, cfg.Connections, cfg.Connections+fileMargin, limit)
	}

	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	s := &swarm{cfg: cfg, cancel: cancel, lat: newLatencyRecorder(32)}
	requestors := make([]*requestor, cfg.Connections)
	for k := range requestors {
		requestors[k] = newRequestor(s, cfg.FirstIndex+k)
	}

	// Open the connections at DialRate while the run goes on.
	start := time.Now()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		interval := time.Duration(float64(time.Second) / cfg.DialRate)
		for k, r := range requestors {
			if wait := time.Until(start.Add(time.Duration(k) * interval)); wait > 0 {
				select {
				case <-runCtx.Done():
				case <-time.After(wait):
				}
			}
			if runCtx.Err() != nil {
				return
			}
			wg.Add(1)
			s.open.Add(1)
			go func() {
				defer wg.Done()
				defer s.open.Add(-1)
				r.run(runCtx)
			}()
		}
	}()
	allEnded := make(chan struct{})
	go func() {
		wg.Wait()
		close(allEnded)
	}()

	stop := waitSwarm(runCtx, ctx, allEnded, func() {
		if cfg.Progress != nil {
			cfg.Progress(s.progress(start))
		}
	})
	cancel()
	<-allEnded
	if s.countReached.Load() {
		stop = "count"
	}
	return s.summary(requestors, time.Since(start), stop), nil
}

// waitSwarm calls tick once a second until the run ends and returns why it
// ended.
func waitSwarm(runCtx, parent context.Context, allEnded <-chan struct{}, tick func()) string {
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	for {
		select {
		case <-allEnded:
			return "closed"
		case <-runCtx.Done():
			if parent.Err() != nil {
				return "canceled"
			}
			return "duration"
		case <-ticker.C:
			tick()
		}
	}
}
