package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/sirupsen/logrus"
)

// One logs stream: opened (with the inspect alongside for a container read
// from its head), decoded entry by entry, each entry delivered or skipped
// against the position, and the encoded records handed to the queue.

// stream opens one logs stream and reads it until it ends.
func (r *reader) stream(ctx context.Context, p plan) outcome {
	// The stream's age counts from when it has passed L; a resume has
	// longer to find L, as the daemon may scan the log before it answers.
	streamCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	first := r.opts.StreamRefresh
	if p.seek {
		first = max(first, r.seekWait)
	}
	after := r.opts.watchAfter
	if after == nil {
		after = realAfterFunc
	}
	w := startWatch(cancel, first, r.opts.StreamRefresh, time.Now, after)
	defer w.stop()
	o := r.readStream(ctx, streamCtx, w, p)
	switch {
	case !w.silent():
		r.seekWait = r.firstSeekWait()
	case p.seek && o.end == endRefresh:
		r.seekWait = min(2*r.seekWait, maxSeekBound)
		r.log.WithField("wait", r.seekWait).Debug("the daemon sent nothing before the refresh, waiting longer")
	}
	return o
}

func (r *reader) firstSeekWait() time.Duration {
	if r.opts.seekBound != 0 {
		return r.opts.seekBound
	}
	return seekBound
}

// readStream opens the stream, with the inspect alongside (p.inspect), and
// reads it.
func (r *reader) readStream(ctx, streamCtx context.Context, w *streamWatch, p plan) outcome {
	var inspected func() outcome
	if p.inspect {
		inspected = r.inspectAlongside(ctx)
		defer inspected() // so it never outlives the stream
	}
	rc, err := r.src.Logs(streamCtx, r.cs.id, p.req)
	if err != nil {
		return r.openFailed(ctx, err, inspected)
	}
	r.stats.add(gaugeStreams, 1)
	defer r.stats.add(gaugeStreams, -1)
	defer rc.Close()
	gone := false
	if inspected != nil {
		// The decoder needs the TTY flag, and records the name.
		switch o := inspected(); o.end {
		case endInspected:
		case endGone:
			if !r.readGone() {
				return outcome{end: endSkipped}
			}
			// Removed right after it exited: what the stream delivers is
			// all there will ever be.
			gone = true
		default:
			return o
		}
	}
	r.joiner.discard()
	mode := modeOf(r.cs.tty)
	if gone {
		mode = modeSniff // the TTY flag is unknown: the first byte tells
	}
	d := newDecoder(rc, mode, maxFrameSize(r.opts.MaxLineSize), r.readBuf)
	defer func() { r.readBuf = d.buffer() }()
	s := streamRead{r: r, p: p, ctx: ctx, streamCtx: streamCtx, w: w, d: d, seeking: p.seek, before: r.lines}
	return s.readAll()
}

// inspectAlongside starts inspectToRead while the stream opens: a
// container removed as soon as it exits is then gone for neither or for
// both. The function it returns waits for its outcome.
func (r *reader) inspectAlongside(ctx context.Context) func() outcome {
	result := make(chan outcome, 1) // the inspecting goroutine's; never blocks
	go func() { result <- r.inspectToRead(ctx) }()
	var o outcome
	waited := false
	return func() outcome {
		if !waited {
			o, waited = <-result, true
		}
		return o
	}
}

// openFailed decides what a failed open means.
func (r *reader) openFailed(ctx context.Context, err error, inspected func() outcome) outcome {
	if ctx.Err() != nil {
		return outcome{end: endStopped}
	}
	if inspected != nil {
		switch o := inspected(); o.end {
		case endSkipped, endGone, endUnreadable, endStopped:
			return o // a container not read: the open's error is not its
		}
	}
	return failed(0, ReasonOpen, fmt.Errorf("open logs stream: %w", err))
}

// failed is the outcome of a stream that failed after reading lines,
// with what to count unless the Source classified the error.
func failed(read int, reason ErrorReason, err error) outcome {
	switch {
	case errors.Is(err, ErrLogsUnreadable):
		return outcome{end: endUnreadable, read: read, err: err}
	case errors.Is(err, ErrNotFound):
		return outcome{end: endGone, read: read}
	}
	return outcome{end: endFailed, read: read, err: err, reason: reason}
}

// streamRead is one open stream being read.
type streamRead struct {
	r         *reader
	p         plan
	ctx       context.Context // the reader's: done when capture stops
	streamCtx context.Context // the stream's: done at its age too
	w         *streamWatch
	d         *decoder
	seeking   bool      // a resume that has not met L yet
	met       runs      // the entries met at each stream's latest stamp
	lastTS    Timestamp // of the last entry decoded, for the watch
	before    int       // r.lines when the stream opened
}

// end is the outcome of the stream ending with e.
func (s *streamRead) end(e streamEnd) outcome {
	return outcome{end: e, read: s.read()}
}

// read is how many lines the stream has read.
func (s *streamRead) read() int { return s.r.lines - s.before }

