package main

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dockerlogs/fluent-bit-docker-logs/internal/dockertest"
	"github.com/dockerlogs/fluent-bit-docker-logs/internal/faultproxy"
)

// soakKind is how one wave container behaves.
type soakKind struct {
	args     []string
	stopIn   time.Duration // > 0: docker stop after this
	rmAtOnce bool          // removed as soon as it exited (like --rm)
}

// soakKinds are, in turn: containers that exit, that are removed as soon
// as they exit, that are stopped after 3 s, that write slowly to stderr.
var soakKinds = []soakKind{
	{args: []string{"-lines", "300", "-interval", "20ms", "-stream", "both", "-size", "100"}},
	{args: []string{"-lines", "50", "-size", "100"}, rmAtOnce: true},
	{args: []string{"-lines", "100000", "-interval", "10ms", "-size", "100", "-hold"}, stopIn: 3 * time.Second},
	{args: []string{"-lines", "200", "-interval", "25ms", "-stream", "stderr", "-size", "100"}},
}

const soakCase = "soak"

// soakEvent is what a wave's goroutine tells the soak's: containers it
// started, or one that ended and was removed.
type soakEvent struct {
	started  []string
	id       string
	seq      int  // the last line of id
	rmAtOnce bool // id was removed as soon as it exited
	late     bool // id was removed before host and twin had read it all
	err      error
}

// soak is one run of -soak: the plugin in the test host and its twin, the
// containers it starts, and what each must have delivered. Only the soak's
// own goroutine (runSoak's) touches its fields; waves report through
// events.
type soak struct {
	b      *bench
	runs   []*runner         // the host, then the twin unless -twin=false
	proxy  *faultproxy.Proxy // nil with -soak-faults=false
	t0     time.Time
	csv    *os.File
	rows   [][]float64 // the samples, as the CSV's columns
	pre    []int       // twin goroutines as each wave starts
	wave   int
	steady []string
	live   int            // started and not yet removed
	want   map[string]int // container -> last seq, for the kept ones
	fastRm map[string]int // the same for those removed at once
	late   int            // kept ones removed unread after a minute
	errs   []error

	events chan soakEvent // wave goroutines send; closed by drain once they have returned
	waves  sync.WaitGroup // wave goroutines; drain waits
	faults chan string    // the fault schedule sends what it did, once
}

var soakColumns = []string{"t_s", "host_rss_mb", "host_fds", "host_threads", "twin_goroutines", "twin_rss_mb", "twin_fds",
	"host_records", "twin_records", "containers"}

func (b *bench) runSoak() error {
	logf("soak: %s, Stream_Refresh=%s, %d steady containers, a wave of %d containers every %s",
		*soakDuration, *soakRefresh, *soakSteady, *soakWaveSize, *soakWave)
	s := &soak{b: b, want: map[string]int{}, fastRm: map[string]int{}, events: make(chan soakEvent), faults: make(chan string, 1)}
	defer s.close()
	if err := s.start(); err != nil {
		return err
	}
	ids, err := b.eng.runMany(b.ctx, *soakSteady, *workers, func(int) dockertest.RunOptions {
		return b.loggen(soakCase, "-lines", "1000000000", "-interval", "50ms", "-stream", "both", "-size", "100", "-hold")
	})
	s.apply(soakEvent{started: ids})
	if s.steady = ids; err != nil {
		return err
	}
	// The baseline: every steady container's reader runs.
	for _, r := range s.runs {
		r.wait(time.Minute, func() bool {
			return !slices.ContainsFunc(s.steady, func(id string) bool { return r.perContainer[id] == nil })
		})
	}
	time.Sleep(3 * time.Second)
	s.sample()
	if s.proxy != nil {
		go func() { s.faults <- s.runFaults() }() // its only send; finish receives
	} else {
		s.faults <- "off (-soak-faults=false)"
	}
	s.loop()
	s.drain()
	s.sample() // with only the steady containers left: the end of the series
	return s.finish()
}

