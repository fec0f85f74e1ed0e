package faults

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dockerlogs/fluent-bit-docker-logs/capture"
	"github.com/dockerlogs/fluent-bit-docker-logs/internal/capturetest"
	"github.com/dockerlogs/fluent-bit-docker-logs/internal/dockertest"
	"github.com/dockerlogs/fluent-bit-docker-logs/internal/faultproxy"
	"github.com/dockerlogs/fluent-bit-docker-logs/internal/linecheck"
	"github.com/dockerlogs/fluent-bit-docker-logs/internal/records"
)

// The stall test compares goroutine counts of the whole process, so it runs
// alone, before the parallel tests.
func TestStalledStreamsResumeWithEveryLineOnceAndNoGoroutineGrowth(t *testing.T) {
	dockertest.Require(t)
	dockertest.LoggenImage(t)
	p := faultproxy.Start(t, mainDaemon)
	opts := capturetest.Options()
	opts.StreamRefresh = 2 * time.Second
	h := startCapture(t, p.Host(), opts)
	const lines = 1000 // 20 s at one line every 20 ms
	id := runLoggen(t, "-lines", strconv.Itoa(lines), "-interval", "20ms", "-stream", "both")
	h.waitFor("the first lines", id, capturetest.AtLeast(25))
	flowing := h.settledGoroutines()
	counts := []int{flowing}
	for i := range 2 {
		reqs := p.Stats().LogsRequests
		p.Stall()
		// What was in flight when the stall began lands in the first
		// second; after it nothing may arrive.
		time.Sleep(time.Second)
		held := len(h.Of(id))
		time.Sleep(4 * time.Second)
		if n := len(h.Of(id)); n != held {
			t.Errorf("stall %d: %d records arrived while stalled", i, n-held)
		}
		t.Logf("stall %d: %d logs requests while stalled", i, p.Stats().LogsRequests-reqs)
		p.Heal()
		h.waitFor("lines after the stall", id, capturetest.AtLeast(held+25))
		counts = append(counts, h.settledGoroutines())
	}
	t.Logf("goroutines while flowing, after stall 1, after stall 2: %v", counts)
	if counts[2] > counts[0]+2 || counts[2] > counts[1]+2 {
		t.Errorf("goroutines grew across stalls: %v\n%s", counts, capturetest.Stacks())
	}
	dockertest.WaitExited(t, id, collectTimeout)
	want := loggenLines(lines, "both", 0)
	h.waitFor("every line", id, capturetest.AllOf(want))
	h.Stop()
	capturetest.CheckExactlyOnce(t, h.Of(id), want)
}

func TestStreamsCutMidFrameResumeWithEveryLineOnce(t *testing.T) {
	t.Parallel()
	dockertest.LoggenImage(t)
	p := faultproxy.Start(t, mainDaemon)
	h := startCapture(t, p.Host(), capturetest.Options())
	const lines = 3000 // 15 s at one line every 5 ms
	id := runLoggen(t, "-lines", strconv.Itoa(lines), "-interval", "5ms", "-stream", "both")
	h.waitFor("the first lines", id, capturetest.AtLeast(20))
	const cuts = 6
	for i := range cuts {
		select {
		case <-p.CutMidFrame():
		case <-time.After(collectTimeout):
			t.Fatalf("cut %d was never made", i)
		}
		// The reader resumes: lines beyond those already seen arrive.
		h.waitFor("lines after the cut", id, capturetest.AtLeast(len(h.Of(id))+20))
	}
	if s := p.Stats(); s.HeaderCuts+s.PayloadCuts != cuts || s.HeaderCuts == 0 || s.PayloadCuts == 0 {
		t.Errorf("proxy stats %+v, want %d cuts of both kinds", s, cuts)
	}
	dockertest.WaitExited(t, id, collectTimeout)
	want := loggenLines(lines, "both", 0)
	h.waitFor("every line", id, capturetest.AllOf(want))
	h.Stop()
	capturetest.CheckExactlyOnce(t, h.Of(id), want)
}

