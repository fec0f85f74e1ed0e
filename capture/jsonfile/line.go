package jsonfile

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/dockerlogs/fluent-bit-docker-logs/capture"
)

// The json-file driver writes one JSON object a line, always in this shape
// (moby daemon/logger/jsonfilelog/jsonlog, MarshalJSONBuf):
//
//	{"log":"<escaped>","stream":"stdout","attrs":{...},"time":"<RFC 3339 nano>"}
//
// "log" is left out when empty and "attrs" when there are none. parseLine
// reads exactly that shape without allocating; anything else (other key
// order, spaces, a case-folded key) goes through encoding/json, which is
// what the daemon itself decodes the file with, so both give the same
// result. attrs (--log-opt labels, env, tag) are skipped: the logs API
// sends them only with details=1, which capture does not ask for, so both
// paths hand over the same records.

// ErrMalformedLine: a line of a json-file log is not an entry.
var ErrMalformedLine = errors.New("malformed json-file line")

const (
	prefixLog    = `{"log":"`
	prefixStream = `"stream":"`
	keyAttrs     = `"attrs":`
	keyTime      = `"time":"`
	// fixedStampLen is "2006-01-02T15:04:05.000000000Z", the form the logs
	// API writes with timestamps=1 for json-file.
	fixedStampLen = 30
)

// entry is one parsed line.
type entry struct {
	stream capture.StreamKind
	ts     capture.Timestamp
}

// parseLine decodes one line (without its '\n'). It appends the fixed
// 30-byte stamp and then the unescaped log to dst, and returns dst with the
// entry. On error dst is returned as it was.
func parseLine(dst, line []byte) ([]byte, entry, error) {
	base := len(dst)
	out, e, ok := parseFast(dst, line)
	if ok {
		return out, e, nil
	}
	out, e, err := parseSlow(dst[:base], line)
	if err != nil {
		return dst[:base], entry{}, err
	}
	return out, e, nil
}

// parseFast handles the shape the driver writes; ok is false for anything
// else, to be decided by parseSlow.
func parseFast(dst, b []byte) ([]byte, entry, bool) {
	base := len(dst)
	dst = append(dst, zeroStamp...)
	i := 0
	switch {
	case hasPrefixAt(b, 0, prefixLog):
		var ok bool
		dst, i, ok = unescape(dst, b, len(prefixLog))
		if !ok || i >= len(b) || b[i] != ',' {
			return dst[:base], entry{}, false
		}
		i++
	case hasPrefixAt(b, 0, "{"):
		i = 1 // an empty log has no "log" key
	default:
		return dst[:base], entry{}, false
	}
	var e entry
	if !hasPrefixAt(b, i, prefixStream) {
		return dst[:base], entry{}, false
	}
	i += len(prefixStream)
	switch {
	case hasPrefixAt(b, i, `stdout",`):
		e.stream = capture.Stdout
	case hasPrefixAt(b, i, `stderr",`):
		e.stream = capture.Stderr
	default:
		return dst[:base], entry{}, false
	}
	i += len(`stdout",`)
	if hasPrefixAt(b, i, keyAttrs) {
		start := i + len(keyAttrs)
		end, ok := skipObject(b, start)
		// Validated, so that this path accepts nothing encoding/json
		// would reject; lines with attrs are the rarer kind.
		if !ok || end >= len(b) || b[end] != ',' || !json.Valid(b[start:end]) {
			return dst[:base], entry{}, false
		}
		i = end + 1
	}
	if !hasPrefixAt(b, i, keyTime) {
		return dst[:base], entry{}, false
	}
	i += len(keyTime)
	end := i
	for end < len(b) && b[end] != '"' {
		end++
	}
	if end+2 != len(b) || b[end+1] != '}' {
		return dst[:base], entry{}, false
	}
	stamp := dst[base : base+fixedStampLen]
	if !padStamp(stamp, b[i:end]) || !inRange(stamp[:4]) {
		return dst[:base], entry{}, false
	}
	ts, n, err := capture.ParseTimestamp(dst[base : base+fixedStampLen+1])
	if err != nil || n != fixedStampLen+1 {
		return dst[:base], entry{}, false
	}
	e.ts = ts
	return dst, e, true
}

// zeroStamp reserves the stamp and its space; padStamp fills it.
var zeroStamp = []byte("0000-00-00T00:00:00.000000000Z ")

// padStamp writes "2006-01-02T15:04:05[.fraction]Z" as the fixed form with
// nine fraction digits, as Go's RFC3339Nano drops trailing zeros. It
// checks only the layout; the parser checks the digits.
func padStamp(dst, s []byte) bool {
	const secEnd = 19 // len("2006-01-02T15:04:05")
	if len(s) < secEnd+1 || len(s) > fixedStampLen || s[len(s)-1] != 'Z' {
		return false
	}
	copy(dst, s[:secEnd])
	frac := s[secEnd : len(s)-1]
	dst[secEnd] = '.'
	for k := secEnd + 1; k < fixedStampLen-1; k++ {
		dst[k] = '0'
	}
	if len(frac) > 0 {
		if frac[0] != '.' || len(frac) < 2 || len(frac) > 10 {
			return false
		}
		copy(dst[secEnd+1:], frac[1:])
	}
	dst[fixedStampLen-1] = 'Z'
	return true
}

