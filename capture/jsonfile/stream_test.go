package jsonfile

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dockerlogs/fluent-bit-docker-logs/capture"
)

// got is one entry of a stream as the reader's decoder sees it.
type got struct {
	stream capture.StreamKind
	ts     capture.Timestamp
	log    string
}

// decodeFrames splits a multiplexed stream with timestamps; it fails t on
// anything the reader's decoder would reject.
func decodeFrames(t *testing.T, b []byte) []got {
	t.Helper()
	var out []got
	for len(b) > 0 {
		if len(b) < frameHeaderLen {
			t.Fatalf("%d bytes left, a header needs 8", len(b))
		}
		size := int(binary.BigEndian.Uint32(b[4:8]))
		s := capture.StreamKind(b[0])
		if (s != capture.Stdout && s != capture.Stderr) || b[1]|b[2]|b[3] != 0 || len(b) < frameHeaderLen+size {
			t.Fatalf("bad frame header % x with %d bytes left", b[:8], len(b))
		}
		p := b[frameHeaderLen : frameHeaderLen+size]
		ts, n, err := capture.ParseTimestamp(p)
		if err != nil {
			t.Fatalf("frame stamp: %v", err)
		}
		out = append(out, got{s, ts, string(p[n:])})
		b = b[frameHeaderLen+size:]
	}
	return out
}

func quietLog() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// testInfo is a running non-TTY container.
func testInfo() *containerInfo { return &containerInfo{running: true, known: true} }

// readAll reads a stream that must end by itself.
func readAll(t *testing.T, d *fakeDriver, req capture.LogsRequest) []got {
	t.Helper()
	st, err := newStream(context.Background(), d.live, req, testInfo(), nil, quietLog())
	if err != nil {
		t.Fatalf("newStream: %v", err)
	}
	defer st.Close()
	b, err := io.ReadAll(st)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return decodeFrames(t, b)
}

// written is what a test wrote, in file order.
type written struct {
	stream capture.StreamKind
	ts     capture.Timestamp
	log    string
}

func writeLines(d *fakeDriver, from, n int) []written {
	var w []written
	for i := from; i < from+n; i++ {
		s, k := "stdout", capture.Stdout
		if i%3 == 2 {
			s, k = "stderr", capture.Stderr
		}
		l := line(i, s)
		w = append(w, written{k, d.write(s, l), l})
	}
	return w
}

func checkSame(t *testing.T, g []got, w []written) {
	t.Helper()
	if len(g) != len(w) {
		t.Fatalf("%d entries, want %d", len(g), len(w))
	}
	for i := range g {
		if g[i].stream != w[i].stream || g[i].ts != w[i].ts || g[i].log != w[i].log {
			t.Fatalf("entry %d: %v %d %q, want %v %d %q", i, g[i].stream, g[i].ts, g[i].log, w[i].stream, w[i].ts, w[i].log)
		}
	}
}

func TestHistoryAcrossRotatedAndCompressedFilesIsReadInOrder(t *testing.T) {
	for _, compress := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "compressed"}[compress], func(t *testing.T) {
			d := newFakeDriver(t, t.TempDir(), 2000, 4, compress)
			w := writeLines(d, 0, 150)
			d.compressing.Lock() // the last compression is done
			d.compressing.Unlock()
			if d.rotations < 3 {
				t.Fatalf("only %d rotations", d.rotations)
			}
			// Three rotated files are kept: the lines of the oldest
			// rotated out are gone, as they are for the daemon.
			all := readAll(t, d, capture.LogsRequest{Stdout: true, Stderr: true, Tail: -1})
			kept := w[len(w)-len(all):]
			if len(all) == 0 || len(all) == len(w) {
				t.Fatalf("%d of %d lines kept after %d rotations", len(all), len(w), d.rotations)
			}
			checkSame(t, all, kept)
		})
	}
}

