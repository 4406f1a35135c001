package bench

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/alqd/alqd/codec"
)

// The nats contender is nats-server embedded in the server child, fed by a
// nats.go publisher in the same process and read by nats.go subscribers in
// the client children. Each NATS message carries one DHCPv6 message
// (the frame without its 2-octet msg-size, because NATS frames it). An
// unfiltered subscriber subscribes to natsAllSubject; a filtered one to the
// subject of its relay key.

const natsAllSubject = "alq.all"

// natsSubject returns the subject of key.
func natsSubject(key uint32) string {
	if key == allKeys {
		return natsAllSubject
	}
	return "alq.r." + strconv.FormatUint(uint64(key), 10)
}

// natsFlushEvery is how many publishes the publisher sends between two
// round trips to the server: it keeps the publisher at most this far ahead
// of what the server has taken.
const natsFlushEvery = 64

// natsFlushTimeout ends a run whose publisher waits longer than this for a
// round trip: the server is too busy to take more.
const natsFlushTimeout = 5 * time.Second

// natsServer is the nats contender's server side.
type natsServer struct {
	srv       *natsserver.Server
	pub       *nats.Conn
	published int
	subjects  map[uint32]string
	baseSubs  uint32 // internal subscriptions present before any subscriber
}

// natsConfig configures a natsServer.
type natsConfig struct {
	// MaxPending is nats-server's max_pending: the octets queued for one
	// client before it is disconnected as a slow consumer. Producers stall
	// briefly once a subscriber has three quarters of it queued.
	MaxPending int64
	MaxConns   int
}

// newNatsServer starts an embedded nats-server on an ephemeral loopback port
// and connects the publisher.
func newNatsServer(cfg natsConfig) (*natsServer, error) {
	opts := &natsserver.Options{
		Host:       "127.0.0.1",
		Port:       natsserver.RANDOM_PORT,
		NoLog:      true,
		NoSigs:     true,
		MaxConn:    cfg.MaxConns,
		MaxPending: cfg.MaxPending,
		// nats-server requires max_pending >= max_payload; a DHCPv6
		// message fits in 64 KiB.
		MaxPayload: 64 << 10,
	}
	srv, err := natsserver.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("bench: creating nats-server: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("bench: nats-server did not accept connections within 10s")
	}
	pub, err := nats.Connect(srv.ClientURL(), nats.NoReconnect(), nats.Name("alqd-bench publisher"))
	if err != nil {
		srv.Shutdown()
		return nil, fmt.Errorf("bench: connecting the nats publisher: %w", err)
	}
	if err := pub.Flush(); err != nil {
		pub.Close()
		srv.Shutdown()
		return nil, fmt.Errorf("bench: connecting the nats publisher: %w", err)
	}
	return &natsServer{srv: srv, pub: pub, subjects: make(map[uint32]string), baseSubs: srv.NumSubscriptions()}, nil
}

// subscriptions returns the subscriptions of the bench subscribers, without
// the server's internal ones.
func (s *natsServer) subscriptions() int64 {
	return int64(s.srv.NumSubscriptions()) - int64(s.baseSubs)
}

func (s *natsServer) addr() string { return s.srv.Addr().String() }

// publish sends one message (a frame without its msg-size) to the subject
// of key, with a round trip every natsFlushEvery messages.
func (s *natsServer) publish(key uint32, frame []byte) error {
	subj, ok := s.subjects[key]
	if !ok {
		subj = natsSubject(key)
		s.subjects[key] = subj
	}
	if err := s.pub.Publish(subj, frame[codec.FrameHeaderLen:]); err != nil {
		return fmt.Errorf("bench: nats publish: %w", err)
	}
	s.published++
	if s.published%natsFlushEvery == 0 {
		return s.flush()
	}
	return nil
}

func (s *natsServer) flush() error {
	if err := s.pub.FlushTimeout(natsFlushTimeout); err != nil {
		return fmt.Errorf("nats-server sent no PONG within %v: %w", natsFlushTimeout, err)
	}
	return nil
}

// slowConsumers returns the clients nats-server disconnected as slow.
func (s *natsServer) slowConsumers() int64 {
	v, err := s.srv.Varz(nil)
	if err != nil {
		return -1
	}
	return v.SlowConsumers
}

func (s *natsServer) close() {
	s.pub.Close()
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
}

// natsClient holds the subscribers of one client child: nats.go
// connections for healthy subscribers and, for stalled or idle ones, raw
// NATS protocol connections that stop reading after their SUB.
type natsClient struct {
	args   connectArgs
	rs     *receiveStats
	mu     sync.Mutex
	conns  []*nats.Conn
	raw    []net.Conn
	msgs   atomic.Int64
	bytes  atomic.Int64
	first  atomic.Int64
	last   atomic.Int64
	closed atomic.Int64
}

func newNatsClient(args connectArgs) *natsClient {
	if args.DecodeEvery < 1 {
		args.DecodeEvery = 1
	}
	return &natsClient{args: args, rs: newReceiveStats()}
}

