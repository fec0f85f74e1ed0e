package main

// The twin: this program with -child runs the capture package in-process,
// configured as the plugin configures it (conf.Parse, the docker SDK adapter
// with the same TLS option), and collects once a second as Fluent Bit's timer does. It
// prints the testhost's stderr protocol plus its goroutine count, which the
// C host can only print at start and exit.

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dockerlogs/fluent-bit-docker-logs/capture"
	"github.com/dockerlogs/fluent-bit-docker-logs/conf"
	"github.com/dockerlogs/fluent-bit-docker-logs/docker"
)

type propFlag map[string]string

func (p propFlag) String() string { return fmt.Sprint(map[string]string(p)) }
func (p propFlag) Set(kv string) error {
	k, v, ok := strings.Cut(kv, "=")
	if !ok {
		return fmt.Errorf("want key=value, got %q", kv)
	}
	p[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
	return nil
}

// say writes one line to stderr with one write.
func say(format string, args ...any) {
	_, _ = os.Stderr.WriteString(fmt.Sprintf(format, args...) + "\n")
}

// lineFormatter writes log lines like the plugin's.
type lineFormatter struct{}

func (lineFormatter) Format(e *logrus.Entry) ([]byte, error) {
	var b bytes.Buffer
	lvl := e.Level.String()
	switch e.Level {
	case logrus.WarnLevel:
		lvl = "warn"
	case logrus.ErrorLevel, logrus.FatalLevel, logrus.PanicLevel:
		lvl = "error"
	}
	fmt.Fprintf(&b, "[%s] [%5s] [input:twin] %s", e.Time.Format("2006/01/02 15:04:05"), lvl, e.Message)
	keys := make([]string, 0, len(e.Data))
	for k := range e.Data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%v", k, e.Data[k])
	}
	b.WriteByte('\n')
	return b.Bytes(), nil
}

func childMain(args []string) int {
	fs := flag.NewFlagSet("child", flag.ContinueOnError)
	out := fs.String("o", "", "OUT file for the collected buffers")
	props := propFlag{}
	fs.Var(props, "p", "key=value property (repeatable)")
	cpuprofile := fs.String("cpuprofile", os.Getenv("BENCH_TWIN_CPUPROFILE"), "write a CPU profile of the capture here")
	if err := fs.Parse(args); err != nil || *out == "" {
		say("child: usage: -child -o OUT [-p key=value]...")
		return 2
	}
	cfg, err := conf.Parse(func(key string) string { return props[strings.ToLower(key)] })
	if err != nil {
		say("init failed")
		say("child: %v", err)
		return 3
	}
	l := logrus.New()
	l.SetOutput(os.Stderr)
	l.SetFormatter(lineFormatter{})
	l.SetLevel(cfg.LogLevel)
	log := logrus.NewEntry(l)
	f, err := os.OpenFile(*out, os.O_CREATE|os.O_TRUNC|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		say("child: %v", err)
		return 1
	}
	defer f.Close()

	stdinDone := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(stdinDone)
	}()
	if *cpuprofile != "" {
		pf, err := os.Create(*cpuprofile)
		if err == nil && pprof.StartCPUProfile(pf) == nil {
			defer func() { pprof.StopCPUProfile(); pf.Close() }()
		}
	}
	baseline := runtime.NumGoroutine()
	for range 10 {
		time.Sleep(5 * time.Millisecond)
		baseline = min(baseline, runtime.NumGoroutine())
	}
	say("goroutines baseline=%d", baseline)

	positions, err := capture.OpenPositions(cfg.DB, cfg.DBMargin, log)
	if err != nil {
		say("init failed")
		return 3
	}
	src, err := docker.New(cfg.DockerHost, log,
		docker.WithTLS(docker.TLS{CertPath: cfg.DockerCertPath, SkipVerify: !cfg.DockerTLSVerify}))
	if err != nil {
		say("init failed")
		say("child: %v", err)
		return 3
	}
	opts := cfg.Options()
	opts.Positions = positions
	c := capture.New(src, opts, log)
	c.Start()
	say("init ok")

	if code := twinCollect(c, f, cfg.QueueMaxSize, stdinDone); code != 0 {
		return code
	}
	t0 := time.Now()
	if err := c.Stop(5 * time.Second); err != nil {
		log.WithError(err).Error("stop")
	}
	_ = src.Close()
	took := time.Since(t0)
	n := runtime.NumGoroutine()
	for i := 0; n > baseline && i < 200; i++ {
		time.Sleep(5 * time.Millisecond)
		n = runtime.NumGoroutine()
	}
	say("exit took_ms=%d goroutines=%d baseline=%d", took.Milliseconds(), n, baseline)
	return 0
}

// twinCollect drains c into f once a second, as Fluent Bit's collect timer
// does, until stdin ends; it returns a non-zero exit code if f fails.
func twinCollect(c *capture.Capture, f *os.File, maxBytes int, stdinDone <-chan struct{}) int {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var buf []byte
loop:
	for {
		select {
		case <-stdinDone:
			break loop
		case <-tick.C:
			b := c.Drain(maxBytes)
			g := runtime.NumGoroutine()
			if b.Len() == 0 {
				say("goroutines now=%d", g)
				continue
			}
			if cap(buf) < b.Len() {
				buf = make([]byte, b.Len())
			}
			buf = buf[:b.Len()]
			b.CopyTo(buf)
			if _, err := f.Write(buf); err != nil {
				say("child: write OUT: %v", err)
				return 1
			}
			c.Commit(b)
			say("collect bytes=%d goroutines=%d", b.Len(), g)
		}
	}
	return 0
}
