package jsonfile

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// watchDir calls changed whenever a file is created in live's directory,
// and every chainTick besides, from a goroutine of its own that closes done
// when it returns. The returned func stops it. Where inotify is not
// available, the timer alone drives it.
func watchDir(live string, changed func(), done chan struct{}) (stop func()) {
	stopc := make(chan struct{}) // closed by stop
	fd, err := syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC)
	var events *os.File
	if err == nil {
		if _, err = syscall.InotifyAddWatch(fd, filepath.Dir(live), syscall.IN_CREATE|syscall.IN_MOVED_TO); err != nil {
			syscall.Close(fd)
		} else {
			// Non-blocking: the runtime's poller waits on it, so the
			// goroutine holds no thread, and a deadline bounds each wait.
			events = os.NewFile(uintptr(fd), "inotify")
		}
	}
	// ev is the goroutine's: nil once inotify failed.
	ev := events
	go func() {
		defer close(done)
		if events != nil {
			defer events.Close()
		}
		buf := make([]byte, 4096)
		t := time.NewTicker(chainTick)
		defer t.Stop()
		// A file created before the watch was in place sent no event.
		changed()
		for {
			if ev != nil {
				ev.SetReadDeadline(time.Now().Add(chainTick)) //nolint:errcheck // a pollable file takes deadlines
				_, err := ev.Read(buf)
				select {
				case <-stopc:
					return
				default:
				}
				if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
					ev = nil // the timer alone from now on
				}
			} else {
				select {
				case <-stopc:
					return
				case <-t.C:
				}
			}
			changed()
		}
	}()
	return func() {
		close(stopc)
		if events != nil {
			// Ends a Read blocked on it at once.
			events.SetReadDeadline(time.Now()) //nolint:errcheck // see above
		}
	}
}
