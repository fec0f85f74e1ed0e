package capture

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

func quietLog() *logrus.Entry {
	l := logrus.New()
	l.SetOutput(os.Stderr)
	l.SetLevel(logrus.WarnLevel)
	return logrus.NewEntry(l)
}

// openPositions opens the positions file at path, failing the test on an
// error.
func openPositions(t *testing.T, path string) *Positions {
	t.Helper()
	s, err := OpenPositions(path, 0, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPositionsSurviveAWriteAndAReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "positions.db")
	s := openPositions(t, path)
	var p position
	p.advance(Stderr, 100)
	p.advance(Stdout, 99) // stdout's last line stamped before stderr's
	commitOne(s, testID, p)
	if err := s.flush(); err != nil {
		t.Fatal(err)
	}
	again := openPositions(t, path)
	got, ok := again.get(testID)
	if !ok || got != p {
		t.Errorf("reloaded %+v (found %v), want %+v", got, ok, p)
	}
}

func TestPositionsNeverMoveBackwards(t *testing.T) {
	s, _ := OpenPositions("", 0, quietLog())
	var newer, older position
	newer.advance(Stdout, 200)
	older.advance(Stdout, 100)
	commitOne(s, testID, newer)
	commitOne(s, testID, older)
	if got, _ := s.get(testID); got != newer {
		t.Errorf("position moved back to %+v", got)
	}
}

func TestPositionsFileIsReplacedAtomically(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "positions.db")
	s := openPositions(t, path)
	for i := 1; i <= 50; i++ {
		var p position
		p.advance(Stdout, Timestamp(i))
		commitOne(s, testID, p)
		if err := s.flush(); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), `"version":2`) {
			t.Fatalf("write %d left %q", i, b)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

func TestUnreadablePositionsFileIsAnError(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]string{
		"not json":        "garbage",
		"unknown version": `{"version":99,"containers":{}}`,
		"bad stream":      `{"version":1,"containers":{"x":{"last_stream":"stdin","last_time":1}}}`,
	}
	for name, content := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := OpenPositions(path, 0, quietLog())
			// The message goes to the user: it names the file and what to
			// do about it.
			if !errors.Is(err, ErrPositionsDB) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "delete it") {
				t.Errorf("err = %v, want ErrPositionsDB naming %s and saying what to do", err, path)
			}
		})
	}
}

func TestUnwritablePositionsDirectoryIsAnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing-dir", "positions.db")
	_, err := OpenPositions(path, 0, quietLog())
	if !errors.Is(err, ErrPositionsDB) {
		t.Errorf("err = %v, want ErrPositionsDB", err)
	}
}

// A restart of Fluent Bit: the second capture continues after the last
// line the first one had delivered, with the lines written in between, and
// reads the rest of a container that stopped meanwhile without follow.
func TestRestartWithDBContinuesAfterLastDeliveredLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "positions.db")
	d := newFakeDaemon()
	const stoppedID = "1123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	d.add(runningContainer(testID))
	d.add(runningContainer(stoppedID))
	w := newLineWriter(d, testID, 20)
	ws := newLineWriter(d, stoppedID, 21)
	w.lines(200)
	ws.lines(200)

	opts := testOptions()
	pos1 := openPositions(t, path)
	opts.Positions = pos1
	h1 := newHarness(t, d, opts)
	h1.waitFor("first lines", 10*time.Second, func(recs []recordsT) bool {
		return countFor(testID, 200)(recs) && countFor(stoppedID, 200)(recs)
	})
	h1.stop()
	first := h1.records()

	// While "Fluent Bit" is down: more lines, and one container stops
	// after writing its last ones.
	w.lines(300)
	ws.lines(100)
	d.setRunning(stoppedID, false)

	pos2 := openPositions(t, path)
	opts.Positions = pos2
	opts.ReadFromHead = false // must not matter for containers with a position
	h2 := newHarness(t, d, opts)
	h2.waitFor("the rest", 10*time.Second, func(recs []recordsT) bool {
		return countFor(testID, 300)(recs) && countFor(stoppedID, 100)(recs)
	})
	all := append(first, h2.records()...)
	checkExactlyOnce(t, all, testID, w.want)
	checkExactlyOnce(t, all, stoppedID, ws.want)
}

