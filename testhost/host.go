// Package testhost runs the plugin in goproxy-testhost, a small C program
// (goproxy_testhost.c) that loads build/docker_logs.so with dlopen and drives
// it as Fluent Bit's Go proxy does: register, init on a dedicated thread, a
// collect every second, pause, resume and exit. It is a test host, not
// Fluent Bit.
//
// The host appends every collected buffer, raw, to an OUT file and reports on
// stderr, one line per event (see the head of goproxy_testhost.c). A Host
// follows those lines, so tests wait for events (a collect, an "ok pause")
// instead of sleeping.
package testhost

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dockerlogs/fluent-bit-docker-logs/internal/records"
)

// ExitCodeInitFailed is the host's exit code when FLBPluginInit fails.
const ExitCodeInitFailed = 3

const (
	// Make targets, relative to the repository root.
	pluginSO   = "build/docker_logs.so"
	hostBinary = "build/goproxy-testhost"

	// startTimeout bounds register + init; commandTimeout one command.
	startTimeout   = 60 * time.Second
	commandTimeout = 20 * time.Second
)

var (
	repoRoot    = sync.OnceValues(findRoot)
	pluginBuild = sync.OnceValues(func() (string, error) { return makeTarget(pluginSO) })
	hostBuild   = sync.OnceValues(func() (string, error) { return makeTarget(hostBinary) })
)

func findRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("go env GOMOD printed %q: not inside the module", mod)
	}
	return filepath.Dir(mod), nil
}

// BuildPlugin runs `make build/docker_logs.so` in the repository root, once
// per test process, and returns the path of the library.
func BuildPlugin(t testing.TB) string { t.Helper(); return built(t, pluginBuild, "plugin") }

// BuildHost runs `make build/goproxy-testhost` (cc on goproxy_testhost.c) in
// the repository root, once per test process, and returns the binary's path.
func BuildHost(t testing.TB) string { t.Helper(); return built(t, hostBuild, "test host") }

func built(t testing.TB, build func() (string, error), what string) string {
	t.Helper()
	path, err := build()
	if err != nil {
		t.Fatalf("build %s: %v", what, err)
	}
	return path
}

// makeTarget runs make for one file target in the repository root and
// returns the file's path.
func makeTarget(target string) (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.Command("make", target)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("make %s: %w\n%s", target, err, out)
	}
	return filepath.Join(root, target), nil
}

// ExitInfo is what the host reports when it exits.
// The goroutine counts are -1 if the plugin does not export
// DockerLogsGoroutines.
type ExitInfo struct {
	TookMS int // from the exit command to the end of FLBPluginExit
	// Goroutines is the count after FLBPluginExit, once back to Baseline or
	// after at most a second (SettleMS): goroutines that were just ending
	// (a WaitGroup already signalled, a closed connection's loop) are gone.
	Goroutines int
	AtReturn   int // the count the moment FLBPluginExit returned
	SettleMS   int
	Baseline   int // after FLBPluginRegister, before FLBPluginInit (lowest of a few readings)
}

// Host is one running goproxy-testhost.
type Host struct {
	t      testing.TB
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	exited chan struct{} // closed by follow once stderr is drained and the process reaped

	mu       sync.Mutex
	lines    []string      // every stderr line so far
	changed  chan struct{} // closed and replaced by follow whenever a line arrives
	exitCode int           // -1 until exited is closed
	outs     []*out        // one per instance; guarded by mu
	// several: the host runs the instances as several (-i, -C), each
	// collect written straight to its OUT; one instance's OUT is written
	// by the host's output (storage.type), which says "out".
	several bool
}

// out is the OUT file of one instance.
type out struct {
	path      string
	collected int // bytes its "out" (one instance) or "collect" lines (several) report: how much of the file is complete
	decoded   []records.Record
	decodedTo int // bytes of the file already in decoded
}

// Start runs the host on the plugin (built by BuildPlugin) with the given
// properties, each passed as -p key=value, and waits until FLBPluginInit has
// returned. If init failed, the host has exited when Start returns and
// ExitCode tells how. The host is stopped, if still running, when the test
// ends.
func Start(t testing.TB, props map[string]string) *Host {
	t.Helper()
	return start(t, []map[string]string{props}, nil)
}

