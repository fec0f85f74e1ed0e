package jsonfile

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"time"
	"unsafe"
)

// watch opens the live file of each container created from now on, as
// soon as the daemon creates it, until stop is called. It runs a goroutine
// that closes done when it returns; stop ends it. It returns errNoWatch
// (and done closed) when the directory cannot be watched.
func (p *preopener) watch(done chan struct{}) (stop func(), err error) {
	fd, err := syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC)
	if err != nil {
		close(done)
		return func() {}, errNoWatch
	}
	if _, err := syscall.InotifyAddWatch(fd, p.dir, syscall.IN_CREATE|syscall.IN_MOVED_TO|syscall.IN_ONLYDIR); err != nil {
		syscall.Close(fd)
		close(done)
		return func() {}, errors.Join(errNoWatch, err)
	}
	// Non-blocking: the runtime's poller waits on it, and a deadline
	// bounds each wait, so stop ends a Read at once.
	events := os.NewFile(uintptr(fd), "inotify")
	p.watchStarted()
	stopc := make(chan struct{}) // closed by stop
	go func() {
		defer close(done)
		defer events.Close()
		dirs := map[int32]string{} // watch descriptor -> container id
		held := map[int32]bool{}   // a file of the directory's container was held
		buf := make([]byte, 64<<10)
		lastExpire := time.Now()
		for {
			events.SetReadDeadline(time.Now().Add(preopenTTL / 4)) //nolint:errcheck // a pollable file takes deadlines
			n, err := events.Read(buf)
			select {
			case <-stopc:
				return
			default:
			}
			if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				p.log.WithError(err).Debug("containers directory watch ended")
				return
			}
			now := time.Now()
			p.handle(fd, buf[:n], dirs, held, now)
			if now.Sub(lastExpire) >= preopenTTL/4 {
				p.expire(now)
				lastExpire = now
			}
		}
	}()
	return func() {
		close(stopc)
		events.SetReadDeadline(time.Now()) //nolint:errcheck // see above
	}, nil
}

// handle takes the inotify events in b: a new container directory gets a
// watch of its own, and each live log file created in it is opened until
// its reader takes them; from then on its rotations are the stream's to
// follow, and the watch goes.
func (p *preopener) handle(fd int, b []byte, dirs map[int32]string, held map[int32]bool, now time.Time) {
	for len(b) >= syscall.SizeofInotifyEvent {
		ev := (*syscall.InotifyEvent)(unsafe.Pointer(&b[0]))
		end := syscall.SizeofInotifyEvent + int(ev.Len)
		if end > len(b) {
			return
		}
		name := string(bytes.TrimRight(b[syscall.SizeofInotifyEvent:end], "\x00"))
		b = b[end:]
		switch id, inDir := dirs[ev.Wd]; {
		case ev.Mask&syscall.IN_IGNORED != 0:
			delete(dirs, ev.Wd) // the directory was removed
			delete(held, ev.Wd)
		case inDir:
			if name != id+"-json.log" {
				continue
			}
			if held[ev.Wd] && !p.holds(id) {
				// Taken by its reader (or expired): no longer ours.
				syscall.InotifyRmWatch(fd, uint32(ev.Wd)) //nolint:errcheck // gone with the directory otherwise
				delete(dirs, ev.Wd)
				delete(held, ev.Wd)
				continue
			}
			if p.open(id, now) {
				held[ev.Wd] = true
			}
		case ev.Mask&syscall.IN_ISDIR != 0 && validID(name):
			wd, err := syscall.InotifyAddWatch(fd, filepath.Join(p.dir, name), syscall.IN_CREATE|syscall.IN_MOVED_TO|syscall.IN_ONLYDIR)
			if err != nil {
				continue // removed already, or out of watches
			}
			dirs[int32(wd)] = name
			// Created before the watch was in place: no event for it.
			if p.open(name, now) {
				held[int32(wd)] = true
			}
		}
	}
}
