package testhost

import (
	"bufio"
	"bytes"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dockerlogs/fluent-bit-docker-logs/internal/dockertest"
	"github.com/dockerlogs/fluent-bit-docker-logs/internal/records"
)

func TestMain(m *testing.M) { os.Exit(dockertest.Main(m)) }

// labelCase marks the containers of one test, which removes them by it.
const labelCase = "org.dockerlogs.testhost.case"

// hostProps are the plugin's properties for a test with containers: only
// this test process's containers, from the start of their logs.
func hostProps() map[string]string {
	return map[string]string{
		"Include_Labels": dockertest.LabelRun + "=" + dockertest.RunID(),
		"Read_From_Head": "on",
	}
}

func TestBadKeyFailsInit(t *testing.T) {
	h := Start(t, map[string]string{"Stream_Refresh": "banana"})

	if code := h.ExitCode(); code != ExitCodeInitFailed {
		t.Fatalf("exit code %d, want %d (init failed)", code, ExitCodeInitFailed)
	}
	for _, l := range h.StderrLines() {
		if !strings.HasPrefix(l, "testhost: ") && strings.Contains(strings.ToLower(l), "stream_refresh") {
			return
		}
	}
	t.Errorf("no log line of the plugin names stream_refresh")
}

func TestRecordsFromContainers(t *testing.T) {
	image := dockertest.LoggenImage(t)
	labels := caseLabels(t)

	// Written before the host starts: only Read_From_Head delivers it.
	both := dockertest.Run(t, dockertest.RunOptions{
		Args:   []string{"-lines", "500", "-stream", "both", "-hold"},
		Labels: labels,
	})
	dockertest.WaitForLog(t, both, "seq=500 ", time.Minute)

	h := Start(t, hostProps())

	// Started while the host runs. A TTY has one stream: what loggen writes
	// to its stderr is stdout for docker too.
	tty := dockertest.Run(t, dockertest.RunOptions{
		Args:   []string{"-lines", "300", "-stream", "both", "-interval", "1ms", "-hold"},
		TTY:    true,
		Labels: labels,
	})
	dockertest.WaitForLog(t, tty, "seq=300 ", time.Minute)

	want := map[string]containerLog{
		both: dockerLogs(t, both, image),
		tty:  dockerLogs(t, tty, image),
	}
	recs := h.WaitRecords(t, func(r []records.Record) bool {
		return countByContainer(r, both) >= len(want[both].lines) &&
			countByContainer(r, tty) >= len(want[tty].lines)
	}, 2*time.Minute)

	checkDelivered(t, recs, want)
}

func TestPauseStopsDeliveryAndResumeDeliversEverything(t *testing.T) {
	image := dockertest.LoggenImage(t)
	labels := caseLabels(t)
	h := Start(t, hostProps())

	// About 6 s of lines: some before the pause, many during it.
	const lines = 600
	id := dockertest.Run(t, dockertest.RunOptions{
		Args:   []string{"-lines", strconv.Itoa(lines), "-stream", "both", "-interval", "10ms", "-hold"},
		Labels: labels,
	})
	before := h.WaitRecords(t, func(r []records.Record) bool { return countByContainer(r, id) >= 20 }, time.Minute)

	h.Pause()
	paused := h.lineCount()
	// Three collect intervals and a half with no collect is the expected
	// outcome here, so this wait runs to its timeout.
	if l, ok := h.await(paused, 3500*time.Millisecond, isCollect); ok {
		t.Fatalf("collect while paused: %q", l)
	}
	dockertest.WaitForLog(t, id, fmt.Sprintf("seq=%d ", lines), time.Minute)
	if l, ok := h.await(paused, 0, isCollect); ok {
		t.Fatalf("collect while paused: %q", l)
	}
	if n := len(h.Records(t)); n != len(before) {
		t.Fatalf("%d records while paused, had %d at the pause", n, len(before))
	}

	h.Resume()
	want := map[string]containerLog{id: dockerLogs(t, id, image)}
	recs := h.WaitRecords(t, func(r []records.Record) bool {
		return countByContainer(r, id) >= lines
	}, time.Minute)

	checkDelivered(t, recs, want)
}

func TestExitStopsEveryGoroutine(t *testing.T) {
	labels := caseLabels(t)
	h := Start(t, hostProps())
	// Still writing when the host exits: the plugin has a live stream to end.
	id := dockertest.Run(t, dockertest.RunOptions{
		Args:   []string{"-lines", "1000000", "-interval", "5ms", "-hold"},
		Labels: labels,
	})
	h.WaitRecords(t, func(r []records.Record) bool { return countByContainer(r, id) >= 10 }, time.Minute)

	info := h.Exit()
	t.Logf("exit: %+v", info)

	if info.Baseline < 0 || info.Goroutines < 0 {
		t.Fatalf("the plugin does not export DockerLogsGoroutines: %+v", info)
	}
	if info.TookMS >= 2000 {
		t.Errorf("exit took %d ms, want < 2000", info.TookMS)
	}
	if info.Goroutines != info.Baseline {
		t.Errorf("%d goroutines after exit, %d before init", info.Goroutines, info.Baseline)
	}
}

func isCollect(l string) bool { return ParseLine(l).Kind == LineCollect }

