// Package capturetest runs a capture against a real daemon in a test and
// collects what it hands over, as Fluent Bit's collect callback would: wait
// until something is queued, drain, decode, commit. The integration and
// fault suites share it, with loggen's numbered lines and their checks.
package capturetest

import (
	"context"
	"fmt"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dockerlogs/fluent-bit-docker-logs/capture"
	"github.com/dockerlogs/fluent-bit-docker-logs/internal/linecheck"
	"github.com/dockerlogs/fluent-bit-docker-logs/internal/records"
)

// Received is one record with the batch it came in and when.
type Received struct {
	records.Record
	Batch int
	At    time.Time
}

// Collector runs a capture and keeps every record it hands over.
type Collector struct {
	t   *testing.T
	src capture.Source
	// C is the capture; tests pause and resume it.
	C *capture.Capture
	// Describe, when set, tells about a container whose records stopped
	// coming, for the failure message.
	Describe func(id string) string
	// AfterStop, when set, runs once the capture has stopped and the last
	// batches are taken, before the source is closed.
	AfterStop func()

	mu      sync.Mutex
	got     []Received
	batches int
	// maxGoroutines is runtime.NumGoroutine() at its highest when a batch
	// was collected.
	maxGoroutines int
	// collected is closed and replaced after every batch; waits select on
	// it.
	collected chan struct{}

	// stopCollector ends the collector goroutine; collectorDone is closed
	// by it.
	stopCollector context.CancelFunc
	collectorDone chan struct{}
	stopOnce      sync.Once
}

// Start runs a capture of src. Its log goes to t.Log, each entry with
// field test=tag. Stop runs at cleanup unless the test called it first.
func Start(t *testing.T, src capture.Source, opts capture.Options, tag string) *Collector {
	t.Helper()
	le := &testLog{t: t}
	l := logrus.New()
	l.SetOutput(le)
	l.SetLevel(logrus.DebugLevel)
	c := &Collector{t: t, src: src, collected: make(chan struct{}), collectorDone: make(chan struct{})}
	c.C = capture.New(src, opts, logrus.NewEntry(l).WithField("test", tag))
	c.C.Start()
	ctx, cancel := context.WithCancel(context.Background())
	c.stopCollector = cancel
	go c.collect(ctx)
	t.Cleanup(func() {
		c.Stop()
		le.mu.Lock()
		le.done = true
		le.mu.Unlock()
	})
	return c
}

// pausedTick is how often the collector retries while Drain hands nothing
// (the capture is paused), like Fluent Bit's collect timer.
const pausedTick = 20 * time.Millisecond

func (c *Collector) collect(ctx context.Context) {
	defer close(c.collectorDone)
	tick := time.NewTicker(pausedTick)
	defer tick.Stop()
	for ctx.Err() == nil {
		if c.C.WaitQueued(ctx) != nil {
			return
		}
		if !c.drainOnce() {
			select {
			case <-tick.C:
			case <-ctx.Done():
				return
			}
		}
	}
}

// drainOnce takes one batch; it reports whether there was one.
func (c *Collector) drainOnce() bool {
	b := c.C.Drain(64 << 20)
	if b.Len() == 0 {
		return false
	}
	recs, err := records.Decode(b.Bytes())
	c.C.Commit(b)
	g := runtime.NumGoroutine()
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.t.Errorf("decoding batch %d: %v", c.batches, err)
	}
	for _, r := range recs {
		c.got = append(c.got, Received{Record: r, Batch: c.batches, At: now})
	}
	c.batches++
	c.maxGoroutines = max(c.maxGoroutines, g)
	close(c.collected)
	c.collected = make(chan struct{})
	return true
}

// Stop stops the capture, waits for its goroutines, takes what is still
// queued and closes the source: everything the capture produced is then
// collected.
func (c *Collector) Stop() {
	c.stopOnce.Do(func() {
		if err := c.C.Stop(30 * time.Second); err != nil {
			c.t.Errorf("Stop: %v", err)
		}
		c.stopCollector()
		<-c.collectorDone
		for c.drainOnce() {
		}
		if c.AfterStop != nil {
			c.AfterStop()
		}
		if err := c.src.Close(); err != nil {
			c.t.Errorf("Close: %v", err)
		}
	})
}

// MaxGoroutines is the highest goroutine count seen at a batch.
func (c *Collector) MaxGoroutines() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.maxGoroutines
}

// Of returns the records of container id, in the order collected.
func (c *Collector) Of(id string) []Received {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Received
	for _, r := range c.got {
		if r.ContainerID == id {
			out = append(out, r)
		}
	}
	return out
}

// WaitFor waits until cond holds for the records of container id, failing
// the test after timeout.
func (c *Collector) WaitFor(what, id string, cond func([]Received) bool, timeout time.Duration) {
	c.t.Helper()
	c.WaitProgressing(what, id, cond, timeout, timeout)
}

