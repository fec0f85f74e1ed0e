package main

// Running the plugin: either the built .so in goproxy-testhost (the C host
// that drives it as Fluent Bit's Go proxy does), or the "twin", this
// program in -child mode running the same capture package in-process with
// a 1-second collect ticker, which can report its goroutines at every
// collect. Both speak testhost's stderr protocol ("init ok", "collect
// bytes=N", ...) and write every collected buffer to an OUT file, which is
// read back and checked record by record as each collect is reported.

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/dockerlogs/fluent-bit-docker-logs/internal/records"
	"github.com/dockerlogs/fluent-bit-docker-logs/testhost"
)

// seqSet records which loggen sequence numbers of one container arrived.
type seqSet struct {
	seen  []bool
	count int // distinct
	dups  int
}

func (s *seqSet) add(seq int) {
	if seq >= len(s.seen) {
		s.seen = append(s.seen, make([]bool, seq+1-len(s.seen)+len(s.seen)/2)...)
	}
	if s.seen[seq] {
		s.dups++
	} else {
		s.seen[seq], s.count = true, s.count+1
	}
}

// missing counts the seqs in 1..n that did not arrive.
func (s *seqSet) missing(n int) int {
	m := n
	for _, ok := range s.seen[min(1, len(s.seen)):min(n+1, len(s.seen))] {
		if ok {
			m--
		}
	}
	return m
}

// collectRec is one collect as the bench saw it.
type collectRec struct {
	at         time.Time
	bytes      int
	records    int           // cumulative after this collect
	cpu        time.Duration // the process's CPU time when the line was read
	goroutines int           // twin only; -1 for the C host
}

// runner is one running host process.
type runner struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	pid     int
	outPath string
	t0      time.Time // just before exec

	evs  chan collectRec // follow sends and closes once the process is reaped; parse receives
	done chan struct{}   // closed by parse after the last collect: nothing changes after it

	mu           sync.Mutex
	changed      chan struct{} // closed and replaced whenever anything below changes
	initAt       time.Time
	baseline     int // goroutines before init; -1 if not reported
	goroutines   int // last count the twin reported; -1 if none
	exitLine     string
	records      int
	perContainer map[string]*seqSet
	badLines     int        // records whose log is not a loggen line
	latencyMS    []float32  // collect time - record time, of each record
	last, prev   collectRec // the last collect and the one before
	parseErr     error
}

var runSeq int

// start runs kind ("host" or "twin") with the given properties and waits
// for init.
func (b *bench) start(kind, name string, props map[string]string) (*runner, error) {
	runSeq++
	base := fmt.Sprintf("%02d-%s-%s", runSeq, name, kind)
	r := &runner{outPath: filepath.Join(runTmp, base+".msgpack"),
		evs: make(chan collectRec, 1<<16), done: make(chan struct{}), changed: make(chan struct{}),
		baseline: -1, goroutines: -1, perContainer: map[string]*seqSet{}}
	args := append([]string{"-o", r.outPath}, testhost.PropertyArgs(props)...)
	if kind == "host" {
		r.cmd = exec.Command(*hostBin, append(args, *pluginSO)...)
	} else {
		r.cmd = exec.Command(selfBin, append([]string{"-child"}, args...)...)
	}
	var err error
	if r.stdin, err = r.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stderr, err := r.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	log, err := os.Create(filepath.Join(logsDir, base+".log"))
	if err != nil {
		return nil, err
	}
	r.t0 = time.Now()
	if err := r.cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", r.cmd.Path, err)
	}
	r.pid = r.cmd.Process.Pid
	go r.follow(stderr, log)
	go r.parse()
	if !r.wait(time.Minute, func() bool { return !r.initAt.IsZero() }) { // a failed init ends the process
		r.stop()
		return nil, fmt.Errorf("%s did not init (see %s)", kind, log.Name())
	}
	return r, nil
}

