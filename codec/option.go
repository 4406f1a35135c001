package codec

import (
	"encoding/binary"
	"net/netip"
	"unicode/utf8"
)

const (
	// MaxOptionLen is the largest option-len: the option-data of one option is
	// at most this many octets.
	MaxOptionLen = 65535

	// OptionHeaderLen is the size of option-code plus option-len.
	OptionHeaderLen = 4

	// maxOptionDepth bounds how deeply container options may nest, which keeps
	// recursion on hostile input short. The deepest leasequery message needs
	// 21 levels: a reply relayed through MaxRelayNesting relays, its
	// OPTION_CLIENT_DATA and OPTION_LQ_RELAY_DATA, a stored chain of
	// MaxRelayNesting relays, and the options of the innermost message.
	maxOptionDepth = 32
)

// Option is one DHCPv6 option: its code and its option-data, without the
// 4-octet header. Options produced by the decoders alias the decoded buffer.
type Option struct {
	Code OptionCode
	Data []byte
}

// Len returns the encoded size of o, header included.
func (o Option) Len() int { return OptionHeaderLen + len(o.Data) }

// AppendTo appends o to b. It fails with ErrOptionTooLong, returning b
// unchanged, when Data is longer than MaxOptionLen.
func (o Option) AppendTo(b []byte) ([]byte, error) {
	return AppendOption(b, o.Code, o.Data)
}

// Options is a list of options in wire order. The zero value is an empty
// list. Options filled by Decode alias the decoded buffer, so they are valid
// only while that buffer is; copy what must outlive it.
type Options []Option

// Decode parses data, a sequence of options such as the option-data of a
// container option, into opts, reusing its backing array, and checks the
// layout of every option it recognizes, recursively (see the package comment for
// the checks). The Data slices alias data and have their capacity cut to
// their length, so appending to one never overwrites its neighbour. Errors
// are *DecodeError with offsets counted from the start of data; on error
// opts holds the options before the bad one.
//
// hot path: no allocation once opts has grown to the option count.
func (opts *Options) Decode(data []byte) error {
	*opts = (*opts)[:0]
	return walkOptions(data, 0, nesting{}, opts)
}

// Get returns the option-data of the first option with the given code.
func (opts Options) Get(code OptionCode) ([]byte, bool) {
	for i := range opts {
		if opts[i].Code == code {
			return opts[i].Data, true
		}
	}
	return nil, false
}

// Has reports whether an option with the given code is present.
func (opts Options) Has(code OptionCode) bool {
	_, ok := opts.Get(code)
	return ok
}

// Count returns how many options have the given code.
func (opts Options) Count(code OptionCode) int {
	n := 0
	for i := range opts {
		if opts[i].Code == code {
			n++
		}
	}
	return n
}

// Add appends an option. It keeps data, not a copy.
func (opts *Options) Add(code OptionCode, data []byte) {
	*opts = append(*opts, Option{Code: code, Data: data})
}

// Len returns the encoded size of all options, headers included.
func (opts Options) Len() int {
	n := 0
	for i := range opts {
		n += OptionHeaderLen + len(opts[i].Data)
	}
	return n
}

// AppendTo appends every option in order, byte for byte, including options
// this package does not know. It fails with ErrOptionTooLong, returning b
// unchanged, when one option-data is longer than MaxOptionLen.
func (opts Options) AppendTo(b []byte) ([]byte, error) {
	start := len(b)
	for i := range opts {
		var err error
		if b, err = AppendOption(b, opts[i].Code, opts[i].Data); err != nil {
			return b[:start], err
		}
	}
	return b, nil
}

// ClientID returns the DUID in OPTION_CLIENTID.
func (opts Options) ClientID() ([]byte, bool) { return opts.Get(OptClientID) }

// ServerID returns the DUID in OPTION_SERVERID.
func (opts Options) ServerID() ([]byte, bool) { return opts.Get(OptServerID) }

// RelayID returns the relay DUID in OPTION_RELAY_ID.
func (opts Options) RelayID() ([]byte, bool) { return opts.Get(OptRelayID) }

