package main

// Running the plugin: either the built .so in goproxy-testhost (the C host
// that drives it as Fluent Bit's Go proxy does), or the "twin", this
// program in -child mode running the same capture package in-process with
// a 1-second collect ticker, which can report its goroutines at every
// collect. Both speak the same stderr protocol ("init ok", "collect
// bytes=N", ...) and write every collected buffer to an OUT file, which is
// read back and checked record by record as each collect is reported.

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dockerlogs/fluent-bit-docker-logs/internal/records"
	"github.com/dockerlogs/fluent-bit-docker-logs/testhost"
)

// seqSet records which loggen sequence numbers of one container arrived.
type seqSet struct {
	bits  []uint64
	count int // distinct
	dups  int
	max   int
}

func (s *seqSet) add(seq int) {
	w := seq >> 6
	if w >= len(s.bits) {
		s.bits = append(s.bits, make([]uint64, w+1-len(s.bits)+len(s.bits)/2)...)
	}
	m := uint64(1) << (seq & 63)
	if s.bits[w]&m != 0 {
		s.dups++
		return
	}
	s.bits[w] |= m
	s.count++
	s.max = max(s.max, seq)
}

// missing counts the seqs in 1..n that did not arrive.
func (s *seqSet) missing(n int) int {
	have := 0
	for seq := 1; seq <= n; seq++ {
		if w := seq >> 6; w < len(s.bits) && s.bits[w]&(1<<(seq&63)) != 0 {
			have++
		}
	}
	return n - have
}

// account is what a run's records add up to.
type account struct {
	records      int
	bytes        int64
	perContainer map[string]*seqSet
	badLines     int       // records whose log is not a loggen line
	latencyOn    bool      // record collect time - record time
	latencyMS    []float32 // one per record while latencyOn
	windowFrom   time.Time // latency is kept only for collects after this
	windowTo     time.Time // ... and before this (zero: no end)
}

func newAccount() *account { return &account{perContainer: map[string]*seqSet{}} }

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
	kind    string // "host" (C host + .so) or "twin" (in-process capture)
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	pid     int
	outPath string
	logPath string
	t0      time.Time // just before exec

	evs    chan collectRec // follow -> parse
	exited chan struct{}   // closed when stderr is drained and the process reaped

	mu         sync.Mutex
	changed    chan struct{} // closed and replaced when anything below changes
	acct       *account
	collects   []collectRec
	initAt     time.Time
	initFailed bool
	baseline   int // goroutines before init; -1 if not reported
	goroutines int // last count the twin reported; -1 if none
	widened    int // "resume window too short" lines (debug)
	warnings   []string
	nwarnings  int
	exitLine   string
	parseErr   error
	checked    bool // the first collect was cross-checked with internal/records
}

type hostPaths struct {
	host, so, self, tmp, logs string
}

var runSeq int

// startRunner starts kind ("host" or "twin") with the given properties and
// waits for init.
func startRunner(p hostPaths, kind, name string, props map[string]string, latency bool) (*runner, error) {
	runSeq++
	base := fmt.Sprintf("%02d-%s-%s", runSeq, name, kind)
	r := &runner{
		kind:       kind,
		outPath:    filepath.Join(p.tmp, base+".msgpack"),
		logPath:    filepath.Join(p.logs, base+".log"),
		evs:        make(chan collectRec, 1<<16),
		exited:     make(chan struct{}),
		changed:    make(chan struct{}),
		acct:       newAccount(),
		baseline:   -1,
		goroutines: -1,
	}
	r.acct.latencyOn = latency
	// Latency is kept from the moment the caller opens the window
	// (startWindow); until then, none.
	r.acct.windowFrom = time.Now().Add(100 * 365 * 24 * time.Hour)
	args := append([]string{"-o", r.outPath}, testhost.PropertyArgs(props)...)
	switch kind {
	case "host":
		r.cmd = exec.Command(p.host, append(args, p.so)...)
	case "twin":
		r.cmd = exec.Command(p.self, append([]string{"-child"}, args...)...)
	default:
		return nil, fmt.Errorf("unknown runner kind %q", kind)
	}
	var err error
	if r.stdin, err = r.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stderr, err := r.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(r.logPath)
	if err != nil {
		return nil, err
	}
	r.t0 = time.Now()
	if err := r.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", r.cmd.Path, err)
	}
	r.pid = r.cmd.Process.Pid
	go r.follow(stderr, logf)
	go r.parse()
	ok := r.wait(60*time.Second, func() bool { return !r.initAt.IsZero() || r.initFailed })
	if !ok || r.initFailed {
		r.stop()
		return nil, fmt.Errorf("%s did not init (see %s)", kind, r.logPath)
	}
	return r, nil
}

