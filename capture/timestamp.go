package capture

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Timestamp is Docker's timestamp of a log entry in nanoseconds since the
// Unix epoch (int64 covers up to the year 2262).
type Timestamp int64

// ErrBadTimestamp: an entry does not start with an RFC 3339 timestamp.
var ErrBadTimestamp = errors.New("malformed timestamp")

// Time converts to time.Time in UTC.
func (t Timestamp) Time() time.Time { return time.Unix(0, int64(t)).UTC() }

func (t Timestamp) String() string { return t.Time().Format(time.RFC3339Nano) }

// SinceParam formats t as the logs API's since parameter: decimal
// seconds.nanoseconds, which the daemon treats as inclusive.
func (t Timestamp) SinceParam() string {
	sec, nsec := int64(t)/1e9, int64(t)%1e9
	if nsec < 0 { // floor, so the fraction stays in 0..999999999
		sec, nsec = sec-1, nsec+1e9
	}
	b := strconv.AppendInt(make([]byte, 0, 24), sec, 10)
	b = append(b, '.')
	var frac [9]byte
	for i := 8; i >= 0; i-- {
		frac[i] = byte('0' + nsec%10)
		nsec /= 10
	}
	return string(append(b, frac[:]...))
}

// fixedTimestampLen is the length of the json-file driver's stamp,
// "2006-01-02T15:04:05.000000000Z", followed by one space; fixedZone is
// where its "Z" is.
const (
	fixedTimestampLen = 30
	fixedZone         = fixedTimestampLen - 1
)

// fixedStampAt reports whether b starts with what has the shape of a
// fixed UTC stamp and its space, which parseFixedUTC then checks.
func fixedStampAt(b []byte) bool {
	return len(b) > fixedTimestampLen && b[fixedTimestampLen] == ' ' && b[fixedZone] == 'Z'
}

// maxTimestampLen bounds the search for the space that ends a stamp on the
// slow path ("2006-01-02T15:04:05.999999999-07:00" is 35 bytes).
const maxTimestampLen = 40

// parseTimestamp parses the timestamp that starts b and returns it with the
// number of bytes it took, the separating space included. The json-file
// driver's fixed UTC form is parsed without time.Parse; anything else (the
// local driver's offsets on older daemons, fewer fraction digits) takes the
// general path.
func parseTimestamp(b []byte) (Timestamp, int, error) {
	if fixedStampAt(b) {
		if ts, ok := parseFixedUTC(b[:fixedTimestampLen]); ok {
			return ts, fixedTimestampLen + 1, nil
		}
	}
	return parseTimestampSlow(b)
}

// parseFixedUTC parses "2006-01-02T15:04:05.000000000Z".
func parseFixedUTC(b []byte) (Timestamp, bool) {
	if b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' || b[19] != '.' {
		return 0, false
	}
	year, ok1 := digits(b[0:4])
	month, ok2 := digits(b[5:7])
	day, ok3 := digits(b[8:10])
	hour, ok4 := digits(b[11:13])
	minute, ok5 := digits(b[14:16])
	sec, ok6 := digits(b[17:19])
	nsec, ok7 := digits(b[20:29])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && ok7) {
		return 0, false
	}
	if month < 1 || month > 12 || day < 1 || day > daysIn(month, year) || hour > 23 || minute > 59 || sec > 59 {
		return 0, false
	}
	days := daysFromCivil(year, month, day)
	unix := days*86400 + hour*3600 + minute*60 + sec
	return Timestamp(unix*1e9 + nsec), true
}

func digits(b []byte) (int64, bool) {
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func daysIn(month, year int64) int64 {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil is Howard Hinnant's algorithm: days since 1970-01-01 of a
// proleptic Gregorian date.
func daysFromCivil(y, m, d int64) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era--
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

func parseTimestampSlow(b []byte) (Timestamp, int, error) {
	limit := min(len(b), maxTimestampLen)
	for i := 0; i < limit; i++ {
		if b[i] != ' ' {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, string(b[:i]))
		if err != nil {
			return 0, 0, fmt.Errorf("%w: %q", ErrBadTimestamp, b[:i])
		}
		return Timestamp(t.UnixNano()), i + 1, nil
	}
	return 0, 0, fmt.Errorf("%w: no space within %d bytes: %q", ErrBadTimestamp, limit, b[:limit])
}
