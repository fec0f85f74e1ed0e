package capture

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// FuzzResume drives the reader through a stopped container's log whose
// streams the daemon breaks, corrupts and repeats at places chosen by the
// input, with stamps that interleave across stdout and stderr and long
// lines whose pieces are written while the other stream writes (so their
// later pieces are stamped before lines of the other stream read first).
// Whatever happens, every line must arrive exactly once, whole, in order
// per stream.
//
// Input bytes, consumed in order: the number of lines, then per line a
// byte whose low bit picks the stream, whose bit 6 starts a long line of
// two or three pieces (bit 3) on it, and whose rest is the stamp step
// (stderr may be stamped up to 1 ms before the stdout line ahead of it,
// never out of order within its own stream); while a stream has a long
// line open, its next line is that line's next piece. Then per stream the
// daemon opens, a byte for where it is cut, a byte for corruption and one
// for repeats.
func FuzzResume(f *testing.F) {
	f.Add([]byte{40, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 3, 0, 0, 5, 1, 0, 9, 0, 2})
	f.Add([]byte{200, 0xff, 0xfe, 0x01, 0x80, 0x81, 7, 0, 3, 1, 2, 0, 0, 0})
	f.Add([]byte{3, 1, 1, 1})
	// A long stdout line open across stderr lines and cuts (case 1).
	f.Add([]byte{8, 0x40, 0x05, 0x07, 0x02, 0x09, 0x02, 0x4b, 0x03, 2, 0, 0, 3, 0, 0, 2, 0, 0, 4, 0, 0})
	// Long lines open on both streams at once.
	f.Add([]byte{12, 0x48, 0x49, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x42, 0x43, 0x02, 0x03, 1, 0, 0, 1, 0, 0, 2, 0, 0, 5, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) { fuzzResume(t, data, false) })
}

// FuzzResumeWholeSeconds is FuzzResume against a daemon that stamps what it
// sends to the whole second (Podman), with lines about 30 ms apart, so that
// runs of entries of both streams share a stamp and only the counts in the
// positions tell them apart.
func FuzzResumeWholeSeconds(f *testing.F) {
	f.Add([]byte{40, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 3, 0, 0, 5, 1, 0, 9, 0, 2})
	f.Add([]byte{200, 0xff, 0xfe, 0x01, 0x80, 0x81, 7, 0, 3, 1, 2, 0, 0, 0})
	f.Add([]byte{60, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 1, 0, 0, 7, 0, 0, 2, 0, 0, 9, 0, 0})
	f.Add([]byte{8, 0x40, 0x05, 0x07, 0x02, 0x09, 0x02, 0x4b, 0x03, 2, 0, 0, 3, 0, 0, 2, 0, 0, 4, 0, 0})
	f.Add([]byte{12, 0x48, 0x49, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x42, 0x43, 0x02, 0x03, 1, 0, 0, 1, 0, 0, 2, 0, 0, 5, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) { fuzzResume(t, data, true) })
}

// maxWholeSecondCuts bounds the streams a whole-second daemon cuts: the
// reader backs off after each stream that delivered nothing, and the wait
// for every line must not outlast it.
const maxWholeSecondCuts = 4

// fuzzResume is the body of both targets; wholeSeconds makes the daemon
// stamp to the second and spaces the lines a thousand times wider.
func fuzzResume(t *testing.T, data []byte, wholeSeconds bool) {
	in := &fuzzInput{data: data}
	d := newFakeDaemon()
	d.wholeSeconds = wholeSeconds
	unit := Timestamp(997)
	if wholeSeconds {
		unit = Timestamp(time.Millisecond)
	}
	d.add(Container{ID: testID, Name: "fuzz", Image: "fuzz:1", Running: true})
	d.cutBreaks = true
	cuts := 0
	d.cutAfter = func() int {
		v := in.next()
		if wholeSeconds && cuts == maxWholeSecondCuts {
			// A resume re-reads the position's second from its start: a
			// daemon that cut every stream before that many entries would
			// never let it pass. Real cuts are not that regular.
			return -1
		}
		if v%4 != 0 {
			cuts++
			return 1 + int(v)%64
		}
		return -1
	}
	corruptions := 0
	d.corrupt = func() bool {
		// Corrupted more often than the reader reads a position again,
		// the bytes are taken for the log's own and skipped (README,
		// Exactly once): a broken connection is not that regular.
		c := in.next()%29 == 1 && corruptions < maxMalformedRereads
		if c {
			corruptions++
		}
		return c
	}
	d.repeat = func() int {
		v := in.next()
		if wholeSeconds {
			// Entries repeated at a stamp they share with new ones
			// cannot be told from them; Podman does not repeat.
			return 0
		}
		return int(v % 3)
	}

	n := int(in.next())
	want := map[StreamKind][]string{}
	last := map[StreamKind]Timestamp{}
	type longLine struct {
		ts     Timestamp
		left   int // pieces still to write
		text   string
		letter byte
	}
	open := map[StreamKind]*longLine{}
	ts := Timestamp(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	if !wholeSeconds {
		// Off the second: a nanosecond stamp exactly on a second takes the
		// whole-second path, where a daemon's repeat cannot be told from a
		// new line (README, Known limits); Docker's stamps land there about
		// once in a billion lines, the fuzzer's first line every time.
		ts++
	}
	// piece writes the next piece of s's open long line.
	piece := func(s StreamKind) {
		l := open[s]
		l.left--
		p := strings.Repeat(string(l.letter), pieceLen)
		if l.left == 0 {
			p = fmt.Sprintf("%s end", s)
		}
		l.text += p
		if l.left == 0 {
			p += "\n"
			want[s] = append(want[s], l.text)
			delete(open, s)
		}
		d.write(testID, s, l.ts, p)
	}
	for i := 0; i < n; i++ {
		b := in.next()
		s := Stdout
		if b&1 == 1 {
			s = Stderr
		}
		if open[s] != nil {
			piece(s)
			continue
		}
		ts += Timestamp(b>>1&0x1f) * unit
		stamp := ts
		if s == Stderr && b&2 == 2 {
			stamp -= Timestamp(int(b>>2&0xf)) * 4000 // under a millisecond early
		}
		if stamp <= last[s] {
			stamp = last[s] + 1
		}
		last[s] = stamp
		if b&0x40 != 0 {
			open[s] = &longLine{ts: stamp, left: 2 + int(b>>3&1), letter: 'a' + byte(i%26)}
			piece(s)
			continue
		}
		line := fmt.Sprintf("%s %d", s, i)
		d.write(testID, s, stamp, line+"\n")
		want[s] = append(want[s], line)
	}
	for _, s := range []StreamKind{Stdout, Stderr} {
		for open[s] != nil {
			piece(s)
		}
	}
	total := len(want[Stdout]) + len(want[Stderr])
	opts := testOptions()
	h := newHarness(t, d, opts)
	// It stops once the reader has asked for its log: the reader
	// follows, or reads without follow after a break, and must read the
	// whole log once either way.
	for len(d.logRequests()) == 0 {
		runtime.Gosched()
	}
	d.setRunningQuietly(testID, false)
	h.waitFor("every line", 30*time.Second, countFor(testID, total))
	h.stop()
	checkExactlyOnce(t, h.records(), testID, want)
}

// fuzzInput hands out the fuzzer's bytes; past the end it gives zeros,
// which mean no fault.
type fuzzInput struct {
	data []byte
	pos  int
}

func (in *fuzzInput) next() byte {
	if in.pos >= len(in.data) {
		return 0
	}
	in.pos++
	return in.data[in.pos-1]
}
