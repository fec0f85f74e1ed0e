// Command loggen writes numbered log lines for tests. It is built with
// CGO_ENABLED=0 and is the only binary of a FROM scratch image, so it must not
// need a shell, libc or any file of the image.
//
// Each numbered line is "seq=<n> stream=<stdout|stderr>" (plus " xxx..."
// padding with -size) and "\n", written with one unbuffered write, so a test
// can check order and exactly-once delivery per stream. A restarted container
// runs it again and writes the same sequence numbers again.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

// longPattern fills the -long line: byte i is longPattern[i%len]. Keep it in
// step with dockertest.LongPayload, whose test checks the two agree.
const longPattern = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

type config struct {
	lines    int
	interval time.Duration
	stream   string
	size     int
	long     int
	hold     bool
	start    int
	partial  bool
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	cfg, err := parseFlags(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(os.Stderr, "loggen: %v\n", err)
		return 2
	}
	// Caught so that docker stop ends us at once with exit code 0, which tests
	// tell apart from a kill; Go's default would die of the signal.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	if err := write(cfg, os.Stdout, os.Stderr, sigs); err != nil {
		if errors.Is(err, errSignalled) {
			return 0
		}
		fmt.Fprintf(os.Stderr, "loggen: %v\n", err)
		return 1
	}
	if cfg.hold {
		<-sigs
	}
	return 0
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("loggen", flag.ContinueOnError)
	fs.IntVar(&c.lines, "lines", 10, "number of numbered lines")
	fs.DurationVar(&c.interval, "interval", 0, "time between lines")
	fs.StringVar(&c.stream, "stream", "stdout", "stdout, stderr or both (alternate line by line, starting with stdout)")
	fs.IntVar(&c.size, "size", 0, "pad each numbered line with 'x' to this many bytes, newline included (0: no padding)")
	fs.IntVar(&c.long, "long", 0, "after the numbered lines, write one line of exactly this many payload bytes (0: none)")
	fs.BoolVar(&c.hold, "hold", false, "after writing, block until SIGTERM, then exit 0")
	fs.IntVar(&c.start, "start", 1, "first sequence number")
	fs.BoolVar(&c.partial, "partial", false, "write the last line (the -long one if any) without its newline")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	switch {
	case fs.NArg() > 0:
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	case c.stream != "stdout" && c.stream != "stderr" && c.stream != "both":
		return c, fmt.Errorf("invalid -stream %q: want stdout, stderr or both", c.stream)
	case c.lines < 0, c.size < 0, c.long < 0, c.interval < 0:
		return c, errors.New("-lines, -size, -long and -interval must not be negative")
	}
	return c, nil
}

var errSignalled = errors.New("signalled")

func write(c config, stdout, stderr io.Writer, sigs <-chan os.Signal) error {
	var timer *time.Timer
	for i := 0; i < c.lines; i++ {
		if i > 0 && c.interval > 0 {
			if timer == nil {
				timer = time.NewTimer(c.interval)
			} else {
				timer.Reset(c.interval)
			}
			select {
			case <-timer.C:
			case <-sigs:
				return errSignalled
			}
		} else {
			select {
			case <-sigs:
				return errSignalled
			default:
			}
		}
		name, w := "stdout", stdout
		if c.stream == "stderr" || (c.stream == "both" && i%2 == 1) {
			name, w = "stderr", stderr
		}
		last := i == c.lines-1 && c.long == 0
		if _, err := w.Write(numbered(c.start+i, name, c.size, !(last && c.partial))); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	if c.long > 0 {
		w, name := stdout, "stdout"
		if c.stream == "stderr" {
			w, name = stderr, "stderr"
		}
		if _, err := w.Write(long(c.long, !c.partial)); err != nil {
			return fmt.Errorf("write long line to %s: %w", name, err)
		}
	}
	return nil
}

func numbered(seq int, stream string, size int, newline bool) []byte {
	b := make([]byte, 0, max(size, 64))
	b = append(b, "seq="...)
	b = strconv.AppendInt(b, int64(seq), 10)
	b = append(b, " stream="...)
	b = append(b, stream...)
	// +2: the space before the padding and the newline.
	if pad := size - len(b) - 2; pad > 0 {
		b = append(b, ' ')
		for range pad {
			b = append(b, 'x')
		}
	}
	if newline {
		b = append(b, '\n')
	}
	return b
}

func long(n int, newline bool) []byte {
	b := make([]byte, n, n+1)
	for i := range b {
		b[i] = longPattern[i%len(longPattern)]
	}
	if newline {
		b = append(b, '\n')
	}
	return b
}