func TestSlowStreamsBehindAreKeptAndDeliverEveryLineOnce(t *testing.T) {
	t.Parallel()
	dockertest.LoggenImage(t)
	p := faultproxy.Start(t, mainDaemon)
	const rate = 64 << 10
	p.SlowDown(rate)
	opts := capturetest.Options()
	opts.StreamRefresh = 2 * time.Second
	const lines, size = 20000, 100
	// The whole log is written before capture starts, so the stream reads
	// lines stamped long before from its first check on, whatever the
	// machine's load does to loggen's pace.
	id := runLoggen(t, "-lines", strconv.Itoa(lines), "-size", strconv.Itoa(size), "-stream", "both")
	dockertest.WaitExited(t, id, collectTimeout)
	want := loggenLines(lines, "both", size)
	start := time.Now()
	h := startCapture(t, p.Host(), opts)
	// At this rate a refresh period passes about 900 lines: 30 s without
	// one is a reader that no longer progresses.
	h.WaitProgressing("every line", id, capturetest.AllOf(want), 30*time.Second, 5*time.Minute)
	took := time.Since(start)
	// Each line is a frame of 8 + 31 (stamp) + size bytes.
	minimum := time.Duration(lines*(8+31+size)) * time.Second / rate
	reqs := h.src.Requests(id)
	t.Logf("%d lines in %s through %d B/s (at least %s); logs requests %+v", lines, took.Round(time.Millisecond), rate, minimum, reqs)
	if took < minimum*8/10 {
		t.Errorf("took %s, less than the %s the rate allows: the proxy did not slow the stream", took, minimum)
	}
	// The stream delivers lines written long before, and progresses: a
	// refresh would only make the daemon send part of it again. The
	// container has exited, so the one stream reads to the end of the log.
	if len(reqs) != 1 {
		t.Errorf("%d logs requests in %s with StreamRefresh %s, want 1: a stream delivering history was cut", len(reqs), took, opts.StreamRefresh)
	}
	p.Heal()
	h.Stop()
	capturetest.CheckExactlyOnce(t, h.Of(id), want)
}

func TestInterleavedStreamsAtHighRateWithFrequentRefreshesDeliverEveryLineOnce(t *testing.T) {
	t.Parallel()
	dockertest.LoggenImage(t)
	opts := capturetest.Options()
	opts.StreamRefresh = 300 * time.Millisecond
	h := startCapture(t, mainDaemon, opts)
	// Fast, but at a pace the reader keeps up with: a live stream is
	// refreshed at its age (one still delivering older lines is kept).
	const lines = 15000
	id := runLoggen(t, "-lines", strconv.Itoa(lines), "-interval", "100us", "-stream", "both")
	want := loggenLines(lines, "both", 0)
	h.WaitProgressing("every line", id, capturetest.AllOf(want), time.Minute, collectTimeout)
	dockertest.WaitExited(t, id, collectTimeout)
	h.Stop()
	reqs := h.src.Requests(id)
	t.Logf("%d logs requests", len(reqs))
	if len(reqs) < 3 {
		t.Errorf("%d logs requests: the refresh of %s was not forced while reading", len(reqs), opts.StreamRefresh)
	}
	recs := h.Of(id)
	capturetest.CheckExactlyOnce(t, recs, want)
	// The case this protects: stamps out of order across the streams.
	inversions := 0
	for i := 1; i < len(recs); i++ {
		if recs[i].Stream != recs[i-1].Stream && recs[i].Time.Before(recs[i-1].Time) {
			inversions++
		}
	}
	t.Logf("%d stamp inversions between consecutive records of different streams", inversions)
}

// maxPausedHeap bounds the Go heap of the whole test process at the end of
// the pause.
const maxPausedHeap = 512 << 20