func TestTailCountsEntriesFromTheEndAcrossFilesAndSinceIsInclusive(t *testing.T) {
	for _, compress := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "compressed"}[compress], func(t *testing.T) {
			d := newFakeDriver(t, t.TempDir(), 1500, 100, compress)
			w := writeLines(d, 0, 200)
			d.compressing.Lock()
			d.compressing.Unlock()
			for _, tail := range []int{0, 1, 7, 30, 31, 100, 199, 200, 1000} {
				g := readAll(t, d, capture.LogsRequest{Stdout: true, Stderr: true, Tail: tail})
				checkSame(t, g, w[len(w)-min(tail, len(w)):])
			}
			// since drops what is stamped before it, after tail picked.
			since := w[150].ts
			g := readAll(t, d, capture.LogsRequest{Stdout: true, Stderr: true, Tail: 100, Since: since})
			checkSame(t, g, w[150:])
			g = readAll(t, d, capture.LogsRequest{Stdout: true, Stderr: true, Tail: 20, Since: since})
			checkSame(t, g, w[180:])
			g = readAll(t, d, capture.LogsRequest{Stdout: true, Stderr: true, Tail: -1, Since: since + 1})
			checkSame(t, g, w[151:])
			// One stream only.
			var errs []written
			for _, x := range w[100:] {
				if x.stream == capture.Stderr {
					errs = append(errs, x)
				}
			}
			g = readAll(t, d, capture.LogsRequest{Stderr: true, Tail: 100})
			checkSame(t, g, errs)
		})
	}
}

func TestALineBeingWrittenIsNotCountedNorRead(t *testing.T) {
	d := newFakeDriver(t, t.TempDir(), 0, 1, false)
	w := writeLines(d, 0, 5)
	if _, err := d.f.WriteString(`{"log":"half`); err != nil {
		t.Fatal(err)
	}
	checkSame(t, readAll(t, d, capture.LogsRequest{Stdout: true, Stderr: true, Tail: 2}), w[3:])
	checkSame(t, readAll(t, d, capture.LogsRequest{Stdout: true, Stderr: true, Tail: -1}), w)
}

// follower reads a follow stream in the background.
type follower struct {
	st   *stream
	done chan struct{} // closed by the reading goroutine when Read failed
	err  error
	data chan []byte // every read's bytes; closed with done
	got  []byte      // what until and rest took from data
}

func follow(t *testing.T, d *fakeDriver, req capture.LogsRequest, ci *containerInfo) *follower {
	t.Helper()
	req.Follow = true
	st, err := newStream(context.Background(), d.live, req, ci, nil, quietLog())
	if err != nil {
		t.Fatalf("newStream: %v", err)
	}
	f := &follower{st: st, done: make(chan struct{}), data: make(chan []byte, 1<<16)}
	go func() {
		defer close(f.done)
		defer close(f.data)
		buf := make([]byte, 64<<10)
		for {
			n, err := st.Read(buf)
			if n > 0 {
				f.data <- append([]byte(nil), buf[:n]...)
			}
			if err != nil {
				f.err = err
				return
			}
		}
	}()
	t.Cleanup(func() { st.Close(); <-f.done })
	return f
}

// until collects what f read until it has n entries, failing after a
// minute.
func (f *follower) until(t *testing.T, n int) []got {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		if g := decodeFrames(t, f.got); len(g) >= n {
			return g
		}
		select {
		case p, ok := <-f.data:
			if !ok {
				t.Fatalf("stream ended (%v) after %d entries, want %d", f.err, len(decodeFrames(t, f.got)), n)
			}
			f.got = append(f.got, p...)
		case <-deadline:
			t.Fatalf("%d entries after a minute, want %d", len(decodeFrames(t, f.got)), n)
		}
	}
}

// rest collects what f reads until its stream ends and returns every entry
// it read with the error that ended it.
func (f *follower) rest(t *testing.T) ([]got, error) {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		select {
		case p, ok := <-f.data:
			if !ok {
				return decodeFrames(t, f.got), f.err
			}
			f.got = append(f.got, p...)
		case <-deadline:
			t.Fatal("stream did not end within a minute")
		}
	}
}

func TestFollowContinuesIntoTheNewFileAfterEachRotation(t *testing.T) {
	d := newFakeDriver(t, t.TempDir(), 3000, 3, false)
	f := follow(t, d, capture.LogsRequest{Stdout: true, Stderr: true, Tail: 0}, testInfo())
	var w []written
	// One rotation at a time, each awaited: the stream must stay open
	// and read every line.
	for range 5 {
		before := d.rotations
		for d.rotations == before {
			w = append(w, writeLines(d, len(w), 1)...)
		}
		checkSame(t, f.until(t, len(w)), w)
	}
	select {
	case <-f.done:
		t.Fatalf("stream ended: %v", f.err)
	default:
	}
}

func TestFollowEndsWhenTheContainerStopsAfterReadingItsLastLines(t *testing.T) {
	d := newFakeDriver(t, t.TempDir(), 0, 1, false)
	ci := testInfo()
	f := follow(t, d, capture.LogsRequest{Stdout: true, Stderr: true, Tail: -1}, ci)
	w := writeLines(d, 0, 10)
	f.until(t, 10)
	w = append(w, writeLines(d, 10, 5)...)
	ci.mu.Lock()
	ci.running = false
	ci.mu.Unlock()
	g, err := f.rest(t)
	if !errors.Is(err, io.EOF) {
		t.Fatalf("stream ended with %v, want io.EOF", err)
	}
	checkSame(t, g, w)
}

