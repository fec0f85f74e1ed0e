// Command loggen writes numbered log lines for tests. It is built with
// CGO_ENABLED=0 and is the only binary of a FROM scratch image, so it must not
// need a shell, libc or any file of the image.
//
// Each numbered line is "seq=<n> stream=<stdout|stderr>" (plus " xxx..."
// padding with -size) and "\n", written with one unbuffered write, so a test
// can check order and exactly-once delivery per stream. A restarted container
// runs it again and writes the same sequence numbers again.
//
// After the numbered lines come the -long lines: one of -long bytes of the
// -fill text, or with -longs K, K of them, each starting with "long=<k> " so
// they can be told apart. With -stream both they alternate stdout and
// stderr. -split D writes each in two parts 2D apart, as a process that
// flushes half a line does; with -between, a numbered line goes to the other
// stream in the middle of that wait (sequence numbers after the numbered
// lines), so the other stream moves on while the long line is open.
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
	longs    int
	fill     string
	split    time.Duration
	between  bool
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
	fs.IntVar(&c.longs, "longs", 0, "write this many -long lines, each starting with \"long=<k> \" (0: one, unnumbered)")
	fs.StringVar(&c.fill, "fill", longPattern, "text repeated to fill the -long lines, cut at -long bytes (may cut a multi-byte character)")
	fs.DurationVar(&c.split, "split", 0, "write each -long line in two parts, 2x this apart (0: one write)")
	fs.BoolVar(&c.between, "between", false, "with -split, write a numbered line to the other stream between the parts")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	switch {
	case fs.NArg() > 0:
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	case c.stream != "stdout" && c.stream != "stderr" && c.stream != "both":
		return c, fmt.Errorf("invalid -stream %q: want stdout, stderr or both", c.stream)
	case c.lines < 0, c.size < 0, c.long < 0, c.interval < 0, c.longs < 0, c.split < 0:
		return c, errors.New("-lines, -size, -long, -longs, -split and -interval must not be negative")
	case c.fill == "":
		return c, errors.New("-fill must not be empty")
	case c.between && c.split == 0:
		return c, errors.New("-between needs -split")
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
	if c.long == 0 {
		return nil
	}
	count := max(c.longs, 1)
	for k := 1; k <= count; k++ {
		w, name, other, otherName := stdout, "stdout", stderr, "stderr"
		if c.stream == "stderr" || (c.stream == "both" && k%2 == 0) {
			w, name, other, otherName = stderr, "stderr", stdout, "stdout"
		}
		seq := 0
		if c.longs > 0 {
			seq = k
		}
		line := longLine(seq, c.long, c.fill, !(k == count && c.partial))
		if c.split > 0 {
			half := c.long / 2
			if _, err := w.Write(line[:half]); err != nil {
				return fmt.Errorf("write long line to %s: %w", name, err)
			}
			if err := wait(c.split, sigs); err != nil {
				return err
			}
			if c.between {
				if _, err := other.Write(numbered(c.start+c.lines+k-1, otherName, c.size, true)); err != nil {
					return fmt.Errorf("write %s: %w", otherName, err)
				}
			}
			if err := wait(c.split, sigs); err != nil {
				return err
			}
			line = line[half:]
		}
		if _, err := w.Write(line); err != nil {
			return fmt.Errorf("write long line to %s: %w", name, err)
		}
	}
	return nil
}

// wait sleeps d unless a signal comes first.
func wait(d time.Duration, sigs <-chan os.Signal) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-sigs:
		return errSignalled
	}
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

// longLine is the k-th -long line: "long=<k> " when k > 0, then fill
// repeated, n bytes in all.
func longLine(k, n int, fill string, newline bool) []byte {
	b := make([]byte, 0, n+1)
	if k > 0 {
		b = append(b, "long="...)
		b = strconv.AppendInt(b, int64(k), 10)
		b = append(b, ' ')
	}
	for len(b) < n {
		b = append(b, fill...)
	}
	b = b[:n]
	if newline {
		b = append(b, '\n')
	}
	return b
}
