package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/alqd/alqd/codec"
)

// Every contender carries the same messages: a LEASEQUERY-DATA with one
// OPTION_CLIENT_DATA (client DUID, OPTION_CLT_TIME, one OPTION_IAADDR and,
// for larger payloads, an OPTION_LQ_RELAY_DATA) and an OPTION_LQ_BASE_TIME,
// which is what an Active Leasequery server sends for one binding change.
//
// The OPTION_IAADDR address doubles as the probe: its bytes are
//
//	0       4            8                              16
//	+-------+------------+------------------------------+
//	| 2001:db8 | key (u32) | stamp: publish time, Unix ns |
//	+-------+------------+------------------------------+
//
// so a receiver learns the latency and the relay key of every message it
// decodes without any side channel, and every message is a distinct
// binding, which the alqd contender needs because its store keys bindings
// by address.

const (
	// minFrameSize is the size of a frame without OPTION_LQ_RELAY_DATA:
	// msg-size 2, header 4, OPTION_CLIENT_DATA 4 + client-id 14 + CLT_TIME 8
	// + IAADDR 28, OPTION_LQ_BASE_TIME 8.
	minFrameSize = 68

	// relayDataOverhead is what OPTION_LQ_RELAY_DATA adds before its padding:
	// option header 4, peer-address 16, RELAY-FORW header 34, then
	// OPTION_INTERFACE_ID header 4 and at least 1 octet of interface-id.
	relayDataOverhead = 4 + 16 + codec.RelayHeaderLen + 4 + 1

	// allKeys is the key of a message for every subscriber (unfiltered).
	allKeys = 0xffffffff

	// benchEnterprise is the enterprise number of the relay DUIDs: 32473 is
	// reserved for documentation (RFC 5612).
	benchEnterprise = 32473

	// preferredLifetime and validLifetime are the lifetimes every probe
	// binding carries, in seconds.
	preferredLifetime = 3600
	validLifetime     = 7200
)

var (
	// probePrefix is the first half of every probe address (2001:db8::/32
	// is the documentation prefix of RFC 3849).
	probePrefix = [4]byte{0x20, 0x01, 0x0d, 0xb8}

	// probeClientID is the client DUID of every probe binding: a DUID-LL
	// with a documentation MAC address (RFC 7042).
	probeClientID = []byte{0, 3, 0, 1, 0x00, 0x00, 0x5e, 0x00, 0x53, 0x01}

	// probeLink is the link-address of every probe binding.
	probeLink = netip.MustParseAddr("2001:db8:ffff::1")

	// errNotProbe is returned by decodeProbe for a message that is valid but
	// carries no probe address.
	errNotProbe = errors.New("bench: LEASEQUERY-DATA without a probe address")
)

// relayDUID returns the OPTION_RELAY_ID DUID of relay key: a DUID-EN with
// the documentation enterprise number and the key as a 4-octet identifier.
func relayDUID(key uint32) []byte {
	b := make([]byte, 0, 10)
	b = binary.BigEndian.AppendUint16(b, uint16(codec.DUIDEN))
	b = binary.BigEndian.AppendUint32(b, benchEnterprise)
	return binary.BigEndian.AppendUint32(b, key)
}

// relayKey reverses relayDUID; ok is false for any other DUID.
func relayKey(duid []byte) (key uint32, ok bool) {
	if len(duid) != 10 || binary.BigEndian.Uint16(duid) != uint16(codec.DUIDEN) ||
		binary.BigEndian.Uint32(duid[2:]) != benchEnterprise {
		return 0, false
	}
	return binary.BigEndian.Uint32(duid[6:]), true
}

// probeAddr returns the probe address for key and stamp (see the layout at
// the top of this file).
func probeAddr(key uint32, stamp int64) netip.Addr {
	var a [16]byte
	copy(a[:4], probePrefix[:])
	binary.BigEndian.PutUint32(a[4:8], key)
	binary.BigEndian.PutUint64(a[8:], uint64(stamp))
	return netip.AddrFrom16(a)
}

// splitProbe returns the key and stamp of a probe address; ok is false for an
// address outside the probe prefix.
func splitProbe(a netip.Addr) (key uint32, stamp int64, ok bool) {
	b := a.As16()
	if !a.Is6() || [4]byte(b[:4]) != probePrefix {
		return 0, 0, false
	}
	return binary.BigEndian.Uint32(b[4:8]), int64(binary.BigEndian.Uint64(b[8:])), true
}

