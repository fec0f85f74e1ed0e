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

type config struct {
	out, tmp         string
	paths            hostPaths
	sock, pidFile    string
	suites           map[string]bool
	twin             bool
	twinMaxLines     int
	reps             int
	histLines        int
	histN, histNLine int
	refreshSizes     []refreshSize
	refreshK         int
	refreshPlainK    int
	refreshEvery     string
	refreshRun       time.Duration
	scale            []scalePhase
	scaleDuration    time.Duration
	workers          int
	rawEvery         int
	benchCount       int
	soak             bool
	soakDuration     time.Duration
	soakRefresh      string
	soakWave         time.Duration
	soakWaveSize     int
	soakSteady       int
	soakFaults       bool
	pluginProps      propFlag
}

type refreshSize struct {
	name  string
	lines int
}

type scalePhase struct {
	containers int
	rate       int // lines/s per container
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-child" {
		os.Exit(childMain(os.Args[2:]))
	}
	os.Exit(run())
}

// flags reads the command line into a config.
func flags() config {
	c := config{suites: map[string]bool{}, pluginProps: propFlag{}}
	flag.StringVar(&c.out, "out", "build/bench", "directory for results and logs")
	flag.StringVar(&c.tmp, "tmp", "", "directory for the hosts' OUT files (default: /dev/shm if there, else <out>/tmp)")
	flag.StringVar(&c.paths.host, "host", "build/goproxy-testhost", "the test host binary")
	flag.StringVar(&c.paths.so, "so", "build/docker_logs.so", "the plugin")
	flag.StringVar(&c.sock, "sock", "/var/run/docker.sock", "the daemon's socket")
	flag.StringVar(&c.pidFile, "dockerd-pidfile", "/var/run/docker.pid", "the daemon's pid file (for its CPU time)")
	var suites []string
	listSlice(&suites, "suites", "pipeline,history,cpu,refresh,scale,latency,files", "suites to run", func(s string) (string, error) { return s, nil })
	flag.BoolVar(&c.twin, "twin", true, "scale and soak: also run the capture in-process (the twin) to count goroutines")
	flag.IntVar(&c.twinMaxLines, "twin-max-lines", 10000, "scale: run the twin only in phases of at most this many lines/s in all (it costs as much CPU as the host)")
	flag.IntVar(&c.reps, "reps", 2, "history: raw/plugin pairs per comparison")
	flag.IntVar(&c.histLines, "history-lines", 1_000_000, "history: lines of the one container")
	flag.IntVar(&c.histN, "history-containers", 10, "history: containers read at once")
	flag.IntVar(&c.histNLine, "history-container-lines", 100_000, "history: lines of each of those")
	listSlice(&c.refreshSizes, "refresh-sizes", "1MB=10000,100MB=1000000,1GB=10000000", "refresh: log sizes as name=lines of 100 bytes",
		func(s string) (r refreshSize, err error) {
			name, n, _ := strings.Cut(s, "=")
			r.name, r.lines, err = name, atoiPositive(n), nil
			if r.lines <= 0 {
				err = fmt.Errorf("%q: want name=lines", s)
			}
			return r, err
		})
	flag.IntVar(&c.refreshK, "refresh-k", 20, "refresh: tail requests per size")
	flag.IntVar(&c.refreshPlainK, "refresh-plain-k", 4, "refresh: plain since requests per size (half that, at least 1, from 5M lines)")
	flag.StringVar(&c.refreshEvery, "refresh-every", "200ms", "refresh: the plugin's Stream_Refresh in its own run")
	flag.DurationVar(&c.refreshRun, "refresh-run", 15*time.Second, "refresh: how long the plugin runs per size")
	listSlice(&c.scale, "scale", "500x10,200x100", "scale: phases as containers x lines/s", func(s string) (p scalePhase, err error) {
		n, r, _ := strings.Cut(s, "x")
		if p = (scalePhase{atoiPositive(n), atoiPositive(r)}); p.containers <= 0 || p.rate <= 0 {
			err = fmt.Errorf("%q: want containers x lines/s, e.g. 500x10", s)
		}
		return p, err
	})
	flag.DurationVar(&c.scaleDuration, "scale-duration", 60*time.Second, "scale: measured time per phase once every container runs")
	flag.IntVar(&c.rawEvery, "raw-every", 10, "scale: also follow every Nth container with a plain stream, for the daemon's own latency (0: none)")
	flag.IntVar(&c.workers, "workers", 8, "containers created/started/removed at a time")
	flag.IntVar(&c.benchCount, "bench-count", 3, "pipeline: go test -count")
	flag.BoolVar(&c.soak, "soak", false, "run the soak instead of the suites")
	flag.DurationVar(&c.soakDuration, "soak-duration", 30*time.Minute, "soak: how long")
	flag.StringVar(&c.soakRefresh, "soak-refresh", "2s", "soak: the plugin's Stream_Refresh")
	flag.DurationVar(&c.soakWave, "soak-wave", 20*time.Second, "soak: time between waves of containers")
	flag.IntVar(&c.soakWaveSize, "soak-wave-size", 8, "soak: containers per wave")
	flag.BoolVar(&c.soakFaults, "soak-faults", true, "soak: reach the daemon through internal/faultproxy, stall every logs stream 10 s, make the daemon unreachable 15 s and cut one stream mid-frame")
	flag.IntVar(&c.soakSteady, "soak-steady", 3, "soak: containers running throughout")
	flag.Var(c.pluginProps, "plugin-prop", "key=value added to every plugin run's properties (repeatable), e.g. Stream_Refresh=5m")
	flag.Parse()
	for _, s := range suites {
		c.suites[s] = true
	}
	return c
}

