package loadgen

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/alqd/alqd/codec"
)

// StampMode selects where a Churn writes the send time of each change, so
// that a requestor that receives the change can compute how long it took.
// OPTION_LQ_BASE_TIME and OPTION_CLT_TIME count whole seconds, too coarse
// for latency, so the time travels in a field the generator controls and
// the server passes through unchanged. Both clocks are the same machine's,
// so the difference needs no clock synchronization.
type StampMode uint8

const (
	// StampDUID writes the time into the client DUID, which every
	// OPTION_CLIENT_DATA carries (RFC 5007 section 4.1.2.2). The DUID is a
	// DUID-EN of 18 octets:
	//
	//	octets 0-1    DUID type 2 (DUID-EN)
	//	octets 2-5    enterprise-number 32473 (RFC 5612, documentation)
	//	octets 6-9    client number, big-endian
	//	octets 10-17  send time, Unix nanoseconds, big-endian; 0 is no stamp
	//
	// NOTE: the DUID then changes with every change, so the server records
	// every renewal under a new DUID. Its client-id index moves, and a Kea
	// lease file follower classifies renewals as new bindings.
	StampDUID StampMode = iota

	// StampRelay writes the time into an OPTION_VENDOR_OPTS (RFC 8415
	// section 21.17) that the relay puts first in its Relay-forward. The
	// server returns that message in OPTION_LQ_RELAY_DATA (RFC 5007 section
	// 4.1.2.4). The option holds enterprise-number 32473, then one
	// sub-option of code 1 and length 8 with the send time in Unix
	// nanoseconds, big-endian. The DUID stays
	// the same for the life of the client. Only relayed clients carry a
	// stamp, and only requestors that ask for OPTION_LQ_RELAY_DATA see it.
	StampRelay

	// StampNone writes no time: the DUID layout is kept, with the time
	// field 0.
	StampNone
)

var stampModeNames = [...]string{"duid", "relay", "none"}

// String returns the name the command line uses: duid, relay or none.
func (m StampMode) String() string {
	if int(m) < len(stampModeNames) {
		return stampModeNames[m]
	}
	return fmt.Sprintf("StampMode(%d)", uint8(m))
}

// ParseStampMode returns the StampMode named by s (duid, relay or none).
func ParseStampMode(s string) (StampMode, error) {
	for i, name := range stampModeNames {
		if s == name {
			return StampMode(i), nil
		}
	}
	return 0, fmt.Errorf("%w: stamp mode %q is not one of duid, relay, none", ErrInvalidConfig, s)
}

// Layout of the stamps.
const (
	clientDUIDLen    = 18
	clientNumberAt   = 6  // offset of the client number in the client DUID
	duidStampAt      = 10 // offset of the send time in the client DUID
	stampSubOption   = 1  // sub-option code of the send time in OPTION_VENDOR_OPTS
	stampLen         = 8
	vendorStampLen   = codec.OptionHeaderLen + 4 + codec.OptionHeaderLen + stampLen
	relayStampAt     = codec.RelayHeaderLen + vendorStampLen - stampLen // offset in the relay message
	duidTypeEN       = uint16(codec.DUIDEN)
	enterpriseNumber = uint32(DocumentationEnterpriseNumber)
)

// stampValue returns t as the stored stamp: Unix nanoseconds, at least 1 so
// that a stamped change is never read as unstamped.
func stampValue(t time.Time) uint64 {
	ns := t.UnixNano()
	if ns < 1 {
		ns = 1
	}
	return uint64(ns)
}

// appendClientDUID appends the DUID of client i with the stamp field set to
// stamp (0 for none).
func appendClientDUID(b []byte, i uint32, stamp uint64) []byte {
	b = binary.BigEndian.AppendUint16(b, duidTypeEN)
	b = binary.BigEndian.AppendUint32(b, enterpriseNumber)
	b = binary.BigEndian.AppendUint32(b, i)
	return binary.BigEndian.AppendUint64(b, stamp)
}

