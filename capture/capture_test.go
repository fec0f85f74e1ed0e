package capture

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dockerlogs/fluent-bit-docker-logs/internal/linecheck"
	"github.com/dockerlogs/fluent-bit-docker-logs/internal/records"
)

// recordsT is short for the decoded record in helpers' signatures.
type recordsT = records.Record

// harness runs a Capture against a fakeDaemon and collects what it hands
// over, as Fluent Bit's collect timer would.
type harness struct {
	t *testing.T
	d *fakeDaemon
	c *Capture

	mu  sync.Mutex
	got []records.Record
	// collected is closed and replaced after every batch; waitFor selects
	// on it.
	collected chan struct{}
	// stopCollector ends the collector goroutine; collectorDone is closed
	// by it.
	stopCollector context.CancelFunc
	collectorDone chan struct{}
}

type testLogWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

// testOptions are capturetest.Options, which tests inside capture cannot
// import (it imports capture).
func testOptions() Options {
	return Options{Stdout: true, Stderr: true, ReadFromHead: true, StreamRefresh: time.Minute,
		MaxLineSize: 1 << 20, QueueMaxSize: 8 << 20}
}

func newHarness(t *testing.T, d *fakeDaemon, opts Options) *harness {
	t.Helper()
	return newHarnessOf(t, d, d, opts)
}

// newHarnessOf runs the capture against src, a fakeDaemon d or a wrapper of
// it.
func newHarnessOf(t *testing.T, src Source, d *fakeDaemon, opts Options) *harness {
	t.Helper()
	l := logrus.New()
	w := &testLogWriter{t: t}
	l.SetOutput(w)
	l.SetLevel(logrus.DebugLevel)
	h := &harness{t: t, d: d, collected: make(chan struct{}), collectorDone: make(chan struct{})}
	h.c = New(src, opts, logrus.NewEntry(l))
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
		b := h.c.Drain(64 << 20)
		if b.Len() == 0 {
			continue // paused
		}
		recs, err := records.Decode(b.Bytes())
		h.c.Commit(b)
		h.mu.Lock()
		if err != nil {
			h.t.Errorf("decoding a batch: %v", err)
		}
		h.got = append(h.got, recs...)
		close(h.collected)
		h.collected = make(chan struct{})
		h.mu.Unlock()
	}
}

func (h *harness) stop() {
	if err := h.c.Stop(5 * time.Second); err != nil {
		h.t.Errorf("stop: %v", err)
	}
	h.stopCollector()
	<-h.collectorDone
}

func (h *harness) records() []records.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]records.Record(nil), h.got...)
}

// waitFor waits until cond holds for what was collected, failing the test
// after timeout.
func (h *harness) waitFor(what string, timeout time.Duration, cond func([]records.Record) bool) {
	h.t.Helper()
	h.wait(what, timeout, false, cond)
}

// waitWhileDelivering waits until cond holds for what was collected,
// failing the test when no record came for stall: a large read is bounded
// by the capture stalling, not by the CPU a loaded machine happens to give
// it.
func (h *harness) waitWhileDelivering(what string, stall time.Duration, cond func([]records.Record) bool) {
	h.t.Helper()
	h.wait(what, stall, true, cond)
}

// wait waits until cond holds, for at most limit from the start or, when
// each record counts as progress, from the last record that came.
func (h *harness) wait(what string, limit time.Duration, progressResets bool, cond func([]records.Record) bool) {
	h.t.Helper()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	last := -1
	for {
		h.mu.Lock()
		ok := cond(h.got)
		collected := h.collected
		n := len(h.got)
		h.mu.Unlock()
		if ok {
			return
		}
		if progressResets && n != last {
			last = n
			deadline.Reset(limit)
		}
		select {
		case <-collected:
		case <-deadline.C:
			if progressResets {
				h.t.Fatalf("no record came for %s while waiting for %s; %d records collected", limit, what, n)
			}
			h.t.Fatalf("timed out after %s waiting for %s; %d records collected", limit, what, n)
		}
	}
}

