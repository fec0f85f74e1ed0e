package integration

import (
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/dockerlogs/fluent-bit-docker-logs/capture"
	"github.com/dockerlogs/fluent-bit-docker-logs/capture/jsonfile"
	"github.com/dockerlogs/fluent-bit-docker-logs/docker"
	"github.com/dockerlogs/fluent-bit-docker-logs/internal/capturetest"
	"github.com/dockerlogs/fluent-bit-docker-logs/internal/dockertest"
	"github.com/dockerlogs/fluent-bit-docker-logs/internal/linecheck"
)

// labelTest holds the name of the test that ran a container. Every capture
// takes only this process's containers (dockertest.LabelRun) of its own test,
// so parallel tests do not read each other's containers.
const labelTest = "org.dockerlogs.integration.test"

// collectTimeout bounds every wait for records. The 2-core machine runs the
// tests in parallel under the race detector, so it is generous; a passing
// test never comes near it.
const collectTimeout = 2 * time.Minute

// run starts a loggen container labelled for t and named after it; it
// returns the container's 64-hex id and its name.
func run(t *testing.T, suffix string, o dockertest.RunOptions) (id, name string) {
	t.Helper()
	name = "dl-it-" + strings.ToLower(capturetest.TagOf(t)) + "-" + suffix + "-" + dockertest.RunID()
	o.Name = name
	if o.Labels == nil {
		o.Labels = map[string]string{}
	}
	o.Labels[labelTest] = capturetest.TagOf(t)
	return dockertest.Run(t, o), name
}

// The suite runs with the logs read through the API or from the files,
// as IT_LOGS_FROM says (api, files or auto; api when unset): `make
// integration` runs it both ways.
const logsFromEnv = "IT_LOGS_FROM"

// containersPath is where this host's daemon keeps its containers (Docker
// Root Dir /var/lib/docker), readable here as root.
const containersPath = jsonfile.DefaultContainersPath

func logsFrom(t *testing.T) jsonfile.Mode {
	t.Helper()
	switch v := os.Getenv(logsFromEnv); v {
	case "", "api":
		return jsonfile.API
	case "files":
		return jsonfile.Files
	case "auto":
		return jsonfile.Auto
	default:
		t.Fatalf("%s=%q: want api, files or auto", logsFromEnv, v)
		return jsonfile.API
	}
}

// harness is the shared collector with this suite's counting source.
type harness struct {
	*capturetest.Collector
	t   *testing.T
	src *capturetest.CountingSource
}

type received = capturetest.Received

// startCapture starts a capture of t's own containers (see labelTest). Its
// Stop and the client's Close run at cleanup unless Stop ran first.
func startCapture(t *testing.T, opts capture.Options) *harness {
	t.Helper()
	return startCaptureTapped(t, opts, false)
}

// startCaptureTapped is startCapture, recording with tap the entries every
// logs stream carried.
func startCaptureTapped(t *testing.T, opts capture.Options, tap bool) *harness {
	t.Helper()
	return startCaptureFrom(t, opts, tap, logsFrom(t), containersPath)
}

// startCaptureFrom is startCaptureTapped with the logs read as mode says,
// with the containers' directories at dir.
func startCaptureFrom(t *testing.T, opts capture.Options, tap bool, mode jsonfile.Mode, dir string) *harness {
	t.Helper()
	cli, err := docker.New("", nil)
	if err != nil {
		t.Fatalf("docker.New: %v", err)
	}
	tag := capturetest.TagOf(t)
	own := opts.Include // the test's own filter, if any, on top
	opts.Include = func(c capture.Container) bool {
		return c.Labels[dockertest.LabelRun] == dockertest.RunID() && c.Labels[labelTest] == tag &&
			(own == nil || own(c))
	}
	src := capturetest.NewCountingSource(jsonfile.New(cli, mode, dir, nil), tap)
	h := &harness{t: t, src: src}
	h.Collector = capturetest.Start(t, src, opts, tag)
	h.AfterStop = func() {
		if n := src.OpenAll(); n != 0 {
			t.Errorf("%d logs streams still open after Stop", n)
		}
	}
	return h
}

// waitFor waits until cond holds for the records collected of container
// id, failing the test after collectTimeout.
func (h *harness) waitFor(what, id string, cond func([]received) bool) {
	h.t.Helper()
	h.WaitFor(what, id, cond, collectTimeout)
}

// seqAtLeast is a waitFor condition: a line of stream with seq >= n.
func seqAtLeast(stream string, n int) func([]received) bool {
	return func(recs []received) bool {
		for _, r := range recs {
			if s, st, ok := capturetest.ParseSeq(r.Log); ok && st == stream && s >= n {
				return true
			}
		}
		return false
	}
}

// appendRuns is want repeated: the lines of a container that ran runs times.
func appendRuns(want map[string][]string, runs int) map[string][]string {
	out := map[string][]string{}
	for s, lines := range want {
		for range runs {
			out[s] = append(out[s], lines...)
		}
	}
	return out
}

