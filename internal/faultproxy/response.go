package faultproxy

import (
	"encoding/binary"
	"strconv"
	"strings"
)

// cutMode says where a cut lands in a multiplexed frame.
type cutMode int

const (
	cutNone    cutMode = iota
	cutHeader          // after half of the 8-byte header
	cutPayload         // after half of the payload
)

const (
	// frameHeaderLen is the multiplexed stream's header: stream byte,
	// three zero bytes, big-endian uint32 payload size.
	frameHeaderLen = 8
	// framesBeforeCut is how many whole frames a response forwards before
	// a cut, so a cut stream has delivered lines.
	framesBeforeCut = 2
	// maxLine bounds a status, header or chunk-size line kept while
	// parsing.
	maxLine = 64 << 10
)

// phase of a response being parsed.
type phase int

const (
	phHead      phase = iota // status line and headers
	phChunkSize              // a chunk's size line
	phChunkData              // a chunk's data
	phChunkEnd               // the CRLF after a chunk's data
	phTrailer                // trailers after the last chunk
	phBody                   // a body delimited by length or by close
	phDone                   // the response is complete
)

// responseParser follows one HTTP/1.1 response byte by byte, and the
// multiplexed frames in its body, to find where a cut lands. It never
// changes a byte.
type responseParser struct {
	phase     phase
	line      []byte // the partial line of phHead, phChunkSize, phTrailer
	gotStatus bool
	status    int
	// chunked and length come from the headers; length < 0: until close.
	chunked bool
	length  int64
	left    int64 // bytes left in the chunk or the body

	// frames is the body's multiplexed frame stream; only a 200 response
	// has one.
	multiplexed bool
	hdr         [frameHeaderLen]byte
	hdrN        int
	size, rest  int // payload size and bytes of it still to come
	frames      int // whole frames seen
}

// scan consumes b. With a mode other than cutNone it stops where a cut of
// that mode lands and returns the number of bytes to forward before the
// cut; otherwise it consumes all of b and returns -1.
func (r *responseParser) scan(b []byte, mode cutMode) int {
	for i := 0; i < len(b); {
		switch r.phase {
		case phHead, phChunkSize, phTrailer:
			c := b[i]
			i++
			if len(r.line) < maxLine {
				r.line = append(r.line, c)
			}
			if c == '\n' {
				r.endLine(strings.TrimRight(string(r.line), "\r\n"))
				r.line = r.line[:0]
			}
		case phChunkEnd:
			i++
			if r.left--; r.left == 0 {
				r.phase = phChunkSize
			}
		case phChunkData, phBody:
			n := int64(len(b) - i)
			if r.left >= 0 && n > r.left {
				n = r.left
			}
			k, cut := r.body(b[i:i+int(n)], mode)
			i += k
			if r.left >= 0 {
				r.left -= int64(k)
			}
			if cut {
				return i
			}
			if r.left == 0 {
				if r.phase == phChunkData {
					r.phase, r.left = phChunkEnd, 2
				} else {
					r.phase = phDone
				}
			}
		case phDone:
			return -1 // nothing follows without a new request
		}
	}
	return -1
}

// endLine handles one complete line of the head, a chunk size or a
// trailer.
func (r *responseParser) endLine(text string) {
	switch r.phase {
	case phHead:
		if !r.gotStatus {
			// HTTP/1.1 200 OK
			r.gotStatus = true
			if f := strings.Fields(text); len(f) >= 2 {
				r.status, _ = strconv.Atoi(f[1])
			}
			r.length = -1
			return
		}
		if text != "" {
			name, value, _ := strings.Cut(text, ":")
			value = strings.TrimSpace(value)
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "transfer-encoding":
				r.chunked = strings.Contains(strings.ToLower(value), "chunked")
			case "content-length":
				if n, err := strconv.ParseInt(value, 10, 64); err == nil {
					r.length = n
				}
			}
			return
		}
		// End of the head.
		r.multiplexed = r.status == 200
		switch {
		case r.status < 200 || r.status == 204 || r.status == 304:
			r.phase = phDone
		case r.chunked:
			r.phase = phChunkSize
		case r.length == 0:
			r.phase = phDone
		default:
			r.phase, r.left = phBody, r.length
		}
	case phChunkSize:
		sizeText, _, _ := strings.Cut(text, ";")
		size, err := strconv.ParseInt(strings.TrimSpace(sizeText), 16, 64)
		switch {
		case err != nil || size < 0:
			r.phase, r.left = phBody, -1 // not chunked after all: follow to close
		case size == 0:
			r.phase = phTrailer
		default:
			r.phase, r.left = phChunkData, size
		}
	case phTrailer:
		if text == "" {
			r.phase = phDone
		}
	}
}

// body consumes body bytes as multiplexed frames. It returns how many it
// consumed and whether a cut of mode lands there.
func (r *responseParser) body(b []byte, mode cutMode) (int, bool) {
	if !r.multiplexed {
		return len(b), false
	}
	armed := r.frames >= framesBeforeCut
	for j := 0; j < len(b); {
		if r.hdrN < frameHeaderLen {
			r.hdr[r.hdrN] = b[j]
			r.hdrN++
			j++
			if r.hdrN == frameHeaderLen {
				r.size = int(binary.BigEndian.Uint32(r.hdr[4:]))
				r.rest = r.size
				if r.size == 0 {
					r.frames++
					r.hdrN = 0
					armed = r.frames >= framesBeforeCut
				}
			} else if armed && mode == cutHeader && r.hdrN == frameHeaderLen/2 {
				return j, true
			}
			continue
		}
		n := min(r.rest, len(b)-j)
		if armed && mode == cutPayload && r.size >= 2 {
			seen, half := r.size-r.rest, r.size/2
			if seen < half && seen+n >= half {
				k := half - seen
				r.rest -= k
				return j + k, true
			}
		}
		j += n
		if r.rest -= n; r.rest == 0 {
			r.frames++
			r.hdrN = 0
			armed = r.frames >= framesBeforeCut
		}
	}
	return len(b), false
}