// lineWriter appends numbered lines to a fake container, stamping them like
// the daemon: increasing within a stream, with stderr sometimes stamped
// before the stdout line the file holds ahead of it.
type lineWriter struct {
	d    *fakeDaemon
	id   string
	ts   Timestamp
	seq  map[StreamKind]int
	want map[StreamKind][]string
	rnd  *rand.Rand
	// step, when set, is the mean time between lines (else 1.5 us).
	step Timestamp
}

func newLineWriter(d *fakeDaemon, id string, seed uint64) *lineWriter {
	return &lineWriter{d: d, id: id, ts: Timestamp(time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC).UnixNano()),
		seq: map[StreamKind]int{}, want: map[StreamKind][]string{}, rnd: rand.New(rand.NewPCG(seed, 7))}
}

// newRunningWriter adds a running container id to d and writes its lines.
func newRunningWriter(d *fakeDaemon, id string, seed uint64) *lineWriter {
	d.add(runningContainer(id))
	return newLineWriter(d, id, seed)
}

func (w *lineWriter) line(s StreamKind) {
	w.seq[s]++
	text := fmt.Sprintf("seq=%d stream=%s", w.seq[s], s)
	if w.step != 0 {
		w.ts += w.step/2 + Timestamp(w.rnd.Int64N(int64(w.step)))
	} else {
		w.ts += Timestamp(1000 + w.rnd.IntN(1000))
	}
	ts := w.ts
	if s == Stderr && w.rnd.IntN(4) == 0 {
		ts -= 700 // out of order across streams, in order within one
	}
	w.d.write(w.id, s, ts, text+"\n")
	w.want[s] = append(w.want[s], text)
}

func (w *lineWriter) lines(n int) {
	for i := 0; i < n; i++ {
		if w.rnd.IntN(2) == 0 {
			w.line(Stdout)
		} else {
			w.line(Stderr)
		}
	}
}

func (w *lineWriter) total() int { return len(w.want[Stdout]) + len(w.want[Stderr]) }

// checkExactlyOnce compares what arrived for container id with what was
// written: every line once, in order per stream.
func checkExactlyOnce(t *testing.T, recs []records.Record, id string, want map[StreamKind][]string) {
	t.Helper()
	got := map[string][]string{}
	for _, r := range recs {
		if r.ContainerID == id {
			got[r.Stream] = append(got[r.Stream], r.Log)
		}
	}
	linecheck.ExactlyOnce(t, got, map[string][]string{"stdout": want[Stdout], "stderr": want[Stderr]})
}

func countFor(id string, n int) func([]records.Record) bool {
	return func(recs []records.Record) bool {
		c := 0
		for _, r := range recs {
			if r.ContainerID == id {
				c++
			}
		}
		return c >= n
	}
}

// deliveredOnce waits until every line w wrote has arrived, then checks
// that each arrived once, in order per stream.
func (h *harness) deliveredOnce(what string, timeout time.Duration, w *lineWriter) {
	h.t.Helper()
	h.waitFor(what, timeout, countFor(w.id, w.total()))
	checkExactlyOnce(h.t, h.records(), w.id, w.want)
}

// batchesDeliveredOnce writes n batches of size lines, waiting for each
// batch to arrive, then checks that every line arrived once.
func (h *harness) batchesDeliveredOnce(w *lineWriter, n, size int, timeout time.Duration) {
	h.t.Helper()
	for range n {
		w.lines(size)
		h.waitFor("the lines so far", timeout, countFor(w.id, w.total()))
	}
	checkExactlyOnce(h.t, h.records(), w.id, w.want)
}

// cutAtRandom makes d end each stream after least to least+span-1
// entries, chosen at random from seed.
func cutAtRandom(d *fakeDaemon, seed uint64, least, span int) {
	rnd := rand.New(rand.NewPCG(seed, seed+1))
	var mu sync.Mutex
	d.cutAfter = func() int { mu.Lock(); defer mu.Unlock(); return least + rnd.IntN(span) }
}

