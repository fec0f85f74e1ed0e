package capture

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Tests of lines at the edges: long lines cut by a refresh while the other
// stream writes, pieces of unexpected length, pieces that do not belong
// together, and a container gone before its inspect.

// longLineStamp is the stamp every piece of a test's long line carries, as
// a daemon that stamps to the nanosecond gives it.
var longLineStamp = Timestamp(time.Date(2026, 11, 28, 12, 0, 0, 123456789, time.UTC).UnixNano())

// writeLongLine writes line (without its newline) as the daemon stores it:
// pieces of pieceLen bytes, all stamped ts, the last one ending in nl.
func writeLongLine(d *fakeDaemon, id string, s StreamKind, ts Timestamp, line, nl string) {
	for off := 0; off < len(line); off += pieceLen {
		piece := line[off:min(off+pieceLen, len(line))]
		if off+pieceLen >= len(line) {
			piece += nl
		}
		d.write(id, s, ts, piece)
	}
}

// A container writes the first half of a 40 KB stdout line, 1.5 s later a
// stderr line, 1.5 s later the rest: the pieces still to come are stamped
// before the stderr line already read. The stream ends between them, as a
// refresh ends it.
func TestLongLineCutByRefreshWhileOtherStreamWritesArrivesWhole(t *testing.T) {
	d := newFakeDaemon()
	d.add(runningContainer(testID))
	long := strings.Repeat("0123456789", 4000)
	d.write(testID, Stdout, longLineStamp, long[:pieceLen])
	d.write(testID, Stderr, longLineStamp+Timestamp(1500*time.Millisecond), "between\n")
	d.cutFirstStreamAfter(2)
	d.onCut = func() {
		d.write(testID, Stdout, longLineStamp, long[pieceLen:2*pieceLen])
		d.write(testID, Stdout, longLineStamp, long[2*pieceLen:]+"\n")
		d.write(testID, Stdout, longLineStamp+Timestamp(3*time.Second), "after\n")
	}
	h := newHarness(t, d, testOptions())
	h.waitFor("every line", 10*time.Second, countFor(testID, 3))
	checkExactlyOnce(t, h.records(), testID, map[StreamKind][]string{
		Stdout: {long, "after"}, Stderr: {"between"}})
	for _, r := range d.logRequests() {
		if r.Tail < 0 && r.Since != 0 {
			t.Errorf("a resume read the whole log: %+v", r)
		}
	}
}

// A piece that carries another stamp is not a piece of the pending line:
// a process killed at a 16 KiB boundary left that line without its end,
// and the next run's line starts afresh.
func TestPieceWithAnotherStampEndsThePendingLine(t *testing.T) {
	d := newFakeDaemon()
	d.add(runningContainer(testID))
	cut := strings.Repeat("k", pieceLen)
	d.write(testID, Stdout, longLineStamp, cut)
	d.write(testID, Stdout, longLineStamp+Timestamp(time.Second), "next run\n")
	h := newHarness(t, d, testOptions())
	h.waitFor("two records", 10*time.Second, countFor(testID, 2))
	checkExactlyOnce(t, h.records(), testID, map[StreamKind][]string{Stdout: {cut, "next run"}})
}

// The daemon stores a piece cut inside a multi-byte character with the cut
// bytes replaced, so pieces are not exactly 16,384 bytes; a TTY stream has
// no frames to tell where they end.
func TestTTYLongNonASCIILinesFromTheDaemonAreDelivered(t *testing.T) {
	in, err := os.ReadFile(filepath.Join("testdata", "tty-long-nonascii.bin"))
	if err != nil {
		t.Fatal(err)
	}
	src := &replaySource{fakeDaemon: newFakeDaemon(), stream: in}
	c := runningContainer(testID)
	c.TTY = true
	src.add(c)
	h := newHarnessOf(t, src, src.fakeDaemon, testOptions())
	h.waitFor("three records", 10*time.Second, countFor(testID, 3))
	recs := h.records()
	if len(recs) != 3 || recs[0].Log != "seq=1 stream=stdout" {
		t.Fatalf("records: %d, first %q", len(recs), recs[0].Log)
	}
	for k, r := range recs[1:] {
		// loggen -long 40002 -longs 2 -fill €: the cut characters come
		// back as U+FFFD.
		want := "long=" + string(rune('1'+k)) + " " + strings.Repeat("€", 5459)
		if !strings.HasPrefix(r.Log, want) || len(r.Log) < 40002 || !strings.HasSuffix(r.Log, "\uFFFD\uFFFD") {
			t.Errorf("long line %d: %d bytes, starts %q, ends %q", k+1, len(r.Log), r.Log[:min(20, len(r.Log))], r.Log[max(0, len(r.Log)-12):])
		}
	}
	if n := h.c.Stats().Errors[ReasonMalformed]; n != 0 {
		t.Errorf("%d malformed errors counted for the daemon's own stream", n)
	}
}