// follow reads stderr, stamping each line as it arrives.
func (r *runner) follow(stderr io.Reader, logf *os.File) {
	defer close(r.exited)
	defer logf.Close()
	w := bufio.NewWriterSize(logf, 64<<10)
	defer w.Flush()
	sc := bufio.NewScanner(stderr)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		now := time.Now()
		line := sc.Text()
		fmt.Fprintf(w, "%s %s\n", now.Format("15:04:05.000"), line)
		p := testhost.ParseLine(line)
		if p.Kind == testhost.LineCollect {
			cpu, _ := procCPU(r.pid)
			r.evs <- collectRec{at: now, bytes: p.Bytes, cpu: cpu, goroutines: p.Goroutines}
			continue
		}
		r.mu.Lock()
		switch {
		case p.Kind == testhost.LineInitOK:
			r.initAt = now
		case p.Kind == testhost.LineInitFailed:
			r.initFailed = true
		case p.Kind == testhost.LineBaseline:
			r.baseline = p.Goroutines
		case p.Kind == testhost.LineGoroutines:
			r.goroutines = p.Goroutines
		case p.Kind == testhost.LineExit:
			r.exitLine = line
		case strings.Contains(line, "resume window too short"):
			r.widened++
		case strings.Contains(line, "[ warn]") || strings.Contains(line, "[error]") ||
			strings.Contains(line, "level=warn") || strings.Contains(line, "level=error") ||
			strings.HasPrefix(line, "testhost: "):
			r.nwarnings++
			if len(r.warnings) < 20 {
				r.warnings = append(r.warnings, line)
			}
		}
		r.notify()
		r.mu.Unlock()
	}
	_ = r.cmd.Wait()
	close(r.evs)
}

func (r *runner) notify() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// parse reads each collect's bytes from OUT and accounts for its records.
func (r *runner) parse() {
	var f *os.File
	var off int64
	var buf []byte
	for ev := range r.evs {
		if f == nil {
			var err error
			if f, err = os.Open(r.outPath); err != nil {
				r.setParseErr(err)
				continue
			}
		}
		if cap(buf) < ev.bytes {
			buf = make([]byte, ev.bytes)
		}
		buf = buf[:ev.bytes]
		if _, err := f.ReadAt(buf, off); err != nil {
			r.setParseErr(fmt.Errorf("read OUT at %d: %w", off, err))
			continue
		}
		off += int64(ev.bytes)
		r.mu.Lock()
		a := r.acct
		keepLatency := a.latencyOn && !ev.at.Before(a.windowFrom) && (a.windowTo.IsZero() || ev.at.Before(a.windowTo))
		atNS := ev.at.UnixNano()
		n, err := walkEvents(buf, func(e *event) {
			s := a.perContainer[string(e.container)]
			if s == nil {
				s = &seqSet{}
				a.perContainer[string(e.container)] = s
			}
			if seq, ok := parseSeq(e.log); ok {
				s.add(seq)
			} else {
				a.badLines++
			}
			if keepLatency {
				a.latencyMS = append(a.latencyMS, float32(float64(atNS-e.ts)/1e6))
			}
		})
		if err != nil && r.parseErr == nil {
			r.parseErr = fmt.Errorf("collect at OUT offset %d: %w", off-int64(ev.bytes), err)
		}
		a.records += n
		a.bytes += int64(ev.bytes)
		if !r.checked {
			r.checked = true
			recs, err := records.Decode(buf)
			switch {
			case err != nil:
				r.parseErr = fmt.Errorf("internal/records cannot decode the first collect: %w", err)
			case len(recs) != n:
				r.parseErr = fmt.Errorf("first collect: internal/records decodes %d records, the bench's walker %d", len(recs), n)
			}
		}
		ev.records = a.records
		r.collects = append(r.collects, ev)
		if ev.goroutines >= 0 {
			r.goroutines = ev.goroutines
		}
		r.notify()
		r.mu.Unlock()
	}
	if f != nil {
		f.Close()
	}
}

func (r *runner) setParseErr(err error) {
	r.mu.Lock()
	if r.parseErr == nil {
		r.parseErr = err
	}
	r.mu.Unlock()
}

// wait returns when cond (called with r.mu held) is true, or false after
// timeout or once the process has exited without it.
func (r *runner) wait(timeout time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		if cond() {
			r.mu.Unlock()
			return true
		}
		ch := r.changed
		r.mu.Unlock()
		select {
		case <-ch:
		case <-r.exited:
			r.mu.Lock()
			ok := cond()
			r.mu.Unlock()
			return ok
		case <-deadline.C:
			return false
		}
	}
}

