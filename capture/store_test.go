package capture

import (
	"errors"
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

func TestPositionsSurviveAWriteAndAReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "positions.db")
	s, err := OpenPositions(path, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	var p position
	p.advance(Stderr, 100)
	p.advance(Stdout, 99) // stdout's last line stamped before stderr's
	s.commit(testID, p)
	if err := s.flush(); err != nil {
		t.Fatal(err)
	}
	again, err := OpenPositions(path, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	got, ok := again.get(testID)
	if !ok || got != p {
		t.Errorf("reloaded %+v (found %v), want %+v", got, ok, p)
	}
}

func TestPositionsNeverMoveBackwards(t *testing.T) {
	s, _ := OpenPositions("", quietLog())
	var newer, older position
	newer.advance(Stdout, 200)
	older.advance(Stdout, 100)
	s.commit(testID, newer)
	s.commit(testID, older)
	if got, _ := s.get(testID); got != newer {
		t.Errorf("position moved back to %+v", got)
	}
}

func TestPositionsFileIsReplacedAtomically(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "positions.db")
	s, err := OpenPositions(path, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 50; i++ {
		var p position
		p.advance(Stdout, Timestamp(i))
		s.commit(testID, p)
		if err := s.flush(); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), `"version":1`) {
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
			_, err := OpenPositions(path, quietLog())
			if !errors.Is(err, ErrPositionsDB) || !strings.Contains(err.Error(), path) {
				t.Errorf("err = %v, want ErrPositionsDB naming %s", err, path)
			}
		})
	}
}

func TestUnwritablePositionsDirectoryIsAnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing-dir", "positions.db")
	_, err := OpenPositions(path, quietLog())
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
	pos1, err := OpenPositions(path, quietLog())
	if err != nil {
		t.Fatal(err)
	}
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

	pos2, err := OpenPositions(path, quietLog())
	if err != nil {
		t.Fatal(err)
	}
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
	var err error
	if opts.Positions, err = OpenPositions(path, quietLog()); err != nil {
		t.Fatal(err)
	}
	first := newHarness(t, d, opts)
	first.waitFor("the stderr line", 10*time.Second, countFor(testID, 1))
	first.stop()

	d.write(testID, Stdout, longLineStamp, long[pieceLen:2*pieceLen])
	d.write(testID, Stdout, longLineStamp, long[2*pieceLen:]+"\n")
	if opts.Positions, err = OpenPositions(path, quietLog()); err != nil {
		t.Fatal(err)
	}
	second := newHarness(t, d, opts)
	second.waitFor("the long line", 10*time.Second, countFor(testID, 1))
	second.stop()
	checkExactlyOnce(t, append(first.records(), second.records()...), testID, map[StreamKind][]string{
		Stdout: {long}, Stderr: {"between"}})
}

func TestPositionsKeepLinesOpenAtTheLastLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "positions.db")
	s, err := OpenPositions(path, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	var p position
	p.advance(Stderr, 100)
	p.open[streamIndex(Stdout)] = openLine{ts: 90, pieces: 2, valid: true}
	s.commit(testID, p)
	if err := s.flush(); err != nil {
		t.Fatal(err)
	}
	again, err := OpenPositions(path, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := again.get(testID); got != p {
		t.Errorf("reloaded %+v, want %+v", got, p)
	}
}