func TestPausedCaptureStaysBoundedAndDeliversEveryLineAfterResume(t *testing.T) {
	t.Parallel()
	dockertest.LoggenImage(t)
	opts := capturetest.Options()
	opts.QueueMaxSize = 4 << 20
	h := startCapture(t, mainDaemon, opts)
	h.C.Pause()
	memBefore := memory(t)
	const containers, perContainer = 4, 25000 // 100,000 lines over about 100 s
	var ids []string
	for range containers {
		ids = append(ids, runLoggen(t, "-lines", strconv.Itoa(perContainer), "-interval", "4ms", "-stream", "both"))
	}
	pause := time.NewTimer(2 * time.Minute)
	defer pause.Stop()
	sample := time.NewTicker(50 * time.Millisecond)
	defer sample.Stop()
	maxQueued := 0
	bound := opts.QueueMaxSize + 1<<20
sampling:
	for {
		select {
		case <-sample.C:
			q := h.C.Queued()
			if q > bound && maxQueued <= bound {
				t.Errorf("queue holds %d bytes while paused, bound %d + 1 MiB", q, opts.QueueMaxSize)
			}
			maxQueued = max(maxQueued, q)
		case <-pause.C:
			break sampling
		}
	}
	memPaused, heapPaused := memory(t), heapAlloc()
	// The queue holds 4 MiB; the other tests running meanwhile hold far
	// less than the rest of this bound in their records.
	if heapPaused > maxPausedHeap {
		t.Errorf("Go heap %d MiB after 2 min paused with a %d MiB queue (bound %d MiB for the whole process): queued chunks hold far more memory than the bytes the queue counts",
			heapPaused>>20, opts.QueueMaxSize>>20, maxPausedHeap>>20)
	}
	if n := len(h.Of(ids[0])); n != 0 {
		t.Errorf("%d records delivered while paused", n)
	}
	if maxQueued < opts.QueueMaxSize {
		t.Errorf("the queue never reached its bound (%d of %d bytes): the test did not exercise backpressure", maxQueued, opts.QueueMaxSize)
	}
	for _, id := range ids {
		dockertest.WaitExited(t, id, collectTimeout)
	}
	h.C.Resume()
	want := loggenLines(perContainer, "both", 0)
	for _, id := range ids {
		h.waitFor("every line", id, capturetest.AllOf(want))
	}
	h.Stop()
	t.Logf("queue at most %d bytes (bound %d); before the pause: %s; after 2 min paused: %s; after resume and drain: %s",
		maxQueued, opts.QueueMaxSize, memBefore, memPaused, memory(t))
	for _, id := range ids {
		capturetest.CheckExactlyOnce(t, h.Of(id), want)
	}
}

// runsOf splits one stream's records into the runs of a container that
// restarted: loggen -stream both writes odd seqs to stdout and even ones to
// stderr, and starts again from seq=1 in every run. It returns the lines
// per run and fails t unless every run is whole from its start, without
// gap or repeat.
func runsOf(t *testing.T, what, stream string, recs []received) []int {
	t.Helper()
	first := map[string]int{"stdout": 1, "stderr": 2}[stream]
	var runs []int
	last := 0
	for i, r := range recs {
		seq, st, ok := capturetest.ParseSeq(r.Log)
		switch {
		case !ok || st != stream:
			t.Errorf("%s: record %d %q is no loggen line of %s", what, i, linecheck.Short(r.Log), stream)
			return runs
		case seq == first:
			runs = append(runs, 1)
		case len(runs) > 0 && seq == last+2:
			runs[len(runs)-1]++
		default:
			t.Errorf("%s: record %d is seq=%d after seq=%d (runs so far %v): a gap or a repeat", what, i, seq, last, runs)
			return runs
		}
		last = seq
	}
	return runs
}