// refreshEvery are the test options with each stream refreshed at age.
func refreshEvery(age time.Duration) Options {
	opts := testOptions()
	opts.StreamRefresh = age
	return opts
}

const testID = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func runningContainer(id string) Container {
	return Container{ID: id, Name: "app", Image: "loggen:1", Running: true}
}

func TestEveryLineOnceAcrossStreamsCutAtRandom(t *testing.T) {
	d := newFakeDaemon()
	cutAtRandom(d, 1, 1, 40)
	w := newRunningWriter(d, testID, 3)
	h := newHarness(t, d, testOptions())
	h.batchesDeliveredOnce(w, 40, 50, 10*time.Second)
}

func TestResumeWidensTailWhenManyLinesCameBetweenStreams(t *testing.T) {
	d := newFakeDaemon()
	w := newRunningWriter(d, testID, 4)
	w.lines(10)
	// The first stream is cut after its 10 lines; meanwhile 5,000 lines
	// arrive, more than the first tail window holds.
	d.cutFirstStreamAfter(10)
	cuts := 0
	d.onCut = func() {
		if cuts++; cuts == 1 {
			w.lines(5000)
		}
	}
	h := newHarness(t, d, testOptions())
	h.waitFor("every line", 10*time.Second, countFor(testID, 5010))
	checkExactlyOnce(t, h.records(), testID, w.want)
	widened := false
	for _, r := range d.logRequests() {
		if r.Tail > firstTail {
			widened = true
		}
	}
	if !widened {
		t.Errorf("no request widened the tail window beyond %d: %+v", firstTail, d.logRequests())
	}
}

func TestResumeNeverRereadsTheWholeLog(t *testing.T) {
	d := newFakeDaemon()
	w := newRunningWriter(d, testID, 5)
	const history = 20000
	w.lines(history)
	var mu sync.Mutex
	n := 0
	d.cutAfter = func() int {
		mu.Lock()
		defer mu.Unlock()
		n++
		if n == 1 {
			return history // the first read, from the head, is whole
		}
		// Later streams end within each batch of new lines: a resume's
		// window holds the batch's lines read already, then new ones.
		return 30
	}
	h := newHarness(t, d, testOptions())
	h.waitWhileDelivering("the history", 10*time.Second, countFor(testID, w.total()))
	for i := 0; i < 10; i++ {
		// Seconds apart, as a container writes: beyond the margin a resume
		// gives stamps of the other stream, so its window starts in the
		// last batch.
		w.ts += Timestamp(2 * inversionMargin)
		w.lines(20)
		h.waitFor("new lines", 10*time.Second, countFor(testID, w.total()))
	}
	checkExactlyOnce(t, h.records(), testID, w.want)
	reqs := d.logRequests()
	// A stream is cut at its 30th entry, so within two batches of 20.
	if len(reqs) < 1+10/2 {
		t.Fatalf("%d logs requests, want a resume for every two batches of new lines at least: the test proves nothing", len(reqs))
	}
	for i, r := range reqs[1:] {
		if r.Tail < 0 || r.Since == 0 {
			t.Fatalf("resume %d read the log without a tail window: %+v", i+1, r)
		}
	}
}

func TestMalformedFrameResumesAfterLastGoodLine(t *testing.T) {
	d := newFakeDaemon()
	var mu sync.Mutex
	sent := 0
	d.corrupt = func() bool { mu.Lock(); defer mu.Unlock(); sent++; return sent%97 == 0 }
	w := newRunningWriter(d, testID, 6)
	h := newHarness(t, d, testOptions())
	h.batchesDeliveredOnce(w, 10, 100, 20*time.Second)
}

func TestRepeatedEntriesFromTheDaemonAreDropped(t *testing.T) {
	d := newFakeDaemon()
	rnd := rand.New(rand.NewPCG(8, 9))
	var mu sync.Mutex
	d.repeat = func() int {
		mu.Lock()
		defer mu.Unlock()
		if rnd.IntN(10) == 0 {
			return 1 + rnd.IntN(5)
		}
		return 0
	}
	w := newRunningWriter(d, testID, 10)
	h := newHarness(t, d, testOptions())
	h.batchesDeliveredOnce(w, 10, 100, 10*time.Second)
}

