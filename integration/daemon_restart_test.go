package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/dockerlogs/fluent-bit-docker-logs/internal/capturetest"
	"github.com/dockerlogs/fluent-bit-docker-logs/internal/dockertest"
)

// restartDaemon restarts the daemon of the test matrix named by
// DOCKERLOGS_DAEMON with scripts/daemon.sh, or skips t: the system daemon
// is shared with everything else on the machine (faults/ restarts a dockerd
// of its own instead).
func restartDaemon(t *testing.T) {
	t.Helper()
	name := os.Getenv("DOCKERLOGS_DAEMON")
	if name != "docker29" && name != "podman" {
		t.Skipf("skipped on the system daemon (DOCKERLOGS_DAEMON=%q): it is shared, so only a daemon started by scripts/daemon.sh is restarted; faults/ restarts a dockerd of its own", name)
	}
	cmd := exec.Command("../scripts/daemon.sh", name, "restart")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("restart %s: %v\n%s", name, err, out.Bytes())
	}
}

// A restart of the daemon (a Docker 29 daemon or a Podman service of the
// matrix) ends every stream and the events stream: the capture reconnects
// and every line of every run arrives once. Podman's container keeps
// running under conmon and logs through the restart; Docker stops it (no
// live-restore) and starts it again (restart policy always), so there the
// first run is let finish before the restart and a second run follows.
func TestDaemonRestartDeliversEveryLineOnce(t *testing.T) {
	const lines = 2000
	podman := dockertest.Server(t).Podman
	opts := capturetest.Options()
	opts.StreamRefresh = time.Second
	h := startCapture(t, opts)
	// About 4 s of lines or more, then it waits to be stopped.
	id, name := run(t, "restart", dockertest.RunOptions{Restart: "always",
		Args: []string{"-lines", fmt.Sprint(lines), "-interval", "2ms", "-stream", "both", "-hold"}})
	runs, before := 1, 200
	if !podman {
		runs, before = 2, lines
	}
	h.waitFor("lines before the restart", id, capturetest.AtLeast(before))
	restartDaemon(t)
	h.waitFor("every line", id, capturetest.AtLeast(runs*lines))
	dockertest.Docker(t, "stop", "-t", "10", id)
	h.Stop()
	recs := h.Of(id)
	capturetest.CheckExactlyOnce(t, recs, appendRuns(capturetest.LoggenLines(lines, "both", 0, 1), runs))
	checkAgainstDockerLogs(t, recs, dockerLogs(t, id))
	checkFields(t, recs, id, name)
}
