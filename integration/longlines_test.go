package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/dockerlogs/fluent-bit-docker-logs/capture"
	"github.com/dockerlogs/fluent-bit-docker-logs/internal/capturetest"
	"github.com/dockerlogs/fluent-bit-docker-logs/internal/dockertest"
)

// checkResumesStayWindowed fails t unless every stream of the container
// that resumed from a position did so with a tail window: none read the
// whole log. (Until a line is delivered there is no position, and the
// log is read from its head.)
func checkResumesStayWindowed(t *testing.T, h *harness, id string) {
	t.Helper()
	streams := h.src.Streams(id)
	for i, st := range streams {
		if st.Req.Since != 0 && st.Req.Tail < 0 {
			t.Errorf("stream %d resumed without a tail window: %+v", i, st.Req)
		}
	}
	// Each part of a line waits 1.5 s, beyond the 1 s refresh: streams
	// were refreshed between the parts, or the test proves nothing.
	if len(streams) < 4 {
		t.Errorf("%d streams opened; want refreshes between the parts of the long lines", len(streams))
	}
	t.Logf("%d logs streams opened", len(streams))
}

// Each long line is written in two parts 3 s apart, with a line on the
// other stream in the middle: its later pieces are stamped before that
// line, which was read, and refreshes come in between.
func TestLongLinesWrittenInPartsWhileTheOtherStreamWritesArriveOnceAcrossRefreshes(t *testing.T) {
	dockertest.SkipOnPodman(t, "Podman stamps each piece it cut a line into to the second it read it, and a line written in parts falls in two seconds: it arrives as two records (README, Known limits)")
	t.Parallel()
	const long = 40000
	opts := capturetest.Options()
	opts.StreamRefresh = time.Second
	h := startCapture(t, opts)
	id, name := run(t, "parts", dockertest.RunOptions{Args: []string{"-lines", "0", "-long", "40000", "-longs", "3",
		"-stream", "both", "-split", "1500ms", "-between"}})
	dockertest.WaitExited(t, id, time.Minute)
	want := map[string][]string{
		"stdout": {dockertest.LongLine(1, long, ""), capturetest.Numbered(2, "stdout", 0), dockertest.LongLine(3, long, "")},
		"stderr": {capturetest.Numbered(1, "stderr", 0), dockertest.LongLine(2, long, ""), capturetest.Numbered(3, "stderr", 0)},
	}
	h.waitFor("every line", id, capturetest.AllOf(want))
	h.Stop()
	recs := h.Of(id)
	capturetest.CheckExactlyOnce(t, recs, want)
	checkFields(t, recs, id, name)
	// Each record carries the stamp that starts its line in docker logs -t.
	logs := dockerLogs(t, id)
	for s, got := range capturetest.ByStream(recs) {
		for i := 0; i < min(len(got), len(logs[s])); i++ {
			if !got[i].Time.Equal(logs[s][i].ts) {
				t.Errorf("%s record %d at %s, docker logs -t has %s", s, i, got[i].Time.Format(time.RFC3339Nano), logs[s][i].ts.Format(time.RFC3339Nano))
			}
		}
	}
	checkResumesStayWindowed(t, h, id)
}

// A TTY container's 40 KB lines of a 3-byte character, written in parts:
// the daemon's pieces are not all 16,384 bytes (the cut characters' bytes
// become U+FFFD), and the raw stream has no frames to say where they end.
func TestTTYLongNonASCIILinesWrittenInPartsArriveOnceAsTheDaemonStoredThem(t *testing.T) {
	dockertest.SkipOnPodman(t, "Podman cuts a TTY's raw stream wherever its read of the terminal ended and stamps each piece, with no delimiter before the next stamp: a cut line cannot be parsed (README, Known limits)")
	t.Parallel()
	const long = 40002
	opts := capturetest.Options()
	opts.StreamRefresh = time.Second
	h := startCapture(t, opts)
	id, name := run(t, "ttyeuro", dockertest.RunOptions{TTY: true, Args: []string{"-lines", "1", "-long", "40002", "-longs", "3",
		"-fill", "€", "-split", "1500ms"}})
	dockertest.WaitExited(t, id, time.Minute)
	lines := []string{capturetest.Numbered(1, "stdout", 0)}
	for k := 1; k <= 3; k++ {
		lines = append(lines, strings.TrimSuffix(dockertest.Stored(dockertest.LongLine(k, long, "€")+"\r\n"), "\r\n"))
	}
	want := map[string][]string{"stdout": lines}
	h.waitFor("every line", id, capturetest.AllOf(want))
	h.Stop()
	recs := h.Of(id)
	capturetest.CheckExactlyOnce(t, recs, want)
	checkFields(t, recs, id, name)
	if n := h.C.Stats().Errors[capture.ReasonMalformed]; n != 0 {
		t.Errorf("%d malformed errors counted reading the daemon's own stream", n)
	}
	checkResumesStayWindowed(t, h, id)
}
