package jsonfile

import (
	"bytes"
	"compress/gzip"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// watchDir follows the files created in the chain's directory from a
// goroutine of its own, which closes c.done when it returns; the returned
// func stops it. On each inotify event it first pins the files that
// replaced the live one (see pinner: an open and an fstat each, without
// the chain's lock), hands those that follow the chain's newest file to
// the chain, and only then lets the chain look (extend), which can take a
// long time under load and is cheap once the pins reached the live file.
// Every chainTick without an event it looks too. Where inotify is not
// available, the timer alone drives it.
func watchDir(c *chain) (stop func()) {
	stopc := make(chan struct{}) // closed by stop
	p, err := newPinner(c.live, &c.pinned)
	if err == nil {
		// Before the goroutine runs, which can wait long for a CPU: the
		// files created since the stream's snapshot.
		p.pass(true) //nolint:errcheck // the goroutine meets the error again
		c.mu.Lock()
		c.pins = p
		c.adoptLocked()
		c.mu.Unlock()
	}
	go func() {
		defer close(c.done)
		if p0 := p; p0 != nil {
			defer p0.close()
		}
		t := time.NewTicker(chainTick)
		defer t.Stop()
		// A file created before the watch was in place sent no event.
		c.tryExtend()
		var raw syscall.RawConn
		if p != nil {
			if raw, err = p.events.SyscallConn(); err != nil {
				p.close()
				p = nil
			}
		}
		for {
			if p != nil {
				p.events.SetReadDeadline(time.Now().Add(chainTick)) //nolint:errcheck // a pollable file takes deadlines
				// The events are read in the pass, which the stream's
				// reader runs too: waiting here takes none.
				var perr error
				err := raw.Read(func(uintptr) bool {
					var got bool
					got, perr = p.pass(false)
					return got || perr != nil
				})
				select {
				case <-stopc:
					return
				default:
				}
				if errors.Is(err, os.ErrDeadlineExceeded) {
					// A pass that met a rotation under way ends only when
					// one finds the names still.
					_, perr = p.pass(true)
				} else if err == nil {
					err = perr
				}
				if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
					p.close()
					p = nil // the timer alone from now on
				}
			} else {
				select {
				case <-stopc:
					return
				case <-t.C:
				}
			}
			c.tryExtend()
		}
	}()
	return func() {
		close(stopc)
		if p != nil {
			// Ends a Read blocked on it at once.
			p.events.SetReadDeadline(time.Now()) //nolint:errcheck // see above
		}
	}
}

// adoptLocked takes from the watcher's pins the files that follow last,
// in order, as far as they go without a gap. c.mu is held.
func (c *chain) adoptLocked() {
	p := c.pins
	if p == nil || c.closed || c.broken {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	n, ok := p.numberOf(c.last)
	if !ok {
		return
	}
	p.dropUpTo(n)
	for len(c.held) < maxHeld {
		next := p.take(n)
		if next == nil {
			break
		}
		n++
		c.held = append(c.held, next)
		c.last = next
	}
	p.linked, p.linkedAt = c.last, n
}

// pinner opens each file that replaces a live log file as soon as the
// watcher's goroutine runs after the daemon created it, before anything
// else: at Docker 20.10's fastest rotations a file exists for max-file
// rotations of ~20 ms each, and on a loaded host that goroutine can wait
// longer than that for a CPU, so the work between its wake-up and the
// open must be as short as can be. The files are numbered in the order the
// daemon created them, from the inotify events, which come in the order
// of the renames and creations: the live name holds the file of the last
// creation seen, .j the one j creations before, as long as no event came
// after them. Ordering against the chain (by identity) is the chain's,
// when it looks (chain.adoptLocked), from whichever goroutine holds its
// lock.
type pinner struct {
	live   string
	base   string        // live's name in its directory
	count  *atomic.Int64 // the chain's, one more for each file pinned
	fd     int
	events *os.File // fd, non-blocking, for the runtime's poller

	// passMu is held by a pass, from the watcher's goroutine or the
	// stream's reader; it guards the fields below up to mu, and fd's
	// reads, which a pass takes in order.
	passMu sync.Mutex
	shut   bool   // fd is closed
	buf    []byte // events read while pinning
	// created numbers the file at the live name: one more at each
	// creation (or rename onto it) the events tell.
	created int
	// stable: the last event seen was the creation of the live file, so
	// .j holds the file created j creations before it (false while a
	// rotation renames, and before any event).
	stable bool
	// fresh are the files opened and not numbered for certain yet.
	fresh []pin

	// mu is held briefly by the watcher's goroutine and by the chain's
	// adoptLocked (under the chain's lock; never the other way round).
	mu sync.Mutex
	// pinned are the files opened and not handed to the chain yet, by
	// number.
	pinned map[int]*logFile
	// linked is the chain's newest file when adoptLocked last handed
	// files to it, and linkedAt its number; the numbers up to it are not
	// needed.
	linked   *logFile
	linkedAt int
	// stableAt is created at the last pass that ended between rotations:
	// a file numbered up to it that is not pinned was not found.
	stableAt int
	dead     bool // closed: nothing more is pinned
}

// pin is a file opened by a pass, with the number of the name it was
// last found at; seen: found by the pass's last round of opens.
type pin struct {
	n    int
	f    *logFile
	seen bool
}

// noneLinked is linkedAt before the chain took a pin: no number is
// older.
const noneLinked = math.MinInt

// maxPinDepth bounds the rotated names a pass opens: .1 to .3 hold the
// files of the three creations before the live one, which is how far
// behind the watcher's goroutine can be before max-file=3 deletes one;
// the chain's own look covers a goroutine later than that.
const maxPinDepth = 4

func newPinner(live string, count *atomic.Int64) (*pinner, error) {
	fd, err := syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC)
	if err != nil {
		return nil, err
	}
	// IN_MOVED_FROM as well: a rename away from a name opened in a pass
	// means the pass opened it too late to know its number.
	if _, err := syscall.InotifyAddWatch(fd, filepath.Dir(live), syscall.IN_CREATE|syscall.IN_MOVED_FROM|syscall.IN_MOVED_TO); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	return &pinner{live: live, base: filepath.Base(live), fd: fd,
		// Non-blocking: the runtime's poller waits on it, so the
		// goroutine holds no thread, and a deadline bounds each wait.
		events: os.NewFile(uintptr(fd), "inotify"), count: count,
		buf: make([]byte, 4096), pinned: map[int]*logFile{}, linkedAt: noneLinked, stableAt: noneLinked}, nil
}