// caseLabels returns labels for this test's containers and removes every
// container carrying them when the test ends.
func caseLabels(t *testing.T) map[string]string {
	t.Helper()
	dockertest.Require(t)
	value := dockertest.RunID() + "-" + t.Name()
	filter := "label=" + labelCase + "=" + value
	t.Cleanup(func() {
		if ids := strings.Fields(dockertest.Docker(t, "ps", "-aq", "--no-trunc", "--filter", filter)); len(ids) > 0 {
			dockertest.Docker(t, append([]string{"rm", "-f", "-v"}, ids...)...)
		}
	})
	return map[string]string{labelCase: value}
}

// logLine is one line as `docker logs -t` prints it.
type logLine struct {
	time   time.Time
	stream string
	text   string // without the line end
}

// containerLog is what a container's records must carry.
type containerLog struct {
	name, image string
	lines       map[int]logLine // by loggen's seq
}

var seqRE = regexp.MustCompile(`^seq=(\d+) stream=(?:stdout|stderr)`)

// dockerLogs reads the container's log with `docker logs -t`, each stream on
// its own pipe so that the stream of every line is known.
func dockerLogs(t *testing.T, id, image string) containerLog {
	t.Helper()
	cmd := exec.Command("docker", "logs", "-t", id)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("docker logs -t %s: %v: %s", id, err, stderr.Bytes())
	}
	c := containerLog{
		name:  strings.TrimPrefix(dockertest.Docker(t, "inspect", "--format", "{{.Name}}", id), "/"),
		image: image,
		lines: map[int]logLine{},
	}
	for stream, out := range map[string]*bytes.Buffer{"stdout": &stdout, "stderr": &stderr} {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			ts, text, ok := strings.Cut(sc.Text(), " ")
			if !ok {
				t.Fatalf("docker logs -t line %q has no timestamp", sc.Text())
			}
			tm, err := time.Parse(time.RFC3339Nano, ts)
			if err != nil {
				t.Fatalf("docker logs -t line %q: %v", sc.Text(), err)
			}
			text = strings.TrimSuffix(text, "\r") // TTY lines end in \r\n
			m := seqRE.FindStringSubmatch(text)
			if m == nil {
				t.Fatalf("docker logs -t line %q is not loggen's", sc.Text())
			}
			seq, _ := strconv.Atoi(m[1])
			c.lines[seq] = logLine{time: tm, stream: stream, text: text}
		}
	}
	return c
}

func countByContainer(recs []records.Record, id string) int {
	n := 0
	for _, r := range recs {
		if r.ContainerID == id {
			n++
		}
	}
	return n
}

var hex64 = regexp.MustCompile(`^[0-9a-f]{64}$`)

// checkDelivered checks that recs hold every line of want exactly once, in
// order within each container's stream, with docker's time and the
// container's metadata, and nothing else.
func checkDelivered(t *testing.T, recs []records.Record, want map[string]containerLog) {
	t.Helper()
	const maxErrors = 20
	var errs []string
	fail := func(format string, args ...any) {
		if len(errs) < maxErrors {
			errs = append(errs, fmt.Sprintf(format, args...))
		}
	}
	type streamKey struct{ id, stream string }
	seen := map[string]map[int]bool{}
	last := map[streamKey]int{}
	for i, r := range recs {
		if !hex64.MatchString(r.ContainerID) {
			fail("record %d: container_id %q is not 64 hex", i, r.ContainerID)
			continue
		}
		c, ok := want[r.ContainerID]
		if !ok {
			fail("record %d: from container %s, not one of this test's", i, r.ContainerID)
			continue
		}
		if r.ContainerName != c.name {
			fail("record %d: container_name %q, want %q", i, r.ContainerName, c.name)
		}
		if r.ContainerImage != c.image {
			fail("record %d: container_image %q, want %q", i, r.ContainerImage, c.image)
		}
		text := strings.TrimRight(r.Log, "\r\n")
		m := seqRE.FindStringSubmatch(text)
		if m == nil {
			fail("record %d: log %q is not a loggen line", i, r.Log)
			continue
		}
		seq, _ := strconv.Atoi(m[1])
		l, ok := c.lines[seq]
		if !ok {
			fail("record %d: seq %d is not in docker logs", i, seq)
			continue
		}
		if seen[r.ContainerID] == nil {
			seen[r.ContainerID] = map[int]bool{}
		}
		if seen[r.ContainerID][seq] {
			fail("record %d: seq %d of %.12s delivered again", i, seq, r.ContainerID)
			continue
		}
		seen[r.ContainerID][seq] = true
		if text != l.text {
			fail("record %d: log %q, docker logs has %q", i, r.Log, l.text)
		}
		if r.Stream != l.stream {
			fail("record %d: seq %d stream %q, want %q", i, seq, r.Stream, l.stream)
		}
		if !r.Time.Equal(l.time) {
			fail("record %d: seq %d time %s, docker logs -t says %s", i, seq,
				r.Time.Format(time.RFC3339Nano), l.time.Format(time.RFC3339Nano))
		}
		k := streamKey{r.ContainerID, r.Stream}
		if seq < last[k] {
			fail("record %d: seq %d after seq %d on %s of %.12s", i, seq, last[k], r.Stream, r.ContainerID)
		}
		last[k] = seq
	}
	for id, c := range want {
		for _, seq := range slices.Sorted(maps.Keys(c.lines)) {
			if !seen[id][seq] {
				fail("seq %d of %.12s (%s) never delivered", seq, id, c.lines[seq].stream)
			}
		}
	}
	if len(errs) > 0 {
		t.Errorf("%d records checked; first problems:\n%s", len(recs), strings.Join(errs, "\n"))
	}
}
