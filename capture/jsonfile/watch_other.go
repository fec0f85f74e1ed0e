//go:build !linux

package jsonfile

import "time"

// watchDir calls changed every chainTick from a goroutine of its own that
// closes done when it returns; the returned func stops it.
func watchDir(_ string, changed func(), done chan struct{}) (stop func()) {
	stopc := make(chan struct{}) // closed by stop
	go func() {
		defer close(done)
		t := time.NewTicker(chainTick)
		defer t.Stop()
		changed()
		for {
			select {
			case <-stopc:
				return
			case <-t.C:
				changed()
			}
		}
	}()
	return func() { close(stopc) }
}