// readAll reads the stream's entries until it ends.
func (s *streamRead) readAll() outcome {
	for {
		e, ok, err := s.d.next()
		switch {
		case errors.Is(err, ErrSkipped) && s.readAgain():
			s.r.flush(s.ctx) //nolint:errcheck // stopping is seen by the reader
			return failed(s.read(), ReasonMalformed, fmt.Errorf("malformed logs stream, read again from the last good line: %w", err))
		case errors.Is(err, ErrSkipped):
			// Decided by the decoder, which has moved past the bytes.
			s.r.stats.countError(ReasonMalformed)
			s.r.log.WithError(err).Warn("skipped bytes of the logs stream that are no log entry")
		case err != nil:
			s.r.flush(s.ctx) //nolint:errcheck // stopping is seen below
			if s.ctx.Err() != nil {
				return s.end(endStopped)
			}
			return failed(s.read(), ReasonMalformed, fmt.Errorf("malformed logs stream: %w", err))
		case !ok:
			if o := s.fill(); o.end != endNone {
				return o
			}
		default:
			if end := s.take(&e); end != endNone {
				return s.end(end)
			}
		}
	}
}

// readAgain reports whether bytes that are no entry end the stream, to be
// read again from the last good line, rather than be skipped: only in a
// multiplexed stream (a TTY log's own odd bytes come again each time), and
// at most maxMalformedRereads times at one position.
func (s *streamRead) readAgain() bool {
	r := s.r
	if s.d.raw() {
		return false
	}
	if !r.skippedValid || r.skippedAt != r.cs.pos {
		r.skippedAt, r.skippedValid, r.rereads = r.cs.pos, true, 0
	}
	if r.rereads == maxMalformedRereads {
		return false
	}
	r.rereads++
	return true
}

// fill hands over what is encoded, then reads more; it reports how the
// stream ended when nothing more came.
func (s *streamRead) fill() outcome {
	// About to block in Read: hand over what is encoded first.
	if err := s.r.flush(s.ctx); err != nil {
		return s.end(endStopped)
	}
	err := s.d.fill()
	switch {
	case err == nil:
		s.w.read(s.lastTS)
		return outcome{}
	case s.ctx.Err() != nil:
		return s.end(endStopped)
	case s.streamCtx.Err() != nil:
		// Decided by our own deadline, not by the error's text.
		s.r.stats.add(countRefreshes, 1)
		return s.end(endRefresh)
	case errors.Is(err, io.EOF) && s.seeking && !s.p.full:
		// Without L, nothing proves the window reached back far enough.
		// (With the whole log read, it held nothing new.)
		s.r.log.Debug("the resume window ended before the last line")
		return s.end(endIncomplete)
	case errors.Is(err, io.EOF):
		return s.end(endLogEnd)
	}
	return failed(s.read(), ReasonRead, fmt.Errorf("read logs stream: %w", err))
}

// take reads one entry; it reports the stream's end when the entry
// decides it.
func (s *streamRead) take(e *entry) streamEnd {
	r := s.r
	s.lastTS = e.ts
	switch {
	case e.stream == SystemErr:
		r.log.WithField("stream", e.stream.String()).Warnf("daemon error in logs stream: %s", trimEOL(e.data, false))
		return endNone
	case s.p.seed:
		r.cs.pos.advance(e.stream, e.ts)
		return endNone
	}
	switch s.already(e) {
	case entrySkip:
		return endNone
	case entryMissed:
		return endIncomplete
	case entryRetake:
		// Taken again from its first piece; it stays open in the position
		// until its last piece is read.
		r.joiner.add(e, s.d.raw(), r)
		return endNone
	}
	if u := Timestamp(r.cs.until.Load()); u != 0 && e.ts >= u {
		// Written after a rename out of the filter.
		if !s.p.req.Follow {
			return endNone
		}
		if r.flush(s.ctx) != nil {
			return endStopped
		}
		return endDeselected
	}
	if !r.wanted(e.stream) {
		r.advance(e.stream, e.ts, 1) // read, not delivered
		return endNone
	}
	r.joiner.add(e, s.d.raw(), r)
	if len(r.chunk) >= chunkTarget && r.flush(s.ctx) != nil {
		return endStopped
	}
	return endNone
}

// entryVerdict is what the position says of one entry.
type entryVerdict int

const (
	entryNew    entryVerdict = iota // not read before: deliver it
	entrySkip                       // read before: drop it
	entryRetake                     // a piece of a line open at L: join it again
	entryMissed                     // after L, met before L: the tail window missed L
)

