package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dockerlogs/fluent-bit-docker-logs/internal/faultproxy"
)

// soakRow is one 10-second sample of the soak.
type soakRow struct {
	T          float64 // s since the start
	HostRSS    int64
	HostFDs    int
	HostThr    int
	TwinGor    int
	TwinRSS    int64
	TwinFDs    int
	HostRecs   int
	TwinRecs   int
	Containers int // started and not yet removed
}

// soakKind is how one wave container behaves.
type soakKind struct {
	name     string
	args     []string
	stopIn   time.Duration // > 0: docker stop after this
	rmAtOnce bool          // removed as soon as it exited (like --rm)
}

var soakKinds = []soakKind{
	{name: "exits", args: []string{"-lines", "300", "-interval", "20ms", "-stream", "both", "-size", "100"}},
	{name: "burst-rm", args: []string{"-lines", "50", "-size", "100"}, rmAtOnce: true},
	{name: "stopped", args: []string{"-lines", "100000", "-interval", "10ms", "-size", "100", "-hold"}, stopIn: 3 * time.Second},
	{name: "exits-slow", args: []string{"-lines", "200", "-interval", "25ms", "-stream", "stderr", "-size", "100"}},
}

// preWave is the twin's goroutines and the host's fds as a wave starts.
type preWave struct {
	Wave       int `json:"wave"`
	Goroutines int `json:"twin_goroutines"`
	FDs        int `json:"host_fds"`
}

const soakCase = "soak"

// soak is one run of -soak: the plugin in the test host and its twin, the
// containers it starts, and what each must have delivered. runSoak's
// goroutine owns the fields above mu; wave goroutines write those below it.
type soak struct {
	b     *bench
	host  *runner
	twin  *runner           // nil with -twin=false
	proxy *faultproxy.Proxy // nil with -soak-faults=false
	// faults says what the fault schedule did; written by its goroutine,
	// read after faultsDone.
	faults     string
	faultsDone sync.WaitGroup
	t0         time.Time
	steady     []string
	csvPath    string
	csv        *bufio.Writer
	rows       []soakRow
	pre        []preWave
	wave       int
	waves      sync.WaitGroup // wave goroutines; finish waits

	mu           sync.Mutex
	want         map[string]int // container -> last seq, for the kept ones
	fastRm       map[string]int // the same for those removed at once
	live         int            // started and not yet removed
	ids          []string       // every container started, removed at the end
	lateRemovals int            // kept ones removed unread after a minute
	waveErrs     []error
}

func (b *bench) runSoak() error {
	cfg := b.cfg
	logf("soak: %s, Stream_Refresh=%s, %d steady containers, a wave of %d containers every %s",
		cfg.soakDuration, cfg.soakRefresh, cfg.soakSteady, cfg.soakWaveSize, cfg.soakWave)
	s := &soak{b: b, faults: "off (-soak-faults=false)", want: map[string]int{}, fastRm: map[string]int{}}
	if err := s.start(); err != nil {
		return err
	}
	defer s.close()
	if err := s.startSteady(); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(cfg.out, "soak.csv"))
	if err != nil {
		return err
	}
	defer f.Close()
	s.csvPath, s.csv = f.Name(), bufio.NewWriter(f)
	fmt.Fprintln(s.csv, "t_s,host_rss_mb,host_fds,host_threads,twin_goroutines,twin_rss_mb,twin_fds,host_records,twin_records,containers")
	s.record(s.sample())
	// The baseline: every steady container's reader runs.
	for _, r := range s.runners() {
		r.wait(time.Minute, func() bool {
			return !slices.ContainsFunc(s.steady, func(id string) bool { return r.acct.perContainer[id] == nil })
		})
	}
	time.Sleep(3 * time.Second)
	s.record(s.sample())
	if s.proxy != nil {
		s.faults = "pending"
		s.faultsDone.Add(1)
		go func() {
			defer s.faultsDone.Done()
			s.faults = b.soakFaults(s.proxy, s.t0, cfg.soakDuration)
		}()
	}
	s.loop()
	s.waves.Wait()
	s.faultsDone.Wait()
	// One more sample with only the steady containers left: the end of
	// the series.
	s.record(s.sample())
	return s.finish()
}

