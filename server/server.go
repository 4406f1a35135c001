package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// Server answers Bulk Leasequery (RFC 5460, with the RFC 7653 time options)
// over TCP on gnet event loops, and Leasequery (RFC 5007) over UDP. Create
// it with New, start it with Run, stop it with Shutdown. Its methods are
// safe for concurrent use.
type Server struct {
	cfg      Config
	src      Store
	log      *slog.Logger
	metrics  *Metrics
	clock    func() time.Time
	policy   policy
	maxConns int

	engine    gnet.Engine
	addr      netip.AddrPort
	udp       *udpServer
	ready     chan struct{}
	ran       atomic.Bool
	stopping  atomic.Bool
	runErr    error
	runDone   chan struct{}
	producers sync.WaitGroup

	loopsMu sync.Mutex
	loops   map[gnet.EventLoop]*loop

	conns        atomic.Int64
	requestors   requestorTable
	drainWaiters atomic.Int64  // connections on a drain list
	drainWake    chan struct{} // wakes pollDrains when drainWaiters leaves 0
	nextID       atomic.Uint64
	nextSweep    time.Time // ticker goroutine only

	encodeWarn warnLimiter   // bindings that did not fit in a reply
	peerWarn   sourceLimiter // rejected and not allowed connections, per address
	unallowed  atomic.Int64  // open connections from addresses outside Allow

	active *activeServer // Active Leasequery; nil when Config.Active is off
	tls    *tlsServer    // secure mode; nil without Config.TLS
}

// Option sets a hook of a Server: logger, metrics or clock.
type Option func(*Server)

// WithLogger sets the logger; the default is slog.Default().
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.log = l } }

// WithMetrics sets the collectors the server updates; the default is a
// private set that is not registered anywhere.
func WithMetrics(m *Metrics) Option { return func(s *Server) { s.metrics = m } }

// WithClock sets the clock for lifetimes, OPTION_CLT_TIME,
// OPTION_LQ_BASE_TIME and the RFC 7653 time options; the default is
// time.Now. Timeouts always use the real clock.
func WithClock(clock func() time.Time) Option { return func(s *Server) { s.clock = clock } }

// New checks cfg and returns a Server that reads bindings from src. The
// caller keeps src open until Shutdown has returned.
func New(cfg Config, src Store, opts ...Option) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if src == nil {
		return nil, fmt.Errorf("%w: the store is nil", ErrInvalidConfig)
	}
	if _, ok := src.(ActiveStore); cfg.Active && !ok {
		return nil, fmt.Errorf("%w: Active Leasequery needs a store that also implements ActiveStore", ErrInvalidConfig)
	}
	cfg = cfg.withDefaults()
	cfg.Allow = unmapPrefixes(cfg.Allow)

	s := &Server{
		cfg:        cfg,
		src:        src,
		log:        slog.Default(),
		clock:      time.Now,
		ready:      make(chan struct{}),
		runDone:    make(chan struct{}),
		drainWake:  make(chan struct{}, 1),
		loops:      make(map[gnet.EventLoop]*loop),
		encodeWarn: warnLimiter{interval: cfg.WarnInterval},
		peerWarn:   sourceLimiter{interval: cfg.WarnInterval},
		policy: policy{
			serverID: src.ServerDUID(),
			served:   cfg.Served,
			deny:     newOptionSet(cfg.DenyOptions),
		},
	}
	for _, o := range opts {
		o(s)
	}
	if s.metrics == nil {
		m, err := NewMetrics(nil)
		if err != nil {
			return nil, err
		}
		s.metrics = m
	}
	var err error
	if s.tls, err = newTLSServer(&cfg.TLS); err != nil {
		return nil, err
	}
	s.requestors = requestorTable{
		maxConns:   cfg.MaxConnsPerRequestor,
		maxQueries: cfg.MaxQueriesPerRequestor,
		m:          make(map[netip.Addr]*requestor),
	}
	return s, nil
}

// Run serves until Shutdown, and returns nil after a Shutdown. Any other
// return is fatal for the process. ErrEngineStopped means the event engine
// stopped by itself: gnet stops the whole engine when accept(2) fails, for
// example with EMFILE, and then returns nil. Other errors come from a
// listener that could not start. Run may be called once.
func (s *Server) Run() error {
	if !s.ran.CompareAndSwap(false, true) {
		return ErrServerClosed
	}
	defer close(s.runDone)
	if s.stopping.Load() {
		// Shutdown ran before Run: serve nothing.
		s.markReady()
		return ErrServerClosed
	}

	s.maxConns = s.cfg.MaxConns
	if limit, err := raiseFileLimit(); err != nil {
		s.log.Warn("raising the open file limit failed", "err", err)
	} else if fit := max(connsForFileLimit(limit, fileReserve(s.src, s.cfg.EventLoops))-s.cfg.MaxUnallowedConns, 1); fit < s.maxConns {
		s.log.Warn("connection limit lowered to fit the open file limit",
			"max_conns", fit, "configured", s.cfg.MaxConns, "nofile", limit)
		s.maxConns = fit
	}

	// gnet 2.9.7 reports a failed bind as the error of a later setsockopt on
	// the closed socket ("bad file descriptor"); a trial bind names the cause.
	if err := probeListen(s.cfg.Listen); err != nil {
		s.markReady()
		return err
	}

	if s.cfg.Active {
		if err := s.startActive(); err != nil {
			s.markReady()
			return err
		}
		defer s.active.stop()
		s.warnShortTimeouts()
	}

	stopPoll := make(chan struct{})
	pollDone := make(chan struct{})
	go func() {
		defer close(pollDone)
		s.pollDrains(stopPoll)
	}()
	err := gnet.Run(&handler{srv: s}, "tcp://"+s.cfg.Listen,
		gnet.WithMulticore(true),
		gnet.WithNumEventLoop(s.cfg.EventLoops),
		gnet.WithLoadBalancing(gnet.LeastConnections),
		gnet.WithTicker(true),
		gnet.WithTCPKeepAlive(time.Minute),
		// A restarted server must bind its port while the connections it
		// closed on shutdown are still in TIME_WAIT.
		gnet.WithReuseAddr(true),
		gnet.WithLogger(gnetLogger{log: s.log}),
	)
	close(stopPoll)
	<-pollDone
	if s.udp != nil {
		s.udp.close()
	}
	s.tls.closeAll()
	s.producers.Wait()
	switch {
	case s.runErr != nil:
		return s.runErr
	case s.stopping.Load():
		return nil
	case err != nil:
		return fmt.Errorf("%w: %w", ErrEngineStopped, err)
	}
	return ErrEngineStopped
}