// waitRecords waits until the accounted records reach n and returns the
// collect that completed them; it gives up after timeout, or when no record
// came for idle.
func (r *runner) waitRecords(n int, timeout, idle time.Duration) (collectRec, bool) {
	end := time.Now().Add(timeout)
	last, since := -1, time.Now()
	for time.Now().Before(end) {
		if r.wait(time.Second, func() bool { return r.acct.records >= n }) {
			return r.lastCollect(), true
		}
		r.mu.Lock()
		got := r.acct.records
		r.mu.Unlock()
		if got != last {
			last, since = got, time.Now()
		} else if time.Since(since) > idle {
			break
		}
		select {
		case <-r.exited:
			return r.lastCollect(), false
		default:
		}
	}
	return r.lastCollect(), false
}

func (r *runner) lastCollect() collectRec {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.collects) == 0 {
		return collectRec{}
	}
	return r.collects[len(r.collects)-1]
}

// collectBefore returns the last collect strictly before c (the interval
// in which the last record became ready).
func (r *runner) collectBefore(c collectRec) collectRec {
	r.mu.Lock()
	defer r.mu.Unlock()
	prev := collectRec{at: r.initAt}
	for _, x := range r.collects {
		if !x.at.Before(c.at) {
			break
		}
		prev = x
	}
	return prev
}

// with runs f on the account, under the runner's lock.
func (r *runner) with(f func(a *account)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(r.acct)
}

// stop asks the host to exit (EOF on stdin, as Fluent Bit's shutdown) and
// waits; after 30 s it is killed.
func (r *runner) stop() string {
	r.stdin.Close()
	select {
	case <-r.exited:
	case <-time.After(30 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.exited
	}
	// Let parse finish the last collects.
	r.wait(10*time.Second, func() bool { return true })
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.exitLine
}

// startWindow starts keeping latency samples from now on.
func (r *runner) startWindow() {
	r.mu.Lock()
	r.acct.windowFrom = time.Now()
	r.mu.Unlock()
}

// endWindow stops keeping latency samples.
func (r *runner) endWindow() {
	r.mu.Lock()
	r.acct.windowTo = time.Now()
	r.mu.Unlock()
}

// removeOut deletes the OUT file (they are large).
func (r *runner) removeOut() { _ = os.Remove(r.outPath) }

// check compares what arrived with what each container wrote: want maps a
// container id to its last seq (every seq 1..n expected once).
type checkResult struct {
	Containers   int `json:"containers"`
	Expected     int `json:"expected_lines"`
	Distinct     int `json:"distinct_lines"`
	Missing      int `json:"missing_lines"`
	Duplicates   int `json:"duplicate_lines"`
	Extra        int `json:"lines_of_other_containers"`
	BadLines     int `json:"records_not_from_loggen"`
	IncompleteOf int `json:"containers_with_missing_lines"`
}

func (c checkResult) ok() bool { return c.Missing == 0 && c.Duplicates == 0 && c.BadLines == 0 }

func (c checkResult) String() string {
	return fmt.Sprintf("%d containers: %d/%d lines, %d missing (in %d containers), %d duplicates, %d not loggen",
		c.Containers, c.Distinct, c.Expected, c.Missing, c.IncompleteOf, c.Duplicates, c.BadLines)
}

func (r *runner) check(want map[string]int) checkResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	var c checkResult
	c.Containers = len(want)
	c.BadLines = r.acct.badLines
	for id, n := range want {
		c.Expected += n
		s := r.acct.perContainer[id]
		if s == nil {
			c.Missing += n
			if n > 0 {
				c.IncompleteOf++
			}
			continue
		}
		c.Distinct += s.count
		c.Duplicates += s.dups
		if m := s.missing(n); m > 0 {
			c.Missing += m
			c.IncompleteOf++
		}
	}
	for id, s := range r.acct.perContainer {
		if _, ok := want[id]; !ok {
			c.Extra += s.count
		}
	}
	return c
}

// haveAll reports whether every container has all its lines.
func (r *runner) haveAll(want map[string]int) bool {
	for id, n := range want {
		s := r.acct.perContainer[id]
		if n > 0 && (s == nil || s.count < n) {
			return false
		}
	}
	return true
}

func (r *runner) err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.parseErr
}

func (r *runner) warningSummary() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := append([]string(nil), r.warnings...)
	if r.nwarnings > len(out) {
		out = append(out, fmt.Sprintf("... %d warning/error lines in all", r.nwarnings))
	}
	return out
}
