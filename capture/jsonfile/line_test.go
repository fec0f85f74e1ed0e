package jsonfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/dockerlogs/fluent-bit-docker-logs/capture"
)

func stampOf(t *testing.T, s string) capture.Timestamp {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return capture.Timestamp(tm.UnixNano())
}

func TestParseLineDecodesWhatTheDriverWrites(t *testing.T) {
	cases := []struct {
		name, line string
		stream     capture.StreamKind
		stamp      string // the fixed form handed to the reader
		log        string
	}{
		{"plain", `{"log":"hello\n","stream":"stdout","time":"2026-12-02T05:49:48.123456789Z"}`,
			capture.Stdout, "2026-12-02T05:49:48.123456789Z", "hello\n"},
		{"trailing zeros dropped", `{"log":"x\n","stream":"stderr","time":"2026-12-02T05:49:48.1Z"}`,
			capture.Stderr, "2026-12-02T05:49:48.100000000Z", "x\n"},
		{"whole second", `{"log":"x\n","stream":"stdout","time":"2026-12-02T05:49:48Z"}`,
			capture.Stdout, "2026-12-02T05:49:48.000000000Z", "x\n"},
		{"escapes", `{"log":"a\"b\\c\/d\t\r\n\u0001\u003c\u00e9\u2028","stream":"stdout","time":"2026-01-01T00:00:00.5Z"}`,
			capture.Stdout, "2026-01-01T00:00:00.500000000Z", "a\"b\\c/d\t\r\n\x01<\u00e9\u2028"},
		{"invalid UTF-8 the driver replaced", `{"log":"\ufffd\ufffd\n","stream":"stdout","time":"2026-01-01T00:00:00Z"}`,
			capture.Stdout, "2026-01-01T00:00:00.000000000Z", "\ufffd\ufffd\n"},
		{"raw non-ASCII", `{"log":"Grüße 日本\n","stream":"stdout","time":"2026-01-01T00:00:00Z"}`,
			capture.Stdout, "2026-01-01T00:00:00.000000000Z", "Grüße 日本\n"},
		{"surrogate pair", `{"log":"\ud83d\ude00","stream":"stdout","time":"2026-01-01T00:00:00Z"}`,
			capture.Stdout, "2026-01-01T00:00:00.000000000Z", "\U0001F600"},
		{"lone surrogate", `{"log":"\ud83dx","stream":"stdout","time":"2026-01-01T00:00:00Z"}`,
			capture.Stdout, "2026-01-01T00:00:00.000000000Z", "\ufffdx"},
		{"piece without newline", `{"log":"abc","stream":"stdout","time":"2026-01-01T00:00:00Z"}`,
			capture.Stdout, "2026-01-01T00:00:00.000000000Z", "abc"},
		{"empty log has no key", `{"stream":"stdout","time":"2026-01-01T00:00:00Z"}`,
			capture.Stdout, "2026-01-01T00:00:00.000000000Z", ""},
		{"attrs skipped", `{"log":"x\n","stream":"stdout","attrs":{"a":"}\"{","tag":"t"},"time":"2026-01-01T00:00:00Z"}`,
			capture.Stdout, "2026-01-01T00:00:00.000000000Z", "x\n"},
		{"other key order (slow path)", `{"time":"2026-01-01T00:00:00.25Z","stream":"stderr","log":"y\n"}`,
			capture.Stderr, "2026-01-01T00:00:00.250000000Z", "y\n"},
		{"spaces (slow path)", `{ "log" : "y\n" , "stream" : "stdout" , "time" : "2026-01-01T00:00:00Z" }`,
			capture.Stdout, "2026-01-01T00:00:00.000000000Z", "y\n"},
		{"offset stamp (slow path)", `{"log":"y\n","stream":"stdout","time":"2026-01-01T02:00:00+02:00"}`,
			capture.Stdout, "2026-01-01T00:00:00.000000000Z", "y\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			prefix := []byte("kept")
			out, e, err := parseLine(prefix, []byte(c.line))
			if err != nil {
				t.Fatalf("parseLine: %v", err)
			}
			want := "kept" + c.stamp + " " + c.log
			if string(out) != want || e.stream != c.stream || e.ts != stampOf(t, c.stamp) {
				t.Errorf("got %q %v %d, want %q %v %d", out, e.stream, e.ts, want, c.stream, stampOf(t, c.stamp))
			}
		})
	}
}

