// Package faults runs the capture against a real Docker daemon while things
// go wrong between them: stalled, cut and slowed logs streams (through
// internal/faultproxy), a daemon restart, a crash of the capture's process,
// and a long pause of the consumer. Every test checks every line.
package faults

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dockerlogs/fluent-bit-docker-logs/capture"
	"github.com/dockerlogs/fluent-bit-docker-logs/docker"
	"github.com/dockerlogs/fluent-bit-docker-logs/internal/dockertest"
	"github.com/dockerlogs/fluent-bit-docker-logs/internal/linecheck"
	"github.com/dockerlogs/fluent-bit-docker-logs/internal/records"
)

// TestMain removes this process's containers and image at the end.
func TestMain(m *testing.M) { os.Exit(dockertest.Main(m)) }

// mainDaemon is the local daemon's socket.
const mainDaemon = "unix:///var/run/docker.sock"

// labelTest holds the name of the test that ran a container; a test's
// capture takes only this process's containers of that test.
const labelTest = "org.dockerlogs.faults.test"

// collectTimeout bounds every wait for records. The tests run in parallel
// on two cores under the race detector; a passing test never comes near it.
const collectTimeout = 3 * time.Minute

func tagOf(t *testing.T) string {
	return strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
}

// labels returns the labels that put a container in t's capture.
func labels(t *testing.T) map[string]string {
	return map[string]string{labelTest: tagOf(t)}
}

// runLoggen starts a loggen container on the main daemon for t.
func runLoggen(t *testing.T, args ...string) string {
	t.Helper()
	return dockertest.Run(t, dockertest.RunOptions{Args: args, Labels: labels(t)})
}

// include selects this process's containers of test t.
func include(t *testing.T) func(capture.Container) bool {
	tag := tagOf(t)
	return func(c capture.Container) bool {
		return c.Labels[dockertest.LabelRun] == dockertest.RunID() && c.Labels[labelTest] == tag
	}
}

func defaultOptions() capture.Options {
	return capture.Options{Stdout: true, Stderr: true, ReadFromHead: true,
		StreamRefresh: time.Minute, MaxLineSize: 1 << 20, QueueMaxSize: 8 << 20}
}

// countingSource is the real client, counting the logs streams it opens
// per container and how many of them are open.
type countingSource struct {
	*docker.Client
	mu     sync.Mutex
	opened map[string][]capture.LogsRequest
	open   map[string]int
}

func (s *countingSource) Logs(ctx context.Context, id string, req capture.LogsRequest) (io.ReadCloser, error) {
	rc, err := s.Client.Logs(ctx, id, req)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.opened[id] = append(s.opened[id], req)
	s.open[id]++
	s.mu.Unlock()
	return &countedStream{ReadCloser: rc, s: s, id: id}, nil
}

func (s *countingSource) requests(id string) []capture.LogsRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]capture.LogsRequest(nil), s.opened[id]...)
}

func (s *countingSource) openStreams(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open[id]
}

type countedStream struct {
	io.ReadCloser
	s    *countingSource
	id   string
	once sync.Once
}

func (c *countedStream) Close() error {
	err := c.ReadCloser.Close()
	c.once.Do(func() {
		c.s.mu.Lock()
		c.s.open[c.id]--
		c.s.mu.Unlock()
	})
	return err
}

// logEntries keeps the capture's log entries so a test can await one, and
// shows them with t.Log until the test ends.
type logEntries struct {
	mu      sync.Mutex
	t       *testing.T
	done    bool
	entries []*logrus.Entry
	// added is closed and replaced after every entry.
	added chan struct{}
}

func (l *logEntries) Levels() []logrus.Level { return logrus.AllLevels }

func (l *logEntries) Fire(e *logrus.Entry) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = append(l.entries, e)
	close(l.added)
	l.added = make(chan struct{})
	return nil
}

func (l *logEntries) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

// harness runs a Capture and collects what it hands over as Fluent Bit
// would: wait until something is queued (or, while paused, for the next
// tick of a timer), drain, decode, commit.
type harness struct {
	t   *testing.T
	src *countingSource
	c   *capture.Capture
	log *logEntries

	mu      sync.Mutex
	got     []records.Record
	batches int
	// collected is closed and replaced after every batch.
	collected chan struct{}

	// stopCollector ends the collector goroutine; collectorDone is closed
	// by it.
	stopCollector context.CancelFunc
	collectorDone chan struct{}
	stopOnce      sync.Once
}

