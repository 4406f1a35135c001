package loadgen

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/alqd/alqd/codec"
)

// stalledDrainTimeout is how long a stalled connection reads at the end of
// a run to find out whether the server closed it. A server that closes a
// connection with unsent data queues its FIN behind that data, so the close
// is seen only once the data is read.
const stalledDrainTimeout = time.Second

// RequestorResult is the outcome of one connection of a swarm.
type RequestorResult struct {
	Index          int     `json:"index"` // in the whole swarm
	Class          string  `json:"class"` // normal, slow or stalled
	Filtered       bool    `json:"filtered,omitempty"`
	Source         string  `json:"source,omitempty"`
	Established    bool    `json:"established"`
	ClosedByServer bool    `json:"closed_by_server,omitempty"`
	Messages       int64   `json:"messages"`
	Bytes          int64   `json:"bytes"`
	Seconds        float64 `json:"seconds"` // from sending the query to the end of the connection
	Error          string  `json:"error,omitempty"`
}

// requestor is one connection of a swarm, run by one goroutine.
type requestor struct {
	s           *swarm
	class       requestorClass
	filterRelay int // relay whose bindings the query requests; -1 when unfiltered
	source      netip.Addr
	res         RequestorResult

	// mu orders the deadline that ends the run against the one a stalled
	// connection sets for its final drain.
	mu       sync.Mutex
	draining bool

	framer    codec.Framer
	msg       codec.Message
	data      codec.ClientData
	latencies []int64 // µs, recorded once per read
}

func newRequestor(s *swarm, index int) *requestor {
	cfg := &s.cfg
	r := &requestor{s: s}
	r.class, r.filterRelay = connectionRole(index, cfg.TotalConnections, cfg.Slow, cfg.Stalled, cfg.Filtered, cfg.FilterRelays)
	if len(cfg.Sources) > 0 {
		r.source = cfg.Sources[index%len(cfg.Sources)]
	}
	r.res = RequestorResult{Index: index, Class: r.class.String(), Filtered: r.filterRelay >= 0}
	if r.source.IsValid() {
		r.res.Source = r.source.String()
	}
	return r
}

// run connects, sends the query and reads until ctx ends or the server
// closes the connection.
func (r *requestor) run(ctx context.Context) {
	tcp, err := r.dial(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.fail(err)
		}
		return
	}
	defer tcp.Close()
	// Ending the run unblocks every read and write at once.
	stop := context.AfterFunc(ctx, func() {
		r.mu.Lock()
		if !r.draining {
			tcp.SetDeadline(time.Unix(1, 0))
		}
		r.mu.Unlock()
	})
	defer stop()

	conn := net.Conn(tcp)
	if r.s.cfg.TLS != nil {
		if conn, err = r.startTLS(ctx, tcp); err != nil {
			if ctx.Err() == nil {
				r.fail(err)
			}
			return
		}
	}
	if err := r.sendQuery(conn); err != nil {
		if ctx.Err() == nil {
			r.fail(err)
		}
		return
	}
	r.res.Established = true
	r.s.established.Add(1)
	began := time.Now()

	if r.class == classStalled {
		<-ctx.Done()
		r.res.Seconds = time.Since(began).Seconds()
		r.res.ClosedByServer = r.drainUntilClosed(tcp, conn)
		return
	}
	r.read(ctx, conn)
	r.res.Seconds = time.Since(began).Seconds()
}

func (r *requestor) fail(err error) {
	r.res.Error = err.Error()
	r.s.fail(fmt.Errorf("connection %d: %w", r.res.Index, err))
}

func (r *requestor) dial(ctx context.Context) (*net.TCPConn, error) {
	cfg := &r.s.cfg
	receiveBuffer := 0
	if r.class != classNormal {
		receiveBuffer = cfg.SlowReceiveBuffer
	}
	d := net.Dialer{Timeout: cfg.DialTimeout, Control: dialControl(r.source.IsValid(), receiveBuffer)}
	if r.source.IsValid() {
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(r.source, 0))
	}
	nc, err := d.DialContext(ctx, "tcp", cfg.Server)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s from %s failed: %w", cfg.Server, r.res.Source, err)
	}
	return nc.(*net.TCPConn), nil
}

// xid returns the transaction-id of the connection's messages.
func (r *requestor) xid() uint32 { return uint32(r.res.Index+1) & 0xffffff }

