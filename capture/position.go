package capture

import "time"

// Positions and resume: see the package documentation (doc.go).

// streamPos is one stream's position: the stamp of its last line read and
// how many entries of the stream at that stamp were read. A daemon that
// stamps to the nanosecond gives one entry a stamp of its own (pieces of one
// line share the line's); one that stamps to the whole second (Podman) gives
// every entry of a second the same stamp, and only the count tells which
// of them were read.
type streamPos struct {
	ts    Timestamp
	n     int // entries at ts read; at least 1 when valid
	valid bool
}

// lastLine identifies L, the last line read from a container. All pieces of
// one line share its stamp, so (stream, stamp) names it; with stamps to the
// second, (stream, stamp, rank of its first entry at that stamp: first).
type lastLine struct {
	stream StreamKind
	ts     Timestamp
	// entries is how many entries L took (its pieces): a resume finds L at
	// its first, where the file holds the lines begun before it (openLine).
	entries int
	valid   bool
}

// first is the rank, among the entries of L's stream at L's stamp, of L's
// first entry.
func (p *position) first() int {
	return p.streams[streamIndex(p.last.stream)].n - p.last.entries + 1
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

// advance records a line of one entry read.
func (p *position) advance(s StreamKind, ts Timestamp) { p.advanceBy(s, ts, 1) }

// advanceBy records a line of entries entries (its pieces) read.
func (p *position) advanceBy(s StreamKind, ts Timestamp, entries int) {
	p.last = lastLine{stream: s, ts: ts, entries: entries, valid: true}
	sp := &p.streams[streamIndex(s)]
	if sp.valid && sp.ts == ts {
		sp.n += entries
		return
	}
	*sp = streamPos{ts: ts, n: entries, valid: true}
}

// after reports whether p is at or past q on every stream, so committing p
// after q never moves a position backwards.
func (p position) after(q position) bool {
	for i := range p.streams {
		ps, qs := p.streams[i], q.streams[i]
		if qs.valid && (!ps.valid || ps.ts < qs.ts || ps.ts == qs.ts && ps.n < qs.n) {
			return false
		}
	}
	return true
}

// wholeSecond reports whether ts is a stamp cut to the second, as Podman's
// API gives every stamp. A daemon that stamps to the nanosecond gives one
// that ends in nine zeros once in a billion lines: its count is then used
// as on Podman, which is exact too.
func wholeSecond(ts Timestamp) bool { return ts%Timestamp(time.Second) == 0 }

// wholeSeconds reports whether some stream's position is stamped to the
// second: how many entries share its stamp is known only from the first of
// them, so a resume must not begin inside that second (see since).
func (p *position) wholeSeconds() bool {
	for _, sp := range p.streams {
		if sp.valid && wholeSecond(sp.ts) {
			return true
		}
	}
	return false
}

// runs counts the entries of one logs stream that come in a row at one
// stamp, per stream of the log: the k-th of them is compared with a
// position's count. One runs serves one logs stream from its first entry.
type runs struct {
	ts [2]Timestamp
	k  [2]int
}

// meet counts entry e and returns its rank among the entries of its
// stream met in a row at its stamp (1 for the first).
func (r *runs) meet(e *entry) int {
	i := streamIndex(e.stream)
	if r.k[i] == 0 || r.ts[i] != e.ts {
		r.ts[i], r.k[i] = e.ts, 0
	}
	r.k[i]++
	return r.k[i]
}

// read reports whether entry e, the k-th of its stream met in a row at its
// stamp, is at or before its stream's position. At a stamp to the
// nanosecond every entry is: only pieces of the position's line and the
// daemon's repeats share it. At a stamp to the second only the first n are.
func (p *position) read(e *entry, k int) bool {
	sp := p.streams[streamIndex(e.stream)]
	switch {
	case !sp.valid || e.ts > sp.ts:
		return false
	case e.ts < sp.ts || !wholeSecond(e.ts):
		return true
	default:
		return k <= sp.n
	}
}

// seekResult is what one entry tells a stream that is looking for L.
type seekResult int

const (
	seekSkip   seekResult = iota // read before L: skip it
	seekFound                    // it is L (or a piece of L's line)
	seekMissed                   // it must come after L: the window missed L
	seekOpen                     // a piece of an open line, before L: take it again
)

// seek classifies entry e of a stream that has not met L yet, the k-th of
// its stream met in a row at its stamp (runs.meet). A stream that never had
// a line is judged by L's stamp and the margin.
func (p *position) seek(e *entry, k int) seekResult {
	i := streamIndex(e.stream)
	if e.stream == p.last.stream && e.ts == p.last.ts && (!wholeSecond(e.ts) || k == p.first()) {
		return seekFound
	}
	if p.read(e, k) {
		return seekSkip
	}
	if o := p.open[i]; o.valid && e.ts == o.ts {
		return seekOpen
	}
	if p.streams[i].valid {
		return seekMissed
	}
	if e.ts <= p.last.ts+inversionMargin {
		return seekSkip
	}
	return seekMissed
}

// seen reports whether an entry met after L, the k-th of its stream met in
// a row at its stamp, was read already: the daemon can repeat entries
// (Docker 20.10 around a rotation), and the later pieces of L's own line
// come after L.
func (p *position) seen(e *entry, k int) bool { return p.read(e, k) }

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
	if p.wholeSeconds() {
		since -= wholeSecondSlack
	}
	return max(since, 1)
}
