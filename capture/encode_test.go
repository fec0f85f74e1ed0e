package capture

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/dockerlogs/fluent-bit-docker-logs/internal/records"
)

var encodeContainer = Container{
	ID:    strings.Repeat("0123456789abcdef", 4),
	Name:  "web-1",
	Image: "nginx:1.27",
	// Labels are not part of the record without Metadata.
	Labels: map[string]string{"app": "web"},
}

func decodeOne(t *testing.T, b []byte) records.Record {
	t.Helper()
	recs, err := records.Decode(b)
	if err != nil {
		t.Fatalf("records.Decode: %v", err)
	}
	if len(recs) != 1 {
		t.Fatalf("decoded %d records, want 1", len(recs))
	}
	return recs[0]
}

func fieldNames(r records.Record) []string {
	var keys []string
	for k := range r.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func TestAppendRecordDecodesToSameFields(t *testing.T) {
	base := []string{"container_id", "container_image", "container_name", "log", "stream"}
	withTruncated := []string{"container_id", "container_image", "container_name", "log", "log_truncated", "stream"}
	for _, tc := range []struct {
		name       string
		time       time.Time
		line       string
		stream     StreamKind
		truncated  bool
		c          Container
		wantStream string
		wantKeys   []string
	}{
		{"stdout", time.Date(2024, 3, 1, 10, 0, 0, 1, time.UTC), "hello", Stdout, false, encodeContainer, "stdout", base},
		{"stderr", time.Date(2024, 3, 1, 10, 0, 0, 999999999, time.UTC), "oops", Stderr, false, encodeContainer, "stderr", base},
		{"truncated", time.Date(2024, 3, 1, 10, 0, 0, 500000000, time.UTC), strings.Repeat("x", 100), Stdout, true, encodeContainer, "stdout", withTruncated},
		{"truncated stderr", time.Date(2038, 1, 19, 3, 14, 8, 0, time.UTC), "y", Stderr, true, encodeContainer, "stderr", withTruncated},
		{"epoch, empty line", time.Unix(0, 0).UTC(), "", Stdout, false, encodeContainer, "stdout", base},
		{"unicode and control bytes", time.Date(2024, 3, 1, 10, 0, 0, 123456789, time.UTC), "caf\u00e9 \u2713\t\x1b[0m\r", Stdout, false,
			Container{ID: "abc", Name: "n\u00e4me", Image: "registry.example.com:5000/team/app@sha256:" + strings.Repeat("f", 64)}, "stdout", base},
		{"empty container fields", time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC), "line", Stdout, false, Container{}, "stdout", base},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := appendRecord(nil, Timestamp(tc.time.UnixNano()), []byte(tc.line), tc.stream, tc.truncated, containerFields(tc.c, nil))
			r := decodeOne(t, b)
			if !r.Time.Equal(tc.time) || r.Time.Nanosecond() != tc.time.Nanosecond() {
				t.Errorf("time = %s, want %s", r.Time.Format(time.RFC3339Nano), tc.time.Format(time.RFC3339Nano))
			}
			if r.Log != tc.line {
				t.Errorf("log = %q, want %q", r.Log, tc.line)
			}
			if r.Stream != tc.wantStream {
				t.Errorf("stream = %q, want %q", r.Stream, tc.wantStream)
			}
			if r.ContainerID != tc.c.ID || r.ContainerName != tc.c.Name || r.ContainerImage != tc.c.Image {
				t.Errorf("container fields = %q %q %q, want %q %q %q",
					r.ContainerID, r.ContainerName, r.ContainerImage, tc.c.ID, tc.c.Name, tc.c.Image)
			}
			if r.Truncated != tc.truncated {
				t.Errorf("log_truncated = %v, want %v", r.Truncated, tc.truncated)
			}
			if got := fieldNames(r); fmt.Sprint(got) != fmt.Sprint(tc.wantKeys) {
				t.Errorf("fields = %v, want %v", got, tc.wantKeys)
			}
			// Strings, not binary: Fluent Bit's filters and outputs treat
			// bin as opaque.
			for k, v := range r.Fields {
				if _, ok := v.(string); !ok && k != "log_truncated" {
					t.Errorf("field %s is %T, want a msgpack str", k, v)
				}
			}
		})
	}
}

