package requestortest

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/alqd/alqd/codec"
)

// ServerDUID is the DUID-LLT the builders use as the server's identity:
// hardware type 1, time 757382400, MAC 00:00:5e:00:53:fe (a documentation
// address).
var ServerDUID = mustHex("000100012d24bd0000005e0053fe")

// Msg returns a client/server message of type t with transaction-id xid
// and the given encoded options, in order. It panics on an xid above 24
// bits, a test bug.
func Msg(t codec.MsgType, xid uint32, opts ...[]byte) []byte {
	b, err := codec.AppendHeader(nil, t, xid)
	if err != nil {
		panic(fmt.Sprintf("requestortest: header %s xid %#x: %v", t, xid, err))
	}
	for _, o := range opts {
		b = append(b, o...)
	}
	return b
}

// Opt returns an option with any code and option-data, valid or not.
func Opt(code codec.OptionCode, data []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(code))
	b = binary.BigEndian.AppendUint16(b, uint16(len(data)))
	return append(b, data...)
}

// OptBaseTime returns OPTION_LQ_BASE_TIME.
func OptBaseTime(v uint32) []byte { return codec.AppendUint32Option(nil, codec.OptLQBaseTime, v) }

// OptCLTTime returns OPTION_CLT_TIME.
func OptCLTTime(v uint32) []byte { return codec.AppendUint32Option(nil, codec.OptCLTTime, v) }

// OptStatus returns OPTION_STATUS_CODE.
func OptStatus(code codec.StatusCode, msg string) []byte {
	b, err := codec.AppendStatusCode(nil, code, msg)
	if err != nil {
		panic("requestortest: status code: " + err.Error())
	}
	return b
}

// OptServerID returns OPTION_SERVERID with duid.
func OptServerID(duid []byte) []byte { return Opt(codec.OptServerID, duid) }

// OptClientID returns OPTION_CLIENTID with duid.
func OptClientID(duid []byte) []byte { return Opt(codec.OptClientID, duid) }

// OptIAAddr returns OPTION_IAADDR for addr, which must parse.
func OptIAAddr(addr string, preferred, valid uint32) []byte {
	b, err := codec.AppendIAAddr(nil, netip.MustParseAddr(addr), preferred, valid)
	if err != nil {
		panic("requestortest: IAADDR: " + err.Error())
	}
	return b
}

// OptIAPrefix returns OPTION_IAPREFIX for prefix, which must parse.
func OptIAPrefix(prefix string, preferred, valid uint32) []byte {
	b, err := codec.AppendIAPrefix(nil, netip.MustParsePrefix(prefix), preferred, valid)
	if err != nil {
		panic("requestortest: IAPREFIX: " + err.Error())
	}
	return b
}

// OptClientData returns OPTION_CLIENT_DATA holding OPTION_CLIENTID with
// duid and then the given options.
func OptClientData(duid []byte, opts ...[]byte) []byte {
	data := OptClientID(duid)
	for _, o := range opts {
		data = append(data, o...)
	}
	return Opt(codec.OptClientData, data)
}

// Binding returns the OPTION_CLIENT_DATA of one address binding with a
// CLT_TIME, the form most tests need.
func Binding(duid []byte, addr string, clt, preferred, valid uint32) []byte {
	return OptClientData(duid, OptCLTTime(clt), OptIAAddr(addr, preferred, valid))
}

// DUIDLL returns a DUID-LL for Ethernet address 00:00:5e:00:53:<last>, an
// address from the documentation range.
func DUIDLL(last byte) []byte {
	return []byte{0, 3, 0, 1, 0x00, 0x00, 0x5e, 0x00, 0x53, last}
}

// Frames splits a stream of framed messages into the messages, without
// their msg-size. It fails on a truncated stream.
func Frames(stream []byte) ([][]byte, error) {
	var out [][]byte
	for len(stream) > 0 {
		if len(stream) < codec.FrameHeaderLen {
			return nil, fmt.Errorf("requestortest: %d octets left, too few for a msg-size", len(stream))
		}
		n := int(binary.BigEndian.Uint16(stream))
		if len(stream) < codec.FrameHeaderLen+n {
			return nil, fmt.Errorf("requestortest: frame of %d octets truncated to %d", n, len(stream)-codec.FrameHeaderLen)
		}
		out = append(out, stream[codec.FrameHeaderLen:codec.FrameHeaderLen+n])
		stream = stream[codec.FrameHeaderLen+n:]
	}
	return out, nil
}

// XID returns the transaction-id of a client/server message.
func XID(msg []byte) uint32 {
	return uint32(msg[1])<<16 | uint32(msg[2])<<8 | uint32(msg[3])
}

// WithXID returns a copy of msg with its transaction-id set to xid.
func WithXID(msg []byte, xid uint32) []byte {
	b := append([]byte(nil), msg...)
	b[1], b[2], b[3] = byte(xid>>16), byte(xid>>8), byte(xid)
	return b
}

// ReadHex reads a file holding hex digits, ignoring white space.
func ReadHex(path string) ([]byte, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, err := hex.DecodeString(strings.Join(strings.Fields(string(text)), ""))
	if err != nil {
		return nil, fmt.Errorf("requestortest: %s: %w", path, err)
	}
	return b, nil
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}