// start runs the host and the twin, through the fault proxy with
// -soak-faults: it stalls every logs response for a while at a third of
// the run, makes the daemon unreachable at half of it and cuts one
// response mid-frame at two thirds.
func (s *soak) start() error {
	cfg := s.b.cfg
	props := s.b.props(soakCase, map[string]string{"Stream_Refresh": cfg.soakRefresh})
	if cfg.soakFaults {
		var err error
		if s.proxy, err = faultproxy.New("unix://"+cfg.sock, logf); err != nil {
			return err
		}
		props["Docker_Host"] = s.proxy.Host()
	}
	var err error
	if s.host, err = startRunner(cfg.paths, "host", soakCase, props, true); err != nil {
		s.close()
		return err
	}
	if cfg.twin {
		if s.twin, err = startRunner(cfg.paths, "twin", soakCase, props, false); err != nil {
			s.host.stop()
			s.close()
			return err
		}
	}
	s.t0 = time.Now()
	s.host.startWindow()
	return nil
}

// close removes the containers, the runners' OUT files and the proxy.
func (s *soak) close() {
	s.mu.Lock()
	ids := slices.Clone(s.ids)
	s.mu.Unlock()
	s.b.removeAll(ids)
	for _, r := range s.runners() {
		r.removeOut()
	}
	if s.proxy != nil {
		s.proxy.Close()
	}
}

func (s *soak) runners() []*runner {
	var out []*runner
	for _, r := range []*runner{s.host, s.twin} {
		if r != nil {
			out = append(out, r)
		}
	}
	return out
}

func (s *soak) startSteady() error {
	b := s.b
	steady, err := b.eng.runMany(b.ctx, b.cfg.soakSteady, b.cfg.workers, func(int) spec {
		return b.loggen(soakCase, "-lines", "1000000000", "-interval", "50ms", "-stream", "both", "-size", "100", "-hold")
	}, logf)
	s.steady = steady
	s.started(steady)
	return err
}

// started notes containers that a wave or the steady set started.
func (s *soak) started(ids []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ids = append(s.ids, ids...)
	for _, id := range ids {
		if id != "" {
			s.live++
		}
	}
}

func (s *soak) sample() soakRow {
	hs := sampleRunner(s.host, s.t0)
	r := soakRow{T: hs.T, HostRSS: hs.RSS, HostFDs: hs.FDs, HostThr: hs.Threads, HostRecs: hs.Records, TwinGor: -1}
	if s.twin != nil {
		ts := sampleRunner(s.twin, s.t0)
		r.TwinGor, r.TwinRSS, r.TwinFDs, r.TwinRecs = ts.Goroutines, ts.RSS, ts.FDs, ts.Records
	}
	s.mu.Lock()
	r.Containers = s.live
	s.mu.Unlock()
	return r
}

// record keeps a sample and writes it to the CSV at once, so a run cut
// short keeps its samples.
func (s *soak) record(r soakRow) {
	s.rows = append(s.rows, r)
	fmt.Fprintf(s.csv, "%.1f,%.2f,%d,%d,%d,%.2f,%d,%d,%d,%d\n", r.T, float64(r.HostRSS)/1e6, r.HostFDs, r.HostThr,
		r.TwinGor, float64(r.TwinRSS)/1e6, r.TwinFDs, r.HostRecs, r.TwinRecs, r.Containers)
	s.csv.Flush()
}

// loop samples every 10 s and starts a wave every -soak-wave until the
// duration is over; the last waves must have time to finish inside it.
func (s *soak) loop() {
	cfg := s.b.cfg
	deadline := s.t0.Add(cfg.soakDuration)
	lastWave := deadline.Add(-15 * time.Second)
	sampleTick := time.NewTicker(10 * time.Second)
	defer sampleTick.Stop()
	waveTick := time.NewTicker(cfg.soakWave)
	defer waveTick.Stop()
	s.startWave()
	for {
		select {
		case <-s.b.ctx.Done():
			return
		case <-sampleTick.C:
			r := s.sample()
			s.record(r)
			logf("  t=%4.0fs containers %3d | host rss %s fds %d thr %d | twin goroutines %d rss %s fds %d | records %d / %d",
				r.T, r.Containers, mb(r.HostRSS), r.HostFDs, r.HostThr, r.TwinGor, mb(r.TwinRSS), r.TwinFDs, r.HostRecs, r.TwinRecs)
			if time.Now().After(deadline) {
				return
			}
		case <-waveTick.C:
			if time.Now().Before(lastWave) {
				s.startWave()
			}
		}
	}
}