func TestDaemonRestartDeliversEveryLineOfEveryRunOnce(t *testing.T) {
	t.Parallel()
	image := dockertest.LoggenImage(t)
	d := startDaemon(t)
	d.load(t, image)
	lbl := []string{"--label", dockertest.LabelRun + "=" + dockertest.RunID(), "--label", labelTest + "=" + capturetest.TagOf(t)}
	runArgs := func(extra ...string) []string {
		args := append([]string{"run", "-d", "--network", "none"}, lbl...)
		args = append(args, extra...)
		return append(args, image, "-lines", "100000", "-interval", "10ms", "-stream", "both")
	}
	always := strings.TrimSpace(dockerCLI(t, d.host, runArgs("--restart", "always")...))
	dies := strings.TrimSpace(dockerCLI(t, d.host, runArgs()...))
	opts := capturetest.Options()
	opts.ContainerStats = true // to await the end of a container's reader
	h := startCapture(t, d.host, opts)
	h.waitFor("lines before the restart", always, capturetest.AtLeast(100))
	h.waitFor("lines before the restart", dies, capturetest.AtLeast(100))
	diesName := h.Of(dies)[0].ContainerName

	d.restart(t)

	// The container without a restart policy was stopped with the daemon:
	// its reader reads it to the end and returns.
	h.WaitStats("the stopped container's reader to end", func(s capture.StatsSnapshot) bool {
		i := slices.IndexFunc(s.Containers, func(c capture.ContainerStats) bool { return c.Name == diesName })
		return i >= 0 && s.Containers[i].Readers == 0
	}, collectTimeout)
	if n := h.src.OpenNow(dies); n != 0 {
		t.Errorf("%d logs streams of the stopped container still open after its reader ended", n)
	}
	// The other came back by itself and wrote from seq=1 again.
	h.waitFor("the second run's first line", always, func(recs []received) bool {
		n := 0
		for _, r := range recs {
			if r.Log == capturetest.Numbered(1, "stdout", 0) {
				n++
			}
		}
		return n >= 2
	})
	h.waitFor("lines of the second run", always, capturetest.AtLeast(len(h.Of(always))+100))
	dockerCLI(t, d.host, "stop", always)
	wantAlways, wantDies := logsOf(t, d.host, always), logsOf(t, d.host, dies)
	h.waitFor("every line of docker logs", always, capturetest.AllOf(wantAlways))
	h.waitFor("every line of docker logs", dies, capturetest.AllOf(wantDies))
	h.Stop()

	for name, id := range map[string]string{"restarted": always, "stopped": dies} {
		recs := h.Of(id)
		want := logsOf(t, d.host, id)
		capturetest.CheckExactlyOnce(t, recs, want)
		for s, rs := range capturetest.ByStream(recs) {
			runs := runsOf(t, name+" "+s, s, rs)
			t.Logf("%s container, %s: runs of %v lines", name, s, runs)
			if wantRuns := map[string]int{"restarted": 2, "stopped": 1}[name]; len(runs) != wantRuns {
				t.Errorf("%s container, %s: %d runs, want %d", name, s, len(runs), wantRuns)
			}
		}
	}
}

