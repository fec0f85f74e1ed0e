package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dockerlogs/fluent-bit-docker-logs/internal/records"
)

// awaitStats spins (yielding) until cond holds for the capture's stats.
// The counters have no event of their own to wait on; the conditions are
// met within milliseconds of the event the test already awaited.
func awaitStats(t *testing.T, c *Capture, what string, cond func(StatsSnapshot) bool) StatsSnapshot {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := c.Stats()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats never showed %s: %+v", what, s)
		}
		runtime.Gosched()
	}
}

func TestStatsCountDeliveredLinesBytesAndTruncationByStream(t *testing.T) {
	d := newFakeDaemon()
	d.add(runningContainer(testID))
	opts := testOptions()
	opts.MaxLineSize = 40
	w := newLineWriter(d, testID, 50)
	w.lines(300)
	long := strings.Repeat("x", 100)
	d.write(testID, Stderr, w.ts+1, long+"\n")
	h := newHarness(t, d, opts)
	h.waitFor("every line", 10*time.Second, countFor(testID, w.total()+1))

	// Everything delivered was counted before it was queued.
	s := h.c.Stats()
	var want [3]int64 // stdout lines, stderr lines, truncated
	var wantBytes [3]int64
	for _, r := range h.records() {
		i := 0
		if r.Stream == "stderr" {
			i = 1
		}
		want[i]++
		wantBytes[i] += int64(len(r.Log))
		if r.Truncated {
			want[2]++
		}
	}
	if s.StdoutLines != want[0] || s.StderrLines != want[1] || s.LinesTruncated != want[2] {
		t.Errorf("lines stdout/stderr/truncated = %d/%d/%d, records say %d/%d/%d",
			s.StdoutLines, s.StderrLines, s.LinesTruncated, want[0], want[1], want[2])
	}
	if s.StdoutBytes != wantBytes[0] || s.StderrBytes != wantBytes[1] {
		t.Errorf("bytes stdout/stderr = %d/%d, records say %d/%d", s.StdoutBytes, s.StderrBytes, wantBytes[0], wantBytes[1])
	}
	if want[2] != 1 {
		t.Errorf("%d truncated records, want the long one", want[2])
	}
	if s.Containers != nil {
		t.Errorf("per-container stats without ContainerStats: %+v", s.Containers)
	}
	if s.QueueCapacity != int64(opts.QueueMaxSize) {
		t.Errorf("queue capacity %d, want %d", s.QueueCapacity, opts.QueueMaxSize)
	}
}

// oneLineRead runs a harness with opts over a running container, testID,
// that wrote one line, and waits for that line.
func oneLineRead(t *testing.T, opts Options) (*fakeDaemon, *harness) {
	t.Helper()
	d := newFakeDaemon()
	d.add(runningContainer(testID))
	d.write(testID, Stdout, 1e9, "one\n")
	h := newHarness(t, d, opts)
	h.waitFor("the line", 10*time.Second, countFor(testID, 1))
	return d, h
}

func TestStatsGaugesFollowReadersStreamsAndPause(t *testing.T) {
	_, h := oneLineRead(t, testOptions())
	// The reader now follows its one stream.
	awaitStats(t, h.c, "one reader with one stream", func(s StatsSnapshot) bool {
		return s.ContainersWatched == 1 && s.StreamsOpen == 1
	})
	h.c.Pause()
	if s := h.c.Stats(); !s.Paused {
		t.Error("not paused after Pause")
	}
	h.c.Resume()
	if s := h.c.Stats(); s.Paused {
		t.Error("still paused after Resume")
	}
	h.stop()
	if s := h.c.Stats(); s.ContainersWatched != 0 || s.StreamsOpen != 0 {
		t.Errorf("after Stop: %d containers watched, %d streams open, want 0 and 0", s.ContainersWatched, s.StreamsOpen)
	}
}

