package capture

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// StreamKind is the stream byte of a multiplexed frame.
type StreamKind uint8

const (
	Stdout StreamKind = 1
	Stderr StreamKind = 2
	// SystemErr carries an error of the daemon itself, e.g.
	// "Error grabbing logs: ...", possibly after a 200 status.
	SystemErr StreamKind = 3
)

func (s StreamKind) String() string {
	switch s {
	case Stdout:
		return "stdout"
	case Stderr:
		return "stderr"
	case SystemErr:
		return "system"
	}
	return fmt.Sprintf("stream(%d)", uint8(s))
}

// Errors of a malformed logs stream. The reader closes the stream and
// resumes from the last good position.
var (
	ErrBadStreamByte = errors.New("unknown stream byte in frame header")
	ErrFrameTooLarge = errors.New("frame larger than any line bound")
	ErrTruncated     = errors.New("stream ended inside a frame")
	// ErrSkipped: bytes that are no log entry were dropped; the decoder
	// has moved past them and reading goes on.
	ErrSkipped = errors.New("skipped bytes that are no log entry")
)

const (
	frameHeaderLen = 8 // [stream, 0, 0, 0, size uint32 big-endian]
	frameSizeIndex = 4
)

// entry is one log message as the daemon stored it: a whole line (ending in
// '\n') or one piece of a long one. data points into the decoder's buffer and
// is valid until the next call to next or fill.
type entry struct {
	stream StreamKind
	ts     Timestamp
	data   []byte
}

// streamMode says how a logs stream is framed.
type streamMode int

const (
	modeMultiplexed streamMode = iota // frame headers, stdout and stderr
	modeRaw                           // a TTY container: no headers, everything is stdout
	// modeSniff: the TTY flag is unknown (a container gone before its
	// inspect); the first byte tells, as a multiplexed stream starts with
	// a stream byte (1, 2 or 3) and a raw one with a stamp's digit.
	modeSniff
)

func modeOf(tty bool) streamMode {
	if tty {
		return modeRaw
	}
	return modeMultiplexed
}

// decoder splits a logs stream (timestamps=1) into entries. It reads only in
// fill, so its owner can flush what it has before a Read that may block.
type decoder struct {
	r        io.Reader
	mode     streamMode
	maxFrame int
	buf      []byte
	start    int // first unparsed byte
	end      int // end of the bytes read
	eof      bool
	// skipped counts the bytes dropped as no entry (ErrSkipped).
	skipped int
	// contStamp is set while a raw entry longer than maxFrame is handed
	// out in parts: the stamp (with its space) the parts carry. Its own
	// copy, as the buffer moves.
	contStamp []byte
	contTS    Timestamp
	// resyncing is set while a multiplexed stream is being searched for
	// a plausible frame header after a bad one.
	resyncing bool
}

func newDecoder(r io.Reader, mode streamMode, maxFrame int, buf []byte) *decoder {
	if cap(buf) < minReadBuf {
		buf = make([]byte, minReadBuf)
	}
	return &decoder{r: r, mode: mode, maxFrame: maxFrame, buf: buf[:cap(buf)]}
}

// raw reports whether the stream is a TTY's, once known.
func (d *decoder) raw() bool { return d.mode == modeRaw }

// next returns the next entry from the bytes already read. ok is false when
// more bytes are needed (call fill) and err is set when the stream is
// malformed. A SystemErr frame is returned as an entry with its text in data
// and no timestamp parsed.
func (d *decoder) next() (e entry, ok bool, err error) {
	if d.mode == modeSniff {
		if d.start == d.end {
			return entry{}, false, nil
		}
		d.mode = modeRaw
		if b := d.buf[d.start]; b >= byte(Stdout) && b <= byte(SystemErr) {
			d.mode = modeMultiplexed
		}
	}
	if d.mode == modeRaw {
		return d.nextRaw()
	}
	if d.resyncing {
		return d.resync(0, errNoHeaderYet)
	}
	avail := d.buf[d.start:d.end]
	if len(avail) < frameHeaderLen {
		return entry{}, false, nil
	}
	stream := StreamKind(avail[0])
	size32 := binary.BigEndian.Uint32(avail[frameSizeIndex:frameHeaderLen])
	switch stream {
	case Stdout, Stderr, SystemErr:
		if avail[1] != 0 || avail[2] != 0 || avail[3] != 0 {
			return d.resync(1, fmt.Errorf("%w: %d with %x after it", ErrBadStreamByte, avail[0], avail[1:4]))
		}
	default:
		return d.resync(1, fmt.Errorf("%w: %d", ErrBadStreamByte, avail[0]))
	}
	// Compared before converting: on 32-bit platforms int(size32) can be
	// negative.
	if uint64(size32) > uint64(d.maxFrame) {
		return d.resync(1, fmt.Errorf("%w: %d bytes, bound %d", ErrFrameTooLarge, size32, d.maxFrame))
	}
	size := int(size32)
	if len(avail) < frameHeaderLen+size {
		return entry{}, false, nil
	}
	payload := avail[frameHeaderLen : frameHeaderLen+size]
	d.start += frameHeaderLen + size
	if stream == SystemErr {
		return entry{stream: SystemErr, data: payload}, true, nil
	}
	ts, n, err := parseTimestamp(payload)
	if err != nil {
		// The frame says where the next one starts: only this one is lost.
		d.skipped += frameHeaderLen + size
		return entry{}, false, fmt.Errorf("%w: %s frame of %d bytes: %w", ErrSkipped, stream, size, err)
	}
	return entry{stream: stream, ts: ts, data: payload[n:]}, true, nil
}

