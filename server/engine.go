package server

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// handler is the gnet event handler. Every callback but OnBoot and OnTick
// runs on the event loop that owns the connection.
type handler struct {
	gnet.BuiltinEventEngine
	srv *Server
}

func (h *handler) OnBoot(eng gnet.Engine) gnet.Action {
	s := h.srv
	err := s.boot(eng)
	if err != nil {
		s.runErr = err
	} else {
		s.log.Info("listening", "tcp", s.addr.String(), "udp", s.UDPAddr().String(),
			"event_loops", s.cfg.EventLoops, "max_conns", s.maxConns)
	}
	s.markReady()
	if err != nil {
		return gnet.Shutdown
	}
	return gnet.None
}

func (h *handler) OnOpen(gc gnet.Conn) ([]byte, gnet.Action) {
	s := h.srv
	s.metrics.accepted.Inc()
	s.metrics.connections.Inc()
	peer := remoteAddrPort(gc.RemoteAddr())
	now := time.Now()
	c := &conn{
		srv:        s,
		gc:         gc,
		id:         s.nextID.Add(1),
		peer:       peer,
		lastActive: now,
		openedAt:   now,
	}
	c.log = s.log.With("conn", c.id, "peer", peer.String())
	gc.SetContext(c)
	total := s.conns.Add(1)
	c.allowed = s.allowed(peer.Addr())

	// Limits first: a connection over one is closed before it costs more.
	// Connections from outside Allow have a cap of their own and count
	// against no other, so they can never lock out allowed requestors.
	if s.stopping.Load() {
		c.reason = CloseShutdown
		return nil, gnet.Close
	}
	if !c.allowed {
		c.unallowedSlot = true
		if s.unallowed.Add(1) > int64(s.cfg.MaxUnallowedConns) {
			return s.rejectConn(c, limitMaxUnallowedConns, s.cfg.MaxUnallowedConns)
		}
	} else {
		if total-s.unallowed.Load() > int64(s.maxConns) {
			return s.rejectConn(c, limitMaxConns, s.maxConns)
		}
		req, ok := s.requestors.open(peer.Addr())
		if !ok {
			return s.rejectConn(c, limitMaxConnsPerRequestor, s.cfg.MaxConnsPerRequestor)
		}
		c.requestor = req
	}

	c.loop = s.loopFor(gc.EventLoop())
	c.loop.conns[c] = struct{}{}
	if s.cfg.NotSentLowWater > 0 {
		if err := setNotSentLowWater(gc.Fd(), s.cfg.NotSentLowWater); err != nil {
			c.log.Warn("setting TCP_NOTSENT_LOWAT failed", "err", err)
		}
	}
	if !c.allowed {
		c.log.Debug("connection opened", "allowed", false)
		s.warnPeer(c, "connection from a requestor not on the allow-list", "timeout", s.cfg.UnallowedTimeout)
		return nil, gnet.None
	}
	c.log.Info("connection opened", "allowed", true)
	return nil, gnet.None
}

// Labels of alqd_connections_rejected_total: the connection limit reached.
const (
	limitMaxConns             = "max_conns"
	limitMaxConnsPerRequestor = "max_conns_per_requestor"
	limitMaxUnallowedConns    = "max_unallowed_conns"
)

// rejectConn closes c, which is over the connection limit named limit,
// counts it, and logs it at most once per WarnInterval for c's address.
func (s *Server) rejectConn(c *conn, limit string, maxConns int) ([]byte, gnet.Action) {
	c.reason = CloseTooManyConnections
	s.metrics.rejected.WithLabelValues(limit).Inc()
	s.warnPeer(c, "connection rejected", "reason", c.reason.String(), "limit", limit, "max", maxConns)
	return nil, gnet.Close
}

// warnPeer logs msg about c at most once per WarnInterval for c's address,
// with the number of warnings held back since the last one. A requestor
// can open connections at will, so these warnings are limited per address
// rather than per connection.
func (s *Server) warnPeer(c *conn, msg string, args ...any) {
	ok, suppressed := s.peerWarn.allow(c.peer.Addr(), time.Now())
	if !ok {
		return
	}
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	c.log.Warn(msg, args...)
}

func (h *handler) OnClose(gc gnet.Conn, err error) gnet.Action {
	c, _ := gc.Context().(*conn)
	if c == nil {
		return gnet.None
	}
	c.closed(err)
	return gnet.None
}

