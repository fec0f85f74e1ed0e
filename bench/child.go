package main

// The twin: this program with -child runs the capture package in-process,
// configured as instance/instance.go configures it (conf.Parse, positions, the
// docker SDK adapter with the same TLS option, the json-file reader of
// Logs_From in front of it), and collects once a second as Fluent Bit's
// timer does. It prints testhost's stderr protocol plus its goroutine
// count, which the C host can only print at start and exit.

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/dockerlogs/fluent-bit-docker-logs/capture"
	"github.com/dockerlogs/fluent-bit-docker-logs/capture/jsonfile"
	"github.com/dockerlogs/fluent-bit-docker-logs/conf"
	"github.com/dockerlogs/fluent-bit-docker-logs/docker"
	"github.com/dockerlogs/fluent-bit-docker-logs/instance"
)

// setProp is a flag's Set for properties key=value, keys lower-cased.
func setProp(props map[string]string) func(string) error {
	return func(kv string) error {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("want key=value, got %q", kv)
		}
		props[strings.ToLower(k)] = v
		return nil
	}
}

// say writes one line to stderr with one write.
func say(format string, args ...any) {
	_, _ = os.Stderr.WriteString(fmt.Sprintf(format, args...) + "\n")
}

func childMain(args []string) int {
	fs := flag.NewFlagSet("child", flag.ContinueOnError)
	out := fs.String("o", "", "OUT file for the collected buffers")
	props := map[string]string{}
	fs.Func("p", "key=value property (repeatable)", setProp(props))
	if err := fs.Parse(args); err != nil || *out == "" {
		say("child: usage: -child -o OUT [-p key=value]...")
		return 2
	}
	f, err := os.OpenFile(*out, os.O_CREATE|os.O_TRUNC|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		say("child: %v", err)
		return 1
	}
	defer f.Close()
	baseline := runtime.NumGoroutine()
	for range 10 {
		time.Sleep(5 * time.Millisecond)
		baseline = min(baseline, runtime.NumGoroutine())
	}
	say("goroutines baseline=%d", baseline)
	c, src, maxBytes, err := startTwin(props)
	if err != nil {
		say("init failed")
		say("child: %v", err)
		return 3
	}
	say("init ok")
	err = twinCollect(c, f, maxBytes)
	t0 := time.Now()
	_ = c.Stop(5 * time.Second)
	_ = src.Close()
	took := time.Since(t0)
	n := runtime.NumGoroutine()
	for i := 0; n > baseline && i < 200; i++ {
		time.Sleep(5 * time.Millisecond)
		n = runtime.NumGoroutine()
	}
	say("exit took_ms=%d goroutines=%d baseline=%d", took.Milliseconds(), n, baseline)
	if err != nil {
		say("child: write OUT: %v", err)
		return 1
	}
	return 0
}

// startTwin starts the capture as instance/instance.go does and returns it,
// its docker client, and Queue_Max_Size.
func startTwin(props map[string]string) (*capture.Capture, io.Closer, int, error) {
	cfg, err := conf.Parse(func(key string) string { return props[strings.ToLower(key)] })
	if err != nil {
		return nil, nil, 0, err
	}
	log := instance.NewLogger(0) // the plugin's log lines, as input 0
	log.Logger.SetLevel(cfg.LogLevel)
	positions, err := capture.OpenPositions(cfg.DB, cfg.DBMargin, log)
	if err != nil {
		return nil, nil, 0, err
	}
	src, err := docker.New(cfg.DockerHost, log,
		docker.WithTLS(docker.TLS{CertPath: cfg.DockerCertPath, SkipVerify: !cfg.DockerTLSVerify}))
	if err != nil {
		return nil, nil, 0, err
	}
	opts := cfg.Options()
	opts.Positions = positions
	c := capture.New(jsonfile.New(src, cfg.LogsFrom, cfg.ContainersPath, log), opts, log)
	c.Start()
	return c, src, cfg.QueueMaxSize, nil
}

// twinCollect drains c into f once a second, as Fluent Bit's collect timer
// does, until stdin ends (the exit command).
func twinCollect(c *capture.Capture, f *os.File, maxBytes int) error {
	stdinDone := make(chan struct{})
	go func() { // ends with stdin, which the bench closes
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(stdinDone)
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var buf []byte
	for {
		select {
		case <-stdinDone:
			return nil
		case <-tick.C:
		}
		b, g := c.Drain(maxBytes), runtime.NumGoroutine()
		if b.Len() == 0 {
			say("goroutines now=%d", g)
			continue
		}
		buf = slices.Grow(buf[:0], b.Len())[:b.Len()]
		b.CopyTo(buf)
		if _, err := f.Write(buf); err != nil {
			return err
		}
		c.Commit(b)
		say("collect bytes=%d goroutines=%d", b.Len(), g)
	}
}