func (s *soak) startWave() {
	s.wave++
	w := s.wave
	r := s.sample()
	s.pre = append(s.pre, preWave{Wave: w, Goroutines: r.TwinGor, FDs: r.HostFDs})
	s.waves.Add(1)
	go func() {
		defer s.waves.Done()
		if err := s.runWave(w); err != nil {
			s.fail(err)
			logf("  wave %d: %v", w, err)
		}
	}()
}

func (s *soak) fail(err error) {
	s.mu.Lock()
	s.waveErrs = append(s.waveErrs, err)
	s.mu.Unlock()
}

// runWave starts -soak-wave-size containers of the kinds in turn and runs
// each to its end.
func (s *soak) runWave(w int) error {
	b := s.b
	started, err := b.eng.runMany(b.ctx, b.cfg.soakWaveSize, b.cfg.workers, func(i int) spec {
		return b.loggen(soakCase, soakKinds[i%len(soakKinds)].args...)
	}, logf)
	s.started(started)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	var mu sync.Mutex // guards errs
	var errs []error
	for i, id := range started {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.runContainer(id, soakKinds[i%len(soakKinds)]); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return fmt.Errorf("wave %d: %v", w, errs)
	}
	return nil
}

// runContainer waits for a wave container to end (stopping it if its kind
// says so), notes its last line, waits until it is read unless its kind is
// removed at once, and removes it.
func (s *soak) runContainer(id string, k soakKind) error {
	ctx := context.Background()
	if k.stopIn > 0 {
		time.Sleep(k.stopIn)
		if err := s.b.eng.stop(ctx, id); err != nil {
			s.fail(err)
		}
	}
	if err := s.b.eng.wait(ctx, id); err != nil {
		return err
	}
	seq, err := s.b.eng.lastSeq(ctx, id)
	if err != nil {
		return err
	}
	if !k.rmAtOnce {
		s.readAll(id, seq)
	}
	rmErr := s.b.eng.remove(ctx, id)
	s.mu.Lock()
	defer s.mu.Unlock()
	if k.rmAtOnce {
		s.fastRm[id] = seq
	} else {
		s.want[id] = seq
	}
	s.live--
	return rmErr
}

// readAll waits until host and twin have every line of a container that
// has exited, up to a minute: containers are removed once read (except
// the burst-rm kind), so a stall costs no line.
func (s *soak) readAll(id string, n int) {
	have := func(r *runner) func() bool {
		return func() bool { c := r.acct.perContainer[id]; return n == 0 || c != nil && c.count >= n }
	}
	ok := s.host.wait(time.Minute, have(s.host))
	if s.twin != nil {
		ok = s.twin.wait(10*time.Second, have(s.twin)) && ok
	}
	if !ok {
		s.mu.Lock()
		s.lateRemovals++
		s.mu.Unlock()
	}
}

// soakCheck is what one runner delivered of the kept and the burst-rm
// containers, and how it exited.
type soakCheck struct {
	kept, fast checkResult
	exit       string
}

// finish stops the steady containers, waits for their last lines, checks
// what each runner delivered, stops the runners and reports.
func (s *soak) finish() error {
	logf("  stopping the steady containers")
	if err := each(s.steady, s.b.cfg.workers, func(id string) error { return s.b.eng.stop(context.Background(), id) }); err != nil {
		logf("  stop: %v", err)
	}
	for _, id := range s.steady {
		n, err := s.b.eng.lastSeq(context.Background(), id)
		if err != nil {
			logf("  last line of %s: %v", id[:12], err)
		}
		s.mu.Lock()
		s.want[id] = n
		s.mu.Unlock()
	}
	s.mu.Lock()
	want, all := maps2(s.want, s.fastRm)
	s.mu.Unlock()
	s.host.wait(time.Minute, func() bool { return s.host.haveAll(want) })
	if s.twin != nil {
		s.twin.wait(30*time.Second, func() bool { return s.twin.haveAll(want) })
	}
	// A second more: duplicates would show up in the next collect.
	s.host.wait(1500*time.Millisecond, func() bool { return false })
	check := func(r *runner) soakCheck {
		c := soakCheck{kept: r.check(want), fast: r.check(s.fastRm)}
		c.fast.Extra = 0 // the kept containers' lines
		c.kept.Extra = r.check(all).Extra
		c.exit = r.stop()
		return c
	}
	hc := check(s.host)
	var tc soakCheck
	if s.twin != nil {
		tc = check(s.twin)
	}
	return s.report(hc, tc)
}