// sendQuery writes the ACTIVELEASEQUERY (RFC 7653 section 6.2.1): the
// requestor's DUID, an ORO asking for OPTION_LQ_BASE_TIME (and
// OPTION_LQ_RELAY_DATA when configured) and, for a filtered connection,
// OPTION_LQ_QUERY with QUERY_BY_RELAY_ID.
func (r *requestor) sendQuery(conn net.Conn) error {
	b, err := r.appendQuery(nil)
	if err != nil {
		return fmt.Errorf("encoding the query: %w", err)
	}
	conn.SetWriteDeadline(time.Now().Add(r.s.cfg.DialTimeout))
	if _, err := conn.Write(b); err != nil {
		return fmt.Errorf("sending the query failed: %w", err)
	}
	conn.SetWriteDeadline(time.Time{})
	return nil
}

func (r *requestor) appendQuery(b []byte) ([]byte, error) {
	relayData := r.s.cfg.RelayData
	duid := codec.NewDUIDEN(DocumentationEnterpriseNumber, strconv.AppendInt([]byte("swarm-"), int64(r.res.Index), 10))
	id, err := duid.AppendTo(nil)
	if err != nil {
		return nil, err
	}

	b, frame := codec.BeginFrame(b)
	if b, err = codec.AppendHeader(b, codec.MsgActiveLeasequery, r.xid()); err != nil {
		return nil, err
	}
	if b, err = codec.AppendOption(b, codec.OptClientID, id); err != nil {
		return nil, err
	}
	oro := codec.ORO{codec.OptLQBaseTime}
	if relayData && r.filterRelay < 0 {
		// Without OPTION_LQ_QUERY the message ORO is the only place to
		// ask for relay data.
		oro = append(oro, codec.OptLQRelayData)
	}
	if b, err = oro.AppendTo(b); err != nil {
		return nil, err
	}
	if r.filterRelay >= 0 {
		q := codec.LQQuery{QueryType: codec.QueryByRelayID, LinkAddress: netip.IPv6Unspecified()}
		q.Options.Add(codec.OptRelayID, RelayID(r.filterRelay))
		if relayData {
			q.Options.Add(codec.OptORO, binary.BigEndian.AppendUint16(nil, uint16(codec.OptLQRelayData)))
		}
		if b, err = q.AppendTo(b); err != nil {
			return nil, err
		}
	}
	return codec.EndFrame(b, frame)
}

// startTLS sends STARTTLS (RFC 7653 section 6.2.2: the first message, with
// no options), reads the server's REPLY octet by octet so that no octet of
// the TLS handshake is consumed, and runs the handshake when the REPLY
// reports Success.
func (r *requestor) startTLS(ctx context.Context, tcp *net.TCPConn) (*tls.Conn, error) {
	deadline := time.Now().Add(r.s.cfg.DialTimeout)
	tcp.SetDeadline(deadline)
	b, frame := codec.BeginFrame(nil)
	b, _ = codec.AppendHeader(b, codec.MsgStartTLS, r.xid())
	b, _ = codec.EndFrame(b, frame)
	if _, err := tcp.Write(b); err != nil {
		return nil, fmt.Errorf("sending STARTTLS failed: %w", err)
	}

	var size [codec.FrameHeaderLen]byte
	if _, err := io.ReadFull(tcp, size[:]); err != nil {
		return nil, fmt.Errorf("reading the REPLY to STARTTLS failed: %w", err)
	}
	reply := make([]byte, binary.BigEndian.Uint16(size[:]))
	if _, err := io.ReadFull(tcp, reply); err != nil {
		return nil, fmt.Errorf("reading the REPLY to STARTTLS failed: %w", err)
	}
	var m codec.Message
	if err := m.Decode(reply); err != nil {
		return nil, fmt.Errorf("the REPLY to STARTTLS does not decode: %w", err)
	}
	if m.Type != codec.MsgReply || m.TransactionID != r.xid() {
		return nil, fmt.Errorf("the server responded to STARTTLS with %v and transaction-id 0x%06x, want REPLY with 0x%06x", m.Type, m.TransactionID, r.xid())
	}
	if st, ok, err := m.Options.Status(); err != nil {
		return nil, fmt.Errorf("the REPLY to STARTTLS has a bad status: %w", err)
	} else if ok && st.Code != codec.StatusSuccess {
		return nil, fmt.Errorf("the server rejected STARTTLS: %w", st.Err())
	}

	tc := tls.Client(tcp, r.s.cfg.TLS)
	hctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		return nil, fmt.Errorf("TLS handshake failed: %w", err)
	}
	tcp.SetDeadline(time.Time{})
	return tc, nil
}

