// Command bench measures docker_logs against the goals: history
// throughput against a raw read of the same logs, the plugin's CPU per line,
// the daemon's cost of a stream refresh against the log's size, hundreds of
// containers at once, latency, and (with -soak) a long run with container
// churn. It never fails on a timing: it prints the report and writes it
// to -out (results.md with results.json, or soak.md, soak.json and the
// samples in soak.csv).
//
//	go run ./bench                       # every suite (make bench)
//	go run ./bench -suites history,cpu   # some of them
//	go run ./bench -soak -soak-duration 30m
//
// It needs the built plugin and test host (make build/docker_logs.so
// build/goproxy-testhost) and a Docker daemon. Containers and the loggen
// image carry dockertest's labels and are removed at the end, also on
// SIGINT/SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dockerlogs/fluent-bit-docker-logs/internal/dockertest"
)

// The command line, read once by flag.Parse in run.
var (
	outDir        = flag.String("out", "build/bench", "directory for results and logs")
	tmpDir        = flag.String("tmp", "/dev/shm", "directory for the runners' OUT files, which are large: in memory, the disk stays out of the figures")
	hostBin       = flag.String("host", "build/goproxy-testhost", "the test host binary")
	pluginSO      = flag.String("so", "build/docker_logs.so", "the plugin")
	sock          = flag.String("sock", "/var/run/docker.sock", "the daemon's socket")
	pidFile       = flag.String("dockerd-pidfile", "/var/run/docker.pid", "the daemon's pid file (for its CPU time)")
	suites        = flag.String("suites", "pipeline,history,cpu,refresh,scale,latency,files", "suites to run")
	twinOn        = flag.Bool("twin", true, "scale and soak: also run the capture in-process (the twin) to count goroutines")
	twinMaxLines  = flag.Int("twin-max-lines", 10000, "scale: run the twin only in phases of at most this many lines/s in all (it costs as much CPU as the host)")
	reps          = flag.Int("reps", 2, "history: raw/plugin pairs per comparison")
	histLines     = flag.Int("history-lines", 1_000_000, "history: lines of the one container")
	histN         = flag.Int("history-containers", 10, "history: containers read at once")
	histNLine     = flag.Int("history-container-lines", 100_000, "history: lines of each of those")
	refreshLines  = listFlag("refresh-lines", "10000,1000000,10000000", "refresh: log sizes in lines of 100 bytes", strconv.Atoi)
	refreshK      = flag.Int("refresh-k", 20, "refresh: tail requests per size")
	refreshPlainK = flag.Int("refresh-plain-k", 4, "refresh: plain since requests per size (half that, at least 1, from 5M lines)")
	refreshEvery  = flag.String("refresh-every", "200ms", "refresh: the plugin's Stream_Refresh in its own run")
	refreshRun    = flag.Duration("refresh-run", 15*time.Second, "refresh: how long the plugin runs per size")
	scalePhases   = listFlag("scale", "500x10,200x100", "scale: phases as containers x lines/s", parseScalePhase)
	scaleDuration = flag.Duration("scale-duration", 60*time.Second, "scale: measured time per phase once every container runs")
	rawEvery      = flag.Int("raw-every", 10, "scale: also follow every Nth container with a plain stream, for the daemon's own latency (0: none)")
	filesLines    = flag.Int("files-lines", 1_000_000, "files: lines of the container's log")
	workers       = flag.Int("workers", 8, "containers created/started/removed at a time")
	benchCount    = flag.Int("bench-count", 3, "pipeline: go test -count")
	soakOn        = flag.Bool("soak", false, "run the soak instead of the suites")
	soakDuration  = flag.Duration("soak-duration", 30*time.Minute, "soak: how long")
	soakRefresh   = flag.String("soak-refresh", "2s", "soak: the plugin's Stream_Refresh")
	soakWave      = flag.Duration("soak-wave", 20*time.Second, "soak: time between waves of containers")
	soakWaveSize  = flag.Int("soak-wave-size", 8, "soak: containers per wave")
	soakFaults    = flag.Bool("soak-faults", true, "soak: reach the daemon through internal/faultproxy, stall every logs stream 10 s, make the daemon unreachable 15 s and cut one stream mid-frame")
	soakSteady    = flag.Int("soak-steady", 3, "soak: containers running throughout")
	pluginProps   = map[string]string{}

	// Set by prepare: where the runners' OUT files and logs go, and this
	// program (the twin).
	runTmp, logsDir, selfBin string
)