func TestAppendRecordAppendsAfterExistingEvents(t *testing.T) {
	fixed := containerFields(encodeContainer, nil)
	t0 := time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)
	var b []byte
	var want []string
	for i := range 50 {
		line := fmt.Sprintf("line %d %s", i, strings.Repeat("z", i*7))
		b = appendRecord(b, Timestamp(t0.Add(time.Duration(i)).UnixNano()), []byte(line), StreamKind(1+i%2), i%5 == 0, fixed)
		want = append(want, line)
	}
	recs, err := records.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(want) {
		t.Fatalf("decoded %d records, want %d", len(recs), len(want))
	}
	for i, r := range recs {
		if r.Log != want[i] || !r.Time.Equal(t0.Add(time.Duration(i))) || r.Truncated != (i%5 == 0) {
			t.Errorf("record %d = %q at %s truncated=%v", i, r.Log, r.Time.Format(time.RFC3339Nano), r.Truncated)
		}
	}
}

// Header bytes from the msgpack spec: fixstr 101xxxxx, str8 0xd9, str16
// 0xda, str32 0xdb, lengths big-endian.
func TestAppendRecordStringLengthsAcrossMsgpackBoundaries(t *testing.T) {
	for _, tc := range []struct {
		n      int
		header []byte
	}{
		{0, []byte{0xa0}},
		{31, []byte{0xbf}},
		{32, []byte{0xd9, 32}},
		{255, []byte{0xd9, 0xff}},
		{256, []byte{0xda, 0x01, 0x00}},
		{65535, []byte{0xda, 0xff, 0xff}},
		{65536, []byte{0xdb, 0x00, 0x01, 0x00, 0x00}},
		{1 << 20, []byte{0xdb, 0x00, 0x10, 0x00, 0x00}},
	} {
		t.Run(fmt.Sprint(tc.n), func(t *testing.T) {
			s := strings.Repeat("\u00e9", tc.n/2) + strings.Repeat("q", tc.n%2) // multi-byte runes: lengths are bytes
			t.Run("log", func(t *testing.T) {
				b := appendRecord(nil, 1, []byte(s), Stdout, false, containerFields(encodeContainer, nil))
				if enc := append(append([]byte("\xa3log"), tc.header...), s...); !bytes.Contains(b, enc) {
					t.Errorf("record does not hold log with header % x", tc.header)
				}
				if r := decodeOne(t, b); r.Log != s || r.ContainerImage != encodeContainer.Image {
					t.Errorf("log decoded to %d bytes, image %q; want %d bytes, %q", len(r.Log), r.ContainerImage, len(s), encodeContainer.Image)
				}
			})
			t.Run("container fields", func(t *testing.T) {
				c := Container{ID: s, Name: s, Image: s}
				b := appendRecord(nil, 1, []byte("x"), Stderr, true, containerFields(c, nil))
				if enc := append(append([]byte("\xafcontainer_image"), tc.header...), s...); !bytes.Contains(b, enc) {
					t.Errorf("record does not hold container_image with header % x", tc.header)
				}
				r := decodeOne(t, b)
				if r.ContainerID != s || r.ContainerName != s || r.ContainerImage != s || r.Log != "x" || !r.Truncated {
					t.Errorf("container fields decoded to %d/%d/%d bytes, want %d", len(r.ContainerID), len(r.ContainerName), len(r.ContainerImage), len(s))
				}
			})
		})
	}
}

func TestAppendRecordDoesNotAllocateWithRoom(t *testing.T) {
	fixed := containerFields(encodeContainer, nil)
	line := []byte(strings.Repeat("GET /api/v1/items 200 ", 10))
	dst := make([]byte, 0, 64<<10)
	ts := Timestamp(time.Date(2024, 3, 1, 10, 0, 0, 1, time.UTC).UnixNano())
	for _, truncated := range []bool{false, true} {
		allocs := testing.AllocsPerRun(1000, func() {
			dst = appendRecord(dst[:0], ts, line, Stderr, truncated, fixed)
		})
		if allocs != 0 {
			t.Errorf("appendRecord (truncated=%v): %v allocations per record, want 0", truncated, allocs)
		}
	}
}

func BenchmarkAppendRecord(b *testing.B) {
	fixed := containerFields(encodeContainer, nil)
	line := []byte(strings.Repeat("x", 100))
	dst := make([]byte, 0, 1<<20)
	ts := Timestamp(time.Date(2024, 3, 1, 10, 0, 0, 1, time.UTC).UnixNano())
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for b.Loop() {
		if len(dst) > cap(dst)-1024 {
			dst = dst[:0]
		}
		dst = appendRecord(dst, ts, line, Stdout, false, fixed)
	}
}
