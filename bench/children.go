package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"time"
)

// profilePath returns the CPU profile file of one measurement in dir, or ""
// when dir is "".
func profilePath(dir, scenario, contender string, conns int) string {
	if dir == "" {
		return ""
	}
	return filepath.Join(dir, fmt.Sprintf("%s-%s-%d.cpu.pprof", scenario, contender, conns))
}

// startArgs is the start request of a server child: the contender and its
// settings.
type startArgs struct {
	Contender string `json:"contender"`
	Filtered  bool   `json:"filtered"`
	// Drop selects the slow-consumer policy of the raw and goroutine
	// contenders: close a connection that falls behind instead of holding
	// the producer back.
	Drop bool `json:"drop"`
	// Window is how far the producer may run ahead before it waits: in
	// messages per connection, or in messages in all for filtered runs
	// (raw and alqd gates).
	Window int `json:"window"`
	// QueueLen is the goroutine contender's queue per connection.
	QueueLen int `json:"queue_len"`
	// RingSize is the raw ring capacity in messages, a power of two.
	RingSize   int   `json:"ring_size"`
	MaxPending int64 `json:"max_pending"` // nats-server max_pending, octets
	MaxConns   int   `json:"max_conns"`
	FrameSize  int   `json:"frame_size"`
	// NoQuery starts the alqd contender without Active Leasequery, for idle
	// connections that send nothing.
	NoQuery bool `json:"no_query"`
	// CPUProfile is a file to write the child's CPU profile to, from start
	// until the child exits; "" writes none.
	CPUProfile string `json:"cpu_profile,omitempty"`
}

// startResult is the address and protocol of the started contender.
type startResult struct {
	Addr string `json:"addr"`
	Kind string `json:"kind"` // connectArgs.Kind of its subscribers
}

// produceArgs is one bounded publishing run.
type produceArgs struct {
	// Rate is the offered rate in messages per second; 0 publishes as fast
	// as the contender takes messages.
	Rate float64 `json:"rate"`
	// Duration bounds the run; MaxCount bounds the messages.
	Duration time.Duration `json:"duration"`
	MaxCount int           `json:"max_count"`
	// Keys spreads the messages round-robin over relay keys 0..Keys-1; 0
	// sends every message to every subscriber.
	Keys int `json:"keys"`
	// Batch is the number of messages published per step.
	Batch int `json:"batch"`
	// MemEvery samples the server's memory this often during the run; 0
	// takes no samples.
	MemEvery time.Duration `json:"mem_every"`
}

// memPoint is one memory sample of a run.
type memPoint struct {
	At  time.Duration `json:"at"` // since the run started
	RSS int64         `json:"rss"`
}

// produceResult reports a publishing run.
type produceResult struct {
	// Error is the reason the run ended early, such as a contender that
	// stopped taking messages. It is a result, not a failure of the harness.
	Error     string     `json:"error,omitempty"`
	Published int        `json:"published"`
	Start     int64      `json:"start"` // Unix ns of the first publish
	End       int64      `json:"end"`   // Unix ns after the last publish
	Mem       []memPoint `json:"mem,omitempty"`
}

// serverStatus is the server side's view of its connections.
type serverStatus struct {
	// Subscribed counts subscribed connections, or -1 when the contender
	// does not tell.
	Subscribed int64 `json:"subscribed"`
	// SlowClosed counts connections closed by the slow-consumer policy.
	SlowClosed int64     `json:"slow_closed"`
	Mem        memSample `json:"mem"`
}

// fanoutServer is the server side of one contender inside a server child.
type fanoutServer interface {
	// Addr returns the host:port the subscribers connect to.
	Addr() string
	// Kind returns the connectArgs.Kind of its subscribers.
	Kind() string
	// Publish sends one message per key and stamp (see the probe layout in
	// frame.go) to the subscribers of each key.
	Publish(keys []uint32, stamps []int64) error
	// Flush sends what Publish queued; the producer calls it before it
	// waits and at the end of a run.
	Flush()
	// Status reports subscriptions and slow-consumer closes.
	Status() (subscribed, slowClosed int64)
	Close()
}

// frameServer adapts the contenders that publish pre-encoded frames.
type frameServer struct {
	fb      *frameBuilder
	arena   []byte
	kind    string
	addr    func() string
	publish func(key uint32, frame []byte) error
	flush   func() // after each batch; nil for none
	status  func() (int64, int64)
	close   func()
}

func (f *frameServer) Addr() string { return f.addr() }
func (f *frameServer) Kind() string { return f.kind }
func (f *frameServer) Close()       { f.close() }
func (f *frameServer) Status() (int64, int64) {
	return f.status()
}

