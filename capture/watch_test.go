package capture

import (
	"testing"
	"time"
)

// A stream following live lines is refreshed at its age; one still reading
// the log's past is kept. A whole-second stamp (Podman) is up to a second
// older than its line, which must not make a live stream look behind.
func TestWatchJudgesBehindByTheLatestTheLineCanBe(t *testing.T) {
	sec := time.Date(2026, 12, 2, 4, 32, 37, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		stamp  time.Time
		now    time.Time
		behind bool
	}{
		{"nanosecond stamp, live", sec.Add(700 * time.Millisecond), sec.Add(900 * time.Millisecond), false},
		{"nanosecond stamp, past", sec.Add(100 * time.Millisecond), sec.Add(900 * time.Millisecond), true},
		{"whole-second stamp, live", sec, sec.Add(900 * time.Millisecond), false},
		{"whole-second stamp, past", sec, sec.Add(1600 * time.Millisecond), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := startWatch(func() {}, time.Hour, time.Second, func() time.Time { return tc.now }, realAfterFunc)
			defer w.stop()
			w.read(Timestamp(tc.stamp.UnixNano()))
			if got := w.behind(); got != tc.behind {
				t.Errorf("behind() = %v, want %v", got, tc.behind)
			}
		})
	}
}
