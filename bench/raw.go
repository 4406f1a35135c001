package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/alqd/alqd/codec"
)

// The raw contender is the limit the others are measured against: one
// goroutine per core, each with its own epoll set, writing frames that the
// producer encoded once into a shared ring. Per pass a loop concatenates
// the new frames once. It hands that buffer to every connection at the
// loop's position with one write(2), so it does no per-message work per
// connection. Filtered connections get their matching frames with one
// writev(2) per pass.
//
// Invariants:
//
//  1. Only the producer writes ring slots. A slot holds a *rawMsg whose seq
//     is the ring position it was published at, so a reader detects an
//     overwritten slot (a lapped connection) by comparing seq.
//  2. head is stored after the slot it covers, so every position below a
//     loaded head is readable.
//  3. A connection's cursor is the position of the next frame it needs and
//     off the octets of that frame already written; a connection at the
//     loop's position with off 0 is "in step" and shares the pass buffer.
//  4. Each loop publishes the smallest cursor of its connections (or its
//     own position) in minCursor; the gate keeps the producer at most
//     window positions ahead of the smallest of them, so gated runs never
//     lap anyone.
//
// Rejected alternative: one writev per connection built from ring slots
// costs an iovec per frame per connection, which is per-message work.

// rawMsg is one published frame.
type rawMsg struct {
	seq   uint64
	key   uint32
	frame []byte
}

// rawConn is one subscriber connection, owned by its loop.
type rawConn struct {
	fd          int
	key         uint32
	subscribed  bool
	blocked     bool
	in          []byte   // bytes of the subscription frame read so far
	cursor      uint64   // next ring position to send
	off         int      // octets of the frame at cursor already written
	pending     [][]byte // filtered: matching frames not yet written
	pendingHead int      // first frame of pending not yet written
	pendingOff  int      // octets of pending[pendingHead] already written
	liveIndex   int      // position in rawLoop.live, -1 when absent
}

// rawServer is the raw epoll writer.
type rawServer struct {
	lfd       int
	addr      string
	filtered  bool
	gate      bool   // wait for the slowest connection (else lap and close it)
	window    uint64 // gate: maximum positions ahead of the slowest cursor
	slots     []atomic.Pointer[rawMsg]
	head      atomic.Uint64 // positions published; the next is head
	unflushed int           // frames published since the last flush (producer only)
	// flushEvery is how many published frames wake the loops: half the
	// window, so that a pass carries many frames per connection (a loop
	// woken per frame would write each filtered frame with its own
	// syscall) while the producer keeps going.
	flushEvery int
	loops      []*rawLoop
	next       atomic.Uint64 // round-robin loop choice for new connections

	subscribed atomic.Int64
	lapped     atomic.Int64 // connections closed because the ring lapped them
	gateWait   chan struct{}
	waiting    atomic.Bool
	stopping   atomic.Bool
	wg         sync.WaitGroup
}

// rawLoop is one event loop with its connections.
type rawLoop struct {
	srv       *rawServer
	epfd      int
	efd       int // eventfd that wakes the loop
	woken     atomic.Bool
	mu        sync.Mutex
	incoming  []int // accepted fds waiting for the loop
	conns     map[int]*rawConn
	live      []*rawConn // subscribed, unfiltered
	byKey     map[uint32][]*rawConn
	pos       uint64 // ring position this loop has handed out up to
	minCursor atomic.Uint64
	batch     []byte
	sizes     []int // frame sizes in batch
	iov       [][]byte
	iovecs    []unix.Iovec
	touched   []*rawConn
	scratch   []byte
	baseTime  uint32
}

// rawConfig configures a rawServer.
type rawConfig struct {
	Filtered bool
	Gate     bool
	Window   int // gate window in messages
	RingSize int // ring capacity in messages, a power of two
	Loops    int // event loops; 0 means one per CPU
}

