package capture

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// podmanDaemon is a fake daemon that stamps the entries it sends to the
// whole second, as Podman 4.3's API does.
func podmanDaemon() *fakeDaemon {
	d := newFakeDaemon()
	d.wholeSeconds = true
	return d
}

// sameSecondWriter writes about twenty lines a second, so that sent with
// whole-second stamps, runs of lines share one.
func sameSecondWriter(d *fakeDaemon, id string, seed uint64) *lineWriter {
	w := newLineWriter(d, id, seed)
	w.step = Timestamp(50 * time.Millisecond)
	return w
}

// Lines that share a whole-second stamp are told apart by how many of them
// a position counts: none is taken for one already read, none is repeated,
// whether the stream is cut, refreshed, the container restarts or the
// capture restarts with its positions file.
func TestLinesSharingAWholeSecondStampArriveOnce(t *testing.T) {
	cases := []struct {
		name string
		run  func(t *testing.T, d *fakeDaemon, w *lineWriter, opts Options)
	}{
		{"stream cut at random", func(t *testing.T, d *fakeDaemon, w *lineWriter, opts Options) {
			rnd := rand.New(rand.NewPCG(1, 2))
			var mu sync.Mutex
			d.cutAfter = func() int { mu.Lock(); defer mu.Unlock(); return 1 + rnd.IntN(40) }
			h := newHarness(t, d, opts)
			for range 20 {
				w.lines(50)
				h.waitFor("the lines so far", 10*time.Second, countFor(testID, w.total()))
			}
			checkExactlyOnce(t, h.records(), testID, w.want)
		}},
		{"stream refreshed between lines of one second", func(t *testing.T, d *fakeDaemon, w *lineWriter, opts Options) {
			opts.StreamRefresh = 20 * time.Millisecond
			h := newHarness(t, d, opts)
			for range 20 {
				w.lines(7)
				h.waitFor("the lines so far", 10*time.Second, countFor(testID, w.total()))
			}
			for len(d.logRequests()) < 3 {
				time.Sleep(10 * time.Millisecond) // polling the fake's record, not synchronising
			}
			w.lines(7)
			h.waitFor("every line", 10*time.Second, countFor(testID, w.total()))
			checkExactlyOnce(t, h.records(), testID, w.want)
		}},
		{"container restarted within a second", func(t *testing.T, d *fakeDaemon, w *lineWriter, opts Options) {
			h := newHarness(t, d, opts)
			for range 6 {
				w.lines(30)
				h.waitFor("this run's lines", 10*time.Second, countFor(testID, w.total()))
				d.setRunning(testID, false)
				w.lines(3) // written as it stopped
				d.setRunning(testID, true)
			}
			w.lines(30)
			h.waitFor("every line", 10*time.Second, countFor(testID, w.total()))
			checkExactlyOnce(t, h.records(), testID, w.want)
		}},
		{"capture restarted with its positions file", func(t *testing.T, d *fakeDaemon, w *lineWriter, opts Options) {
			path := filepath.Join(t.TempDir(), "positions.db")
			var all []recordsT
			for range 5 {
				w.lines(33)
				var err error
				if opts.Positions, err = OpenPositions(path, 0, quietLog()); err != nil {
					t.Fatal(err)
				}
				h := newHarness(t, d, opts)
				h.waitFor("the lines so far", 10*time.Second, countFor(testID, w.total()-len(all)))
				h.stop()
				all = append(all, h.records()...)
			}
			checkExactlyOnce(t, all, testID, w.want)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := podmanDaemon()
			d.add(runningContainer(testID))
			c.run(t, d, sameSecondWriter(d, testID, 30), testOptions())
		})
	}
}

// An unwanted stream is read and counted like a wanted one: its lines of a
// second do not hide the wanted stream's.
func TestUnwantedStreamSharingAWholeSecondStampHidesNothing(t *testing.T) {
	d := podmanDaemon()
	rnd := rand.New(rand.NewPCG(3, 4))
	var mu sync.Mutex
	// Cut after at least a second's entries: a cut before the stream has
	// passed the position delivers nothing, and the reader backs off.
	d.cutAfter = func() int { mu.Lock(); defer mu.Unlock(); return 40 + rnd.IntN(30) }
	d.add(runningContainer(testID))
	w := sameSecondWriter(d, testID, 31)
	opts := testOptions()
	opts.Stderr = false
	h := newHarness(t, d, opts)
	for range 10 {
		w.lines(60)
		h.waitFor("the lines so far", 10*time.Second, countFor(testID, len(w.want[Stdout])))
	}
	checkExactlyOnce(t, h.records(), testID, map[StreamKind][]string{Stdout: w.want[Stdout]})
}

// Podman cuts a line wherever its read of the container's output ended (at
// most 8 KiB, or mid-line under load) and sends the pieces without a
// newline: pieces that share the line's stamp are joined into one record,
// also when a stream is cut between them.
func TestPiecesOfAWholeSecondStampWithoutNewlineAreJoined(t *testing.T) {
	d := podmanDaemon()
	rnd := rand.New(rand.NewPCG(5, 6))
	var mu sync.Mutex
	d.cutAfter = func() int { mu.Lock(); defer mu.Unlock(); return 60 + rnd.IntN(20) }
	d.add(runningContainer(testID))
	second := Timestamp(time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC).UnixNano())
	want := map[StreamKind][]string{}
	long := strings.Repeat("0123456789", 4000)
	for i := range 40 {
		ts := second + Timestamp(i)*Timestamp(40*time.Millisecond)
		line := fmt.Sprintf("seq=%d stream=stdout", i)
		switch i % 4 {
		case 1: // cut mid-line by a read of the pipe
			d.write(testID, Stdout, ts, line[:7])
			d.write(testID, Stderr, ts+1, fmt.Sprintf("between %d\n", i))
			want[Stderr] = append(want[Stderr], fmt.Sprintf("between %d", i))
			d.write(testID, Stdout, ts+2, line[7:]+"\n")
		case 2: // longer than a read
			line = long
			for off := 0; off < len(long); off += 8192 {
				piece := long[off:min(off+8192, len(long))]
				if off+8192 >= len(long) {
					piece += "\n"
				}
				d.write(testID, Stdout, ts+Timestamp(off), piece)
			}
		default:
			d.write(testID, Stdout, ts, line+"\n")
		}
		want[Stdout] = append(want[Stdout], line)
	}
	h := newHarness(t, d, testOptions())
	h.waitFor("every line", 10*time.Second, countFor(testID, len(want[Stdout])+len(want[Stderr])))
	checkExactlyOnce(t, h.records(), testID, want)
}