// Years whose every instant fits a Timestamp (int64 nanoseconds: 1677-09
// to 2262-04).
const (
	minYear = "1678"
	maxYear = "2261"
)

func inRange(year []byte) bool {
	return string(year) >= minYear && string(year) <= maxYear
}

func hasPrefixAt(b []byte, i int, p string) bool {
	return len(b)-i >= len(p) && string(b[i:i+len(p)]) == p
}

// unescape appends the JSON string that starts at b[i] (after its opening
// quote) to dst, decoded as encoding/json decodes it: invalid UTF-8 and
// lone surrogates become U+FFFD. It returns the index after the closing
// quote; ok is false for anything encoding/json would reject.
func unescape(dst, b []byte, i int) ([]byte, int, bool) {
	for i < len(b) {
		// Copy the run of plain ASCII at once.
		j := i
		for j < len(b) {
			c := b[j]
			if c == '"' || c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
				break
			}
			j++
		}
		dst = append(dst, b[i:j]...)
		i = j
		if i >= len(b) {
			return dst, i, false
		}
		switch c := b[i]; {
		case c == '"':
			return dst, i + 1, true
		case c < 0x20:
			return dst, i, false
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				dst = utf8.AppendRune(dst, utf8.RuneError)
			} else {
				dst = append(dst, b[i:i+size]...)
			}
			i += size
		default: // '\\'
			if i+1 >= len(b) {
				return dst, i, false
			}
			switch b[i+1] {
			case '"', '\\', '/':
				dst = append(dst, b[i+1])
				i += 2
			case 'b':
				dst, i = append(dst, '\b'), i+2
			case 'f':
				dst, i = append(dst, '\f'), i+2
			case 'n':
				dst, i = append(dst, '\n'), i+2
			case 'r':
				dst, i = append(dst, '\r'), i+2
			case 't':
				dst, i = append(dst, '\t'), i+2
			case 'u':
				r, ok := hex4(b, i+2)
				if !ok {
					return dst, i, false
				}
				i += 6
				if utf16.IsSurrogate(r) {
					if r2, ok := hex4(b, i+2); ok && i+1 < len(b) && b[i] == '\\' && b[i+1] == 'u' {
						if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
							dst, i = utf8.AppendRune(dst, d), i+6
							continue
						}
					}
					r = utf8.RuneError
				}
				dst = utf8.AppendRune(dst, r)
			default:
				return dst, i, false
			}
		}
	}
	return dst, i, false
}

func hex4(b []byte, i int) (rune, bool) {
	if len(b)-i < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// skipObject returns the index after the JSON object that starts at b[i],
// whose strings may hold any escaped bytes. ok is false when it is not a
// well-formed object of strings (attrs holds only strings).
func skipObject(b []byte, i int) (int, bool) {
	if i >= len(b) || b[i] != '{' {
		return i, false
	}
	depth := 0
	for i < len(b) {
		switch b[i] {
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				return i + 1, true
			}
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
		}
		i++
	}
	return i, false
}

// jsonLine is the slow path's view of a line: encoding/json with the
// daemon's own field names.
type jsonLine struct {
	Log    string `json:"log"`
	Stream string `json:"stream"`
	Time   string `json:"time"`
}

func parseSlow(dst, b []byte) ([]byte, entry, error) {
	var l jsonLine
	if err := json.Unmarshal(b, &l); err != nil {
		return dst, entry{}, fmt.Errorf("%w: %w", ErrMalformedLine, err)
	}
	var e entry
	switch l.Stream {
	case "stdout":
		e.stream = capture.Stdout
	case "stderr":
		e.stream = capture.Stderr
	default:
		return dst, entry{}, fmt.Errorf("%w: stream %q", ErrMalformedLine, l.Stream)
	}
	t, err := time.Parse(time.RFC3339Nano, l.Time)
	if err != nil {
		return dst, entry{}, fmt.Errorf("%w: time: %w", ErrMalformedLine, err)
	}
	if y := t.UTC().Year(); y < 1678 || y > 2261 {
		return dst, entry{}, fmt.Errorf("%w: time %q out of range", ErrMalformedLine, l.Time)
	}
	e.ts = capture.Timestamp(t.UnixNano())
	base := len(dst)
	dst = t.UTC().AppendFormat(dst, "2006-01-02T15:04:05.000000000Z ")
	// Only years 1678-2261 fit a Timestamp; check it as the reader will.
	if ts, n, err := capture.ParseTimestamp(dst[base:]); err != nil || n != fixedStampLen+1 || ts != e.ts {
		return dst[:base], entry{}, fmt.Errorf("%w: time %q out of range", ErrMalformedLine, l.Time)
	}
	dst = append(dst, l.Log...)
	return dst, e, nil
}
