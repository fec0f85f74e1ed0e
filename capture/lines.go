package capture

// Line joining: the daemon stores a line longer than its buffer (16 KiB for
// json-file) as pieces, each its own entry, all stamped with the line's
// first stamp; only the last one ends in '\n'.

// lineSink takes the lines a lineJoiner completes.
type lineSink interface {
	emit(s StreamKind, ts Timestamp, line []byte, truncated bool)
}

// pendingLine gathers the pieces of a line longer than one piece.
type pendingLine struct {
	active    bool
	ts        Timestamp
	pieces    int // taken so far
	data      []byte
	truncated bool
	// other is the other stream's pending line when this one began: its
	// pieces that come before this line's first one in the file.
	other openLine
}

// lineJoiner joins the pieces of long lines, per stream, bounding each line
// to maxLine bytes.
type lineJoiner struct {
	maxLine int
	pending [2]pendingLine // by streamIndex
	// ending is the pending line being emitted by end, nil otherwise: a
	// resume finds it at its first piece, so what is open on the other
	// stream counts only the pieces before that one.
	ending *pendingLine
}

// add takes one entry that was not read before: a whole line, or a piece of
// a long one. tty trims "\r\n" instead of "\n".
func (j *lineJoiner) add(e *entry, tty bool, out lineSink) {
	p := &j.pending[streamIndex(e.stream)]
	if p.active && e.ts != p.ts {
		// Pieces of one line share its stamp: this entry is no piece of
		// the pending line, whose writer stopped at a piece boundary (a
		// process killed and restarted).
		j.end(e.stream, out)
	}
	complete := len(e.data) > 0 && e.data[len(e.data)-1] == '\n'
	// A piece shorter than the daemon's cut without a newline is the last
	// piece of a line whose writer stopped mid-line. Pieces may be longer
	// than the cut (a character cut at the boundary is replaced by longer
	// bytes; other drivers cut later), never shorter. A daemon that stamps
	// to the second (Podman) cuts wherever its read of the container's
	// output ended, so there only the newline ends a line.
	final := complete || len(e.data) < pieceLen && !wholeSecond(e.ts)
	body := trimEOL(e.data, tty)
	if !p.active && final {
		line, truncated := body, false
		if len(line) > j.maxLine {
			line, truncated = line[:j.maxLine], true
		}
		out.emit(e.stream, e.ts, line, truncated)
		return
	}
	if !p.active {
		*p = pendingLine{active: true, ts: e.ts, data: p.data[:0], other: j.open(otherStream(e.stream))}
	}
	p.pieces++
	room := j.maxLine - len(p.data)
	if len(body) > room {
		body, p.truncated = body[:room], true
	}
	p.data = append(p.data, body...)
	if final {
		j.end(e.stream, out)
	}
}

// end emits stream s's pending line as it is.
func (j *lineJoiner) end(s StreamKind, out lineSink) {
	p := &j.pending[streamIndex(s)]
	p.active = false // before emit, which reads the open lines
	j.ending = p
	out.emit(s, p.ts, p.data, p.truncated)
	j.ending = nil
}

// entries is how many entries the line being emitted took: its pieces, or
// one for a line in one entry.
func (j *lineJoiner) entries() int {
	if j.ending != nil {
		return j.ending.pieces
	}
	return 1
}

// flush emits lines whose last piece never came: the log ended mid-line.
func (j *lineJoiner) flush(out lineSink) {
	for i := range j.pending {
		if j.pending[i].active {
			j.end(StreamKind(i+1), out)
		}
	}
}

// discard drops partial lines when a stream is reopened: the position marks
// them open, so the new stream brings them again from their first piece.
func (j *lineJoiner) discard() {
	for i := range j.pending {
		j.pending[i].active = false
	}
}

// open is stream s's line begun and not yet delivered.
func (j *lineJoiner) open(s StreamKind) openLine {
	p := &j.pending[streamIndex(s)]
	if !p.active {
		return openLine{}
	}
	return openLine{ts: p.ts, pieces: p.pieces, valid: true}
}

// openAtL is stream s's line left open by the line being emitted (L), as
// a position records it: only its pieces before L's first piece, where a
// resume finds L. One begun after that is read again after L anyway.
func (j *lineJoiner) openAtL(s StreamKind) openLine {
	o := j.open(s)
	if !o.valid || j.ending == nil {
		return o
	}
	if before := j.ending.other; before.valid && before.ts == o.ts {
		return before
	}
	return openLine{}
}

func otherStream(s StreamKind) StreamKind {
	if s == Stdout {
		return Stderr
	}
	return Stdout
}

// pieces is how many pieces of stream s's pending line were taken.
func (j *lineJoiner) pieces(s StreamKind) int {
	p := &j.pending[streamIndex(s)]
	if !p.active {
		return 0
	}
	return p.pieces
}