// PropertyArgs are the host's arguments for the plugin's properties: -p
// key=value for each, in key order.
func PropertyArgs(props map[string]string) []string {
	var args []string
	for _, k := range slices.Sorted(maps.Keys(props)) {
		args = append(args, "-p", k+"="+props[k])
	}
	return args
}

// StartInstances is Start with one [INPUT] section of the plugin per
// element of props, each with its own OUT file, run as Fluent Bit 5.1 runs
// several (see multi_main in goproxy_testhost.c). Instances are numbered
// from 1 in that order. Start returns once every init returned, or one
// failed.
func StartInstances(t testing.TB, props []map[string]string) *Host {
	t.Helper()
	return start(t, props, nil)
}

// StartWithoutCtx is StartInstances in a host older than Fluent Bit 4.1,
// which calls none of the Ctx callbacks.
func StartWithoutCtx(t testing.TB, props []map[string]string) *Host {
	t.Helper()
	return start(t, props, []string{"-C"})
}

// StartArgs is Start with more arguments for the host itself (-F).
func StartArgs(t testing.TB, props map[string]string, hostArgs ...string) *Host {
	t.Helper()
	return start(t, []map[string]string{props}, hostArgs)
}

func start(t testing.TB, props []map[string]string, hostArgs []string) *Host {
	t.Helper()
	so := BuildPlugin(t)
	bin := BuildHost(t)

	h := &Host{
		t:        t,
		exited:   make(chan struct{}),
		changed:  make(chan struct{}),
		exitCode: -1,
		several:  len(props) > 1 || slices.Contains(hostArgs, "-C"),
	}
	dir := t.TempDir()
	args := hostArgs
	for i, p := range props {
		o := &out{path: filepath.Join(dir, fmt.Sprintf("out%d.msgpack", i+1))}
		h.outs = append(h.outs, o)
		if i > 0 {
			args = append(args, "-i")
		}
		args = append(args, "-o", o.path)
		args = append(args, PropertyArgs(p)...)
	}
	args = append(args, so)

	h.cmd = exec.Command(bin, args...)
	var err error
	if h.stdin, err = h.cmd.StdinPipe(); err != nil {
		t.Fatalf("test host stdin: %v", err)
	}
	stderr, err := h.cmd.StderrPipe()
	if err != nil {
		t.Fatalf("test host stderr: %v", err)
	}
	if err := h.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go h.follow(stderr)
	t.Cleanup(h.stop)

	line, ok := h.await(0, startTimeout, func(l string) bool {
		k := ParseLine(l).Kind
		return k == LineInitOK || k == LineInitFailed
	})
	switch {
	case ok && ParseLine(line).Kind == LineInitOK:
	case !h.waitExited(commandTimeout):
		t.Fatalf("test host neither finished init nor exited within %v", startTimeout)
	case h.ExitCode() != ExitCodeInitFailed:
		// Not an init failure a test could expect: the plugin did not load or register.
		t.Fatalf("test host exited with code %d before init", h.ExitCode())
	}
	return h
}

// follow reads the host's stderr until EOF, then reaps the process.
func (h *Host) follow(stderr io.Reader) {
	sc := bufio.NewScanner(stderr)
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		h.mu.Lock()
		h.lines = append(h.lines, line)
		switch l := ParseLine(line); {
		case !h.several && l.Kind == LineOut:
			h.outs[0].collected += l.Bytes
		case h.several && l.Kind == LineCollect && l.Instance >= 1 && l.Instance <= len(h.outs):
			h.outs[l.Instance-1].collected += l.Bytes
		}
		close(h.changed)
		h.changed = make(chan struct{})
		h.mu.Unlock()
	}
	// Wait closes the pipe; it must come after the last read.
	err := h.cmd.Wait()
	h.mu.Lock()
	h.exitCode = h.cmd.ProcessState.ExitCode()
	if err != nil && h.exitCode == -1 {
		h.lines = append(h.lines, "testhost.go: "+err.Error())
	}
	h.mu.Unlock()
	close(h.exited)
}

