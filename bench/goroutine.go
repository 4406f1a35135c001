package bench

import (
	"bufio"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alqd/alqd/codec"
)

// The goroutine contender is how a Go server is usually written: per
// connection one goroutine that owns a net.Conn and a bufio.Writer and is
// fed by a buffered channel. The producer sends every message to the
// channel of each matching connection. With blocking sends (the default),
// a full channel holds the producer back. With dropping sends, a
// connection whose channel is full is closed as a slow consumer.

// goConn is one connection of the goroutine contender.
type goConn struct {
	conn   net.Conn
	key    uint32
	queue  chan []byte   // never closed: the producer may still send
	done   chan struct{} // closed by close
	closed atomic.Bool
}

// goServer is the goroutine-per-connection contender.
type goServer struct {
	ln       net.Listener
	filtered bool
	drop     bool // close a connection whose queue is full instead of waiting
	queueLen int

	mu    sync.RWMutex
	all   map[*goConn]struct{}
	byKey map[uint32][]*goConn
	list  []*goConn // snapshot of all for the producer, rebuilt on change
	dirty bool

	scratch []*goConn   // the producer's copy of one key's connections
	timer   *time.Timer // the producer's wait for a full queue

	subscribed atomic.Int64
	dropped    atomic.Int64 // connections closed because their queue was full
	wg         sync.WaitGroup
	baseTime   uint32
}

// goConfig configures a goServer.
type goConfig struct {
	Filtered bool
	Drop     bool
	QueueLen int // messages per connection queue
}

// newGoServer listens on an ephemeral loopback port.
func newGoServer(cfg goConfig) (*goServer, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &goServer{
		ln:       ln,
		filtered: cfg.Filtered,
		drop:     cfg.Drop,
		queueLen: max(cfg.QueueLen, 1),
		all:      make(map[*goConn]struct{}),
		byKey:    make(map[uint32][]*goConn),
		baseTime: codec.DHCPTime(time.Now()),
	}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

func (s *goServer) addr() string { return s.ln.Addr().String() }

func (s *goServer) accept() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		s.wg.Add(1)
		go s.serve(conn)
	}
}

// serve reads the subscription, then writes what the producer queues until
// the queue is closed or a write fails.
func (s *goServer) serve(conn net.Conn) {
	defer s.wg.Done()
	defer conn.Close()
	fr := codec.NewFrameReader(conn, 4096)
	msg, err := fr.ReadFrame()
	if err != nil {
		return
	}
	xid, key, err := parseActiveQuery(msg)
	if err != nil || (s.filtered && key == allKeys) {
		return
	}
	if _, err := conn.Write(subscribeReply(xid, s.baseTime)); err != nil {
		return
	}
	c := &goConn{conn: conn, key: key, queue: make(chan []byte, s.queueLen), done: make(chan struct{})}
	s.add(c)
	defer s.remove(c)

	// Read until the peer closes, so that a close is noticed without
	// waiting for the next message.
	go func() {
		var b [512]byte
		for {
			if _, err := conn.Read(b[:]); err != nil {
				c.close()
				return
			}
		}
	}()

	w := bufio.NewWriterSize(conn, 4096)
	for {
		select {
		case frame := <-c.queue:
			if _, err := w.Write(frame); err != nil {
				c.close()
				return
			}
			if len(c.queue) == 0 {
				if err := w.Flush(); err != nil {
					c.close()
					return
				}
			}
		case <-c.done:
			return
		}
	}
}

// close closes the connection once and stops its writer.
func (c *goConn) close() {
	if c.closed.Swap(true) {
		return
	}
	close(c.done)
	c.conn.Close()
}

func (s *goServer) add(c *goConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.all[c] = struct{}{}
	if s.filtered {
		s.byKey[c.key] = append(s.byKey[c.key], c)
	}
	s.dirty = true
	s.subscribed.Add(1)
}

// remove drops c from the producer's lists.
func (s *goServer) remove(c *goConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.all[c]; !ok {
		return
	}
	delete(s.all, c)
	if s.filtered {
		list := s.byKey[c.key]
		for i, o := range list {
			if o == c {
				list[i] = list[len(list)-1]
				s.byKey[c.key] = list[:len(list)-1]
				break
			}
		}
		if len(s.byKey[c.key]) == 0 {
			delete(s.byKey, c.key)
		}
	}
	s.dirty = true
	s.subscribed.Add(-1)
}

// publish queues frame on every connection subscribed to key. It is called
// by one goroutine at a time.
func (s *goServer) publish(key uint32, frame []byte) {
	var targets []*goConn
	if s.filtered {
		s.mu.RLock()
		// A copy, because add and remove change the slice in place.
		targets = append(s.scratch[:0], s.byKey[key]...)
		s.mu.RUnlock()
		s.scratch = targets
	} else {
		s.mu.Lock()
		if s.dirty {
			s.rebuildLocked()
		}
		targets = s.list
		s.mu.Unlock()
	}
	for _, c := range targets {
		if c.closed.Load() {
			continue
		}
		if s.drop {
			select {
			case c.queue <- frame:
			default:
				s.dropped.Add(1)
				c.close()
			}
			continue
		}
		select {
		case c.queue <- frame:
			continue
		default:
		}
		if s.timer == nil {
			s.timer = time.NewTimer(stallTimeout)
		} else {
			s.timer.Reset(stallTimeout)
		}
		select {
		case c.queue <- frame:
		case <-c.done:
		case <-s.timer.C:
			// A connection that takes nothing for this long is stalled;
			// waiting longer would stall the whole run.
			s.dropped.Add(1)
			c.close()
		}
		s.timer.Stop()
	}
}

// stallTimeout is how long a blocking publish waits for one connection.
const stallTimeout = 5 * time.Second

// rebuildLocked refreshes the producer's snapshot of all connections; the
// caller holds mu. A new slice each time, because the producer may still
// iterate the previous one.
func (s *goServer) rebuildLocked() {
	list := make([]*goConn, 0, len(s.all))
	for c := range s.all {
		list = append(list, c)
	}
	s.list = list
	s.dirty = false
}

func (s *goServer) close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.all {
		c.close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}
