package server

import (
	"net/netip"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/store"
)

// This file builds reply messages from bindings. Nothing here depends on
// the connection type, so the gnet path, the UDP path and a goroutine path
// over net.Conn (TLS) share it.
//
// A reply is split into the OPTION_CLIENT_DATA body, which depends only on
// the bindings, the view and the base time (so one encoding can be shared
// by every connection with the same view), and the per-connection wrapper:
// frame length, message type, transaction-id and, when requested,
// OPTION_LQ_BASE_TIME.

// infinity is the lifetime value that never runs down (RFC 8415 section 7.7).
const infinity = 0xffffffff

// view selects the optional content of an OPTION_CLIENT_DATA body.
type view struct {
	// relayData adds OPTION_LQ_RELAY_DATA inside OPTION_CLIENT_DATA, as Bulk
	// and Active Leasequery carry it, when the binding has relay data.
	relayData bool
	// cltTime adds OPTION_CLT_TIME; false when the deny list holds it.
	cltTime bool
}

// appendClientData appends one OPTION_CLIENT_DATA holding group, the
// bindings of one client on one link (RFC 5007 section 4.1.2.2), with
// lifetimes and OPTION_CLT_TIME counted from now. Ended and declined
// bindings are reported with zero lifetimes. On error b is returned
// unchanged.
//
// hot path: appends only; no allocation when b has room.
func appendClientData(b []byte, group []store.Binding, v view, now time.Time) ([]byte, error) {
	orig := b
	b, start := codec.BeginOption(b, codec.OptClientData)
	b, err := codec.AppendOption(b, codec.OptClientID, group[0].ClientID)
	if err != nil {
		return orig, err
	}

	newest := newestIndex(group)
	if v.cltTime && !group[newest].CLTT.IsZero() {
		b = codec.AppendUint32Option(b, codec.OptCLTTime, elapsedSeconds(group[newest].CLTT, now))
	}

	for i := range group {
		if b, err = appendLease(b, &group[i], now); err != nil {
			return orig, err
		}
	}

	if v.relayData {
		if r := relaySource(group); r != nil {
			if b, err = appendRelayData(b, r); err != nil {
				return orig, err
			}
		}
	}

	b, err = codec.EndOption(b, start)
	if err != nil {
		return orig, err
	}
	return b, nil
}

// appendLease appends the OPTION_IAADDR or OPTION_IAPREFIX of one binding.
func appendLease(b []byte, bd *store.Binding, now time.Time) ([]byte, error) {
	preferred, valid := remainingLifetimes(bd, now)
	if bd.Type == store.TypePD {
		return codec.AppendIAPrefix(b, bd.Prefix, preferred, valid)
	}
	return codec.AppendIAAddr(b, bd.Prefix.Addr(), preferred, valid)
}

// appendRelayData appends the OPTION_LQ_RELAY_DATA of bd.
func appendRelayData(b []byte, bd *store.Binding) ([]byte, error) {
	orig := b
	peer := bd.RelayPeer
	if !peer.IsValid() {
		peer = netip.IPv6Unspecified()
	}
	if !peer.Is6() {
		return orig, codec.ErrNotIPv6
	}
	b, start := codec.BeginOption(b, codec.OptLQRelayData)
	p16 := peer.As16()
	b = append(b, p16[:]...)
	b = append(b, bd.RelayMessage...)
	b, err := codec.EndOption(b, start)
	if err != nil {
		return orig, err
	}
	return b, nil
}

// remainingLifetimes returns the preferred and valid lifetimes left at now
// (RFC 5007 section 4.3.3 reports remaining, not granted, lifetimes).
// Infinity stays infinity; an ended or declined binding reports 0 and 0.
func remainingLifetimes(bd *store.Binding, now time.Time) (preferred, valid uint32) {
	if bd.State != store.StateActive {
		return 0, 0
	}
	elapsed := elapsedSeconds(bd.CLTT, now)
	return runDown(bd.PreferredLifetime, elapsed), runDown(bd.ValidLifetime, elapsed)
}

func runDown(lifetime, elapsed uint32) uint32 {
	if lifetime == infinity {
		return infinity
	}
	if elapsed >= lifetime {
		return 0
	}
	return lifetime - elapsed
}

// elapsedSeconds returns the whole seconds from t to now, 0 when t is in
// the future or zero, and at most 2^32-1.
func elapsedSeconds(t, now time.Time) uint32 {
	if t.IsZero() || !now.After(t) {
		return 0
	}
	d := now.Sub(t) / time.Second
	if d > infinity {
		return infinity
	}
	return uint32(d)
}

// newestIndex returns the index of the binding with the latest CLTT; its
// OPTION_CLT_TIME stands for the client (RFC 5007 asks for the time since
// the server last heard from the client on that link).
func newestIndex(group []store.Binding) int {
	n := 0
	for i := 1; i < len(group); i++ {
		if group[i].CLTT.After(group[n].CLTT) {
			n = i
		}
	}
	return n
}

