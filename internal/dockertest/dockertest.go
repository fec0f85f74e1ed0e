// Package dockertest runs test containers of the loggen image through the
// docker CLI. It uses the CLI, not the SDK, so that tests of the SDK adapter
// do not check the adapter with itself.
//
// The daemon is the one DOCKER_HOST names (the system's when unset), as for
// the SDK's client, so one variable points a whole test process at a
// Docker 29 daemon or a Podman service (scripts/daemon.sh starts them).
//
// Everything it creates carries the label org.dockerlogs.test=1 and
// org.dockerlogs.run=<RunID()>, a value unique to this test process, so that
// parallel test processes only ever remove their own containers and images.
// A package using it should call CleanupAll from TestMain (Main does).
package dockertest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

const (
	// LabelTest marks every container and image tests make.
	LabelTest = "org.dockerlogs.test"
	// LabelRun holds RunID(): which test process made the object.
	LabelRun = "org.dockerlogs.run"

	loggenPkg = "github.com/dockerlogs/fluent-bit-docker-logs/cmd/loggen"
)

// ErrNoDaemon is what Available wraps when the docker daemon cannot be used.
var ErrNoDaemon = errors.New("docker daemon not available")

var runID = sync.OnceValue(func() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b) // never fails since Go 1.24
	return strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b)
})

// RunID is the value of LabelRun on everything this process creates.
func RunID() string { return runID() }

// LongPayload is the payload of loggen's -long line of n bytes: byte i is
// pattern[i%62]. It mirrors cmd/loggen; the package's tests check the two agree.
func LongPayload(n int) string { return LongLine(0, n, "") }

// LongLine is the payload of loggen's k-th -long line (with -longs; k = 0
// without it) of n bytes filled with fill ("" for the default pattern): it
// mirrors cmd/loggen.
func LongLine(k, n int, fill string) string {
	if fill == "" {
		fill = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	}
	var b strings.Builder
	if k > 0 {
		fmt.Fprintf(&b, "long=%d ", k)
	}
	for b.Len() < n {
		b.WriteString(fill)
	}
	return b.String()[:n]
}

// Stored is line as the json-file driver gives it back: cut into pieces of
// 16 KiB, each kept as a JSON string, in which every byte that is not valid
// UTF-8 (a character cut at a piece boundary) becomes U+FFFD.
func Stored(line string) string {
	const piece = 16 * 1024
	var b strings.Builder
	for off := 0; off < len(line); off += piece {
		p := line[off:min(off+piece, len(line))]
		for len(p) > 0 {
			r, size := utf8.DecodeRuneInString(p)
			if r == utf8.RuneError && size == 1 {
				b.WriteString("\uFFFD")
			} else {
				b.WriteString(p[:size])
			}
			p = p[size:]
		}
	}
	return b.String()
}

// Daemon describes the daemon the docker CLI reaches.
type Daemon struct {
	Version    string // e.g. "29.8.0", or Podman's "4.3.1"
	APIVersion string
	// Podman: a Podman service's Docker-compatible API, which differs
	// from Docker's (see README, Compatibility).
	Podman bool
}

func (d Daemon) String() string {
	kind := "Docker"
	if d.Podman {
		kind = "Podman"
	}
	return fmt.Sprintf("%s %s (API %s)", kind, d.Version, d.APIVersion)
}

var probed = sync.OnceValues(probe)

// Available reports whether the docker CLI can reach a daemon; the error
// wraps ErrNoDaemon. The answer is taken once per process.
func Available() error {
	_, err := probed()
	return err
}

// Server returns the daemon the tests use; it skips or fails t as Require
// does when there is none.
func Server(t testing.TB) Daemon {
	t.Helper()
	Require(t)
	d, _ := probed()
	return d
}

// SkipOnPodman skips t on a Podman service, naming why the behaviour it
// checks cannot hold there.
func SkipOnPodman(t testing.TB, why string) {
	t.Helper()
	if d := Server(t); d.Podman {
		t.Skipf("skipped on %s: %s", d, why)
	}
}

func probe() (Daemon, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "version", "--format",
		"{{.Server.Version}} {{.Server.APIVersion}} {{range .Server.Components}}{{.Name}};{{end}}").CombinedOutput()
	if err != nil {
		return Daemon{}, fmt.Errorf("%w: docker version: %w: %s", ErrNoDaemon, err, bytes.TrimSpace(out))
	}
	f := strings.SplitN(strings.TrimSpace(string(out)), " ", 3)
	if len(f) < 2 {
		return Daemon{}, fmt.Errorf("%w: docker version printed %q", ErrNoDaemon, out)
	}
	d := Daemon{Version: f[0], APIVersion: f[1]}
	d.Podman = len(f) == 3 && strings.Contains(f[2], "Podman Engine;")
	return d, nil
}