func TestFollowReadsADeletedFileToItsEndThenEnds(t *testing.T) {
	dir := t.TempDir()
	d := newFakeDriver(t, dir, 0, 1, false)
	f := follow(t, d, capture.LogsRequest{Stdout: true, Stderr: true, Tail: -1}, testInfo())
	w := writeLines(d, 0, 3)
	f.until(t, 3)
	w = append(w, writeLines(d, 3, 1000)...)
	// Removed with its container while open and not read to its end.
	if err := os.RemoveAll(filepath.Join(dir, testID)); err != nil {
		t.Fatal(err)
	}
	g, err := f.rest(t)
	if !errors.Is(err, io.EOF) {
		t.Fatalf("stream ended with %v, want io.EOF", err)
	}
	checkSame(t, g, w)
}

func TestCloseEndsAWaitingRead(t *testing.T) {
	d := newFakeDriver(t, t.TempDir(), 0, 1, false)
	f := follow(t, d, capture.LogsRequest{Stdout: true, Stderr: true, Tail: -1}, testInfo())
	f.st.Close()
	if _, err := f.rest(t); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Read after Close: %v, want os.ErrClosed", err)
	}
}

// A reader that does not read while the files rotate past max-file still
// gets every line: each new file is held open as soon as it exists.
func TestAReaderBehindByMoreThanMaxFileFilesLosesNothing(t *testing.T) {
	d := newFakeDriver(t, t.TempDir(), 2000, 2, false)
	st := openFollowed(t, d, testInfo())
	defer st.Close()
	// The watcher opens each new file by itself; nothing reads.
	w := rotateHolding(t, d, nil, 10, func() int { return held(st) })
	var b []byte
	buf := make([]byte, 64<<10)
	for len(decodeFrames(t, b)) < len(w) {
		n, err := st.Read(buf)
		if err != nil {
			t.Fatalf("read after %d entries: %v", len(decodeFrames(t, b)), err)
		}
		b = append(b, buf[:n]...)
	}
	checkSame(t, decodeFrames(t, b), w)
}

func held(st *stream) int {
	st.chain.mu.Lock()
	defer st.chain.mu.Unlock()
	return len(st.chain.held)
}

// After its file was compressed, the file that followed a held one is
// still found: by its size and first line, also when the reader has read
// and closed it before the chain looked, and when the stamp in the gzip
// header is a later line's (Docker 20.10 under load).
func TestTheFileAfterACompressedOneIsFoundByItsSizeAndFirstLine(t *testing.T) {
	for _, c := range []struct {
		name         string
		closed, late bool
	}{{"held", false, false}, {"read and closed", true, false}, {"late header stamp", false, true}, {"late header stamp, closed", true, true}} {
		closed := c.closed
		t.Run(c.name, func(t *testing.T) {
			d := newFakeDriver(t, t.TempDir(), 2000, 5, true)
			if c.late {
				d.lateHeader = time.Millisecond
			}
			f, err := os.Open(d.live)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			info, err := f.Stat()
			if err != nil {
				t.Fatal(err)
			}
			// info is from when it was opened, empty, as in a chain.
			held := &logFile{f: f, r: f, name: d.live, info: info, live: true}
			c := &chain{live: d.live, last: held, log: quietLog()}
			var w []written
			for d.rotations < 1 {
				w = append(w, writeLines(d, len(w), 1)...)
			}
			first := len(readFile(t, f)) // the next file starts with w[first]
			if closed {
				c.release(held)
			}
			for d.rotations < 2 {
				w = append(w, writeLines(d, len(w), 1)...)
			}
			d.compressing.Lock() // both compressions are done
			d.compressing.Unlock()
			if _, err := os.Stat(d.live + ".2.gz"); err != nil {
				t.Fatalf("the held file was not compressed to .2.gz: %v", err)
			}
			next, err := openNext(d.live, held)
			if err != nil || next == nil {
				t.Fatalf("openNext: %v, %v", next, err)
			}
			defer next.close()
			if next.name != d.live+".1.gz" || !next.gz || !next.final {
				t.Fatalf("next is %s (gz %v, final %v), want the final %s.1.gz", next.name, next.gz, next.final, d.live)
			}
			b, err := io.ReadAll(next.r)
			if err != nil {
				t.Fatal(err)
			}
			g := readLines(t, b)
			if len(g) == 0 || g[0].log != w[first].log {
				t.Fatalf("next starts with %v, want line %d %q", g[:min(1, len(g))], first, w[first].log)
			}
		})
	}
}