// startCapture captures t's containers on host. Stop runs at cleanup
// unless the test called stop first.
func startCapture(t *testing.T, host string, opts capture.Options) *harness {
	t.Helper()
	cli, err := docker.New(host, nil)
	if err != nil {
		t.Fatalf("docker.New(%q): %v", host, err)
	}
	opts.Include = include(t)
	le := &logEntries{t: t, added: make(chan struct{})}
	l := logrus.New()
	l.SetOutput(le)
	l.AddHook(le)
	l.SetLevel(logrus.DebugLevel)
	h := &harness{t: t, src: &countingSource{Client: cli, opened: map[string][]capture.LogsRequest{}, open: map[string]int{}},
		log: le, collected: make(chan struct{}), collectorDone: make(chan struct{})}
	h.c = capture.New(h.src, opts, logrus.NewEntry(l).WithField("test", tagOf(t)))
	h.c.Start()
	ctx, cancel := context.WithCancel(context.Background())
	h.stopCollector = cancel
	go h.collect(ctx)
	t.Cleanup(func() {
		h.stop()
		le.mu.Lock()
		le.done = true
		le.mu.Unlock()
	})
	return h
}

// pausedTick is how often the collector retries while Drain hands nothing
// (the capture is paused), like Fluent Bit's collect timer.
const pausedTick = 20 * time.Millisecond

func (h *harness) collect(ctx context.Context) {
	defer close(h.collectorDone)
	tick := time.NewTicker(pausedTick)
	defer tick.Stop()
	for ctx.Err() == nil {
		if h.c.WaitQueued(ctx) != nil {
			return
		}
		if !h.drainOnce() {
			select {
			case <-tick.C:
			case <-ctx.Done():
				return
			}
		}
	}
}

func (h *harness) drainOnce() bool {
	b := h.c.Drain(64 << 20)
	if b.Len() == 0 {
		return false
	}
	recs, err := records.Decode(b.Bytes())
	h.c.Commit(b)
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		h.t.Errorf("decoding batch %d: %v", h.batches, err)
	}
	h.got = append(h.got, recs...)
	h.batches++
	close(h.collected)
	h.collected = make(chan struct{})
	return true
}

// stop stops the capture and takes what is still queued: everything the
// capture produced is then in h.got.
func (h *harness) stop() {
	h.stopOnce.Do(func() {
		if err := h.c.Stop(30 * time.Second); err != nil {
			h.t.Errorf("Stop: %v", err)
		}
		h.stopCollector()
		<-h.collectorDone
		for h.drainOnce() {
		}
		if err := h.src.Close(); err != nil {
			h.t.Errorf("Close: %v", err)
		}
	})
}

// of returns the records of container id, in the order collected.
func (h *harness) of(id string) []records.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []records.Record
	for _, r := range h.got {
		if r.ContainerID == id {
			out = append(out, r)
		}
	}
	return out
}

// waitFor waits until cond holds for the records of container id.
func (h *harness) waitFor(what, id string, cond func([]records.Record) bool) {
	h.t.Helper()
	h.waitProgressing(what, id, cond, collectTimeout, collectTimeout)
}

// waitProgressing is waitFor with its own timeout that also fails as soon
// as no record of id has arrived for idle: a reader that stopped making
// progress.
func (h *harness) waitProgressing(what, id string, cond func([]records.Record) bool, idle, timeout time.Duration) {
	h.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	stuck := time.NewTimer(idle)
	defer stuck.Stop()
	last := -1
	for {
		h.mu.Lock()
		collected := h.collected
		h.mu.Unlock()
		recs := h.of(id)
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
			h.t.Fatalf("timed out after %s waiting for %s of %s; %d records of it collected", timeout, what, id[:12], len(recs))
		case <-stuck.C:
			reqs := h.src.requests(id)
			h.t.Fatalf("no record of %s for %s while waiting for %s (%d collected); its last logs requests: %+v",
				id[:12], idle, what, len(recs), reqs[max(0, len(reqs)-6):])
		}
	}
}

// waitLog waits for a log entry of the capture with message msg and
// container_id short.
func (h *harness) waitLog(msg, short string, timeout time.Duration) {
	h.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for seen := 0; ; {
		h.log.mu.Lock()
		entries, added := h.log.entries[seen:], h.log.added
		seen = len(h.log.entries)
		h.log.mu.Unlock()
		for _, e := range entries {
			if e.Message == msg && e.Data["container_id"] == short {
				return
			}
		}
		select {
		case <-added:
		case <-deadline.C:
			h.t.Fatalf("no log %q of container %s within %s", msg, short, timeout)
		}
	}
}