// start runs the host and the twin, through the fault proxy with
// -soak-faults, and opens the CSV.
func (s *soak) start() error {
	props := s.b.props(soakCase, map[string]string{"Stream_Refresh": *soakRefresh})
	var err error
	if *soakFaults {
		if s.proxy, err = faultproxy.New("unix://"+*sock, logf); err != nil {
			return err
		}
		props["docker_host"] = s.proxy.Host()
	}
	if s.runs, err = s.b.startReaders(soakCase, props, *twinOn); err != nil {
		return err
	}
	if s.csv, err = os.Create(filepath.Join(*outDir, "soak.csv")); err != nil {
		return err
	}
	fmt.Fprintln(s.csv, strings.Join(soakColumns, ","))
	s.t0 = time.Now()
	s.sample()
	return nil
}

// close stops the runners and closes the proxy; the containers go with
// the run's (dockertest.CleanupAll).
func (s *soak) close() {
	stopAll(s.runs)
	if s.proxy != nil {
		s.proxy.Close()
	}
	if s.csv != nil {
		s.csv.Close()
	}
}

// apply takes in what a wave reports.
func (s *soak) apply(ev soakEvent) {
	for _, id := range ev.started {
		if id != "" {
			s.live++
		}
	}
	if ev.err != nil {
		s.errs = append(s.errs, ev.err)
		logf("  %v", ev.err)
	}
	switch {
	case ev.id == "":
	case ev.rmAtOnce:
		s.fastRm[ev.id], s.live = ev.seq, s.live-1
	default:
		s.want[ev.id], s.live = ev.seq, s.live-1
	}
	if ev.late {
		s.late++
	}
}

// sample reads host and twin, keeps the row and writes it to the CSV at
// once, so a run cut short keeps its samples.
func (s *soak) sample() {
	h, t := s.runs[0].sample(s.t0), procSample{Goroutines: -1}
	if len(s.runs) > 1 {
		t = s.runs[1].sample(s.t0)
	}
	row := []float64{h.T, float64(h.RSS) / 1e6, float64(h.FDs), float64(h.Threads), float64(t.Goroutines),
		float64(t.RSS) / 1e6, float64(t.FDs), float64(h.Records), float64(t.Records), float64(s.live)}
	s.rows = append(s.rows, row)
	cells := make([]string, len(row))
	for i, v := range row {
		cells[i] = strconv.FormatFloat(v, 'f', -1, 64)
	}
	fmt.Fprintln(s.csv, strings.Join(cells, ","))
	logf("  t=%4.0fs containers %3d | host rss %s fds %d | twin goroutines %d fds %d | records %d / %d",
		h.T, s.live, mb(h.RSS), h.FDs, t.Goroutines, t.FDs, h.Records, t.Records)
}

// loop samples every 10 s and starts a wave every -soak-wave until the
// duration is over; the last waves must have time to finish inside it.
func (s *soak) loop() {
	deadline := s.t0.Add(*soakDuration)
	sampleTick := time.NewTicker(10 * time.Second)
	defer sampleTick.Stop()
	waveTick := time.NewTicker(*soakWave)
	defer waveTick.Stop()
	s.startWave()
	for {
		select {
		case <-s.b.ctx.Done():
			return
		case ev := <-s.events:
			s.apply(ev)
		case <-sampleTick.C:
			if s.sample(); time.Now().After(deadline) {
				return
			}
		case <-waveTick.C:
			if time.Until(deadline) > 15*time.Second {
				s.startWave()
			}
		}
	}
}

// drain takes in what the waves still report until every one has returned.
func (s *soak) drain() {
	go func() { s.waves.Wait(); close(s.events) }()
	for ev := range s.events {
		s.apply(ev)
	}
}