func readFile(t *testing.T, f *os.File) []got {
	t.Helper()
	b, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<30))
	if err != nil {
		t.Fatal(err)
	}
	return readLines(t, b)
}

// readLines parses json-file lines.
func readLines(t *testing.T, b []byte) []got {
	t.Helper()
	var out []got
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			t.Fatalf("unterminated line %q", b)
		}
		o, e, err := parseLine(nil, b[:i])
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, got{e.stream, e.ts, string(o[fixedStampLen+1:])})
		b = b[i+1:]
	}
	return out
}

// A followed stream closed while it holds rotated files that the daemon
// has deleted since (a refresh of a reader that is behind) hands them to
// the container's next stream, which reads them whole.
func TestFilesHeldByAClosedStreamAreReadByTheNext(t *testing.T) {
	d := newFakeDriver(t, t.TempDir(), 2000, 2, false)
	ci := testInfo()
	st := openFollowed(t, d, ci)
	w := rotateHolding(t, d, nil, 5, func() int { return held(st) })
	// Half of the first file is read before the close.
	buf := make([]byte, 600)
	if _, err := st.Read(buf); err != nil {
		t.Fatal(err)
	}
	st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	readOnAfterClose(t, ctx, d, ci, w)
}

// readOnAfterClose opens the container's next stream, with what the last
// one kept, and checks that it reads w.
func readOnAfterClose(t *testing.T, ctx context.Context, d *fakeDriver, ci *containerInfo, w []written) {
	t.Helper()
	kept, whole := ci.takeKept()
	if !whole {
		t.Error("the kept chain missed a file")
	}
	st, err := newStream(ctx, d.live, followAll, ci, kept, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var b []byte
	buf := make([]byte, 64<<10)
	for len(decodeFrames(t, b)) < len(w) {
		n, err := st.Read(buf)
		if err != nil {
			t.Fatalf("read after %d entries: %v", len(decodeFrames(t, b)), err)
		}
		b = append(b, buf[:n]...)
	}
	checkSame(t, decodeFrames(t, b), w)
}

// Between two streams of a container (a refresh), the log rotates until
// the daemon deletes files created after the first stream closed: the
// closed stream's chain has gone on holding each new file, so the next
// stream reads them whole.
func TestFilesCreatedBetweenTwoStreamsAreHeldForTheNext(t *testing.T) {
	d := newFakeDriver(t, t.TempDir(), 2000, 3, false)
	ci := testInfo()
	st := openFollowed(t, d, ci)
	w := writeLines(d, 0, 5)
	buf := make([]byte, 64<<10)
	if _, err := st.Read(buf); err != nil {
		t.Fatal(err)
	}
	st.Close()
	// Four rotations: with max-file=3 the daemon deletes the first two
	// files created after the close.
	w = rotateHolding(t, d, w, 4, func() int { return keptHeld(ci) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	readOnAfterClose(t, ctx, d, ci, w)
}

// followAll asks for every entry of both streams, followed.
var followAll = capture.LogsRequest{Stdout: true, Stderr: true, Tail: -1, Follow: true}

// openFollowed opens a followed stream of all of d's log for ci.
func openFollowed(t *testing.T, d *fakeDriver, ci *containerInfo) *stream {
	t.Helper()
	st, err := newStream(context.Background(), d.live, followAll, ci, nil, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// rotateHolding writes lines after w until the log has rotated n times,
// waiting after each rotation until held counts one more file held.
func rotateHolding(t *testing.T, d *fakeDriver, w []written, n int, held func() int) []written {
	t.Helper()
	for r := 1; r <= n; r++ {
		for d.rotations < r {
			w = append(w, writeLines(d, len(w), 1)...)
		}
		deadline := time.Now().Add(10 * time.Second)
		for held() < r {
			if time.Now().After(deadline) {
				t.Fatalf("%d files held after rotation %d", held(), r)
			}
			time.Sleep(time.Millisecond) // the watcher has no event to await here
		}
	}
	return w
}

// keptHeld counts the files the kept chain holds (0 without one).
func keptHeld(ci *containerInfo) int {
	ci.mu.Lock()
	ch := ci.keeping
	ci.mu.Unlock()
	if ch == nil {
		return 0
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return len(ch.held)
}