// A container restarted with the same id is read on from its last line
// delivered, including the lines it wrote while it was stopping.
func TestRestartContinuesAfterTheLastLineRead(t *testing.T) {
	for _, tc := range []struct {
		name                                  string
		seed                                  uint64
		restarts, before, whileStopped, after int
	}{
		{"restarts", 11, 4, 100, 0, 100},
		{"lines written while stopped are read at start", 12, 1, 50, 30, 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newFakeDaemon()
			w := newRunningWriter(d, testID, tc.seed)
			h := newHarness(t, d, testOptions())
			for range tc.restarts {
				w.lines(tc.before)
				h.waitFor("this run's lines", 10*time.Second, countFor(testID, w.total()))
				d.setRunning(testID, false)
				// The last lines of the run, written as it stopped.
				w.lines(tc.whileStopped)
				d.setRunning(testID, true)
			}
			w.lines(tc.after)
			h.deliveredOnce("every line", 10*time.Second, w)
		})
	}
}

func TestReadFromHeadOffStartsAfterTheLastLine(t *testing.T) {
	d := newFakeDaemon()
	w := newRunningWriter(d, testID, 13)
	w.lines(100)
	old := w.want
	w.want = map[StreamKind][]string{}
	opts := testOptions()
	opts.ReadFromHead = false
	h := newHarness(t, d, opts)
	// Wait until the reader follows: its seed read and its follow request.
	deadline := time.Now().Add(10 * time.Second)
	for len(d.logRequests()) < 2 || d.openStreams() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the reader never opened its follow stream")
		}
		runtime.Gosched()
	}
	w.lines(100)
	h.deliveredOnce("new lines", 10*time.Second, w)
	if len(old[Stdout])+len(old[Stderr]) != 100 {
		t.Fatal("setup wrote no old lines")
	}
}

func TestLongLinePiecesAreRejoinedAndBounded(t *testing.T) {
	d := newFakeDaemon()
	d.add(runningContainer(testID))
	ts := Timestamp(time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC).UnixNano())
	long := strings.Repeat("abcdefghij", 4000) // 40,000 bytes: three pieces
	for off := 0; off < len(long); off += pieceLen {
		piece := long[off:min(off+pieceLen, len(long))]
		if off+pieceLen >= len(long) {
			piece += "\n"
		}
		d.write(testID, Stdout, ts, piece)
	}
	// A stderr line between them must not be glued to the stdout line.
	d.write(testID, Stderr, ts+1, "between\n")
	d.write(testID, Stdout, ts+2, "after\n")
	opts := testOptions()
	opts.MaxLineSize = 30000
	h := newHarness(t, d, opts)
	h.waitFor("three records", 10*time.Second, countFor(testID, 3))
	recs := h.records()
	if recs[0].Log != long[:30000] || !recs[0].Truncated {
		t.Errorf("long line: got %d bytes truncated=%v, want the first 30000 bytes marked truncated", len(recs[0].Log), recs[0].Truncated)
	}
	if !recs[0].Time.Equal(ts.Time()) {
		t.Errorf("long line time %v, want the first piece's %v", recs[0].Time, ts.Time())
	}
	if recs[1].Log != "between" || recs[2].Log != "after" || recs[2].Truncated {
		t.Errorf("lines after the long one: %q, %q", recs[1].Log, recs[2].Log)
	}
}

func TestRecordsCarryDockerTimeAndContainerFields(t *testing.T) {
	d := newFakeDaemon()
	d.add(Container{ID: testID, Name: "web", Image: "nginx:1.27", Running: true})
	ts := Timestamp(time.Date(2026, 5, 6, 7, 8, 9, 123456789, time.UTC).UnixNano())
	d.write(testID, Stderr, ts, "oops\n")
	h := newHarness(t, d, testOptions())
	h.waitFor("one record", 10*time.Second, countFor(testID, 1))
	r := h.records()[0]
	if !r.Time.Equal(ts.Time()) || r.Log != "oops" || r.Stream != "stderr" ||
		r.ContainerID != testID || r.ContainerName != "web" || r.ContainerImage != "nginx:1.27" {
		t.Errorf("record = %+v", r)
	}
}