// startWave starts -soak-wave-size containers of the kinds in turn in a
// goroutine of their own and runs each to its end.
func (s *soak) startWave() {
	s.wave++
	if len(s.runs) > 1 {
		s.pre = append(s.pre, s.runs[1].sample(s.t0).Goroutines)
	}
	b := s.b
	s.waves.Add(1)
	go func() {
		defer s.waves.Done()
		ids, err := b.eng.runMany(b.ctx, *soakWaveSize, *workers, func(i int) dockertest.RunOptions {
			return b.loggen(soakCase, soakKinds[i%len(soakKinds)].args...)
		})
		s.events <- soakEvent{started: ids, err: err}
		var wg sync.WaitGroup // one goroutine a container; the wave waits
		for i, id := range ids {
			if id != "" {
				wg.Add(1)
				go func() { defer wg.Done(); s.events <- s.runContainer(id, soakKinds[i%len(soakKinds)]) }()
			}
		}
		wg.Wait()
	}()
}

// runContainer waits for a wave container to end (stopping it if its kind
// says so), notes its last line, waits until it is read unless its kind is
// removed at once, and removes it.
func (s *soak) runContainer(id string, k soakKind) soakEvent {
	ev := soakEvent{id: id, rmAtOnce: k.rmAtOnce}
	if k.stopIn > 0 {
		time.Sleep(k.stopIn)
		ev.err = s.b.eng.stop(id)
	}
	if err := s.b.eng.wait(id); err != nil {
		return soakEvent{err: err}
	}
	var err error
	if ev.seq, err = s.b.eng.lastSeq(s.b.ctx, id); err != nil {
		return soakEvent{err: err}
	}
	if !k.rmAtOnce { // host and twin read it all within a minute, or it is late
		want := map[string]int{id: ev.seq}
		for _, r := range s.runs {
			ev.late = !r.wait(time.Minute, func() bool { return r.haveAll(want) }) || ev.late
		}
	}
	if err := s.b.eng.remove(id); err != nil {
		ev.err = err
	}
	return ev
}

// finish stops the steady containers, waits for their last lines, checks
// what each runner delivered, stops the runners and reports.
func (s *soak) finish() error {
	logf("  stopping the steady containers")
	if err := each(s.steady, *workers, func(id string) error { return s.b.eng.stop(id) }); err != nil {
		logf("  stop: %v", err)
	}
	for _, id := range s.steady {
		n, err := s.b.eng.lastSeq(s.b.ctx, id)
		if err != nil {
			logf("  last line of %s: %v", id[:12], err)
		}
		s.want[id] = n
	}
	all := maps.Clone(s.want)
	maps.Copy(all, s.fastRm)
	var checks [2][2]checkResult // host, twin x kept, removed at once
	var exits [2]string
	for i, c := range settle(s.runs, s.want, time.Minute) {
		checks[i] = [2]checkResult{c, s.runs[i].check(s.fastRm)}
		checks[i][0].Extra, checks[i][1].Extra = s.runs[i].check(all).Extra, 0
		exits[i] = s.runs[i].stop()
	}
	s.report(checks, exits, <-s.faults)
	return nil
}