// read receives and checks messages until ctx ends or the connection does.
func (r *requestor) read(ctx context.Context, conn net.Conn) {
	size, delay := r.s.cfg.ReadBufferBytes, time.Duration(0)
	if r.class == classSlow {
		size, delay = r.s.cfg.SlowReadBytes, r.s.cfg.SlowReadDelay
	}
	buf := make([]byte, size)
	for {
		n, err := conn.Read(buf)
		if n > 0 && !r.receive(buf[:n], time.Now()) {
			return // the stream can not be split into messages any more
		}
		if err != nil {
			r.readEnded(ctx, err)
			return
		}
		if delay > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
		}
	}
}

// readEnded records why reading stopped.
func (r *requestor) readEnded(ctx context.Context, err error) {
	switch {
	case ctx.Err() != nil:
		// The run ended.
	case errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET):
		r.res.ClosedByServer = true
	default:
		r.fail(fmt.Errorf("reading failed: %w", err))
	}
}

// receive splits one read into messages, checks and counts them, and
// records their latencies. It returns false after a framing error.
//
// hot path: no allocation unless a frame is split across reads or a
// message needs more options than any before it.
func (r *requestor) receive(chunk []byte, now time.Time) bool {
	var messages, updates, unstamped, keepalives, failures int64
	r.framer.Feed(chunk)
	ok := true
	for {
		frame, err := r.framer.Next()
		if err != nil {
			failures++
			ok = false
			r.res.Error = "framing failed: " + err.Error()
			break
		}
		if frame == nil {
			break
		}
		messages++
		u, s, k, f := r.check(frame, now)
		updates, unstamped, keepalives, failures = updates+u, unstamped+s, keepalives+k, failures+f
	}

	r.res.Messages += messages
	r.res.Bytes += int64(len(chunk))
	s := r.s
	s.messages.Add(messages)
	s.bytes.Add(int64(len(chunk)))
	if unstamped > 0 {
		s.unstamped.Add(unstamped)
	}
	if keepalives > 0 {
		s.keepalives.Add(keepalives)
	}
	if failures > 0 {
		s.decodeFail.Add(failures)
	}
	s.lat.record(r.res.Index, r.latencies)
	r.latencies = r.latencies[:0]
	s.addUpdates(updates)
	return ok
}

// check decodes one message and returns how many updates it carried, how
// many of them had no stamp, whether it was a keepalive (LEASEQUERY-DATA
// with neither client data nor status) and how many parts failed to decode.
func (r *requestor) check(frame []byte, now time.Time) (updates, unstamped, keepalive, failures int64) {
	if err := r.msg.Decode(frame); err != nil {
		return 0, 0, 0, 1
	}
	r.s.types[r.msg.Type].Add(1)

	st, hasStatus, err := r.msg.Options.Status()
	if err != nil {
		return 0, 0, 0, 1
	}
	if hasStatus {
		r.s.statuses[min(int(st.Code), maxCountedStatus+1)].Add(1)
		if r.msg.Type == codec.MsgLeasequeryReply && st.Code != codec.StatusSuccess && r.res.Error == "" {
			r.fail(fmt.Errorf("the server rejected the query: %w", st.Err()))
		}
	}

	for _, o := range r.msg.Options {
		if o.Code != codec.OptClientData {
			continue
		}
		if err := r.data.Decode(o.Data); err != nil {
			failures++
			continue
		}
		updates++
		if t, ok := StampFromClientData(&r.data); ok {
			r.latencies = append(r.latencies, micros(now.Sub(t)))
		} else {
			unstamped++
		}
	}
	if updates == 0 && !hasStatus && r.msg.Type == codec.MsgLeasequeryData {
		keepalive = 1
	}
	return updates, unstamped, keepalive, failures
}

// drainUntilClosed reads and discards what a stalled connection has
// received, for at most stalledDrainTimeout, and reports whether the
// server closed the connection.
func (r *requestor) drainUntilClosed(tcp *net.TCPConn, conn net.Conn) bool {
	r.mu.Lock()
	r.draining = true
	tcp.SetDeadline(time.Now().Add(stalledDrainTimeout))
	r.mu.Unlock()
	_, err := io.Copy(io.Discard, conn)
	if err == nil || errors.Is(err, syscall.ECONNRESET) {
		return true // io.Copy returns nil at EOF
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		r.fail(fmt.Errorf("reading the stalled connection at the end failed: %w", err))
	}
	return false
}
