package capture

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"
	"unsafe"
)

var updateStreams = flag.Bool("update-streams", false, "rewrite capture/testdata/*.bin and the FuzzDecoder seeds (go test -run TestGenerateTestdata -update-streams)")

// testMaxFrame is the smallest frame bound the reader ever uses
// (maxFrameSize of a small Max_Line_Size).
const testMaxFrame = 4*pieceLen + maxTimestampLen

// muxFrame is one multiplexed frame: [stream, 0, 0, 0, size uint32 BE] then
// the payload.
func muxFrame(stream byte, payload string) []byte {
	b := []byte{stream, 0, 0, 0}
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...)
}

// muxHeader is a frame header alone, claiming size bytes.
func muxHeader(stream byte, size uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{stream, 0, 0, 0}, size)
}

// decoded is an entry copied out of the decoder's buffer.
type decoded struct {
	stream StreamKind
	ts     Timestamp
	data   string
}

func (e decoded) String() string {
	d := e.data
	if len(d) > 60 {
		d = fmt.Sprintf("%s...(%d bytes)...%s", d[:25], len(d), d[len(d)-25:])
	}
	return fmt.Sprintf("{%s %d %q}", e.stream, e.ts, d)
}

var errSpinning = errors.New("decoder made no progress")

// drain drives d as the reader does: next until it needs bytes, then fill,
// calling each for every entry and going on after skipped bytes
// (ErrSkipped), until another error, which it returns. The test
// readers give at least one byte to every Read of a non-empty buffer, so a
// fill that returns nil having read nothing and seen no end means a decoder
// that would spin: drain returns errSpinning then, or after steps calls.
func drain(d *decoder, steps int, each func(entry)) error {
	for range steps {
		e, ok, err := d.next()
		if errors.Is(err, ErrSkipped) {
			continue
		}
		if err != nil {
			return err
		}
		if ok {
			each(e)
			continue
		}
		buffered, eof := d.end-d.start, d.eof
		if err := d.fill(); err != nil {
			return err
		}
		if d.end-d.start <= buffered && d.eof == eof {
			return errSpinning
		}
	}
	return errSpinning
}

var errEmptyRead = errors.New("decoder called Read with an empty buffer")

// refuseEmpty fails a Read of nothing: a decoder that asks for no bytes
// would spin, and some readers (iotest.DataErrReader) never return then.
type refuseEmpty struct{ r io.Reader }

func (r refuseEmpty) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, errEmptyRead
	}
	return r.r.Read(p)
}

// decodeAll drains a new decoder of r, copying the entries out of its
// buffer.
func decodeAll(r io.Reader, raw bool, maxFrame int, buf []byte, steps int) ([]decoded, error) {
	var out []decoded
	err := drain(newDecoder(refuseEmpty{r}, modeOf(raw), maxFrame, buf), steps, func(e entry) {
		out = append(out, decoded{e.stream, e.ts, string(e.data)})
	})
	return out, err
}

// stepsFor bounds decodeAll for an input: every step either consumes a byte
// or reads at least one.
func stepsFor(in []byte) int { return 4*len(in) + 64 }

// wireMsg is one message as the daemon sends it.
type wireMsg struct {
	stream StreamKind
	stamp  string // RFC 3339 without the space; empty for SystemErr
	data   string
}

// streamSpec describes a logs stream: its bytes and the entries a decoder
// must find in them are both derived from the messages.
type streamSpec struct {
	file string
	raw  bool
	msgs []wireMsg
}

func (s streamSpec) bytes() []byte {
	var b []byte
	for _, m := range s.msgs {
		payload := m.data
		if m.stream != SystemErr {
			payload = m.stamp + " " + m.data
		}
		if s.raw {
			b = append(b, payload...)
		} else {
			b = append(b, muxFrame(byte(m.stream), payload)...)
		}
	}
	return b
}

func (s streamSpec) want(t *testing.T) []decoded {
	t.Helper()
	var out []decoded
	for _, m := range s.msgs {
		e := decoded{stream: m.stream, data: m.data}
		if m.stream != SystemErr {
			e.ts = stdlibStamp(t, m.stamp)
		}
		out = append(out, e)
	}
	return out
}

// longText is n bytes of printable text without a newline.
func longText(n int, seed byte) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + (seed+byte(i%251))%26
	}
	return string(b)
}

// pieces cuts a line as the daemon does: every pieceLen bytes.
func pieces(line string) []string {
	var out []string
	for len(line) > pieceLen {
		out = append(out, line[:pieceLen])
		line = line[pieceLen:]
	}
	return append(out, line)
}

func pieceMsgs(stream StreamKind, stamp, line string) []wireMsg {
	var out []wireMsg
	for _, p := range pieces(line) {
		// Every piece carries the first piece's stamp.
		out = append(out, wireMsg{stream, stamp, p})
	}
	return out
}