// relayPadding returns the interface-id length that makes a frame
// frameSize octets long, or 0 (no OPTION_LQ_RELAY_DATA) for the smallest
// frame. It fails for a size between the two that no layout can reach.
func relayPadding(frameSize int) (int, error) {
	switch {
	case frameSize == minFrameSize:
		return 0, nil
	case frameSize < minFrameSize+relayDataOverhead || frameSize > codec.FrameHeaderLen+codec.MaxMessageLen:
		return 0, fmt.Errorf("bench: frame size %d is invalid: use %d, or %d to %d octets",
			frameSize, minFrameSize, minFrameSize+relayDataOverhead, codec.FrameHeaderLen+codec.MaxMessageLen)
	}
	return frameSize - minFrameSize - relayDataOverhead + 1, nil
}

// relayMessage returns the RELAY-FORW that OPTION_LQ_RELAY_DATA carries in a
// probe of a frame with the given interface-id padding.
func relayMessage(padding int) []byte {
	msg := codec.RelayMessage{
		Type:        codec.MsgRelayForw,
		LinkAddress: probeLink,
		PeerAddress: netip.MustParseAddr("fe80::1"),
	}
	msg.Options.Add(codec.OptInterfaceID, make([]byte, padding))
	b, err := msg.AppendTo(nil)
	if err != nil {
		// The fields above are constants of this file.
		panic(fmt.Sprintf("bench: encoding the probe relay message: %v", err))
	}
	return b
}

// frameBuilder encodes probe frames of one size. It is used by one
// goroutine at a time.
type frameBuilder struct {
	relay    []byte // RELAY-FORW for OPTION_LQ_RELAY_DATA, nil for none
	baseTime uint32
	size     int
}

// newFrameBuilder returns a builder of frameSize-octet probe frames.
func newFrameBuilder(frameSize int) (*frameBuilder, error) {
	padding, err := relayPadding(frameSize)
	if err != nil {
		return nil, err
	}
	fb := &frameBuilder{size: frameSize, baseTime: codec.DHCPTime(time.Now())}
	if padding > 0 {
		fb.relay = relayMessage(padding)
	}
	return fb, nil
}

// appendFrame appends one framed probe message for key and stamp to b.
func (fb *frameBuilder) appendFrame(b []byte, key uint32, stamp int64) []byte {
	data := codec.ClientData{
		ClientID:   probeClientID,
		CLTTime:    0,
		HasCLTTime: true,
		Addrs: []codec.IAAddr{{
			Addr:              probeAddr(key, stamp),
			PreferredLifetime: preferredLifetime,
			ValidLifetime:     validLifetime,
		}},
	}
	if fb.relay != nil {
		data.HasRelayData = true
		data.RelayData = codec.LQRelayData{PeerAddress: probeLink, Message: fb.relay}
	}

	start := len(b)
	b, at := codec.BeginFrame(b)
	b, err := codec.AppendHeader(b, codec.MsgLeasequeryData, 0)
	if err == nil {
		b, err = data.AppendTo(b)
	}
	if err == nil {
		b = codec.AppendUint32Option(b, codec.OptLQBaseTime, fb.baseTime)
		b, err = codec.EndFrame(b, at)
	}
	if err != nil || len(b)-start != fb.size {
		// Every field is fixed by newFrameBuilder, so this is a bug here.
		panic(fmt.Sprintf("bench: encoding a %d-octet probe frame gave %d octets: %v", fb.size, len(b)-start, err))
	}
	return b
}

// activeQuery returns the framed ACTIVELEASEQUERY a subscriber sends: all
// bindings, or with a QUERY_BY_RELAY_ID filter for key when filtered is set
// (RFC 7653 section 6.2.1 forbids OPTION_LQ_QUERY in the unfiltered case).
func activeQuery(xid uint32, filtered bool, key uint32) []byte {
	msg := codec.Message{Type: codec.MsgActiveLeasequery, TransactionID: xid & 0xffffff}
	msg.Options.Add(codec.OptClientID, requestorID)
	if filtered {
		q := codec.LQQuery{QueryType: codec.QueryByRelayID, LinkAddress: netip.IPv6Unspecified()}
		q.Options.Add(codec.OptRelayID, relayDUID(key))
		data, err := q.AppendTo(nil)
		if err != nil {
			panic(fmt.Sprintf("bench: encoding OPTION_LQ_QUERY: %v", err))
		}
		// AppendTo wrote the option header; Options.Add takes option-data.
		msg.Options.Add(codec.OptLQQuery, data[codec.OptionHeaderLen:])
	}
	b, err := msg.AppendFrameTo(nil)
	if err != nil {
		panic(fmt.Sprintf("bench: encoding ACTIVELEASEQUERY: %v", err))
	}
	return b
}

