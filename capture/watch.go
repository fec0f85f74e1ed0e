package capture

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// streamWatch closes a stream when it is stuck or has reached its age, but
// not while it is still delivering the log's past: the resume of a history
// read cut short cannot find its last line in a small tail window, widens
// it and makes the daemon send again what it had sent.
//
// At each check (the stream's first deadline, then every StreamRefresh) the
// stream is kept if it read bytes since the previous check and the last
// entry it decoded is older than half of StreamRefresh. Otherwise it is closed: it
// was silent for a whole period, or it follows live lines and a refresh
// costs the daemon only a tail window.
type streamWatch struct {
	// cancel ends the stream's context; called by the timer's goroutine,
	// and by the reader when the stream ends.
	cancel  context.CancelFunc
	refresh time.Duration
	now     func() time.Time

	// Written by the reader after each read that returned bytes; read by
	// the timer's goroutine.
	reads  atomic.Int64
	lastTS atomic.Int64 // stamp of the last entry decoded before that read

	mu      sync.Mutex
	timer   watchTimer // runs check; stopped by stop
	seen    int64      // reads at the previous check
	stopped bool
}

// watchTimer is what the watch uses of a *time.Timer: tests replace the
// timer to decide when checks run relative to the stream's reads.
type watchTimer interface {
	Reset(d time.Duration) bool
	Stop() bool
}

// afterFunc starts a watch's timer: time.AfterFunc, or a test's.
type afterFunc func(d time.Duration, f func()) watchTimer

func realAfterFunc(d time.Duration, f func()) watchTimer { return time.AfterFunc(d, f) }

func startWatch(cancel context.CancelFunc, first, refresh time.Duration, now func() time.Time, after afterFunc) *streamWatch {
	w := &streamWatch{cancel: cancel, refresh: refresh, now: now}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.timer = after(first, w.check)
	return w
}

// read records a read that returned bytes; ts is the stamp of the last
// entry decoded so far (0 before the first).
func (w *streamWatch) read(ts Timestamp) {
	w.lastTS.Store(int64(ts))
	w.reads.Add(1)
}

// silent reports whether no read returned bytes yet.
func (w *streamWatch) silent() bool { return w.reads.Load() == 0 }

func (w *streamWatch) check() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	reads := w.reads.Load()
	progressed := reads != w.seen
	w.seen = reads
	if progressed && w.behind() {
		w.timer.Reset(w.refresh)
		return
	}
	w.cancel()
}

// behind reports whether the stream is still reading the log's past: its
// last entry is older than half a refresh period, which a burst written
// just before the stream opened already is at the first check. (A daemon
// whose clock runs late looks behind too; its progressing streams then
// live longer, which costs nothing.)
func (w *streamWatch) behind() bool {
	ts := w.lastTS.Load()
	if ts != 0 && ts%int64(time.Second) == 0 {
		ts += int64(wholeSecondLag)
	}
	return ts != 0 && w.now().UnixNano()-ts > int64(w.refresh/behindFraction)
}

// restart counts the stream's age from now: a resume has met its last line.
func (w *streamWatch) restart() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.seen = w.reads.Load()
		w.timer.Reset(w.refresh)
	}
}

// stop ends the watch; a check already running does nothing more.
func (w *streamWatch) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	w.timer.Stop()
}
