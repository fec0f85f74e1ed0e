package docker

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dockerlogs/fluent-bit-docker-logs/capture"
	"github.com/dockerlogs/fluent-bit-docker-logs/internal/dockertest"
)

// Tests against the real daemon (DOCKER_HOST or the default socket).

func TestMain(m *testing.M) { os.Exit(dockertest.Main(m)) }

type frame struct {
	stream byte
	ts     time.Time
	line   string
}

// readFrames splits a multiplexed stream and the 31-byte json-file
// timestamp prefix of each message.
func readFrames(t *testing.T, r io.Reader) []frame {
	t.Helper()
	var out []frame
	for {
		var hdr [8]byte
		if _, err := io.ReadFull(r, hdr[:]); err == io.EOF {
			return out
		} else if err != nil {
			t.Fatalf("frame header: %v", err)
		}
		if hdr[0] != 1 && hdr[0] != 2 {
			t.Fatalf("frame header %x: stream %d", hdr, hdr[0])
		}
		msg := make([]byte, binary.BigEndian.Uint32(hdr[4:]))
		if _, err := io.ReadFull(r, msg); err != nil {
			t.Fatalf("frame payload: %v", err)
		}
		ts, line := parseStamp(t, msg)
		out = append(out, frame{hdr[0], ts, line})
	}
}

// parseStamp splits a timestamped message into its stamp and the rest:
// Docker's stamp is RFC 3339 with nine fraction digits (30 bytes), Podman's
// whole seconds (20 bytes, see README, Compatibility).
func parseStamp(t *testing.T, msg []byte) (time.Time, string) {
	t.Helper()
	width := 30
	if dockertest.Server(t).Podman {
		width = 20
	}
	if len(msg) < width+1 || msg[width] != ' ' {
		t.Fatalf("message %q has no %d-byte timestamp prefix", msg, width+1)
	}
	ts, err := time.Parse(time.RFC3339Nano, string(msg[:width]))
	if err != nil {
		t.Fatalf("timestamp of %q: %v", msg, err)
	}
	return ts, string(msg[width+1:])
}

