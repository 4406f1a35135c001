package requestor

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/alqd/alqd/codec"
)

// QueryUDP runs one Leasequery over UDP (RFC 5007) and calls fn for every
// Binding and then one Done. A LEASEQUERY is retransmitted with the same
// transaction-id after LQTimeout, doubling up to LQMaxRT with a random
// factor of 0.9 to 1.1 (RFC 8415 section 15), and sent LQMaxRC times in all;
// when no valid reply arrives the error wraps ErrUnreachable. When a
// QUERY_BY_CLIENTID without a link gets OPTION_LQ_CLIENT_LINK back, the
// query is repeated once per listed link (RFC 5007 section 4.1.2.5), and
// the events of all of them are delivered.
//
// It returns nil on Success, including a query that matched nothing, or a
// *codec.StatusError when the server rejected the query. The bulk-only query
// types and the RFC 7653 time options exist only over TCP and fail with
// ErrInvalidQuery.
func QueryUDP(ctx context.Context, cfg Config, q Query, fn func(Event) error) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if err := q.Validate(); err != nil {
		return err
	}
	if q.Type.BulkOnly() {
		return fmt.Errorf("%w: %s is defined for Bulk Leasequery over TCP only", ErrInvalidQuery, q.Type)
	}
	if q.HasStartTime || q.HasEndTime {
		return fmt.Errorf("%w: start and end times are defined for Bulk and Active Leasequery over TCP only", ErrInvalidQuery)
	}
	cfg = cfg.withDefaults()
	addr, _ := cfg.serverAddr()

	var d net.Dialer
	nc, err := d.DialContext(ctx, "udp", addr)
	if err != nil {
		return fmt.Errorf("%w: UDP socket for %s: %w", ErrUnreachable, addr, err)
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(aLongTimeAgo) })
	defer stop()
	u := udpExchange{cfg: cfg, server: addr, nc: nc, buf: make([]byte, codec.MaxMessageLen)}
	u.dec.skew = &skewEstimator{}
	u.rand = func() float64 { return mathrand.Float64()*0.2 - 0.1 }

	m, err := u.exchange(ctx, q)
	if err != nil {
		return err
	}
	total := 0
	if m.clientLinks != nil && m.ok() && !m.hasClientData {
		links, err := clientLinks(m.clientLinks)
		if err != nil {
			return &ProtocolError{Type: m.info.Type, TransactionID: m.info.TransactionID, Reason: "OPTION_LQ_CLIENT_LINK does not decode", Err: err}
		}
		for _, link := range links {
			per := q
			per.Link = link
			if m, err = u.exchange(ctx, per); err != nil {
				return err
			}
			n, err := u.deliver(m, fn, false)
			total += n
			if err != nil {
				return err
			}
		}
		return fn(Done{MessageInfo: m.info, Status: codec.StatusSuccess, Bindings: total})
	}
	_, err = u.deliver(m, fn, true)
	return err
}

// udpExchange is the state of one QueryUDP call.
type udpExchange struct {
	cfg    Config
	server string
	nc     net.Conn
	buf    []byte
	dec    messageDecoder
	rand   func() float64 // RAND of RFC 8415 section 15, in [-0.1, 0.1)
}

// deliver calls fn for the bindings of m and, when last is set, for the Done
// event. It returns the number of bindings and m's status as an error.
func (u *udpExchange) deliver(m *message, fn func(Event) error, last bool) (int, error) {
	var evs []Event
	if m.ok() && m.hasClientData {
		var err error
		if evs, err = u.dec.bindings(m, nil); err != nil {
			return 0, err
		}
	}
	n := len(evs)
	if last || !m.ok() {
		evs = append(evs, doneEvent(m, n))
	}
	for _, ev := range evs {
		if err := fn(ev); err != nil {
			return n, err
		}
	}
	if !m.ok() {
		return n, &codec.StatusError{Code: m.status, Msg: m.statusMessage}
	}
	return n, nil
}

// exchange sends q until a valid LEASEQUERY-REPLY arrives or the
// retransmissions run out. The returned message is valid until the next
// exchange.
func (u *udpExchange) exchange(ctx context.Context, q Query) (*message, error) {
	var x [4]byte
	_, _ = rand.Read(x[:])
	xid := binary.BigEndian.Uint32(x[:]) % xidSpace
	b, err := q.appendLeasequery(nil, xid, u.cfg.ClientID)
	if err != nil {
		return nil, err
	}
	datagram := b[codec.FrameHeaderLen:] // UDP carries the message without the TCP msg-size

	var m message
	rt := time.Duration(0)
	for sent := 0; sent < u.cfg.LQMaxRC; sent++ {
		rt = u.nextTimeout(rt)
		if _, err := u.nc.Write(datagram); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("%w: sending to %s: %w", ErrUnreachable, u.server, err)
		}
		ok, err := u.await(ctx, xid, time.Now().Add(rt), &m)
		if err != nil {
			return nil, err
		}
		if ok {
			return &m, nil
		}
	}
	return nil, fmt.Errorf("%w: no LEASEQUERY-REPLY from %s after %d transmissions", ErrUnreachable, u.server, u.cfg.LQMaxRC)
}

// nextTimeout returns the retransmission timeout after prev (0 for the
// first transmission), as RFC 8415 section 15 computes it.
func (u *udpExchange) nextTimeout(prev time.Duration) time.Duration {
	if prev == 0 {
		return u.cfg.LQTimeout + time.Duration(u.rand()*float64(u.cfg.LQTimeout))
	}
	rt := 2*prev + time.Duration(u.rand()*float64(prev))
	if rt > u.cfg.LQMaxRT {
		rt = u.cfg.LQMaxRT + time.Duration(u.rand()*float64(u.cfg.LQMaxRT))
	}
	return rt
}

// await reads datagrams until deadline and reports whether a valid reply
// to xid arrived. Datagrams that are not one (another transaction-id,
// another requestor's DUID, garbage) are dropped, as RFC 8415 section 16
// has clients drop invalid messages.
func (u *udpExchange) await(ctx context.Context, xid uint32, deadline time.Time, m *message) (bool, error) {
	u.nc.SetReadDeadline(deadline)
	for {
		n, err := u.nc.Read(u.buf)
		switch {
		case ctx.Err() != nil:
			return false, ctx.Err()
		case errors.Is(err, os.ErrDeadlineExceeded):
			return false, nil
		case errors.Is(err, syscall.ECONNREFUSED):
			// ICMP port unreachable shows up here on a connected socket; the
			// server may come up before the next retransmission.
			continue
		case err != nil:
			return false, fmt.Errorf("%w: reading from %s: %w", ErrUnreachable, u.server, err)
		}
		if u.valid(u.buf[:n], xid, m) {
			return true, nil
		}
	}
}

// valid decodes a datagram into m and reports whether it answers xid.
func (u *udpExchange) valid(datagram []byte, xid uint32, m *message) bool {
	if u.dec.decode(datagram, time.Now(), SourceUDP, m) != nil {
		return false
	}
	if m.info.Type != codec.MsgLeasequeryReply || m.info.TransactionID != xid {
		return false
	}
	if id, ok := u.dec.msg.Options.ClientID(); ok && !bytes.Equal(id, u.cfg.ClientID) {
		return false
	}
	u.dec.sampleSkew(m, sampleCurrent)
	return true
}