func concatMsgs(parts ...[]wireMsg) []wireMsg {
	var out []wireMsg
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// smallMux is a short multiplexed stream, for tests that try every split.
var smallMux = streamSpec{file: "", msgs: []wireMsg{
	{Stdout, "2024-03-01T10:00:00.000000001Z", "starting server on :8080\n"},
	// stderr stamped before the stdout line it follows: streams are not
	// ordered against each other.
	{Stderr, "2024-03-01T10:00:00.000000000Z", "warning: config file not found, using defaults\n"},
	{Stdout, "2024-03-01T10:00:00.000100000Z", "\n"},
	{Stdout, "2024-03-01T10:00:00.000100000Z", "GET /a 200\n"},
	{Stderr, "2024-03-01T10:00:01.999999999Z", "na\u00efve caf\u00e9 \u2713\ttab\n"},
	{SystemErr, "", "Error grabbing logs: invalid character 'l' after object key:value pair\n"},
}}

// streamSpecs are the captured-like streams kept in testdata.
func streamSpecs() []streamSpec { return streamSpecsWith(longText) }

// streamSpecsWith builds the streams with fill for the long lines' text.
func streamSpecsWith(fill func(n int, seed byte) string) []streamSpec {
	const longStamp = "2024-03-01T10:00:02.123456789Z"
	return []streamSpec{
		{file: "multiplexed.bin", msgs: concatMsgs(
			smallMux.msgs[:len(smallMux.msgs)-1],
			[]wireMsg{
				{Stdout, "2024-03-01T10:00:02.000000000Z", "GET /healthz 200 0.4ms\n"},
				{Stdout, "2024-03-01T10:00:02.000000000Z", "GET /healthz 200 0.3ms\n"},
			},
			pieceMsgs(Stdout, longStamp, fill(20000, 3)+"\n"),
			[]wireMsg{
				{Stderr, "2024-03-01T10:00:03.5Z", "short fraction from an old daemon\n"},
				{SystemErr, "", "Error grabbing logs: log message is too large (1048577 > 1048576)\n"},
			},
		)},
		{file: "multiplexed-local.bin", msgs: []wireMsg{
			// local driver on Docker < 25: local time with an offset.
			{Stdout, "2024-03-01T12:00:00.123456789+02:00", "local driver line\n"},
			{Stderr, "2024-03-01T03:00:00.123456789-07:00", "same instant, another zone\n"},
			{Stdout, "2024-03-01T12:00:00.5+02:00", "fewer fraction digits\n"},
		}},
		{file: "tty.bin", raw: true, msgs: concatMsgs(
			[]wireMsg{
				{Stdout, "2024-03-01T10:00:00.000000001Z", "\x1b[32mINFO\x1b[0m ready\r\n"},
				{Stdout, "2024-03-01T10:00:00.000000002Z", "\r\n"},
				{Stdout, "2024-03-01T10:00:00.000000003Z", "10%\r50%\r100%\r\n"},
			},
			pieceMsgs(Stdout, longStamp, fill(40000-2, 7)+"\r\n"),
			[]wireMsg{
				{Stdout, "2024-03-01T10:00:05.000000000Z", "after the long line\r\n"},
				// a prompt without a newline: the container exited.
				{Stdout, "2024-03-01T10:00:06.000000000Z", "$ "},
			},
		)},
		{file: "long-line.bin", msgs: concatMsgs(
			pieceMsgs(Stdout, longStamp, fill(40000-1, 11)+"\n")[:2],
			// stderr is copied by its own goroutine: it can come between
			// the pieces of a stdout line.
			[]wireMsg{{Stderr, "2024-03-01T10:00:02.200000000Z", "interleaved\n"}},
			pieceMsgs(Stdout, longStamp, fill(40000-1, 11)+"\n")[2:],
			// the process exited mid-line: a last piece without '\n'.
			pieceMsgs(Stdout, "2024-03-01T10:00:09.000000000Z", fill(pieceLen+100, 13)),
		)},
		// Pieces of other lengths than the cut, on both framings: json-file
		// replaces the bytes of a character cut at the boundary with
		// U+FFFD, another driver's log cache cuts later, and a process
		// killed at a boundary leaves a piece whose line never ends.
		{file: "pieces-any-length.bin", msgs: piecesAnyLength(fill, "\n")},
		{file: "tty-pieces-any-length.bin", raw: true, msgs: piecesAnyLength(fill, "\r\n")},
	}
}

// piecesAnyLength is a stdout log with pieces of unexpected lengths; nl
// ends its lines.
func piecesAnyLength(fill func(n int, seed byte) string, nl string) []wireMsg {
	const a, b, c = "2024-03-01T10:00:04.000000001Z", "2024-03-01T10:00:04.000000002Z", "2024-03-01T10:00:05.000000003Z"
	return []wireMsg{
		{Stdout, a, fill(pieceLen-1, 17) + "\u20ac"[:1] + "\ufffd"[1:] + "\ufffd"[:1]},
		{Stdout, a, "\ufffd"[1:] + "\ufffd\ufffd" + fill(100, 19) + nl},
		{Stdout, b, fill(2*pieceLen+7, 23)},
		{Stdout, b, "end of a larger piece" + nl},
		{Stdout, c, fill(pieceLen, 29)},
		{Stdout, "2024-03-01T10:00:06.000000000Z", "the next run's line" + nl},
	}
}

// FuzzDecoder inputs are compressed: fuzzRunEscape and a uint16
// big-endian count stand for that many 'x' bytes. Seeds with 16 KiB pieces
// stay a few hundred bytes, which the fuzzer can mutate and minimize
// quickly; any input without the escape means itself.
const fuzzRunEscape = "\xff\xfe"

func expandRuns(in []byte) []byte {
	var out []byte
	for {
		i := bytes.Index(in, []byte(fuzzRunEscape))
		if i < 0 || len(in) < i+len(fuzzRunEscape)+2 {
			return append(out, in...)
		}
		n := int(binary.BigEndian.Uint16(in[i+len(fuzzRunEscape):]))
		out = append(append(out, in[:i]...), bytes.Repeat([]byte{'x'}, n)...)
		in = in[i+len(fuzzRunEscape)+2:]
	}
}

// compressRuns replaces runs of 256 or more 'x' by escapes.
func compressRuns(b []byte) []byte {
	var out []byte
	for len(b) > 0 {
		i := bytes.IndexByte(b, 'x')
		if i < 0 {
			return append(out, b...)
		}
		out, b = append(out, b[:i]...), b[i:]
		n := 0
		for n < len(b) && n < 0xffff && b[n] == 'x' {
			n++
		}
		if n < 256 {
			out, b = append(out, b[:n]...), b[n:]
			continue
		}
		out = binary.BigEndian.AppendUint16(append(out, fuzzRunEscape...), uint16(n))
		b = b[n:]
	}
	return out
}

func repeatX(n int, _ byte) string { return strings.Repeat("x", n) }

// fuzzSeed is one FuzzDecoder corpus entry.
type fuzzSeed struct {
	name     string
	data     []byte
	raw      bool
	readSize uint8
}

func fuzzSeeds() []fuzzSeed {
	var seeds []fuzzSeed
	for _, s := range streamSpecsWith(repeatX) {
		b := s.bytes()
		if bytes.Contains(b, []byte(fuzzRunEscape)) {
			panic(s.file + " holds the fuzz run escape")
		}
		b = compressRuns(b)
		base := strings.TrimSuffix(s.file, ".bin")
		seeds = append(seeds,
			fuzzSeed{base, b, s.raw, 255},
			fuzzSeed{base + "-other-mode", b, !s.raw, 255},
			fuzzSeed{base + "-truncated", b[:len(b)*2/3], s.raw, 100},
		)
	}
	small := smallMux.bytes()
	seeds = append(seeds,
		fuzzSeed{"small-one-byte-reads", small, false, 0},
		fuzzSeed{"bad-stream-byte", append(append([]byte{}, small[:40]...), muxFrame(4, "x")...), false, 7},
		fuzzSeed{"huge-frame-header", muxHeader(1, 0xffffffff), false, 3},
		fuzzSeed{"missing-stamp", muxFrame(2, "no stamp here\n"), false, 9},
		fuzzSeed{"missing-stamp-then-line", append(muxFrame(2, "no stamp here\n"), small[:40]...), false, 5},
		fuzzSeed{"tty-line-without-stamp", []byte("2024-03-01T10:00:00.000000000Z ok\r\nno stamp\r\n2024-03-01T10:00:00.000000001Z after\r\n"), true, 6},
	)
	return seeds
}

func corpusFile(s fuzzSeed) []byte {
	return fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\nbool(%v)\nbyte(%q)\n", s.data, s.raw, s.readSize)
}

// TestGenerateTestdata keeps the committed streams and fuzz seeds equal to
// their descriptions; with -update-streams it rewrites them.
func TestGenerateTestdata(t *testing.T) {
	files := map[string][]byte{}
	for _, s := range streamSpecs() {
		files[filepath.Join("testdata", s.file)] = s.bytes()
	}
	for _, s := range fuzzSeeds() {
		files[filepath.Join("testdata", "fuzz", "FuzzDecoder", s.name)] = corpusFile(s)
	}
	for _, s := range streamSpecsWith(repeatX) {
		if b := s.bytes(); !bytes.Equal(expandRuns(compressRuns(b)), b) {
			t.Errorf("%s: fuzz seed does not expand to the stream", s.file)
		}
	}
	for path, want := range files {
		if *updateStreams {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("%v (run go test -run TestGenerateTestdata -update-streams)", err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from its description (run go test -run TestGenerateTestdata -update-streams)", path)
		}
	}
}

// readerVariants deliver the same bytes in differently sized Reads.
var readerVariants = []struct {
	name string
	wrap func(io.Reader) io.Reader
}{
	{"whole", func(r io.Reader) io.Reader { return r }},
	{"one-byte", iotest.OneByteReader},
	{"half", iotest.HalfReader},
	{"eof-with-data", iotest.DataErrReader},
	{"7-byte", func(r io.Reader) io.Reader { return &sizedReader{r: r, n: 7} }},
}

// sizedReader returns at most n bytes a Read.
type sizedReader struct {
	r io.Reader
	n int
}

func (s *sizedReader) Read(p []byte) (int, error) { return s.r.Read(p[:min(len(p), s.n)]) }

// splitReader returns b[:at] on its first Read and the rest on the next.
type splitReader struct {
	b     []byte
	at    int
	reads int
}

func (s *splitReader) Read(p []byte) (int, error) {
	s.reads++
	switch {
	case s.reads == 1 && s.at > 0:
		n := copy(p, s.b[:s.at])
		s.b = s.b[n:]
		s.at -= n
		return n, nil
	case len(s.b) == 0:
		return 0, io.EOF
	}
	n := copy(p, s.b)
	s.b = s.b[n:]
	return n, nil
}

// failingReader reads from r until n Reads were made, then fails with err.
type failingReader struct {
	r   io.Reader
	n   int
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, f.err
	}
	f.n--
	return f.r.Read(p)
}

func sameEntries(t *testing.T, got, want []decoded) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("got %d entries, want %d\ngot:  %v\nwant: %v", len(got), len(want), got, want)
		return
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("entry %d = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestDecoderReadsCapturedStreams(t *testing.T) {
	buf := make([]byte, minReadBuf)
	for _, s := range streamSpecs() {
		in, err := os.ReadFile(filepath.Join("testdata", s.file))
		if err != nil {
			t.Fatal(err)
		}
		want := s.want(t)
		for _, rv := range readerVariants {
			t.Run(s.file+"/"+rv.name, func(t *testing.T) {
				got, err := decodeAll(rv.wrap(bytes.NewReader(in)), s.raw, testMaxFrame, buf, stepsFor(in))
				if err != io.EOF {
					t.Errorf("decoder ended with %v, want io.EOF", err)
				}
				sameEntries(t, got, want)
			})
		}
	}
}

func TestDecoderSplitsMultiplexedFramesByStream(t *testing.T) {
	in := smallMux.bytes()
	got, err := decodeAll(bytes.NewReader(in), false, testMaxFrame, nil, stepsFor(in))
	if err != io.EOF {
		t.Fatalf("decoder ended with %v, want io.EOF", err)
	}
	want := smallMux.want(t)
	sameEntries(t, got, want)
	last := got[len(got)-1]
	if last.stream != SystemErr || last.ts != 0 || !strings.HasPrefix(last.data, "Error grabbing logs:") {
		t.Errorf("daemon error frame decoded as %v, want its whole text with no timestamp", last)
	}
}

func TestDecoderReassemblesFramesSplitAtEveryByte(t *testing.T) {
	for _, s := range []streamSpec{smallMux, {raw: true, msgs: streamSpecs()[2].msgs[:3]}} {
		in := s.bytes()
		want := s.want(t)
		buf := make([]byte, minReadBuf)
		for at := 1; at < len(in); at++ {
			got, err := decodeAll(&splitReader{b: in, at: at}, s.raw, testMaxFrame, buf, stepsFor(in))
			if err != io.EOF {
				t.Fatalf("raw=%v split at %d: decoder ended with %v, want io.EOF", s.raw, at, err)
			}
			if len(got) != len(want) {
				t.Fatalf("raw=%v split at %d: %d entries, want %d", s.raw, at, len(got), len(want))
			}
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("raw=%v split at %d: entry %d = %v, want %v", s.raw, at, i, got[i], want[i])
				}
			}
		}
	}
}

