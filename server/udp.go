package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/store"
)

// Largest UDP payloads: over IPv6 without jumbograms, the 65535-octet
// payload length less the 8-octet UDP header; over IPv4, the 65535-octet
// total length less 20 octets of IP header and the UDP header.
const (
	maxUDPPayload6 = 65535 - 8
	maxUDPPayload4 = 65535 - 20 - 8
)

// maxUDPPayload returns the largest reply that can be sent to peer.
func maxUDPPayload(peer netip.Addr) int {
	if peer.Unmap().Is4() {
		return maxUDPPayload4
	}
	return maxUDPPayload6
}

// udpServer answers RFC 5007 Leasequery over UDP on one goroutine. UDP
// leasequery is a low-rate lookup (a relay or an operator asking about one
// address or client), and each answer needs store reads that must not run
// on a gnet event loop, so a plain socket with a blocking read serves it.
type udpServer struct {
	srv  *Server
	pc   *net.UDPConn
	addr netip.AddrPort
	log  *slog.Logger
	done chan struct{}
	once sync.Once

	in    []byte
	out   []byte
	group []store.Binding
}

func startUDP(s *Server, addr string) (*udpServer, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("server: UDP listen address %q: %w", addr, err)
	}
	pc, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("server: listening on UDP %s: %w", addr, err)
	}
	u := &udpServer{
		srv:  s,
		pc:   pc,
		addr: pc.LocalAddr().(*net.UDPAddr).AddrPort(),
		log:  s.log.With("transport", "udp"),
		done: make(chan struct{}),
		in:   make([]byte, codec.MaxMessageLen+1),
		out:  make([]byte, 0, codec.MaxMessageLen),
	}
	go u.serve()
	return u, nil
}

// close stops the listener and waits for the serving goroutine.
func (u *udpServer) close() {
	u.once.Do(func() { _ = u.pc.Close() })
	<-u.done
}