// replaySource serves a fixed captured stream for every logs request; the
// container stops once its stream is served, so the reader reads its log
// once more without follow and finds nothing new.
type replaySource struct {
	*fakeDaemon
	stream []byte
	served atomic.Int64
}

func (s *replaySource) Logs(ctx context.Context, id string, req LogsRequest) (io.ReadCloser, error) {
	rc, err := s.fakeDaemon.Logs(ctx, id, req)
	if err != nil {
		return nil, err
	}
	rc.Close()
	s.setRunningQuietly(id, false)
	s.served.Add(1)
	return io.NopCloser(bytes.NewReader(s.stream)), nil
}

// Anything a TTY stream holds that is not an entry is skipped, counted and
// logged; the lines after it are read.
func TestUnparseableTTYBytesAreSkippedAndReadingGoesOn(t *testing.T) {
	src := &replaySource{fakeDaemon: newFakeDaemon(), stream: []byte(
		"2026-11-28T12:00:00.000000001Z first\r\n" +
			"no stamp on this one\r\n" +
			"2026-11-28T12:00:00.000000002Z second\r\n")}
	c := runningContainer(testID)
	c.TTY = true
	src.add(c)
	h := newHarnessOf(t, src, src.fakeDaemon, testOptions())
	h.waitFor("two records", 10*time.Second, countFor(testID, 2))
	checkExactlyOnce(t, h.records(), testID, map[StreamKind][]string{Stdout: {"first", "second"}})
	h.stop()
	if n, served := h.c.Stats().Errors[ReasonMalformed], src.served.Load(); n != served {
		t.Errorf("%d malformed errors counted, want 1 for each of the %d streams served", n, served)
	}
}

// goneAtInspectSource opens a logs stream, then finds the container gone
// when it inspects it, as a container removed right after it exits is.
type goneAtInspectSource struct{ *signallingDaemon }

func (s *goneAtInspectSource) Inspect(ctx context.Context, id string) (Container, error) {
	select {
	case <-s.opened:
	case <-ctx.Done():
		return Container{}, ctx.Err()
	}
	s.destroy(id)
	return s.fakeDaemon.Inspect(ctx, id)
}

// A container gone before its inspect (--rm) is judged by what its start
// event told: its name, image and labels, here a filter on a label.
func TestContainerGoneAtInspectKeepsWhatItsStreamDelivers(t *testing.T) {
	for _, tty := range []bool{false, true} {
		d := newFakeDaemon()
		src := &goneAtInspectSource{newSignallingDaemon(d)}
		opts := testOptions()
		opts.Include = func(c Container) bool { return c.Labels["team"] == "jobs" }
		h := newHarnessOf(t, src, d, opts)
		<-src.subscribed // a container stopped before capture starts is not read
		d.add(Container{ID: testID, Name: "job", Image: "x", TTY: tty, Labels: map[string]string{"team": "jobs"}})
		w := newLineWriter(d, testID, 21)
		if tty {
			for i := 0; i < 20; i++ {
				w.line(Stdout)
			}
		} else {
			w.lines(20)
		}
		d.setRunning(testID, true)
		d.setRunningQuietly(testID, false)
		h.waitFor("the job's lines", 10*time.Second, countFor(testID, w.total()))
		h.stop()
		checkExactlyOnce(t, h.records(), testID, w.want)
		if r := h.records()[0]; r.ContainerName != "job" {
			t.Errorf("tty=%v: record without the name the start event gave: %+v", tty, r)
		}
	}
}

