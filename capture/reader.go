package capture

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
)

// containerState is what capture keeps about one container for as long as
// the container exists. The supervisor owns it; while a reader runs, the
// read position belongs to that reader alone.
type containerState struct {
	id    string
	short string // for log lines

	// meta holds the container's details and its pre-encoded constant
	// fields; the supervisor replaces it on a rename while the reader
	// encodes with it.
	meta atomic.Pointer[containerMeta]
	// md selects the labels its records carry: set by the supervisor
	// before its first reader starts, read-only after.
	md *Metadata
	// counts are its lines and bytes, kept with Options.ContainerStats:
	// readers add, snapshots read.
	counts containerCounts

	// Supervisor's fields.
	cancel     context.CancelFunc // stops the running reader; nil when none runs
	starts     int                // start events seen
	startsSeen int                // starts when the running reader was started
	removed    bool               // destroyed: forget it once its reader is done
	// renamed: a rename came while a reader ran, at renamedAt; the
	// filter is decided again when it returns.
	renamed   bool
	renamedAt Timestamp
	// holdsSlot: its reader is one of the maxStoppedReads.
	holdsSlot bool

	// renames counts renames: the supervisor adds before it decides on
	// one; a reader's inspect that saw it change asks again, so no rename
	// falls between an inspect and the supervisor's decision.
	renames atomic.Int64
	// until is set by the supervisor when a rename takes the container
	// out of the filter while its reader runs: lines stamped from then on
	// are not delivered and the reader winds down. 0: none.
	until atomic.Int64

	// forgotten: destroyed, so a chunk committed later does not bring its
	// position back. Guarded by the positions store's lock.
	forgotten bool

	// Reader's fields (the supervisor hands them over by starting the
	// reader and takes them back when the reader has returned).
	pos     position
	fromNow bool      // read from the end of the log as found at start-up
	since   Timestamp // without a position, read from this stamp on (0: the head)
	// listedStopped: listed as stopped at start-up; inspected before its
	// log is read once, without follow.
	listedStopped bool
	tty           bool
	excluded      bool // Include rejected it; a rename re-decides
	unreadable    bool // the daemon answered 501: logged once, not retried

	// Set by the supervisor from the start event while no reader runs:
	// the name and image of a container gone before its inspect.
	eventName, eventImage string
}

func newContainerState(id string, fromNow bool) *containerState {
	short := id
	if len(short) > 12 {
		short = short[:12]
	}
	return &containerState{id: id, short: short, fromNow: fromNow}
}

// containerMeta is immutable once stored.
type containerMeta struct {
	info  Container
	fixed fixedFields
}

func (cs *containerState) setMeta(c Container) {
	cs.meta.Store(&containerMeta{info: c, fixed: containerFields(c, cs.md)})
}

// reader follows one container's logs through short-lived streams.
type reader struct {
	cs   *containerState
	src  Source
	opts *Options
	q    *queue
	log  *logrus.Entry
	// stats may be nil (benchmarks build readers without one).
	stats *Stats

	chunk  []byte
	lines  int
	counts lineCounts // what chunk holds, added to stats when it is queued
	joiner lineJoiner
	// readBuf is the decoder's buffer, reused by the streams of one run
	// and dropped when the reader returns: memory follows the running
	// containers, not every container seen.
	readBuf []byte
	// behind tracks, per stream, lines dropped because they are stamped
	// before the stream's position (see noteBehind).
	behind [2]behindRun
	tail   int
	// seekWait is how long a resume may stay silent; see seekBound.
	seekWait time.Duration
	running  bool // as inspect last found it; false once a follow stream ended on a stop
}

// streamEnd says why a stream ended.
type streamEnd int

const (
	endEOF           streamEnd = iota // the daemon ended it
	endRefresh                        // it reached its age and was closed
	endIncomplete                     // the tail window did not reach L
	endStopped                        // capture is stopping
	endFailed                         // a read error or malformed input
	endSkipped                        // inspect found it gone or not selected
	endInspectFailed                  // inspect failed (logged): retry
	endDeselected                     // a followed line came after a rename out of the filter
)

