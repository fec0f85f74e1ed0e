package capture

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// stdlibStamp is what time.Parse makes of a stamp, the reference every
// parseTimestamp result is checked against.
func stdlibStamp(t *testing.T, stamp string) Timestamp {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, stamp)
	if err != nil {
		t.Fatalf("test input %q is not RFC 3339: %v", stamp, err)
	}
	return Timestamp(tm.UnixNano())
}

// parsedAsTimeParse parses stamp, a space and rest, checking the instant
// against time.Parse's and that the length taken ends at rest.
func parsedAsTimeParse(t *testing.T, stamp, rest string) Timestamp {
	t.Helper()
	want := stdlibStamp(t, stamp)
	in := []byte(stamp + " " + rest)
	ts, n, err := parseTimestamp(in)
	if err != nil {
		t.Fatalf("parseTimestamp: %v", err)
	}
	if ts != want {
		t.Errorf("ts = %d (%s), want %d (%s)", ts, ts, want, want)
	}
	if n != len(stamp)+1 {
		t.Errorf("n = %d, want %d (the stamp and its space)", n, len(stamp)+1)
	}
	if got := string(in[n:]); got != rest {
		t.Errorf("rest after n = %q, want %q", got, rest)
	}
	return want
}

// jsonFileStamp formats tm as the json-file driver does: UTC, 9 fraction
// digits, no trailing space.
func jsonFileStamp(tm time.Time) string {
	return tm.UTC().Format("2006-01-02T15:04:05.000000000Z")
}

func TestParseTimestampFixedUTCMatchesTimeParse(t *testing.T) {
	for _, stamp := range []string{
		"1970-01-01T00:00:00.000000000Z",
		"2023-11-14T22:13:20.000000001Z",
		"2024-02-29T12:00:00.500000000Z", // leap day
		"2000-02-29T23:59:59.999999999Z", // leap day of a year divisible by 400
		"2023-12-31T23:59:59.999999999Z",
		"2024-01-01T00:00:00.000000000Z",
		"2100-03-01T00:00:00.000000000Z",
		"1969-12-31T23:59:59.999999999Z", // just before the epoch
		"1900-03-01T00:00:00.123456789Z",
		"2262-04-11T23:47:16.854775807Z", // the last instant an int64 holds
	} {
		t.Run(stamp, func(t *testing.T) {
			want := parsedAsTimeParse(t, stamp, "hello\n")
			if len(stamp) != 30 {
				t.Fatalf("test stamp %q is not of the fixed form", stamp)
			}
			// The fixed form must be taken by the fast path, not only
			// parsed correctly by the slow one.
			fast, ok := parseFixedUTC([]byte(stamp))
			if !ok || fast != want {
				t.Errorf("parseFixedUTC = %d, %v; want %d, true", fast, ok, want)
			}
		})
	}
}

func TestParseTimestampFixedUTCSweepMatchesTimeParse(t *testing.T) {
	// Every day over several leap cycles, at varying times of day, so that
	// daysFromCivil is checked across month and year ends.
	start := time.Date(1995, 1, 1, 0, 0, 0, 0, time.UTC)
	for d := 0; d < 366*12; d++ {
		tm := start.AddDate(0, 0, d).Add(time.Duration(d*7919) * time.Second).Add(time.Duration(d * 104729))
		stamp := jsonFileStamp(tm)
		ts, n, err := parseTimestamp([]byte(stamp + " x"))
		if err != nil || n != 31 || ts != Timestamp(tm.UnixNano()) {
			t.Fatalf("%s: got %d, %d, %v; want %d, 31, nil", stamp, ts, n, err, tm.UnixNano())
		}
	}
}