// InterfaceID returns the option-data of OPTION_INTERFACE_ID.
func (opts Options) InterfaceID() ([]byte, bool) { return opts.Get(OptInterfaceID) }

// RelayMsg returns the message inside OPTION_RELAY_MSG.
func (opts Options) RelayMsg() ([]byte, bool) { return opts.Get(OptRelayMsg) }

// Status decodes OPTION_STATUS_CODE. A missing option returns ok false and a
// nil error; RFC 8415 reads a missing status as Success.
func (opts Options) Status() (s Status, ok bool, err error) {
	data, ok := opts.Get(OptStatusCode)
	if !ok {
		return Status{}, false, nil
	}
	err = s.Decode(data)
	return s, true, err
}

// Requests reports whether the OPTION_ORO in opts lists code.
func (opts Options) Requests(code OptionCode) bool {
	data, ok := opts.Get(OptORO)
	return ok && OROContains(data, code)
}

// RemoteID decodes OPTION_REMOTE_ID.
func (opts Options) RemoteID() (r RemoteID, ok bool, err error) {
	data, ok := opts.Get(OptRemoteID)
	if !ok {
		return RemoteID{}, false, nil
	}
	err = r.Decode(data)
	return r, true, err
}

// Uint32 returns the value of a 4-octet option such as OPTION_CLT_TIME or
// OPTION_LQ_BASE_TIME. It reports false when the option is missing or, in a
// list built by hand (Decode rejects it), not 4 octets long.
func (opts Options) Uint32(code OptionCode) (uint32, bool) {
	data, ok := opts.Get(code)
	if !ok || len(data) != 4 {
		return 0, false
	}
	return binary.BigEndian.Uint32(data), true
}

// AppendOption appends one option with the given code and option-data. It
// fails with ErrOptionTooLong, returning b unchanged, when data is longer than
// MaxOptionLen.
func AppendOption(b []byte, code OptionCode, data []byte) ([]byte, error) {
	if len(data) > MaxOptionLen {
		return b, ErrOptionTooLong
	}
	b = append(b, byte(code>>8), byte(code), byte(len(data)>>8), byte(len(data)))
	return append(b, data...), nil
}

// AppendUint32Option appends a 4-octet option such as OPTION_CLT_TIME or
// OPTION_LQ_BASE_TIME.
func AppendUint32Option(b []byte, code OptionCode, v uint32) []byte {
	b = append(b, byte(code>>8), byte(code), 0, 4)
	return binary.BigEndian.AppendUint32(b, v)
}

// BeginOption appends the header of a container option with option-len 0 and
// returns the offset of that header, to be passed to EndOption once the
// option-data has been appended after it.
func BeginOption(b []byte, code OptionCode) ([]byte, int) {
	return append(b, byte(code>>8), byte(code), 0, 0), len(b)
}

// EndOption sets the option-len of the option that BeginOption started at
// offset start to the number of octets appended since. When that is more than
// MaxOptionLen it returns b[:start], dropping the option, and
// ErrOptionTooLong.
func EndOption(b []byte, start int) ([]byte, error) {
	n := len(b) - start - OptionHeaderLen
	if n > MaxOptionLen {
		return b[:start], ErrOptionTooLong
	}
	binary.BigEndian.PutUint16(b[start+2:], uint16(n))
	return b, nil
}

// nesting tracks, during a decode, how deeply containers and relay messages
// are nested.
type nesting struct {
	depth  int // enclosing container options
	relays int // enclosing relay messages in the current relay chain
}

