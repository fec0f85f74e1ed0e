package capture

import (
	"context"
	"errors"
	"fmt"
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
	unreadable    bool // the daemon cannot serve its logs: logged once, not retried

	// Set by the supervisor from the start event while no reader runs:
	// the name and image of a container gone before its inspect.
	eventName, eventImage string
	eventLabels           map[string]string
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
	cs    *containerState
	src   Source
	opts  *Options
	q     *queue
	log   *logrus.Entry
	stats *Stats

	chunk  []byte
	lines  int        // lines encoded since the reader started
	counts lineCounts // what chunk holds, added to stats when it is queued
	joiner lineJoiner
	// readBuf is the decoder's buffer, reused by the streams of one run
	// and dropped when the reader returns: memory follows the running
	// containers, not every container seen.
	readBuf []byte
	// behind tracks, per stream, lines dropped because they are stamped
	// before the stream's position (see noteBehind).
	behind [2]behindRun
	tail   int // the resume's tail window
	// seekWait is how long a resume may stay silent; see seekBound.
	seekWait time.Duration
	backoff  time.Duration // the wait before a retry that read nothing
	running  bool          // as the last inspect found it
	// skippedAt is the position at which a multiplexed stream last met
	// bytes that are no frame, and rereads how often the stream was read
	// again from there since: a broken transport, not the log, may have
	// made them, and skipping would drop the frames they hid. After
	// maxMalformedRereads they are skipped, so a log that holds them is
	// not read forever.
	skippedAt    position
	skippedValid bool
	rereads      int
}

// readerState is where a reader is in its container's life. Every state
// but stateInspect and stateDone reads one stream.
type readerState int

const (
	// stateInspect learns the container's details and whether to read it:
	// before the first stream, and again after a failure.
	stateInspect readerState = iota
	// stateOpenInspect reads a new container from its head: the stream is
	// opened alongside the inspect, so a container removed as soon as it
	// exits is not lost to the time an inspect takes. It follows.
	stateOpenInspect
	// stateSeed reads the last entries of a container read from now on,
	// only to start after them.
	stateSeed
	// stateFollow reads a running container with follow, after its
	// position.
	stateFollow
	// stateDrain reads a stopped container, or one renamed out of the
	// filter, without follow to the end of its log.
	stateDrain
	// stateDone: the log is read, or is not to be read; run returns.
	stateDone
)

// streamEnd is how a step ended: its stream, or its inspect.
type streamEnd int

const (
	endNone          streamEnd = iota // not ended: reading goes on
	endLogEnd                         // the log is read to its end (a seed: its last entries)
	endExited                         // a follow stream ended, and inspect found the container stopped
	endRunning                        // a follow stream ended, but inspect found the container running
	endRefresh                        // the stream reached its age and was closed
	endIncomplete                     // the tail window did not reach L
	endDeselected                     // a followed line came after a rename out of the filter
	endFailed                         // opening or reading failed, or the input was malformed
	endUnreadable                     // the daemon cannot serve the container's logs
	endGone                           // the container no longer exists
	endInspected                      // inspect found it to be read
	endSkipped                        // inspect found it not selected, or no stream of it wanted
	endInspectFailed                  // inspect failed (counted and logged by inspect)
	endStopped                        // capture is stopping
)

// outcome is how one step ended.
type outcome struct {
	end    streamEnd
	read   int         // lines the stream read: one that read lines is retried at once
	err    error       // what failed: endFailed, endUnreadable
	reason ErrorReason // what endFailed counts
}

// transition is the next state, and whether to reach it through the
// retry backoff.
type transition struct {
	to    readerState
	retry bool
}

// run reads the container until it stops, is removed, or ctx ends. Every
// way out is logged; the supervisor learns of the exit when run returns.
func (r *reader) run(ctx context.Context) {
	r.tail, r.seekWait, r.backoff = firstTail, r.firstSeekWait(), minBackoff
	r.joiner.maxLine = r.opts.MaxLineSize
	r.chunk = r.q.buffer()
	defer func() { r.q.release(r.chunk) }()
	for st := r.unknown(); st != stateDone && ctx.Err() == nil; {
		st = r.step(ctx, st)
	}
}

// step runs one state, an inspect or a stream, and returns the next.
func (r *reader) step(ctx context.Context, st readerState) readerState {
	var o outcome
	if st == stateInspect {
		o = r.inspectToRead(ctx)
	} else {
		p := r.plan(st)
		o = r.ended(ctx, p, r.stream(ctx, p))
	}
	t := r.next(st, o)
	r.report(st, o)
	if t.retry && !r.again(ctx, o.read) {
		return stateDone
	}
	return t.to
}

