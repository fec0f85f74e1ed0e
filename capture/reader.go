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

	// Reader's fields (the supervisor hands them over by starting the
	// reader and takes them back when the reader has returned).
	pos          position
	fromNow      bool // read from the end of the log as found at start-up
	tty          bool
	excluded     bool // Include rejected it; a rename re-decides
	unreadable   bool // the daemon answered 501: logged once, not retried
	readerBuffer []byte
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

// pendingLine gathers the pieces of a line longer than one piece.
type pendingLine struct {
	active    bool
	ts        Timestamp
	data      []byte
	truncated bool
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

	chunk   []byte
	lines   int
	counts  lineCounts // what chunk holds, added to stats when it is queued
	pending [2]pendingLine
	tail    int
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
			ok, err := r.inspect(ctx)
			switch {
			case err != nil:
				if !again(0) {
					return
				}
				continue
			case !ok:
				return
			}
			known = true
			p = r.plan(r.running)
		default:
			p = r.plan(r.running)
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
			r.flushPending()
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
	return !r.cs.pos.last.valid && !r.cs.fromNow
}

// inspect learns the container's details. It reports whether to read it;
// an error is the daemon's, logged and counted here, to retry.
func (r *reader) inspect(ctx context.Context) (bool, error) {
	c, err := r.src.Inspect(ctx, r.cs.id)
	switch {
	case ctx.Err() != nil:
		return false, nil
	case errors.Is(err, ErrNotFound):
		r.log.Debug("container is gone")
		return false, nil
	case err != nil:
		r.stats.countError(ReasonInspect)
		r.log.WithError(err).Warn("cannot inspect container, retrying")
		return false, err
	}
	if r.opts.Include != nil && !r.opts.Include(c) {
		r.cs.excluded = true
		r.log.WithField("container_name", c.Name).Debug("container not selected")
		return false, nil
	}
	r.cs.setMeta(c)
	r.cs.tty, r.running = c.TTY, c.Running
	// Only stdout exists with a TTY.
	return r.opts.Stdout || (!c.TTY && r.opts.Stderr), nil
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
	w := startWatch(cancel, first, r.opts.StreamRefresh, time.Now)
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
		var ok bool
		go func() {
			var err error
			ok, err = r.inspect(ctx)
			result <- err
		}()
		// Waited for on every way out, so it never outlives the stream.
		waited, err := false, error(nil)
		inspected := func() (bool, error) {
			if !waited {
				waited, err = true, <-result
			}
			return ok, err
		}
		defer inspected() //nolint:errcheck // waited for only
		return r.readOpened(ctx, streamCtx, w, p, inspected)
	}
	return r.readOpened(ctx, streamCtx, w, p, nil)
}

// readOpened is read's body; inspected waits for the inspect that runs
// alongside the open (p.inspect).
func (r *reader) readOpened(ctx, streamCtx context.Context, w *streamWatch, p plan, inspected func() (bool, error)) (streamEnd, int, error) {
	rc, err := r.src.Logs(streamCtx, r.cs.id, p.req)
	if err != nil {
		if ctx.Err() != nil {
			return endStopped, 0, nil
		}
		if inspected != nil {
			if ok, err := inspected(); err == nil && !ok {
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
	if p.inspect {
		// The decoder needs the TTY flag, and records the name.
		if ok, err := inspected(); err != nil {
			return endInspectFailed, 0, err
		} else if !ok {
			return endSkipped, 0, nil
		}
	}
	r.discardPending()

	d := newDecoder(rc, r.cs.tty, maxFrameSize(r.opts.MaxLineSize), r.cs.readerBuffer)
	defer func() { r.cs.readerBuffer = d.buffer() }()
	seeking := p.seek
	before := r.linesRead()
	var lastTS Timestamp // of the last entry decoded, for the watch
	for {
		e, ok, err := d.next()
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
			case seekFound:
				seeking, r.tail = false, firstTail
				w.restart()
				continue
			case seekMissed:
				if !p.full {
					return endIncomplete, r.linesRead() - before, nil
				}
				seeking = false
				w.restart()
				r.log.Warn("last position is no longer in the log, continuing after it by time")
			}
		} else if r.cs.pos.seen(&e) {
			continue
		}
		if !r.wanted(e.stream) {
			r.cs.pos.advance(e.stream, e.ts) // read, not delivered
			continue
		}
		r.add(&e)
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

// add takes one entry that was not read before: a whole line, or a piece of
// a long one.
func (r *reader) add(e *entry) {
	p := &r.pending[streamIndex(e.stream)]
	complete := len(e.data) > 0 && e.data[len(e.data)-1] == '\n'
	// A piece shorter than the daemon's cut without a newline is the last
	// piece of a line whose writer stopped mid-line.
	final := complete || len(e.data) < pieceLen
	body := trimEOL(e.data, r.cs.tty)
	if !p.active && final {
		line, truncated := body, false
		if len(line) > r.opts.MaxLineSize {
			line, truncated = line[:r.opts.MaxLineSize], true
		}
		r.emit(e.stream, e.ts, line, truncated)
		return
	}
	if !p.active {
		*p = pendingLine{active: true, ts: e.ts, data: p.data[:0]}
	}
	room := r.opts.MaxLineSize - len(p.data)
	if len(body) > room {
		body, p.truncated = body[:room], true
	}
	p.data = append(p.data, body...)
	if final {
		r.emit(e.stream, p.ts, p.data, p.truncated)
		p.active = false
	}
}

// flushPending emits lines whose last piece never came: the container
// stopped mid-line.
func (r *reader) flushPending() {
	for i := range r.pending {
		if p := &r.pending[i]; p.active {
			r.emit(StreamKind(i+1), p.ts, p.data, p.truncated)
			p.active = false
		}
	}
}

// discardPending drops partial lines when a stream is reopened: they were
// not counted as read, so the new stream brings them again from their
// first piece.
func (r *reader) discardPending() {
	for i := range r.pending {
		r.pending[i].active = false
	}
}

func (r *reader) emit(s StreamKind, ts Timestamp, line []byte, truncated bool) {
	r.chunk = appendRecord(r.chunk, ts, line, s, truncated, r.cs.meta.Load().fixed)
	r.cs.pos.advance(s, ts)
	r.lines++
	r.counts.add(s, len(line), truncated)
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
