package procnet

import (
	"bytes"
	"errors"
	"fmt"
)

// ErrTruncated is returned for a file whose last line has no newline: the read was cut short.
var ErrTruncated = errors.New("truncated: last line has no newline")

// ErrNumber is matched by every error about a malformed number.
var ErrNumber = errors.New("not a number")

// NextLine splits off the first line. The kernel ends every line with a newline, so a last line without one
// means the read was cut short, and parsing it could turn "12345" into a wrong "12".
func NextLine(data []byte) (line, rest []byte, err error) {
	i := bytes.IndexByte(data, '\n')
	if i < 0 {
		return nil, nil, ErrTruncated
	}
	return data[:i], data[i+1:], nil
}

// NextField returns the first space- or tab-separated field of s and what follows it.
func NextField(s []byte) (field, rest []byte) {
	i := 0
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	j := i
	for j < len(s) && s[j] != ' ' && s[j] != '\t' {
		j++
	}
	return s[i:j], s[j:]
}

// countFields counts first (if not empty) and the fields in rest.
func countFields(first, rest []byte) int {
	n := 0
	for f := first; len(f) > 0; f, rest = NextField(rest) {
		n++
	}
	return n
}

// cutProto splits "TcpExt: a b c" into "TcpExt" and " a b c".
func cutProto(line []byte) (proto, rest []byte, ok bool) {
	i := bytes.IndexByte(line, ':')
	if i <= 0 || bytes.ContainsAny(line[:i], " \t") {
		return nil, nil, false
	}
	return line[:i], line[i+1:], true
}

// ParseUint parses a decimal counter, rejecting signs, empty input and values beyond uint64. strconv would do
// the same but needs a string, which costs an allocation per field.
func ParseUint(b []byte) (uint64, error) {
	if len(b) == 0 {
		return 0, fmt.Errorf("%w: empty", ErrNumber)
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: %q is not an unsigned decimal integer", ErrNumber, b)
		}
		d := uint64(c - '0')
		if v > (1<<64-1-d)/10 {
			return 0, fmt.Errorf("%w: %q overflows uint64", ErrNumber, b)
		}
		v = v*10 + d
	}
	return v, nil
}

// parseInt parses a signed decimal integer.
func parseInt(b []byte) (int64, error) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	u, err := ParseUint(b)
	if err != nil {
		return 0, err
	}
	if neg {
		if u > 1<<63 {
			return 0, fmt.Errorf("%w: -%s overflows int64", ErrNumber, b)
		}
		return -int64(u), nil
	}
	if u > 1<<63-1 {
		return 0, fmt.Errorf("%w: %s overflows int64", ErrNumber, b)
	}
	return int64(u), nil
}

// parseHex parses a hexadecimal number without prefix, as printed by "%08x".
func parseHex(b []byte) (uint64, error) {
	if len(b) == 0 {
		return 0, fmt.Errorf("%w: empty", ErrNumber)
	}
	if len(b) > 16 {
		return 0, fmt.Errorf("%w: %q overflows uint64", ErrNumber, b)
	}
	var v uint64
	for _, c := range b {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, fmt.Errorf("%w: %q is not hexadecimal", ErrNumber, b)
		}
		v = v<<4 | uint64(d)
	}
	return v, nil
}
