package capture

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// waitAllCollected waits until every line the readers queued has been
// collected.
func (h *harness) waitAllCollected() {
	h.t.Helper()
	h.waitFor("every queued line collected", 10*time.Second, func(recs []recordsT) bool {
		s := h.c.Stats()
		return int64(len(recs)) == s.StdoutLines+s.StderrLines
	})
}

// newRenameHarness captures, through a recording source, the containers
// named app*; testID runs, named name.
func newRenameHarness(t *testing.T, name string) (*fakeDaemon, *heldInspectSource, *harness) {
	t.Helper()
	d := newFakeDaemon()
	d.add(Container{ID: testID, Name: name, Image: "x", Running: true})
	src := newRecordingSource(d)
	return d, src, newHarnessOf(t, src, d, appOnly())
}

// appOnly are the test options with a filter that selects containers
// whose name starts with app, as Include_Names ^app does.
func appOnly() Options {
	opts := testOptions()
	opts.Include = func(c Container) bool { return strings.HasPrefix(c.Name, "app") }
	return opts
}

func TestUnpauseStartsAReaderForAContainerNotRead(t *testing.T) {
	d := newFakeDaemon()
	// Listed as not running (a paused container, as a daemon may report
	// one): nothing reads it until its unpause.
	d.add(Container{ID: testID, Name: "app", Image: "x"})
	src := newRecordingSource(d)
	opts := testOptions()
	opts.ReadFromHead = false
	h := newHarnessOf(t, src, d, opts)
	src.awaitEventsHandled(t) // listed, and subscribed to events
	w := newLineWriter(d, testID, 50)
	w.lines(200)
	d.unpause(testID)
	h.deliveredOnce("the lines of the unpaused container", 10*time.Second, w)
}

func TestReadFromHeadReadsAStoppedContainerOnceAndNotAgainWithDB(t *testing.T) {
	const sentinel = "f000000000000000000000000000000000000000000000000000000000000000"
	db := filepath.Join(t.TempDir(), "positions.db")
	d := newFakeDaemon()
	d.add(Container{ID: testID, Name: "done", Image: "x"})
	w := newLineWriter(d, testID, 51)
	w.lines(300)
	run := func() *harness {
		t.Helper()
		opts := testOptions() // ReadFromHead on
		opts.Positions = openPositions(t, db)
		return newHarness(t, d, opts)
	}
	// readWhole waits for the whole log of w's stopped container, the
	// readers gone and every line collected; each line must arrive once.
	readWhole := func(h *harness, w *lineWriter, what string) {
		t.Helper()
		h.waitFor(what, 10*time.Second, countFor(w.id, w.total()))
		awaitStats(t, h.c, "the readers gone after "+what, func(s StatsSnapshot) bool {
			return s.ContainersWatched == 0 && s.StreamsOpen == 0
		})
		h.waitAllCollected()
		checkExactlyOnce(t, h.records(), w.id, w.want)
	}
	h := run()
	// Its reader is gone once the log is read: read once, without follow.
	readWhole(h, w, "the stopped container's log")
	for _, r := range d.logRequests() {
		if r.Follow {
			t.Errorf("a stopped container's log was followed: %+v", r)
		}
	}
	h.stop() // writes the positions

	// Restarted with the same DB: another stopped container, never read,
	// shows the start-up reads are done; the first one is not read again.
	d.add(Container{ID: sentinel, Name: "other", Image: "x"})
	ws := newLineWriter(d, sentinel, 52)
	ws.lines(20)
	h2 := run()
	readWhole(h2, ws, "the other stopped container's log")
	checkExactlyOnce(t, h2.records(), testID, nil)
}