func TestTTYLinesLoseTheirCarriageReturn(t *testing.T) {
	d := newFakeDaemon()
	c := runningContainer(testID)
	c.TTY = true
	d.add(c)
	ts := Timestamp(time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC).UnixNano())
	d.write(testID, Stdout, ts, "hello\r\n")
	d.write(testID, Stdout, ts+1, "world\r\n")
	h := newHarness(t, d, testOptions())
	h.waitFor("two records", 10*time.Second, countFor(testID, 2))
	recs := h.records()
	if recs[0].Log != "hello" || recs[1].Log != "world" || recs[0].Stream != "stdout" {
		t.Errorf("tty records: %+v", recs)
	}
}

func TestPausedQueueStaysBoundedAndDeliversAfterResume(t *testing.T) {
	d := newFakeDaemon()
	w := newRunningWriter(d, testID, 14)
	opts := testOptions()
	opts.QueueMaxSize = 64 << 10
	h := newHarness(t, d, opts)
	h.c.Pause()
	w.lines(20000)
	// Readers stop at the bound: wait until the queue is full and stays.
	deadline := time.Now().Add(10 * time.Second)
	for h.c.Queued() < opts.QueueMaxSize {
		if time.Now().After(deadline) {
			t.Fatalf("queue never filled: %d bytes", h.c.Queued())
		}
		runtime.Gosched()
	}
	if q := h.c.Queued(); q > opts.QueueMaxSize+chunkTarget+minReadBuf {
		t.Errorf("queue holds %d bytes, bound %d plus one chunk", q, opts.QueueMaxSize)
	}
	if n := len(h.records()); n != 0 {
		t.Errorf("%d records delivered while paused", n)
	}
	h.c.Resume()
	h.c.q.mu.Lock()
	close(h.c.q.queued) // wake the collector, as Fluent Bit's timer would
	h.c.q.queued = make(chan struct{})
	h.c.q.mu.Unlock()
	h.deliveredOnce("every line", 20*time.Second, w)
}

func TestRemovedContainerIsForgottenAndGoroutinesReturn(t *testing.T) {
	baseline := runtime.NumGoroutine()
	d := newFakeDaemon()
	h := newHarness(t, d, testOptions())
	var ids []string
	for i := 0; i < 20; i++ {
		id := fmt.Sprintf("%064x", i+1)
		ids = append(ids, id)
		d.add(Container{ID: id, Name: fmt.Sprint("c", i), Image: "x", Running: true})
		d.setRunning(id, true)
		d.write(id, Stdout, Timestamp(int64(i+1)*1e9), "hi\n")
	}
	h.waitFor("a line of each", 10*time.Second, func(recs []records.Record) bool { return len(recs) >= len(ids) })
	for _, id := range ids {
		d.destroy(id)
	}
	h.stop()
	// Everything the capture started has returned once Stop has; the
	// harness's own goroutines are gone too. A goroutine's end sends no
	// event, and the runtime may take a moment to reap one that just
	// returned: poll against a deadline.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > baseline && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	if n := runtime.NumGoroutine(); n > baseline {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines after stop, %d before:\n%s", n, baseline, buf[:runtime.Stack(buf, true)])
	}
}

