package jsonfile

import (
	"os"
	"testing"
)

// A rotation renames .1 to .2 before it renames the live file to .1: in
// between, no .1 exists. A chain whose newest file was at .1 and looks in
// that moment must not take the file for gone (which ends the stream and
// loses what it held): it looks again once the names are still.
func TestTheChainIsNotBrokenByALookBetweenTheRenamesOfARotation(t *testing.T) {
	for _, compress := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "compressed"}[compress], func(t *testing.T) {
			d := newFakeDriver(t, t.TempDir(), 0, 3, compress)
			writeLines(d, 0, 10)
			f, err := os.Open(d.live)
			if err != nil {
				t.Fatal(err)
			}
			info, err := f.Stat()
			if err != nil {
				t.Fatal(err)
			}
			last := &logFile{f: f, r: f, name: d.live, info: info, live: true}
			c := &chain{live: d.live, last: last, log: quietLog()}
			defer func() {
				c.closed = true
				for _, h := range c.held {
					h.close()
				}
				last.close()
			}()
			// The first rotation, by hand up to the gap of the second: last
			// goes to .1 (compressed or not), the next file B is created,
			// then the second rotation moves last on to .2 and stops
			// before B is renamed to .1.
			d.maxSize = 1
			writeLines(d, 10, 1) // rotates: last is .1, B is live
			d.maxSize = 0
			d.compressing.Lock() // the compression of last is done
			d.compressing.Unlock()
			writeLines(d, 11, 5)
			ext := map[bool]string{false: "", true: ".gz"}[compress]
			if err := os.Rename(d.live+".1"+ext, d.live+".2"+ext); err != nil {
				t.Fatal(err)
			}
			c.extend()
			if c.broken {
				t.Fatal("the chain took its newest file for gone while a rotation moved it")
			}
			// The rotation completes: B is .1, C the live file.
			d.mu.Lock()
			if err := os.Rename(d.live, d.live+".1"); err != nil {
				t.Fatal(err)
			}
			d.f.Close()
			if d.f, err = os.OpenFile(d.live, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o640); err != nil {
				t.Fatal(err)
			}
			d.mu.Unlock()
			c.extend()
			if c.broken || len(c.held) != 2 || c.held[0].name != d.live+".1" || c.held[1].name != d.live {
				names := []string{}
				for _, h := range c.held {
					names = append(names, h.name)
				}
				t.Fatalf("broken %v, held %v; want %s.1 then the live file", c.broken, names, d.live)
			}
		})
	}
}