// checkLoggenRun fails t unless recs are exactly what `loggen -lines n
// -stream stream` wrote to container id (name): every line once and in
// order, with Docker's own stamps and the container's fields.
func checkLoggenRun(t *testing.T, recs []received, id, name string, n int, stream string) {
	t.Helper()
	capturetest.CheckExactlyOnce(t, recs, capturetest.LoggenLines(n, stream, 0, 1))
	checkAgainstDockerLogs(t, recs, dockerLogs(t, id))
	checkFields(t, recs, id, name)
}

// checkFields fails t unless every record carries the container's fields as
// Docker knows them and none is marked truncated.
func checkFields(t *testing.T, recs []received, id, name string) {
	t.Helper()
	image := dockertest.ReportedImage(t, dockertest.LoggenImage(t))
	bad := 0
	for i, r := range recs {
		if r.ContainerID != id || r.ContainerName != name || r.ContainerImage != image || r.Truncated {
			if bad++; bad <= 3 {
				t.Errorf("record %d: id=%q name=%q image=%q truncated=%v, want id=%q name=%q image=%q not truncated",
					i, r.ContainerID, r.ContainerName, r.ContainerImage, r.Truncated, id, name, image)
			}
		}
	}
	if bad > 3 {
		t.Errorf("... %d records with wrong fields in all", bad)
	}
}

// stamped is one line of `docker logs -t`.
type stamped struct {
	ts   time.Time
	text string
}

// dockerLogs returns `docker logs -t` of the container, per stream, in file
// order: Docker's own stamp of every line.
func dockerLogs(t *testing.T, id string) map[string][]stamped {
	t.Helper()
	cmd := exec.Command("docker", "logs", "-t", id)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		t.Fatalf("docker logs -t %s: %v: %s", id, err, bytes.TrimSpace(e.Bytes()))
	}
	out := map[string][]stamped{}
	podman := dockertest.Server(t).Podman
	for s, b := range map[string]*bytes.Buffer{"stdout": &o, "stderr": &e} {
		text := b.String()
		if podman {
			// Podman prints the pieces it cut a line into one after the
			// other, each with its stamp: the line is what lies between.
			text = podmanPieceStamp.ReplaceAllString(text, "${1}")
		}
		if text == "" {
			continue
		}
		for _, l := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
			stamp, rest, ok := strings.Cut(l, " ")
			ts, err := time.Parse(time.RFC3339Nano, stamp)
			if !ok || err != nil {
				t.Fatalf("docker logs -t %s: line %q has no timestamp (%v)", id, linecheck.Short(l), err)
			}
			out[s] = append(out[s], stamped{ts, strings.TrimSuffix(rest, "\r")})
		}
	}
	return out
}

// podmanPieceStamp is the stamp of a piece of a line that Podman cut: a
// whole-second stamp and its space inside a line of `docker logs -t`.
var podmanPieceStamp = regexp.MustCompile(`([^\n])[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z `)

// checkAgainstDockerLogs fails t unless the records are, per stream, exactly
// the lines of `docker logs -t`, each with Docker's stamp to the nanosecond.
func checkAgainstDockerLogs(t *testing.T, recs []received, logs map[string][]stamped) {
	t.Helper()
	got := capturetest.ByStream(recs)
	for _, s := range []string{"stdout", "stderr"} {
		g, w := got[s], logs[s]
		if len(g) != len(w) {
			t.Errorf("%s: %d records, docker logs has %d lines", s, len(g), len(w))
		}
		for i := 0; i < min(len(g), len(w)); i++ {
			if g[i].Log != w[i].text || g[i].Time.UnixNano() != w[i].ts.UnixNano() {
				t.Errorf("%s record %d: %q at %s, docker logs -t has %q at %s",
					s, i, linecheck.Short(g[i].Log), g[i].Time.Format(time.RFC3339Nano), linecheck.Short(w[i].text), w[i].ts.Format(time.RFC3339Nano))
				break
			}
		}
	}
}

// goroutineBaseline builds the loggen image (a test's first docker use
// starts nothing of ours that outlives it) and returns the goroutine count
// the test must come back to.
func goroutineBaseline(t *testing.T) int {
	t.Helper()
	dockertest.LoggenImage(t)
	return runtime.NumGoroutine()
}

// checkGoroutinesBack fails t unless the goroutine count comes back to
// baseline. Goroutines end asynchronously after the stream's connections
// close (net/http's persistConn loops, the SDK's events goroutine), and no
// event tells when, so this polls the count until a deadline; it reports
// what remained right after Stop when that differed.
func checkGoroutinesBack(t *testing.T, baseline int) {
	t.Helper()
	first := runtime.NumGoroutine()
	firstStacks := ""
	if first > baseline {
		firstStacks = capturetest.Stacks()
	}
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for runtime.NumGoroutine() > baseline {
		if time.Now().After(deadline) {
			t.Errorf("%d goroutines 10s after Stop and Close, baseline %d:\n%s", runtime.NumGoroutine(), baseline, capturetest.Stacks())
			return
		}
		<-tick.C
	}
	if first > baseline && testing.Verbose() {
		t.Logf("right after Stop and Close: %d goroutines, baseline %d; they ended by themselves:\n%s", first, baseline, firstStacks)
	}
}

// TestMain removes this process's containers and image at the end.
func TestMain(m *testing.M) { os.Exit(dockertest.Main(m)) }