// retry backoff for a reader whose streams fail.
const (
	minBackoff = 250 * time.Millisecond
	maxBackoff = 30 * time.Second
)

// run reads the container until it stops, is removed, or ctx ends. Every
// way out is logged; the supervisor learns of the exit when run returns.
func (r *reader) run(ctx context.Context) {
	r.tail = firstTail
	r.joiner.maxLine = r.opts.MaxLineSize
	r.seekWait = cmp.Or(r.opts.seekBound, seekBound)
	r.chunk = r.q.buffer()
	defer func() { r.q.release(r.chunk) }()
	backoff := minBackoff
	// again decides how soon to reopen: at once after a stream that read
	// lines, otherwise after a wait that grows, so a failing daemon is not
	// hammered.
	again := func(read int) bool {
		if read > 0 {
			backoff = minBackoff
			return true
		}
		ok := sleepCtx(ctx, backoff)
		backoff = min(2*backoff, maxBackoff)
		return ok
	}
	known := false // r.running and the container's details are current
	for ctx.Err() == nil {
		var p plan
		switch {
		case !known && r.opensBeforeInspect():
			// A new container: its stream is opened first, so lines of a
			// container removed as soon as it exits are not lost to the
			// time an inspect takes. It is followed until inspect says
			// otherwise.
			p = r.plan(true)
			p.inspect = true
		case !known:
			res, err := r.inspect(ctx)
			switch {
			case err != nil:
				if !again(0) {
					return
				}
				continue
			case res != inspectRead:
				return
			}
			known = true
			p = r.plan(r.running)
		default:
			// Renamed out of the filter: read what is left before the
			// rename without follow, then stop.
			p = r.plan(r.running && r.cs.until.Load() == 0)
		}
		end, read, err := r.stream(ctx, p)
		if p.inspect && end != endFailed && end != endSkipped && end != endInspectFailed {
			known = true // the inspect alongside the open succeeded
		}
		switch end {
		case endStopped, endSkipped:
			return
		case endInspectFailed:
			if !again(0) {
				return
			}
		case endRefresh:
			r.log.Trace("stream refreshed")
		case endDeselected:
			r.log.Debug("renamed out of the filter, reading the rest before the rename")
		case endIncomplete:
			r.tail *= tailGrowth
			r.log.WithField("tail", r.tail).Debug("resume window too short, widening it")
		case endFailed:
			switch {
			case errors.Is(err, ErrLogsUnreadable):
				r.stats.countError(ReasonUnreadable)
				r.log.WithError(err).Warn("the daemon cannot serve this container's logs; skipping it")
				r.cs.unreadable = true
				return
			case errors.Is(err, ErrNotFound):
				r.log.Debug("container is gone")
				return
			}
			r.log.WithError(err).Warn("logs stream failed, resuming after the last good line")
			known = false
			if !again(read) {
				return
			}
		case endEOF:
			if p.seed {
				r.cs.fromNow = false
				continue
			}
			if p.req.Follow {
				// A follow stream ends when the container stops, and also
				// when the daemon goes away: ask which.
				c, err := r.src.Inspect(ctx, r.cs.id)
				switch {
				case ctx.Err() != nil:
					return
				case err == nil && c.Running:
					if !again(read) {
						return
					}
					continue
				case err != nil && !errors.Is(err, ErrNotFound):
					r.stats.countError(ReasonInspect)
					known = false
					if !again(0) {
						return
					}
					continue
				case err == nil:
					// Stopped. Docker 20.10's follow can end before the
					// log does, and never sends a last piece without a
					// newline: only a read without follow tells where the
					// log ends.
					r.running = false
					continue
				}
			}
			// Read without follow to its end, or gone: the log is
			// complete, including a last line that did not end in a
			// newline.
			r.joiner.flush(r)
			if r.flush(ctx) != nil {
				return
			}
			r.log.Debug("container stopped, its log is read")
			return
		}
	}
}

// opensBeforeInspect reports whether the next stream reads the log from its
// head, which needs nothing of inspect before its first bytes.
func (r *reader) opensBeforeInspect() bool {
	return !r.cs.pos.last.valid && !r.cs.fromNow && !r.cs.listedStopped
}

