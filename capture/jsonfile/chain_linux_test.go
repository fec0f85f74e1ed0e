package jsonfile

import (
	"testing"
	"time"
)

// The watcher opens each new file as soon as the daemon creates it, also
// while the chain is busy: a look at the directory holds the chain's lock
// and can take hundreds of milliseconds on a loaded host, longer than a
// file lives at Docker 20.10's fastest rotations (max-file rotations of
// ~20 ms). A file opened before the daemon deletes it is read whole.
func TestEachNewFileIsOpenedWhileTheChainIsBusy(t *testing.T) {
	for _, compress := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "compressed"}[compress], func(t *testing.T) {
			d := newFakeDriver(t, t.TempDir(), 2000, 3, compress)
			st := openFollowed(t, d, testInfo())
			defer st.Close()
			c := st.chain
			c.mu.Lock() // busy until every file but the last three is deleted
			start := c.pinned.Load()
			var w []written
			for r := 1; r <= 6; r++ {
				for d.rotations < r {
					w = append(w, writeLines(d, len(w), 1)...)
				}
				deadline := time.Now().Add(10 * time.Second)
				for c.pinned.Load() < start+int64(r) {
					if time.Now().After(deadline) {
						c.mu.Unlock()
						t.Fatalf("%d files opened after rotation %d", c.pinned.Load()-start, r)
					}
					time.Sleep(time.Millisecond) // the count has no event to await
				}
			}
			c.mu.Unlock()
			var b []byte
			buf := make([]byte, 64<<10)
			for len(decodeFrames(t, b)) < len(w) {
				n, err := st.Read(buf)
				if err != nil {
					t.Fatalf("read after %d of %d entries: %v", len(decodeFrames(t, b)), len(w), err)
				}
				b = append(b, buf[:n]...)
			}
			checkSame(t, decodeFrames(t, b), w)
		})
	}
}
