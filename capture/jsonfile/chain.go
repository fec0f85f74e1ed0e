package jsonfile

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
)

// chain holds the files that replaced a followed live file, opened as soon
// as they are created, whatever the reader's lag: a file held open is read
// whole even after the daemon rotates it out and deletes it, so a reader
// behind by more than max-file files loses nothing. A goroutine extends it
// when the container's directory gets a new file (inotify on Linux, a
// timer as well); the stream's Read takes files from it in order.
type chain struct {
	live string
	log  logrus.FieldLogger

	mu   sync.Mutex
	last *logFile   // the newest file known: held, being read, or read
	held []*logFile // opened and not taken yet, oldest first
	// broken: a file in the sequence was gone before it could be opened;
	// nothing after last can be added with certainty.
	broken bool
	full   bool // maxHeld reached (logged once)
	closed bool
	// pins are the files the watcher opened at once (Linux; nil where
	// the directory is not watched).
	pins *pinner

	// watching ends the watcher goroutine; stop calls it and waits on done,
	// which the goroutine closes.
	watching func()
	done     chan struct{}

	// pinned counts the files the watcher opened at once on the
	// directory's events (Linux); tests wait on it.
	pinned atomic.Int64
}

// Tuning of the chain, with the reasons.
const (
	// maxHeld bounds the files held for a reader that is behind (Fluent Bit
	// paused, a slow output): each holds its disk space until read, so a
	// reader this far behind loses the oldest lines instead of filling the
	// disk. 32 files of the default 10 MiB is 320 MiB.
	maxHeld = 32
	// chainTick is how often the watcher looks without an inotify event (or
	// without inotify).
	chainTick = 250 * time.Millisecond
)

// startChain follows the files that come after newest, the live file when
// the stream opened.
func startChain(live string, newest *logFile, log logrus.FieldLogger) *chain {
	c := &chain{live: live, log: log, last: newest, done: make(chan struct{})}
	// A first look before the watcher's goroutine runs: a container that
	// rotates every few milliseconds may rotate its newest file out
	// before that goroutine is scheduled.
	c.extend()
	c.watching = watchDir(c)
	return c
}

// stopKeeping ends the watcher and hands over the files not taken, oldest
// first; the caller closes them. whole is false when a file after them
// was gone before it could be opened.
func (c *chain) stopKeeping() (held []*logFile, whole bool) {
	c.watching()
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	held = c.held
	c.held = nil
	return held, !c.broken
}

// extend opens every file created after last.
func (c *chain) extend() {
	c.pinNow()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.extendLocked()
}

// tryExtend is extend unless another goroutine holds the chain: the
// watcher's, which must not wait (the holder looks itself, and the next
// pins would wait with it).
func (c *chain) tryExtend() {
	if c.mu.TryLock() {
		defer c.mu.Unlock()
		c.extendLocked()
	}
}

func (c *chain) extendLocked() {
	c.adoptLocked()
	for !c.broken && !c.closed {
		if len(c.held) >= maxHeld {
			if !c.full {
				c.full = true
				c.log.WithField("held", len(c.held)).Warn("the reader is far behind: no more rotated log files are held open, the oldest lines may be lost")
			}
			return
		}
		info, err := os.Stat(c.live)
		if err == nil && isFile(c.live, info, c.last) {
			return // nothing new
		}
		newer := err == nil
		next, err := c.openAfterLast()
		switch {
		case errors.Is(err, errNotCreated), errors.Is(err, errRotating):
			// Between two renames of a rotation: the next event or tick
			// looks again.
			return
		case err != nil:
			c.log.WithError(err).Warn("cannot open the next log file")
			return
		case next == nil && newer && c.mayPin():
			return // the watcher may have it: its next pass tells
		case next == nil:
			c.broken = true
			return
		}
		c.held = append(c.held, next)
		c.last = next
	}
}

// openAfterLast opens the file after last, looking again while a rotation
// moves the names.
func (c *chain) openAfterLast() (*logFile, error) {
	for range snapshotAttempts {
		next, err := openNext(c.live, c.last)
		if errors.Is(err, errChanged) {
			continue
		}
		return next, err
	}
	return nil, errRotating
}

// release closes a file the reader has read to its end. If it is the
// newest the chain knows, what identifies its compressed copy is kept
// first: the file after it may still have to be found from it.
func (c *chain) release(f *logFile) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f == c.last && !f.gz && f.ident == nil {
		if id, ok := identify(f); ok {
			f.ident = &id
		}
	}
	f.close()
}

// next returns the file after cur, which the reader has read to its end
// after it was rotated. nil: that file is not known for certain; an
// error wrapping errNotCreated: it does not exist yet.
func (c *chain) next(cur *logFile) (*logFile, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.held) == 0 {
		c.extendLocked()
	}
	if len(c.held) == 0 {
		if c.broken {
			return nil, nil
		}
		return nil, errNotCreated
	}
	next := c.held[0]
	c.held = c.held[1:]
	if c.full && len(c.held) < maxHeld {
		c.full = false
	}
	return next, nil
}