// connect opens the connections with a bounded number of workers.
func (c *natsClient) connect(deadline time.Time) connectResult {
	var res connectResult
	var resMu sync.Mutex
	work := make(chan int)
	var wg sync.WaitGroup
	for range max(c.args.MaxConnecting/8, 1) {
		wg.Go(func() {
			for i := range work {
				err := c.open(i, deadline)
				resMu.Lock()
				if err != nil {
					res.Failed++
					if res.FirstError == "" {
						res.FirstError = err.Error()
					}
				} else {
					res.Connected++
				}
				resMu.Unlock()
			}
		})
	}
	for i := 0; i < c.args.Conns && time.Now().Before(deadline); i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	return res
}

// open opens subscriber i.
func (c *natsClient) open(i int, deadline time.Time) error {
	subject := natsAllSubject
	if c.args.Filtered {
		subject = natsSubject(c.args.FirstKey + uint32(i))
	}
	stalled := c.args.Kind == kindNATSRaw || (c.args.StallEvery > 0 && i%c.args.StallEvery == 0)
	if stalled {
		return c.openRaw(subject, deadline)
	}

	var dialer net.Dialer
	if c.args.Source != "" {
		dialer.LocalAddr = &net.TCPAddr{IP: net.ParseIP(c.args.Source)}
	}
	nc, err := nats.Connect("nats://"+c.args.Addr,
		nats.NoReconnect(),
		nats.SetCustomDialer(&dialer),
		nats.Timeout(time.Until(deadline)),
		nats.ClosedHandler(func(*nats.Conn) { c.closed.Add(1) }),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}),
	)
	if err != nil {
		return fmt.Errorf("nats connect: %w", err)
	}
	dec := &probeDecoder{}
	_, err = nc.Subscribe(subject, func(m *nats.Msg) {
		now := time.Now().UnixNano()
		n := c.msgs.Add(1)
		c.bytes.Add(int64(len(m.Data) + codec.FrameHeaderLen))
		c.first.CompareAndSwap(0, now)
		c.last.Store(now)
		if n%int64(c.args.DecodeEvery) != 0 {
			return
		}
		c.rs.mu.Lock()
		defer c.rs.mu.Unlock()
		c.rs.decodedLocked(dec, m.Data, now)
	})
	if err == nil {
		err = nc.FlushTimeout(time.Until(deadline))
	}
	if err != nil {
		nc.Close()
		return fmt.Errorf("nats subscribe: %w", err)
	}
	c.mu.Lock()
	c.conns = append(c.conns, nc)
	c.mu.Unlock()
	c.rs.mu.Lock()
	c.rs.stats.Subscribed++
	c.rs.mu.Unlock()
	return nil
}

// openRaw opens a NATS protocol connection that subscribes to subject and
// then never reads again.
func (c *natsClient) openRaw(subject string, deadline time.Time) error {
	dialer := net.Dialer{Deadline: deadline}
	if c.args.Source != "" {
		dialer.LocalAddr = &net.TCPAddr{IP: net.ParseIP(c.args.Source)}
	}
	conn, err := dialer.Dial("tcp4", c.args.Addr)
	if err != nil {
		return err
	}
	conn.SetDeadline(deadline)

	// INFO, then CONNECT and SUB, then a PING whose PONG confirms the SUB.
	br := bufio.NewReaderSize(conn, 4096)
	line, err := br.ReadString('\n')
	if err == nil && !strings.HasPrefix(line, "INFO ") {
		err = fmt.Errorf("nats server greeted with %q, want INFO", strings.TrimSpace(line))
	}
	if err == nil {
		_, err = fmt.Fprintf(conn, "CONNECT {\"verbose\":false,\"pedantic\":false,\"name\":\"alqd-bench stalled\"}\r\nSUB %s 1\r\nPING\r\n", subject)
	}
	for err == nil {
		line, err = br.ReadString('\n')
		if strings.HasPrefix(line, "PONG") {
			break
		}
		if strings.HasPrefix(line, "-ERR") {
			err = fmt.Errorf("nats server: %s", strings.TrimSpace(line))
		}
	}
	if err != nil {
		conn.Close()
		return fmt.Errorf("raw nats subscriber: %w", err)
	}

	conn.SetDeadline(time.Time{})
	c.mu.Lock()
	c.raw = append(c.raw, conn)
	c.mu.Unlock()
	c.rs.mu.Lock()
	c.rs.stats.Subscribed++
	c.rs.mu.Unlock()
	return nil
}

// stats returns the counters, starting them over when reset is set.
func (c *natsClient) stats(reset bool) clientStats {
	var msgs, bytes, first, last int64
	if reset {
		msgs, bytes, first, last = c.msgs.Swap(0), c.bytes.Swap(0), c.first.Swap(0), c.last.Swap(0)
	} else {
		msgs, bytes, first, last = c.msgs.Load(), c.bytes.Load(), c.first.Load(), c.last.Load()
	}
	s := c.rs.snapshot(reset)
	s.Healthy.Messages, s.Healthy.Bytes = msgs, bytes
	s.Healthy.Closed = int(c.closed.Load())
	s.FirstRecv, s.LastRecv = first, last
	return s
}

func (c *natsClient) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, nc := range c.conns {
		nc.Close()
	}
	for _, conn := range c.raw {
		conn.Close()
	}
	c.conns, c.raw = nil, nil
}
