package capture

// Positions and resume: see the package documentation (doc.go).

// streamPos is one stream's position: the stamp of its last line read.
type streamPos struct {
	ts    Timestamp
	valid bool
}

// lastLine identifies L, the last line read from a container. All pieces of
// one line share its stamp, so (stream, stamp) names it.
type lastLine struct {
	stream StreamKind
	ts     Timestamp
	valid  bool
}

// openLine is a long line of one stream whose first pieces come before L
// in the file but which was not delivered: its writer had not finished it.
// Its later pieces carry its stamp, which is before lines of the other
// stream read meanwhile, so a resume must reach back to it and take those
// pieces again, neither skip them nor take them for a missed window.
type openLine struct {
	ts     Timestamp
	pieces int // its pieces before L
	valid  bool
}

// position is how far a container's log has been read.
type position struct {
	last    lastLine
	streams [2]streamPos // indexed by streamIndex
	open    [2]openLine  // indexed by streamIndex
}

func streamIndex(s StreamKind) int { return int(s) - 1 }

// advance records a line read.
func (p *position) advance(s StreamKind, ts Timestamp) {
	p.last = lastLine{stream: s, ts: ts, valid: true}
	p.streams[streamIndex(s)] = streamPos{ts: ts, valid: true}
}

// after reports whether p is at or past q on every stream, so committing p
// after q never moves a position backwards.
func (p position) after(q position) bool {
	for i := range p.streams {
		if q.streams[i].valid && (!p.streams[i].valid || p.streams[i].ts < q.streams[i].ts) {
			return false
		}
	}
	return true
}

// seekResult is what one entry tells a stream that is looking for L.
type seekResult int

const (
	seekSkip   seekResult = iota // read before L: skip it
	seekFound                    // it is L (or a piece of L's line)
	seekMissed                   // it must come after L: the window missed L
	seekOpen                     // a piece of an open line, before L: take it again
)

// seek classifies entry e of a stream that has not met L yet. A stream
// that never had a line is judged by L's stamp and the margin.
func (p *position) seek(e *entry) seekResult {
	if e.stream == p.last.stream && e.ts == p.last.ts {
		return seekFound
	}
	if o := p.open[streamIndex(e.stream)]; o.valid && e.ts == o.ts {
		return seekOpen
	}
	if sp := p.streams[streamIndex(e.stream)]; sp.valid {
		if e.ts <= sp.ts {
			return seekSkip
		}
		return seekMissed
	}
	if e.ts <= p.last.ts+inversionMargin {
		return seekSkip
	}
	return seekMissed
}

// seen reports whether an entry met after L was read already: the daemon
// can repeat entries (Docker 20.10 around a rotation), and the later pieces
// of L's own line come after L.
func (p *position) seen(e *entry) bool {
	sp := p.streams[streamIndex(e.stream)]
	return sp.valid && e.ts <= sp.ts
}

// since is the since parameter of a resume: the earliest stream position,
// less the inversion margin when an enabled stream has no position yet, but
// never more than the margin before L, unless a line open at L began
// earlier.
func (p *position) since(stdout, stderr bool) Timestamp {
	var since Timestamp
	first, unknown := true, false
	for i, on := range [2]bool{stdout, stderr} {
		if !on {
			continue
		}
		sp := p.streams[i]
		if !sp.valid {
			unknown = true
			continue
		}
		if first || sp.ts < since {
			since, first = sp.ts, false
		}
	}
	if first {
		since = p.last.ts
	}
	if unknown {
		since -= inversionMargin
	}
	// Whatever a stream's own position, what it has not read comes after
	// L in the file, so it is stamped at most the margin before L: a quiet
	// stream must not make the resume send everything since its last line.
	since = max(since, p.last.ts-inversionMargin)
	// An open line's pieces carry its first stamp, however long ago.
	for _, o := range p.open {
		if o.valid && o.ts < since {
			since = o.ts
		}
	}
	return max(since, 1)
}