// inspectResult is what an inspect decides about reading a container.
type inspectResult int

const (
	inspectRead inspectResult = iota // read it
	inspectSkip                      // not selected, nothing wanted, or stopping
	inspectGone                      // it no longer exists
)

// inspect learns the container's details and decides whether to read it;
// an error is the daemon's, logged and counted here, to retry.
func (r *reader) inspect(ctx context.Context) (inspectResult, error) {
	for {
		renames := r.cs.renames.Load()
		res, err := r.inspectOnce(ctx)
		if err != nil || renames == r.cs.renames.Load() {
			return res, err
		}
		// Renamed meanwhile: the answer may hold the old name.
	}
}

func (r *reader) inspectOnce(ctx context.Context) (inspectResult, error) {
	c, err := r.src.Inspect(ctx, r.cs.id)
	switch {
	case ctx.Err() != nil:
		return inspectSkip, nil
	case errors.Is(err, ErrNotFound):
		r.log.Debug("container is gone")
		return inspectGone, nil
	case err != nil:
		r.stats.countError(ReasonInspect)
		r.log.WithError(err).Warn("cannot inspect container, retrying")
		return inspectSkip, err
	}
	r.cs.setMeta(c) // also when not selected: a rename decides with its labels
	if !r.selected(c) {
		return inspectSkip, nil
	}
	r.cs.excluded = false
	if c.NoLogs {
		r.stats.countError(ReasonUnreadable)
		r.log.WithField("container_name", c.Name).Warn("the container's log driver keeps no logs the daemon can serve; skipping it")
		r.cs.unreadable = true
		return inspectSkip, nil
	}
	r.cs.tty, r.running = c.TTY, c.Running
	// Only stdout exists with a TTY.
	if r.opts.Stdout || (!c.TTY && r.opts.Stderr) {
		return inspectRead, nil
	}
	return inspectSkip, nil
}

// selected applies the filter to what is known of the container.
func (r *reader) selected(c Container) bool {
	if r.opts.Include != nil && !r.opts.Include(c) {
		r.cs.excluded = true
		r.log.WithField("container_name", c.Name).Debug("container not selected")
		return false
	}
	return true
}

// readGone decides whether to keep what the open stream of a container
// gone before its inspect delivers: it is known only by its start event,
// whose name and image the records carry and the filter judges.
func (r *reader) readGone() bool {
	if r.cs.meta.Load() == nil {
		c := Container{ID: r.cs.id, Name: r.cs.eventName, Image: r.cs.eventImage}
		if !r.selected(c) {
			return false
		}
		r.cs.setMeta(c)
	}
	r.running = false
	r.log.Debug("container gone before its inspect; reading what its stream delivers")
	return true
}

// A resume that has read nothing yet may be the daemon scanning its log
// for since before it sends a byte (about a minute for 1.7 GB): it is
// given seekBound, doubled after each such resume cut while still silent,
// up to maxSeekBound, so a scan of any size ends once.
const (
	seekBound    = time.Minute
	maxSeekBound = 8 * time.Minute
)

// plan is one stream's request and how to read it.
type plan struct {
	req     LogsRequest
	seed    bool // read the last entry only, to start after it
	seek    bool // skip entries until L
	full    bool // no tail window: the whole log from since
	inspect bool // inspect once the stream is open, before reading it
}

func (r *reader) plan(running bool) plan {
	// Both streams are always asked for, even when one is not wanted:
	// tail counts the entries of both, and the last line read must be in
	// the stream for a resume to find it. Unwanted lines are dropped here.
	stdout, stderr := true, !r.cs.tty
	req := LogsRequest{Stdout: stdout, Stderr: stderr, Follow: running, Tail: -1}
	pos := &r.cs.pos
	if r.cs.fromNow && !pos.last.valid {
		// The last entries give both streams a position, if both have
		// lines there.
		req.Follow, req.Tail = false, seedTail
		return plan{req: req, seed: true}
	}
	if !pos.last.valid {
		req.Since = r.cs.since
		return plan{req: req}
	}
	req.Since = pos.since(stdout, stderr)
	if r.tail > maxTail {
		return plan{req: req, seek: true, full: true}
	}
	req.Tail = r.tail
	return plan{req: req, seek: true}
}