// relaySource returns the binding whose relay data is the latest in group,
// or nil when none was relayed.
func relaySource(group []store.Binding) *store.Binding {
	var src *store.Binding
	for i := range group {
		bd := &group[i]
		if len(bd.RelayMessage) == 0 {
			continue
		}
		if src == nil || bd.CLTT.After(src.CLTT) {
			src = bd
		}
	}
	return src
}

// sameClientLink reports whether a and b belong in one OPTION_CLIENT_DATA:
// the same client DUID on the same link.
func sameClientLink(a, b *store.Binding) bool {
	return a.LinkAddress == b.LinkAddress && string(a.ClientID) == string(b.ClientID)
}

// replyHead is the per-query part of every reply message.
type replyHead struct {
	xid      uint32
	serverID []byte
	clientID []byte // the requestor's DUID; nil when the query had none
	framed   bool   // TCP: each message behind its 2-octet msg-size
	baseTime bool   // add OPTION_LQ_BASE_TIME (RFC 7653 section 9.3)
}

// begin appends the header of a message of type t and, when requested, its
// OPTION_LQ_BASE_TIME for now. It returns the offset to pass to end.
func (h *replyHead) begin(b []byte, t codec.MsgType, now time.Time) ([]byte, int, error) {
	start := len(b)
	if h.framed {
		b, start = codec.BeginFrame(b)
	}
	b, err := codec.AppendHeader(b, t, h.xid)
	if err != nil {
		return b[:start], start, err
	}
	if h.baseTime {
		b = codec.AppendUint32Option(b, codec.OptLQBaseTime, codec.DHCPTime(now))
	}
	return b, start, nil
}

// beginReply begins a LEASEQUERY-REPLY: OPTION_SERVERID, the requestor's
// OPTION_CLIENTID and, for a failed query, the status.
func (h *replyHead) beginReply(b []byte, now time.Time, status *codec.StatusError) ([]byte, int, error) {
	b, start, err := h.begin(b, codec.MsgLeasequeryReply, now)
	if err != nil {
		return b, start, err
	}
	if b, err = codec.AppendOption(b, codec.OptServerID, h.serverID); err != nil {
		return b[:start], start, err
	}
	if h.clientID != nil {
		if b, err = codec.AppendOption(b, codec.OptClientID, h.clientID); err != nil {
			return b[:start], start, err
		}
	}
	if status != nil {
		if b, err = status.AppendOption(b); err != nil {
			return b[:start], start, err
		}
	}
	return b, start, nil
}

// end completes the message begun at start, dropping it on error.
func (h *replyHead) end(b []byte, start int) ([]byte, error) {
	if h.framed {
		return codec.EndFrame(b, start)
	}
	if len(b)-start > codec.MaxMessageLen {
		return b[:start], codec.ErrMessageTooLong
	}
	return b, nil
}

// appendStatusReply appends a complete LEASEQUERY-REPLY with status and
// no binding: the whole answer to a failed query.
func (h *replyHead) appendStatusReply(b []byte, now time.Time, status *codec.StatusError) ([]byte, error) {
	b, start, err := h.beginReply(b, now, status)
	if err != nil {
		return b, err
	}
	return h.end(b, start)
}

// appendDone appends a LEASEQUERY-DONE, with status when not nil (RFC 5460
// section 5.2.2 allows nothing else but OPTION_LQ_BASE_TIME, which RFC 7653
// section 9.3 asks for in every reply when requested).
func (h *replyHead) appendDone(b []byte, now time.Time, status *codec.StatusError) ([]byte, error) {
	b, start, err := h.begin(b, codec.MsgLeasequeryDone, now)
	if err != nil {
		return b, err
	}
	if status != nil {
		if b, err = status.AppendOption(b); err != nil {
			return b[:start], err
		}
	}
	return h.end(b, start)
}

// appendBindings appends the message that carries group: the
// LEASEQUERY-REPLY when first is true, else a LEASEQUERY-DATA (RFC 5460
// section 5.2.1: the first client in the reply, the others in DATA
// messages without SERVERID and CLIENTID). On error b is unchanged.
//
// hot path: appends only.
func (h *replyHead) appendBindings(b []byte, first bool, group []store.Binding, v view, now time.Time) ([]byte, error) {
	orig := b
	var start int
	var err error
	if first {
		b, start, err = h.beginReply(b, now, nil)
	} else {
		b, start, err = h.begin(b, codec.MsgLeasequeryData, now)
	}
	if err != nil {
		return orig, err
	}
	if b, err = appendClientData(b, group, v, now); err != nil {
		return orig, err
	}
	if b, err = h.end(b, start); err != nil {
		return orig, err
	}
	return b, nil
}