// walkOptions checks every option in data and, when dst is not nil, appends
// it to *dst. base is the offset of data within the buffer the caller's
// offsets count from.
//
// hot path: no allocation except for growing *dst.
func walkOptions(data []byte, base int, n nesting, dst *Options) error {
	var seen singletons
	off := 0
	for off < len(data) {
		if len(data)-off < OptionHeaderLen {
			return &DecodeError{Offset: base + off, Err: ErrTrailingBytes}
		}
		code := OptionCode(binary.BigEndian.Uint16(data[off:]))
		size := int(binary.BigEndian.Uint16(data[off+2:]))
		bodyStart := off + OptionHeaderLen
		if size > len(data)-bodyStart {
			return &DecodeError{Offset: base + off, Code: code, Err: ErrOptionOverrun}
		}
		body := data[bodyStart : bodyStart+size : bodyStart+size]

		// RFC 8415 section 21.1: an option appears at most once in a message
		// or container unless its definition allows more; singletons lists
		// the codes this package holds to that rule.
		if seen.repeated(code) {
			return &DecodeError{Offset: base + off, Code: code, Err: ErrDuplicateOption}
		}
		if err := checkOption(code, body, base+off, n); err != nil {
			return err
		}

		if dst != nil {
			*dst = append(*dst, Option{Code: code, Data: body})
		}
		off = bodyStart + size
	}
	return nil
}

// singletons is a bit set of the options seen so far in one container, for
// the codes that may appear only once there.
type singletons uint32

// repeated records code and reports whether it was already seen. Codes that
// may repeat (the IA options, IAADDR, IAPREFIX) and codes this package does
// not check are never reported.
func (s *singletons) repeated(code OptionCode) bool {
	var bit singletons
	switch code {
	case OptClientID:
		bit = 1 << 0
	case OptServerID:
		bit = 1 << 1
	case OptORO:
		bit = 1 << 2
	case OptPreference:
		bit = 1 << 3
	case OptElapsedTime:
		bit = 1 << 4
	case OptRelayMsg:
		bit = 1 << 5
	case OptStatusCode:
		bit = 1 << 6
	case OptInterfaceID:
		bit = 1 << 7
	case OptRemoteID:
		bit = 1 << 8
	case OptSubscriberID:
		bit = 1 << 9
	case OptLQQuery:
		bit = 1 << 10
	case OptClientData:
		bit = 1 << 11 // RFC 5007 and RFC 5460: one client per message
	case OptCLTTime:
		bit = 1 << 12
	case OptLQRelayData:
		bit = 1 << 13
	case OptLQClientLink:
		bit = 1 << 14
	case OptRelayID:
		bit = 1 << 15
	case OptClientLinkLayerAddr:
		bit = 1 << 16
	case OptLQBaseTime:
		bit = 1 << 17
	case OptLQStartTime:
		bit = 1 << 18
	case OptLQEndTime:
		bit = 1 << 19
	default:
		return false
	}
	if *s&bit != 0 {
		return true
	}
	*s |= bit
	return false
}

// checkOption checks the layout of one option whose header is at offset off,
// and recursively the options inside it.
func checkOption(code OptionCode, body []byte, off int, n nesting) error {
	bodyOff := off + OptionHeaderLen
	inner := nesting{depth: n.depth + 1, relays: n.relays}
	if inner.depth > maxOptionDepth {
		return &DecodeError{Offset: off, Code: code, Err: ErrNestingDepth}
	}

	var err error
	switch code {
	case OptClientID, OptServerID, OptRelayID:
		err = checkDUID(body)
	case OptIANA, OptIAPD:
		if len(body) < iaNALen {
			err = ErrOptionLength
			break
		}
		return walkOptions(body[iaNALen:], bodyOff+iaNALen, inner, nil)
	case OptIATA:
		if len(body) < iaTALen {
			err = ErrOptionLength
			break
		}
		return walkOptions(body[iaTALen:], bodyOff+iaTALen, inner, nil)
	case OptIAAddr:
		if len(body) < iaAddrLen {
			err = ErrOptionLength
			break
		}
		return walkOptions(body[iaAddrLen:], bodyOff+iaAddrLen, inner, nil)
	case OptIAPrefix:
		if len(body) < iaPrefixLen {
			err = ErrOptionLength
			break
		}
		if body[8] > 128 {
			err = ErrPrefixLength
			break
		}
		return walkOptions(body[iaPrefixLen:], bodyOff+iaPrefixLen, inner, nil)
	case OptORO:
		if len(body)%2 != 0 {
			err = ErrOptionLength
		}
	case OptElapsedTime:
		if len(body) != 2 {
			err = ErrOptionLength
		}
	case OptPreference:
		if len(body) != 1 {
			err = ErrOptionLength
		}
	case OptStatusCode:
		err = checkStatus(body)
	case OptRelayMsg:
		return checkMessage(body, bodyOff, inner)
	case OptInterfaceID, OptSubscriberID:
		if len(body) < 1 {
			err = ErrOptionLength
		}
	case OptRemoteID:
		if len(body) < remoteIDMinLen {
			err = ErrOptionLength
		}
	case OptClientLinkLayerAddr:
		if len(body) < 3 {
			err = ErrOptionLength
		}
	case OptLQQuery:
		if len(body) < lqQueryLen {
			err = ErrOptionLength
			break
		}
		return walkOptions(body[lqQueryLen:], bodyOff+lqQueryLen, inner, nil)
	case OptClientData:
		return walkOptions(body, bodyOff, inner, nil)
	case OptCLTTime, OptLQBaseTime, OptLQStartTime, OptLQEndTime:
		if len(body) != 4 {
			err = ErrOptionLength
		}
	case OptLQRelayData:
		return checkLQRelayData(body, off, inner)
	case OptLQClientLink:
		if len(body) == 0 || len(body)%16 != 0 {
			err = ErrOptionLength
		}
	}
	if err != nil {
		return &DecodeError{Offset: off, Code: code, Err: err}
	}
	return nil
}

