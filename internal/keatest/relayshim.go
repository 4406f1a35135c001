package keatest

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
)

// DHCPv6 message types and option codes the relay shim reads or writes.
const (
	msgRelayForw = 12 // RELAY-FORW (RFC 8415 section 7.3)
	msgRelayRepl = 13 // RELAY-REPL (RFC 8415 section 7.3)

	optClientID    = 1  // OPTION_CLIENTID (RFC 8415 section 21.2)
	optRelayMsg    = 9  // OPTION_RELAY_MSG (RFC 8415 section 21.10)
	optInterfaceID = 18 // OPTION_INTERFACE_ID (RFC 8415 section 21.18)
	optRemoteID    = 37 // OPTION_REMOTE_ID (RFC 4649 section 3)
	optRelayID     = 53 // OPTION_RELAY_ID (RFC 5460 section 5.4.1)

	// relayHeaderLen is msg-type, hop-count, link-address and peer-address
	// (RFC 8415 section 9).
	relayHeaderLen = 34
	// clientHeaderLen is msg-type and transaction-id (RFC 8415 section 8).
	clientHeaderLen = 4
)

// RemoteIDEnterprise is the enterprise number the relay shim puts in front of
// every Remote-ID: 3561, the Broadband Forum (formerly ADSL Forum), which DSL
// access equipment uses.
const RemoteIDEnterprise = 3561

// RemoteID returns the data of the Remote-ID option the relay shim adds for a
// client: RemoteIDEnterprise as 4 bytes, then "sub-" and the last 3 bytes of
// the client's DUID in lower-case hex. A client keeps the same remote-id
// across Solicit, Request, Renew and Release, and clients whose DUIDs differ
// in their last 3 bytes get different remote-ids.
func RemoteID(clientDUID []byte) []byte {
	tail := clientDUID[max(0, len(clientDUID)-3):]
	id := binary.BigEndian.AppendUint32(nil, RemoteIDEnterprise)
	id = append(id, "sub-"...)
	return hex.AppendEncode(id, tail)
}

// RelayID returns the data of the Relay-ID option the relay shim adds to
// Relay-forward messages for link: a DUID-LL (type 3, hardware type 1) with
// the locally administered link-layer address 02:aa followed by bytes 4-5 and
// 14-15 of link. The links of relays.txt ("2001:db8:2::1", "2001:db8:3::1")
// get distinct relay-ids.
func RelayID(link netip.Addr) []byte {
	a := link.As16()
	return []byte{0, 3, 0, 1, 0x02, 0xaa, a[4], a[5], a[14], a[15]}
}

// InterfaceID returns the data of the Interface-ID option the relay shim adds
// for link: "relay-" and the link-address in text form.
func InterfaceID(link netip.Addr) []byte {
	return []byte("relay-" + link.String())
}

// appendRelayOptions returns a copy of the Relay-forward msg with
// Interface-ID, Remote-ID and Relay-ID appended (RFC 8415 section 19.1.1
// lets a relay add options to its Relay-forward). Remote-ID is left out when
// the relayed message has no Client Identifier. It returns an error for
// anything but a well-formed single-level Relay-forward.
func appendRelayOptions(msg []byte) ([]byte, error) {
	if len(msg) < relayHeaderLen {
		return nil, fmt.Errorf("relay-forward of %d bytes is shorter than its %d-byte header", len(msg), relayHeaderLen)
	}
	if msg[0] != msgRelayForw {
		return nil, fmt.Errorf("message type %d is not RELAY-FORW", msg[0])
	}
	link := netip.AddrFrom16([16]byte(msg[2:18]))

	inner, err := findOption(msg[relayHeaderLen:], optRelayMsg)
	if err != nil {
		return nil, fmt.Errorf("relay-forward options: %w", err)
	}
	if inner == nil {
		return nil, errors.New("relay-forward has no Relay Message option")
	}
	var duid []byte
	if len(inner) >= clientHeaderLen && inner[0] != msgRelayForw {
		if duid, err = findOption(inner[clientHeaderLen:], optClientID); err != nil {
			return nil, fmt.Errorf("relayed message options: %w", err)
		}
	}

	out := make([]byte, 0, len(msg)+64)
	out = append(out, msg...)
	out = appendOption(out, optInterfaceID, InterfaceID(link))
	if duid != nil {
		out = appendOption(out, optRemoteID, RemoteID(duid))
	}
	out = appendOption(out, optRelayID, RelayID(link))
	return out, nil
}

// findOption returns the data of the first option with the given code in a
// sequence of DHCPv6 options, or nil. The result aliases options.
func findOption(options []byte, code uint16) ([]byte, error) {
	var found []byte
	err := walkOptions(options, func(c uint16, data []byte) bool {
		if c == code {
			found = data
			return false
		}
		return true
	})
	return found, err
}

