package faults

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dockerlogs/fluent-bit-docker-logs/internal/dockertest"
)

// daemon is a dockerd of a test's own, with its own socket, data root,
// exec root and containerd (dockerd starts one under its exec root when
// none runs at /run/containerd), so restarting it touches nothing else.
// It has no live-restore: a restart kills its containers.
type daemon struct {
	dir  string
	host string
	args []string

	cmd *exec.Cmd
	// exited is closed by the goroutine that waits for cmd.
	exited chan struct{}
}

// startDaemon starts a dockerd for t and waits until it answers. At
// cleanup its containers are removed, it is stopped (killed if it does not
// stop), and its directory is unmounted and removed.
func startDaemon(t *testing.T) *daemon {
	t.Helper()
	dockertest.Require(t)
	// Short: the socket path must stay under 108 bytes.
	dir, err := os.MkdirTemp("", "dl-dd-")
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{dir: dir, host: "unix://" + filepath.Join(dir, "docker.sock")}
	// An empty config file: the default /etc/docker/daemon.json sets
	// data-root, which must not also be a flag.
	cfg := filepath.Join(dir, "daemon.json")
	if err := os.WriteFile(cfg, []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d.args = []string{"--config-file", cfg, "--host", d.host,
		"--data-root", filepath.Join(dir, "root"), "--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "docker.pid"),
		"--bridge", "none", "--iptables=false", "--ip-masq=false", "--ip-forward=false",
		// vfs needs nothing of the kernel; the image is one static binary.
		"--storage-driver", "vfs"}
	t.Cleanup(func() { d.cleanup(t) })
	d.start(t)
	return d
}

func (d *daemon) logPath() string { return filepath.Join(d.dir, "dockerd.log") }

func (d *daemon) start(t *testing.T) {
	t.Helper()
	log, err := os.OpenFile(d.logPath(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close() // the child has its own copy
	cmd := exec.Command("dockerd", d.args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dockerd: %v", err)
	}
	d.cmd, d.exited = cmd, make(chan struct{})
	go func(exited chan struct{}) {
		defer close(exited)
		cmd.Wait() //nolint:errcheck // an exit status is expected when it is stopped
	}(d.exited)
	// Nothing announces readiness: ask until it answers.
	deadline := time.Now().Add(time.Minute)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := dockerCmd(d.host, nil, "version", "--format", "{{.Server.Version}}"); err == nil {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("dockerd did not answer within a minute: %v\n%s", err, d.logTail())
		}
		select {
		case <-d.exited:
			t.Fatalf("dockerd exited at start-up:\n%s", d.logTail())
		case <-tick.C:
		}
	}
}

// running reports whether the daemon process is alive.
func (d *daemon) running() bool {
	if d.cmd == nil {
		return false
	}
	select {
	case <-d.exited:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM and waits for the daemon to exit; after timeout it
// kills it.
func (d *daemon) stop(t *testing.T, timeout time.Duration) {
	t.Helper()
	if !d.running() {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM) //nolint:errcheck // it may just have exited
	select {
	case <-d.exited:
		return
	case <-time.After(timeout):
	}
	t.Errorf("dockerd did not stop within %s of SIGTERM; killing it", timeout)
	d.cmd.Process.Kill() //nolint:errcheck // it may just have exited
	<-d.exited
}

// restart stops the daemon with SIGTERM, waits for it to exit and starts
// it again with the same flags.
func (d *daemon) restart(t *testing.T) {
	t.Helper()
	d.stop(t, time.Minute)
	if t.Failed() {
		t.FailNow()
	}
	d.start(t)
}

// load copies an image of the main daemon into this one.
func (d *daemon) load(t *testing.T, image string) {
	t.Helper()
	save := exec.Command("docker", "save", image)
	var saveErr bytes.Buffer
	save.Stderr = &saveErr
	out, err := save.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := save.Start(); err != nil {
		t.Fatalf("docker save: %v", err)
	}
	_, loadErr := dockerCmd(d.host, out, "load")
	if err := save.Wait(); err != nil {
		t.Fatalf("docker save %s: %v: %s", image, err, bytes.TrimSpace(saveErr.Bytes()))
	}
	if loadErr != nil {
		t.Fatal(loadErr)
	}
}

func (d *daemon) logTail() string {
	b, err := os.ReadFile(d.logPath())
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(string(b), "\n")
	return strings.Join(lines[max(0, len(lines)-40):], "\n")
}

// cleanup removes every container, stops the daemon and removes its
// directory, even after a failure half-way.
func (d *daemon) cleanup(t *testing.T) {
	if d.running() {
		if ids, err := dockerCmd(d.host, nil, "ps", "-aq"); err == nil && strings.TrimSpace(ids) != "" {
			if _, err := dockerCmd(d.host, nil, append([]string{"rm", "-f"}, strings.Fields(ids)...)...); err != nil {
				t.Logf("second daemon: %v", err)
			}
		}
		d.stop(t, time.Minute)
	}
	if t.Failed() {
		t.Logf("second daemon's log, last lines:\n%s", d.logTail())
	}
	// Its containerd and shims end with it; whatever survived a kill is
	// found by its directory, which is in its command line, and killed by
	// pid.
	for _, pid := range processesUsing(d.dir) {
		t.Logf("killing leftover process %d of the second daemon", pid)
		syscall.Kill(pid, syscall.SIGKILL) //nolint:errcheck // it may be gone
	}
	for _, m := range mountsUnder(d.dir) {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
			t.Logf("unmount %s: %v", m, err)
		}
	}
	if err := os.RemoveAll(d.dir); err != nil {
		t.Errorf("remove the second daemon's directory: %v", err)
	}
}

// processesUsing lists the processes whose command line mentions dir.
func processesUsing(dir string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte(dir+"/")) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// mountsUnder lists the mount points under dir, deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			out = append(out, fields[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(out)))
	return out
}