// errNoHeaderYet: resync goes on dropping bytes after a bad header.
var errNoHeaderYet = errors.New("no frame header yet after a bad one")

// resync drops the bytes of a multiplexed stream up to the next frame
// header that is plausible, searching from offset from: a stream byte,
// three zeros, a size within the bound and, for stdout and stderr, a
// payload that starts with a stamp's digit. Without one among the bytes
// read, it keeps the last bytes a header may start in, and the search goes
// on when more come.
func (d *decoder) resync(from int, cause error) (entry, bool, error) {
	avail := d.buf[d.start:d.end]
	d.resyncing = true
	n := -1 // bytes to drop
	for k := from; k+frameHeaderLen < len(avail); k++ {
		if plausibleHeader(avail[k:], d.maxFrame) {
			n = k
			d.resyncing = false
			break
		}
	}
	switch {
	case n >= 0:
	case d.eof:
		n = len(avail)
	default:
		n = len(avail) - frameHeaderLen
	}
	if n == 0 && !d.resyncing {
		return d.next() // a header right here
	}
	if n <= 0 {
		return entry{}, false, nil // waiting for bytes
	}
	d.start += n
	d.skipped += n
	return entry{}, false, fmt.Errorf("%w: %d bytes of a multiplexed stream: %w", ErrSkipped, n, cause)
}

// plausibleHeader reports whether b, longer than a header, starts with one
// the daemon could have written.
func plausibleHeader(b []byte, maxFrame int) bool {
	s := StreamKind(b[0])
	if s < Stdout || s > SystemErr || b[1] != 0 || b[2] != 0 || b[3] != 0 {
		return false
	}
	size := binary.BigEndian.Uint32(b[frameSizeIndex:frameHeaderLen])
	if size == 0 || uint64(size) > uint64(maxFrame) {
		return false
	}
	return s == SystemErr || (b[frameHeaderLen] >= '0' && b[frameHeaderLen] <= '9')
}

// nextRaw splits a TTY stream, which has no frames: a stamp, then a line up
// to and including '\n', or a piece of a longer one. The daemon's pieces
// are not all 16,384 bytes (json-file replaces the bytes of a character cut
// at the boundary, other drivers cut elsewhere), but every piece of one line
// carries the line's first stamp: a piece ends where its own stamp starts
// again. Only at the end of the stream can an unterminated rest be known to
// end there.
func (d *decoder) nextRaw() (entry, bool, error) {
	avail := d.buf[d.start:d.end]
	if len(avail) == 0 {
		return entry{}, false, nil
	}
	if d.contStamp != nil {
		return d.rawBody(d.contTS, d.contStamp, 0, avail)
	}
	ts, n, err := parseTimestamp(avail)
	if err != nil {
		if len(avail) < maxTimestampLen && !d.eof {
			return entry{}, false, nil // the stamp may not be complete yet
		}
		return d.skipRawLine(err)
	}
	return d.rawBody(ts, avail[:n], n, avail)
}

// rawBody takes the entry stamped ts whose body starts at n in avail; stamp
// is its stamp with the space, which starts the line's next piece.
func (d *decoder) rawBody(ts Timestamp, stamp []byte, n int, avail []byte) (entry, bool, error) {
	body := avail[n:]
	line := body
	nl := bytes.IndexByte(body, '\n')
	if nl >= 0 {
		line = body[:nl+1]
	}
	var size int
	switch i := bytes.Index(line, stamp); {
	case i == 0 && n == 0:
		// The parts of an overlong entry ended where its next piece
		// starts.
		d.contStamp = nil
		return d.nextRaw()
	case i >= 0:
		size = i // a piece: the next one starts with the same stamp
	case nextRunStamp(line, ts) >= 0:
		// A piece whose line never ended (its process was killed at the
		// cut), then the next entry.
		size = nextRunStamp(line, ts)
	case nl >= 0:
		size = nl + 1
	case d.eof || len(body) >= d.maxFrame:
		size = len(body)
	default:
		return entry{}, false, nil
	}
	// No entry is longer than any line bound: the rest of a longer one is
	// handed out in parts stamped as it, until its end.
	cont := size > d.maxFrame
	if cont {
		size = d.maxFrame
	}
	if cont && d.contStamp == nil {
		d.contStamp, d.contTS = append([]byte(nil), stamp...), ts
	} else if !cont {
		d.contStamp = nil
	}
	d.start += n + size
	return entry{stream: Stdout, ts: ts, data: body[:size]}, true, nil
}

