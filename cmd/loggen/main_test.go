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
	for _, args := range [][]string{{"-stream", "both2"}, {"-lines", "-1"}, {"extra"}, {"-size", "x"}, {"-between"}, {"-fill", ""}, {"-longs", "-2"}} {
		if _, err := parseFlags(args); err == nil {
			t.Errorf("parseFlags(%q) accepted", args)
		}
	}
}

func TestLongsAreNumberedFilledAndAlternateWithBoth(t *testing.T) {
	var out, errOut bytes.Buffer
	c := mustParse(t, "-lines", "0", "-long", "14", "-longs", "3", "-fill", "€", "-stream", "both")
	if err := write(c, &out, &errOut, nil); err != nil {
		t.Fatal(err)
	}
	// 7 bytes of "long=k " and the fill cut at 14 bytes: the last € is cut.
	if want := "long=1 €€\xe2\nlong=3 €€\xe2\n"; out.String() != want {
		t.Errorf("stdout = %q, want %q", out.String(), want)
	}
	if want := "long=2 €€\xe2\n"; errOut.String() != want {
		t.Errorf("stderr = %q, want %q", errOut.String(), want)
	}
}

// writeLog records the order of writes to either stream.
type writeLog struct {
	mu     *[]string
	stream string
}

func (w writeLog) Write(p []byte) (int, error) {
	*w.mu = append(*w.mu, w.stream+":"+string(p))
	return len(p), nil
}

func TestSplitWritesLongLineInTwoPartsWithALineOnTheOtherStreamBetween(t *testing.T) {
	var log []string
	c := mustParse(t, "-lines", "1", "-long", "10", "-longs", "1", "-split", "1ms", "-between")
	if err := write(c, writeLog{&log, "out"}, writeLog{&log, "err"}, nil); err != nil {
		t.Fatal(err)
	}
	want := []string{"out:seq=1 stream=stdout\n", "out:long=", "err:seq=2 stream=stderr\n", "out:1 012\n"}
	if strings.Join(log, "|") != strings.Join(want, "|") {
		t.Errorf("writes = %q, want %q", log, want)
	}
}