// A stopped container keeps no read buffer: memory follows the running
// containers, not every container seen.
func TestStoppedContainersKeepNoReadBuffer(t *testing.T) {
	const containers = 100
	d := newFakeDaemon()
	h := newHarness(t, d, testOptions())
	ids := make([]string, containers)
	for i := range ids {
		ids[i] = fmt.Sprintf("%064x", i+1)
		d.add(Container{ID: ids[i], Name: fmt.Sprint("c", i), Image: "x"})
		d.write(ids[i], Stdout, longLineStamp+Timestamp(i), "only line\n")
	}
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, id := range ids {
		d.setRunning(id, true)
		d.setRunningQuietly(id, false)
	}
	for _, id := range ids {
		h.waitFor("its line", 10*time.Second, countFor(id, 1))
	}
	// Readers return after their last record is queued: wait for them.
	deadline := time.Now().Add(10 * time.Second)
	for h.c.Stats().ContainersWatched > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d readers still run", h.c.Stats().ContainersWatched)
		}
		runtime.Gosched()
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.GC() // and the queue's pool of chunk buffers, kept for one cycle
	runtime.ReadMemStats(&after)
	t.Logf("heap grew by %d bytes", int64(after.HeapAlloc)-int64(before.HeapAlloc))
	// A read buffer is 64 KiB: kept, they would hold 6.4 MB.
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > containers*minReadBuf/4 {
		t.Errorf("the heap grew by %d bytes for %d stopped containers, more than a quarter of their read buffers", grown, containers)
	}
}

// A stream whose new lines keep coming stamped before its position (the
// daemon's clock stepped back) is reported once, with a metric.
func TestLinesStampedBeforeThePositionForLongAreReported(t *testing.T) {
	d := newFakeDaemon()
	d.add(runningContainer(testID))
	opts := testOptions()
	var mu sync.Mutex
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	// Every look at the clock finds it half a second later.
	opts.clock = func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(500 * time.Millisecond)
		return now
	}
	h := newHarness(t, d, opts)
	d.write(testID, Stdout, longLineStamp+Timestamp(10*time.Second), "before the step\n")
	h.waitFor("the first line", 10*time.Second, countFor(testID, 1))
	for i := 1; i <= 4; i++ {
		d.write(testID, Stdout, longLineStamp+Timestamp(i)*Timestamp(time.Second), fmt.Sprint("after the step ", i, "\n"))
	}
	d.write(testID, Stdout, longLineStamp+Timestamp(11*time.Second), "past the position\n")
	h.waitFor("the line past the position", 10*time.Second, countFor(testID, 2))
	if n := h.c.Stats().Errors[ReasonClockStep]; n != 1 {
		t.Errorf("%d clock steps counted, want 1", n)
	}
}

// A resume whose last line was rotated out of the log before it was read
// reads on from the oldest line there is, and reports the gap with a
// metric: the lines in between are gone.
func TestAPositionRotatedOutOfTheLogIsReportedAsAGap(t *testing.T) {
	d := newFakeDaemon()
	d.add(runningContainer(testID))
	h := newHarness(t, d, testOptions())
	d.write(testID, Stdout, longLineStamp, "read\n")
	h.waitFor("the first line", 10*time.Second, countFor(testID, 1))
	d.setDown(true) // the stream ends; the reader resumes from its position
	d.rotateOut(testID)
	for i := 1; i <= 3; i++ {
		d.write(testID, Stdout, longLineStamp+Timestamp(i)*Timestamp(time.Second), fmt.Sprint("after the rotation ", i, "\n"))
	}
	d.setDown(false)
	h.waitFor("the lines after the rotation", 10*time.Second, countFor(testID, 4))
	if n := h.c.Stats().Errors[ReasonGap]; n != 1 {
		t.Errorf("%d gaps counted, want 1", n)
	}
}

// Long lines open on both streams at once: the stderr line ends while the
// stdout one is open, and a resume finds the stderr line at its first
// piece, so only the stdout pieces before that one are taken again there.
func TestLongLinesOpenOnBothStreamsResumeWithinTheirWindow(t *testing.T) {
	d := newFakeDaemon()
	d.add(runningContainer(testID))
	out := strings.Repeat("o", 3*pieceLen)
	errLine := strings.Repeat("e", 2*pieceLen)
	errStamp := longLineStamp + Timestamp(time.Second)
	d.write(testID, Stdout, longLineStamp, out[:pieceLen])
	d.write(testID, Stderr, errStamp, errLine[:pieceLen])
	d.write(testID, Stdout, longLineStamp, out[pieceLen:2*pieceLen])
	d.write(testID, Stderr, errStamp, errLine[pieceLen:]+"\n")
	d.cutFirstStreamAfter(4)
	d.onCut = func() { d.write(testID, Stdout, longLineStamp, out[2*pieceLen:]+"\n") }
	h := newHarness(t, d, testOptions())
	h.waitFor("both lines", 10*time.Second, countFor(testID, 2))
	checkExactlyOnce(t, h.records(), testID, map[StreamKind][]string{Stdout: {out}, Stderr: {errLine}})
	for _, r := range d.logRequests() {
		if r.Tail < 0 && r.Since != 0 || r.Tail > firstTail {
			t.Errorf("a resume went beyond its first window: %+v", r)
		}
	}
}