// A crash repeats lines, never loses them, and repeats only what the DB did
// not hold yet: crashcap reports which batches the DB file holds (durable),
// so whatever the timing of its writes, no batch reported durable before the
// kill may come again, and every line arrives.
func TestCrashRepeatsOnlyBatchesTheDBDidNotHoldYet(t *testing.T) {
	t.Parallel()
	dockertest.LoggenImage(t)
	bin := buildCrashcap(t)
	dir := t.TempDir()
	db, out, stderr := filepath.Join(dir, "positions.json"), filepath.Join(dir, "out.txt"), filepath.Join(dir, "stderr.txt")
	defer func() {
		if t.Failed() {
			b, _ := os.ReadFile(stderr)
			lines := splitLines(string(b))
			t.Logf("crashcap's stderr, last lines:\n%s", strings.Join(lines[max(0, len(lines)-60):], "\n"))
		}
	}()
	const lines = 12000 // about 13 s at one line every ms: writing through the crashes under load
	id := runLoggen(t, "-lines", strconv.Itoa(lines), "-interval", "1ms", "-stream", "both")
	args := func(run int) []string {
		return []string{"-db", db, "-out", out, "-run-id", dockertest.RunID(), "-test", capturetest.TagOf(t),
			"-run", strconv.Itoa(run), "-collect", crashCollect.String()}
	}
	const crashes = 3
	lastReported := map[int][]string{}
	durable := map[int]int{} // the last durable report of each killed run
	for run := 1; run <= crashes; run++ {
		c := startCrashcap(t, bin, stderr, args(run)...)
		// Killed right after a batch is written, once the DB holds some
		// batches: batches before and after the last write are both there.
		at := c.waitLineFrom(t, 0, "a batch durable", func(l string) bool { return strings.HasPrefix(l, "durable ") })
		c.waitLineFrom(t, at+1, "a batch written", func(l string) bool { return strings.HasPrefix(l, "written ") })
		c.signal(syscall.SIGKILL)
		rep := c.reported()
		lastReported[run] = rep[max(0, len(rep)-3):]
		for _, l := range rep {
			var n int
			if _, err := fmt.Sscanf(l, "durable batches=%d", &n); err == nil {
				durable[run] = max(durable[run], n)
			}
		}
	}
	want := loggenLines(lines, "both", 0)
	final := startCrashcap(t, bin, stderr, args(crashes+1)...)
	final.waitLine(t, "every line", func(l string) bool {
		if !strings.HasPrefix(l, "committed ") {
			return false
		}
		got := map[string][]string{}
		for _, o := range readOutput(t, out) {
			if o.id == id {
				got[o.stream] = append(got[o.stream], o.log)
			}
		}
		return len(got["stdout"]) >= len(want["stdout"]) && len(got["stderr"]) >= len(want["stderr"]) &&
			capturetest.AllOf(want)(asRecords(got))
	})
	if st := final.signal(syscall.SIGTERM); !st.Success() {
		t.Errorf("crashcap after SIGTERM: %v", st)
	}

	all := readOutput(t, out)
	var mine []outLine
	for _, o := range all {
		if o.id == id {
			mine = append(mine, o)
		}
	}
	if len(mine) != len(all) {
		t.Errorf("%d output lines of other containers", len(all)-len(mine))
	}
	// Every line arrived; the lines of each run follow on within a stream.
	type key struct{ stream, log string }
	seen := map[key][]int{} // runs each line arrived in
	for _, o := range mine {
		k := key{o.stream, o.log}
		seen[k] = append(seen[k], o.run)
	}
	for s, ls := range want {
		for _, l := range ls {
			if len(seen[key{s, l}]) == 0 {
				t.Errorf("%s %q never arrived", s, l)
			}
		}
	}
	if len(seen) != lines {
		t.Errorf("%d distinct lines arrived, want %d", len(seen), lines)
	}
	for run := 1; run <= crashes+1; run++ {
		last, broken := map[string]int{}, map[string]bool{}
		for _, o := range mine {
			if o.run != run {
				continue
			}
			seq, st, ok := capturetest.ParseSeq(o.log)
			if !ok || st != o.stream {
				t.Fatalf("run %d: %s line %q is no loggen line of that stream", run, o.stream, o.log)
			}
			if broken[o.stream] {
				continue // one report per run and stream
			}
			// -stream both: odd seqs on stdout, even ones on stderr.
			if prev, ok := last[o.stream]; ok && seq != prev+2 {
				t.Errorf("run %d, %s: seq=%d follows seq=%d", run, o.stream, seq, prev)
				broken[o.stream] = true
			}
			last[o.stream] = seq
		}
	}
	// The repeats of each killed run: lines it wrote that a later run wrote
	// again. They must be a suffix of the run (contiguous at the kill) and
	// come only from batches the DB did not hold when it was killed.
	for run := 1; run <= crashes; run++ {
		var own []outLine
		for _, o := range mine {
			if o.run == run {
				own = append(own, o)
			}
		}
		first, batches, gap := -1, map[int]int{}, false
		for i, o := range own {
			later := false
			for _, r := range seen[key{o.stream, o.log}] {
				later = later || r > run
			}
			switch {
			case later && first < 0:
				first = i
				batches[o.batch]++
			case later:
				batches[o.batch]++
			case first >= 0 && !gap:
				gap = true
				t.Errorf("run %d: line %d (%s %q) was not repeated but line %d was: the repeats are not one contiguous run at the kill", run, i, o.stream, o.log, first)
			}
		}
		lastBatch := 0
		if len(own) > 0 {
			lastBatch = own[len(own)-1].batch
		}
		n := 0
		for _, c := range batches {
			n += c
		}
		t.Logf("crash %d: wrote %d lines in batches 1..%d, batches 1..%d durable; %d repeated later, from batches %v; last reports before the kill: %q",
			run, len(own), lastBatch, durable[run], n, batches, lastReported[run])
		for b := range batches {
			if b <= durable[run] {
				t.Errorf("crash %d: lines of batch %d came again, but the DB held batches 1..%d before the kill", run, b, durable[run])
			}
		}
	}
}

// crashCollect is crashcap's collect interval: Fluent Bit's.
const crashCollect = time.Second

// asRecords turns lines per stream into records for the waitFor conditions.
func asRecords(got map[string][]string) []received {
	var out []received
	for s, ls := range got {
		for _, l := range ls {
			out = append(out, received{Record: records.Record{Stream: s, Log: l}})
		}
	}
	return out
}