func TestDecoderGrowsBufferForFrameLargerThanInitial(t *testing.T) {
	const stamp = "2024-03-01T10:00:00.000000000Z"
	for _, size := range []int{minReadBuf - frameHeaderLen, minReadBuf, minReadBuf + 1, 200 << 10} {
		line := longText(size-len(stamp)-2, 1) + "\n"
		spec := streamSpec{msgs: []wireMsg{
			{Stdout, stamp, "small line before, so the big frame starts mid-buffer\n"},
			{Stderr, stamp, line},
			{Stdout, stamp, "small line after\n"},
		}}
		in := spec.bytes()
		for _, rv := range readerVariants {
			if rv.name == "one-byte" {
				continue // correct but slow for 200 KiB under -race; 7-byte covers small reads
			}
			t.Run(fmt.Sprintf("%d/%s", size, rv.name), func(t *testing.T) {
				d := newDecoder(refuseEmpty{rv.wrap(bytes.NewReader(in))}, modeMultiplexed, 1<<20, nil)
				var got []decoded
				err := drain(d, stepsFor(in), func(e entry) {
					got = append(got, decoded{e.stream, e.ts, string(e.data)})
				})
				if err != io.EOF {
					t.Fatalf("decoder ended with %v, want io.EOF", err)
				}
				sameEntries(t, got, spec.want(t))
				if n := len(d.buffer()); n < frameHeaderLen+len(stamp)+1+len(line) {
					t.Errorf("buffer handed back has %d bytes, less than the frame it held", n)
				}
			})
		}
	}
}