func (u *udpServer) serve() {
	defer close(u.done)
	for {
		n, from, err := u.pc.ReadFromUDPAddrPort(u.in)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			u.log.Error("reading a UDP datagram failed", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		u.srv.metrics.udpReceived.Add(float64(n))
		if n > codec.MaxMessageLen {
			continue
		}
		reply := u.handle(u.in[:n], from.Addr().Unmap())
		if len(reply) == 0 {
			continue
		}
		if _, err := u.pc.WriteToUDPAddrPort(reply, from); err != nil {
			u.log.Warn("sending a UDP reply failed", "peer", from.String(), "err", err)
			continue
		}
		u.srv.metrics.udpSent.Add(float64(len(reply)))
	}
}

// handle returns the reply to one datagram, or nil to send nothing.
func (u *udpServer) handle(pkt []byte, from netip.Addr) []byte {
	t, err := codec.PeekType(pkt)
	if err != nil {
		return nil
	}
	switch t {
	case codec.MsgLeasequery:
		return u.answer(u.out[:0], pkt, from, maxUDPPayload(from))
	case codec.MsgRelayForw:
		return u.answerRelayed(pkt, maxUDPPayload(from))
	}
	// RFC 8415 section 16: a server discards message types it does not
	// serve.
	return nil
}

// answerRelayed answers a LEASEQUERY that came inside RELAY-FORW: the reply
// goes back in RELAY-REPL messages that mirror the relay chain, each with
// the OPTION_INTERFACE_ID it carried (RFC 8415 section 19.3). The
// allow-list is checked against the peer-address of the relay closest to
// the requestor: that is the requestor's own address. The wrapped reply
// is at most budget octets long.
func (u *udpServer) answerRelayed(pkt []byte, budget int) []byte {
	var layers []codec.RelayMessage
	msg := pkt
	for {
		t, err := codec.PeekType(msg)
		if err != nil {
			return nil
		}
		if t == codec.MsgLeasequery {
			break
		}
		if t != codec.MsgRelayForw || len(layers) >= codec.MaxRelayNesting {
			return nil
		}
		var rm codec.RelayMessage
		if err := rm.Decode(msg); err != nil {
			return nil
		}
		inner, ok := rm.InnerMessage()
		if !ok {
			return nil
		}
		layers = append(layers, rm)
		msg = inner
	}

	// Each RELAY-REPL layer is no longer than the RELAY-FORW layer it
	// answers, so the relay headers of the query bound those of the reply.
	requestorAddr := layers[len(layers)-1].PeerAddress.Unmap()
	reply := u.answer(nil, msg, requestorAddr, budget-(len(pkt)-len(msg)))
	if reply == nil {
		return nil
	}
	for i := len(layers) - 1; i >= 0; i-- {
		wrapped, err := wrapRelayReply(u.out[:0:0], &layers[i], reply)
		if err != nil {
			u.log.Warn("relayed reply does not fit", "err", err)
			return nil
		}
		reply = wrapped
	}
	return reply
}

// wrapRelayReply wraps inner in the RELAY-REPL that answers layer.
func wrapRelayReply(b []byte, layer *codec.RelayMessage, inner []byte) ([]byte, error) {
	b, err := codec.AppendRelayHeader(b, codec.MsgRelayRepl, layer.HopCount, layer.LinkAddress, layer.PeerAddress)
	if err != nil {
		return nil, err
	}
	if iid, ok := layer.Options.InterfaceID(); ok {
		if b, err = codec.AppendOption(b, codec.OptInterfaceID, iid); err != nil {
			return nil, err
		}
	}
	if b, err = codec.AppendOption(b, codec.OptRelayMsg, inner); err != nil {
		return nil, err
	}
	if len(b) > codec.MaxMessageLen {
		return nil, codec.ErrMessageTooLong
	}
	return b, nil
}

// answer returns the LEASEQUERY-REPLY to the LEASEQUERY pkt from the
// requestor at from, appended to b, or nil for a discarded query. The reply
// is at most budget octets long.
func (u *udpServer) answer(b, pkt []byte, from netip.Addr, budget int) []byte {
	s := u.srv
	var r request
	verdict, serr := r.parse(pkt, transportUDP, &s.policy)
	if verdict == verdictDiscard {
		s.metrics.countQuery(transportUDP, r.query.QueryType, "discarded")
		return nil
	}
	now := s.clock()
	head := replyHead{xid: r.xid, serverID: s.policy.serverID, clientID: r.clientID, baseTime: r.wantBaseTime}

	if !s.allowed(from) {
		serr = &codec.StatusError{Code: codec.StatusNotAllowed, Msg: "requestor " + from.String() + " is not allowed"}
	}
	if serr != nil {
		s.metrics.countQuery(transportUDP, r.query.QueryType, statusLabel(serr))
		out, err := head.appendStatusReply(b, now, serr)
		if err != nil {
			u.log.Error("encoding a UDP status reply failed", "err", err)
			return nil
		}
		return out
	}

	out, status, err := u.answerFound(b, &r, &head, now, budget)
	if err != nil {
		u.log.Error("answering a UDP leasequery failed", "xid", r.xid, "err", err)
		serr = &codec.StatusError{Code: codec.StatusUnspecFail, Msg: "the server failed to answer"}
		s.metrics.countQuery(transportUDP, r.query.QueryType, statusLabel(serr))
		out, err = head.appendStatusReply(b, now, serr)
		if err != nil {
			return nil
		}
		return out
	}
	s.metrics.countQuery(transportUDP, r.query.QueryType, status)
	return out
}

// answerFound looks up the bindings for r and appends the reply: one
// OPTION_CLIENT_DATA, or OPTION_LQ_CLIENT_LINK when a QUERY_BY_CLIENTID
// without link finds the client on several links (RFC 5007 section
// 4.3.3), or nothing when no binding with a valid lifetime matches. A reply
// longer than budget octets with the requested OPTION_LQ_RELAY_DATA goes
// out without it; one longer than budget without it is an error.
func (u *udpServer) answerFound(b []byte, r *request, head *replyHead, now time.Time, budget int) ([]byte, string, error) {
	links, err := u.collect(r, now)
	if err != nil {
		return nil, "", err
	}
	begin := len(b)

	b, start, err := head.beginReply(b, now, nil)
	if err != nil {
		return nil, "", err
	}
	status := codec.StatusSuccess.String()
	switch {
	case len(u.group) == 0:
		status = "no_data"
	case len(links) > 1:
		cl := codec.LQClientLink{Links: links}
		if b, err = cl.AppendTo(b); err != nil {
			return nil, "", err
		}
	default:
		v := view{cltTime: !u.srv.policy.deny.has(codec.OptCLTTime)}
		if b, err = appendClientData(b, u.group, v, now); err != nil {
			return nil, "", err
		}
		// RFC 5007 section 4.1.2.4: over UDP OPTION_LQ_RELAY_DATA is a
		// reply option, outside OPTION_CLIENT_DATA.
		if src := relaySource(u.group); r.wantRelayData && src != nil {
			withRelay, err := appendRelayData(b, src)
			if err == nil && len(withRelay)-begin <= budget {
				b = withRelay
			} else {
				// The binding still goes out, without its relay data; b
				// still ends before the relay data.
				u.omitRelayData(r.xid, src.Prefix, err)
			}
		}
		u.srv.metrics.udpBindings.Add(float64(len(u.group)))
	}
	if b, err = head.end(b, start); err != nil {
		return nil, "", err
	}
	if len(b)-begin > budget {
		return nil, "", fmt.Errorf("server: reply of %d octets, over the %d octets a UDP datagram can carry here: %w", len(b)-begin, budget, codec.ErrMessageTooLong)
	}
	return b, status, nil
}

// omitRelayData counts a UDP reply sent without the OPTION_LQ_RELAY_DATA
// of the binding p, and logs it at most once per WarnInterval.
func (u *udpServer) omitRelayData(xid uint32, p netip.Prefix, err error) {
	u.srv.metrics.udpRelayOmitted.Inc()
	ok, suppressed := u.srv.encodeWarn.allow(time.Now())
	if !ok {
		return
	}
	args := []any{"xid", xid, "without_relay_data", 1, "binding", p.String()}
	if err != nil {
		args = append(args, "err", err)
	}
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	u.log.Warn("bindings did not fit in a reply", args...)
}

// collect fills u.group with the bindings with a valid lifetime that answer
// r, all of one client; when they lie on several links it returns the
// links instead (QUERY_BY_CLIENTID with link-address ::).
func (u *udpServer) collect(r *request, now time.Time) ([]netip.Addr, error) {
	u.group = u.group[:0]
	sel, err := openSelection(u.srv.src, r, now, u.srv.metrics)
	if err != nil {
		return nil, err
	}
	defer sel.close()

	var links []netip.Addr
	for len(u.group) < maxGroup {
		bd, ok := sel.next()
		if !ok {
			break
		}
		if len(links) == 0 || links[len(links)-1] != bd.LinkAddress {
			links = append(links, bd.LinkAddress)
		}
		u.group = append(u.group, *bd)
	}
	if err := sel.it.Err(); err != nil {
		return nil, err
	}
	if len(links) > 1 {
		// The store groups a client's bindings by link, so consecutive
		// distinct links are the whole list.
		return links, nil
	}
	return nil, nil
}