// report writes the soak's goals and lifecycle, and its samples to the
// raw figures.
func (s *soak) report(checks [2][2]checkResult, exits [2]string, faults string) {
	b, hc, tc := s.b, checks[0], checks[1]
	// growth is the first and last sample of a column and its least-squares
	// slope per minute after the first minute (the heap settling).
	growth := func(col int) (first, last, perMin float64) {
		var x, y []float64
		for _, r := range s.rows {
			if r[0] >= 60 && r[col] >= 0 { // the twin counts goroutines from its first collect
				x, y = append(x, r[0]/60), append(y, r[col])
			}
		}
		return s.rows[0][col], s.rows[len(s.rows)-1][col], slope(x, y)
	}
	latency, _ := percentiles(s.runs[0].latencies(0, -1))
	life := section{Title: "Soak: lines and lifecycle", Header: []string{"measure", "value"}, Rows: [][]string{
		{"waves", fmt.Sprintf("%d x %d containers (kinds: exits, burst-rm, stopped after 3 s, exits-slow) + %d steady", s.wave, *soakWaveSize, *soakSteady)},
		{"kept containers removed unread after a minute", strconv.Itoa(s.late)},
		{"burst-rm containers (50 lines, removed as soon as they exit, like --rm): host; twin", hc[1].String() + "; " + tc[1].String()},
		{"twin goroutines before each wave", fmt.Sprint(s.pre)},
		{"latency p50 / p99 / max", latency},
		{"host exit; twin exit", exits[0] + "; " + exits[1]},
		{"faults (stall, outage, cut)", faults},
		{"wave errors", fmt.Sprint(s.errs)},
		{"samples", s.csv.Name()},
	}}
	if s.proxy != nil {
		st := s.proxy.Stats()
		life.Rows = append(life.Rows, []string{"faultproxy", fmt.Sprintf("%d connections, %d logs requests, %d cut in a header, %d in a payload",
			st.Conns, st.LogsRequests, st.HeaderCuts, st.PayloadCuts)})
	}
	b.rep.section(life)
	b.rep.raw("soak", map[string]any{"host_check": hc, "twin_check": tc, "columns": soakColumns, "rows": s.rows})
	b.rep.goal("6a", "soak: every line of kept containers (host; twin)", hc[0].String()+"; "+tc[0].String(), "all, once",
		boolp(hc[0].ok() && (len(s.runs) == 1 || tc[0].ok())))
	if len(s.runs) > 1 && len(s.pre) > 0 {
		base, top, end := s.pre[0], slices.Max(s.pre), int(s.rows[len(s.rows)-1][4])
		_, _, g := growth(4)
		b.rep.goal("6b", "soak: twin goroutines before the first wave / most before a wave / at the end; growth a minute after the first",
			fmt.Sprintf("%d / %d / %d; %s", base, top, end, signed(g)), "back to baseline, flat", boolp(top-base <= 3 && end-base <= 3 && g > -0.5 && g < 0.5))
	}
	f0, f1, fds := growth(2)
	r0, r1, rss := growth(1)
	b.rep.goal("6c", "soak: host fds and RSS, first to last; growth a minute after the first",
		fmt.Sprintf("%.0f to %.0f fds (%s); %.1f to %.1f MB (%s)", f0, f1, signed(fds), r0, r1, signed(rss)), "flat", boolp(fds > -1 && fds < 1 && rss < 1))
}

// slope is the least-squares slope of y over x.
func slope(x, y []float64) float64 {
	n := float64(len(x))
	var sx, sy, sxx, sxy float64
	for i := range x {
		sx, sy, sxx, sxy = sx+x[i], sy+y[i], sxx+x[i]*x[i], sxy+x[i]*y[i]
	}
	if d := n*sxx - sx*sx; len(x) >= 2 && d != 0 {
		return (n*sxy - sx*sy) / d
	}
	return 0
}

func signed(v float64) string { return fmt.Sprintf("%+.3g", v) }

// runFaults stalls every logs response for 10 s at a third of the run,
// makes the daemon unreachable for 15 s at half of it (as the plugin sees a
// daemon restart: every stream and the events stream end, reconnections
// fail), cuts one response in the middle of a frame at two thirds, and
// says what it did.
func (s *soak) runFaults() string {
	p, d, did := s.proxy, *soakDuration, []string{}
	at := func(when time.Duration, what string, fault func()) bool {
		if !s.b.sleep(time.Until(s.t0.Add(when))) {
			return false
		}
		logf("  faultproxy: %s", what)
		did = append(did, fmt.Sprintf("%s at t=%s", what, time.Since(s.t0).Round(time.Second)))
		fault()
		return true
	}
	_ = at(d/3, "every logs response stalled 10 s, then healed", func() { p.Stall(); s.b.sleep(10 * time.Second); p.Heal() }) &&
		at(d/2, "a 15 s outage of the daemon (every connection closed, new ones closed at once), then healed",
			func() { p.Outage(); s.b.sleep(15 * time.Second); p.Heal() }) &&
		at(2*d/3, "one logs response cut mid-frame", func() {
			select {
			case <-p.CutMidFrame():
			case <-time.After(30 * time.Second):
				p.Heal()
				did = append(did, "no stream carried two frames within 30 s of arming the cut")
			}
		})
	return strings.Join(did, "; ")
}