// The same across a restart of Fluent Bit between the pieces: the line
// begun before the stderr line is in the committed position.
func TestLongLineOpenAtARestartArrivesWholeAfterIt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "positions.db")
	d := newFakeDaemon()
	d.add(runningContainer(testID))
	long := strings.Repeat("abcdefghij", 4000)
	d.write(testID, Stdout, longLineStamp, long[:pieceLen])
	d.write(testID, Stderr, longLineStamp+Timestamp(1500*time.Millisecond), "between\n")
	opts := testOptions()
	opts.Positions = openPositions(t, path)
	first := newHarness(t, d, opts)
	first.waitFor("the stderr line", 10*time.Second, countFor(testID, 1))
	first.stop()

	d.write(testID, Stdout, longLineStamp, long[pieceLen:2*pieceLen])
	d.write(testID, Stdout, longLineStamp, long[2*pieceLen:]+"\n")
	opts.Positions = openPositions(t, path)
	second := newHarness(t, d, opts)
	second.waitFor("the long line", 10*time.Second, countFor(testID, 1))
	second.stop()
	checkExactlyOnce(t, append(first.records(), second.records()...), testID, map[StreamKind][]string{
		Stdout: {long}, Stderr: {"between"}})
}

func TestPositionsKeepLinesOpenAtTheLastLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "positions.db")
	s := openPositions(t, path)
	var p position
	p.advance(Stderr, 100)
	p.open[streamIndex(Stdout)] = openLine{ts: 90, pieces: 2, valid: true}
	s.commitBatch([]chunk{{owner: newContainerState(testID, false), pos: p}})
	if err := s.flush(); err != nil {
		t.Fatal(err)
	}
	again := openPositions(t, path)
	if got, _ := again.get(testID); got != p {
		t.Errorf("reloaded %+v, want %+v", got, p)
	}
}

// nowWriter is a lineWriter whose stamps start now, as a live daemon's
// would, so they fall after the watch of a capture started earlier.
func nowWriter(d *fakeDaemon, id string, seed uint64) *lineWriter {
	w := newLineWriter(d, id, seed)
	w.ts = Timestamp(time.Now().UnixNano())
	return w
}

// With DB, the watch continues across a restart of Fluent Bit: a container
// that had no position when it stopped, or that was created while it was
// down, has every line written while it was down delivered, and nothing
// the first run deliberately skipped (Read_From_Head off).
func TestRestartWithDBReadsContainersWithoutPositionSinceTheWatchBegan(t *testing.T) {
	path := filepath.Join(t.TempDir(), "positions.db")
	d := newFakeDaemon()
	const (
		busy    = "a000000000000000000000000000000000000000000000000000000000000000"
		quiet   = "b000000000000000000000000000000000000000000000000000000000000000"
		old     = "c000000000000000000000000000000000000000000000000000000000000000"
		started = "d000000000000000000000000000000000000000000000000000000000000000"
		exited  = "e000000000000000000000000000000000000000000000000000000000000000"
	)
	for _, id := range []string{quiet, old} {
		d.add(runningContainer(id))
	}
	// old wrote before the first run: with Read_From_Head off those lines
	// are not read, in either run.
	pastW := newLineWriter(d, old, 31)
	pastW.lines(50)
	opts := testOptions()
	opts.ReadFromHead = false
	pos1 := openPositions(t, path)
	opts.Positions = pos1
	h1 := newHarness(t, d, opts)
	// Both running containers are seeded and followed: the first run
	// watches them.
	awaitStats(t, h1.c, "two streams followed", func(s StatsSnapshot) bool {
		return s.StreamsOpen == 2 && len(d.logRequests()) >= 4
	})
	// Started while the first run watches: read from its first line.
	d.add(Container{ID: busy, Name: "busy", Image: "loggen:1"})
	d.setRunning(busy, true)
	bw := nowWriter(d, busy, 30)
	bw.lines(100)
	h1.waitFor("the busy container's lines", 10*time.Second, countFor(busy, 100))
	h1.stop()

	// Fluent Bit is down: the quiet containers write, one container starts
	// and one runs and exits.
	bw.lines(100)
	qw := nowWriter(d, quiet, 32)
	qw.lines(100)
	ow := nowWriter(d, old, 33)
	ow.lines(100)
	d.add(runningContainer(started))
	sw := nowWriter(d, started, 34)
	sw.lines(100)
	d.add(Container{ID: exited, Name: "done", Image: "loggen:1"})
	ew := nowWriter(d, exited, 35)
	ew.lines(100)

	pos2 := openPositions(t, path)
	opts.Positions = pos2
	h2 := newHarness(t, d, opts)
	h2.waitFor("the lines written while down", 10*time.Second, func(recs []recordsT) bool {
		return countFor(busy, 100)(recs) && countFor(quiet, 100)(recs) && countFor(old, 100)(recs) &&
			countFor(started, 100)(recs) && countFor(exited, 100)(recs)
	})
	h2.stop()
	all := append(h1.records(), h2.records()...)
	for id, w := range map[string]*lineWriter{busy: bw, quiet: qw, old: ow, started: sw, exited: ew} {
		checkExactlyOnce(t, all, id, w.want)
	}
}

