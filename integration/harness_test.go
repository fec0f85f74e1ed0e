package integration

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dockerlogs/fluent-bit-docker-logs/capture"
	"github.com/dockerlogs/fluent-bit-docker-logs/docker"
	"github.com/dockerlogs/fluent-bit-docker-logs/internal/dockertest"
	"github.com/dockerlogs/fluent-bit-docker-logs/internal/linecheck"
	"github.com/dockerlogs/fluent-bit-docker-logs/internal/records"
)

// labelTest holds the name of the test that ran a container. Every capture
// takes only this process's containers (dockertest.LabelRun) of its own test,
// so parallel tests do not read each other's containers.
const labelTest = "org.dockerlogs.integration.test"

// collectTimeout bounds every wait for records. The 2-core machine runs the
// tests in parallel under the race detector, so it is generous; a passing
// test never comes near it.
const collectTimeout = 2 * time.Minute

// tagOf is a test's value of labelTest, also usable in container names.
func tagOf(t *testing.T) string {
	return strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
}

// run starts a loggen container labelled for t and named after it; it
// returns the container's 64-hex id and its name.
func run(t *testing.T, suffix string, o dockertest.RunOptions) (id, name string) {
	t.Helper()
	name = "dl-it-" + strings.ToLower(tagOf(t)) + "-" + suffix + "-" + dockertest.RunID()
	o.Name = name
	if o.Labels == nil {
		o.Labels = map[string]string{}
	}
	o.Labels[labelTest] = tagOf(t)
	return dockertest.Run(t, o), name
}

func defaultOptions() capture.Options {
	return capture.Options{Stdout: true, Stderr: true, ReadFromHead: true,
		StreamRefresh: time.Minute, MaxLineSize: 1 << 20, QueueMaxSize: 8 << 20}
}

// countingSource is the real client, recording the logs streams it opens
// per container and counting those still open. With tap set, it also
// records the entries each stream carried (multiplexed streams only).
type countingSource struct {
	*docker.Client
	tap bool

	mu     sync.Mutex
	opened map[string][]*openedStream
	// openNow and openMax count a container's streams open at once.
	openNow, openMax map[string]int
	open             atomic.Int64
}

// openedStream is one logs request and, when tapped, the entries it
// carried: "<stream byte> <docker stamp>", which names a line.
type openedStream struct {
	req     capture.LogsRequest
	mu      sync.Mutex
	entries []string
}

func (s *countingSource) Logs(ctx context.Context, id string, req capture.LogsRequest) (io.ReadCloser, error) {
	rc, err := s.Client.Logs(ctx, id, req)
	if err != nil {
		return nil, err
	}
	o := &openedStream{req: req}
	s.mu.Lock()
	s.opened[id] = append(s.opened[id], o)
	s.openNow[id]++
	s.openMax[id] = max(s.openMax[id], s.openNow[id])
	s.mu.Unlock()
	s.open.Add(1)
	return &countedStream{ReadCloser: rc, s: s, id: id, o: o, tap: s.tap}, nil
}

// maxOpen is the most streams of container id that were open at once.
func (s *countingSource) maxOpen(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.openMax[id]
}

// streams returns the logs streams opened for container id, in order.
func (s *countingSource) streams(id string) []*openedStream {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*openedStream(nil), s.opened[id]...)
}

func (o *openedStream) carried() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.entries...)
}

type countedStream struct {
	io.ReadCloser
	s    *countingSource
	id   string
	o    *openedStream
	once sync.Once
	tap  bool
	buf  []byte // bytes read and not yet parsed into whole frames
}

func (c *countedStream) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	if c.tap && n > 0 {
		c.buf = append(c.buf, p[:n]...)
		for len(c.buf) >= 8 {
			size := int(binary.BigEndian.Uint32(c.buf[4:8]))
			if len(c.buf) < 8+size {
				break
			}
			if payload := c.buf[8 : 8+size]; (c.buf[0] == 1 || c.buf[0] == 2) && size > 30 {
				c.o.mu.Lock()
				c.o.entries = append(c.o.entries, fmt.Sprintf("%d %s", c.buf[0], payload[:30]))
				c.o.mu.Unlock()
			}
			c.buf = c.buf[8+size:]
		}
	}
	return n, err
}