// startReaders starts the host and, with twin, the twin on the same
// properties.
func (b *bench) startReaders(name string, props map[string]string, twin bool) (runs []*runner, err error) {
	kinds := []string{"host"}
	if twin {
		kinds = append(kinds, "twin")
	}
	for _, kind := range kinds {
		r, err := b.start(kind, name, props)
		if err != nil {
			stopAll(runs)
			return nil, err
		}
		runs = append(runs, r)
	}
	return runs, nil
}

// stopAll stops each runner.
func stopAll(runs []*runner) {
	for _, r := range runs {
		r.stop()
	}
}

// settle waits until each runner has every line of want (up to timeout),
// lets one collect more pass, in which duplicates would show, and checks
// each.
func settle(runs []*runner, want map[string]int, timeout time.Duration) (checks []checkResult) {
	for _, r := range runs {
		r.wait(timeout, func() bool { return r.haveAll(want) })
		r.idle(1500 * time.Millisecond)
		checks = append(checks, r.check(want))
	}
	return checks
}

// latencies are the latencies of records from..to-1 (to < 0: all from
// from on), sorted.
func (r *runner) latencies(from, to int) []float32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if to < 0 {
		to = len(r.latencyMS)
	}
	return slices.Sorted(slices.Values(r.latencyMS[from:to]))
}

// follow reads stderr, stamping each line as it arrives into the log file,
// and hands each collect to parse.
func (r *runner) follow(stderr io.Reader, log *os.File) {
	defer close(r.evs)
	defer log.Close()
	w := bufio.NewWriterSize(log, 64<<10)
	defer w.Flush()
	sc := bufio.NewScanner(stderr)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		now := time.Now()
		fmt.Fprintf(w, "%s %s\n", now.Format("15:04:05.000"), sc.Text())
		l := testhost.ParseLine(sc.Text())
		if l.Kind == testhost.LineCollect {
			cpu, _ := procCPU(r.pid)
			r.evs <- collectRec{at: now, bytes: l.Bytes, cpu: cpu, goroutines: l.Goroutines}
			continue
		}
		r.update(func() {
			switch l.Kind {
			case testhost.LineInitOK:
				r.initAt, r.last.at = now, now // the collect before the first
			case testhost.LineBaseline:
				r.baseline = l.Goroutines
			case testhost.LineGoroutines:
				r.goroutines = l.Goroutines
			case testhost.LineExit:
				r.exitLine = sc.Text()
			}
		})
	}
	_ = r.cmd.Wait()
}

// update changes the runner's state under its lock and wakes its waiters.
func (r *runner) update(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f()
	close(r.changed)
	r.changed = make(chan struct{})
}

// parse reads each collect's bytes from OUT and accounts for its records.
func (r *runner) parse() {
	defer close(r.done)
	var off int64
	var buf []byte
	for ev := range r.evs {
		buf = slices.Grow(buf[:0], ev.bytes)[:ev.bytes]
		err := readAt(r.outPath, buf, off)
		off += int64(ev.bytes)
		r.update(func() {
			if err == nil {
				err = r.account(ev, buf)
			}
			if err != nil && r.parseErr == nil {
				r.parseErr = fmt.Errorf("collect at OUT offset %d: %w", off-int64(ev.bytes), err)
			}
			ev.records = r.records
			r.prev, r.last = r.last, ev
			if ev.goroutines >= 0 {
				r.goroutines = ev.goroutines
			}
		})
	}
}

func readAt(path string, buf []byte, off int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.ReadAt(buf, off)
	return err
}

// account adds one collect's records; called with r.mu held.
func (r *runner) account(ev collectRec, buf []byte) error {
	n, err := records.Walk(buf, func(ts int64, container, log []byte) {
		s := r.perContainer[string(container)]
		if s == nil {
			s = &seqSet{}
			r.perContainer[string(container)] = s
		}
		if seq, ok := parseSeq(log); ok {
			s.add(seq)
		} else {
			r.badLines++
		}
		r.latencyMS = append(r.latencyMS, float32(float64(ev.at.UnixNano()-ts)/1e6))
	})
	r.records += n
	return err
}

// wait returns when cond (called with r.mu held) is true, or false after
// timeout or once the process has ended without it.
func (r *runner) wait(timeout time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		ok, ch := cond(), r.changed
		r.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-r.done:
			r.mu.Lock()
			defer r.mu.Unlock()
			return cond()
		case <-deadline.C:
			return false
		}
	}
}