// pass reads the events there are and opens the files not pinned yet,
// then reads the events that came meanwhile: if one moved a name, it
// opens again (keeping what it opened), until a round of opens has no
// event after it: the numbers it gave are then certain. got: there were
// events (or force, to look without one). The watcher's goroutine runs it
// when the events are readable and the stream's reader at each of its
// reads: whichever gets a CPU first opens the files.
func (p *pinner) pass(force bool) (got bool, err error) {
	p.passMu.Lock()
	defer p.passMu.Unlock()
	return p.passLocked(force)
}

// tryPass is pass unless one is under way.
func (p *pinner) tryPass() {
	if p.passMu.TryLock() {
		defer p.passMu.Unlock()
		p.passLocked(false) //nolint:errcheck // the watcher's goroutine meets it
	}
}

func (p *pinner) passLocked(force bool) (bool, error) {
	if p.shut {
		return true, os.ErrClosed
	}
	n, err := syscall.Read(p.fd, p.buf)
	switch {
	case err == syscall.EAGAIN && !force:
		return false, nil
	case err != nil && err != syscall.EAGAIN:
		return true, err
	case n > 0:
		p.note(p.buf[:n])
	}
	for range snapshotAttempts {
		p.open()
		n, err := syscall.Read(p.fd, p.buf)
		if err != nil || n <= 0 || !p.note(p.buf[:n]) {
			p.commit()
			return true, nil
		}
	}
	// The names kept moving: what was opened waits for the next pass.
	return true, nil
}

// note counts the creations in the inotify events b and reports whether
// one moved a name a pass opens.
func (p *pinner) note(b []byte) (moved bool) {
	for len(b) >= syscall.SizeofInotifyEvent {
		ev := (*syscall.InotifyEvent)(unsafe.Pointer(&b[0]))
		end := syscall.SizeofInotifyEvent + int(ev.Len)
		if end > len(b) {
			return moved
		}
		name := b[syscall.SizeofInotifyEvent:end]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		b = b[end:]
		if ev.Mask&syscall.IN_Q_OVERFLOW != 0 {
			// Events lost: the numbers so far cannot be trusted.
			p.mu.Lock()
			p.forget()
			p.stableAt = noneLinked
			p.mu.Unlock()
			p.stable, moved = false, true
			continue
		}
		rest, ok := bytes.CutPrefix(name, []byte(p.base))
		switch {
		case !ok:
		case len(rest) == 0:
			created := ev.Mask&(syscall.IN_CREATE|syscall.IN_MOVED_TO) != 0
			if created {
				p.created++
			}
			p.stable, moved = created, true
		case !bytes.HasSuffix(rest, []byte(".gz")) || ev.Mask&(syscall.IN_MOVED_FROM|syscall.IN_MOVED_TO) != 0:
			// .N or .N.gz renamed: a rotation under way. (A .N.gz
			// created is a compression starting, which moves nothing.)
			p.stable, moved = false, true
		}
	}
	return moved
}