// checkStatus checks the option-data of OPTION_STATUS_CODE.
func checkStatus(body []byte) error {
	if len(body) < 2 {
		return ErrOptionLength
	}
	// RFC 8415 section 21.13: the status-message is UTF-8 text.
	if !utf8.Valid(body[2:]) {
		return ErrInvalidUTF8
	}
	return nil
}

// addr16 returns the 16 octets of a, with the zero Addr as "::". It reports
// false for an IPv4 address.
func addr16(a netip.Addr) ([16]byte, bool) {
	if !a.IsValid() {
		return [16]byte{}, true
	}
	if a.Is4() {
		return [16]byte{}, false
	}
	return a.As16(), true
}

// ORO is the list of option codes in OPTION_ORO, used to build one and to
// decode one into a reused slice. For a plain membership test on decoded
// option-data, OROContains needs no slice.
type ORO []OptionCode

// Decode parses the option-data of OPTION_ORO into o, reusing its backing
// array.
func (o *ORO) Decode(data []byte) error {
	if len(data)%2 != 0 {
		return &DecodeError{Code: OptORO, Err: ErrOptionLength}
	}
	*o = (*o)[:0]
	for i := 0; i < len(data); i += 2 {
		*o = append(*o, OptionCode(binary.BigEndian.Uint16(data[i:])))
	}
	return nil
}

// Contains reports whether o lists code.
func (o ORO) Contains(code OptionCode) bool {
	for _, c := range o {
		if c == code {
			return true
		}
	}
	return false
}

// Len returns the encoded size of the option, header included.
func (o ORO) Len() int { return OptionHeaderLen + 2*len(o) }

// AppendTo appends o as an OPTION_ORO. It fails with ErrOptionTooLong,
// returning b unchanged, when o lists more than 32767 codes.
func (o ORO) AppendTo(b []byte) ([]byte, error) {
	if 2*len(o) > MaxOptionLen {
		return b, ErrOptionTooLong
	}
	b = append(b, byte(OptORO>>8), byte(OptORO), byte(2*len(o)>>8), byte(2*len(o)))
	for _, c := range o {
		b = binary.BigEndian.AppendUint16(b, uint16(c))
	}
	return b, nil
}

// OROContains reports whether the option-data of an OPTION_ORO lists code. An
// odd trailing octet is ignored.
func OROContains(data []byte, code OptionCode) bool {
	for i := 0; i+1 < len(data); i += 2 {
		if OptionCode(binary.BigEndian.Uint16(data[i:])) == code {
			return true
		}
	}
	return false
}