// walkOptions calls visit for each option of a sequence of DHCPv6 options, in
// order, until visit returns false. The data passed to visit aliases options
// and has its capacity capped at its length. It returns an error for a
// truncated option, after visiting the options before it.
func walkOptions(options []byte, visit func(code uint16, data []byte) bool) error {
	for off := 0; off < len(options); {
		if len(options)-off < 4 {
			return fmt.Errorf("truncated option header at byte %d", off)
		}
		code := binary.BigEndian.Uint16(options[off:])
		length := int(binary.BigEndian.Uint16(options[off+2:]))
		start := off + 4
		if len(options)-start < length {
			return fmt.Errorf("option %d at byte %d claims %d bytes, %d remain", code, off, length, len(options)-start)
		}
		if !visit(code, options[start:start+length:start+length]) {
			return nil
		}
		off = start + length
	}
	return nil
}

// appendOption appends one option in TLV form.
func appendOption(b []byte, code uint16, data []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, code)
	b = binary.BigEndian.AppendUint16(b, uint16(len(data)))
	return append(b, data...)
}

// RelayShim is a DHCPv6 relay agent stand-in in the client namespace. It
// receives perfdhcp's Relay-forward messages on [ShimAddr]:547, appends
// Interface-ID, Remote-ID and Relay-ID (see InterfaceID, RemoteID, RelayID)
// and sends them to Kea at [ServerAddr]:547 from the same socket. It passes
// Kea's Relay-reply back unchanged to the sender of the Relay-forward with the
// same peer-address. The perfdhcp of Kea 2.2 adds no relay options itself.
//
// One goroutine does all the work, so the peer table needs no lock; the
// counters are atomic and may be read from any goroutine.
type RelayShim struct {
	conn   *net.UDPConn
	server netip.AddrPort

	forwarded atomic.Uint64
	replied   atomic.Uint64
	dropped   atomic.Uint64

	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// StartRelayShim opens the shim's socket in topo's client namespace and starts
// forwarding. It is closed in t.Cleanup.
func StartRelayShim(t testing.TB, topo *Topology) *RelayShim {
	t.Helper()

	conn, err := topo.ListenUDP(topo.ClientNamespace, netip.AddrPortFrom(ShimAddr, dhcpServerPort))
	if err != nil {
		t.Fatalf("start the relay shim: %v", err)
	}
	s := &RelayShim{
		conn:   conn,
		server: netip.AddrPortFrom(ServerAddr, dhcpServerPort),
		done:   make(chan struct{}),
	}
	go s.serve()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close the relay shim: %v", err)
		}
	})
	return s
}

// Addr returns the address perfdhcp must send its Relay-forward messages to.
func (s *RelayShim) Addr() netip.AddrPort {
	return s.conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

// Forwarded returns how many Relay-forward messages went to Kea.
func (s *RelayShim) Forwarded() uint64 { return s.forwarded.Load() }

// Replied returns how many Relay-reply messages went back to perfdhcp.
func (s *RelayShim) Replied() uint64 { return s.replied.Load() }

// Dropped returns how many datagrams were malformed, unexpected or could not
// be sent.
func (s *RelayShim) Dropped() uint64 { return s.dropped.Load() }

// Close stops the shim and waits for its goroutine to return. It is
// idempotent.
func (s *RelayShim) Close() error {
	s.closeOnce.Do(func() {
		s.closeErr = s.conn.Close()
		<-s.done
	})
	return s.closeErr
}

func (s *RelayShim) serve() {
	defer close(s.done)

	// peers maps the peer-address of a Relay-forward to the UDP source it
	// came from; Kea copies the peer-address into its Relay-reply (RFC 8415
	// section 19.3), so replies find their way back.
	peers := make(map[netip.Addr]netip.AddrPort)
	buf := make([]byte, 65535)
	for {
		n, src, err := s.conn.ReadFromUDPAddrPort(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil || n < relayHeaderLen {
			s.dropped.Add(1)
			continue
		}
		msg := buf[:n]
		peer := netip.AddrFrom16([16]byte(msg[18:34]))

		var dst netip.AddrPort
		switch {
		case msg[0] == msgRelayForw && src.Addr() != s.server.Addr():
			out, err := appendRelayOptions(msg)
			if err != nil {
				s.dropped.Add(1)
				continue
			}
			peers[peer] = src
			msg, dst = out, s.server
		case msg[0] == msgRelayRepl && src == s.server:
			back, ok := peers[peer]
			if !ok {
				s.dropped.Add(1)
				continue
			}
			dst = back
		default:
			s.dropped.Add(1)
			continue
		}

		if _, err := s.conn.WriteToUDPAddrPort(msg, dst); err != nil {
			s.dropped.Add(1)
			continue
		}
		if dst == s.server {
			s.forwarded.Add(1)
		} else {
			s.replied.Add(1)
		}
	}
}