// Ready is closed once the listeners are bound and Addr and UDPAddr are
// valid, or once Run has failed.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr returns the bound TCP address; valid after Ready.
func (s *Server) Addr() netip.AddrPort { return s.addr }

// UDPAddr returns the bound UDP address, or the zero value when UDP is
// off; valid after Ready.
func (s *Server) UDPAddr() netip.AddrPort {
	if s.udp == nil {
		return netip.AddrPort{}
	}
	return s.udp.addr
}

// Shutdown stops accepting connections and stops the UDP listener. Every
// running bulk query ends with a LEASEQUERY-DONE QueryTerminated (RFC 5460
// section 5.2.2), and every connection closes once its pending output is
// sent. Shutdown returns when Run has returned and no query goroutine is
// left. When ctx ends first, the remaining connections are closed without
// waiting and Shutdown returns ctx.Err() after Run has returned.
func (s *Server) Shutdown(ctx context.Context) error {
	if !s.stopping.CompareAndSwap(false, true) {
		<-s.runDone
		return nil
	}
	if !s.ran.Load() {
		return nil
	}
	<-s.ready
	if s.udp != nil {
		s.udp.close()
	}

	s.forEachLoop(func(l *loop) { l.shutdown() })
	s.tls.shutdown()
	var waitErr error
	for s.conns.Load() > 0 && waitErr == nil {
		select {
		case <-ctx.Done():
			waitErr = ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}

	// Engine.Stop polls every 500 ms; Run returning is the real signal.
	go func() { _ = s.engine.Stop(context.Background()) }()
	<-s.runDone
	return waitErr
}

// forEachLoop schedules fn on every event loop seen so far.
func (s *Server) forEachLoop(fn func(*loop)) {
	s.loopsMu.Lock()
	defer s.loopsMu.Unlock()
	for _, l := range s.loops {
		l.execute(fn)
	}
}

// visitLoops calls fn for every event loop seen so far, on the calling
// goroutine.
func (s *Server) visitLoops(fn func(*loop)) {
	s.loopsMu.Lock()
	defer s.loopsMu.Unlock()
	for _, l := range s.loops {
		fn(l)
	}
}

// loopFor returns the state of the event loop el, creating it on first use.
func (s *Server) loopFor(el gnet.EventLoop) *loop {
	s.loopsMu.Lock()
	defer s.loopsMu.Unlock()
	l := s.loops[el]
	if l == nil {
		l = newLoop(s, el)
		s.loops[el] = l
	}
	return l
}

// boot finishes start-up once gnet has bound the TCP listener: it reads
// the bound address and starts UDP on the same port.
func (s *Server) boot(eng gnet.Engine) error {
	s.engine = eng
	fd, err := eng.Dup()
	if err != nil {
		return fmt.Errorf("server: duplicating the TCP listener to read its address: %w", err)
	}
	sa, err := unix.Getsockname(fd)
	_ = unix.Close(fd)
	if err != nil {
		return fmt.Errorf("server: reading the TCP listener address: %w", err)
	}
	s.addr = sockaddrToAddrPort(sa)

	if strings.EqualFold(s.cfg.ListenUDP, "off") {
		return nil
	}
	udpAddr := s.cfg.ListenUDP
	if udpAddr == "" {
		host, _, err := net.SplitHostPort(s.cfg.Listen)
		if err != nil {
			return fmt.Errorf("server: listen address %q: %w", s.cfg.Listen, err)
		}
		udpAddr = net.JoinHostPort(host, fmt.Sprint(s.addr.Port()))
	}
	u, err := startUDP(s, udpAddr)
	if err != nil {
		return err
	}
	s.udp = u
	return nil
}

// probeListen binds the TCP listen address once and releases it, so that an
// address in use or not available is reported as such before gnet starts.
func probeListen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("server: listen on %s: %w", addr, err)
	}
	return ln.Close()
}

func sockaddrToAddrPort(sa unix.Sockaddr) netip.AddrPort {
	switch a := sa.(type) {
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	}
	return netip.AddrPort{}
}

// allowed reports whether the requestor address a is on the allow-list.
func (s *Server) allowed(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range s.cfg.Allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func unmapPrefixes(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		if p.Addr().Is4In6() {
			bits := p.Bits() - 96
			if bits < 0 {
				bits = 0
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), bits)
		}
		out = append(out, p.Masked())
	}
	return out
}