func TestDaemonRestartIsReconciledWithoutEvents(t *testing.T) {
	d := newFakeDaemon()
	const (
		keeps   = "a000000000000000000000000000000000000000000000000000000000000000"
		dies    = "b000000000000000000000000000000000000000000000000000000000000000"
		appears = "c000000000000000000000000000000000000000000000000000000000000000"
	)
	const (
		flashes = "d000000000000000000000000000000000000000000000000000000000000000"
		reruns  = "e000000000000000000000000000000000000000000000000000000000000000"
	)
	d.add(runningContainer(keeps))
	d.add(runningContainer(dies))
	d.add(runningContainer(reruns))
	wk, wd, wr := newLineWriter(d, keeps, 30), newLineWriter(d, dies, 31), newLineWriter(d, reruns, 33)
	h := newHarness(t, d, testOptions())
	wk.lines(50)
	wd.lines(50)
	wr.lines(20)
	h.waitFor("lines before the restart", 10*time.Second, func(recs []recordsT) bool {
		return countFor(keeps, 50)(recs) && countFor(dies, 50)(recs) && countFor(reruns, 20)(recs)
	})
	d.setRunning(reruns, false)
	awaitStats(t, h.c, "the stopped container's reader gone", func(s StatsSnapshot) bool { return s.ContainersWatched == 2 })

	d.setDown(true)
	// While the daemon is away: lines are still written to the logs, one
	// container dies, another is created and started, one is created,
	// runs and exits, and a stopped one runs again, all unseen.
	wk.lines(50)
	wd.lines(50)
	d.setRunningQuietly(dies, false)
	wa := newRunningWriter(d, appears, 32)
	wa.lines(50)
	d.add(Container{ID: flashes, Name: "flash", Image: "x"})
	wf := newLineWriter(d, flashes, 34)
	wf.lines(30)
	d.setRunningQuietly(reruns, true)
	wr.lines(20)
	d.setRunningQuietly(reruns, false)
	d.setDown(false)

	wk.lines(50)
	h.waitFor("every line", 20*time.Second, func(recs []recordsT) bool {
		return countFor(keeps, 150)(recs) && countFor(dies, 100)(recs) && countFor(appears, 50)(recs) &&
			countFor(flashes, 30)(recs) && countFor(reruns, 40)(recs)
	})
	recs := h.records()
	checkExactlyOnce(t, recs, keeps, wk.want)
	checkExactlyOnce(t, recs, dies, wd.want)
	checkExactlyOnce(t, recs, appears, wa.want)
	checkExactlyOnce(t, recs, flashes, wf.want)
	checkExactlyOnce(t, recs, reruns, wr.want)
}

func TestUnreachableDaemonAtStartIsRetried(t *testing.T) {
	d := newFakeDaemon()
	w := newRunningWriter(d, testID, 33)
	w.lines(20)
	d.setDown(true)
	h := newHarness(t, d, testOptions())
	deadline := time.Now().Add(10 * time.Second)
	for {
		d.mu.Lock()
		refused := d.refused
		d.mu.Unlock()
		if refused > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the capture never called the daemon")
		}
		runtime.Gosched()
	}
	d.setDown(false)
	h.waitFor("the lines", 10*time.Second, countFor(testID, 20))
	checkExactlyOnce(t, h.records(), testID, w.want)
}

func TestUnwantedStreamIsReadButNotDelivered(t *testing.T) {
	d := newFakeDaemon()
	cutAtRandom(d, 40, 300, 100)
	w := newRunningWriter(d, testID, 42)
	// Before start-up, not delivered with Read_From_Head off: the log ends
	// in more stderr lines than the first read looks at.
	w.lines(30)
	for i := 0; i < 2*seedTail; i++ {
		w.line(Stderr)
	}
	opts := testOptions()
	opts.Stderr = false
	opts.ReadFromHead = false
	h := newHarness(t, d, opts)
	for len(d.logRequests()) < 2 {
		runtime.Gosched() // the seed read is done and the reader follows
	}
	w.want = map[StreamKind][]string{}
	for i := 0; i < 10; i++ {
		w.lines(40)
		h.waitFor("the stdout lines so far", 10*time.Second, countFor(testID, len(w.want[Stdout])))
	}
	w.want[Stderr] = nil
	checkExactlyOnce(t, h.records(), testID, w.want)
}