func TestDecoderReusesBufferItIsGiven(t *testing.T) {
	in := smallMux.bytes()
	t.Run("large enough", func(t *testing.T) {
		buf := make([]byte, 10, 2*minReadBuf)
		d := newDecoder(bytes.NewReader(in), modeMultiplexed, testMaxFrame, buf)
		err := drain(d, stepsFor(in), func(entry) {})
		if err != io.EOF {
			t.Fatalf("decoder ended with %v, want io.EOF", err)
		}
		if got := d.buffer(); unsafe.SliceData(got) != unsafe.SliceData(buf) || len(got) != cap(buf) {
			t.Errorf("buffer handed back is not the one given, at its full capacity")
		}
	})
	t.Run("too small", func(t *testing.T) {
		d := newDecoder(bytes.NewReader(in), modeMultiplexed, testMaxFrame, make([]byte, 100))
		if n := len(d.buffer()); n < minReadBuf {
			t.Errorf("buffer has %d bytes, want at least %d", n, minReadBuf)
		}
	})
}

// decodeSkipping drains a new decoder of in as the reader does, going on
// after skipped bytes; it returns the entries, the skip errors and how the
// stream ended.
func decodeSkipping(in []byte, maxFrame int) (got []decoded, skips []error, err error) {
	d := newDecoder(refuseEmpty{bytes.NewReader(in)}, modeMultiplexed, maxFrame, nil)
	for range stepsFor(in) {
		e, ok, err := d.next()
		switch {
		case errors.Is(err, ErrSkipped):
			skips = append(skips, err)
			continue
		case err != nil:
			return got, skips, err
		case ok:
			got = append(got, decoded{e.stream, e.ts, string(e.data)})
			continue
		}
		if err := d.fill(); err != nil {
			return got, skips, err
		}
	}
	return got, skips, errSpinning
}