// next is the reader's one transition, from the state a step ran in and
// how it ended to the next state (see "Exactly once" in the README).
// "Reading" is seed, follow or drain, as the container is (see reading);
// "retried" goes through the backoff unless the stream read lines.
//
//	from                     how it ended            next
//	inspect                  inspected               reading
//	any stream               refresh                 reading: the same again, after the position
//	follow                   deselected              drain: the rest before the rename
//	follow, open-inspect     exited                  drain: Docker 20.10's follow can end before the log
//	follow, open-inspect     running                 reading, retried
//	follow, drain (resumes)  incomplete              reading, the window tailGrowth times wider
//	seed                     log end                 reading, after the log's last entries
//	drain, follow (gone)     log end                 done: the log is complete
//	any                      failed, inspect failed  inspect, or open-inspect from the head; retried
//	any                      unreadable              done, not retried by the supervisor
//	any                      stopped, skipped, gone  done
func (r *reader) next(st readerState, o outcome) transition {
	switch o.end {
	case endInspected, endRefresh, endDeselected, endExited:
		return transition{to: r.reading()}
	case endIncomplete:
		r.tail *= tailGrowth
		return transition{to: r.reading()}
	case endLogEnd:
		if st == stateSeed {
			r.cs.fromNow = false
			return transition{to: r.reading()}
		}
		return transition{to: stateDone}
	case endRunning:
		// The daemon ended a follow stream of a running container: it
		// went away, or cut the stream.
		return transition{to: r.reading(), retry: true}
	case endFailed, endInspectFailed:
		// Resumed after the last good line, the details learned again.
		return transition{to: r.unknown(), retry: true}
	case endUnreadable:
		r.cs.unreadable = true
		return transition{to: stateDone}
	}
	// endStopped, endSkipped, endGone.
	return transition{to: stateDone}
}

// unknown is the state that learns the container's details: at first, and
// after a failure.
func (r *reader) unknown() readerState {
	if !r.cs.pos.last.valid && !r.cs.fromNow && !r.cs.listedStopped {
		// Read from its head: nothing of inspect is needed before the
		// stream's first bytes.
		return stateOpenInspect
	}
	return stateInspect
}

// reading is the state of the next stream of a container whose details
// are known.
func (r *reader) reading() readerState {
	switch {
	case r.cs.fromNow && !r.cs.pos.last.valid:
		return stateSeed
	case r.running && r.cs.until.Load() == 0:
		return stateFollow
	default:
		// Stopped, or renamed out of the filter: read what is left
		// before the rename without follow, then stop.
		return stateDrain
	}
}

// again waits before a retry: none after a stream that read lines,
// otherwise a wait that grows, so a failing daemon is not hammered. It
// reports whether to go on.
func (r *reader) again(ctx context.Context, read int) bool {
	if read > 0 {
		r.backoff = minBackoff
		return true
	}
	ok := sleepCtx(ctx, r.backoff)
	r.backoff = min(2*r.backoff, maxBackoff)
	return ok
}

// report logs how a step ended, and counts a stream's failure: the one
// place a stream's errors are counted. (Inspect counts its own.)
func (r *reader) report(st readerState, o outcome) {
	switch o.end {
	case endFailed:
		r.stats.countError(o.reason)
		r.log.WithError(o.err).Warn("logs stream failed, resuming after the last good line")
	case endUnreadable:
		r.stats.countError(ReasonUnreadable)
		r.log.WithError(o.err).Warn("the daemon cannot serve this container's logs; skipping it")
	case endGone:
		r.log.Debug("container is gone")
	case endRefresh:
		r.log.Trace("stream refreshed")
	case endDeselected:
		r.log.Debug("renamed out of the filter, reading the rest before the rename")
	case endIncomplete:
		r.log.WithField("tail", r.tail).Debug("resume window too short, widening it")
	case endLogEnd:
		if st != stateSeed {
			r.log.Debug("container stopped, its log is read")
		}
	}
}

// inspect asks the daemon for the container's details; it is every inspect
// of a reader. An error is the daemon's: counted and logged here, to retry.
func (r *reader) inspect(ctx context.Context) (Container, streamEnd) {
	for {
		renames := r.cs.renames.Load()
		c, end := r.inspectOnce(ctx)
		if end != endInspected || renames == r.cs.renames.Load() {
			return c, end
		}
		// Renamed meanwhile: the answer may hold the old name.
	}
}