// maps2 copies want and returns it with fast added.
func maps2(want, fast map[string]int) (wantCopy, all map[string]int) {
	wantCopy, all = map[string]int{}, map[string]int{}
	for k, v := range want {
		wantCopy[k], all[k] = v, v
	}
	for k, v := range fast {
		all[k] = v
	}
	return wantCopy, all
}

// soakSlope is a series' growth per minute.
type soakSlope struct {
	Name     string  `json:"name"`
	PerMin   float64 `json:"per_minute"`
	First    float64 `json:"first"`
	Last     float64 `json:"last"`
	Unit     string  `json:"unit"`
	ExclWarm float64 `json:"per_minute_after_first_minute"`
}

// column is one field of the samples where it is known (not negative),
// with their times in minutes.
func (s *soak) column(f func(r soakRow) float64) (x, y []float64) {
	for _, r := range s.rows {
		if v := f(r); v >= 0 {
			x, y = append(x, r.T/60), append(y, v)
		}
	}
	return x, y
}

// chart draws the series into soak.svg and returns their slopes by name.
func (s *soak) chart() (svgPath string, slopes []soakSlope, err error) {
	cfg := s.b.cfg
	mbOf := func(v int64) float64 { return float64(v) / 1e6 }
	// The twin reports goroutines from its first collect tick on: -1 before.
	gx, twinGor := s.column(func(r soakRow) float64 { return float64(r.TwinGor) })
	hfx, hostFDs := s.column(func(r soakRow) float64 { return float64(r.HostFDs) })
	hrx, hostRSS := s.column(func(r soakRow) float64 { return mbOf(r.HostRSS) })
	tfx, twinFDs := s.column(func(r soakRow) float64 { return float64(r.TwinFDs) })
	trx, twinRSS := s.column(func(r soakRow) float64 { return mbOf(r.TwinRSS) })
	panels := []panel{
		{title: "goroutines (twin: the capture in-process)", unit: "goroutines", lines: []series{{name: "twin", color: "#1f77b4", x: gx, y: twinGor}}},
		{title: "open file descriptors", unit: "fds", lines: []series{{name: "host (.so)", color: "#d62728", x: hfx, y: hostFDs}, {name: "twin", color: "#1f77b4", x: tfx, y: twinFDs}}},
		{title: "resident memory", unit: "MB", lines: []series{{name: "host (.so)", color: "#d62728", x: hrx, y: hostRSS}, {name: "twin", color: "#1f77b4", x: trx, y: twinRSS}}},
	}
	if s.twin == nil {
		panels[0].lines = nil
	}
	svgPath = filepath.Join(cfg.out, "soak.svg")
	title := fmt.Sprintf("docker_logs soak, %s, Stream_Refresh=%s, %d waves", cfg.soakDuration, cfg.soakRefresh, s.wave)
	if err := os.WriteFile(svgPath, []byte(chartSVG(title, panels)), 0o644); err != nil {
		return "", nil, err
	}
	add := func(n, unit string, x, y []float64) {
		if len(y) == 0 {
			return
		}
		m, _ := slope(x, y)
		var wx, wy []float64
		for i := range x {
			if x[i] >= 1 {
				wx, wy = append(wx, x[i]), append(wy, y[i])
			}
		}
		mw, _ := slope(wx, wy)
		slopes = append(slopes, soakSlope{Name: n, PerMin: m, ExclWarm: mw, First: y[0], Last: y[len(y)-1], Unit: unit})
	}
	if s.twin != nil {
		add("twin goroutines", "goroutines", gx, twinGor)
	}
	add("host fds", "fds", hfx, hostFDs)
	add("host RSS", "MB", hrx, hostRSS)
	if s.twin != nil {
		add("twin fds", "fds", tfx, twinFDs)
		add("twin RSS", "MB", trx, twinRSS)
	}
	return svgPath, slopes, nil
}