// A frame header with an unknown stream byte is no frame: the decoder skips
// to the next plausible header and reads on.
func TestDecoderSkipsToTheNextFrameAfterAnUnknownStreamByte(t *testing.T) {
	good := muxFrame(1, "2024-03-01T10:00:00.000000000Z ok\n")
	for _, b := range []byte{0, 4, 255} {
		t.Run(fmt.Sprint(b), func(t *testing.T) {
			in := append(append([]byte{}, good...), muxFrame(b, "2024-03-01T10:00:00.000000000Z bad\n")...)
			in = append(in, good...)
			got, skips, err := decodeSkipping(in, testMaxFrame)
			if err != io.EOF || len(skips) != 1 || !errors.Is(skips[0], ErrBadStreamByte) {
				t.Fatalf("decoder ended with %v after skips %v, want io.EOF after one ErrBadStreamByte", err, skips)
			}
			if len(got) != 2 || got[0].data != "ok\n" || got[1].data != "ok\n" {
				t.Errorf("entries = %v, want the good line on both sides of the bad frame", got)
			}
		})
	}
}

func TestDecoderRejectsFrameLargerThanBound(t *testing.T) {
	const bound = 1000
	const stamp = "2024-03-01T10:00:00.000000000Z "
	atBound := stamp + longText(bound-len(stamp)-1, 0) + "\n"
	t.Run("at the bound", func(t *testing.T) {
		in := muxFrame(1, atBound)
		got, err := decodeAll(bytes.NewReader(in), false, bound, nil, stepsFor(in))
		if err != io.EOF || len(got) != 1 || len(got[0].data) != bound-len(stamp) {
			t.Errorf("frame of exactly the bound: %v, %v; want one entry and io.EOF", got, err)
		}
	})
	t.Run("one over", func(t *testing.T) {
		in := append(muxFrame(1, atBound+"x"), muxFrame(1, stamp+"next\n")...)
		got, skips, err := decodeSkipping(in, bound)
		if err != io.EOF || len(skips) == 0 || !errors.Is(skips[0], ErrFrameTooLarge) || len(got) != 1 || got[0].data != "next\n" {
			t.Errorf("decoder ended with %v after skips %v, entries %v; want ErrFrameTooLarge skipped, then the next frame", err, skips, got)
		}
	})
	// A corrupt header claiming 4 GiB is skipped from the header alone:
	// no waiting for the payload, no buffer of that size.
	for _, size := range []uint32{1 << 31, 0xffffffff} {
		t.Run(fmt.Sprintf("header claims %d", size), func(t *testing.T) {
			in := append(muxHeader(2, size), muxFrame(1, stamp+"next\n")...)
			d := newDecoder(refuseEmpty{bytes.NewReader(in)}, modeMultiplexed, bound, nil)
			var got []string
			err := drain(d, stepsFor(in), func(e entry) { got = append(got, string(e.data)) })
			if err != io.EOF || d.skipped != frameHeaderLen || len(got) != 1 || got[0] != "next\n" {
				t.Errorf("ended with %v, %d bytes skipped, entries %q; want the header skipped and the next frame read", err, d.skipped, got)
			}
			if n := len(d.buffer()); n > minReadBuf {
				t.Errorf("buffer grew to %d bytes for a frame it refuses", n)
			}
		})
	}
}

func TestDecoderReportsTruncationAtEveryCut(t *testing.T) {
	in := smallMux.bytes()
	// Frame boundaries, from the spec, not from the decoder.
	ends := map[int]int{0: 0} // offset -> entries complete there
	off := 0
	for i, m := range smallMux.msgs {
		off += len(muxFrame(byte(m.stream), "")) + len(m.data)
		if m.stream != SystemErr {
			off += len(m.stamp) + 1
		}
		ends[off] = i + 1
	}
	if off != len(in) {
		t.Fatalf("boundaries end at %d, stream has %d bytes", off, len(in))
	}
	want := smallMux.want(t)
	buf := make([]byte, minReadBuf)
	complete := 0
	for cut := 0; cut <= len(in); cut++ {
		if n, ok := ends[cut]; ok {
			complete = n
		}
		got, err := decodeAll(iotest.HalfReader(bytes.NewReader(in[:cut])), false, testMaxFrame, buf, stepsFor(in))
		_, boundary := ends[cut]
		switch {
		case boundary && err != io.EOF:
			t.Errorf("cut at frame boundary %d: decoder ended with %v, want io.EOF", cut, err)
		case !boundary && !errors.Is(err, ErrTruncated):
			t.Errorf("cut at %d, inside a frame: decoder ended with %v, want ErrTruncated", cut, err)
		}
		if len(got) != complete {
			t.Errorf("cut at %d: %d entries, want the %d complete frames", cut, len(got), complete)
			continue
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("cut at %d: entry %d = %v, want %v", cut, i, got[i], want[i])
			}
		}
	}
}

