package requestor

import (
	"bytes"
	"net/netip"
	"time"

	"github.com/alqd/alqd/codec"
)

// message is one decoded server message, as the query state machines see
// it. Its slices alias the frame except statusMessage.
type message struct {
	info          MessageInfo
	status        codec.StatusCode
	hasStatus     bool
	statusMessage string
	clientData    []byte // option-data of OPTION_CLIENT_DATA, aliasing the frame
	hasClientData bool
	serverID      []byte
	clientLinks   []byte // option-data of OPTION_LQ_CLIENT_LINK, aliasing the frame

	// relayData is the option-data of an OPTION_LQ_RELAY_DATA at message
	// level, aliasing the frame. Over UDP, RFC 5007 section 4.1.2.4 places
	// the relay data of the client next to its OPTION_CLIENT_DATA in the
	// LEASEQUERY-REPLY, not inside it as Bulk Leasequery does.
	relayData    []byte
	hasRelayData bool
}

// ok reports whether the message carries no status or Success.
func (m *message) ok() bool { return !m.hasStatus || m.status == codec.StatusSuccess }

// messageDecoder turns server messages into events, reusing its scratch
// values. It is not safe for concurrent use.
type messageDecoder struct {
	msg   codec.Message
	cd    codec.ClientData
	relay codec.RelayMessage
	ia    codec.IANA
	ta    codec.IATA
	addr  codec.IAAddr
	pfx   codec.IAPrefix
	skew  *skewEstimator
}

// decode parses a server message read at received and fills m. A message
// that does not decode is a *ProtocolError.
func (d *messageDecoder) decode(frame []byte, received time.Time, source Source, m *message) error {
	if err := d.msg.Decode(frame); err != nil {
		var t codec.MsgType
		var xid uint32
		if len(frame) >= codec.HeaderLen {
			t, xid = codec.MsgType(frame[0]), uint32(frame[1])<<16|uint32(frame[2])<<8|uint32(frame[3])
		}
		return &ProtocolError{Type: t, TransactionID: xid, Reason: "message does not decode", Err: err}
	}
	opts := d.msg.Options
	*m = message{info: MessageInfo{
		Source:        source,
		Type:          d.msg.Type,
		TransactionID: d.msg.TransactionID,
		Received:      received,
		LocalBase:     received,
	}}

	// Times: every relative time in the message counts from the local
	// equivalent of its base-time, under the skew estimate so far. The
	// query state machine then adds the message to the estimate with
	// sampleSkew, because only it can tell what kind of sample it is.
	if base, ok := opts.BaseTime(); ok {
		m.info.BaseTime, m.info.HasBaseTime = base, true
		m.info.LocalBase = localTime(base, d.skew.estimate(), received)
	}

	status, ok, err := opts.Status()
	if err != nil {
		return &ProtocolError{Type: d.msg.Type, TransactionID: d.msg.TransactionID, Reason: "status code does not decode", Err: err}
	}
	if ok {
		m.status, m.hasStatus, m.statusMessage = status.Code, true, string(status.Message)
	}
	m.clientData, m.hasClientData = opts.ClientData()
	m.serverID, _ = opts.ServerID()
	m.clientLinks, _ = opts.Get(codec.OptLQClientLink)
	m.relayData, m.hasRelayData = opts.Get(codec.OptLQRelayData)
	return nil
}

// sampleSkew adds the base-time of m, if any, to the skew estimate as a
// sample of the given kind and moves m's LocalBase to the new estimate.
// Call it once per message, before its bindings are decoded.
func (d *messageDecoder) sampleSkew(m *message, kind skewSample) {
	if !m.info.HasBaseTime {
		return
	}
	skew := d.skew.observe(m.info.BaseTime, m.info.Received, kind)
	m.info.LocalBase = localTime(m.info.BaseTime, skew, m.info.Received)
}

// bindings appends one Binding event per address and prefix in the
// message's OPTION_CLIENT_DATA to dst. The events share one copy of the
// option-data, so they stay valid after the frame is reused.
func (d *messageDecoder) bindings(m *message, dst []Event) ([]Event, error) {
	owned := bytes.Clone(m.clientData)
	if err := d.cd.Decode(owned); err != nil {
		return dst, &ProtocolError{Type: m.info.Type, TransactionID: m.info.TransactionID, Reason: "OPTION_CLIENT_DATA does not decode", Err: err}
	}

	// The fields every binding of this client shares.
	var proto Binding
	proto.MessageInfo = m.info
	proto.ClientID = d.cd.ClientID
	if d.cd.HasCLTTime {
		proto.CLTTime, proto.HasCLTTime = d.cd.CLTTime, true
		proto.LastTransaction = m.info.LocalBase.Add(-time.Duration(d.cd.CLTTime) * time.Second)
	}
	if !d.cd.HasRelayData && m.hasRelayData {
		if err := d.cd.RelayData.Decode(bytes.Clone(m.relayData)); err != nil {
			return dst, &ProtocolError{Type: m.info.Type, TransactionID: m.info.TransactionID, Reason: "OPTION_LQ_RELAY_DATA does not decode", Err: err}
		}
		d.cd.HasRelayData = true
	}
	if d.cd.HasRelayData {
		d.relayData(&proto)
	}
	var containers codec.Options
	for _, o := range d.cd.Other {
		switch o.Code {
		case codec.OptIANA, codec.OptIATA, codec.OptIAPD:
			containers = append(containers, o)
		default:
			proto.Options = append(proto.Options, o)
		}
	}

	// One event per address or prefix, first those placed directly in the
	// option (RFC 5007 section 4.1.2.2), then those inside IA containers.
	for i := range d.cd.Addrs {
		dst = append(dst, addrBinding(proto, TypeNA, &d.cd.Addrs[i]))
	}
	for i := range d.cd.Prefixes {
		dst = append(dst, prefixBinding(proto, &d.cd.Prefixes[i]))
	}
	for _, o := range containers {
		var err error
		if dst, err = d.container(proto, o, dst); err != nil {
			return dst, &ProtocolError{Type: m.info.Type, TransactionID: m.info.TransactionID, Reason: "IA container in OPTION_CLIENT_DATA does not decode", Err: err}
		}
	}
	return dst, nil
}

