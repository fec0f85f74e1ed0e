// Command crashcap runs a capture with a positions DB and hands its batches
// over as Fluent Bit would: on every collect tick it drains the queue,
// appends the records to an output file, fsyncs it, and only then commits
// the batch. The faults tests SIGKILL it mid-stream and start it again with
// the same DB and output file.
//
// Each output line is "<run> <batch> <container id> <stream> <log>". On
// stdout it reports "written batch=<n> lines=<k>" once a batch is in the
// output file (before its commit), "committed batch=<n>" after, and
// "durable batches=<n>" once the DB file holds the positions of batches
// 1..n. SIGTERM stops it cleanly.
//
// Its output file is fsynced before a commit, as Fluent Bit's filesystem
// storage keeps an appended chunk, so its DB margin is 0 unless -margin
// says otherwise.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dockerlogs/fluent-bit-docker-logs/capture"
	"github.com/dockerlogs/fluent-bit-docker-logs/docker"
	"github.com/dockerlogs/fluent-bit-docker-logs/internal/records"
)

// Labels that select the containers to capture (see internal/dockertest and
// the faults tests).
const (
	labelRun  = "org.dockerlogs.run"
	labelTest = "org.dockerlogs.faults.test"
)

// The capture's options, as the plugin's defaults would make them.
const (
	queueMaxSize  = 8 << 20
	streamRefresh = time.Minute
	maxLineSize   = 1 << 20
	stopTimeout   = 10 * time.Second
)

type config struct {
	host, db, out string
	runID, test   string
	run           string
	collect       time.Duration
	margin        time.Duration
}

func main() {
	var c config
	flag.StringVar(&c.host, "host", "", "docker host (default: DOCKER_HOST or the local socket)")
	flag.StringVar(&c.db, "db", "", "positions DB file")
	flag.StringVar(&c.out, "out", "", "output file the records are appended to")
	flag.StringVar(&c.runID, "run-id", "", "value of "+labelRun+" of the containers to capture")
	flag.StringVar(&c.test, "test", "", "value of "+labelTest+" of the containers to capture")
	flag.StringVar(&c.run, "run", "1", "name of this run, first field of every output line")
	flag.DurationVar(&c.collect, "collect", time.Second, "collect interval (Fluent Bit's is 1s)")
	flag.DurationVar(&c.margin, "margin", 0, "how far the DB trails the committed positions")
	flag.Parse()
	if c.db == "" || c.out == "" || c.runID == "" || c.test == "" {
		fmt.Fprintln(os.Stderr, "crashcap: -db, -out, -run-id and -test are required")
		os.Exit(2)
	}
	if err := run(c); err != nil {
		fmt.Fprintf(os.Stderr, "crashcap: %v\n", err)
		os.Exit(1)
	}
}

func run(c config) error {
	l := logrus.New()
	l.SetOutput(os.Stderr)
	l.SetLevel(logrus.DebugLevel)
	log := logrus.NewEntry(l).WithField("run", c.run)
	positions, err := capture.OpenPositions(c.db, c.margin, log)
	if err != nil {
		return err
	}
	src, err := docker.New(c.host, log)
	if err != nil {
		return err
	}
	defer src.Close()
	out, err := os.OpenFile(c.out, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("open output: %w", err)
	}
	defer out.Close()
	report := &reporter{w: bufio.NewWriter(os.Stdout)}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	capt := capture.New(src, capture.Options{
		Stdout: true, Stderr: true, ReadFromHead: true,
		StreamRefresh: streamRefresh, MaxLineSize: maxLineSize, QueueMaxSize: queueMaxSize,
		Include: func(ct capture.Container) bool {
			return ct.Labels[labelRun] == c.runID && ct.Labels[labelTest] == c.test
		},
		Positions: positions,
	}, log)
	capt.Start()
	report.say("started")

	// The durable reporter; cancelled and waited for on the way out.
	ctx, cancel := context.WithCancel(context.Background())
	var durable sync.WaitGroup
	durable.Add(1)
	go func() {
		defer durable.Done()
		for n := int64(0); ; {
			var err error
			if n, err = capt.WaitDBWritten(ctx, n); err != nil {
				return
			}
			report.say("durable batches=%d", n)
		}
	}()
	defer durable.Wait()
	defer cancel()

	tick := time.NewTicker(c.collect)
	defer tick.Stop()
	for batch := 1; ; {
		select {
		case <-sigs:
			return capt.Stop(stopTimeout)
		case <-tick.C:
		}
		b := capt.Drain(queueMaxSize)
		if b.Len() == 0 {
			continue
		}
		recs, err := records.Decode(b.Bytes())
		if err != nil {
			return errors.Join(fmt.Errorf("batch %d: %w", batch, err), capt.Stop(stopTimeout))
		}
		w := bufio.NewWriter(out)
		for _, r := range recs {
			fmt.Fprintf(w, "%s %d %s %s %s\n", c.run, batch, r.ContainerID, r.Stream, r.Log)
		}
		if err := w.Flush(); err != nil {
			return errors.Join(fmt.Errorf("write output: %w", err), capt.Stop(stopTimeout))
		}
		if err := out.Sync(); err != nil {
			return errors.Join(fmt.Errorf("fsync output: %w", err), capt.Stop(stopTimeout))
		}
		report.say("written batch=%d lines=%d", batch, len(recs))
		capt.Commit(b)
		report.say("committed batch=%d", batch)
		batch++
	}
}

// reporter writes whole lines to stdout from the main loop and the durable
// reporter.
type reporter struct {
	mu sync.Mutex
	w  *bufio.Writer
}

func (r *reporter) say(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.w, format+"\n", args...)
	r.w.Flush()
}
