package ingest

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/netip"

	"github.com/alqd/alqd/store"
)

// DHCPv6 codes used to read relay options and to rebuild Relay-forward
// messages. The codec package has the full registry; ingest encodes the few
// bytes it needs itself so that it depends on nothing but the store model.
const (
	msgRelayForw     = 12 // RELAY-FORW, RFC 8415 section 7.3
	optRelayMsg      = 9  // OPTION_RELAY_MSG, RFC 8415 section 21.10
	optInterfaceID   = 18 // OPTION_INTERFACE_ID, RFC 8415 section 21.18
	optRemoteID      = 37 // OPTION_REMOTE_ID, RFC 4649
	optRelayID       = 53 // OPTION_RELAY_ID, RFC 5460 section 5.4.1
	relayHeaderLen   = 34 // msg-type, hop-count, link-address, peer-address
	optionHeaderLen  = 4  // option-code and option-len
	maxOptionLen     = 0xffff
	enterpriseNumLen = 4 // enterprise-number at the start of OPTION_REMOTE_ID
)

// maxRelayDepth bounds the relays of one binding. Kea accepts up to 32 nested
// Relay-forward messages (the HOP_COUNT_LIMIT of RFC 3315); RFC 8415 section
// 7.6 lowered HOP_COUNT_LIMIT to 8, but a row that Kea stored with deeper
// nesting still describes a real binding, so ingest keeps Kea's bound.
const maxRelayDepth = 32

// relayInfo is one Relay-forward level of a relayed binding, as Kea stores it
// in the user context. Byte slices alias relayInfo.options or bytes decoded
// from the Kea 2.4 "remote-id" and "relay-id" keys.
type relayInfo struct {
	hop         uint8
	link        netip.Addr
	peer        netip.Addr
	options     []byte // the relay's options as DHCPv6 TLVs, without OPTION_RELAY_MSG
	interfaceID []byte
	remoteID    []byte // enterprise-number then remote-id
	relayID     []byte // a DUID
}

// relayFields are the values a relay chain contributes to a binding.
type relayFields struct {
	link        netip.Addr
	peer        netip.Addr
	interfaceID []byte
	remoteID    []byte
	relayID     []byte
	message     []byte // the Relay-forward chain, outermost first
}

// keaContext is the part of a Kea lease user context that carries relay
// information. Kea 2.2 writes "relays"; Kea 2.4 and later write "relay-info"
// and also upgrade "relays" to "relay-info" when both are present.
type keaContext struct {
	ISC *struct {
		Relays    []keaRelay `json:"relays"`
		RelayInfo []keaRelay `json:"relay-info"`
	} `json:"ISC"`
}

// keaRelay is one element of the relay list. Kea fills it from the relay's
// Relay-forward message: hop-count, link-address, peer-address and the
// relay's options as "0x" followed by upper-case hex.
type keaRelay struct {
	Hop      *int    `json:"hop"`
	Link     *string `json:"link"`
	Peer     *string `json:"peer"`
	Options  string  `json:"options"`
	RemoteID string  `json:"remote-id"` // Kea >= 2.4: option data of OPTION_REMOTE_ID in hex
	RelayID  string  `json:"relay-id"`  // Kea >= 2.4: the DUID of OPTION_RELAY_ID in hex
}

// decodeUserContext decodes the relay information of an unescaped Kea user
// context into relays (reused) and returns it; relays[0] is the relay closest
// to the server and the last entry the relay closest to the client, in the
// order Kea received them. A context without relay information gives an
// empty result. The returned byte slices are freshly allocated and do not
// alias text.
func decodeUserContext(text []byte, relays []relayInfo) ([]relayInfo, error) {
	relays = relays[:0]
	var ctx keaContext
	if err := json.Unmarshal(text, &ctx); err != nil {
		return relays, fmt.Errorf("%w: %v", ErrInvalidUserContext, err)
	}
	if ctx.ISC == nil {
		return relays, nil
	}
	list := ctx.ISC.RelayInfo
	if list == nil {
		list = ctx.ISC.Relays
	}
	if len(list) > maxRelayDepth {
		return relays, fmt.Errorf("%w: %d relays, at most %d are supported", ErrTooManyRelays, len(list), maxRelayDepth)
	}

	for i := range list {
		r, err := convertRelay(&list[i])
		if err != nil {
			return relays[:0], fmt.Errorf("relay %d: %w", i, err)
		}
		relays = append(relays, r)
	}
	return relays, nil
}

