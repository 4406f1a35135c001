package codec

import (
	"errors"
	"strconv"
)

// Sentinel errors. Decoders return them wrapped in a *DecodeError that names
// where the problem is; encoders and the framer return them wrapped or bare as
// each function documents. Test for them with errors.Is.
var (
	// ErrShortMessage is returned by the message decoders when the input is
	// shorter than the 4-octet client/server header or the 34-octet relay
	// header.
	ErrShortMessage = errors.New("codec: message shorter than its header")

	// ErrTrailingBytes is returned by the option decoders when 1 to 3 octets
	// are left after the last option of a message or container, too few for
	// another option header.
	ErrTrailingBytes = errors.New("codec: trailing bytes after the last option")

	// ErrOptionOverrun is returned by the option decoders when an option-len
	// runs past the end of the message or of the enclosing option.
	ErrOptionOverrun = errors.New("codec: option length runs past the end of its container")

	// ErrOptionLength is returned by the option decoders when an option-len
	// does not fit the layout of its option-code (too short, not the fixed
	// size, or not a multiple of the element size).
	ErrOptionLength = errors.New("codec: option length invalid for its option code")

	// ErrDuplicateOption is returned by the option decoders when an option that
	// may appear only once in a message or container appears again.
	ErrDuplicateOption = errors.New("codec: option may appear only once in its container")

	// ErrHopLimit is returned by the relay decoders when relay messages are
	// nested deeper than MaxRelayNesting.
	ErrHopLimit = errors.New("codec: relay messages nested beyond the hop-count limit")

	// ErrNestingDepth is returned by the option decoders when container
	// options are nested deeper than any leasequery message needs.
	ErrNestingDepth = errors.New("codec: options nested too deeply")

	// ErrInvalidUTF8 is returned by the status-code decoder and encoder when
	// the status-message is not valid UTF-8.
	ErrInvalidUTF8 = errors.New("codec: status message is not valid UTF-8")

	// ErrInvalidDUID is returned by ParseDUID, and by the option decoders for
	// OPTION_CLIENTID, OPTION_SERVERID and OPTION_RELAY_ID, when a DUID is
	// outside 3 to 130 octets or too short for its DUID type.
	ErrInvalidDUID = errors.New("codec: invalid DUID")

	// ErrPrefixLength is returned by the OPTION_IAPREFIX decoder and encoder
	// when the prefix-length is greater than 128.
	ErrPrefixLength = errors.New("codec: prefix length greater than 128")

	// ErrNotIPv6 is returned by encoders given an IPv4 address where the wire
	// format holds an IPv6 address.
	ErrNotIPv6 = errors.New("codec: address is not IPv6")

	// ErrRelayType is returned by Message.Decode for a RELAY-FORW or
	// RELAY-REPL (decode those with RelayMessage.Decode), and by
	// RelayMessage.Decode and the encoders for a type that is not a relay
	// type where one is required, or the reverse.
	ErrRelayType = errors.New("codec: wrong header format for message type")

	// ErrTransactionID is returned by the encoders when a transaction-id does
	// not fit in 24 bits.
	ErrTransactionID = errors.New("codec: transaction-id does not fit in 24 bits")

	// ErrMessageTooLong is returned by the encoders when a message would be
	// longer than MaxMessageLen octets; nothing is truncated.
	ErrMessageTooLong = errors.New("codec: message longer than 65535 octets")

	// ErrOptionTooLong is returned by the encoders when an option-data would be
	// longer than MaxOptionLen octets; nothing is truncated.
	ErrOptionTooLong = errors.New("codec: option data longer than 65535 octets")

	// ErrFrameEmpty is returned by the framer, inside a *FrameError, for a
	// msg-size of 0.
	ErrFrameEmpty = errors.New("codec: frame with msg-size 0")

	// ErrFrameTooLarge is returned by the framer, inside a *FrameError, for a
	// msg-size above the configured maximum.
	ErrFrameTooLarge = errors.New("codec: frame msg-size above the configured maximum")
)

// DecodeError reports malformed input: which option (0 outside any option,
// such as in a message header or after the last option) starts at which byte
// offset, and the sentinel that names the problem.
// Offset counts from the start of the slice given to the decoder that
// returned the error, so for a message it is the offset within the message.
type DecodeError struct {
	Offset int        // offset of the option header, or of the field in a header
	Code   OptionCode // option in error; 0 for a message or relay header
	Err    error      // one of the sentinels in this file
}

// Error returns a message naming the option and offset.
func (e *DecodeError) Error() string {
	where := "codec: decode at offset "
	if e.Code != 0 {
		where = "codec: decode " + e.Code.String() + " at offset "
	}
	return where + strconv.Itoa(e.Offset) + ": " + trimPrefix(e.Err.Error())
}

// Unwrap returns the sentinel so that errors.Is works.
func (e *DecodeError) Unwrap() error { return e.Err }

// StatusError is a leasequery outcome that the server reports to the
// requestor as an OPTION_STATUS_CODE, such as MalformedQuery for an
// OPTION_LQ_QUERY without the option its query-type requires. Msg becomes the
// status-message and must be valid UTF-8.
type StatusError struct {
	Code StatusCode
	Msg  string
}

// Error returns the status name followed by the message.
func (e *StatusError) Error() string {
	if e.Msg == "" {
		return "codec: status " + e.Code.String()
	}
	return "codec: status " + e.Code.String() + ": " + e.Msg
}

// AppendOption appends e as an OPTION_STATUS_CODE to b. It fails with
// ErrInvalidUTF8 or ErrOptionTooLong and then returns b unchanged.
func (e *StatusError) AppendOption(b []byte) ([]byte, error) {
	return AppendStatusCode(b, e.Code, e.Msg)
}

// FrameError reports a TCP frame that the framer rejects. Size is the
// msg-size read from the stream and Max the configured maximum. Err is
// ErrFrameEmpty, ErrFrameTooLarge or io.ErrUnexpectedEOF, the last when the
// stream ended inside a frame; Size is then -1 if even the 2-octet msg-size
// was incomplete.
type FrameError struct {
	Size int
	Max  int
	Err  error
}

// Error returns a message with the size and the limit.
func (e *FrameError) Error() string {
	return "codec: frame msg-size " + strconv.Itoa(e.Size) + " (maximum " + strconv.Itoa(e.Max) + "): " + trimPrefix(e.Err.Error())
}

// Unwrap returns the sentinel so that errors.Is works.
func (e *FrameError) Unwrap() error { return e.Err }

// trimPrefix drops the "codec: " prefix of a wrapped sentinel so that it is
// not repeated inside a longer message.
func trimPrefix(s string) string {
	const p = "codec: "
	if len(s) >= len(p) && s[:len(p)] == p {
		return s[len(p):]
	}
	return s
}