// stream opens one logs stream and reads it until it ends. It reports how
// many lines it read.
func (r *reader) stream(ctx context.Context, p plan) (streamEnd, int, error) {
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
	end, read, err := r.read(ctx, streamCtx, w, p)
	switch {
	case !w.silent():
		r.seekWait = cmp.Or(r.opts.seekBound, seekBound)
	case p.seek && end == endRefresh:
		r.seekWait = min(2*r.seekWait, maxSeekBound)
		r.log.WithField("wait", r.seekWait).Debug("the daemon sent nothing before the refresh, waiting longer")
	}
	return end, read, err
}

// read is stream's body: it opens the stream and reads it until it ends.
func (r *reader) read(ctx, streamCtx context.Context, w *streamWatch, p plan) (streamEnd, int, error) {
	if p.inspect {
		// Inspect runs alongside the open: a container removed as soon as
		// it exits is then gone for neither or for both.
		result := make(chan error, 1) // the inspecting goroutine's, never blocks
		var res inspectResult
		go func() {
			var err error
			res, err = r.inspect(ctx)
			result <- err
		}()
		// Waited for on every way out, so it never outlives the stream.
		waited, err := false, error(nil)
		inspected := func() (inspectResult, error) {
			if !waited {
				waited, err = true, <-result
			}
			return res, err
		}
		defer inspected() //nolint:errcheck // waited for only
		return r.readOpened(ctx, streamCtx, w, p, inspected)
	}
	return r.readOpened(ctx, streamCtx, w, p, nil)
}

