package capture

import (
	"context"
	"errors"
	"testing"
	"time"
)

// The reader's transitions, as the README's "Exactly once" tells them: the
// state a step ran in, how it ended, and what the container is known to be.
func TestReaderTransitionsFollowTheReadme(t *testing.T) {
	type known struct {
		running, renamedOut, fromNow, positioned bool
	}
	running := known{running: true, positioned: true}
	stopped := known{positioned: true}
	cases := []struct {
		name  string
		from  readerState
		end   streamEnd
		k     known
		to    readerState
		retry bool
	}{
		{"a running container inspected is followed", stateInspect, endInspected, running, stateFollow, false},
		{"a stopped one is drained", stateInspect, endInspected, stopped, stateDrain, false},
		{"one read from now on is seeded first", stateInspect, endInspected, known{running: true, fromNow: true}, stateSeed, false},
		{"the seed's end starts the follow", stateSeed, endLogEnd, known{running: true, fromNow: true, positioned: true}, stateFollow, false},
		{"a seed cut at its age seeds again", stateSeed, endRefresh, known{running: true, fromNow: true}, stateSeed, false},
		{"a refreshed stream is reopened", stateFollow, endRefresh, running, stateFollow, false},
		{"a refresh after a rename out drains", stateFollow, endRefresh, known{running: true, renamedOut: true, positioned: true}, stateDrain, false},
		{"a line after a rename out drains the rest", stateFollow, endDeselected, known{running: true, renamedOut: true, positioned: true}, stateDrain, false},
		{"a window too short is widened", stateFollow, endIncomplete, running, stateFollow, false},
		{"a follow stream of a stopped container drains", stateFollow, endExited, stopped, stateDrain, false},
		{"the head's stream of a stopped container drains", stateOpenInspect, endExited, known{}, stateDrain, false},
		{"a follow stream the daemon cut is followed again", stateFollow, endRunning, running, stateFollow, true},
		{"a drained log is done", stateDrain, endLogEnd, stopped, stateDone, false},
		{"a followed container gone is done", stateFollow, endLogEnd, stopped, stateDone, false},
		{"a failure inspects again", stateFollow, endFailed, running, stateInspect, true},
		{"a failure before any line opens the head again", stateOpenInspect, endFailed, known{running: true}, stateOpenInspect, true},
		{"a failed inspect is retried", stateInspect, endInspectFailed, running, stateInspect, true},
		{"a failed inspect alongside the open is retried", stateOpenInspect, endInspectFailed, known{}, stateOpenInspect, true},
		{"an unreadable log is done", stateOpenInspect, endUnreadable, known{}, stateDone, false},
		{"a gone container is done", stateInspect, endGone, running, stateDone, false},
		{"an unselected container is done", stateInspect, endSkipped, running, stateDone, false},
		{"stopping is done", stateFollow, endStopped, running, stateDone, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cs := newContainerState(testID, tc.k.fromNow)
			if tc.k.positioned {
				cs.pos.advance(Stdout, 1e9)
			}
			if tc.k.renamedOut {
				cs.until.Store(2e9)
			}
			r := &reader{cs: cs, running: tc.k.running, tail: firstTail}
			got := r.next(tc.from, outcome{end: tc.end})
			if got.to != tc.to || got.retry != tc.retry {
				t.Errorf("next = %+v, want {to:%d retry:%v}", got, tc.to, tc.retry)
			}
			if tc.end == endIncomplete && r.tail != firstTail*tailGrowth {
				t.Errorf("tail window %d after an incomplete resume, want %d", r.tail, firstTail*tailGrowth)
			}
			if tc.end == endUnreadable && !cs.unreadable {
				t.Error("an unreadable container is not marked so for the supervisor")
			}
		})
	}
}

// inspectFailing fails one Inspect, the failAt-th, with an unclassified
// error.
type inspectFailing struct {
	*fakeDaemon
	inspects calls
	failAt   int
}

func (s *inspectFailing) Inspect(ctx context.Context, id string) (Container, error) {
	if s.inspects.next(s.failAt) {
		return Container{}, errors.New("inspect: connection reset")
	}
	return s.fakeDaemon.Inspect(ctx, id)
}

// A follow stream the daemon ends is followed by an inspect, the same as
// every other: its failure is counted once, and reading goes on after the
// last line.
func TestInspectFailingAfterAFollowStreamEndsIsCountedOnceAndRetried(t *testing.T) {
	d := newFakeDaemon()
	w := newRunningWriter(d, testID, 61)
	d.cutFirstStreamAfter(10)
	w.lines(10)
	// The first inspect runs alongside the first open; the second asks
	// why that stream ended.
	src := &inspectFailing{fakeDaemon: d, failAt: 2}
	h := newHarnessOf(t, src, d, testOptions())
	h.waitFor("the lines before the cut", 10*time.Second, countFor(testID, w.total()))
	awaitStats(t, h.c, "the failed inspect counted", func(s StatsSnapshot) bool { return s.Errors[ReasonInspect] == 1 })
	w.lines(10)
	h.deliveredOnce("the lines after the retry", 10*time.Second, w)
	if s := h.c.Stats(); s.Errors != ([NumErrorReasons]int64{ReasonInspect: 1}) {
		t.Errorf("errors %v, want one of inspect", s.Errors)
	}
}