// idle lets d pass (or the process end): what is still in flight arrives.
func (r *runner) idle(d time.Duration) { r.wait(d, func() bool { return false }) }

// waitRecords waits until the accounted records reach n and returns the
// collect that completed them and the one before it (the last record
// became ready in between); it gives up when no record came for idle.
func (r *runner) waitRecords(n int, idle time.Duration) (last, prev collectRec, ok bool) {
	for seen := -1; ; {
		r.wait(idle, func() bool { return r.records >= n || r.records != seen })
		r.mu.Lock()
		progressed := r.records != seen
		ok, seen = r.records >= n, r.records
		r.mu.Unlock()
		if ok || !progressed {
			break
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last, r.prev, ok
}

// stop asks the host to exit (EOF on stdin, as Fluent Bit's shutdown) and
// waits until every collect is accounted for; after 30 s it is killed.
func (r *runner) stop() string {
	r.stdin.Close()
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.done
	}
	_ = os.Remove(r.outPath) // they are large
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.exitLine
}

// checkResult compares what arrived with what each container wrote.
type checkResult struct {
	Expected     int    `json:"expected_lines"`
	Missing      int    `json:"missing_lines"`
	Duplicates   int    `json:"duplicate_lines"`
	Extra        int    `json:"lines_of_other_containers"`
	BadLines     int    `json:"records_not_from_loggen"`
	IncompleteOf int    `json:"containers_with_missing_lines"`
	Err          string `json:"records_error,omitempty"`
}

func (c checkResult) ok() bool {
	return c.Missing == 0 && c.Duplicates == 0 && c.BadLines == 0 && c.Err == ""
}

// String is a table cell: "all N once", or what is wrong in bold.
func (c checkResult) String() string {
	if c.ok() && c.Extra == 0 {
		return fmt.Sprintf("all %d once", c.Expected)
	}
	return fmt.Sprintf("**%d missing (%d ctrs), %d dup, %d extra, %d not loggen%s**",
		c.Missing, c.IncompleteOf, c.Duplicates, c.Extra, c.BadLines, c.Err)
}

// check compares what arrived with want: a container id to its last seq
// (every seq 1..n expected once). Lines of containers not in want are
// Extra.
func (r *runner) check(want map[string]int) checkResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := checkResult{BadLines: r.badLines}
	if r.parseErr != nil {
		c.Err = "; " + r.parseErr.Error()
	}
	for id, n := range want {
		c.Expected += n
		s := r.perContainer[id]
		if s == nil {
			s = &seqSet{}
		}
		c.Duplicates += s.dups
		if m := s.missing(n); m > 0 {
			c.Missing += m
			c.IncompleteOf++
		}
	}
	for id, s := range r.perContainer {
		if _, ok := want[id]; !ok {
			c.Extra += s.count
		}
	}
	return c
}

// haveAll reports, with r.mu held, whether every container has all its
// lines.
func (r *runner) haveAll(want map[string]int) bool {
	for id, n := range want {
		if s := r.perContainer[id]; n > 0 && (s == nil || s.count < n) {
			return false
		}
	}
	return true
}

// procSample is one reading of a runner's process.
type procSample struct {
	T          float64 `json:"t_s"`
	CPU        float64 `json:"cpu_s"`
	RSS        int64   `json:"rss_bytes"`
	FDs        int     `json:"fds"`
	Threads    int     `json:"threads"`
	Goroutines int     `json:"goroutines"`
	Records    int     `json:"records"`
}

func (r *runner) sample(t0 time.Time) procSample {
	cpu, _ := procCPU(r.pid)
	rss, threads := procStatus(r.pid)
	s := procSample{T: time.Since(t0).Seconds(), CPU: cpu.Seconds(), RSS: rss, FDs: procFDs(r.pid), Threads: threads}
	r.mu.Lock()
	s.Goroutines, s.Records = r.goroutines, r.records
	r.mu.Unlock()
	return s
}