// container appends the bindings inside an IA_NA, IA_TA or IA_PD option.
func (d *messageDecoder) container(proto Binding, o codec.Option, dst []Event) ([]Event, error) {
	var inner codec.Options
	typ := TypeNA
	switch o.Code {
	case codec.OptIANA:
		if err := d.ia.Decode(o.Data); err != nil {
			return dst, err
		}
		proto.IAID, inner = d.ia.IAID, d.ia.Options
	case codec.OptIAPD:
		if err := (*codec.IAPD)(&d.ia).Decode(o.Data); err != nil {
			return dst, err
		}
		proto.IAID, inner, typ = d.ia.IAID, d.ia.Options, TypePD
	case codec.OptIATA:
		if err := d.ta.Decode(o.Data); err != nil {
			return dst, err
		}
		proto.IAID, inner, typ = d.ta.IAID, d.ta.Options, TypeTA
	}
	proto.HasIAID = true

	for _, sub := range inner {
		switch sub.Code {
		case codec.OptIAAddr:
			if err := d.addr.Decode(sub.Data); err != nil {
				return dst, err
			}
			t := typ
			if t == TypePD {
				t = TypeNA // an address inside IA_PD makes no sense; report it as an address
			}
			dst = append(dst, addrBinding(proto, t, &d.addr))
		case codec.OptIAPrefix:
			if err := d.pfx.Decode(sub.Data); err != nil {
				return dst, err
			}
			dst = append(dst, prefixBinding(proto, &d.pfx))
		}
	}
	return dst, nil
}

// relayData fills the relay fields of b from OPTION_LQ_RELAY_DATA, walking
// the RELAY-FORW chain to the relay agent closest to the client. The codec
// checked the chain when it decoded the message, so a failure here only
// leaves the decoded fields empty.
func (d *messageDecoder) relayData(b *Binding) {
	b.HasRelayData = true
	b.RelayPeer = d.cd.RelayData.PeerAddress
	b.RelayMessage = d.cd.RelayData.Message
	if d.relay.Decode(d.cd.RelayData.Message) != nil {
		return
	}
	for range codec.MaxRelayNesting {
		inner, ok := d.relay.InnerMessage()
		if !ok {
			break
		}
		if t, err := codec.PeekType(inner); err != nil || !t.IsRelay() || d.relay.Decode(inner) != nil {
			break
		}
	}
	b.LinkAddress = d.relay.LinkAddress
	b.RelayID, _ = d.relay.Options.RelayID()
	b.InterfaceID, _ = d.relay.Options.InterfaceID()
	if r, ok, err := d.relay.Options.RemoteID(); ok && err == nil {
		b.RemoteID, b.HasRemoteID = r, true
	}
}

func addrBinding(b Binding, t BindingType, a *codec.IAAddr) Binding {
	b.Type = t
	b.Addr = a.Addr
	setLifetimes(&b, a.PreferredLifetime, a.ValidLifetime)
	return b
}

func prefixBinding(b Binding, p *codec.IAPrefix) Binding {
	b.Type = TypePD
	b.Prefix = p.Prefix
	setLifetimes(&b, p.PreferredLifetime, p.ValidLifetime)
	return b
}

// setLifetimes sets the lifetimes, their local end times and the state.
func setLifetimes(b *Binding, preferred, valid uint32) {
	b.PreferredLifetime, b.ValidLifetime = preferred, valid
	if valid == 0 {
		b.State = StateEnded
		return
	}
	b.State = StateActive
	b.ValidUntil = lifetimeEnd(b.LocalBase, valid)
	b.PreferredUntil = lifetimeEnd(b.LocalBase, preferred)
}

// lifetimeEnd returns base plus a lifetime, or the zero time for Infinity.
func lifetimeEnd(base time.Time, lifetime uint32) time.Time {
	if lifetime == Infinity {
		return time.Time{}
	}
	return base.Add(time.Duration(lifetime) * time.Second)
}

// clientLinks decodes OPTION_LQ_CLIENT_LINK.
func clientLinks(data []byte) ([]netip.Addr, error) {
	var l codec.LQClientLink
	if err := l.Decode(data); err != nil {
		return nil, err
	}
	return l.Links, nil
}