// newRawServer listens on an ephemeral loopback port and starts the loops.
func newRawServer(cfg rawConfig) (*rawServer, error) {
	if cfg.RingSize <= 0 || cfg.RingSize&(cfg.RingSize-1) != 0 {
		return nil, fmt.Errorf("bench: raw ring size %d is not a power of two", cfg.RingSize)
	}
	if cfg.Gate && (cfg.Window <= 0 || cfg.Window > cfg.RingSize) {
		return nil, fmt.Errorf("bench: raw gate window %d is not in 1..%d", cfg.Window, cfg.RingSize)
	}
	if cfg.Loops <= 0 {
		cfg.Loops = runtime.NumCPU()
	}
	s := &rawServer{
		filtered:   cfg.Filtered,
		gate:       cfg.Gate,
		window:     uint64(cfg.Window),
		slots:      make([]atomic.Pointer[rawMsg], cfg.RingSize),
		gateWait:   make(chan struct{}, 1),
		flushEvery: max(cfg.Window/2, 64),
	}

	lfd, port, err := listenLoopback()
	if err != nil {
		return nil, err
	}
	s.lfd, s.addr = lfd, fmt.Sprintf("127.0.0.1:%d", port)
	for range cfg.Loops {
		l, err := s.newLoop()
		if err != nil {
			s.close()
			return nil, err
		}
		s.loops = append(s.loops, l)
	}

	for _, l := range s.loops {
		s.wg.Add(1)
		go l.run()
	}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// listenLoopback opens a blocking TCP listener on 127.0.0.1 with an
// ephemeral port.
func listenLoopback() (fd, port int, err error) {
	fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, 0, fmt.Errorf("bench: socket: %w", err)
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		unix.Close(fd)
		return -1, 0, fmt.Errorf("bench: bind 127.0.0.1:0: %w", err)
	}
	if err := unix.Listen(fd, 4096); err != nil {
		unix.Close(fd)
		return -1, 0, fmt.Errorf("bench: listen: %w", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return -1, 0, fmt.Errorf("bench: getsockname: %w", err)
	}
	return fd, sa.(*unix.SockaddrInet4).Port, nil
}

func (s *rawServer) newLoop() (*rawLoop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("bench: epoll_create1: %w", err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("bench: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(efd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, efd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(efd)
		return nil, fmt.Errorf("bench: epoll_ctl eventfd: %w", err)
	}
	return &rawLoop{
		srv:      s,
		epfd:     epfd,
		efd:      efd,
		conns:    make(map[int]*rawConn),
		byKey:    make(map[uint32][]*rawConn),
		scratch:  make([]byte, 4096),
		baseTime: codec.DHCPTime(time.Now()),
	}, nil
}

// accept hands accepted connections to the loops round-robin until the
// listener is shut down.
func (s *rawServer) accept() {
	defer s.wg.Done()
	for {
		fd, _, err := unix.Accept4(s.lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != nil {
			if s.stopping.Load() {
				return
			}
			if errors.Is(err, unix.EINTR) || errors.Is(err, unix.ECONNABORTED) {
				continue
			}
			// EMFILE and the like: wait for descriptors to free up.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		// TCP_NOTSENT_LOWAT keeps the kernel's unsent queue small, so a
		// stalled reader shows up as EAGAIN instead of megabytes in socket
		// buffers. alqd sets the same option.
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, 64<<10)
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		l := s.loops[s.next.Add(1)%uint64(len(s.loops))]
		l.mu.Lock()
		l.incoming = append(l.incoming, fd)
		l.mu.Unlock()
		l.wake()
	}
}

// wake makes the loop run a pass soon. Safe for concurrent use.
func (l *rawLoop) wake() {
	if l.woken.Swap(true) {
		return
	}
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	unix.Write(l.efd, one[:])
}

// publish appends one frame for key to the ring; flush wakes the loops for
// it. With the gate on it first waits until the slowest connection is less
// than the window behind. It is called by one goroutine at a time.
func (s *rawServer) publish(key uint32, frame []byte) {
	pos := s.head.Load()
	if s.gate && pos-s.minCursor() >= s.window {
		s.flush()
		for pos-s.minCursor() >= s.window {
			s.waiting.Store(true)
			select {
			case <-s.gateWait:
			case <-time.After(time.Millisecond):
			}
			if s.stopping.Load() {
				return
			}
		}
		s.waiting.Store(false)
	}
	s.slots[pos&uint64(len(s.slots)-1)].Store(&rawMsg{seq: pos, key: key, frame: frame})
	s.head.Store(pos + 1)
	if s.unflushed++; s.unflushed >= s.flushEvery {
		s.flush()
	}
}

// flush wakes the loops for what publish appended. The producer calls it
// before it sleeps, and publish every rawFlushEvery frames.
func (s *rawServer) flush() {
	s.unflushed = 0
	for _, l := range s.loops {
		l.wake()
	}
}

// minCursor returns the smallest cursor over all loops.
func (s *rawServer) minCursor() uint64 {
	m := s.head.Load()
	for _, l := range s.loops {
		m = min(m, l.minCursor.Load())
	}
	return m
}

// load returns the frame at ring position pos, or nil when it has been
// overwritten.
func (s *rawServer) load(pos uint64) *rawMsg {
	m := s.slots[pos&uint64(len(s.slots)-1)].Load()
	if m == nil || m.seq != pos {
		return nil
	}
	return m
}

// run is the loop's goroutine.
func (l *rawLoop) run() {
	defer l.srv.wg.Done()
	events := make([]unix.EpollEvent, 512)
	for !l.srv.stopping.Load() {
		n, err := unix.EpollWait(l.epfd, events, 100)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return
		}
		for _, ev := range events[:max(n, 0)] {
			fd := int(ev.Fd)
			if fd == l.efd {
				var b [8]byte
				unix.Read(l.efd, b[:])
				continue
			}
			c := l.conns[fd]
			if c == nil {
				continue
			}
			if ev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				if !l.readConn(c) {
					continue
				}
			}
			if ev.Events&unix.EPOLLOUT != 0 && c.blocked {
				l.unblock(c)
			}
		}
		l.woken.Store(false)
		l.adopt()
		l.pass()
	}
}

// adopt registers the connections the acceptor handed over.
func (l *rawLoop) adopt() {
	l.mu.Lock()
	fds := l.incoming
	l.incoming = nil
	l.mu.Unlock()
	for _, fd := range fds {
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(fd)}
		if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			unix.Close(fd)
			continue
		}
		l.conns[fd] = &rawConn{fd: fd, liveIndex: -1}
	}
}