func TestParseTimestampAcceptsOffsetsAndShortFractions(t *testing.T) {
	for _, stamp := range []string{
		"2023-11-14T22:13:20.123456789+02:00", // local driver, Docker < 25
		"2023-11-14T22:13:20.123456789-07:00",
		"2023-11-14T22:13:20.5Z",
		"2023-11-14T22:13:20.12Z",
		"2023-11-14T22:13:20Z",
		"2023-11-14T22:13:20.1+05:30",
		"2023-11-14T00:13:20.000000001+14:00", // a date change through the offset
	} {
		t.Run(stamp, func(t *testing.T) { parsedAsTimeParse(t, stamp, "body") })
	}
}

func TestParseTimestampRejectsMalformedStamps(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"empty", ""},
		{"only a space", " "},
		{"letters", "hello world this is not a timestamp at all\n"},
		{"letter in year", "2O23-11-14T22:13:20.000000000Z x"},
		{"letter in fraction", "2023-11-14T22:13:20.00000000aZ x"},
		{"feb 30", "2023-02-30T00:00:00.000000000Z x"},
		{"feb 29 of a common year", "2023-02-29T00:00:00.000000000Z x"},
		{"feb 29 of 1900", "1900-02-29T00:00:00.000000000Z x"},
		{"april 31", "2023-04-31T00:00:00.000000000Z x"},
		{"day 0", "2023-01-00T00:00:00.000000000Z x"},
		{"month 13", "2023-13-01T00:00:00.000000000Z x"},
		{"month 0", "2023-00-01T00:00:00.000000000Z x"},
		{"hour 24", "2023-11-14T24:00:00.000000000Z x"},
		{"minute 60", "2023-11-14T23:60:00.000000000Z x"},
		{"second 60", "2023-11-14T23:59:60.000000000Z x"},
		{"missing space", "2023-11-14T22:13:20.000000000Zhello"},
		{"missing space at end", "2023-11-14T22:13:20.000000000Z"},
		{"lower-case t", "2023-11-14t22:13:20.000000000Z x"},
		{"space instead of T", "2023-11-14 22:13:20.000000000Z x"},
		{"no zone", "2023-11-14T22:13:20.000000000 x"},
		{"date only", "2023-11-14 x"},
		{"no space within the bound", strings.Repeat("9", 80)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts, n, err := parseTimestamp([]byte(tc.in))
			if !errors.Is(err, ErrBadTimestamp) {
				t.Fatalf("parseTimestamp(%q) = %d, %d, %v; want ErrBadTimestamp", tc.in, ts, n, err)
			}
			if n != 0 {
				t.Errorf("n = %d on error, want 0", n)
			}
		})
	}
}

func TestParseTimestampFastPathDoesNotAllocate(t *testing.T) {
	in := []byte("2023-11-14T22:13:20.123456789Z a log line\n")
	var sink Timestamp
	allocs := testing.AllocsPerRun(1000, func() {
		ts, _, err := parseTimestamp(in)
		if err != nil {
			panic(err)
		}
		sink += ts
	})
	if allocs != 0 {
		t.Errorf("parseTimestamp of the fixed form: %v allocations, want 0", allocs)
	}
}