func TestStatsCountRefreshes(t *testing.T) {
	d := newFakeDaemon()
	d.add(runningContainer(testID))
	h := newHarness(t, d, refreshEvery(100*time.Millisecond))
	awaitStats(t, h.c, "two refreshes", func(s StatsSnapshot) bool { return s.Refreshes >= 2 })
	if s := h.c.Stats(); s.Errors != ([NumErrorReasons]int64{}) {
		t.Errorf("errors counted on a plain refresh: %v", s.Errors)
	}
}

// calls counts the calls of one kind a fake source answers.
type calls struct {
	mu sync.Mutex
	n  int
}

// next counts a call and reports whether it is the nth.
func (c *calls) next(nth int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	return c.n == nth
}

// failingSource fails its first Inspect and its first Logs with an
// unclassified error, then answers Logs with ErrLogsUnreadable.
type failingSource struct {
	*fakeDaemon
	inspects, logs calls
}

func (f *failingSource) Inspect(ctx context.Context, id string) (Container, error) {
	if f.inspects.next(1) {
		return Container{}, errors.New("inspect: connection reset")
	}
	return f.fakeDaemon.Inspect(ctx, id)
}

func (f *failingSource) Logs(ctx context.Context, id string, req LogsRequest) (io.ReadCloser, error) {
	if f.logs.next(1) {
		return nil, errors.New("logs: connection reset")
	}
	return nil, fmt.Errorf("logs: %w", ErrLogsUnreadable)
}

func TestStatsCountErrorsByReason(t *testing.T) {
	d := newFakeDaemon()
	d.add(runningContainer(testID))
	src := &failingSource{fakeDaemon: d}
	h := newHarnessOf(t, src, d, testOptions())
	// The reader counts the unreadable container, then gives up on it.
	awaitStats(t, h.c, "the reader gone after the unreadable container", func(s StatsSnapshot) bool {
		return s.Errors[ReasonUnreadable] >= 1 && s.ContainersWatched == 0
	})
	c := h.c
	want := [NumErrorReasons]int64{ReasonInspect: 1, ReasonOpen: 1, ReasonUnreadable: 1}
	if s := c.Stats(); s.Errors != want {
		for r := range NumErrorReasons {
			if s.Errors[r] != want[r] {
				t.Errorf("errors{reason=%s} = %d, want %d", r, s.Errors[r], want[r])
			}
		}
	}
}

func TestStatsCountListAndEventsErrors(t *testing.T) {
	d := newFakeDaemon()
	d.add(runningContainer(testID))
	h := newHarness(t, d, testOptions())
	d.write(testID, Stdout, 1e9, "before\n")
	h.waitFor("the first line", 10*time.Second, countFor(testID, 1))
	d.setDown(true) // ends the events stream; the re-list fails
	awaitStats(t, h.c, "an events error and a list error", func(s StatsSnapshot) bool {
		return s.Errors[ReasonEvents] >= 1 && s.Errors[ReasonList] >= 1
	})
	d.setDown(false)
	awaitStats(t, h.c, "a reconnect", func(s StatsSnapshot) bool { return s.Reconnects >= 1 })
}

func TestStatsCountPositionWritesAndTheirFailures(t *testing.T) {
	for _, tc := range []struct {
		name     string
		breakDir bool // remove the file's directory: every write fails
	}{{"written", false}, {"failing", true}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "db")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			pos, err := OpenPositions(filepath.Join(dir, "positions.json"), 0, logrus.NewEntry(logrus.New()))
			if err != nil {
				t.Fatal(err)
			}
			if tc.breakDir {
				if err := os.RemoveAll(dir); err != nil {
					t.Fatal(err)
				}
			}
			opts := testOptions()
			opts.Positions = pos
			_, h := oneLineRead(t, opts) // committed: the positions changed
			h.stop()                     // writes once more at exit
			s := h.c.Stats()
			if tc.breakDir {
				if s.PositionWrites != 0 || s.PositionWriteFailures == 0 || s.Errors[ReasonPositions] != s.PositionWriteFailures {
					t.Errorf("writes %d, failures %d, errors{positions} %d: want 0, >0, the same",
						s.PositionWrites, s.PositionWriteFailures, s.Errors[ReasonPositions])
				}
				return
			}
			if s.PositionWrites == 0 || s.PositionWriteFailures != 0 {
				t.Errorf("writes %d, failures %d: want >0 and 0", s.PositionWrites, s.PositionWriteFailures)
			}
		})
	}
}