func init() {
	flag.Func("plugin-prop", "key=value added to every plugin run's properties (repeatable), e.g. Stream_Refresh=5m", setProp(pluginProps))
}

type scalePhase struct {
	containers int
	rate       int // lines/s per container
}

func parseScalePhase(s string) (p scalePhase, err error) {
	if _, err = fmt.Sscanf(s, "%dx%d", &p.containers, &p.rate); err != nil || p.containers <= 0 || p.rate <= 0 {
		err = fmt.Errorf("%q: want containers x lines/s, e.g. 500x10", s)
	}
	return p, err
}

// listFlag defines a flag of comma-separated items, each parsed by parse.
func listFlag[T any](name, value, usage string, parse func(string) (T, error)) *[]T {
	var dst []T
	set := func(s string) error {
		dst = nil
		for _, item := range strings.Split(s, ",") {
			v, err := parse(strings.TrimSpace(item))
			if err != nil {
				return err
			}
			dst = append(dst, v)
		}
		return nil
	}
	_ = set(value)
	flag.Func(name, usage+" (default "+value+")", set)
	return &dst
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-child" {
		os.Exit(childMain(os.Args[2:]))
	}
	os.Exit(run())
}

func run() int {
	flag.Parse()
	os.Setenv("DOCKER_HOST", "unix://"+*sock) // for dockertest's docker CLI
	if err := prepare(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	defer os.RemoveAll(runTmp)
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	defer func() {
		logf("removing this run's containers and image (label %s=%s)", dockertest.LabelRun, dockertest.RunID())
		if err := dockertest.CleanupAll(); err != nil {
			logf("cleanup: %v", err)
		}
	}()
	b, err := newBench(ctx)
	if err == nil && *soakOn {
		err = errors.Join(b.runSoak(), b.finish())
	} else if err == nil {
		err = b.runSuites()
	}
	if err != nil {
		logf("bench: %v", err)
		return 1
	}
	return 0
}

// prepare makes the directories: the runners' logs under -out, their OUT
// files in a directory of this run's under -tmp.
func prepare() (err error) {
	logsDir = filepath.Join(*outDir, "logs")
	selfBin, err = os.Executable()
	if err = errors.Join(err, os.MkdirAll(logsDir, 0o755)); err == nil {
		runTmp, err = os.MkdirTemp(*tmpDir, "docker-logs-bench-")
	}
	return err
}

// bench is one run's shared state.
type bench struct {
	ctx     context.Context
	eng     *engine
	image   string
	dockerd int // pid; 0 if unknown
	rep     *report
}

func newBench(ctx context.Context) (*bench, error) {
	if err := dockertest.Available(); err != nil {
		return nil, err
	}
	b := &bench{ctx: ctx, eng: newEngine(*sock)}
	pid, err := dockerdPID(*pidFile)
	if err != nil {
		logf("dockerd's CPU cannot be measured: %v", err)
	}
	b.dockerd = pid
	b.rep = newReport(*outDir, map[bool]string{false: "results", true: "soak"}[*soakOn], machine())
	logf("building the loggen image")
	t0 := time.Now()
	if b.image, err = dockertest.BuildLoggenImage(); err != nil {
		return nil, err
	}
	logf("image %s built in %s", b.image, time.Since(t0).Round(100*time.Millisecond))
	return b, nil
}

func (b *bench) runSuites() error {
	want := func(name string) bool { return strings.Contains(","+*suites+",", ","+name+",") }
	for _, s := range []struct {
		name string
		run  func() error
	}{
		{"pipeline", b.runPipeline},
		{"history", b.runHistory}, // also gives cpu
		{"refresh", b.runRefresh},
		{"scale", b.runScale}, // also gives latency
		{"files", b.runFiles},
	} {
		if b.ctx.Err() != nil || !want(s.name) && !(s.name == "history" && want("cpu")) && !(s.name == "scale" && want("latency")) {
			continue
		}
		b.rep.suite = s.name
		logf("=== %s (load average %s)", s.name, loadAvg())
		t0 := time.Now()
		if err := s.run(); err != nil {
			logf("%s: %v", s.name, err)
			b.rep.note("suite %s failed: %v", s.name, err)
		}
		logf("=== %s done in %s", s.name, time.Since(t0).Round(time.Second))
		if err := b.rep.write(); err != nil {
			return err
		}
	}
	b.rep.suite = ""
	return b.finish()
}

// finish writes and prints the report.
func (b *bench) finish() error {
	b.rep.Machine["load average at end"] = loadAvg()
	if err := b.rep.write(); err != nil {
		return err
	}
	fmt.Print(b.rep.markdown())
	logf("wrote %s.md and .json", b.rep.path)
	return b.ctx.Err()
}

// label makes a case label, so each scenario's plugin sees only its own
// containers.
const labelCase = "org.dockerlogs.bench.case"

func caseValue(name string) string { return dockertest.RunID() + "-" + name }

// props are a plugin run's properties: the case's containers from their
// head, then -plugin-prop, then the suite's own (extra), which win.
func (b *bench) props(caseName string, extra map[string]string) map[string]string {
	p := map[string]string{"include_labels": labelCase + "=" + caseValue(caseName), "read_from_head": "on", "docker_host": "unix://" + *sock}
	maps.Copy(p, pluginProps)
	for k, v := range extra {
		p[strings.ToLower(k)] = v
	}
	return p
}

func (b *bench) loggen(caseName string, args ...string) dockertest.RunOptions {
	return dockertest.RunOptions{Image: b.image, Args: args, Labels: map[string]string{labelCase: caseValue(caseName)}}
}

// logs starts a held loggen container of lines[i] lines of 100 bytes in
// an unrotated log for each i, labelled with caseOf(i), and waits until
// each has written them all. The caller removes ids, also on an error.
func (b *bench) logs(caseOf func(i int) string, lines ...int) (ids []string, err error) {
	ids, err = b.eng.runMany(b.ctx, len(lines), *workers, func(i int) dockertest.RunOptions {
		s := b.loggen(caseOf(i), "-lines", strconv.Itoa(lines[i]), "-size", "100", "-hold")
		s.LogOpts = unrotated
		return s
	})
	for i := 0; err == nil && i < len(ids); i++ {
		err = b.eng.waitLastSeq(b.ctx, ids[i], lines[i])
	}
	return ids, err
}

func (b *bench) removeAll(ids []string) {
	if err := each(ids, *workers, func(id string) error { return b.eng.remove(id) }); err != nil {
		logf("remove: %v", err)
	}
}

// sleep sleeps d and reports whether the run is still on.
func (b *bench) sleep(d time.Duration) bool { return b.sleepOr(nil, d) }

// sleepOr waits for tick or d, and reports whether it was tick.
func (b *bench) sleepOr(tick <-chan time.Time, d time.Duration) bool {
	select {
	case <-b.ctx.Done():
		return false
	case <-tick:
		return true
	case <-time.After(d):
		return tick == nil
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// machine describes where the run happens.
func machine() map[string]string {
	m := map[string]string{"go": runtime.Version(), "cores": fmt.Sprint(runtime.NumCPU()), "load average at start": loadAvg()}
	for k, cmd := range map[string]string{
		"host":           "hostname",
		"cpu":            "grep -m1 -Po '(?<=model name\t: ).*' /proc/cpuinfo",
		"memory":         "grep -m1 -Po '(?<=MemTotal:).*' /proc/meminfo",
		"kernel":         "uname -sr",
		"docker":         "docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})'",
		"docker storage": "docker info --format '{{.Driver}}, logging {{.LoggingDriver}}'",
		"commit":         "git rev-parse --short HEAD; git status --porcelain --untracked-files=no | grep -q . && echo '(work tree modified)'",
	} {
		out, _ := exec.Command("sh", "-c", cmd).Output()
		m[k] = strings.Join(strings.Fields(string(out)), " ")
	}
	return m
}