func convertRelay(kr *keaRelay) (relayInfo, error) {
	var r relayInfo
	if kr.Hop == nil || kr.Link == nil || kr.Peer == nil {
		return r, fmt.Errorf("%w: relay needs hop, link and peer", ErrInvalidUserContext)
	}
	if *kr.Hop < 0 || *kr.Hop > 255 {
		return r, fmt.Errorf("%w: hop %d is not in 0..255", ErrInvalidUserContext, *kr.Hop)
	}
	r.hop = uint8(*kr.Hop)

	var err error
	if r.link, err = parseIPv6(*kr.Link); err != nil {
		return r, fmt.Errorf("link: %w", err)
	}
	if r.peer, err = parseIPv6(*kr.Peer); err != nil {
		return r, fmt.Errorf("peer: %w", err)
	}

	if kr.Options != "" {
		if r.options, err = appendHex(nil, kr.Options); err != nil {
			return r, fmt.Errorf("options: %w", err)
		}
		if err = r.splitOptions(); err != nil {
			return r, err
		}
	}

	// Kea 2.4 and later also store the remote-id and relay-id of each
	// relay on their own. They come from the same options, so they only
	// add something when the options blob is missing; the blob then gains
	// the options so that the rebuilt Relay-forward carries them.
	if r.remoteID == nil && kr.RemoteID != "" {
		if r.remoteID, err = appendHex(nil, kr.RemoteID); err != nil {
			return r, fmt.Errorf("remote-id: %w", err)
		}
		if len(r.remoteID) < enterpriseNumLen || len(r.remoteID) > maxOptionLen {
			return r, fmt.Errorf("%w: remote-id of %d bytes, want %d to %d", ErrInvalidRelayOptions, len(r.remoteID), enterpriseNumLen, maxOptionLen)
		}
		r.options = appendOption(r.options, optRemoteID, r.remoteID)
	}
	if r.relayID == nil && kr.RelayID != "" {
		if r.relayID, err = appendHex(nil, kr.RelayID); err != nil {
			return r, fmt.Errorf("relay-id: %w", err)
		}
		if len(r.relayID) > maxOptionLen {
			return r, fmt.Errorf("%w: relay-id of %d bytes, at most %d fit an option", ErrInvalidRelayOptions, len(r.relayID), maxOptionLen)
		}
		r.options = appendOption(r.options, optRelayID, r.relayID)
	}
	return r, nil
}

// splitOptions walks the option TLVs of r.options and points the identifier
// fields at the data of the options it knows. A relay sends each of these
// options at most once; OPTION_RELAY_MSG can not appear because Kea strips it
// while it unpacks the relay.
func (r *relayInfo) splitOptions() error {
	b := r.options
	for off := 0; off < len(b); {
		if len(b)-off < optionHeaderLen {
			return fmt.Errorf("%w: truncated option header at offset %d", ErrInvalidRelayOptions, off)
		}
		code := binary.BigEndian.Uint16(b[off:])
		length := int(binary.BigEndian.Uint16(b[off+2:]))
		start := off + optionHeaderLen
		if len(b)-start < length {
			return fmt.Errorf("%w: option %d at offset %d claims %d bytes, %d remain", ErrInvalidRelayOptions, code, off, length, len(b)-start)
		}
		data := b[start : start+length : start+length]

		var field *[]byte
		switch code {
		case optInterfaceID:
			field = &r.interfaceID
		case optRemoteID:
			if length < enterpriseNumLen {
				return fmt.Errorf("%w: option 37 at offset %d has %d bytes, less than its enterprise number", ErrInvalidRelayOptions, off, length)
			}
			field = &r.remoteID
		case optRelayID:
			if length == 0 {
				return fmt.Errorf("%w: empty option 53 at offset %d", ErrInvalidRelayOptions, off)
			}
			field = &r.relayID
		case optRelayMsg:
			return fmt.Errorf("%w: option 9 (relay message) at offset %d inside relay options", ErrInvalidRelayOptions, off)
		}
		if field != nil {
			if *field != nil {
				return fmt.Errorf("%w: option %d repeated at offset %d", ErrInvalidRelayOptions, code, off)
			}
			*field = data
		}
		off = start + length
	}
	return nil
}

// appendOption appends one DHCPv6 option TLV. The caller keeps len(data)
// within maxOptionLen.
func appendOption(b []byte, code uint16, data []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, code)
	b = binary.BigEndian.AppendUint16(b, uint16(len(data)))
	return append(b, data...)
}