// await waits for a stderr line at index from or later that satisfies match.
// It returns false if the host exited or timeout passed first.
func (h *Host) await(from int, timeout time.Duration, match func(string) bool) (string, bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		h.mu.Lock()
		for ; from < len(h.lines); from++ {
			if match(h.lines[from]) {
				line := h.lines[from]
				h.mu.Unlock()
				return line, true
			}
		}
		changed := h.changed
		h.mu.Unlock()

		select {
		case <-changed:
		case <-h.exited:
			// Every line is in by now: one last look.
			select {
			case <-changed:
				continue
			default:
				return "", false
			}
		case <-deadline.C:
			return "", false
		}
	}
}

func (h *Host) lineCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.lines)
}

func (h *Host) waitExited(timeout time.Duration) bool {
	select {
	case <-h.exited:
		return true
	case <-time.After(timeout):
		return false
	}
}

// command sends one stdin command and waits for its "ok" line.
func (h *Host) command(cmd string) {
	h.t.Helper()
	from := h.lineCount()
	if _, err := io.WriteString(h.stdin, cmd+"\n"); err != nil {
		h.t.Fatalf("send %q to the test host: %v", cmd, err)
	}
	if _, ok := h.await(from, commandTimeout, func(l string) bool {
		p := ParseLine(l)
		return p.Kind == LineOK && p.Command == cmd
	}); !ok {
		h.t.Fatalf("test host did not answer %q within %v (exit code %d)",
			cmd, commandTimeout, h.ExitCode())
	}
}

// Pause does what Fluent Bit does on mem_buf_limit: FLBPluginInputPause, and
// no collect until Resume. It returns once done.
func (h *Host) Pause() { h.t.Helper(); h.command("pause") }

// Resume calls FLBPluginInputResume and restarts the collect timer.
func (h *Host) Resume() { h.t.Helper(); h.command("resume") }

// PauseInstance pauses instance k of several as Fluent Bit 5.1 does:
// FLBPluginInputPause on k's thread, then the collect timer of the LAST
// instance stops, not k's (flb_proxy_input_cb_pause).
func (h *Host) PauseInstance(k int) { h.t.Helper(); h.command(fmt.Sprintf("pause %d", k)) }

// ResumeInstance undoes PauseInstance in the same way.
func (h *Host) ResumeInstance(k int) { h.t.Helper(); h.command(fmt.Sprintf("resume %d", k)) }

// Exit shuts the host down as Fluent Bit does on SIGTERM (pause, then
// FLBPluginExit on the collector thread) and waits for it to exit 0.
func (h *Host) Exit() ExitInfo {
	h.t.Helper()
	from := h.lineCount()
	if _, err := io.WriteString(h.stdin, "exit\n"); err != nil {
		h.t.Fatalf("send exit to the test host: %v", err)
	}
	line, ok := h.await(from, commandTimeout, func(l string) bool { return ParseLine(l).Kind == LineExit })
	if !ok {
		h.t.Fatalf("test host did not exit within %v", commandTimeout)
	}
	var info ExitInfo
	if _, err := fmt.Sscanf(line, "exit took_ms=%d goroutines=%d at_return=%d settle_ms=%d",
		&info.TookMS, &info.Goroutines, &info.AtReturn, &info.SettleMS); err != nil {
		h.t.Fatalf("parse %q: %v", line, err)
	}
	info.Baseline = h.baseline()
	if !h.waitExited(commandTimeout) {
		h.t.Fatalf("test host printed %q but did not end", line)
	}
	if code := h.ExitCode(); code != 0 {
		h.t.Fatalf("test host exited with code %d", code)
	}
	return info
}

func (h *Host) baseline() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, l := range h.lines {
		if p := ParseLine(l); p.Kind == LineBaseline {
			return p.Goroutines
		}
	}
	return -1
}