func TestReadFromHeadOffLeavesStoppedContainersAlone(t *testing.T) {
	d := newFakeDaemon()
	d.add(Container{ID: testID, Name: "done", Image: "x"})
	newLineWriter(d, testID, 53).lines(10)
	const probe = "f000000000000000000000000000000000000000000000000000000000000000"
	d.add(runningContainer(probe))
	opts := testOptions()
	opts.ReadFromHead = false
	h := newHarness(t, d, opts)
	awaitStats(t, h.c, "the running container's reader", func(s StatsSnapshot) bool { return s.StreamsOpen == 1 })
	wp := newLineWriter(d, probe, 54)
	wp.lines(5)
	h.waitFor("the running container's lines", 10*time.Second, countFor(probe, 5))
	checkExactlyOnce(t, h.records(), testID, nil)
}

func TestRenamedOutOfIncludeDeliversLinesBeforeTheRenameOnly(t *testing.T) {
	d, src, h := newRenameHarness(t, "app-1")
	w := newLineWriter(d, testID, 55)
	w.lines(100)
	h.waitFor("the first lines", 10*time.Second, countFor(testID, w.total()))
	// Lines written just before the rename, maybe not read yet when it
	// comes.
	w.lines(50)
	want := w.want
	w.want = map[StreamKind][]string{}
	d.rename(testID, "tmp-1", w.ts+1000)
	src.awaitEventsHandled(t)
	w.ts += 2000
	w.lines(100)
	awaitStats(t, h.c, "the reader of the renamed container gone", func(s StatsSnapshot) bool {
		return s.ContainersWatched == 0 && s.StreamsOpen == 0
	})
	h.waitAllCollected()
	checkExactlyOnce(t, h.records(), testID, want)
}

func TestRenamedIntoIncludeIsReadFromTheRename(t *testing.T) {
	d := newFakeDaemon()
	d.add(Container{ID: testID, Name: "tmp-1", Image: "x", Running: true})
	const probe = "f000000000000000000000000000000000000000000000000000000000000000"
	d.add(Container{ID: probe, Name: "app-probe", Image: "x", Running: true})
	h := newHarness(t, d, appOnly())
	w := newLineWriter(d, testID, 56)
	w.lines(100) // under a name not selected
	// The probe's line proves the supervisor runs; the excluded
	// container's reader then returns by itself.
	d.write(probe, Stdout, w.ts, "probe\n")
	h.waitFor("the probe", 10*time.Second, countFor(probe, 1))
	awaitStats(t, h.c, "only the probe read", func(s StatsSnapshot) bool { return s.ContainersWatched == 1 })
	w.want = map[StreamKind][]string{}
	d.rename(testID, "app-1", w.ts+1000)
	w.ts += 2000
	w.lines(100)
	h.waitFor("the lines after the rename", 10*time.Second, countFor(testID, w.total()))
	awaitStats(t, h.c, "both read", func(s StatsSnapshot) bool { return s.ContainersWatched == 2 })
	w.lines(50)
	h.deliveredOnce("later lines", 10*time.Second, w)
}

// Renames in quick succession while readers start and stop: the filter is
// re-decided by one goroutine at a time (go test -race), and the last name
// wins.
func TestRenamesInABurstEndWithTheLastNamesDecision(t *testing.T) {
	d, src, h := newRenameHarness(t, "tmp-0")
	w := newLineWriter(d, testID, 57)
	for i := 1; i <= 40; i++ {
		prefix := "tmp"
		if i%3 == 0 {
			prefix = "app"
		}
		w.ts += 1000
		d.rename(testID, fmt.Sprintf("%s-%d", prefix, i), w.ts)
	}
	w.ts += 1000
	d.rename(testID, "app-last", w.ts)
	src.awaitEventsHandled(t) // lines read before would carry an older name
	w.ts += 1000
	w.want = map[StreamKind][]string{}
	w.lines(200)
	h.deliveredOnce("the lines after the last rename", 10*time.Second, w)
	for _, r := range h.records() {
		if r.ContainerName != "app-last" {
			t.Fatalf("record under the name %q, want app-last", r.ContainerName)
		}
	}
}