// killedPieceSlack is how much longer than pieceLen json-file stores a
// piece: a character cut at each end comes back as U+FFFD, three bytes for
// each byte cut.
const killedPieceSlack = 8

// nextRunStamp finds, where a piece cut by the daemon ends, a json-file
// stamp not before ts that starts the next entry: in a raw stream nothing
// else tells that a piece was the last of its line. It returns -1 if there
// is none.
func nextRunStamp(line []byte, ts Timestamp) int {
	for k := pieceLen; k <= pieceLen+killedPieceSlack && k+fixedTimestampLen < len(line); k++ {
		if !fixedStampAt(line[k:]) {
			continue
		}
		if next, ok := parseFixedUTC(line[k : k+fixedTimestampLen]); ok && next >= ts {
			return k
		}
	}
	return -1
}

// skipRawLine drops what does not start with a stamp, through the next
// '\n' (all that is buffered when a line bound holds none), so that
// reading goes on at the next line.
func (d *decoder) skipRawLine(cause error) (entry, bool, error) {
	avail := d.buf[d.start:d.end]
	n := bytes.IndexByte(avail, '\n') + 1
	if n == 0 {
		if len(avail) < d.maxFrame && !d.eof {
			return entry{}, false, nil // the line's end may come
		}
		n = len(avail)
	}
	d.start += n
	d.skipped += n
	return entry{}, false, fmt.Errorf("%w: %d bytes of a tty stream: %w", ErrSkipped, n, cause)
}

// fill reads more bytes, first moving what is unparsed to the front and
// growing the buffer when one frame needs more room. It returns io.EOF when
// the stream ended cleanly between entries, ErrTruncated when it ended
// inside one, and the reader's error otherwise.
func (d *decoder) fill() error {
	if d.eof {
		if d.start < d.end {
			return fmt.Errorf("%w: %d bytes left", ErrTruncated, d.end-d.start)
		}
		return io.EOF
	}
	if d.start > 0 {
		d.end = copy(d.buf, d.buf[d.start:d.end])
		d.start = 0
	}
	if need := d.needed(); need > len(d.buf) {
		grown := make([]byte, max(need, 2*len(d.buf)))
		copy(grown, d.buf[:d.end])
		d.buf = grown
	}
	n, err := d.r.Read(d.buf[d.end:])
	d.end += n
	if errors.Is(err, io.EOF) {
		d.eof = true
		if n > 0 {
			return nil
		}
		if d.mode != modeMultiplexed && d.start < d.end {
			return nil // nextRaw can now take the unterminated rest
		}
		if d.mode == modeMultiplexed && (d.resyncing || d.badHeader()) {
			return nil // next can now skip the rest
		}
		return d.fill()
	}
	return err
}

// badHeader reports whether the bytes at start hold a frame header the
// daemon cannot have written.
func (d *decoder) badHeader() bool {
	avail := d.buf[d.start:d.end]
	if len(avail) < frameHeaderLen {
		return false
	}
	s := StreamKind(avail[0])
	return s < Stdout || s > SystemErr || avail[1] != 0 || avail[2] != 0 || avail[3] != 0 ||
		uint64(binary.BigEndian.Uint32(avail[frameSizeIndex:frameHeaderLen])) > uint64(d.maxFrame)
}

// needed is how many buffered bytes the entry at start needs.
func (d *decoder) needed() int {
	if d.mode != modeMultiplexed {
		return d.end - d.start + pieceLen + maxTimestampLen
	}
	avail := d.buf[d.start:d.end]
	if len(avail) < frameHeaderLen {
		return frameHeaderLen
	}
	// A header that is not one (resync drops it) claims nothing.
	size := min(binary.BigEndian.Uint32(avail[frameSizeIndex:frameHeaderLen]), uint32(d.maxFrame))
	return frameHeaderLen + int(size) + 1
}

// buffer hands the read buffer back for reuse.
func (d *decoder) buffer() []byte { return d.buf }