func (r *reader) inspectOnce(ctx context.Context) (Container, streamEnd) {
	c, err := r.src.Inspect(ctx, r.cs.id)
	switch {
	case ctx.Err() != nil:
		return c, endStopped
	case errors.Is(err, ErrNotFound):
		return c, endGone
	case err != nil:
		r.stats.countError(ReasonInspect)
		r.log.WithError(err).Warn("cannot inspect container, retrying")
		return c, endInspectFailed
	}
	r.cs.setMeta(c) // also when not selected: a rename decides with its labels
	r.cs.tty, r.running = c.TTY, c.Running
	return c, endInspected
}

// inspectToRead inspects the container and decides whether to read it:
// selected by the filter, with a log the daemon can serve, and a stream
// wanted. (The inspect after a follow stream ended asks only whether the
// container still runs: the filter of a container being read is the
// supervisor's, through until.)
func (r *reader) inspectToRead(ctx context.Context) outcome {
	c, end := r.inspect(ctx)
	switch {
	case end != endInspected:
		return outcome{end: end}
	case !r.selected(c):
		return outcome{end: endSkipped}
	}
	r.cs.excluded = false
	if c.NoLogs {
		// Docker answers its logs with 501, Podman with a server error
		// that looks like a failing daemon: inspect decides.
		return outcome{end: endUnreadable, err: fmt.Errorf("container %s: its log driver keeps no logs: %w", c.Name, ErrLogsUnreadable)}
	}
	// Only stdout exists with a TTY.
	if r.opts.Stdout || (!c.TTY && r.opts.Stderr) {
		return outcome{end: endInspected}
	}
	return outcome{end: endSkipped}
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
// whose name, image and labels the records carry and the filter judges.
func (r *reader) readGone() bool {
	if r.cs.meta.Load() == nil {
		c := Container{ID: r.cs.id, Name: r.cs.eventName, Image: r.cs.eventImage, Labels: r.cs.eventLabels}
		if !r.selected(c) {
			return false
		}
		r.cs.setMeta(c)
	}
	r.running = false
	r.log.Debug("container gone before its inspect; reading what its stream delivers")
	return true
}

// plan is one stream's request and how to read it.
type plan struct {
	req     LogsRequest
	seed    bool // read the last entries only, to start after them
	seek    bool // skip entries until L
	full    bool // no tail window: the whole log from since
	inspect bool // inspect once the stream is open, before reading it
}

// plan is the stream that state st reads.
func (r *reader) plan(st readerState) plan {
	// Both streams are always asked for, even when one is not wanted:
	// tail counts the entries of both, and the last line read must be in
	// the stream for a resume to find it. Unwanted lines are dropped here.
	stdout, stderr := true, !r.cs.tty
	req := LogsRequest{Stdout: stdout, Stderr: stderr, Follow: st == stateFollow || st == stateOpenInspect, Tail: -1}
	pos := &r.cs.pos
	p := plan{inspect: st == stateOpenInspect}
	switch {
	case st == stateSeed:
		// The last entries give both streams a position, if both have
		// lines there.
		req.Follow, req.Tail = false, seedTail
		p.seed = true
	case !pos.last.valid:
		req.Since = r.cs.since
	case r.tail > maxTail || pos.wholeSeconds():
		// Stamped to the second, a tail window that begins inside the
		// position's second cannot be told from one that does not, and
		// the count would skip unread lines of that second: since alone
		// begins before it (Podman then reads its log from the start).
		req.Since, p.seek, p.full = pos.since(stdout, stderr), true, true
	default:
		req.Since, req.Tail, p.seek = pos.since(stdout, stderr), r.tail, true
	}
	p.req = req
	return p
}

// ended decides what the daemon ending a stream means. A follow stream
// ends when the container stops, and also when the daemon goes away: an
// inspect tells which. The log is complete once a stream without follow
// has reached its end, or the container is gone: a last line without a
// newline is then whole.
func (r *reader) ended(ctx context.Context, p plan, o outcome) outcome {
	if o.end != endLogEnd || p.seed {
		return o
	}
	if p.req.Follow {
		switch _, end := r.inspect(ctx); end {
		case endInspected:
			if r.running {
				return outcome{end: endRunning, read: o.read}
			}
			// Stopped. Docker 20.10's follow can end before the log does,
			// and never sends a last piece without a newline: only a read
			// without follow tells where the log ends.
			return outcome{end: endExited}
		case endStopped, endInspectFailed:
			return outcome{end: end}
		}
		// Gone: what the stream delivered is the whole log.
	}
	r.joiner.flush(r)
	if r.flush(ctx) != nil {
		return outcome{end: endStopped}
	}
	return o
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