func (h *handler) OnTraffic(gc gnet.Conn) gnet.Action {
	c, _ := gc.Context().(*conn)
	if c == nil {
		return gnet.Close
	}
	return c.readFrames()
}

// OnTick runs on gnet's ticker goroutine, off the loops, so it only
// schedules the timeout sweep on every loop. The next tick is computed from
// a deadline because gnet schedules ticks by delay and drifts.
func (h *handler) OnTick() (time.Duration, gnet.Action) {
	s := h.srv
	now := time.Now()
	interval := s.sweepInterval()
	if s.nextSweep.IsZero() {
		s.nextSweep = now.Add(interval)
	}
	if !now.Before(s.nextSweep) {
		s.visitLoops((*loop).sweep)
		s.nextSweep = s.nextSweep.Add(interval)
		if s.nextSweep.Before(now) {
			s.nextSweep = now.Add(interval)
		}
	}
	return s.nextSweep.Sub(now), gnet.None
}

// drainPollInterval is how often connections waiting for their pending
// output to drain are checked: the pace of a bulk query to a requestor
// that reads slower than the server writes.
const drainPollInterval = time.Millisecond

// pollDrains runs while the server runs. gnet reports no drain event and
// its ticker cannot be woken early, so this goroutine, woken when the
// first connection starts waiting, schedules the drain checks on the loops
// every drainPollInterval while any connection waits.
func (s *Server) pollDrains(stop <-chan struct{}) {
	for {
		if s.drainWaiters.Load() == 0 {
			select {
			case <-s.drainWake:
			case <-stop:
				return
			}
		}
		s.visitLoops((*loop).checkDrains)
		select {
		case <-time.After(drainPollInterval):
		case <-stop:
			return
		}
	}
}

// sweepInterval is the period of the timeout sweep: a tenth of the
// shortest timeout, between 5 ms and 1 s, so a timeout fires at most about
// 10% late.
func (s *Server) sweepInterval() time.Duration {
	d := min(s.cfg.IdleTimeout, s.cfg.DataTimeout, s.cfg.UnallowedTimeout)
	if s.cfg.Active {
		d = min(d, s.cfg.ActiveIdleTimeout, s.cfg.ActiveSendTimeout)
	}
	d /= 10
	return min(max(d, 5*time.Millisecond), time.Second)
}

func (s *Server) markReady() {
	select {
	case <-s.ready:
	default:
		close(s.ready)
	}
}

// remoteAddrPort copies a gnet remote address into a value: gnet recycles
// the zone string of the address after the connection closes.
func remoteAddrPort(a net.Addr) netip.AddrPort {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}
	}
	ip, _ := netip.AddrFromSlice(ta.IP)
	if ta.Zone != "" {
		ip = ip.WithZone(strings.Clone(ta.Zone))
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(ta.Port))
}

// closeReasonFor maps the error gnet passes to OnClose for a close that
// the server did not decide.
func closeReasonFor(err error) CloseReason {
	var se *os.SyscallError
	switch {
	case err == nil,
		errors.Is(err, io.EOF),
		errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE):
		return ClosePeerClosed
	case errors.As(err, &se) && se.Syscall == "write", errors.As(err, &se) && se.Syscall == "writev":
		return CloseWriteError
	}
	return CloseReadError
}

// gnetLogger passes gnet's own messages to slog. gnet logs engine failures
// (such as the main reactor exiting after an accept error) only here.
type gnetLogger struct{ log *slog.Logger }

func (g gnetLogger) Debugf(format string, args ...any) {
	g.log.Debug("gnet", "detail", fmt.Sprintf(format, args...))
}
func (g gnetLogger) Infof(format string, args ...any) {
	g.log.Info("gnet", "detail", fmt.Sprintf(format, args...))
}
func (g gnetLogger) Warnf(format string, args ...any) {
	g.log.Warn("gnet", "detail", fmt.Sprintf(format, args...))
}
func (g gnetLogger) Errorf(format string, args ...any) {
	g.log.Error("gnet", "detail", fmt.Sprintf(format, args...))
}
func (g gnetLogger) Fatalf(format string, args ...any) {
	g.log.Error("gnet", "detail", fmt.Sprintf(format, args...))
}
