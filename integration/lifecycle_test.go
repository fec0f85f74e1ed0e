package integration

import (
	"fmt"
	"path/filepath"
	"strings"
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
	if bound := goroutineBound(t, baseline, 1); h.MaxGoroutines() > bound {
		t.Errorf("%d goroutines while reading 1 paused container, bound %d", h.MaxGoroutines(), bound)
	}
	t.Logf("%d streams opened; goroutines: baseline %d, max %d", len(h.src.Streams(id)), baseline, h.MaxGoroutines())
	dockertest.Docker(t, "rm", "-f", id)
	checkGoroutinesBack(t, baseline)
}

func TestPausedAtStartupIsReadOnceAfterUnpause(t *testing.T) {
	dockertest.SkipOnPodman(t, "a container read from now on is seeded from its last 64 entries, which on Podman's whole-second stamps may not hold every entry of the last second: the rest of that second is delivered (README, Known limits)")
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

// notOff is the test's Include_Names: names that do not end in "-off".
func notOff(c capture.Container) bool { return !strings.HasSuffix(c.Name, "-off") }

// seqsOf returns the seq of each record, in order.
func seqsOf(t *testing.T, recs []received) []int {
	t.Helper()
	var out []int
	for _, r := range recs {
		seq, _, ok := capturetest.ParseSeq(r.Log)
		if !ok {
			t.Fatalf("record %q is not a loggen line", r.Log)
		}
		out = append(out, seq)
	}
	return out
}

// checkRun fails t unless seqs are first, first+1, ... : once, no gap.
func checkRun(t *testing.T, seqs []int, first int) {
	t.Helper()
	for i, s := range seqs {
		if s != first+i {
			t.Fatalf("records are seq %v..., want one each from %d on: lost, repeated or reordered at %d", seqs[:min(len(seqs), i+3)], first, i)
		}
	}
}

func TestRenamedOutOfTheFilterStopsAfterTheLinesBeforeTheRename(t *testing.T) {
	t.Parallel()
	opts := capturetest.Options()
	opts.StreamRefresh = time.Second
	opts.Include = notOff
	h := startCapture(t, opts)
	id, name := run(t, "out", dockertest.RunOptions{Args: []string{"-lines", "100000", "-interval", "20ms", "-hold"}})
	h.waitFor("20 lines", id, capturetest.AtLeast(20))
	before := lastSeq(t, id) // written before the rename: all delivered
	dockertest.Docker(t, "rename", id, name+"-off")
	pollUntil(t, "the renamed container's reader returned", time.Minute, func() bool { return h.C.Stats().ContainersWatched == 0 })
	returned := lastSeq(t, id)
	dockertest.WaitForLog(t, id, fmt.Sprintf("seq=%d ", returned+50), time.Minute) // a second more of lines
	h.Stop()
	seqs := seqsOf(t, h.Of(id))
	checkRun(t, seqs, 1)
	if len(seqs) < before {
		t.Errorf("%d lines delivered, but %d were written before the rename", len(seqs), before)
	}
	if len(seqs) > returned {
		t.Errorf("%d lines delivered, but only %d were written when the reader had returned", len(seqs), returned)
	}
	t.Logf("%d lines before the rename command, %d delivered, %d when the reader had returned", before, len(seqs), returned)
}

func TestRenamedIntoTheFilterIsReadFromTheRenameOn(t *testing.T) {
	t.Parallel()
	id, name := run(t, "in", dockertest.RunOptions{Args: []string{"-lines", "100000", "-interval", "20ms", "-hold"}})
	dockertest.Docker(t, "rename", id, name+"-off") // not selected when capture starts
	dockertest.WaitForLog(t, id, "seq=20 ", time.Minute)
	// The probe's first record proves the capture has listed the
	// containers, the renamed one under the name not selected.
	probe, _ := run(t, "probe", dockertest.RunOptions{Args: []string{"-lines", "100000", "-interval", "50ms", "-hold"}})
	opts := capturetest.Options() // Read_From_Head on: the rename, not the head, decides
	opts.Include = notOff
	h := startCapture(t, opts)
	h.waitFor("a line of the probe", probe, capturetest.AtLeast(1))
	before := lastSeq(t, id)
	dockertest.Docker(t, "rename", id, name)
	after := lastSeq(t, id)
	h.waitFor("lines after the rename", id, seqAtLeast("stdout", after+50))
	h.Stop()
	seqs := seqsOf(t, h.Of(id))
	// Nothing of the time it had the name not selected; from the rename
	// on, every line once.
	if seqs[0] <= before || seqs[0] > after+1 {
		t.Fatalf("delivery starts at seq %d, want after %d (written before the rename) and at most %d", seqs[0], before, after+1)
	}
	checkRun(t, seqs, seqs[0])
	t.Logf("renamed in between seq %d and %d; delivered from %d to %d", before, after, seqs[0], seqs[len(seqs)-1])
}