// A frame whose payload does not start with a stamp is skipped whole, with
// ErrSkipped naming the cause, and the next frame is read.
func TestDecoderSkipsFrameWithMalformedOrMissingTimestamp(t *testing.T) {
	next := muxFrame(1, "2024-03-01T10:00:00.000000001Z next\n")
	for _, tc := range []struct {
		name    string
		stream  byte
		payload string
	}{
		{"no stamp", 1, "plain text line without a timestamp\n"},
		{"empty frame", 1, ""},
		{"stamp without its space", 2, "2024-03-01T10:00:00.000000000Z"},
		{"impossible date", 1, "2024-02-30T10:00:00.000000000Z line\n"},
		{"garbled stamp", 2, "2024-03-01X10:00:00.000000000Z line\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := muxFrame(tc.stream, tc.payload)
			d := newDecoder(bytes.NewReader(append(append([]byte{}, bad...), next...)), modeMultiplexed, testMaxFrame, nil)
			if err := d.fill(); err != nil {
				t.Fatal(err)
			}
			_, ok, err := d.next()
			if ok || !errors.Is(err, ErrSkipped) || !errors.Is(err, ErrBadTimestamp) || d.skipped != len(bad) {
				t.Fatalf("next = ok %v, %v, %d bytes skipped; want ErrSkipped for ErrBadTimestamp, %d bytes", ok, err, d.skipped, len(bad))
			}
			e, ok, err := d.next()
			if !ok || err != nil || string(e.data) != "next\n" {
				t.Errorf("after the skipped frame: %q, %v, %v; want the next frame", e.data, ok, err)
			}
		})
	}
}

func TestDecoderReturnsReaderError(t *testing.T) {
	errBoom := errors.New("connection reset")
	in := smallMux.bytes()
	want := smallMux.want(t)
	// With one-byte reads, after n reads exactly n bytes arrived.
	ends := []int{0}
	off := 0
	for _, m := range smallMux.msgs {
		off += frameHeaderLen + len(m.data)
		if m.stream != SystemErr {
			off += len(m.stamp) + 1
		}
		ends = append(ends, off)
	}
	for _, n := range []int{0, 1, 8, ends[1], ends[1] + 1, ends[3] + 5, len(in) - 1} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			r := &failingReader{r: iotest.OneByteReader(bytes.NewReader(in)), n: n, err: errBoom}
			got, err := decodeAll(r, false, testMaxFrame, nil, stepsFor(in))
			if !errors.Is(err, errBoom) {
				t.Fatalf("decoder ended with %v, want the reader's error", err)
			}
			complete := 0
			for complete+1 < len(ends) && ends[complete+1] <= n {
				complete++
			}
			sameEntries(t, got, want[:complete])
		})
	}
	t.Run("timeout", func(t *testing.T) {
		_, err := decodeAll(iotest.TimeoutReader(iotest.OneByteReader(bytes.NewReader(in))), false, testMaxFrame, nil, stepsFor(in))
		if !errors.Is(err, iotest.ErrTimeout) {
			t.Errorf("decoder ended with %v, want iotest.ErrTimeout", err)
		}
	})
}

func TestDecoderRawSplitsTTYLinesAfterStamps(t *testing.T) {
	spec := streamSpec{raw: true, msgs: []wireMsg{
		{Stdout, "2024-03-01T10:00:00.000000001Z", "first\r\n"},
		{Stdout, "2024-03-01T10:00:00.000000002Z", "\r\n"},
		{Stdout, "2024-03-01T12:00:00.5+02:00", "local driver stamp\r\n"},
		{Stdout, "2024-03-01T10:00:00.000000003Z", "last\r\n"},
	}}
	in := spec.bytes()
	for _, rv := range readerVariants {
		t.Run(rv.name, func(t *testing.T) {
			got, err := decodeAll(rv.wrap(bytes.NewReader(in)), true, testMaxFrame, nil, stepsFor(in))
			if err != io.EOF {
				t.Errorf("decoder ended with %v, want io.EOF", err)
			}
			sameEntries(t, got, spec.want(t))
		})
	}
}

func TestDecoderRawCutsLongTTYLineIntoStampedPieces(t *testing.T) {
	const stamp = "2024-03-01T10:00:00.000000000Z"
	line := longText(40000-2, 5) + "\r\n"
	for _, tc := range []struct {
		name string
		msgs []wireMsg
	}{
		{"40000 bytes", concatMsgs(pieceMsgs(Stdout, stamp, line),
			[]wireMsg{{Stdout, "2024-03-01T10:00:01.000000000Z", "next\r\n"}})},
		// A line of exactly pieceLen bytes: the daemon sends the full piece,
		// then the newline alone.
		{"exactly one piece then its newline", []wireMsg{
			{Stdout, stamp, line[:pieceLen]},
			{Stdout, stamp, "\n"},
		}},
		// The last piece has no '\n' when the process exits mid-line.
		{"unterminated last piece at EOF", pieceMsgs(Stdout, stamp, line[:pieceLen+123])},
		{"unterminated short line at EOF", []wireMsg{{Stdout, stamp, "$ "}}},
	} {
		spec := streamSpec{raw: true, msgs: tc.msgs}
		in := spec.bytes()
		for _, rv := range readerVariants {
			t.Run(tc.name+"/"+rv.name, func(t *testing.T) {
				got, err := decodeAll(rv.wrap(bytes.NewReader(in)), true, testMaxFrame, nil, stepsFor(in))
				if err != io.EOF {
					t.Errorf("decoder ended with %v, want io.EOF", err)
				}
				sameEntries(t, got, spec.want(t))
				for _, e := range got[:len(got)-1] {
					if len(e.data) > pieceLen {
						t.Errorf("entry of %d bytes, longer than a piece", len(e.data))
					}
				}
			})
		}
	}
}