// heldInspectSource holds the first Inspect of one container after the
// daemon has answered it, until release is closed; Logs records which
// containers' logs were asked for.
type heldInspectSource struct {
	*fakeDaemon
	id        string
	once      sync.Once
	inspected chan struct{} // closed when the held Inspect has its answer
	release   chan struct{} // closed by the test
	mu        sync.Mutex
	logsOf    map[string]bool
	probes    int
}

func (s *heldInspectSource) Inspect(ctx context.Context, id string) (Container, error) {
	c, err := s.fakeDaemon.Inspect(ctx, id)
	if id == s.id {
		s.once.Do(func() {
			close(s.inspected)
			<-s.release
		})
	}
	return c, err
}

func (s *heldInspectSource) Logs(ctx context.Context, id string, req LogsRequest) (io.ReadCloser, error) {
	s.mu.Lock()
	s.logsOf[id] = true
	s.mu.Unlock()
	return s.fakeDaemon.Logs(ctx, id, req)
}

// newRecordingSource holds no Inspect.
func newRecordingSource(d *fakeDaemon) *heldInspectSource {
	return &heldInspectSource{fakeDaemon: d, logsOf: map[string]bool{}}
}

func (s *heldInspectSource) askedLogsOf(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logsOf[id]
}

// awaitEventsHandled returns once the supervisor has handled the events
// sent so far. They are handled in order, so it starts a probe container
// and waits until its logs are asked for.
func (s *heldInspectSource) awaitEventsHandled(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	s.probes++
	probe := fmt.Sprintf("e%063x", s.probes)
	s.mu.Unlock()
	s.add(Container{ID: probe, Name: "probe", Image: "x"})
	s.setRunning(probe, true)
	deadline := time.Now().Add(10 * time.Second)
	for !s.askedLogsOf(probe) {
		if time.Now().After(deadline) {
			t.Fatal("the probe's logs were never asked for: events are not handled")
		}
		runtime.Gosched()
	}
}

func TestRenameIntoIncludeWhileTheReaderInspectsIsNotMissed(t *testing.T) {
	d := newFakeDaemon()
	d.add(Container{ID: testID, Name: "tmp-1", Image: "x", Running: true})
	src := &heldInspectSource{fakeDaemon: d, id: testID, inspected: make(chan struct{}),
		release: make(chan struct{}), logsOf: map[string]bool{}}
	h := newHarnessOf(t, src, d, appOnly())
	<-src.inspected // the reader holds the old name's answer
	w := newLineWriter(d, testID, 58)
	d.rename(testID, "app-1", w.ts)
	src.awaitEventsHandled(t) // while the reader still inspects
	close(src.release)
	w.ts += 1000
	w.lines(100)
	h.deliveredOnce("the lines after the rename", 10*time.Second, w)
}

func TestReadFromHeadReadsFewStoppedContainersAtOnce(t *testing.T) {
	const n = 20
	d := newFakeDaemon()
	// Each stream sends nothing for a while, so readers started together
	// hold their streams open together.
	d.silence = func(LogsRequest) time.Duration { return 20 * time.Millisecond }
	writers := make([]*lineWriter, n)
	for i := range writers {
		id := fmt.Sprintf("%064x", i+1)
		d.add(Container{ID: id, Name: fmt.Sprint("done-", i), Image: "x"})
		writers[i] = newLineWriter(d, id, uint64(60+i))
		writers[i].lines(30)
	}
	h := newHarness(t, d, testOptions()) // Read_From_Head on
	for i, w := range writers {
		h.waitFor("every stopped container's log", 20*time.Second, countFor(fmt.Sprintf("%064x", i+1), w.total()))
	}
	for i, w := range writers {
		checkExactlyOnce(t, h.records(), fmt.Sprintf("%064x", i+1), w.want)
	}
	d.mu.Lock()
	most := d.maxOpen
	d.mu.Unlock()
	t.Logf("%d streams open at most", most)
	if most > maxStoppedReads {
		t.Errorf("%d streams open at once reading %d stopped containers, want at most %d", most, n, maxStoppedReads)
	}
}
