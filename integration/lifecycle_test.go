package integration

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dockerlogs/fluent-bit-docker-logs/capture"
	"github.com/dockerlogs/fluent-bit-docker-logs/internal/capturetest"
	"github.com/dockerlogs/fluent-bit-docker-logs/internal/dockertest"
)

// pollUntil polls cond against a deadline, for states that send no event
// (streams opened, readers returned).
func pollUntil(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s", what, timeout)
		}
		<-tick.C
	}
}

// numberedFrom is what loggen -stream both writes from seq first to last.
func numberedFrom(first, last int) map[string][]string {
	want := map[string][]string{}
	for seq := first; seq <= last; seq++ {
		s := map[bool]string{true: "stdout", false: "stderr"}[seq%2 == 1]
		want[s] = append(want[s], capturetest.Numbered(seq, s, 0))
	}
	return want
}

// Sequential: it counts goroutines.
func TestPausedWhileFollowedLosesNothingAndKeepsOneStream(t *testing.T) {
	const lines = 400
	baseline := goroutineBaseline(t)
	opts := capturetest.Options()
	opts.StreamRefresh = time.Second
	h := startCapture(t, opts)
	id, name := run(t, "pause", dockertest.RunOptions{Args: []string{"-lines", fmt.Sprint(lines), "-interval", "5ms", "-stream", "both", "-hold"}})
	h.waitFor("100 lines", id, capturetest.AtLeast(100))
	dockertest.Docker(t, "pause", id)
	// The follow stream of a paused container stays open and quiet: it is
	// refreshed, and each refresh resumes after the last line.
	opened := len(h.src.Streams(id))
	pollUntil(t, "3 streams opened while paused", time.Minute, func() bool { return len(h.src.Streams(id)) >= opened+3 })
	dockertest.Docker(t, "unpause", id)
	h.waitFor("every line", id, capturetest.AtLeast(lines))
	dockertest.Docker(t, "stop", id)
	h.Stop()
	checkLoggenRun(t, h.Of(id), id, name, lines, "both")
	if n := h.src.MaxOpen(id); n != 1 {
		t.Errorf("%d streams of the paused container open at once, want 1", n)
	}
	if bound := baseline + goroutineSlack + goroutinesPerReadable; h.MaxGoroutines() > bound {
		t.Errorf("%d goroutines while reading 1 paused container, bound %d", h.MaxGoroutines(), bound)
	}
	t.Logf("%d streams opened; goroutines: baseline %d, max %d", len(h.src.Streams(id)), baseline, h.MaxGoroutines())
	dockertest.Docker(t, "rm", "-f", id)
	checkGoroutinesBack(t, baseline)
}

func TestPausedAtStartupIsReadOnceAfterUnpause(t *testing.T) {
	t.Parallel()
	const lines = 300
	id, name := run(t, "paused", dockertest.RunOptions{Args: []string{"-lines", fmt.Sprint(lines), "-interval", "10ms", "-stream", "both", "-hold"}})
	dockertest.WaitForLog(t, id, "seq=20 ", time.Minute)
	dockertest.Docker(t, "pause", id)
	before := lastSeq(t, id)
	// The probe's first record proves each capture has listed the
	// containers: records flow only after that.
	probe, _ := run(t, "probe", dockertest.RunOptions{Args: []string{"-lines", "100000", "-interval", "50ms", "-hold"}})
	dockertest.WaitForLog(t, probe, "seq=1 ", time.Minute)
	head := startCapture(t, capturetest.Options())
	opts := capturetest.Options()
	opts.ReadFromHead = false
	fromNow := startCapture(t, opts)
	head.waitFor("a line of the probe", probe, capturetest.AtLeast(1))
	fromNow.waitFor("a line of the probe", probe, capturetest.AtLeast(1))
	dockertest.Docker(t, "unpause", id)
	head.waitFor("every line", id, capturetest.AtLeast(lines))
	fromNow.waitFor("the last line", id, seqAtLeast("stderr", lines))
	dockertest.Docker(t, "stop", id)
	head.Stop()
	fromNow.Stop()
	checkLoggenRun(t, head.Of(id), id, name, lines, "both")
	// Without Read_From_Head: from start-up on, so every line after the
	// pause, once.
	capturetest.CheckExactlyOnce(t, fromNow.Of(id), numberedFrom(before+1, lines))
	checkFields(t, fromNow.Of(id), id, name)
}

func TestReadFromHeadReadsAStoppedContainerOnceAndNotAgainAfterARestartWithDB(t *testing.T) {
	t.Parallel()
	const lines = 300
	db := filepath.Join(t.TempDir(), "positions.db")
	withDB := func() capture.Options {
		o := capturetest.Options() // Read_From_Head on
		var err error
		if o.Positions, err = capture.OpenPositions(db, 0, logrus.NewEntry(logrus.New())); err != nil {
			t.Fatal(err)
		}
		return o
	}
	id, name := run(t, "stopped", dockertest.RunOptions{Args: []string{"-lines", fmt.Sprint(lines), "-stream", "both"}})
	dockertest.WaitExited(t, id, time.Minute)
	h := startCapture(t, withDB())
	h.waitFor("every line", id, capturetest.AtLeast(lines))
	pollUntil(t, "the stopped container's reader returned", time.Minute, func() bool { return h.C.Stats().ContainersWatched == 0 })
	h.Stop() // writes the positions
	checkLoggenRun(t, h.Of(id), id, name, lines, "both")
	for _, r := range h.src.Requests(id) {
		if r.Follow {
			t.Errorf("the stopped container's log was followed: %+v", r)
		}
	}

	// A restart with the same DB: another stopped container, never read,
	// shows the start-up reads are under way; the first is not read again.
	other, _ := run(t, "other", dockertest.RunOptions{Args: []string{"-lines", "50"}})
	dockertest.WaitExited(t, other, time.Minute)
	again := startCapture(t, withDB())
	again.waitFor("the other container's lines", other, capturetest.AtLeast(50))
	pollUntil(t, "the start-up reads done", time.Minute, func() bool { return again.C.Stats().ContainersWatched == 0 })
	again.Stop()
	if n := len(again.Of(id)); n != 0 {
		t.Errorf("%d records of the stopped container after a restart with DB, want 0", n)
	}
	capturetest.CheckExactlyOnce(t, again.Of(other), capturetest.LoggenLines(50, "stdout", 0, 1))
}