func TestHistoryStreamIsNotCutWhileItDelivers(t *testing.T) {
	d := newFakeDaemon()
	w := newRunningWriter(d, testID, 8) // stamped hours ago: all history
	w.lines(1000)
	// The watch checks the stream after every 100 entries the daemon sent,
	// not after a time the reader may spend descheduled on a loaded
	// machine: each check follows reads, so it must keep the stream.
	timers := &manualTimers{}
	var sent, checks atomic.Int64
	d.pace = func() { // one entry per Read, on the reader's goroutine
		if sent.Add(1)%100 == 0 {
			checks.Add(int64(timers.fire()))
		}
	}
	opts := testOptions()
	opts.StreamRefresh = 50 * time.Millisecond
	opts.watchAfter = timers.afterFunc
	h := newHarness(t, d, opts)
	h.waitFor("the history", 30*time.Second, countFor(testID, w.total()))
	if n := checks.Load(); n < 4 {
		t.Fatalf("the watch checked the stream %d times while it delivered the history, want several: the test proves nothing", n)
	}
	checkExactlyOnce(t, h.records(), testID, w.want)
	if reqs := d.logRequests(); len(reqs) != 1 {
		t.Errorf("%d logs requests while the history was delivered over %d checks, want 1 (a cut history read is re-read): %+v", len(reqs), checks.Load(), reqs)
	}
}

// manualTimers stands in for time.AfterFunc in the streams' watches: a
// timer runs its function only when the test calls fire.
type manualTimers struct {
	mu     sync.Mutex
	timers []*manualTimer
}

type manualTimer struct {
	ts    *manualTimers
	f     func()
	armed bool // guarded by ts.mu
}

func (ts *manualTimers) afterFunc(_ time.Duration, f func()) watchTimer {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t := &manualTimer{ts: ts, f: f, armed: true}
	ts.timers = append(ts.timers, t)
	return t
}

// fire runs, on the caller's goroutine, every armed timer's function, as
// their expiry would; it returns how many ran.
func (ts *manualTimers) fire() int {
	ts.mu.Lock()
	var due []func()
	for _, t := range ts.timers {
		if t.armed {
			t.armed = false
			due = append(due, t.f)
		}
	}
	ts.mu.Unlock()
	for _, f := range due {
		f() // without the lock: f resets its timer
	}
	return len(due)
}

func (t *manualTimer) Reset(time.Duration) bool { return t.set(true) }
func (t *manualTimer) Stop() bool               { return t.set(false) }

// set arms or disarms the timer, reporting whether it was armed.
func (t *manualTimer) set(armed bool) bool {
	t.ts.mu.Lock()
	defer t.ts.mu.Unlock()
	was := t.armed
	t.armed = armed
	return was
}

func TestLiveStreamIsRefreshedAtItsAge(t *testing.T) {
	d := newFakeDaemon()
	d.add(runningContainer(testID))
	opts := refreshEvery(50 * time.Millisecond)
	h := newHarness(t, d, opts)
	var want []string
	deadline := time.Now().Add(10 * time.Second)
	for len(d.logRequests()) < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("%d logs requests in 10 s with StreamRefresh %s: a live stream is not refreshed", len(d.logRequests()), opts.StreamRefresh)
		}
		line := fmt.Sprintf("live %d", len(want))
		d.write(testID, Stdout, Timestamp(time.Now().UnixNano()), line+"\n")
		want = append(want, line)
		h.waitFor(line, 10*time.Second, countFor(testID, len(want)))
	}
	checkExactlyOnce(t, h.records(), testID, map[StreamKind][]string{Stdout: want})
}

func TestSilentResumeIsGivenLongerEachTime(t *testing.T) {
	d := newFakeDaemon()
	w := newRunningWriter(d, testID, 9)
	w.lines(10)
	d.cutFirstStreamAfter(10)
	d.onCut = func() { w.lines(5) }
	// Every resume is silent longer than the first bound: only a bound
	// that grows lets one through.
	d.silence = func(r LogsRequest) time.Duration {
		if r.Since != 0 {
			return 100 * time.Millisecond
		}
		return 0
	}
	opts := testOptions()
	opts.StreamRefresh = 20 * time.Millisecond
	opts.seekBound = 20 * time.Millisecond
	h := newHarness(t, d, opts)
	h.waitFor("the lines written after the cut", 10*time.Second, countFor(testID, 15))
	checkExactlyOnce(t, h.records(), testID, w.want)
}

