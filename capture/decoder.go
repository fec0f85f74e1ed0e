package capture

import (
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
)

const (
	frameHeaderLen = 8 // [stream, 0, 0, 0, size uint32 big-endian]
	frameSizeIndex = 4
	// pieceLen is where the daemon cuts a long line: each piece is its own
	// entry, and only the last one ends in '\n'.
	pieceLen = 16 * 1024
	// minReadBuf is the read buffer's initial size: large enough for many
	// small lines per Read.
	minReadBuf = 64 * 1024
)

// entry is one log message as the daemon stored it: a whole line (ending in
// '\n') or one piece of a long one. data points into the decoder's buffer and
// is valid until the next call to next or fill.
type entry struct {
	stream StreamKind
	ts     Timestamp
	data   []byte
}

// decoder splits a logs stream (timestamps=1) into entries. It reads only in
// fill, so its owner can flush what it has before a Read that may block.
type decoder struct {
	r        io.Reader
	raw      bool // TTY container: no frame headers, everything is stdout
	maxFrame int
	buf      []byte
	start    int // first unparsed byte
	end      int // end of the bytes read
	eof      bool
}

func newDecoder(r io.Reader, raw bool, maxFrame int, buf []byte) *decoder {
	if cap(buf) < minReadBuf {
		buf = make([]byte, minReadBuf)
	}
	return &decoder{r: r, raw: raw, maxFrame: maxFrame, buf: buf[:cap(buf)]}
}

// next returns the next entry from the bytes already read. ok is false when
// more bytes are needed (call fill) and err is set when the stream is
// malformed. A SystemErr frame is returned as an entry with its text in data
// and no timestamp parsed.
func (d *decoder) next() (e entry, ok bool, err error) {
	if d.raw {
		return d.nextRaw()
	}
	avail := d.buf[d.start:d.end]
	if len(avail) < frameHeaderLen {
		return entry{}, false, nil
	}
	stream := StreamKind(avail[0])
	size32 := binary.BigEndian.Uint32(avail[frameSizeIndex:frameHeaderLen])
	switch stream {
	case Stdout, Stderr, SystemErr:
	default:
		return entry{}, false, fmt.Errorf("%w: %d", ErrBadStreamByte, avail[0])
	}
	// Compared before converting: on 32-bit platforms int(size32) can be
	// negative.
	if uint64(size32) > uint64(d.maxFrame) {
		return entry{}, false, fmt.Errorf("%w: %d bytes, bound %d", ErrFrameTooLarge, size32, d.maxFrame)
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
		return entry{}, false, fmt.Errorf("%s frame: %w", stream, err)
	}
	return entry{stream: stream, ts: ts, data: payload[n:]}, true, nil
}

// nextRaw splits a TTY stream: a stamp, then a line up to and including
// '\n', or a piece of exactly pieceLen bytes when the line is longer. Only at
// the end of the stream can a shorter unterminated piece be known to be one.
func (d *decoder) nextRaw() (entry, bool, error) {
	avail := d.buf[d.start:d.end]
	if len(avail) == 0 {
		return entry{}, false, nil
	}
	ts, n, err := parseTimestamp(avail)
	if err != nil {
		if len(avail) < maxTimestampLen && !d.eof {
			return entry{}, false, nil // the stamp may not be complete yet
		}
		return entry{}, false, fmt.Errorf("tty stream: %w", err)
	}
	body := avail[n:]
	limit := min(len(body), pieceLen)
	for i := 0; i < limit; i++ {
		if body[i] == '\n' {
			d.start += n + i + 1
			return entry{stream: Stdout, ts: ts, data: body[:i+1]}, true, nil
		}
	}
	if len(body) >= pieceLen || (d.eof && len(body) > 0) {
		d.start += n + limit
		return entry{stream: Stdout, ts: ts, data: body[:limit]}, true, nil
	}
	if d.eof {
		d.start += n // a stamp with nothing after it
		return entry{stream: Stdout, ts: ts}, true, nil
	}
	return entry{}, false, nil
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
		if d.raw && d.start < d.end {
			return nil // nextRaw can now take the unterminated rest
		}
		return d.fill()
	}
	return err
}

// needed is how many buffered bytes the entry at start needs.
func (d *decoder) needed() int {
	if d.raw {
		return d.end - d.start + pieceLen + maxTimestampLen
	}
	avail := d.buf[d.start:d.end]
	if len(avail) < frameHeaderLen {
		return frameHeaderLen
	}
	return frameHeaderLen + int(binary.BigEndian.Uint32(avail[frameSizeIndex:frameHeaderLen]))
}

// buffer hands the read buffer back for reuse.
func (d *decoder) buffer() []byte { return d.buf }