// readConn reads from c: the subscription frame before it subscribed, and
// discards anything after. It returns false when c was closed.
func (l *rawLoop) readConn(c *rawConn) bool {
	n, err := unix.Read(c.fd, l.scratch)
	if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
		return true
	}
	if err != nil || n == 0 {
		l.closeConn(c)
		return false
	}
	if c.subscribed {
		return true
	}

	// The first frame is the subscription; a REPLY accepts it.
	c.in = append(c.in, l.scratch[:n]...)
	if len(c.in) < codec.FrameHeaderLen {
		return true
	}
	size := int(binary.BigEndian.Uint16(c.in))
	if len(c.in) < codec.FrameHeaderLen+size {
		return true
	}
	xid, key, err := parseActiveQuery(c.in[codec.FrameHeaderLen : codec.FrameHeaderLen+size])
	if err != nil || (l.srv.filtered && key == allKeys) {
		l.closeConn(c)
		return false
	}
	c.in = nil

	reply := subscribeReply(xid, l.baseTime)
	if n, err := unix.Write(c.fd, reply); err != nil || n != len(reply) {
		l.closeConn(c)
		return false
	}
	c.subscribed, c.key, c.cursor = true, key, l.pos
	if l.srv.filtered {
		l.byKey[key] = append(l.byKey[key], c)
	} else {
		c.liveIndex = len(l.live)
		l.live = append(l.live, c)
	}
	l.srv.subscribed.Add(1)
	return true
}

