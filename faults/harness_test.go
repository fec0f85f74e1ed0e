// Package faults runs the capture against a real Docker daemon while things
// go wrong between them: stalled, cut and slowed logs streams (through
// internal/faultproxy), a daemon restart, a crash of the capture's process,
// and a long pause of the consumer. Every test checks every line.
package faults

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/dockerlogs/fluent-bit-docker-logs/capture"
	"github.com/dockerlogs/fluent-bit-docker-logs/docker"
	"github.com/dockerlogs/fluent-bit-docker-logs/internal/capturetest"
	"github.com/dockerlogs/fluent-bit-docker-logs/internal/dockertest"
)

// TestMain removes this process's containers and image at the end.
func TestMain(m *testing.M) { os.Exit(dockertest.Main(m)) }

// mainDaemon is the local daemon's socket.
const mainDaemon = "unix:///var/run/docker.sock"

// labelTest holds the name of the test that ran a container; a test's
// capture takes only this process's containers of that test.
const labelTest = "org.dockerlogs.faults.test"

// collectTimeout bounds every wait for records. The tests run in parallel
// on two cores under the race detector; a passing test never comes near it.
const collectTimeout = 3 * time.Minute

// labels returns the labels that put a container in t's capture.
func labels(t *testing.T) map[string]string {
	return map[string]string{labelTest: capturetest.TagOf(t)}
}

// runLoggen starts a loggen container on the main daemon for t.
func runLoggen(t *testing.T, args ...string) string {
	t.Helper()
	return dockertest.Run(t, dockertest.RunOptions{Args: args, Labels: labels(t)})
}

// include selects this process's containers of test t.
func include(t *testing.T) func(capture.Container) bool {
	tag := capturetest.TagOf(t)
	return func(c capture.Container) bool {
		return c.Labels[dockertest.LabelRun] == dockertest.RunID() && c.Labels[labelTest] == tag
	}
}

// harness is the shared collector with this suite's counting source.
type harness struct {
	*capturetest.Collector
	t   *testing.T
	src *capturetest.CountingSource
	cli *docker.Client
}

// startCapture captures t's containers on host. Stop runs at cleanup
// unless the test called it first.
func startCapture(t *testing.T, host string, opts capture.Options) *harness {
	t.Helper()
	cli, err := docker.New(host, nil)
	if err != nil {
		t.Fatalf("docker.New(%q): %v", host, err)
	}
	opts.Include = include(t)
	h := &harness{t: t, src: capturetest.NewCountingSource(cli, false), cli: cli}
	h.Collector = capturetest.Start(t, h.src, opts, capturetest.TagOf(t))
	h.Describe = func(id string) string {
		reqs := h.src.Requests(id)
		return fmt.Sprintf("its last logs requests: %+v", reqs[max(0, len(reqs)-6):])
	}
	return h
}

// waitFor waits until cond holds for the records of container id.
func (h *harness) waitFor(what, id string, cond func([]received) bool) {
	h.t.Helper()
	h.WaitFor(what, id, cond, collectTimeout)
}

type received = capturetest.Received

// loggenLines is what `loggen -lines n -stream stream -size size` writes.
func loggenLines(n int, stream string, size int) map[string][]string {
	return capturetest.LoggenLines(n, stream, size, 1)
}

// splitLines splits text into lines without their newlines.
func splitLines(text string) []string {
	if text == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(text, "\n"), "\n")
}

// dockerCLI runs the docker CLI against host and returns its standard
// output; it fails the test on error.
func dockerCLI(t testing.TB, host string, args ...string) string {
	t.Helper()
	out, err := dockerCmd(host, nil, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func dockerCmd(host string, stdin io.Reader, args ...string) (string, error) {
	cmd := exec.Command("docker", append([]string{"-H", host}, args...)...)
	var o, e bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &o, &e
	if err := cmd.Run(); err != nil {
		return o.String(), fmt.Errorf("docker -H %s %s: %w: %s", host, strings.Join(args, " "), err, bytes.TrimSpace(e.Bytes()))
	}
	return o.String(), nil
}

// logsOf returns `docker logs` of a container, per stream.
func logsOf(t testing.TB, host, id string) map[string][]string {
	t.Helper()
	cmd := exec.Command("docker", "-H", host, "logs", id)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		t.Fatalf("docker -H %s logs %s: %v: %s", host, id, err, bytes.TrimSpace(e.Bytes()))
	}
	return map[string][]string{"stdout": splitLines(o.String()), "stderr": splitLines(e.String())}
}

// settledGoroutines returns the goroutine count once it has stopped
// falling: connections end asynchronously and no event says when. It
// samples every 100 ms and returns the lowest of the last 2 s (at most
// 10 s in all).
// settledGoroutines counts the goroutines of the process once the capture's
// idle connections are dropped: the HTTP pool keeps up to two per host, each
// with two goroutines, whether or not anything leaked. A stream left open is
// no idle connection and stays counted. (The SDK's Close only closes idle
// connections; the client stays usable.)
func (h *harness) settledGoroutines() int {
	h.cli.Close() //nolint:errcheck // closing idle connections cannot fail
	return settledGoroutines()
}

func settledGoroutines() int {
	low, since := runtime.NumGoroutine(), time.Now()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for time.Since(since) < 2*time.Second && time.Now().Before(deadline) {
		<-tick.C
		if n := runtime.NumGoroutine(); n < low {
			low, since = n, time.Now()
		}
	}
	return low
}

// memory reports the process's resident set size (VmRSS of
// /proc/self/status) and the Go heap in use after a collection.
func memory(t *testing.T) string {
	t.Helper()
	return fmt.Sprintf("VmRSS %s, heap %d MiB", vmRSS(t), heapAlloc()>>20)
}

// heapAlloc is the Go heap in use after a collection.
func heapAlloc() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// vmRSS reads the process's resident set size from /proc/self/status.
func vmRSS(t *testing.T) string {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return ""
}