// Publish encodes each frame once, into an arena so that frames cost no
// allocation of their own, and hands it to the contender.
func (f *frameServer) Publish(keys []uint32, stamps []int64) error {
	for i, key := range keys {
		if cap(f.arena)-len(f.arena) < f.fb.size {
			f.arena = make([]byte, 0, max(1<<20, f.fb.size))
		}
		start := len(f.arena)
		f.arena = f.fb.appendFrame(f.arena, key, stamps[i])
		if err := f.publish(key, f.arena[start:len(f.arena):len(f.arena)]); err != nil {
			return err
		}
	}
	return nil
}

// Flush makes the contender send what Publish handed it.
func (f *frameServer) Flush() {
	if f.flush != nil {
		f.flush()
	}
}

// alqdFanout adapts alqdServer.
type alqdFanout struct{ *alqdServer }

func (a alqdFanout) Addr() string { return a.addr() }
func (a alqdFanout) Kind() string { return kindLQ }
func (a alqdFanout) Publish(keys []uint32, stamps []int64) error {
	return a.publish(keys, stamps)
}
func (a alqdFanout) Flush() {}
func (a alqdFanout) Status() (int64, int64) {
	m := a.readMetrics()
	return m.conns, m.slowClosed
}
func (a alqdFanout) Close() { a.close() }

// startFanoutServer starts the server side of a contender.
func startFanoutServer(args startArgs) (fanoutServer, error) {
	if args.Contender == contenderAlqd {
		a, err := newAlqdServer(alqdConfig{
			Active: !args.NoQuery, MaxConns: args.MaxConns, FrameSize: args.FrameSize,
			Gate: !args.Drop, Window: args.Window, Filtered: args.Filtered,
		})
		if err != nil {
			return nil, err
		}
		return alqdFanout{a}, nil
	}

	fb, err := newFrameBuilder(args.FrameSize)
	if err != nil {
		return nil, err
	}
	f := &frameServer{fb: fb, kind: kindLQ}
	switch args.Contender {
	case contenderRaw:
		s, err := newRawServer(rawConfig{Filtered: args.Filtered, Gate: !args.Drop, Window: args.Window, RingSize: args.RingSize})
		if err != nil {
			return nil, err
		}
		f.addr = func() string { return s.addr }
		f.publish = func(key uint32, frame []byte) error { s.publish(key, frame); return nil }
		f.flush = s.flush
		f.status = func() (int64, int64) { return s.subscribed.Load(), s.lapped.Load() }
		f.close = s.close
	case contenderGoroutine:
		s, err := newGoServer(goConfig{Filtered: args.Filtered, Drop: args.Drop, QueueLen: args.QueueLen})
		if err != nil {
			return nil, err
		}
		f.addr = s.addr
		f.publish = func(key uint32, frame []byte) error { s.publish(key, frame); return nil }
		f.status = func() (int64, int64) { return s.subscribed.Load(), s.dropped.Load() }
		f.close = s.close
	case contenderNATS:
		s, err := newNatsServer(natsConfig{MaxPending: args.MaxPending, MaxConns: args.MaxConns})
		if err != nil {
			return nil, err
		}
		f.kind = kindNATS
		f.addr = s.addr
		f.publish = s.publish
		f.status = func() (int64, int64) { return s.subscriptions(), s.slowConsumers() }
		f.close = s.close
	default:
		return nil, fmt.Errorf("bench: unknown contender %q", args.Contender)
	}
	return f, nil
}

// serverChild is the state of a server child process.
type serverChild struct {
	srv     fanoutServer
	profile *os.File
}

func (s *serverChild) ops() map[string]childOp {
	return map[string]childOp{
		"start":   s.start,
		"produce": s.produce,
		"status":  s.status,
	}
}

func (s *serverChild) close() {
	if s.profile != nil {
		pprof.StopCPUProfile()
		s.profile.Close()
	}
	if s.srv != nil {
		s.srv.Close()
	}
}

func (s *serverChild) start(raw json.RawMessage) (any, error) {
	var args startArgs
	if err := json.Unmarshal(raw, &args); err != nil {
		return nil, err
	}
	if s.srv != nil {
		return nil, errors.New("a contender is already running in this child")
	}
	if args.CPUProfile != "" {
		f, err := os.Create(args.CPUProfile)
		if err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, err
		}
		s.profile = f
	}
	srv, err := startFanoutServer(args)
	if err != nil {
		return nil, err
	}
	s.srv = srv
	return startResult{Addr: srv.Addr(), Kind: srv.Kind()}, nil
}