// slowInspectSource answers Inspect late: after the container's logs stream
// was opened, or after 200 ms. By then the container is gone, as one
// removed as soon as it exits (docker run --rm) is.
type slowInspectSource struct{ *signallingDaemon }

func (s *slowInspectSource) Inspect(ctx context.Context, id string) (Container, error) {
	c, err := s.fakeDaemon.Inspect(ctx, id)
	t := time.NewTimer(200 * time.Millisecond)
	defer t.Stop()
	select {
	case <-s.opened:
	case <-t.C:
	case <-ctx.Done():
	}
	if err == nil {
		s.destroy(id)
	}
	return c, err
}

// signallingDaemon is a fakeDaemon that tells when the capture has
// subscribed to its events and when a logs stream first opened, for the
// sources of tests that remove a container between its open and its
// inspect.
type signallingDaemon struct {
	*fakeDaemon
	opened     chan struct{} // closed by the first Logs that opens
	once       sync.Once
	subscribed chan struct{} // closed by the first Events
	subOnce    sync.Once
}

func newSignallingDaemon(d *fakeDaemon) *signallingDaemon {
	return &signallingDaemon{fakeDaemon: d, opened: make(chan struct{}), subscribed: make(chan struct{})}
}

func (s *signallingDaemon) Events(ctx context.Context) (<-chan Event, <-chan error) {
	evs, errs := s.fakeDaemon.Events(ctx)
	s.subOnce.Do(func() { close(s.subscribed) })
	return evs, errs
}

func (s *signallingDaemon) Logs(ctx context.Context, id string, req LogsRequest) (io.ReadCloser, error) {
	rc, err := s.fakeDaemon.Logs(ctx, id, req)
	if err == nil {
		s.once.Do(func() { close(s.opened) })
	}
	return rc, err
}

func TestContainerRemovedWhileInspectedIsReadWhole(t *testing.T) {
	d := newFakeDaemon()
	src := &slowInspectSource{newSignallingDaemon(d)}
	h := newHarnessOf(t, src, d, testOptions())
	<-src.subscribed // a container stopped before capture starts is not read
	d.add(Container{ID: testID, Name: "job", Image: "x"})
	w := newLineWriter(d, testID, 10)
	w.lines(20)
	d.setRunning(testID, true)
	d.setRunningQuietly(testID, false) // it exits at once; inspect removes it
	h.deliveredOnce("the job's lines", 10*time.Second, w)
	for _, r := range h.records() {
		if r.ContainerName != "job" {
			t.Fatalf("record without the container's name: %+v", r)
		}
	}
}

// incompatibleSource is a daemon that refuses the client's API version: every
// List fails with ErrIncompatible.
type incompatibleSource struct {
	*fakeDaemon
	lists atomic.Int32
}

func (s *incompatibleSource) List(ctx context.Context) ([]Container, error) {
	s.lists.Add(1)
	return nil, fmt.Errorf("daemon refuses API 1.56: %w", ErrIncompatible)
}

func TestDaemonRefusingTheAPIVersionIsNotRetried(t *testing.T) {
	d := newFakeDaemon()
	src := &incompatibleSource{fakeDaemon: d}
	h := newHarnessOf(t, src, d, testOptions())
	awaitStats(t, h.c, "the list error", func(s StatsSnapshot) bool { return s.Errors[ReasonList] == 1 })
	// Nothing marks a retry that does not happen: wait past two retry
	// periods of the backoff, which a retry loop would have used.
	time.Sleep(2*minReconnect + minReconnect/2)
	if n := src.lists.Load(); n != 1 {
		t.Errorf("List called %d times, want once: a daemon refusing the API version was retried", n)
	}
}