// Kill ends the host with SIGKILL, as a crash of Fluent Bit: nothing of
// the plugin runs, and with storage.type memory what the host's output had
// not written is lost.
func (h *Host) Kill() {
	h.t.Helper()
	if err := h.cmd.Process.Kill(); err != nil {
		h.t.Fatalf("kill the test host: %v", err)
	}
	<-h.exited
}

// ExitCode is the host's exit code, or -1 while it runs.
func (h *Host) ExitCode() int {
	select {
	case <-h.exited:
	default:
		return -1
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.exitCode
}

// Stderr returns everything the host and the plugin wrote to stderr so far.
func (h *Host) Stderr() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return strings.Join(h.lines, "\n")
}

// StderrLines returns the stderr lines so far.
func (h *Host) StderrLines() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.lines)
}

// Records decodes the records the plugin has handed over so far: the part of
// OUT covered by "collect" lines, so a collect being written is never read
// half-way. Each collect is decoded on its own, so an event split across two
// collects fails the test, as it would break Fluent Bit.
func (h *Host) Records(t testing.TB) []records.Record {
	t.Helper()
	return h.InstanceRecords(t, 1)
}

// InstanceRecords is Records of instance k (from 1).
func (h *Host) InstanceRecords(t testing.TB, k int) []records.Record {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	o := h.outs[k-1]
	if o.collected == o.decodedTo {
		return slices.Clone(o.decoded)
	}
	f, err := os.Open(o.path)
	if err != nil {
		t.Fatalf("open OUT of instance %d: %v", k, err)
	}
	defer f.Close()
	buf := make([]byte, o.collected-o.decodedTo)
	if _, err := f.ReadAt(buf, int64(o.decodedTo)); err != nil {
		t.Fatalf("read OUT of instance %d, bytes %d-%d: %v", k, o.decodedTo, o.collected, err)
	}
	recs, err := records.Decode(buf)
	if err != nil {
		t.Fatalf("decode OUT of instance %d, bytes %d-%d: %v", k, o.decodedTo, o.collected, err)
	}
	o.decoded = append(o.decoded, recs...)
	o.decodedTo = o.collected
	return slices.Clone(o.decoded)
}

// WaitRecords re-reads the records each time the host reports a collect,
// until done returns true for them, and returns them. After timeout, or if
// the host exits first, it marks the test failed and returns what it has, so
// the caller's checks can tell what is missing.
func (h *Host) WaitRecords(t testing.TB, done func([]records.Record) bool, timeout time.Duration) []records.Record {
	t.Helper()
	return h.WaitInstanceRecords(t, 1, done, timeout)
}

// WaitInstanceRecords is WaitRecords for instance k (from 1).
func (h *Host) WaitInstanceRecords(t testing.TB, k int, done func([]records.Record) bool, timeout time.Duration) []records.Record {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		h.mu.Lock()
		changed := h.changed
		h.mu.Unlock()
		recs := h.InstanceRecords(t, k)
		if done(recs) {
			return recs
		}
		select {
		case <-changed:
		case <-h.exited:
			if recs = h.InstanceRecords(t, k); done(recs) {
				return recs
			}
			t.Errorf("test host exited (code %d) with %d records of instance %d, before they were as expected",
				h.ExitCode(), len(recs), k)
			return recs
		case <-deadline.C:
			t.Errorf("records of instance %d still not as expected after %v: %d so far", k, timeout, len(recs))
			return h.InstanceRecords(t, k)
		}
	}
}

// stop ends a host the test left running: EOF on stdin is an exit command;
// after commandTimeout it is killed. If the test failed, it logs the host's
// stderr (so the failure messages need not repeat it).
func (h *Host) stop() {
	if h.ExitCode() == -1 {
		h.stdin.Close()
		if !h.waitExited(commandTimeout) {
			h.t.Errorf("test host did not exit on EOF within %v: killing it", commandTimeout)
			_ = h.cmd.Process.Kill()
			<-h.exited
		}
	}
	if h.t.Failed() {
		h.t.Logf("test host stderr:\n%s", h.Stderr())
	}
}