// readOpened is read's body; inspected waits for the inspect that runs
// alongside the open (p.inspect).
func (r *reader) readOpened(ctx, streamCtx context.Context, w *streamWatch, p plan, inspected func() (inspectResult, error)) (streamEnd, int, error) {
	rc, err := r.src.Logs(streamCtx, r.cs.id, p.req)
	if err != nil {
		if ctx.Err() != nil {
			return endStopped, 0, nil
		}
		if inspected != nil {
			if res, err := inspected(); err == nil && res != inspectRead {
				return endSkipped, 0, nil // not an error of a container not read
			}
		}
		if !errors.Is(err, ErrLogsUnreadable) && !errors.Is(err, ErrNotFound) {
			r.stats.countError(ReasonOpen) // those two are not failures to open
		}
		return endFailed, 0, fmt.Errorf("open logs stream: %w", err)
	}
	r.stats.add(gaugeStreams, 1)
	defer r.stats.add(gaugeStreams, -1)
	defer rc.Close()
	gone := false
	if p.inspect {
		// The decoder needs the TTY flag, and records the name.
		res, err := inspected()
		switch {
		case err != nil:
			return endInspectFailed, 0, err
		case res == inspectGone && r.readGone():
			// Removed right after it exited: what the stream delivers is
			// all there will ever be.
			gone = true
		case res != inspectRead:
			return endSkipped, 0, nil
		}
	}
	r.joiner.discard()

	mode := modeOf(r.cs.tty)
	if gone {
		mode = modeSniff // the TTY flag is unknown: the first byte tells
	}
	d := newDecoder(rc, mode, maxFrameSize(r.opts.MaxLineSize), r.readBuf)
	defer func() { r.readBuf = d.buffer() }()
	seeking := p.seek
	before := r.linesRead()
	var lastTS Timestamp // of the last entry decoded, for the watch
	for {
		e, ok, err := d.next()
		if errors.Is(err, ErrSkipped) {
			// Decided by the decoder, which has moved past the bytes.
			r.stats.countError(ReasonMalformed)
			r.log.WithError(err).Warn("skipped bytes of the logs stream that are no log entry")
			continue
		}
		if err != nil {
			r.flush(ctx) //nolint:errcheck // stopping is seen below
			if ctx.Err() != nil {
				return endStopped, r.linesRead() - before, nil
			}
			r.stats.countError(ReasonMalformed)
			return endFailed, r.linesRead() - before, fmt.Errorf("malformed logs stream: %w", err)
		}
		if !ok {
			// About to block in Read: hand over what is encoded first.
			if err := r.flush(ctx); err != nil {
				return endStopped, r.linesRead() - before, nil
			}
			err := d.fill()
			if err == nil {
				w.read(lastTS)
				continue
			}
			read := r.linesRead() - before
			switch {
			case ctx.Err() != nil:
				return endStopped, read, nil
			case streamCtx.Err() != nil:
				// Decided by our own deadline, not by the error's text.
				r.stats.add(countRefreshes, 1)
				return endRefresh, read, nil
			case errors.Is(err, io.EOF) && seeking && !p.full:
				// Without L, nothing proves the window reached back far
				// enough. (With the whole log read, it held nothing new.)
				r.log.Debug("the resume window ended before the last line")
				return endIncomplete, read, nil
			case errors.Is(err, io.EOF):
				return endEOF, read, nil
			default:
				r.stats.countError(ReasonRead)
				return endFailed, read, fmt.Errorf("read logs stream: %w", err)
			}
		}
		lastTS = e.ts
		if e.stream == SystemErr {
			r.log.WithField("stream", e.stream.String()).Warnf("daemon error in logs stream: %s", trimEOL(e.data, false))
			continue
		}
		if p.seed {
			r.cs.pos.advance(e.stream, e.ts)
			continue
		}
		if seeking {
			switch r.cs.pos.seek(&e) {
			case seekSkip:
				continue
			case seekOpen:
				// Taken again from its first piece; it stays open in the
				// position until its last piece is read.
				r.joiner.add(&e, d.raw(), r)
				continue
			case seekFound:
				if !r.openLinesTaken() && !p.full {
					r.log.Debug("the resume window began inside a line open at the last line")
					return endIncomplete, r.linesRead() - before, nil
				}
				seeking, r.tail = false, firstTail
				w.restart()
				continue
			case seekMissed:
				if !p.full {
					r.log.WithFields(logrus.Fields{"stream": e.stream.String(), "stamp": e.ts.String()}).
						Debug("the resume window met a line after the last line before it")
					return endIncomplete, r.linesRead() - before, nil
				}
				seeking = false
				w.restart()
				r.log.Warn("last position is no longer in the log, continuing after it by time")
			}
		} else if r.cs.pos.seen(&e) {
			r.noteBehind(&e)
			continue
		}
		if u := Timestamp(r.cs.until.Load()); u != 0 && e.ts >= u {
			// Written after a rename out of the filter.
			if p.req.Follow {
				if err := r.flush(ctx); err != nil {
					return endStopped, r.linesRead() - before, nil
				}
				return endDeselected, r.linesRead() - before, nil
			}
			continue
		}
		if !r.wanted(e.stream) {
			r.advance(e.stream, e.ts) // read, not delivered
			continue
		}
		r.joiner.add(&e, d.raw(), r)
		if len(r.chunk) >= chunkTarget {
			if err := r.flush(ctx); err != nil {
				return endStopped, r.linesRead() - before, nil
			}
		}
	}
}

// linesRead counts lines read since the reader started, for backoff
// decisions.
func (r *reader) linesRead() int { return r.lines }

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
	r.advance(s, ts)
	r.lines++
	r.counts.add(s, len(line), truncated)
}

// advance makes the line (s, ts) L, and records the lines left open before
// it.
func (r *reader) advance(s StreamKind, ts Timestamp) {
	r.cs.pos.advance(s, ts)
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

// clockStepAfter is how long lines stamped before a stream's position may
// keep coming before it is reported: the daemon's own repeats (Docker
// 20.10 around a rotation) come in a burst, lines written after its clock
// stepped back keep coming as long as the container writes.
const clockStepAfter = time.Second

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
	if len(r.chunk) < chunkTarget/4 {
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
	return max(maxLine, 4*pieceLen) + maxTimestampLen
}

// sleepCtx waits d or until ctx ends; it reports whether to go on.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