// atLeast is a waitFor condition: n records or more.
func atLeast(n int) func([]records.Record) bool {
	return func(r []records.Record) bool { return len(r) >= n }
}

// allOf is a waitFor condition: every line of want arrived at least once.
func allOf(want map[string][]string) func([]records.Record) bool {
	return func(recs []records.Record) bool {
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

var seqLine = regexp.MustCompile(`^seq=(\d+) stream=(stdout|stderr)( x+)?$`)

// parseSeq reads a loggen numbered line.
func parseSeq(line string) (seq int, stream string, ok bool) {
	m := seqLine.FindStringSubmatch(line)
	if m == nil {
		return 0, "", false
	}
	seq, err := strconv.Atoi(m[1])
	return seq, m[2], err == nil
}

// numbered is loggen's numbered line without its newline.
func numbered(seq int, stream string, size int) string {
	s := fmt.Sprintf("seq=%d stream=%s", seq, stream)
	if pad := size - len(s) - 2; pad > 0 {
		s += " " + strings.Repeat("x", pad)
	}
	return s
}

// loggenLines is what `loggen -lines n -stream stream -size size` writes,
// per stream, in order.
func loggenLines(n int, stream string, size int) map[string][]string {
	want := map[string][]string{}
	for i := range n {
		name := "stdout"
		if stream == "stderr" || (stream == "both" && i%2 == 1) {
			name = "stderr"
		}
		want[name] = append(want[name], numbered(1+i, name, size))
	}
	return want
}

// checkExactlyOnce fails t unless the records are exactly want: every line
// once, in order per stream, and nothing else.
func checkExactlyOnce(t *testing.T, recs []records.Record, want map[string][]string) {
	t.Helper()
	got := map[string][]string{}
	for _, r := range recs {
		got[r.Stream] = append(got[r.Stream], r.Log)
	}
	linecheck.ExactlyOnce(t, got, want)
}

// splitLines splits text into lines without their newlines.
func splitLines(text string) []string {
	if text == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(text, "\n"), "\n")
}

// dockerCLI runs the docker CLI against host and returns its standard
// output; it fails the test on error.
func dockerCLI(t testing.TB, host string, args ...string) string {
	t.Helper()
	out, err := dockerCmd(host, nil, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func dockerCmd(host string, stdin io.Reader, args ...string) (string, error) {
	cmd := exec.Command("docker", append([]string{"-H", host}, args...)...)
	var o, e bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &o, &e
	if err := cmd.Run(); err != nil {
		return o.String(), fmt.Errorf("docker -H %s %s: %w: %s", host, strings.Join(args, " "), err, bytes.TrimSpace(e.Bytes()))
	}
	return o.String(), nil
}

// logsOf returns `docker logs` of a container, per stream.
func logsOf(t testing.TB, host, id string) map[string][]string {
	t.Helper()
	cmd := exec.Command("docker", "-H", host, "logs", id)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		t.Fatalf("docker -H %s logs %s: %v: %s", host, id, err, bytes.TrimSpace(e.Bytes()))
	}
	return map[string][]string{"stdout": splitLines(o.String()), "stderr": splitLines(e.String())}
}

// settledGoroutines returns the goroutine count once it has stopped
// falling: connections end asynchronously and no event says when. It
// samples every 100 ms and returns the lowest of the last 2 s (at most
// 10 s in all).
func settledGoroutines() int {
	low, since := runtime.NumGoroutine(), time.Now()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for time.Since(since) < 2*time.Second && time.Now().Before(deadline) {
		<-tick.C
		if n := runtime.NumGoroutine(); n < low {
			low, since = n, time.Now()
		}
	}
	return low
}

func stacks() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

// memory reports the process's resident set size (VmRSS of
// /proc/self/status) and the Go heap in use after a collection.
func memory(t *testing.T) string {
	t.Helper()
	return fmt.Sprintf("VmRSS %s, heap %d MiB", vmRSS(t), heapAlloc()>>20)
}

// heapAlloc is the Go heap in use after a collection.
func heapAlloc() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// vmRSS reads the process's resident set size from /proc/self/status.
func vmRSS(t *testing.T) string {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return ""
}
