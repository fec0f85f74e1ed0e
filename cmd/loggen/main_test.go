package main

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func mustParse(t *testing.T, args ...string) config {
	t.Helper()
	c, err := parseFlags(args)
	if err != nil {
		t.Fatalf("parseFlags(%q): %v", args, err)
	}
	return c
}

func TestBothAlternatesStreamsAndPartialDropsLastNewline(t *testing.T) {
	var out, errOut bytes.Buffer
	c := mustParse(t, "-lines", "3", "-stream", "both", "-start", "5", "-partial")
	if err := write(c, &out, &errOut, nil); err != nil {
		t.Fatal(err)
	}
	if want := "seq=5 stream=stdout\nseq=7 stream=stdout"; out.String() != want {
		t.Errorf("stdout = %q, want %q", out.String(), want)
	}
	if want := "seq=6 stream=stderr\n"; errOut.String() != want {
		t.Errorf("stderr = %q, want %q", errOut.String(), want)
	}
}

func TestLongLineIsLastAndTakesThePartial(t *testing.T) {
	var out bytes.Buffer
	c := mustParse(t, "-lines", "1", "-long", "70", "-partial")
	if err := write(c, &out, nil, nil); err != nil {
		t.Fatal(err)
	}
	want := "seq=1 stream=stdout\n" + longPattern + longPattern[:8]
	if out.String() != want {
		t.Errorf("stdout = %q, want %q", out.String(), want)
	}
}

func TestSizePadsWholeLineIncludingNewline(t *testing.T) {
	l := numbered(12, "stderr", 40, true)
	if len(l) != 40 || !strings.HasPrefix(string(l), "seq=12 stream=stderr xx") {
		t.Errorf("line = %q (%d bytes), want 40 bytes", l, len(l))
	}
	if l := numbered(1, "stdout", 5, true); string(l) != "seq=1 stream=stdout\n" {
		t.Errorf("size smaller than the line: %q, want it unpadded", l)
	}
}

// signalOnWrite delivers SIGTERM once the first line is written, so the
// signal arrives during the wait before the second.
type signalOnWrite struct {
	bytes.Buffer
	sigs chan os.Signal
}

func (w *signalOnWrite) Write(p []byte) (int, error) {
	select {
	case w.sigs <- syscall.SIGTERM:
	default:
	}
	return w.Buffer.Write(p)
}

func TestSignalEndsTheWaitBetweenLines(t *testing.T) {
	w := &signalOnWrite{sigs: make(chan os.Signal, 1)}
	begin := time.Now()
	err := write(mustParse(t, "-lines", "3", "-interval", "1h"), w, nil, w.sigs)
	if !errors.Is(err, errSignalled) || time.Since(begin) > 10*time.Second {
		t.Errorf("write = %v after %v, want errSignalled at once", err, time.Since(begin))
	}
	if w.String() != "seq=1 stream=stdout\n" {
		t.Errorf("stdout = %q, want only the first line", w.String())
	}
}

func TestRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-stream", "both2"}, {"-lines", "-1"}, {"extra"}, {"-size", "x"}} {
		if _, err := parseFlags(args); err == nil {
			t.Errorf("parseFlags(%q) accepted", args)
		}
	}
}