// containerStatsOn are the test options with counts per container.
func containerStatsOn() Options {
	opts := testOptions()
	opts.ContainerStats = true
	return opts
}

func TestStatsPerContainerByNameAndForgottenWhenRemoved(t *testing.T) {
	const other = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
	d := newFakeDaemon()
	d.add(Container{ID: testID, Name: "web", Image: "x", Running: true})
	d.add(Container{ID: other, Name: "db", Image: "x", Running: true})
	d.write(testID, Stdout, 1e9, "one\n")
	d.write(testID, Stderr, 2e9, "three\n")
	d.write(other, Stdout, 1e9, "hello\n")
	h := newHarness(t, d, containerStatsOn())
	h.waitFor("three lines", 10*time.Second, func(r []records.Record) bool { return len(r) >= 3 })
	s := h.c.Stats()
	want := []ContainerStats{
		{Name: "db", StdoutLines: 1, StdoutBytes: 5, Readers: 1},
		{Name: "web", StdoutLines: 1, StderrLines: 1, StdoutBytes: 3, StderrBytes: 5, Readers: 1},
	}
	if fmt.Sprint(s.Containers) != fmt.Sprint(want) {
		t.Errorf("per container: %+v, want %+v", s.Containers, want)
	}
	d.destroy(other)
	awaitStats(t, h.c, "db forgotten", func(s StatsSnapshot) bool {
		return len(s.Containers) == 1 && s.Containers[0].Name == "web"
	})
}

// A stopped container's reader reads its log to the end and returns: its
// count of running readers, which tests await, falls to 0.
func TestStatsPerContainerReadersEndWhenAStoppedLogIsRead(t *testing.T) {
	d, h := oneLineRead(t, containerStatsOn())
	if s := h.c.Stats(); len(s.Containers) != 1 || s.Containers[0].Readers != 1 || s.ContainersWatched != 1 {
		t.Fatalf("while it runs: %+v, watched %d; want one reader", s.Containers, s.ContainersWatched)
	}
	d.write(testID, Stdout, 2e9, "last\n")
	d.setRunning(testID, false)
	s := awaitStats(t, h.c, "its reader ended", func(s StatsSnapshot) bool {
		return len(s.Containers) == 1 && s.Containers[0].Readers == 0
	})
	if s.ContainersWatched != 0 || s.Containers[0].StdoutLines != 2 {
		t.Errorf("after its reader ended: %+v, watched %d; want both lines read and no reader", s.Containers, s.ContainersWatched)
	}
}

// serverErrorLogs is a daemon that answers every logs request with a
// server error, as Podman does for a container whose log driver is none.
type serverErrorLogs struct {
	*fakeDaemon
}

func (s serverErrorLogs) Logs(ctx context.Context, id string, req LogsRequest) (io.ReadCloser, error) {
	return nil, errors.New("logs: 500 this container is not logging output")
}

func TestContainerWithoutLogsIsSkippedOnceByItsInspect(t *testing.T) {
	d := newFakeDaemon()
	c := runningContainer(testID)
	c.NoLogs = true
	d.add(c)
	h := newHarnessOf(t, serverErrorLogs{d}, d, testOptions())
	awaitStats(t, h.c, "the container counted unreadable and its reader gone", func(s StatsSnapshot) bool {
		return s.Errors[ReasonUnreadable] == 1 && s.ContainersWatched == 0
	})
}