// Status is the content of OPTION_STATUS_CODE. After Decode, Message aliases
// the decoded option-data.
type Status struct {
	Code    StatusCode
	Message []byte // status-message, UTF-8, may be empty
}

// Decode parses the option-data of OPTION_STATUS_CODE into s. It rejects an
// option shorter than 2 octets and a status-message that is not valid UTF-8.
func (s *Status) Decode(data []byte) error {
	if err := checkStatus(data); err != nil {
		return &DecodeError{Code: OptStatusCode, Err: err}
	}
	s.Code = StatusCode(binary.BigEndian.Uint16(data))
	s.Message = data[2:len(data):len(data)]
	return nil
}

// Len returns the encoded size of the option, header included.
func (s Status) Len() int { return OptionHeaderLen + 2 + len(s.Message) }

// AppendTo appends s as an OPTION_STATUS_CODE. It fails with ErrInvalidUTF8
// or ErrOptionTooLong, returning b unchanged.
func (s Status) AppendTo(b []byte) ([]byte, error) {
	if len(s.Message) > MaxOptionLen-2 {
		return b, ErrOptionTooLong
	}
	if !utf8.Valid(s.Message) {
		return b, ErrInvalidUTF8
	}
	b = appendStatusHeader(b, s.Code, len(s.Message))
	return append(b, s.Message...), nil
}

// Err returns nil for Success and otherwise a *StatusError with a copy of the
// status-message.
func (s Status) Err() error {
	if s.Code == StatusSuccess {
		return nil
	}
	return &StatusError{Code: s.Code, Msg: string(s.Message)}
}

// AppendStatusCode appends an OPTION_STATUS_CODE with the given code and
// status-message. It fails with ErrInvalidUTF8 or ErrOptionTooLong, returning
// b unchanged.
func AppendStatusCode(b []byte, code StatusCode, msg string) ([]byte, error) {
	if len(msg) > MaxOptionLen-2 {
		return b, ErrOptionTooLong
	}
	if !utf8.ValidString(msg) {
		return b, ErrInvalidUTF8
	}
	b = appendStatusHeader(b, code, len(msg))
	return append(b, msg...), nil
}

// appendStatusHeader appends the option header and status-code of an
// OPTION_STATUS_CODE whose status-message is msgLen octets long.
func appendStatusHeader(b []byte, code StatusCode, msgLen int) []byte {
	n := 2 + msgLen
	return append(b, byte(OptStatusCode>>8), byte(OptStatusCode), byte(n>>8), byte(n), byte(code>>8), byte(code))
}

// RemoteID is the content of OPTION_REMOTE_ID (RFC 4649). After Decode, ID
// aliases the decoded option-data.
type RemoteID struct {
	EnterpriseNumber uint32
	ID               []byte // remote-id, at least 1 octet, compared byte for byte
}

const remoteIDMinLen = 5

// Decode parses the option-data of OPTION_REMOTE_ID into r.
func (r *RemoteID) Decode(data []byte) error {
	if len(data) < remoteIDMinLen {
		return &DecodeError{Code: OptRemoteID, Err: ErrOptionLength}
	}
	r.EnterpriseNumber = binary.BigEndian.Uint32(data)
	r.ID = data[4:len(data):len(data)]
	return nil
}

// Len returns the encoded size of the option, header included.
func (r RemoteID) Len() int { return OptionHeaderLen + 4 + len(r.ID) }

// AppendTo appends r as an OPTION_REMOTE_ID. It fails with ErrOptionLength for
// an empty ID or ErrOptionTooLong, returning b unchanged.
func (r RemoteID) AppendTo(b []byte) ([]byte, error) {
	if len(r.ID) == 0 {
		return b, ErrOptionLength
	}
	if 4+len(r.ID) > MaxOptionLen {
		return b, ErrOptionTooLong
	}
	b, start := BeginOption(b, OptRemoteID)
	b = binary.BigEndian.AppendUint32(b, r.EnterpriseNumber)
	b = append(b, r.ID...)
	return EndOption(b, start)
}