// A chunk still queued when its container is destroyed is committed after
// the destroy: its position must not come back, or the file grows with
// every --rm container.
func TestPositionOfADestroyedContainerDoesNotComeBack(t *testing.T) {
	d := newFakeDaemon()
	c := New(d, testOptions(), quietLog())
	cs := newContainerState(testID, false)
	c.sup.containers[testID] = cs
	var p position
	p.advance(Stdout, 100)
	if err := c.q.push(context.Background(), chunk{data: []byte{0x90}, owner: cs, pos: p}); err != nil {
		t.Fatal(err)
	}
	b := c.Drain(1 << 20)
	c.sup.remove(cs)
	c.Commit(b)
	if got, ok := c.opts.Positions.get(testID); ok {
		t.Errorf("destroyed container has position %+v again", got)
	}
}

// A crash between creating a temporary file and renaming it leaves the
// file behind; the next start removes it, and only it.
func TestTemporaryFilesOfACrashAreRemovedAtStart(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "positions.db")
	left := filepath.Join(dir, ".positions.db.123456789")
	keep := []string{filepath.Join(dir, ".positions.db.bak"), filepath.Join(dir, "other.db.123")}
	for _, f := range append([]string{left}, keep...) {
		if err := os.WriteFile(f, []byte("{"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := OpenPositions(path, 0, quietLog()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(left); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s is still there (%v)", left, err)
	}
	for _, f := range keep {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("%s, not a temporary file of the store, is gone: %v", f, err)
		}
	}
}

// commitOne commits one position of container id as a batch of one chunk.
func commitOne(s *store, id string, p position) {
	s.commitBatch([]chunk{{owner: newContainerState(id, false), pos: p}})
}

// With a margin the file holds, per container, the newest position
// committed at least the margin ago; a clean stop writes the exact ones.
func TestPositionsFileTrailsCommitsByTheMargin(t *testing.T) {
	path := filepath.Join(t.TempDir(), "positions.db")
	s, err := OpenPositions(path, time.Hour, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	var older, newer position
	older.advance(Stdout, 100)
	newer.advance(Stdout, 200)
	commitOne(s, testID, older)
	s.mu.Lock()
	s.trail[0].at = time.Now().Add(-2 * time.Hour) // committed long ago
	s.mu.Unlock()
	commitOne(s, testID, newer)
	if err := s.flush(); err != nil {
		t.Fatal(err)
	}
	if got := reloaded(t, path); got != older {
		t.Errorf("the file holds %+v, want the position committed before the margin %+v", got, older)
	}
	if n, _ := s.waitWritten(context.Background(), 0); n != 1 {
		t.Errorf("the file holds %d batches, want 1", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s.run(ctx) // a clean stop
	if got := reloaded(t, path); got != newer {
		t.Errorf("after a clean stop the file holds %+v, want the exact %+v", got, newer)
	}
}

// reloaded opens path again and returns testID's position.
func reloaded(t *testing.T, path string) position {
	t.Helper()
	s := openPositions(t, path)
	p, _ := s.get(testID)
	return p
}

// A version 1 file (no watch) is read: its positions are kept, and its last
// modification stands in for the start of the watch.
func TestVersion1FileIsReadWithItsModificationTimeAsTheWatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "positions.db")
	v1 := `{"version":1,"containers":{"` + testID + `":{"last_stream":"stderr","last_time":300,"stdout_time":250,"stderr_time":300}}}`
	if err := os.WriteFile(path, []byte(v1), 0o600); err != nil {
		t.Fatal(err)
	}
	modified := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	if err := os.Chtimes(path, modified, modified); err != nil {
		t.Fatal(err)
	}
	s := openPositions(t, path)
	var want position
	want.advance(Stdout, 250)
	want.advance(Stderr, 300)
	if got, ok := s.get(testID); !ok || got != want {
		t.Errorf("position %+v (found %v), want %+v", got, ok, want)
	}
	if w, restarted := s.resumedWatch(); !restarted || w != Timestamp(modified.UnixNano()) {
		t.Errorf("watch %v (restarted %v), want %v", w, restarted, modified)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"version":2`) || !strings.Contains(string(b), fmt.Sprintf(`"watch_since":%d`, modified.UnixNano())) {
		t.Errorf("the file was not rewritten as version 2 with the watch: %s", b)
	}
}

// A count of entries at a whole-second stamp survives a reload; a count of
// one is not written, so a file of nanosecond stamps stays as version 2
// wrote it, and a version 2 file, which has no counts, reads as one.
func TestPositionsKeepTheCountOfEntriesAtTheirStamp(t *testing.T) {
	path := filepath.Join(t.TempDir(), "positions.db")
	s, err := OpenPositions(path, 0, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	const second = Timestamp(1796203125 * time.Second)
	var p position
	p.advance(Stdout, second)
	p.advanceBy(Stdout, second, 2)
	p.advance(Stderr, second+Timestamp(time.Second))
	const otherID = "1123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	var q position
	q.advance(Stdout, 100)
	const piecesID = "2123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	var r position // its last line in two pieces
	r.advance(Stderr, second)
	r.advanceBy(Stderr, second, 2)
	s.commitBatch([]chunk{{owner: newContainerState(testID, false), pos: p}, {owner: newContainerState(otherID, false), pos: q},
		{owner: newContainerState(piecesID, false), pos: r}})
	if err := s.flush(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"stdout_count":3`) || !strings.Contains(string(b), `"stderr_count":3`) ||
		strings.Count(string(b), "_count") != 2 || strings.Count(string(b), `"last_entries":2`) != 1 {
		t.Errorf("want the counts of 3 and the last line's 2 entries, nothing else, in the file: %s", b)
	}
	again, err := OpenPositions(path, 0, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := again.get(testID); got != p || got.streams[streamIndex(Stdout)].n != 3 {
		t.Errorf("reloaded %+v, want %+v", got, p)
	}
	if got, _ := again.get(otherID); got != q {
		t.Errorf("reloaded %+v, want %+v", got, q)
	}
	if got, _ := again.get(piecesID); got != r || got.first() != 2 {
		t.Errorf("reloaded %+v (first entry of the last line %d), want %+v (2)", got, got.first(), r)
	}

	v2 := `{"version":2,"watch_since":50,"containers":{"` + testID + `":{"last_stream":"stdout","last_time":300,"stdout_time":300,"stderr_time":250}}}`
	if err := os.WriteFile(path, []byte(v2), 0o600); err != nil {
		t.Fatal(err)
	}
	old, err := OpenPositions(path, 0, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	var want position
	want.advance(Stderr, 250)
	want.advance(Stdout, 300)
	if got, _ := old.get(testID); got != want {
		t.Errorf("version 2 read as %+v, want %+v", got, want)
	}
}

// A position counts entries at its stamp, so one that read more of them is
// after one that read fewer: a commit never takes it back.
func TestPositionWithMoreEntriesAtItsStampIsAfter(t *testing.T) {
	const second = Timestamp(1796203125 * time.Second)
	var fewer, more position
	fewer.advance(Stdout, second)
	more.advance(Stdout, second)
	more.advance(Stdout, second)
	if fewer.after(more) || !more.after(fewer) {
		t.Errorf("after: fewer %v, more %v; want false, true", fewer.after(more), more.after(fewer))
	}
}