// requestorID is the client DUID every bench subscriber sends.
var requestorID = []byte{0, 3, 0, 1, 0x00, 0x00, 0x5e, 0x00, 0x53, 0x02}

// parseActiveQuery returns the relay key of an ACTIVELEASEQUERY message
// (without its msg-size), or allKeys when it carries no OPTION_LQ_QUERY.
func parseActiveQuery(msg []byte) (xid, key uint32, err error) {
	var m codec.Message
	if err := m.Decode(msg); err != nil {
		return 0, 0, err
	}
	if m.Type != codec.MsgActiveLeasequery {
		return 0, 0, fmt.Errorf("bench: subscription is a %v, want ACTIVELEASEQUERY", m.Type)
	}
	var q codec.LQQuery
	found, err := m.Options.LQQuery(&q)
	switch {
	case err != nil:
		return 0, 0, err
	case !found:
		return m.TransactionID, allKeys, nil
	}
	duid, ok := q.Options.Get(codec.OptRelayID)
	if !ok || q.QueryType != codec.QueryByRelayID {
		return 0, 0, fmt.Errorf("bench: OPTION_LQ_QUERY is a %v without OPTION_RELAY_ID, want QUERY_BY_RELAY_ID", q.QueryType)
	}
	key, ok = relayKey(duid)
	if !ok {
		return 0, 0, fmt.Errorf("bench: relay-id %x is not a bench relay DUID", duid)
	}
	return m.TransactionID, key, nil
}

// subscribeReply returns the framed LEASEQUERY-REPLY that accepts an
// ACTIVELEASEQUERY with transaction-id xid (RFC 7653 section 8.3: a reply
// without binding data, then LEASEQUERY-DATA per change).
func subscribeReply(xid uint32, baseTime uint32) []byte {
	msg := codec.Message{Type: codec.MsgLeasequeryReply, TransactionID: xid & 0xffffff}
	msg.Options.Add(codec.OptLQBaseTime, binary.BigEndian.AppendUint32(nil, baseTime))
	b, err := msg.AppendFrameTo(nil)
	if err != nil {
		panic(fmt.Sprintf("bench: encoding LEASEQUERY-REPLY: %v", err))
	}
	return b
}

// probeDecoder fully decodes received messages and extracts the probe. It
// reuses its buffers, so one belongs to one goroutine.
type probeDecoder struct {
	msg  codec.Message
	data codec.ClientData
}

// decode checks that msg (without its msg-size) is a well-formed DHCPv6
// message and returns its type and, for a LEASEQUERY-DATA or
// LEASEQUERY-REPLY carrying a binding, the probe key and stamp (hasProbe).
// A LEASEQUERY-REPLY or LEASEQUERY-DONE with a status other than Success
// is returned as a *codec.StatusError.
func (d *probeDecoder) decode(msg []byte) (t codec.MsgType, key uint32, stamp int64, hasProbe bool, err error) {
	if err := d.msg.Decode(msg); err != nil {
		return 0, 0, 0, false, err
	}
	t = d.msg.Type
	status, ok, err := d.msg.Options.Status()
	if err != nil {
		return t, 0, 0, false, err
	}
	if ok && status.Code != codec.StatusSuccess && status.Code != codec.StatusCatchUpComplete {
		return t, 0, 0, false, &codec.StatusError{Code: status.Code, Msg: string(status.Message)}
	}
	body, ok := d.msg.Options.ClientData()
	if !ok {
		// A LEASEQUERY-REPLY that only accepts the query, a LEASEQUERY-DATA
		// keepalive (RFC 7653 section 6.4) or a status message.
		return t, 0, 0, false, nil
	}
	if err := d.data.Decode(body); err != nil {
		return t, 0, 0, false, err
	}
	if len(d.data.Addrs) == 0 {
		return t, 0, 0, false, errNotProbe
	}
	key, stamp, ok = splitProbe(d.data.Addrs[0].Addr)
	if !ok {
		return t, 0, 0, false, errNotProbe
	}
	return t, key, stamp, true, nil
}