// open opens the file at the live name and, between rotations, those at
// .1 to .maxPinDepth-1, whose numbers are neither pinned nor older than
// the chain's newest. It keeps the files opened before (a file opened
// once is not opened again: it may be gone from its names now) and
// numbers them again if it finds them.
func (p *pinner) open() {
	for i := range p.fresh {
		p.fresh[i].seen = false
	}
	depth := 1
	if p.stable {
		depth = maxPinDepth
	}
	for j := range depth {
		n := p.created - j
		p.mu.Lock()
		done, have := n <= p.linkedAt, p.pinned[n] != nil
		p.mu.Unlock()
		if done {
			return
		}
		if have {
			continue
		}
		name := p.live
		if j > 0 {
			name += "." + strconv.Itoa(j)
		}
		f, err := os.Open(name)
		gz := false
		if err != nil && j > 0 {
			// Compressed: .N.gz is complete once .N is removed.
			name += ".gz"
			f, err = os.Open(name)
			gz = true
		}
		if err != nil {
			continue // gone, or between a rename and a creation
		}
		info, err := f.Stat()
		if err != nil {
			f.Close()
			continue
		}
		lf := &logFile{f: f, r: f, name: name, info: info, live: true, gz: gz}
		if gz {
			if lf.r, err = gzip.NewReader(f); err != nil {
				f.Close()
				continue
			}
		}
		p.number(n, lf)
	}
}

// number gives f, found at the name of number n, that number; a file the
// pass opened before is kept instead.
func (p *pinner) number(n int, f *logFile) {
	for i := range p.fresh {
		if os.SameFile(p.fresh[i].f.info, f.info) {
			f.close()
			p.fresh[i].n, p.fresh[i].seen = n, true
			return
		}
	}
	p.fresh = append(p.fresh, pin{n: n, f: f, seen: true})
}

// commit pins the files the last round of opens found, which no event
// came after; the others wait for a pass that finds them again.
func (p *pinner) commit() {
	p.mu.Lock()
	defer p.mu.Unlock()
	keep := p.fresh[:0]
	for _, f := range p.fresh {
		switch {
		case !f.seen && len(p.fresh) > 2*maxPinDepth:
			f.f.close() // gone from its names long ago
		case !f.seen:
			keep = append(keep, f)
		case f.n <= p.linkedAt || p.pinned[f.n] != nil || p.holds(f.f):
			f.f.close()
		default:
			p.pinned[f.n] = f.f
			p.count.Add(1)
		}
	}
	clear(p.fresh[len(keep):])
	p.fresh = keep
	if p.stable {
		p.stableAt = p.created
	}
	// A chain that does not take them (its reader far behind, or its
	// newest file not among them) holds at most maxHeld.
	for len(p.pinned) > maxHeld {
		oldest := p.created
		for n := range p.pinned {
			oldest = min(oldest, n)
		}
		p.pinned[oldest].close()
		delete(p.pinned, oldest)
	}
}

// holds (p.mu held) reports whether f is pinned already, whatever its
// number.
func (p *pinner) holds(f *logFile) bool {
	for _, h := range p.pinned {
		if os.SameFile(h.info, f.info) {
			return true
		}
	}
	return false
}

// numberOf (p.mu held) finds the chain's newest file last among the pins: the last
// one handed over, or one the chain opened itself while it is open (a
// closed file's inode can be a new file's).
func (p *pinner) numberOf(last *logFile) (int, bool) {
	if last == p.linked {
		return p.linkedAt, true
	}
	if last.f == nil {
		return 0, false
	}
	for n, f := range p.pinned {
		if os.SameFile(f.info, last.info) {
			return n, true
		}
	}
	return 0, false
}

// take (p.mu held) hands over the pin after number n, if there is one.
func (p *pinner) take(n int) *logFile {
	f := p.pinned[n+1]
	delete(p.pinned, n+1)
	return f
}

// dropUpTo (p.mu held) closes the pins numbered up to n: the chain has them.
func (p *pinner) dropUpTo(n int) {
	for k, f := range p.pinned {
		if k <= n {
			f.close()
			delete(p.pinned, k)
		}
	}
}

// forget closes every pin: their numbers are not certain. p.mu is held.
func (p *pinner) forget() {
	for k, f := range p.pinned {
		f.close()
		delete(p.pinned, k)
	}
	for _, f := range p.fresh {
		f.f.close()
	}
	p.fresh = p.fresh[:0]
	p.linked, p.linkedAt = nil, noneLinked
}

func (p *pinner) close() {
	p.passMu.Lock()
	defer p.passMu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dead {
		return
	}
	p.dead, p.shut = true, true
	p.forget()
	p.events.Close()
}

// pinNow runs a pass of the watcher's pins if none is under way: the
// stream's reader, which runs often while a container logs fast, calls it
// at each read (through extend), so the files are opened even while the
// watcher's goroutine waits for a CPU.
func (c *chain) pinNow() {
	if c.pins != nil {
		c.pins.tryPass()
	}
}

// mayPin (c.mu held) reports whether the watcher may still pin the file
// after last, which the chain's look did not find while a newer file is
// live: its pass since that file's creation has not run yet. The chain
// then waits for it rather than giving up the sequence.
func (c *chain) mayPin() bool {
	p := c.pins
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	n, ok := p.numberOf(c.last)
	return ok && !p.dead && p.stableAt <= n
}