// What does not start with a stamp in a TTY stream is skipped to the end of
// its line, and the lines after it are read.
func TestDecoderRawSkipsLineWithoutStamp(t *testing.T) {
	for _, tc := range []struct {
		in      string
		skipped int
		want    []string
	}{
		{"2024-03-01T10:00:00.000000000Z ok\r\nthis line has no timestamp at all, only text\r\n2024-03-01T10:00:00.000000001Z after\r\n",
			len("this line has no timestamp at all, only text\r\n"), []string{"ok\r\n", "after\r\n"}},
		// The stream ends inside a stamp.
		{"2024-03-01T10:00:00.000000000Z ok\r\n2024-03-01T10:0", len("2024-03-01T10:0"), []string{"ok\r\n"}},
	} {
		d := newDecoder(refuseEmpty{iotest.HalfReader(strings.NewReader(tc.in))}, modeRaw, testMaxFrame, nil)
		var got []string
		err := drain(d, stepsFor([]byte(tc.in)), func(e entry) { got = append(got, string(e.data)) })
		if err != io.EOF || d.skipped != tc.skipped || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%q: ended with %v, %d bytes skipped, entries %q; want io.EOF, %d, %q", tc.in, err, d.skipped, got, tc.skipped, tc.want)
		}
	}
}

// The daemon's pieces of a TTY line are not all 16,384 bytes: json-file
// replaces the bytes of a character cut at a piece boundary with U+FFFD,
// and other drivers cut at other sizes. A piece ends where its line's stamp
// starts again.
func TestDecoderRawSplitsPiecesOfAnyLengthAtTheirStamp(t *testing.T) {
	const stamp = "2024-03-01T10:00:00.000000000Z"
	grown := strings.Repeat("€", 5461) + "\uFFFD" // 16,386 bytes
	larger := strings.Repeat("y", 100000)
	spec := streamSpec{raw: true, msgs: []wireMsg{
		{Stdout, stamp, grown},
		{Stdout, stamp, "\uFFFD\uFFFD" + strings.Repeat("€", 100)},
		{Stdout, stamp, "end\r\n"},
		{Stdout, "2024-03-01T10:00:01.000000000Z", larger},
		{Stdout, "2024-03-01T10:00:01.000000000Z", "z\r\n"},
	}}
	in := spec.bytes()
	for _, rv := range readerVariants {
		t.Run(rv.name, func(t *testing.T) {
			got, err := decodeAll(rv.wrap(bytes.NewReader(in)), true, 1<<20, nil, stepsFor(in))
			if err != io.EOF {
				t.Errorf("decoder ended with %v, want io.EOF", err)
			}
			sameEntries(t, got, spec.want(t))
		})
	}
}

// A raw entry with no end within the bound is handed out in parts of the
// bound, each stamped as the entry.
func TestDecoderRawHandsOutAnOverlongEntryInParts(t *testing.T) {
	const stamp = "2024-03-01T10:00:00.000000000Z"
	body := strings.Repeat("q", 3*testMaxFrame+5)
	in := []byte(stamp + " " + body + "\r\n" + stamp[:len(stamp)-2] + "1Z next\r\n")
	got, err := decodeAll(bytes.NewReader(in), true, testMaxFrame, nil, stepsFor(in))
	if err != io.EOF {
		t.Fatalf("decoder ended with %v", err)
	}
	var joined string
	for _, e := range got[:len(got)-1] {
		joined += e.data
		if e.ts != got[0].ts {
			t.Errorf("part stamped %d, want %d", e.ts, got[0].ts)
		}
	}
	if len(got) != 5 || joined != body+"\r\n" || got[len(got)-1].data != "next\r\n" {
		t.Errorf("%d entries, parts joined %d bytes; want 4 parts of %d bytes and the next line", len(got), len(joined), len(body)+2)
	}
}