// resolveRelays derives the binding's relay fields from a relay chain
// (relays[0] closest to the server). The chain is appended to dst and
// fields.message aliases that part of dst.
//
// Link address: the link-address of the relay closest to the client, or, when
// that relay left it unspecified (RFC 8415 section 19.1.1 allows 0 when it
// sends an Interface-ID instead), the first specified one further out.
// Identifiers: Interface-ID, Remote-ID and Relay-ID each come from the relay
// closest to the client that sent the option, so that a lightweight relay
// (RFC 6221) that only adds Interface-ID does not hide the Relay-ID of the
// layer-3 relay behind it.
// Peer: the peer-address of the outermost Relay-forward. Kea does not store
// the source address of the relay it received the message from, which is
// what OPTION_LQ_RELAY_DATA (RFC 5007 section 4.1.2.4) names; Kea's own
// leasequery hook reports the same peer-address.
func resolveRelays(dst []byte, relays []relayInfo) ([]byte, relayFields, error) {
	var f relayFields
	if len(relays) == 0 {
		return dst, f, nil
	}
	f.peer = relays[0].peer
	f.link = relays[len(relays)-1].link
	for i := len(relays) - 1; i >= 0; i-- {
		r := &relays[i]
		if f.link.IsUnspecified() && !r.link.IsUnspecified() {
			f.link = r.link
		}
		if f.interfaceID == nil {
			f.interfaceID = r.interfaceID
		}
		if f.remoteID == nil {
			f.remoteID = r.remoteID
		}
		if f.relayID == nil {
			f.relayID = r.relayID
		}
	}

	start := len(dst)
	dst, err := appendRelayChain(dst, relays)
	if err != nil {
		return dst[:start], relayFields{}, err
	}
	f.message = dst[start:len(dst):len(dst)]
	return dst, f, nil
}

// relayChainLen returns the encoded length of the Relay-forward chain of
// relays[i:], or an error when an inner message does not fit into the 16-bit
// length of OPTION_RELAY_MSG.
func relayChainLen(relays []relayInfo, i int) (int, error) {
	n := 0
	for j := len(relays) - 1; j >= i; j-- {
		if j < len(relays)-1 {
			if n > maxOptionLen {
				return 0, fmt.Errorf("%w: Relay-forward of relay %d is %d bytes, more than an option can carry", ErrInvalidRelayOptions, j+1, n)
			}
			n += optionHeaderLen
		}
		n += relayHeaderLen + len(relays[j].options)
	}
	if n > store.MaxRelayMessageLen {
		return 0, fmt.Errorf("%w: Relay-forward chain of %d bytes, more than the %d a binding's relay message may hold", ErrInvalidRelayOptions, n, store.MaxRelayMessageLen)
	}
	return n, nil
}

// appendRelayChain appends the Relay-forward messages of relays, outermost
// (relays[0]) first, each nested in the OPTION_RELAY_MSG of the one before.
// Every message has the relay's hop-count, link-address, peer-address and
// options as Kea stored them (Kea keeps options ordered by code, so the order
// on the wire is not preserved). Kea does not store the client's message, so
// the innermost Relay-forward has no OPTION_RELAY_MSG at all, as in the
// OPTION_LQ_RELAY_DATA that Kea's leasequery hook builds: an empty
// OPTION_RELAY_MSG would claim a client message of zero bytes, which no
// DHCPv6 message is.
func appendRelayChain(dst []byte, relays []relayInfo) ([]byte, error) {
	if _, err := relayChainLen(relays, 0); err != nil {
		return dst, err
	}
	for i := range relays {
		r := &relays[i]
		dst = append(dst, msgRelayForw, r.hop)
		link, peer := r.link.As16(), r.peer.As16()
		dst = append(dst, link[:]...)
		dst = append(dst, peer[:]...)
		dst = append(dst, r.options...)
		if i < len(relays)-1 {
			inner, _ := relayChainLen(relays, i+1)
			dst = binary.BigEndian.AppendUint16(dst, optRelayMsg)
			dst = binary.BigEndian.AppendUint16(dst, uint16(inner))
		}
	}
	return dst, nil
}

// parseIPv6 parses an IPv6 address without zone. IPv4 and IPv4-mapped
// addresses are rejected because DHCPv6 bindings never carry them.
func parseIPv6(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is6() || a.Is4In6() || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%w: %s", ErrInvalidAddress, quote(s))
	}
	return a, nil
}