// already decides whether entry e was read before: the one place a
// stream tells lines delivered from new ones. A resume skips entries until
// it meets L; after L, the daemon's own repeats are dropped.
func (s *streamRead) already(e *entry) entryVerdict {
	r, pos := s.r, &s.r.cs.pos
	k := s.met.meet(e)
	if !s.seeking {
		if pos.seen(e, k) {
			r.noteBehind(e)
			return entrySkip
		}
		return entryNew
	}
	switch pos.seek(e, k) {
	case seekSkip:
		return entrySkip
	case seekOpen:
		return entryRetake
	case seekFound:
		if !r.openLinesTaken() && !s.p.full {
			r.log.Debug("the resume window began inside a line open at the last line")
			return entryMissed
		}
		s.seeking, r.tail = false, firstTail
		s.w.restart()
		return entrySkip
	}
	// seekMissed
	if !s.p.full {
		r.log.WithFields(logrus.Fields{"stream": e.stream.String(), "stamp": e.ts.String()}).
			Debug("the resume window met a line after the last line before it")
		return entryMissed
	}
	s.seeking = false
	s.w.restart()
	// The log no longer reaches back to L (rotated out before it was
	// read, or the daemon's log was removed): what came between is gone.
	r.stats.countError(ReasonGap)
	r.log.Warn("last position is no longer in the log, continuing after it by time: lines in between may be lost")
	return entryNew
}

func (r *reader) wanted(s StreamKind) bool {
	return (s == Stdout && r.opts.Stdout) || (s == Stderr && r.opts.Stderr)
}

// openLinesTaken reports whether a resume that met L took again every piece
// before L of the lines open there.
func (r *reader) openLinesTaken() bool {
	for i, o := range r.cs.pos.open {
		if o.valid && r.joiner.pieces(StreamKind(i+1)) < o.pieces {
			return false
		}
	}
	return true
}

// emit encodes a complete line (lineSink).
func (r *reader) emit(s StreamKind, ts Timestamp, line []byte, truncated bool) {
	r.chunk = appendRecord(r.chunk, ts, line, s, truncated, r.cs.meta.Load().fixed)
	r.advance(s, ts, r.joiner.entries())
	r.lines++
	r.counts.add(s, len(line), truncated)
}

// advance makes the line (s, ts) of entries entries L, and records the
// lines left open before it.
func (r *reader) advance(s StreamKind, ts Timestamp, entries int) {
	r.cs.pos.advanceBy(s, ts, entries)
	for i := range r.cs.pos.open {
		r.cs.pos.open[i] = r.joiner.openAtL(StreamKind(i + 1))
	}
	r.behind[streamIndex(s)] = behindRun{}
}

// behindRun is a run of lines of one stream stamped before its position.
type behindRun struct {
	since    time.Time // when the first was dropped
	count    int
	reported bool
}

// noteBehind reports a stream whose new lines are stamped before its
// position. They cannot be told from lines read before, so they are
// dropped (the daemon's clock stepped back); this says so once a run of
// them has lasted clockStepAfter.
func (r *reader) noteBehind(e *entry) {
	i := streamIndex(e.stream)
	pos := r.cs.pos.streams[i].ts
	if e.ts >= pos {
		return // a later piece of the line at the position
	}
	b := &r.behind[i]
	now := r.now()
	if b.count == 0 {
		b.since = now
	}
	b.count++
	if b.reported || now.Sub(b.since) < clockStepAfter {
		return
	}
	b.reported = true
	r.stats.countError(ReasonClockStep)
	r.log.WithFields(logrus.Fields{"stream": e.stream.String(), "position": pos.String(), "stamp": e.ts.String(), "dropped": b.count}).
		Warn("new lines are stamped before the stream's position (the daemon's clock stepped back?): they are dropped as read until their stamps pass it")
}

func (r *reader) now() time.Time {
	if r.opts.clock != nil {
		return r.opts.clock()
	}
	return time.Now()
}

// flush hands the encoded chunk to the queue, waiting for room.
func (r *reader) flush(ctx context.Context) error {
	if len(r.chunk) == 0 {
		return nil
	}
	c := chunk{data: r.chunk, owner: r.cs, pos: r.cs.pos}
	// Counted before the push, so a record that reaches Fluent Bit is
	// always in the counts (a chunk given up at exit is counted too).
	r.stats.addLines(r.cs, &r.counts)
	if len(r.chunk) < smallChunk {
		// Flushed early, before a Read that may block: queue a copy of its
		// own size, so a queued chunk never pins a whole buffer.
		c.data = append(make([]byte, 0, len(r.chunk)), r.chunk...)
		if err := r.q.push(ctx, c); err != nil {
			return err
		}
		r.chunk = r.chunk[:0]
		return nil
	}
	if err := r.q.push(ctx, c); err != nil {
		return err
	}
	r.chunk = r.q.buffer()
	return nil
}

func trimEOL(b []byte, tty bool) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
		if n := len(b); tty && n > 0 && b[n-1] == '\r' {
			b = b[:n-1]
		}
	}
	return b
}

// maxFrameSize bounds one frame: a piece is at most pieceLen plus its
// stamp, so anything far beyond both that and the line bound is not a log
// entry.
func maxFrameSize(maxLine int) int {
	return max(maxLine, maxFramePieces*pieceLen) + maxTimestampLen
}
