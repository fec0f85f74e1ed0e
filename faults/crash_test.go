package faults

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// buildCrashcap builds ./cmd/crashcap into a directory of t.
func buildCrashcap(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "crashcap")
	out, err := exec.Command("go", "build", "-o", bin, "./cmd/crashcap").CombinedOutput()
	if err != nil {
		t.Fatalf("go build ./cmd/crashcap: %v: %s", err, bytes.TrimSpace(out))
	}
	return bin
}

// crashcap is one running crashcap process.
type crashcap struct {
	cmd *exec.Cmd

	mu    sync.Mutex
	lines []string // what it reported on stdout so far
	// added is closed and replaced after every line, and closed for good
	// at EOF (eof set), by the goroutine reading stdout.
	added chan struct{}
	eof   bool
	// done is closed by the reading goroutine once the process has been
	// waited for.
	done chan struct{}
}

func startCrashcap(t *testing.T, bin, stderrPath string, args ...string) *crashcap {
	t.Helper()
	stderr, err := os.OpenFile(stderrPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close() // the child has its own copy
	c := &crashcap{cmd: exec.Command(bin, args...), added: make(chan struct{}), done: make(chan struct{})}
	c.cmd.Stderr = stderr
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start crashcap: %v", err)
	}
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.mu.Lock()
			c.lines = append(c.lines, sc.Text())
			close(c.added)
			c.added = make(chan struct{})
			c.mu.Unlock()
		}
		c.mu.Lock()
		c.eof = true
		c.mu.Unlock()
		c.cmd.Wait() //nolint:errcheck // the test reads ProcessState
	}()
	t.Cleanup(func() {
		c.cmd.Process.Kill() //nolint:errcheck // usually gone already
		<-c.done
	})
	return c
}

// waitLine waits until the process has reported a line for which ok
// holds, failing t at timeout or when the process ends first.
func (c *crashcap) waitLine(t *testing.T, what string, ok func(string) bool) {
	t.Helper()
	c.waitLineFrom(t, 0, what, ok)
}

// waitLineFrom is waitLine for the lines reported from index from on; it
// returns the index of the line found.
func (c *crashcap) waitLineFrom(t *testing.T, from int, what string, ok func(string) bool) int {
	t.Helper()
	deadline := time.NewTimer(collectTimeout)
	defer deadline.Stop()
	for seen := from; ; {
		c.mu.Lock()
		lines, added, eof := c.lines[seen:], c.added, c.eof
		seen = len(c.lines)
		c.mu.Unlock()
		for i, l := range lines {
			if ok(l) {
				return seen - len(lines) + i
			}
		}
		if eof {
			t.Fatalf("crashcap ended before reporting %s", what)
		}
		select {
		case <-added:
		case <-deadline.C:
			t.Fatalf("crashcap did not report %s within %s", what, collectTimeout)
		}
	}
}

// signal sends sig and waits for the process to end.
func (c *crashcap) signal(sig syscall.Signal) *os.ProcessState {
	c.cmd.Process.Signal(sig) //nolint:errcheck // it may have ended
	<-c.done
	return c.cmd.ProcessState
}

// reported returns the stdout lines, complete once the process ended.
func (c *crashcap) reported() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.lines...)
}

// outLine is one line of crashcap's output file.
type outLine struct {
	run, batch int
	id, stream string
	log        string
}

func readOutput(t *testing.T, path string) []outLine {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []outLine
	for i, l := range splitLines(string(b)) {
		f := strings.SplitN(l, " ", 5)
		if len(f) != 5 {
			t.Fatalf("output line %d %q is malformed", i, l)
		}
		run, err1 := strconv.Atoi(f[0])
		batch, err2 := strconv.Atoi(f[1])
		if err1 != nil || err2 != nil {
			t.Fatalf("output line %d %q is malformed", i, l)
		}
		out = append(out, outLine{run: run, batch: batch, id: f[2], stream: f[3], log: f[4]})
	}
	return out
}