// closeConn closes c and drops it from the loop's lists.
func (l *rawLoop) closeConn(c *rawConn) {
	unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
	unix.Close(c.fd)
	delete(l.conns, c.fd)
	if c.liveIndex >= 0 {
		last := l.live[len(l.live)-1]
		l.live[c.liveIndex] = last
		last.liveIndex = c.liveIndex
		l.live = l.live[:len(l.live)-1]
		c.liveIndex = -1
	}
	if c.subscribed && l.srv.filtered {
		list := l.byKey[c.key]
		for i, o := range list {
			if o == c {
				list[i] = list[len(list)-1]
				list = list[:len(list)-1]
				break
			}
		}
		if len(list) == 0 {
			delete(l.byKey, c.key)
		} else {
			l.byKey[c.key] = list
		}
	}
	if c.subscribed {
		l.srv.subscribed.Add(-1)
	}
}

// pass hands the frames published since the last pass to the connections.
func (l *rawLoop) pass() {
	head := l.srv.head.Load()
	for l.pos < head {
		// Unfiltered, at most 1024 frames per write, so that the pass
		// buffer stays small. Filtered connections take few frames each,
		// so a pass queues all new frames before writing any.
		end := min(head, l.pos+1024)
		if l.srv.filtered {
			end = head
		}
		if head-l.pos > uint64(len(l.srv.slots)) {
			// This loop itself was lapped: every connection at its position
			// is lapped too, and is closed by sendFrom.
			l.pos = head - uint64(len(l.srv.slots))
			continue
		}
		if l.srv.filtered {
			l.passFiltered(end)
		} else {
			l.passAll(end)
		}
		l.pos = end
	}
	l.publishMin()
}

// passAll sends frames [pos, end) to every unfiltered connection.
func (l *rawLoop) passAll(end uint64) {
	l.batch, l.sizes = l.batch[:0], l.sizes[:0]
	for p := l.pos; p < end; p++ {
		m := l.srv.load(p)
		if m == nil {
			// The frame was overwritten while this loop was behind, which
			// happens only without the gate. The pass ends here, and
			// sendFrom closes the connections left at older cursors as
			// lapped.
			return
		}
		l.batch = append(l.batch, m.frame...)
		l.sizes = append(l.sizes, len(m.frame))
	}
	for i := 0; i < len(l.live); i++ {
		c := l.live[i]
		if c.blocked {
			continue
		}
		var open bool
		if c.cursor == l.pos && c.off == 0 {
			n, err := unix.Write(c.fd, l.batch)
			open = l.advance(c, n, err, end)
		} else {
			open = l.sendFrom(c, end)
		}
		if !open {
			i-- // the last connection moved into slot i
		}
	}
}

// advance moves c forward by n octets of the pass buffer covering [pos,
// end). It returns false when c was closed.
func (l *rawLoop) advance(c *rawConn, n int, err error, end uint64) bool {
	if err != nil && !errors.Is(err, unix.EAGAIN) {
		l.closeConn(c)
		return false
	}
	if n == len(l.batch) {
		c.cursor, c.off = end, 0
		return true
	}
	// Partial write: find the frame the write stopped in.
	n = max(n, 0)
	for _, size := range l.sizes {
		if n < size {
			c.off = n
			break
		}
		n -= size
		c.cursor++
	}
	l.block(c)
	return true
}

// sendFrom writes the frames [c.cursor, end) to a connection that is not in
// step with the loop, with writev. It returns false when c was closed.
func (l *rawLoop) sendFrom(c *rawConn, end uint64) bool {
	for c.cursor < end {
		l.iov = l.iov[:0]
		last := min(end, c.cursor+1024)
		for p := c.cursor; p < last; p++ {
			m := l.srv.load(p)
			if m == nil {
				l.srv.lapped.Add(1)
				l.closeConn(c)
				return false
			}
			f := m.frame
			if p == c.cursor {
				f = f[c.off:]
			}
			l.iov = append(l.iov, f)
		}
		n, err := l.writev(c.fd, l.iov)
		if err != nil && !errors.Is(err, unix.EAGAIN) {
			l.closeConn(c)
			return false
		}
		n = max(n, 0)
		for _, f := range l.iov {
			if n < len(f) {
				c.off += n
				l.block(c)
				return true
			}
			n -= len(f)
			c.cursor++
			c.off = 0
		}
	}
	return true
}