// report writes the soak's sections, raw figures and goals.
func (s *soak) report(hc, tc soakCheck) error {
	b, cfg := s.b, s.b.cfg
	svgPath, slopes, err := s.chart()
	if err != nil {
		return err
	}
	sec := section{Title: "Soak: growth per minute (least squares over the 10 s samples)",
		Header: []string{"series", "first", "last", "slope/min (all)", "slope/min (after 1st min)"}}
	perMin := map[string]float64{}
	for _, r := range slopes {
		sec.Rows = append(sec.Rows, []string{r.Name, fmt.Sprintf("%.1f %s", r.First, r.Unit), fmt.Sprintf("%.1f %s", r.Last, r.Unit),
			signed(r.PerMin), signed(r.ExclWarm)})
		perMin[r.Name] = r.ExclWarm
	}
	sec.Notes = append(sec.Notes, fmt.Sprintf("samples: %s (%d rows); chart: %s", s.csvPath, len(s.rows), svgPath))
	b.rep.section(sec)
	base, minPre, maxPre, endGor := s.goroutineFigures()
	b.rep.section(s.lifecycle(hc, tc, fmt.Sprintf("%d / %d / %d", base, minPre, maxPre), endGor))
	b.rep.raw("soak", map[string]any{"slopes": slopes, "pre_wave": s.pre, "host_check": hc.kept, "host_check_burst_rm": hc.fast,
		"twin_check": tc.kept, "twin_check_burst_rm": tc.fast, "rows": s.rows, "wave_errors": fmt.Sprint(s.waveErrs)})
	if s.proxy != nil {
		b.rep.raw("faultproxy", s.proxy.Stats())
	}
	s.notes()
	b.rep.goal("6a", "soak: every line of kept containers (host; twin)", checkCell(hc.kept)+"; "+checkCell(tc.kept), "all, once",
		boolp(hc.kept.ok() && (s.twin == nil || tc.kept.ok())))
	if s.twin != nil {
		back := maxPre-base <= 3 && endGor-base <= 3
		b.rep.goal("6b", "soak: twin goroutines back to baseline before each wave (first/max before a wave; end)",
			fmt.Sprintf("%d/%d; %d", base, maxPre, endGor), "back to baseline", boolp(back))
		b.rep.goal("6d", "soak: twin goroutines growth per minute (after the first minute)",
			signed(perMin["twin goroutines"]), "flat", boolp(abs(perMin["twin goroutines"]) < 0.5))
	}
	fdSlope, rssSlope := perMin["host fds"], perMin["host RSS"]
	b.rep.goal("6c", "soak: host fds and RSS growth per minute (after the first minute)",
		fmt.Sprintf("%s fds/min, %s MB/min", signed(fdSlope), signed(rssSlope)), "flat", boolp(abs(fdSlope) < 1 && rssSlope < 1))
	if err := b.rep.write(); err != nil {
		return err
	}
	b.rep.printAll()
	logf("wrote %s, %s, %s", filepath.Join(cfg.out, "soak.md"), s.csvPath, svgPath)
	return nil
}

// goroutineFigures are the twin's goroutines before the first wave, the
// least and most before any wave, and at the end.
func (s *soak) goroutineFigures() (base, minPre, maxPre, end int) {
	base, minPre, maxPre, end = -1, 1<<30, -1, -1
	for _, p := range s.pre {
		minPre, maxPre = min(minPre, p.Goroutines), max(maxPre, p.Goroutines)
	}
	if len(s.pre) > 0 {
		base = s.pre[0].Goroutines
	}
	if len(s.rows) > 0 {
		end = s.rows[len(s.rows)-1].TwinGor
	}
	return base, minPre, maxPre, end
}