// listSlice defines a flag of comma-separated items, each parsed by parse.
func listSlice[T any](dst *[]T, name, value, usage string, parse func(string) (T, error)) {
	set := func(s string) error {
		*dst = nil
		for _, item := range strings.Split(s, ",") {
			v, err := parse(strings.TrimSpace(item))
			if err != nil {
				return err
			}
			*dst = append(*dst, v)
		}
		return nil
	}
	_ = set(value)
	flag.Func(name, usage+" (default "+value+")", set)
}

func atoiPositive(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return n
}

func run() int {
	c := flags()
	if err := c.prepare(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	defer os.RemoveAll(c.paths.tmp)
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	defer func() {
		logf("removing this run's containers and image (label %s=%s)", dockertest.LabelRun, dockertest.RunID())
		if err := dockertest.CleanupAll(); err != nil {
			logf("cleanup: %v", err)
		}
	}()
	b, err := newBench(ctx, c)
	if err == nil && c.soak {
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

// prepare makes the directories and resolves the paths.
func (c *config) prepare() error {
	c.paths.logs = filepath.Join(c.out, "logs")
	if c.tmp == "" {
		c.tmp = filepath.Join(c.out, "tmp")
		if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
			c.tmp = "/dev/shm"
		}
	}
	c.paths.tmp = filepath.Join(c.tmp, fmt.Sprintf("docker-logs-bench-%d", os.Getpid()))
	var err error
	for _, p := range []*string{&c.paths.host, &c.paths.so} {
		if *p, err = filepath.Abs(*p); err == nil {
			_, err = os.Stat(*p)
		}
		if err != nil {
			return fmt.Errorf("%w (run make %s first)", err, *p)
		}
	}
	c.paths.self, err = os.Executable()
	return errors.Join(err, os.MkdirAll(c.paths.logs, 0o755), os.MkdirAll(c.paths.tmp, 0o755))
}

// bench is one run's shared state.
type bench struct {
	ctx     context.Context
	cfg     config
	eng     *engine
	image   string
	dockerd int // pid; 0 if unknown
	rep     *report
}

func newBench(ctx context.Context, c config) (*bench, error) {
	if err := dockertest.Available(); err != nil {
		return nil, err
	}
	b := &bench{ctx: ctx, cfg: c, eng: newEngine(c.sock)}
	pid, err := dockerdPID(c.pidFile)
	if err != nil {
		logf("dockerd's CPU cannot be measured: %v", err)
	}
	b.dockerd = pid
	name := "results"
	if c.soak {
		name = "soak"
	}
	b.rep = newReport(c.out, name, machine())
	logf("building the loggen image")
	t0 := time.Now()
	if b.image, err = dockertest.BuildLoggenImage(); err != nil {
		return nil, err
	}
	logf("image %s built in %s", b.image, time.Since(t0).Round(100*time.Millisecond))
	return b, nil
}

func (b *bench) runSuites() error {
	type suite struct {
		name string
		run  func() error
	}
	list := []suite{
		{"pipeline", b.runPipeline},
		{"history", b.runHistory}, // also gives cpu
		{"refresh", b.runRefresh},
		{"scale", b.runScale}, // also gives latency
		{"files", b.runFiles},
	}
	want := b.cfg.suites
	want["history"] = want["history"] || want["cpu"]
	want["scale"] = want["scale"] || want["latency"]
	for _, s := range list {
		if !want[s.name] {
			continue
		}
		if b.ctx.Err() != nil {
			break
		}
		b.rep.setSuite(s.name)
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
	b.rep.setSuite("")
	return b.finish()
}

// finish writes and prints the report.
func (b *bench) finish() error {
	b.rep.locked(func() { b.rep.Machine["load average at end"] = loadAvg() })
	if err := b.rep.write(); err != nil {
		return err
	}
	b.rep.print()
	logf("wrote %s.md and .json", b.rep.path)
	return b.ctx.Err()
}

// label makes a case label, so each scenario's plugin sees only its own
// containers.
const labelCase = "org.dockerlogs.bench.case"

func caseValue(name string) string { return dockertest.RunID() + "-" + name }

func (b *bench) props(caseName string, extra map[string]string) map[string]string {
	p := map[string]string{
		"Include_Labels": labelCase + "=" + caseValue(caseName),
		"Read_From_Head": "on",
		"Docker_Host":    "unix://" + b.cfg.sock,
	}
	for k, v := range extra {
		p[k] = v
	}
	for k, v := range b.cfg.pluginProps {
		set := false
		for have := range p {
			set = set || strings.EqualFold(have, k)
		}
		if !set { // a suite's own setting wins
			p[k] = v
		}
	}
	return p
}

func (b *bench) loggen(caseName string, args ...string) spec {
	return spec{image: b.image, args: args, labels: map[string]string{labelCase: caseValue(caseName)}}
}

func (b *bench) removeAll(ids []string) {
	if err := each(ids, b.cfg.workers, func(id string) error { return b.eng.remove(context.Background(), id) }); err != nil {
		logf("remove: %v", err)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// machine describes where the run happens.
func machine() map[string]string {
	m := map[string]string{
		"go":    runtime.Version(),
		"cores": fmt.Sprint(runtime.NumCPU()),
	}
	if h, err := os.Hostname(); err == nil {
		m["host"] = h
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m["cpu"] = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		l, _, _ := strings.Cut(string(b), "\n")
		m["memory"] = strings.Join(strings.Fields(l)[1:], " ")
	}
	if out, err := exec.Command("uname", "-sr").Output(); err == nil {
		m["kernel"] = strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("docker", "version", "--format", "{{.Server.Version}} (API {{.Server.APIVersion}})").Output(); err == nil {
		m["docker"] = strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("docker", "info", "--format", "{{.Driver}}, logging {{.LoggingDriver}}").Output(); err == nil {
		m["docker storage"] = strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		rev := strings.TrimSpace(string(out))
		if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
			rev += " (work tree modified)"
		}
		m["commit"] = rev
	}
	m["load average at start"] = loadAvg()
	return m
}