func logs(t *testing.T, c *Client, id string, req capture.LogsRequest) []byte {
	t.Helper()
	rc, err := c.Logs(context.Background(), id, req)
	if err != nil {
		t.Fatalf("Logs(%+v): %v", req, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read logs: %v", err)
	}
	return b
}

func TestDaemonInspectListAndTimestampedFramesOfPlainContainer(t *testing.T) {
	c := newClient(t, "")
	name := "dockerlogs-plain-" + dockertest.RunID()
	// The interval keeps the file order of the two streams deterministic,
	// even on a loaded machine where the daemon's copiers lag.
	id := dockertest.Run(t, dockertest.RunOptions{Name: name, Args: []string{"-lines", "4", "-stream", "both", "-interval", "250ms"}})
	dockertest.WaitExited(t, id, time.Minute)

	got, err := c.Inspect(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != id || got.Name != name || got.Image != dockertest.ReportedImage(t, dockertest.LoggenImage(t)) || got.TTY || got.Running ||
		got.Labels[dockertest.LabelRun] != dockertest.RunID() {
		t.Errorf("Inspect = %+v", got)
	}
	list, err := c.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var listed bool
	for _, l := range list {
		if l.ID == id {
			listed = l.Name == name && l.Image == got.Image && !l.Running && l.Labels[dockertest.LabelRun] == dockertest.RunID()
			if !listed {
				t.Errorf("List entry %+v", l)
			}
		}
	}
	if !listed {
		t.Errorf("container %s not in List", id)
	}

	frames := readFrames(t, bytes.NewReader(logs(t, c, id, capture.LogsRequest{Stdout: true, Stderr: true, Tail: -1})))
	var seen []string
	for _, f := range frames {
		want := map[byte]string{1: "stdout", 2: "stderr"}[f.stream]
		if !strings.HasSuffix(f.line, " stream="+want+"\n") {
			t.Errorf("frame of stream %d carries %q", f.stream, f.line)
		}
		seen = append(seen, f.line)
	}
	if len(frames) != 4 {
		t.Fatalf("got %d frames %q, want 4", len(frames), seen)
	}

	// since is inclusive and kept to the stamp's precision: asking from the
	// second stdout line's stamp returns every line stamped at or after it
	// (Docker: that line alone; Podman: every line of that second).
	var stdout, want []frame
	for _, f := range frames {
		if f.stream == 1 {
			stdout = append(stdout, f)
		}
	}
	for _, f := range stdout {
		if !f.ts.Before(stdout[1].ts) {
			want = append(want, f)
		}
	}
	since := capture.Timestamp(stdout[1].ts.UnixNano())
	after := readFrames(t, bytes.NewReader(logs(t, c, id, capture.LogsRequest{Stdout: true, Since: since, Tail: -1})))
	if fmt.Sprint(after) != fmt.Sprint(want) {
		t.Errorf("since %s: %+v, want %+v", since.SinceParam(), after, want)
	}
	for _, tc := range []struct {
		req  capture.LogsRequest
		want []string
	}{
		{capture.LogsRequest{Stdout: true, Stderr: true, Tail: 1}, []string{"seq=4 stream=stderr\n"}},
		// Daemon 20.10 takes the tail over both streams, then drops the
		// stream not asked for: fewer than Tail entries does not mean the
		// stream has no more.
		{capture.LogsRequest{Stdout: true, Tail: 1}, nil},
		{capture.LogsRequest{Stdout: true, Tail: 2}, []string{"seq=3 stream=stdout\n"}},
	} {
		var got []string
		for _, f := range readFrames(t, bytes.NewReader(logs(t, c, id, tc.req))) {
			got = append(got, f.line)
		}
		if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", tc.want) {
			t.Errorf("tail=%d stdout=%v stderr=%v: %q, want %q", tc.req.Tail, tc.req.Stdout, tc.req.Stderr, got, tc.want)
		}
	}
}

func TestDaemonTTYContainerIsInspectedAsTTYAndStreamsRawLines(t *testing.T) {
	c := newClient(t, "")
	id := dockertest.Run(t, dockertest.RunOptions{TTY: true, Args: []string{"-lines", "2", "-stream", "both"}})
	dockertest.WaitExited(t, id, time.Minute)
	got, err := c.Inspect(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if !got.TTY {
		t.Errorf("Inspect of a -t container: TTY false")
	}
	raw := logs(t, c, id, capture.LogsRequest{Stdout: true, Stderr: true, Tail: -1})
	lines := strings.SplitAfter(string(raw), "\n")
	if len(lines) != 3 || lines[2] != "" {
		t.Fatalf("raw stream %q, want 2 lines", raw)
	}
	for i, want := range []string{"seq=1 stream=stdout\r\n", "seq=2 stream=stderr\r\n"} {
		// No frame header: the stream starts with the timestamp.
		if _, rest := parseStamp(t, []byte(lines[i])); rest != want {
			t.Errorf("line %d = %q, want %q after the timestamp", i, lines[i], want)
		}
	}
}

// Podman answers the logs of a container with log driver none with a
// server error, so capture skips it by its inspect.
func TestDaemonInspectTellsALogDriverThatKeepsNoLogs(t *testing.T) {
	c := newClient(t, "")
	for driver, want := range map[string]bool{"none": true, "": false} {
		id := dockertest.Run(t, dockertest.RunOptions{LogDriver: driver, Args: []string{"-lines", "1"}})
		got, err := c.Inspect(context.Background(), id)
		if err != nil || got.NoLogs != want {
			t.Errorf("Inspect of a container with log driver %q: NoLogs=%v (%v), want %v", driver, got.NoLogs, err, want)
		}
	}
}

func TestDaemonErrorsAreClassified(t *testing.T) {
	dockertest.SkipOnPodman(t, "Podman answers the logs of a container with log driver none with HTTP 500, not Docker's 501 (capture skips it by its inspect: TestDaemonInspectTellsALogDriverThatKeepsNoLogs)")
	c := newClient(t, "")
	none := dockertest.Run(t, dockertest.RunOptions{LogDriver: "none", Args: []string{"-lines", "1"}})
	if _, err := c.Logs(context.Background(), none, capture.LogsRequest{Stdout: true, Tail: -1}); !errors.Is(err, capture.ErrLogsUnreadable) {
		t.Errorf("Logs with log driver none: %v, want ErrLogsUnreadable", err)
	}
	gone := dockertest.Run(t, dockertest.RunOptions{Args: []string{"-lines", "1"}})
	dockertest.Docker(t, "rm", "-f", gone)
	if _, err := c.Inspect(context.Background(), gone); !errors.Is(err, capture.ErrNotFound) || !strings.Contains(err.Error(), gone) {
		t.Errorf("Inspect of a removed container: %v, want ErrNotFound naming it", err)
	}
	if _, err := c.Logs(context.Background(), gone, capture.LogsRequest{Stdout: true, Tail: -1}); !errors.Is(err, capture.ErrNotFound) {
		t.Errorf("Logs of a removed container: %v, want ErrNotFound", err)
	}
}

func TestDaemonEventsReportLifecycleOfAContainer(t *testing.T) {
	c := newClient(t, "")
	dockertest.LoggenImage(t) // build before subscribing: nothing to wait for later
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	evc, errc := c.Events(ctx)

	id := dockertest.Run(t, dockertest.RunOptions{Args: []string{"-lines", "1"}})
	dockertest.WaitExited(t, id, time.Minute)
	newName := "dockerlogs-renamed-" + dockertest.RunID()
	dockertest.Docker(t, "rename", id, newName)
	dockertest.Docker(t, "rm", id)

	var actions []string
	for ev := range evc {
		if ev.ID != id {
			continue // another test process's container
		}
		actions = append(actions, string(ev.Action))
		if ev.Action == capture.ActionRename && ev.Name != newName {
			t.Errorf("rename event %+v, want name %q", ev, newName)
		}
		if ev.Action == capture.ActionDestroy {
			break
		}
	}
	if want := "[start die rename destroy]"; fmt.Sprint(actions) != want {
		t.Errorf("actions %v, want %s", actions, want)
	}
	cancel()
	for range evc {
	}
	if err := <-errc; err != nil {
		t.Errorf("Events ended with %v after cancel, want nil", err)
	}
}

func TestDaemonPausedContainerIsListedAndInspectedAsRunning(t *testing.T) {
	c := newClient(t, "")
	id := dockertest.Run(t, dockertest.RunOptions{Args: []string{"-lines", "1", "-hold"}})
	dockertest.WaitForLog(t, id, "seq=1 ", time.Minute)
	dockertest.Docker(t, "pause", id)
	got, err := c.Inspect(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Running {
		t.Errorf("Inspect of a paused container: Running false")
	}
	list, err := c.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range list {
		if l.ID == id && !l.Running {
			t.Errorf("List of a paused container: Running false: %+v", l)
		}
	}
	dockertest.Docker(t, "unpause", id)
}