func (c *countedStream) Close() error {
	err := c.ReadCloser.Close()
	c.once.Do(func() {
		c.s.open.Add(-1)
		c.s.mu.Lock()
		c.s.openNow[c.id]--
		c.s.mu.Unlock()
	})
	return err
}

// received is one record with when and in which batch it was collected.
type received struct {
	records.Record
	batch int
	at    time.Time
}

// harness runs a Capture against the real daemon and collects what it hands
// over, as Fluent Bit's collect callback would: wait for something queued,
// drain, decode, commit.
type harness struct {
	t   *testing.T
	src *countingSource
	c   *capture.Capture
	log *logWriter

	mu      sync.Mutex
	got     []received
	batches int
	// maxGoroutines is runtime.NumGoroutine() at its highest when a batch
	// was collected.
	maxGoroutines int
	// collected is closed and replaced after every batch; waitFor selects
	// on it.
	collected chan struct{}

	// stopCollector ends the collector goroutine; collectorDone is closed
	// by it.
	stopCollector context.CancelFunc
	collectorDone chan struct{}
	stopOnce      sync.Once
}

// logWriter sends the capture's log to t.Log until the test ends.
type logWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

// startCapture starts a capture of t's own containers (see labelTest). Its
// Stop and the client's Close run at cleanup unless stop ran first.
func startCapture(t *testing.T, opts capture.Options) *harness {
	t.Helper()
	return startCaptureTapped(t, opts, false)
}