// status reports the server's connections and memory. args is a bool:
// settle the heap before reading memory.
func (s *serverChild) status(raw json.RawMessage) (any, error) {
	var settle bool
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &settle); err != nil {
			return nil, err
		}
	}
	var st serverStatus
	if s.srv != nil {
		st.Subscribed, st.SlowClosed = s.srv.Status()
	}
	var err error
	st.Mem, err = sampleMemory(settle)
	return st, err
}

// produce publishes for a bounded time and count.
func (s *serverChild) produce(raw json.RawMessage) (any, error) {
	var args produceArgs
	if err := json.Unmarshal(raw, &args); err != nil {
		return nil, err
	}
	if s.srv == nil {
		return nil, errors.New("produce before start")
	}
	if args.Duration <= 0 || args.Duration > childLifetime {
		return nil, fmt.Errorf("produce duration %v is not in (0, %v]", args.Duration, childLifetime)
	}
	res, err := runProducer(s.srv, args)
	if err != nil {
		res.Error = err.Error()
	}
	return res, nil
}

// runProducer publishes at args.Rate (or as fast as srv takes messages)
// until args.Duration has passed or args.MaxCount messages were published.
func runProducer(srv fanoutServer, args produceArgs) (produceResult, error) {
	batch := max(args.Batch, 1)
	keys := make([]uint32, 0, batch)
	stamps := make([]int64, 0, batch)
	var res produceResult
	start := time.Now()
	res.Start = start.UnixNano()
	deadline := start.Add(args.Duration)
	nextMem := time.Duration(0)
	var last int64
	for {
		now := time.Now()
		elapsed := now.Sub(start)
		if args.MemEvery > 0 && elapsed >= nextMem {
			if rss, err := procRSS(0); err == nil {
				res.Mem = append(res.Mem, memPoint{At: elapsed, RSS: rss})
			}
			nextMem += args.MemEvery
		}
		if !now.Before(deadline) || (args.MaxCount > 0 && res.Published >= args.MaxCount) {
			break
		}

		n := batch
		if args.Rate > 0 {
			due := int(args.Rate*elapsed.Seconds()) - res.Published
			if due <= 0 {
				srv.Flush()
				time.Sleep(200 * time.Microsecond)
				continue
			}
			n = min(n, due)
		}
		if args.MaxCount > 0 {
			n = min(n, args.MaxCount-res.Published)
		}

		keys, stamps = keys[:0], stamps[:0]
		stamp := now.UnixNano()
		for i := range n {
			key := uint32(allKeys)
			if args.Keys > 0 {
				key = uint32((res.Published + i) % args.Keys)
			}
			// Stamps are unique, so that every probe is a new binding.
			stamp = max(stamp, last+1)
			last = stamp
			keys = append(keys, key)
			stamps = append(stamps, stamp)
		}
		if err := srv.Publish(keys, stamps); err != nil {
			res.End = time.Now().UnixNano()
			return res, err
		}
		res.Published += n
	}
	srv.Flush()
	res.End = time.Now().UnixNano()
	return res, nil
}

// clientChild is the state of a client child process.
type clientChild struct {
	lq   *lqClient
	nats *natsClient
}

func (c *clientChild) ops() map[string]childOp {
	return map[string]childOp{
		"connect": c.connect,
		"stats":   c.stats,
	}
}

func (c *clientChild) close() {
	if c.lq != nil {
		c.lq.close()
	}
	if c.nats != nil {
		c.nats.close()
	}
}

// connectTimeout bounds the connect phase of one client child.
const connectTimeout = 90 * time.Second

func (c *clientChild) connect(raw json.RawMessage) (any, error) {
	var args connectArgs
	if err := json.Unmarshal(raw, &args); err != nil {
		return nil, err
	}
	if c.lq != nil || c.nats != nil {
		return nil, errors.New("this client child is already connected")
	}
	deadline := time.Now().Add(connectTimeout)
	switch args.Kind {
	case kindLQ:
		lq, err := newLQClient(args)
		if err != nil {
			return nil, err
		}
		c.lq = lq
		return lq.connect(deadline), nil
	case kindNATS, kindNATSRaw:
		c.nats = newNatsClient(args)
		return c.nats.connect(deadline), nil
	}
	return nil, fmt.Errorf("unknown connection kind %q", args.Kind)
}

// stats returns the client's counters; args is a bool: start them over.
func (c *clientChild) stats(raw json.RawMessage) (any, error) {
	var reset bool
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &reset); err != nil {
			return nil, err
		}
	}
	switch {
	case c.lq != nil:
		return c.lq.stats(reset), nil
	case c.nats != nil:
		return c.nats.stats(reset), nil
	}
	return nil, errors.New("stats before connect")
}
