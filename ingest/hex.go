package ingest

import (
	"fmt"
	"strings"
)

// hexValue maps an ASCII byte to its hexadecimal digit value, or 0xff.
var hexValue = func() (table [256]byte) {
	for i := range table {
		table[i] = 0xff
	}
	for c := byte('0'); c <= '9'; c++ {
		table[c] = c - '0'
	}
	for c := byte('a'); c <= 'f'; c++ {
		table[c] = c - 'a' + 10
		table[c-'a'+'A'] = c - 'a' + 10
	}
	return table
}()

// appendHex decodes s and appends the bytes to dst. It accepts the forms Kea
// writes and reads: plain digits ("0001aa"), digits after "0x" ("0x0001AA"),
// and bytes separated by colons with one or two digits each
// ("00:01:aa", "0:1:aa"). Plain forms need an even number of digits. An empty
// s appends nothing.
func appendHex(dst []byte, s string) ([]byte, error) {
	if strings.IndexByte(s, ':') >= 0 {
		return appendColonHex(dst, s)
	}
	if len(s) >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
		s = s[2:]
		if s == "" {
			return dst, fmt.Errorf("%w: no digits after 0x", ErrInvalidHex)
		}
	}
	if len(s)%2 != 0 {
		return dst, fmt.Errorf("%w: odd number of digits in %s", ErrInvalidHex, quote(s))
	}
	for i := 0; i < len(s); i += 2 {
		hi, lo := hexValue[s[i]], hexValue[s[i+1]]
		if hi|lo == 0xff {
			return dst, fmt.Errorf("%w: non-hex character at offset %d in %s", ErrInvalidHex, i, quote(s))
		}
		dst = append(dst, hi<<4|lo)
	}
	return dst, nil
}

func appendColonHex(dst []byte, s string) ([]byte, error) {
	for start := 0; start <= len(s); {
		end := strings.IndexByte(s[start:], ':')
		if end < 0 {
			end = len(s)
		} else {
			end += start
		}
		group := s[start:end]
		if len(group) == 0 || len(group) > 2 {
			return dst, fmt.Errorf("%w: byte group %s at offset %d needs one or two digits", ErrInvalidHex, quote(group), start)
		}
		var v byte
		for i := 0; i < len(group); i++ {
			d := hexValue[group[i]]
			if d == 0xff {
				return dst, fmt.Errorf("%w: non-hex character at offset %d in %s", ErrInvalidHex, start+i, quote(s))
			}
			v = v<<4 | d
		}
		dst = append(dst, v)
		start = end + 1
	}
	return dst, nil
}

// appendHexText appends the lower-case hexadecimal form of b to dst, without
// separators.
func appendHexText(dst, b []byte) []byte {
	const digits = "0123456789abcdef"
	for _, c := range b {
		dst = append(dst, digits[c>>4], digits[c&0x0f])
	}
	return dst
}