// startCaptureTapped is startCapture, recording with tap the entries every
// logs stream carried.
func startCaptureTapped(t *testing.T, opts capture.Options, tap bool) *harness {
	t.Helper()
	cli, err := docker.New("", nil)
	if err != nil {
		t.Fatalf("docker.New: %v", err)
	}
	tag := tagOf(t)
	opts.Include = func(c capture.Container) bool {
		return c.Labels[dockertest.LabelRun] == dockertest.RunID() && c.Labels[labelTest] == tag
	}
	l := logrus.New()
	w := &logWriter{t: t}
	l.SetOutput(w)
	l.SetLevel(logrus.DebugLevel)
	h := &harness{t: t, src: &countingSource{Client: cli, tap: tap,
		opened: map[string][]*openedStream{}, openNow: map[string]int{}, openMax: map[string]int{}},
		log: w, collected: make(chan struct{}), collectorDone: make(chan struct{})}
	h.c = capture.New(h.src, opts, logrus.NewEntry(l).WithField("test", tag))
	h.c.Start()
	ctx, cancel := context.WithCancel(context.Background())
	h.stopCollector = cancel
	go h.collect(ctx)
	t.Cleanup(func() {
		h.stop()
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return h
}

func (h *harness) collect(ctx context.Context) {
	defer close(h.collectorDone)
	for ctx.Err() == nil {
		if h.c.WaitQueued(ctx) != nil {
			return
		}
		h.drainOnce()
	}
}

// drainOnce takes one batch; it reports whether there was one.
func (h *harness) drainOnce() bool {
	b := h.c.Drain(64 << 20)
	if b.Len() == 0 {
		return false
	}
	recs, err := records.Decode(b.Bytes())
	h.c.Commit(b)
	g := runtime.NumGoroutine()
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		h.t.Errorf("decoding batch %d: %v", h.batches, err)
	}
	for _, r := range recs {
		h.got = append(h.got, received{Record: r, batch: h.batches, at: now})
	}
	h.batches++
	h.maxGoroutines = max(h.maxGoroutines, g)
	close(h.collected)
	h.collected = make(chan struct{})
	return true
}

// stop stops the capture, waits for its goroutines, takes what is still
// queued and closes the client. Everything the capture produced is then in
// h.got.
func (h *harness) stop() {
	h.stopOnce.Do(func() {
		if err := h.c.Stop(30 * time.Second); err != nil {
			h.t.Errorf("Stop: %v", err)
		}
		h.stopCollector()
		<-h.collectorDone
		for h.drainOnce() {
		}
		if n := h.src.open.Load(); n != 0 {
			h.t.Errorf("%d logs streams still open after Stop", n)
		}
		if err := h.src.Close(); err != nil {
			h.t.Errorf("Close: %v", err)
		}
	})
}

// of returns the records of container id, in the order collected.
func (h *harness) of(id string) []received {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []received
	for _, r := range h.got {
		if r.ContainerID == id {
			out = append(out, r)
		}
	}
	return out
}

// waitFor waits until cond holds for the records collected of container
// id, failing the test after collectTimeout.
func (h *harness) waitFor(what, id string, cond func([]received) bool) {
	h.t.Helper()
	deadline := time.NewTimer(collectTimeout)
	defer deadline.Stop()
	for {
		h.mu.Lock()
		collected := h.collected
		h.mu.Unlock()
		recs := h.of(id)
		if cond(recs) {
			return
		}
		select {
		case <-collected:
		case <-deadline.C:
			h.t.Fatalf("timed out after %s waiting for %s of %s; %d records of it collected", collectTimeout, what, id[:12], len(recs))
		}
	}
}

// atLeast is a waitFor condition: n records or more.
func atLeast(n int) func([]received) bool {
	return func(r []received) bool { return len(r) >= n }
}

// seqAtLeast is a waitFor condition: a line of stream with seq >= n.
func seqAtLeast(stream string, n int) func([]received) bool {
	return func(recs []received) bool {
		for _, r := range recs {
			if s, st, ok := parseSeq(r.Log); ok && st == stream && s >= n {
				return true
			}
		}
		return false
	}
}

var seqLine = regexp.MustCompile(`^seq=(\d+) stream=(stdout|stderr)( x+)?$`)

// parseSeq reads a loggen numbered line.
func parseSeq(line string) (seq int, stream string, ok bool) {
	m := seqLine.FindStringSubmatch(line)
	if m == nil {
		return 0, "", false
	}
	_, err := fmt.Sscan(m[1], &seq)
	return seq, m[2], err == nil
}

// numbered is loggen's numbered line without its newline (see cmd/loggen).
func numbered(seq int, stream string, size int) string {
	s := fmt.Sprintf("seq=%d stream=%s", seq, stream)
	if pad := size - len(s) - 2; pad > 0 {
		s += " " + strings.Repeat("x", pad)
	}
	return s
}

// loggenLines is what `loggen -lines n -stream stream -size size -start
// start` writes, per stream, in order.
func loggenLines(n int, stream string, size, start int) map[string][]string {
	want := map[string][]string{}
	for i := 0; i < n; i++ {
		name := "stdout"
		if stream == "stderr" || (stream == "both" && i%2 == 1) {
			name = "stderr"
		}
		want[name] = append(want[name], numbered(start+i, name, size))
	}
	return want
}

// appendRuns is want repeated: the lines of a container that ran runs times.
func appendRuns(want map[string][]string, runs int) map[string][]string {
	out := map[string][]string{}
	for s, lines := range want {
		for range runs {
			out[s] = append(out[s], lines...)
		}
	}
	return out
}

// byStream splits records per stream, in the order collected.
func byStream(recs []received) map[string][]received {
	out := map[string][]received{}
	for _, r := range recs {
		out[r.Stream] = append(out[r.Stream], r)
	}
	return out
}

// checkExactlyOnce fails t unless the records are exactly want: every line
// once, in order per stream, and nothing else.
func checkExactlyOnce(t *testing.T, recs []received, want map[string][]string) {
	t.Helper()
	got := map[string][]string{}
	for _, r := range recs {
		got[r.Stream] = append(got[r.Stream], r.Log)
	}
	linecheck.ExactlyOnce(t, got, want)
}

// checkFields fails t unless every record carries the container's fields as
// Docker knows them and none is marked truncated.
func checkFields(t *testing.T, recs []received, id, name string) {
	t.Helper()
	image := dockertest.LoggenImage(t)
	bad := 0
	for i, r := range recs {
		if r.ContainerID != id || r.ContainerName != name || r.ContainerImage != image || r.Truncated {
			if bad++; bad <= 3 {
				t.Errorf("record %d: id=%q name=%q image=%q truncated=%v, want id=%q name=%q image=%q not truncated",
					i, r.ContainerID, r.ContainerName, r.ContainerImage, r.Truncated, id, name, image)
			}
		}
	}
	if bad > 3 {
		t.Errorf("... %d records with wrong fields in all", bad)
	}
}

// stamped is one line of `docker logs -t`.
type stamped struct {
	ts   time.Time
	text string
}

// dockerLogs returns `docker logs -t` of the container, per stream, in file
// order: Docker's own stamp of every line.
func dockerLogs(t *testing.T, id string) map[string][]stamped {
	t.Helper()
	cmd := exec.Command("docker", "logs", "-t", id)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		t.Fatalf("docker logs -t %s: %v: %s", id, err, bytes.TrimSpace(e.Bytes()))
	}
	out := map[string][]stamped{}
	for s, b := range map[string]*bytes.Buffer{"stdout": &o, "stderr": &e} {
		text := b.String()
		if text == "" {
			continue
		}
		for _, l := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
			stamp, rest, ok := strings.Cut(l, " ")
			ts, err := time.Parse(time.RFC3339Nano, stamp)
			if !ok || err != nil {
				t.Fatalf("docker logs -t %s: line %q has no timestamp (%v)", id, linecheck.Short(l), err)
			}
			out[s] = append(out[s], stamped{ts, strings.TrimSuffix(rest, "\r")})
		}
	}
	return out
}