func BenchmarkParseTimestamp(b *testing.B) {
	for _, bc := range []struct{ name, in string }{
		{"fixed-utc", "2023-11-14T22:13:20.123456789Z a log line\n"},
		{"offset", "2023-11-14T22:13:20.123456789+02:00 a log line\n"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			in := []byte(bc.in)
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := parseTimestamp(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestSinceParamFormatsSecondsAndNineFractionDigits(t *testing.T) {
	for _, tc := range []struct {
		ts   Timestamp
		want string
	}{
		{1700000000000000001, "1700000000.000000001"},
		{1700000000000000000, "1700000000.000000000"},
		{1700000000999999999, "1700000000.999999999"},
		{1700000000100000000, "1700000000.100000000"},
		{1, "0.000000001"},
		{Timestamp(time.Date(2024, 2, 29, 12, 0, 0, 123456789, time.UTC).UnixNano()), "1709208000.123456789"},
		// A stamp before 1970 (a container whose clock was never set) must
		// still give a parameter the daemon parses to the same instant:
		// "-1.999999999" is time.Unix(-1, 999999999), one nanosecond before
		// the epoch.
		{-1, "-1.999999999"},
		{-1_000_000_000, "-1.000000000"},
		{-1_500_000_000, "-2.500000000"},
	} {
		if got := tc.ts.SinceParam(); got != tc.want {
			t.Errorf("Timestamp(%d).SinceParam() = %q, want %q", int64(tc.ts), got, tc.want)
		}
	}
}

// The daemon parses since as seconds, '.', nanoseconds and builds
// time.Unix(sec, nsec): the parameter must name exactly the stamp it came
// from, so that the inclusive filter starts at that entry.
func TestSinceParamRoundTripsThroughDaemonParsing(t *testing.T) {
	for _, stamp := range []string{
		"2023-11-14T22:13:20.000000001Z",
		"2023-11-14T22:13:20.999999999Z",
		"2038-01-19T03:14:08.000000000Z",
		"1970-01-01T00:00:00.000000000Z",
	} {
		ts, _, err := parseTimestamp([]byte(stamp + " "))
		if err != nil {
			t.Fatal(err)
		}
		p := ts.SinceParam()
		var sec, nsec int64
		if _, err := fmt.Sscanf(p, "%d.%d", &sec, &nsec); err != nil {
			t.Fatalf("%s: SinceParam %q: %v", stamp, p, err)
		}
		if frac := p[strings.IndexByte(p, '.')+1:]; len(frac) != 9 {
			t.Errorf("%s: SinceParam %q has %d fraction digits, want 9", stamp, p, len(frac))
		}
		if got := jsonFileStamp(time.Unix(sec, nsec)); got != stamp {
			t.Errorf("SinceParam %q names %s, want %s", p, got, stamp)
		}
	}
}

// FuzzParseTimestamp: never panics; whatever parseTimestamp accepts,
// time.Parse accepts with the same instant; the fast path accepts nothing
// time.Parse rejects.
func FuzzParseTimestamp(f *testing.F) {
	for _, s := range []string{
		"2023-11-14T22:13:20.123456789Z hello",
		"2024-02-29T00:00:00.000000000Z ",
		"2023-02-29T00:00:00.000000000Z ",
		"2023-11-14T24:00:00.000000000Z ",
		"2023-11-14T22:13:20.5+02:00 x",
		"2023-11-14T22:13:20Z x",
		"0000-01-01T00:00:00.000000000Z ",
		"9999-12-31T23:59:59.999999999Z ",
		"",
		" ",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ts, n, err := parseTimestamp(b)
		if err != nil {
			if !errors.Is(err, ErrBadTimestamp) {
				t.Fatalf("error %v is not ErrBadTimestamp", err)
			}
			if n != 0 {
				t.Fatalf("n = %d with an error", n)
			}
		} else {
			if n < 2 || n > len(b) || b[n-1] != ' ' {
				t.Fatalf("n = %d does not end at the space after the stamp in %q", n, b)
			}
			tm, perr := time.Parse(time.RFC3339Nano, string(b[:n-1]))
			if perr != nil {
				t.Fatalf("parseTimestamp accepted %q, time.Parse rejects it: %v", b[:n-1], perr)
			}
			if ts != Timestamp(tm.UnixNano()) {
				t.Fatalf("%q: parseTimestamp = %d, time.Parse = %d", b[:n-1], ts, tm.UnixNano())
			}
		}
		if len(b) >= 30 && b[29] == 'Z' { // parseTimestamp's condition for trying the fast path
			fast, ok := parseFixedUTC(b[:30])
			tm, perr := time.Parse(time.RFC3339Nano, string(b[:30]))
			if ok && perr != nil {
				t.Fatalf("fast path accepted %q, time.Parse rejects it: %v", b[:30], perr)
			}
			if ok && fast != Timestamp(tm.UnixNano()) {
				t.Fatalf("%q: fast path = %d, time.Parse = %d", b[:30], fast, tm.UnixNano())
			}
		}
	})
}