// countingReader counts the bytes handed to the decoder.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func FuzzDecoder(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s.data, s.raw, s.readSize)
	}
	buf := make([]byte, minReadBuf)
	f.Fuzz(func(t *testing.T, in []byte, raw bool, readSize uint8) {
		in = expandRuns(in)
		// Reads of readSize+1 bytes, but at most about 64 Reads: one-byte
		// reads of a 16 KiB piece are covered by the unit tests, and would
		// make each run of a large input slow.
		readLen := max(int(readSize)+1, len(in)/64)
		cr := &countingReader{r: refuseEmpty{&sizedReader{r: bytes.NewReader(in), n: readLen}}}
		d := newDecoder(cr, modeOf(raw), testMaxFrame, buf)
		var got []decoded
		off := 0 // bytes of in accounted for by the entries so far
		skipped := 0
		cont := false // the next entry continues the last one
		// skips accounts for bytes the decoder skipped since the last
		// entry: they were no entry.
		skips := func() {
			if d.skipped < skipped {
				t.Fatalf("skipped bytes went down from %d to %d", skipped, d.skipped)
			}
			off += d.skipped - skipped
			skipped = d.skipped
		}
		err := drain(d, stepsFor(in), func(e entry) {
			skips()
			// The entry's bytes live in the decoder's buffer.
			if len(e.data) > 0 {
				base := uintptr(unsafe.Pointer(unsafe.SliceData(d.buf[:cap(d.buf)])))
				p := uintptr(unsafe.Pointer(unsafe.SliceData(e.data)))
				if p < base || p+uintptr(len(e.data)) > base+uintptr(cap(d.buf)) {
					t.Fatalf("entry data is not a sub-slice of the read buffer")
				}
			}
			if e.stream < Stdout || e.stream > SystemErr || (raw && e.stream != Stdout) {
				t.Fatalf("entry has stream %d (raw=%v)", e.stream, raw)
			}
			// Account for the entry in the input, independently of the
			// decoder.
			var frameEnd, dataStart int
			if raw && cont {
				// A further part of an entry longer than the bound: no
				// stamp of its own, the entry's stamp.
				if e.ts != got[len(got)-1].ts {
					t.Fatalf("entry %d continues one stamped %d, but is stamped %d", len(got), got[len(got)-1].ts, e.ts)
				}
				dataStart = off
				frameEnd = off + len(e.data)
			} else if raw {
				sp := bytes.IndexByte(in[off:min(len(in), off+maxTimestampLen)], ' ')
				if sp < 0 {
					t.Fatalf("entry %d at offset %d: no stamp there", len(got), off)
				}
				tm, perr := time.Parse(time.RFC3339Nano, string(in[off:off+sp]))
				if perr != nil || Timestamp(tm.UnixNano()) != e.ts {
					t.Fatalf("entry %d: ts %d, stamp %q parses to %v, %v", len(got), e.ts, in[off:off+sp], tm, perr)
				}
				dataStart = off + sp + 1
				frameEnd = dataStart + len(e.data)
				if len(e.data) > testMaxFrame {
					t.Fatalf("raw entry of %d bytes, longer than the bound", len(e.data))
				}
				// A piece ends where its stamp starts again.
				if bytes.Contains(e.data, in[off:dataStart]) {
					t.Fatalf("raw entry holds its own stamp %q", in[off:dataStart])
				}
				if i := bytes.IndexByte(e.data, '\n'); i >= 0 && i != len(e.data)-1 {
					t.Fatalf("raw entry has a newline before its end: %q", e.data)
				}
			} else {
				if len(in)-off < frameHeaderLen {
					t.Fatalf("entry %d at offset %d: no header there", len(got), off)
				}
				if StreamKind(in[off]) != e.stream {
					t.Fatalf("entry %d: stream %d, header says %d", len(got), e.stream, in[off])
				}
				size := int64(binary.BigEndian.Uint32(in[off+4 : off+8]))
				if size > testMaxFrame {
					t.Fatalf("entry %d from a frame of %d bytes, over the bound", len(got), size)
				}
				frameEnd = off + frameHeaderLen + int(size)
				dataStart = frameEnd - len(e.data)
				if e.stream == SystemErr && dataStart != off+frameHeaderLen {
					t.Fatalf("daemon error entry is not its whole frame")
				}
			}
			if frameEnd > len(in) || dataStart < off || !bytes.Equal(in[dataStart:frameEnd], e.data) {
				t.Fatalf("entry %d (%d bytes) is not the input at [%d:%d]", len(got), len(e.data), dataStart, frameEnd)
			}
			off = frameEnd
			if consumed := cr.n - (d.end - d.start); consumed != off {
				t.Fatalf("after entry %d the decoder consumed %d bytes, the entries account for %d", len(got), consumed, off)
			}
			got = append(got, decoded{e.stream, e.ts, string(e.data)})
			cont = d.contStamp != nil
		})
		skips()
		switch {
		case err == io.EOF:
			if off != len(in) {
				t.Fatalf("io.EOF with %d of %d bytes accounted for", off, len(in))
			}
		case errors.Is(err, ErrTruncated):
			if off >= len(in) {
				t.Fatalf("ErrTruncated with every byte accounted for")
			}
			if !raw && len(in)-off >= frameHeaderLen &&
				int64(off+frameHeaderLen)+int64(binary.BigEndian.Uint32(in[off+4:off+8])) <= int64(len(in)) {
				t.Fatalf("ErrTruncated, but the frame at %d is complete", off)
			}
		case errors.Is(err, ErrBadStreamByte):
			if raw || in[off] >= 1 && in[off] <= 3 {
				t.Fatalf("ErrBadStreamByte, but the header at %d has stream %d (raw=%v)", off, in[off], raw)
			}
		case errors.Is(err, ErrFrameTooLarge):
			if raw || int64(binary.BigEndian.Uint32(in[off+4:off+8])) <= testMaxFrame {
				t.Fatalf("ErrFrameTooLarge, but the frame at %d is within the bound", off)
			}
		case errors.Is(err, ErrBadTimestamp):
		case err == errSpinning || err == errEmptyRead:
			t.Fatalf("decoder spins after %d entries", len(got))
		default:
			t.Fatalf("decoder ended with %v", err)
		}
		// The result does not depend on how the bytes were split into Reads.
		whole, werr := decodeAll(bytes.NewReader(in), raw, testMaxFrame, nil, stepsFor(in))
		if errors.Is(werr, io.EOF) != errors.Is(err, io.EOF) || errors.Is(werr, ErrTruncated) != errors.Is(err, ErrTruncated) ||
			errors.Is(werr, ErrBadTimestamp) != errors.Is(err, ErrBadTimestamp) {
			t.Fatalf("reads of %d bytes ended with %v, one read with %v", readLen, err, werr)
		}
		if len(whole) != len(got) {
			t.Fatalf("reads of %d bytes gave %d entries, one read %d", readLen, len(got), len(whole))
		}
		for i := range got {
			if got[i] != whole[i] {
				t.Fatalf("entry %d: reads of %d bytes gave %v, one read %v", i, readLen, got[i], whole[i])
			}
		}
	})
}