// ReportedImage is the image name the daemon reports for containers run
// from tag (list, inspect): Podman qualifies a short name with
// docker.io/library/, Docker keeps it as given.
func ReportedImage(t testing.TB, tag string) string {
	t.Helper()
	if !Server(t).Podman || strings.Contains(tag, "/") {
		return tag
	}
	return "docker.io/library/" + tag
}

// Require skips t when no daemon is available, except under CI=true, where
// the daemon is always provided and its absence must fail the test.
func Require(t testing.TB) {
	t.Helper()
	require(t, Available(), os.Getenv("CI") == "true")
}

func require(t testing.TB, err error, ci bool) {
	t.Helper()
	switch {
	case err == nil:
	case ci:
		t.Fatalf("CI=true but %v", err)
	default:
		t.Skipf("skipping: %v", err)
	}
}

// Main runs the tests of m, then removes what this process created. Use it as
// func TestMain(m *testing.M) { os.Exit(dockertest.Main(m)) }.
func Main(m *testing.M) int {
	code := m.Run()
	if err := CleanupAll(); err != nil {
		fmt.Fprintf(os.Stderr, "dockertest: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// CleanupAll removes every container and image labelled with this process's
// RunID. It does nothing, and does not fail, when no daemon is available.
func CleanupAll() error {
	if Available() != nil {
		return nil
	}
	filter := "label=" + LabelRun + "=" + RunID()
	var errs []error
	ids, err := Command("ps", "-aq", "--no-trunc", "--filter", filter)
	if err != nil {
		errs = append(errs, err)
	} else if f := strings.Fields(ids); len(f) > 0 {
		if _, err := Command(append([]string{"rm", "-f", "-v"}, f...)...); err != nil {
			errs = append(errs, err)
		}
	}
	// The one image this process builds is removed by its tag: listing
	// images by label fails on Podman while another process removes its
	// own ("image not known").
	if loggen.tag != "" {
		if _, err := Command("rmi", "-f", loggen.tag); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("clean up run %s: %w", RunID(), err)
	}
	return nil
}

var loggen struct {
	once sync.Once
	tag  string
	err  error
}

// LoggenImage builds the loggen image once per process and returns its tag,
// dockerlogs-loggen:<RunID()>. It is removed by CleanupAll.
func LoggenImage(t testing.TB) string {
	t.Helper()
	Require(t)
	tag, err := BuildLoggenImage()
	if err != nil {
		t.Fatal(err)
	}
	return tag
}

// BuildLoggenImage is LoggenImage for a program: it returns the error
// instead of failing a test.
func BuildLoggenImage() (string, error) {
	loggen.once.Do(func() { loggen.tag, loggen.err = buildLoggen() })
	if loggen.err != nil {
		return "", fmt.Errorf("build loggen image: %w", loggen.err)
	}
	return loggen.tag, nil
}

func buildLoggen() (string, error) {
	dir, err := os.MkdirTemp("", "dockerlogs-loggen-")
	if err != nil {
		return "", fmt.Errorf("make build context: %w", err)
	}
	defer os.RemoveAll(dir)

	build := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(dir, "loggen"), loggenPkg)
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w: %s", loggenPkg, err, bytes.TrimSpace(out))
	}
	const dockerfile = "FROM scratch\nCOPY loggen /loggen\nENTRYPOINT [\"/loggen\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		return "", fmt.Errorf("write Dockerfile: %w", err)
	}
	tag := "dockerlogs-loggen:" + RunID()
	if _, err := Command("build", "-q", "-t", tag,
		"--label", LabelTest+"=1", "--label", LabelRun+"="+RunID(), dir); err != nil {
		return "", err
	}
	return tag, nil
}

// RunOptions describe one docker run. The container always runs detached,
// with --network none and the test labels.
type RunOptions struct {
	Image     string            // default: LoggenImage(t)
	Name      string            // default: docker's choice
	Args      []string          // after the image: loggen's flags
	TTY       bool              // -t: the logs are a raw stream
	Labels    map[string]string // besides LabelTest and LabelRun
	Env       map[string]string
	LogDriver string            // default: the daemon's (json-file)
	LogOpts   map[string]string // --log-opt k=v
	Restart   string            // --restart policy, e.g. "always"
}

var fullID = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Run starts a container and returns its full 64-hex ID. It is removed when
// the test ends.
func Run(t testing.TB, o RunOptions) string {
	t.Helper()
	Require(t)
	if o.Image == "" {
		o.Image = LoggenImage(t)
	}
	id, err := Start(o)
	// Registered before checking err: a failed start can leave a created
	// container behind, found by name or label.
	switch {
	case fullID.MatchString(id):
		t.Cleanup(func() { remove(t, id) })
	case o.Name != "":
		t.Cleanup(func() { remove(t, o.Name) })
	}
	if err != nil {
		t.Fatalf("%v", err)
	}
	return id
}