func (s *soak) lifecycle(hc, tc soakCheck, preGor string, endGor int) section {
	cfg := s.b.cfg
	s.host.mu.Lock()
	lat := slices.Clone(s.host.acct.latencyMS)
	s.host.mu.Unlock()
	slices.Sort(lat)
	sec := section{Title: "Soak: lines and lifecycle", Header: []string{"measure", "value"}}
	sec.Rows = [][]string{
		{"waves", fmt.Sprintf("%d x %d containers (kinds: exits, burst-rm, stopped after 3 s, exits-slow) + %d steady", s.wave, cfg.soakWaveSize, cfg.soakSteady)},
		{"host: containers kept until read (removed after at most a minute)", checkCell(hc.kept) + fmt.Sprintf(" (%d removed unread after the minute)", s.lateRemovals)},
		{"host: burst-rm containers (50 lines, removed as soon as they exit, like --rm)", checkCell(hc.fast)},
		{"twin: containers kept until read", checkCell(tc.kept)},
		{"twin: burst-rm containers", checkCell(tc.fast)},
		{"twin goroutines before each wave (first / min / max)", preGor},
		{"twin goroutines at the end (only steady containers)", strconv.Itoa(endGor)},
		{"latency p50 / p99 / max", fmt.Sprintf("%.0f / %.0f / %.0f ms (%d records)", percentile(lat, .5), percentile(lat, .99), maxF(lat), len(lat))},
		{"host exit", hc.exit},
		{"twin exit", tc.exit},
		{"faults (stall, outage, cut)", s.faults},
	}
	if s.proxy != nil {
		st := s.proxy.Stats()
		sec.Rows = append(sec.Rows, []string{"faultproxy", fmt.Sprintf("%d connections, %d logs requests, %d cut in a header, %d in a payload", st.Conns, st.LogsRequests, st.HeaderCuts, st.PayloadCuts)})
	}
	return sec
}

// notes passes the runners' warnings and the host's decoding error on.
func (s *soak) notes() {
	for _, w := range s.host.warningSummary() {
		logf("  host: %s", w)
		s.b.rep.note("host: %s", w)
	}
	if s.twin != nil {
		for _, w := range s.twin.warningSummary() {
			logf("  twin: %s", w)
		}
	}
	if err := s.host.err(); err != nil {
		s.b.rep.note("host records: %v", err)
	}
}

// soakFaults stalls every logs response for 10 s at a third of the run,
// makes the daemon unreachable for 15 s at half of it (as the plugin sees a
// daemon restart: every stream and the events stream end, reconnections
// fail), cuts one response in the middle of a frame at two thirds, and
// says what it did.
func (b *bench) soakFaults(p *faultproxy.Proxy, t0 time.Time, d time.Duration) string {
	sleepUntil := func(t time.Time) bool {
		select {
		case <-b.ctx.Done():
			return false
		case <-time.After(time.Until(t)):
			return true
		}
	}
	var did []string
	if !sleepUntil(t0.Add(d / 3)) {
		return "not reached"
	}
	at := time.Since(t0).Round(time.Second)
	logf("  faultproxy: stalling every logs response for 10 s")
	p.Stall()
	sleepUntil(time.Now().Add(10 * time.Second))
	p.Heal()
	did = append(did, fmt.Sprintf("every logs response stalled 10 s at t=%s, then healed", at))
	if !sleepUntil(t0.Add(d / 2)) {
		return strings.Join(did, "; ")
	}
	at = time.Since(t0).Round(time.Second)
	logf("  faultproxy: daemon outage for 15 s (every connection closed, new ones refused)")
	p.Outage()
	sleepUntil(time.Now().Add(15 * time.Second))
	p.Heal()
	did = append(did, fmt.Sprintf("a 15 s outage of the daemon at t=%s (every connection closed, new ones closed at once), then healed", at))
	if !sleepUntil(t0.Add(2 * d / 3)) {
		return strings.Join(did, "; ")
	}
	at = time.Since(t0).Round(time.Second)
	logf("  faultproxy: cutting one logs response mid-frame")
	select {
	case <-p.CutMidFrame():
		did = append(did, fmt.Sprintf("one logs response cut mid-frame at t=%s", at))
	case <-time.After(30 * time.Second):
		p.Heal()
		did = append(did, "a mid-frame cut was armed at t="+at.String()+" but no stream carried two frames within 30 s")
	}
	return strings.Join(did, "; ")
}

func maxF(v []float32) float64 {
	if len(v) == 0 {
		return 0
	}
	return float64(v[len(v)-1])
}

func abs(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}
