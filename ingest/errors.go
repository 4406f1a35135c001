package ingest

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Sentinel errors. Parser.ParseRow and Parser.SetHeader wrap them in a
// *RowError, DecodeRecord wraps them in a *RecordError; callers test them
// with errors.Is.
var (
	// ErrNoHeader is returned for a row of a lease file whose first line is
	// not a valid header, so its columns can not be mapped.
	ErrNoHeader = errors.New("ingest: lease file has no valid header")

	// ErrColumnCount is returned for a row whose number of columns differs
	// from the number of columns in the header.
	ErrColumnCount = errors.New("ingest: wrong number of columns")

	// ErrInvalidNumber is returned for a column or field that is not a
	// decimal integer in the allowed range.
	ErrInvalidNumber = errors.New("ingest: invalid number")

	// ErrInvalidAddress is returned for an address or prefix that is not
	// IPv6, or a prefix with host bits set.
	ErrInvalidAddress = errors.New("ingest: invalid IPv6 address or prefix")

	// ErrInvalidHex is returned for a DUID, option blob or identifier that
	// is not hexadecimal.
	ErrInvalidHex = errors.New("ingest: invalid hexadecimal")

	// ErrInvalidEscape is returned for a "&#x" escape in a lease file that
	// is not followed by two hexadecimal digits.
	ErrInvalidEscape = errors.New("ingest: invalid &#xHH escape")

	// ErrInvalidUserContext is returned for a user_context column that is
	// not JSON, or whose relay information has the wrong shape.
	ErrInvalidUserContext = errors.New("ingest: invalid user_context")

	// ErrInvalidRelayOptions is returned for a relay's option blob that is
	// not a valid DHCPv6 option sequence (RFC 8415 section 21.1). It is also
	// returned when the blob repeats an option that a relay sends at most
	// once, or makes the Relay-forward chain longer than an option can carry.
	ErrInvalidRelayOptions = errors.New("ingest: invalid relay options")

	// ErrTooManyRelays is returned when the relay information lists more
	// relays than maxRelayDepth.
	ErrTooManyRelays = errors.New("ingest: too many nested relays")

	// ErrUnknownValue is returned for a lease type, lease state or JSON
	// enumeration value that this package does not know.
	ErrUnknownValue = errors.New("ingest: unknown value")

	// ErrEmptyDUID is returned for a row with Kea's empty DUID ("00") whose
	// state is not declined; Kea rejects such rows when it loads the file.
	ErrEmptyDUID = errors.New("ingest: empty DUID on a lease that is not declined")

	// ErrLineTooLong is returned for a line longer than the follower's
	// MaxLineBytes; the follower skips it up to the next newline.
	ErrLineTooLong = errors.New("ingest: line too long")

	// ErrTruncatedLine is returned for bytes after the last newline of a
	// lease file that Kea rotated away: the line was never completed.
	ErrTruncatedLine = errors.New("ingest: incomplete last line in rotated file")

	// ErrMissingField is returned for a required NDJSON field that is absent.
	ErrMissingField = errors.New("ingest: missing field")

	// ErrUnexpectedField is returned for an NDJSON field that is unknown,
	// repeated, or not allowed together with the other fields of the record.
	ErrUnexpectedField = errors.New("ingest: unexpected field")

	// ErrInvalidValue is returned for an NDJSON field whose value has the
	// wrong JSON type or violates a rule of the record format.
	ErrInvalidValue = errors.New("ingest: invalid value")

	// ErrInvalidJSON is returned for an NDJSON line that is not one JSON
	// object.
	ErrInvalidJSON = errors.New("ingest: invalid JSON")
)

// RowError reports a lease file row that could not be turned into a binding
// change. The follower counts, logs and skips such rows.
type RowError struct {
	File   string // path of the lease file; empty when the parser is used on its own
	Line   int64  // 1-based line number in File; 0 when unknown
	Column string // header name of the offending column; empty for problems of the whole row
	Err    error  // wraps one of the sentinel errors above
}

func (e *RowError) Error() string {
	b := make([]byte, 0, 96)
	b = append(b, "ingest: "...)
	if e.File != "" {
		b = append(b, e.File...)
		b = append(b, ' ')
	}
	if e.Line > 0 {
		b = append(b, "line "...)
		b = strconv.AppendInt(b, e.Line, 10)
		b = append(b, ' ')
	}
	if e.Column != "" {
		b = append(b, "column "...)
		b = append(b, e.Column...)
		b = append(b, ' ')
	}
	if len(b) > len("ingest: ") {
		b[len(b)-1] = ':'
		b = append(b, ' ')
	}
	b = append(b, e.Err.Error()...)
	return string(b)
}

func (e *RowError) Unwrap() error { return e.Err }

// RecordError reports an invalid record of an NDJSON request: the line it is
// on, the field at fault, and the problem.
type RecordError struct {
	Line  int    // 1-based line number in the request body
	Field string // JSON field name; empty when the line is not a JSON object
	Err   error  // wraps ErrMissingField, ErrUnexpectedField, ErrInvalidValue or ErrInvalidJSON
}

func (e *RecordError) Error() string {
	where := "ingest: "
	if e.Line > 0 {
		where += fmt.Sprintf("line %d: ", e.Line)
	}
	if e.Field != "" {
		where += fmt.Sprintf("field %q: ", e.Field)
	}
	return where + strings.TrimPrefix(e.Err.Error(), "ingest: ")
}

func (e *RecordError) Unwrap() error { return e.Err }

// quote returns s quoted for an error message, cut to 64 bytes so that a
// corrupt megabyte-long column does not end up in a log line.
func quote(s string) string {
	const limit = 64
	if len(s) > limit {
		return strconv.Quote(s[:limit]) + "..."
	}
	return strconv.Quote(s)
}