// Start is Run for a program: it returns the error instead of failing a
// test, and leaves the container to the caller (and to CleanupAll). The
// image defaults to BuildLoggenImage's.
func Start(o RunOptions) (string, error) {
	if o.Image == "" {
		var err error
		if o.Image, err = BuildLoggenImage(); err != nil {
			return "", err
		}
	}
	args := []string{"run", "-d", "--network", "none",
		"--label", LabelTest + "=1", "--label", LabelRun + "=" + RunID()}
	if o.Name != "" {
		args = append(args, "--name", o.Name)
	}
	if o.TTY {
		args = append(args, "-t")
	}
	args = appendPairs(args, "--label", o.Labels)
	args = appendPairs(args, "-e", o.Env)
	if o.LogDriver != "" {
		args = append(args, "--log-driver", o.LogDriver)
	}
	args = appendPairs(args, "--log-opt", o.LogOpts)
	if o.Restart != "" {
		args = append(args, "--restart", o.Restart)
	}
	out, err := Command(append(append(args, o.Image), o.Args...)...)
	id := strings.TrimSpace(out)
	if err == nil && !fullID.MatchString(id) {
		err = fmt.Errorf("docker run printed %q, not a container id", out)
	}
	return id, err
}

func remove(t testing.TB, ref string) {
	// The test may have removed it already; that is not a failure.
	if _, err := Command("rm", "-f", "-v", ref); err != nil {
		t.Logf("dockertest: %v", err)
	}
}

func appendPairs(args []string, flag string, m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, flag, k+"="+m[k])
	}
	return args
}

// Docker runs a docker CLI command and returns its standard output with
// surrounding space trimmed; it fails the test, showing stderr, on error.
func Docker(t testing.TB, args ...string) string {
	t.Helper()
	out, err := Command(args...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return strings.TrimSpace(out)
}

// Logs returns what `docker logs` prints of a container's stdout and stderr.
func Logs(t testing.TB, id string) (stdout, stderr string) {
	t.Helper()
	cmd := exec.Command("docker", "logs", id)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		t.Fatalf("docker logs %s: %v: %s", id, err, bytes.TrimSpace(e.Bytes()))
	}
	return o.String(), e.String()
}

// WaitForLog follows the container's logs (both streams) until a line
// contains substr, and fails the test if none does within timeout or before
// the container's log stream ends.
func WaitForLog(t testing.TB, id, substr string, timeout time.Duration) {
	t.Helper()
	WaitForLogSince(t, id, time.Time{}, substr, timeout)
}

// WaitForLogSince is WaitForLog over the lines stamped at or after since
// (all of them when it is zero): a restarted container's last run.
func WaitForLogSince(t testing.TB, id string, since time.Time, substr string, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatalf("pipe: %v", err)
	}
	defer pr.Close()
	args := []string{"logs", "--follow"}
	if !since.IsZero() {
		args = append(args, "--since", since.Format(time.RFC3339Nano))
	}
	cmd := exec.CommandContext(ctx, "docker", append(args, id)...)
	cmd.Stdout, cmd.Stderr = pw, pw
	err = cmd.Start()
	pw.Close() // the child has its copy; EOF comes when it exits
	if err != nil {
		t.Fatalf("docker logs --follow %s: %v", id, err)
	}
	sc := bufio.NewScanner(pr)
	sc.Buffer(make([]byte, 64*1024), 4<<20)
	found := false
	for !found && sc.Scan() {
		found = strings.Contains(sc.Text(), substr)
	}
	cancel()
	_ = cmd.Wait()
	if !found {
		t.Fatalf("no log line of container %s contains %q (waited %v)", id, substr, timeout)
	}
}

// WaitExited blocks in `docker wait` until the container has exited and
// returns its exit code; it fails the test after timeout.
func WaitExited(t testing.TB, id string, timeout time.Duration) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", "wait", id)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			t.Fatalf("container %s did not exit within %v", id, timeout)
		}
		t.Fatalf("docker wait %s: %v: %s", id, err, bytes.TrimSpace(e.Bytes()))
	}
	code, err := strconv.Atoi(strings.TrimSpace(o.String()))
	if err != nil {
		t.Fatalf("docker wait %s printed %q: %v", id, o.String(), err)
	}
	return code
}

// Command runs a docker CLI command and returns its standard output; the
// error shows stderr.
func Command(args ...string) (string, error) {
	cmd := exec.Command("docker", args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		return o.String(), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(e.Bytes()))
	}
	return o.String(), nil
}