func TestParseLineRejectsWhatIsNotAnEntry(t *testing.T) {
	for _, line := range []string{
		``,
		`not json`,
		`{"log":"x","stream":"stdout"}`, // no time
		`{"log":"x","stream":"stdin","time":"2026-01-01T00:00:00Z"}`,                  // no such stream
		`{"log":"x","stream":"stdout","time":"yesterday"}`,                            // bad time
		`{"log":"x","stream":"stdout","time":"2026-13-01T00:00:00Z"}`,                 // no such month
		`{"log":"x\q","stream":"stdout","time":"2026-01-01T00:00:00Z"}`,               // bad escape
		"{\"log\":\"x\x01\",\"stream\":\"stdout\",\"time\":\"2026-01-01T00:00:00Z\"}", // raw control byte
		`{"log":"x","stream":"stdout","attrs":{x},"time":"2026-01-01T00:00:00Z"}`,
		`{"log":"x","stream":"stdout","time":"3000-01-01T00:00:00Z"}`, // beyond a Timestamp
		`{"log":"x","stream":"stdout","time":"2026-01-01T00:00:00Z"`,  // cut
	} {
		out, _, err := parseLine([]byte("kept"), []byte(line))
		if !errors.Is(err, ErrMalformedLine) || string(out) != "kept" {
			t.Errorf("%q: got %q, %v; want ErrMalformedLine and dst unchanged", line, out, err)
		}
	}
}

func TestParseLineFastPathDoesNotAllocate(t *testing.T) {
	line := []byte(`{"log":"seq=1 stream=stdout xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx \"q\"\n","stream":"stdout","time":"2026-12-02T05:49:48.123456789Z"}`)
	dst := make([]byte, 0, 4096)
	allocs := testing.AllocsPerRun(1000, func() {
		if _, _, err := parseLine(dst[:0], line); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per line, want 0", allocs)
	}
}

// FuzzParseLine checks parseLine against encoding/json, which the daemon
// decodes its files with: whatever one accepts the other gives the same
// log, stream and stamp, and a line is never half appended.
func FuzzParseLine(f *testing.F) {
	for _, s := range []string{
		`{"log":"hello\n","stream":"stdout","time":"2026-12-02T05:49:48.123456789Z"}`,
		`{"log":"a\"b\\c\u00e9\ud83d\ude00\ud83d","stream":"stderr","time":"2026-12-02T05:49:48.1Z"}`,
		`{"stream":"stdout","time":"2026-01-01T00:00:00Z"}`,
		`{"log":"x\n","stream":"stdout","attrs":{"a":"b"},"time":"2026-01-01T00:00:00Z"}`,
		`{"time":"2026-01-01T00:00:00.25+01:00","stream":"stderr","log":"y"}`,
		"{\"log\":\"\xff\xfe\",\"stream\":\"stdout\",\"time\":\"2026-01-01T00:00:00Z\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		out, e, err := parseLine([]byte("kept"), line)
		if err != nil {
			if string(out) != "kept" {
				t.Fatalf("error %v but dst changed to %q", err, out)
			}
			return
		}
		var l jsonLine
		if jerr := json.Unmarshal(line, &l); jerr != nil {
			t.Fatalf("accepted %q, encoding/json rejects it: %v", line, jerr)
		}
		tm, terr := time.Parse(time.RFC3339Nano, l.Time)
		if terr != nil || capture.Timestamp(tm.UnixNano()) != e.ts {
			t.Fatalf("%q: stamp %d, encoding/json's time %q (%v)", line, e.ts, l.Time, terr)
		}
		if want := map[string]capture.StreamKind{"stdout": capture.Stdout, "stderr": capture.Stderr}[l.Stream]; want != e.stream {
			t.Fatalf("%q: stream %v, encoding/json's %q", line, e.stream, l.Stream)
		}
		if !bytes.HasPrefix(out, []byte("kept")) || len(out) < 4+fixedStampLen+1 {
			t.Fatalf("%q: output %q", line, out)
		}
		ts, n, perr := capture.ParseTimestamp(out[4:])
		if perr != nil || n != fixedStampLen+1 || ts != e.ts {
			t.Fatalf("%q: stamp written %q parses to %d (%v)", line, out[4:], ts, perr)
		}
		if got := string(out[4+n:]); got != l.Log {
			t.Fatalf("%q: log %q, encoding/json's %q", line, got, l.Log)
		}
	})
}

// BenchmarkParseLine: one line as the driver writes it, 100 bytes of log
// (the bench's files suite), and one with escapes throughout.
func BenchmarkParseLine(b *testing.B) {
	for _, c := range []struct{ name, line string }{
		{"plain", `{"log":"seq=1 stream=stdout xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n","stream":"stdout","time":"2026-12-02T09:28:13.292590046Z"}`},
		{"escaped", `{"log":"{\"level\":\"info\",\"msg\":\"GET /api/v1/items?id=42 \\u00e9t\u00e9\",\"took\":\"3ms\"}\n","stream":"stderr","time":"2026-12-02T09:28:13.29259Z"}`},
	} {
		b.Run(c.name, func(b *testing.B) {
			line := []byte(c.line)
			dst := make([]byte, 0, 4096)
			b.SetBytes(int64(len(line)))
			for b.Loop() {
				var err error
				if dst, _, err = parseLine(dst[:0], line); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