// WaitProgressing is WaitFor that also fails as soon as no record of id has
// arrived for idle: a reader that stopped making progress.
func (c *Collector) WaitProgressing(what, id string, cond func([]Received) bool, idle, timeout time.Duration) {
	c.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	stuck := time.NewTimer(idle)
	defer stuck.Stop()
	last := -1
	for {
		c.mu.Lock()
		collected := c.collected
		c.mu.Unlock()
		recs := c.Of(id)
		if cond(recs) {
			return
		}
		if len(recs) != last {
			last = len(recs)
			stuck.Reset(idle)
		}
		select {
		case <-collected:
		case <-deadline.C:
			c.t.Fatalf("timed out after %s waiting for %s of %s; %d records of it collected", timeout, what, short(id), len(recs))
		case <-stuck.C:
			more := ""
			if c.Describe != nil {
				more = "; " + c.Describe(id)
			}
			c.t.Fatalf("no record of %s for %s while waiting for %s (%d collected)%s", short(id), idle, what, len(recs), more)
		}
	}
}

func short(id string) string { return id[:min(12, len(id))] }

// testLog shows the capture's log with t.Log until the test ends.
type testLog struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

// statsTick is how often WaitStats looks at the counters between batches:
// they also move when nothing is collected.
const statsTick = 20 * time.Millisecond

// WaitStats waits until cond holds for the capture's counters, failing the
// test after timeout.
func (c *Collector) WaitStats(what string, cond func(capture.StatsSnapshot) bool, timeout time.Duration) {
	c.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(statsTick)
	defer tick.Stop()
	for {
		c.mu.Lock()
		collected := c.collected
		c.mu.Unlock()
		s := c.C.Stats()
		if cond(s) {
			return
		}
		select {
		case <-collected:
		case <-tick.C:
		case <-deadline.C:
			c.t.Fatalf("timed out after %s waiting for %s; stats %+v", timeout, what, s)
		}
	}
}

// Options are the capture options the suites start from: both streams,
// from the head, a refresh that never comes in a short test unless asked
// for, and the product's line bound.
func Options() capture.Options {
	return capture.Options{Stdout: true, Stderr: true, ReadFromHead: true,
		StreamRefresh: time.Minute, MaxLineSize: 1 << 20, QueueMaxSize: 8 << 20}
}

// TagOf is a test's name as a label value or a part of a container name.
func TagOf(t *testing.T) string {
	return strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
}

// AtLeast is a wait condition: n records or more.
func AtLeast(n int) func([]Received) bool {
	return func(r []Received) bool { return len(r) >= n }
}

// AllOf is a wait condition: every line of want arrived at least once.
func AllOf(want map[string][]string) func([]Received) bool {
	return func(recs []Received) bool {
		seen := map[string]bool{}
		for _, r := range recs {
			seen[r.Stream+"\x00"+r.Log] = true
		}
		for s, lines := range want {
			for _, l := range lines {
				if !seen[s+"\x00"+l] {
					return false
				}
			}
		}
		return true
	}
}

// ByStream splits records per stream, in the order collected.
func ByStream(recs []Received) map[string][]Received {
	out := map[string][]Received{}
	for _, r := range recs {
		out[r.Stream] = append(out[r.Stream], r)
	}
	return out
}

// CheckExactlyOnce fails t unless the records are exactly want: every line
// once, in order per stream, and nothing else.
func CheckExactlyOnce(t *testing.T, recs []Received, want map[string][]string) {
	t.Helper()
	got := map[string][]string{}
	for _, r := range recs {
		got[r.Stream] = append(got[r.Stream], r.Log)
	}
	linecheck.ExactlyOnce(t, got, want)
}

var seqLine = regexp.MustCompile(`^seq=(\d+) stream=(stdout|stderr)( x+)?$`)

// ParseSeq reads a loggen numbered line.
func ParseSeq(line string) (seq int, stream string, ok bool) {
	m := seqLine.FindStringSubmatch(line)
	if m == nil {
		return 0, "", false
	}
	seq, err := strconv.Atoi(m[1])
	return seq, m[2], err == nil
}

// Numbered is loggen's numbered line without its newline (see cmd/loggen).
func Numbered(seq int, stream string, size int) string {
	s := fmt.Sprintf("seq=%d stream=%s", seq, stream)
	if pad := size - len(s) - 2; pad > 0 {
		s += " " + strings.Repeat("x", pad)
	}
	return s
}

// LoggenLines is what `loggen -lines n -stream stream -size size -start
// start` writes, per stream, in order.
func LoggenLines(n int, stream string, size, start int) map[string][]string {
	want := map[string][]string{}
	for i := range n {
		name := "stdout"
		if stream == "stderr" || (stream == "both" && i%2 == 1) {
			name = "stderr"
		}
		want[name] = append(want[name], Numbered(start+i, name, size))
	}
	return want
}

// Stacks is every goroutine's stack.
func Stacks() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}