// passFiltered queues each frame of [pos, end) on the connections
// subscribed to its key and writes every touched connection once.
func (l *rawLoop) passFiltered(end uint64) {
	l.touched = l.touched[:0]
	for p := l.pos; p < end; p++ {
		m := l.srv.load(p)
		if m == nil {
			continue
		}
		for _, c := range l.byKey[m.key] {
			if len(c.pending) == 0 {
				l.touched = append(l.touched, c)
			}
			c.pending = append(c.pending, m.frame)
		}
	}
	for _, c := range l.touched {
		if !c.blocked {
			l.flushPending(c)
		}
	}
}

// flushPending writes the queued frames of a filtered connection.
func (l *rawLoop) flushPending(c *rawConn) {
	for c.pendingHead < len(c.pending) {
		end := min(len(c.pending), c.pendingHead+1024)
		l.iov = append(l.iov[:0], c.pending[c.pendingHead][c.pendingOff:])
		l.iov = append(l.iov, c.pending[c.pendingHead+1:end]...)
		n, err := l.writev(c.fd, l.iov)
		if err != nil && !errors.Is(err, unix.EAGAIN) {
			l.closeConn(c)
			return
		}
		n = max(n, 0)
		for c.pendingHead < end {
			rest := len(c.pending[c.pendingHead]) - c.pendingOff
			if n < rest {
				c.pendingOff += n
				l.block(c)
				return
			}
			n -= rest
			c.pending[c.pendingHead] = nil
			c.pendingHead++
			c.pendingOff = 0
		}
	}
	c.pending, c.pendingHead = c.pending[:0], 0
}

// writev writes bufs with one writev(2), reusing the loop's iovec array:
// unix.Writev allocates one per call.
func (l *rawLoop) writev(fd int, bufs [][]byte) (int, error) {
	l.iovecs = l.iovecs[:0]
	for _, b := range bufs {
		if len(b) == 0 {
			continue
		}
		v := unix.Iovec{Base: &b[0]}
		v.SetLen(len(b))
		l.iovecs = append(l.iovecs, v)
	}
	if len(l.iovecs) == 0 {
		return 0, nil
	}
	n, _, errno := unix.Syscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&l.iovecs[0])), uintptr(len(l.iovecs)))
	runtime.KeepAlive(bufs)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// block waits for EPOLLOUT on c.
func (l *rawLoop) block(c *rawConn) {
	if c.blocked {
		return
	}
	c.blocked = true
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLOUT, Fd: int32(c.fd)}
	unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, c.fd, &ev)
}

// unblock resumes c once the kernel takes more.
func (l *rawLoop) unblock(c *rawConn) {
	c.blocked = false
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(c.fd)}
	unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, c.fd, &ev)
	if l.srv.filtered {
		l.flushPending(c)
		return
	}
	if l.srv.head.Load()-c.cursor > uint64(len(l.srv.slots)) {
		l.srv.lapped.Add(1)
		l.closeConn(c)
		return
	}
	l.sendFrom(c, l.pos)
}

// publishMin stores the smallest cursor of the loop's connections for the
// producer's gate.
func (l *rawLoop) publishMin() {
	m := l.pos
	if !l.srv.filtered {
		for _, c := range l.live {
			m = min(m, c.cursor)
		}
	}
	l.minCursor.Store(m)
	if l.srv.waiting.Load() {
		select {
		case l.srv.gateWait <- struct{}{}:
		default:
		}
	}
}

// close stops the loops and closes every socket.
func (s *rawServer) close() {
	if s.stopping.Swap(true) {
		return
	}
	unix.Shutdown(s.lfd, unix.SHUT_RDWR)
	for _, l := range s.loops {
		l.wake()
	}
	s.wg.Wait()
	unix.Close(s.lfd)
	for _, l := range s.loops {
		for fd := range l.conns {
			unix.Close(fd)
		}
		l.mu.Lock()
		for _, fd := range l.incoming {
			unix.Close(fd)
		}
		l.mu.Unlock()
		unix.Close(l.epfd)
		unix.Close(l.efd)
	}
}