// checkAgainstDockerLogs fails t unless the records are, per stream, exactly
// the lines of `docker logs -t`, each with Docker's stamp to the nanosecond.
func checkAgainstDockerLogs(t *testing.T, recs []received, logs map[string][]stamped) {
	t.Helper()
	got := byStream(recs)
	for _, s := range []string{"stdout", "stderr"} {
		g, w := got[s], logs[s]
		if len(g) != len(w) {
			t.Errorf("%s: %d records, docker logs has %d lines", s, len(g), len(w))
		}
		for i := 0; i < min(len(g), len(w)); i++ {
			if g[i].Log != w[i].text || g[i].Time.UnixNano() != w[i].ts.UnixNano() {
				t.Errorf("%s record %d: %q at %s, docker logs -t has %q at %s",
					s, i, linecheck.Short(g[i].Log), g[i].Time.Format(time.RFC3339Nano), linecheck.Short(w[i].text), w[i].ts.Format(time.RFC3339Nano))
				break
			}
		}
	}
}

// goroutineBaseline builds the loggen image (a test's first docker use
// starts nothing of ours that outlives it) and returns the goroutine count
// the test must come back to.
func goroutineBaseline(t *testing.T) int {
	t.Helper()
	dockertest.LoggenImage(t)
	return runtime.NumGoroutine()
}

// checkGoroutinesBack fails t unless the goroutine count comes back to
// baseline. Goroutines end asynchronously after the stream's connections
// close (net/http's persistConn loops, the SDK's events goroutine), and no
// event tells when, so this polls the count until a deadline; it reports
// what remained right after Stop when that differed.
func checkGoroutinesBack(t *testing.T, baseline int) {
	t.Helper()
	first := runtime.NumGoroutine()
	firstStacks := ""
	if first > baseline {
		firstStacks = stacks()
	}
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for runtime.NumGoroutine() > baseline {
		if time.Now().After(deadline) {
			t.Errorf("%d goroutines 10s after Stop and Close, baseline %d:\n%s", runtime.NumGoroutine(), baseline, stacks())
			return
		}
		<-tick.C
	}
	if first > baseline && testing.Verbose() {
		t.Logf("right after Stop and Close: %d goroutines, baseline %d; they ended by themselves:\n%s", first, baseline, firstStacks)
	}
}

func stacks() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

// TestMain removes this process's containers and image at the end.
func TestMain(m *testing.M) { os.Exit(dockertest.Main(m)) }
