//go:build !linux

package jsonfile

import "time"

// pinner is Linux's (inotify): nothing is pinned elsewhere.
type pinner struct{}

func (c *chain) adoptLocked() {}

func (c *chain) pinNow() {}

func (c *chain) mayPin() bool { return false }

// watchDir lets the chain look every chainTick from a goroutine of its
// own that closes c.done when it returns; the returned func stops it.
func watchDir(c *chain) (stop func()) {
	stopc := make(chan struct{}) // closed by stop
	go func() {
		defer close(c.done)
		t := time.NewTicker(chainTick)
		defer t.Stop()
		c.extend()
		for {
			select {
			case <-stopc:
				return
			case <-t.C:
				c.extend()
			}
		}
	}()
	return func() { close(stopc) }
}