// ClientDUID returns the DUID a Churn gives client i, stamped with
// sendTime, or unstamped when sendTime is zero: for servers and tests that
// produce stamped updates themselves. The result is a new slice.
func ClientDUID(i uint32, sendTime time.Time) []byte {
	stamp := uint64(0)
	if !sendTime.IsZero() {
		stamp = stampValue(sendTime)
	}
	return appendClientDUID(make([]byte, 0, clientDUIDLen), i, stamp)
}

// appendVendorStamp appends the OPTION_VENDOR_OPTS that carries a relay
// stamp.
func appendVendorStamp(b []byte, stamp uint64) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(codec.OptVendorOpts))
	b = binary.BigEndian.AppendUint16(b, vendorStampLen-codec.OptionHeaderLen)
	b = binary.BigEndian.AppendUint32(b, enterpriseNumber)
	b = binary.BigEndian.AppendUint16(b, stampSubOption)
	b = binary.BigEndian.AppendUint16(b, stampLen)
	return binary.BigEndian.AppendUint64(b, stamp)
}

// ClientNumber returns the client number of a DUID made by a Churn, and
// false for any other DUID.
func ClientNumber(duid []byte) (uint32, bool) {
	if !isClientDUID(duid) {
		return 0, false
	}
	return binary.BigEndian.Uint32(duid[clientNumberAt:]), true
}

func isClientDUID(duid []byte) bool {
	return len(duid) == clientDUIDLen &&
		binary.BigEndian.Uint16(duid) == duidTypeEN &&
		binary.BigEndian.Uint32(duid[2:]) == enterpriseNumber
}

// StampFromDUID returns the send time in a client DUID made by a Churn with
// StampDUID. It returns false for other DUIDs and for a DUID without a stamp.
//
// hot path: no allocation.
func StampFromDUID(duid []byte) (time.Time, bool) {
	if !isClientDUID(duid) {
		return time.Time{}, false
	}
	return stampTime(binary.BigEndian.Uint64(duid[duidStampAt:]))
}

// StampFromRelayMessage returns the send time in a Relay-forward made by a
// Churn with StampRelay, as OPTION_LQ_RELAY_DATA carries it. It looks at the
// options of the outermost relay only, and returns false when none of them
// is a stamp or when the message is malformed.
//
// hot path: no allocation.
func StampFromRelayMessage(msg []byte) (time.Time, bool) {
	if len(msg) < codec.RelayHeaderLen || codec.MsgType(msg[0]) != codec.MsgRelayForw {
		return time.Time{}, false
	}
	opts := msg[codec.RelayHeaderLen:]
	for len(opts) >= codec.OptionHeaderLen {
		code := codec.OptionCode(binary.BigEndian.Uint16(opts))
		n := int(binary.BigEndian.Uint16(opts[2:]))
		if len(opts)-codec.OptionHeaderLen < n {
			return time.Time{}, false
		}
		data := opts[codec.OptionHeaderLen : codec.OptionHeaderLen+n]
		if code == codec.OptVendorOpts && n == vendorStampLen-codec.OptionHeaderLen &&
			binary.BigEndian.Uint32(data) == enterpriseNumber &&
			binary.BigEndian.Uint16(data[4:]) == stampSubOption &&
			binary.BigEndian.Uint16(data[6:]) == stampLen {
			return stampTime(binary.BigEndian.Uint64(data[8:]))
		}
		opts = opts[codec.OptionHeaderLen+n:]
	}
	return time.Time{}, false
}

// StampFromClientData returns the send time of the change reported in an
// OPTION_CLIENT_DATA: from the client DUID, else from the relay data.
//
// hot path: no allocation.
func StampFromClientData(d *codec.ClientData) (time.Time, bool) {
	if t, ok := StampFromDUID(d.ClientID); ok {
		return t, true
	}
	if d.HasRelayData {
		return StampFromRelayMessage(d.RelayData.Message)
	}
	return time.Time{}, false
}

func stampTime(v uint64) (time.Time, bool) {
	if v == 0 || v > 1<<63-1 {
		return time.Time{}, false
	}
	return time.Unix(0, int64(v)), true
}
