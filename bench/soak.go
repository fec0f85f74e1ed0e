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

func (b *bench) runSoak() error {
	const name = "soak"
	cfg := b.cfg
	logf("soak: %s, Stream_Refresh=%s, %d steady containers, a wave of %d containers every %s",
		cfg.soakDuration, cfg.soakRefresh, cfg.soakSteady, cfg.soakWaveSize, cfg.soakWave)
	// Faults: the plugin reaches the daemon through internal/faultproxy,
	// which stalls every logs response for a while at a third of the run,
	// makes the daemon unreachable at half of it and cuts one response
	// mid-frame at two thirds.
	stall := "off (-soak-faults=false)"
	props := b.props(name, map[string]string{"Stream_Refresh": cfg.soakRefresh})
	var proxy *faultproxy.Proxy
	var err error
	if cfg.soakFaults {
		if proxy, err = faultproxy.New("unix://"+cfg.sock, logf); err != nil {
			return err
		}
		defer proxy.Close()
		props["Docker_Host"] = proxy.Host()
		stall = "pending"
	}
	h, err := startRunner(cfg.paths, "host", name, props, true)
	if err != nil {
		return err
	}
	defer h.removeOut()
	var tw *runner
	if cfg.twin {
		if tw, err = startRunner(cfg.paths, "twin", name, props, false); err != nil {
			h.stop()
			return err
		}
		defer tw.removeOut()
	}
	t0 := time.Now()
	deadline := t0.Add(cfg.soakDuration)
	h.startWindow()

	var mu sync.Mutex // guards want, fastRm, live, ids
	want := map[string]int{}
	fastRm := map[string]int{}
	live := 0
	var ids []string
	defer func() {
		mu.Lock()
		all := append([]string(nil), ids...)
		mu.Unlock()
		b.removeAll(all)
	}()

	steady, err := b.eng.runMany(b.ctx, cfg.soakSteady, cfg.workers, func(int) spec {
		return b.loggen(name, "-lines", "1000000000", "-interval", "50ms", "-stream", "both", "-size", "100", "-hold")
	}, logf)
	mu.Lock()
	ids = append(ids, steady...)
	live += len(steady)
	mu.Unlock()
	if err != nil {
		return err
	}

	// Sampler: every 10 s into the CSV.
	csvPath := filepath.Join(cfg.out, "soak.csv")
	f, err := os.Create(csvPath)
	if err != nil {
		return err
	}
	defer f.Close()
	cw := bufio.NewWriter(f)
	fmt.Fprintln(cw, "t_s,host_rss_mb,host_fds,host_threads,twin_goroutines,twin_rss_mb,twin_fds,host_records,twin_records,containers")
	var rows []soakRow
	sample := func() soakRow {
		hs := sampleRunner(h, t0)
		r := soakRow{T: hs.T, HostRSS: hs.RSS, HostFDs: hs.FDs, HostThr: hs.Threads, HostRecs: hs.Records, TwinGor: -1}
		if tw != nil {
			ts := sampleRunner(tw, t0)
			r.TwinGor, r.TwinRSS, r.TwinFDs, r.TwinRecs = ts.Goroutines, ts.RSS, ts.FDs, ts.Records
		}
		mu.Lock()
		r.Containers = live
		mu.Unlock()
		return r
	}
	record := func(r soakRow) {
		rows = append(rows, r)
		fmt.Fprintf(cw, "%.1f,%.2f,%d,%d,%d,%.2f,%d,%d,%d,%d\n", r.T, float64(r.HostRSS)/1e6, r.HostFDs, r.HostThr,
			r.TwinGor, float64(r.TwinRSS)/1e6, r.TwinFDs, r.HostRecs, r.TwinRecs, r.Containers)
		cw.Flush()
	}
	record(sample())

	// The baseline: every steady container's reader runs.
	steadyReading := func(r *runner) func() bool {
		return func() bool {
			for _, id := range steady {
				if r.acct.perContainer[id] == nil {
					return false
				}
			}
			return true
		}
	}
	h.wait(time.Minute, steadyReading(h))
	if tw != nil {
		tw.wait(time.Minute, steadyReading(tw))
	}
	time.Sleep(3 * time.Second)
	record(sample())

	// readAll waits until host and twin have every line of a container
	// that has exited, up to a minute: containers are removed once read
	// (except the burst-rm kind), so a stall costs no line.
	var lateRemovals int
	readAll := func(id string, n int) {
		have := func(r *runner) func() bool {
			return func() bool { s := r.acct.perContainer[id]; return n == 0 || s != nil && s.count >= n }
		}
		ok := h.wait(time.Minute, have(h))
		if tw != nil {
			ok = tw.wait(10*time.Second, have(tw)) && ok
		}
		if !ok {
			mu.Lock()
			lateRemovals++
			mu.Unlock()
		}
	}

	var faultsDone sync.WaitGroup
	if proxy != nil {
		faultsDone.Add(1)
		go func() {
			defer faultsDone.Done()
			stall = b.soakFaults(proxy, t0, cfg.soakDuration)
		}()
	}

	var waves sync.WaitGroup
	var waveErrs []error
	type preWave struct {
		Wave       int `json:"wave"`
		Goroutines int `json:"twin_goroutines"`
		FDs        int `json:"host_fds"`
	}
	var pre []preWave
	sampleTick := time.NewTicker(10 * time.Second)
	defer sampleTick.Stop()
	waveTick := time.NewTicker(cfg.soakWave)
	defer waveTick.Stop()
	wave := 0
	startWave := func() {
		wave++
		w := wave
		s := sample()
		pre = append(pre, preWave{Wave: w, Goroutines: s.TwinGor, FDs: s.HostFDs})
		waves.Add(1)
		go func() {
			defer waves.Done()
			if err := b.soakWave(name, w, cfg.soakWaveSize, readAll, &mu, want, fastRm, &live, &ids); err != nil {
				mu.Lock()
				waveErrs = append(waveErrs, err)
				mu.Unlock()
				logf("  wave %d: %v", w, err)
			}
		}()
	}
	// The last waves must have time to finish inside the duration.
	lastWave := deadline.Add(-15 * time.Second)
	startWave()
loop:
	for {
		select {
		case <-b.ctx.Done():
			break loop
		case <-sampleTick.C:
			r := sample()
			record(r)
			logf("  t=%4.0fs containers %3d | host rss %s fds %d thr %d | twin goroutines %d rss %s fds %d | records %d / %d",
				r.T, r.Containers, mb(r.HostRSS), r.HostFDs, r.HostThr, r.TwinGor, mb(r.TwinRSS), r.TwinFDs, r.HostRecs, r.TwinRecs)
			if time.Now().After(deadline) {
				break loop
			}
		case <-waveTick.C:
			if time.Now().Before(lastWave) {
				startWave()
			}
		}
	}
	waves.Wait()
	faultsDone.Wait()
	// One more sample with only the steady containers left: the end of the
	// series.
	record(sample())

	logf("  stopping the steady containers")
	if err := each(steady, cfg.workers, func(id string) error { return b.eng.stop(context.Background(), id) }); err != nil {
		logf("  stop: %v", err)
	}
	for _, id := range steady {
		n, err := b.eng.lastSeq(context.Background(), id)
		if err != nil {
			logf("  last line of %s: %v", id[:12], err)
		}
		mu.Lock()
		want[id] = n
		mu.Unlock()
	}
	all := map[string]int{}
	mu.Lock()
	for k, v := range want {
		all[k] = v
	}
	for k, v := range fastRm {
		all[k] = v
	}
	mu.Unlock()
	h.wait(time.Minute, func() bool { return h.haveAll(want) })
	if tw != nil {
		tw.wait(30*time.Second, func() bool { return tw.haveAll(want) })
	}
	h.wait(1500*time.Millisecond, func() bool { return false })
	split := func(r *runner) (kept, fast checkResult) {
		kept, fast = r.check(want), r.check(fastRm)
		kept.Extra, fast.Extra = 0, 0 // each other's lines
		kept.Extra = r.check(all).Extra
		return kept, fast
	}
	hc, hfast := split(h)
	hexit := h.stop()
	var tc, tfast checkResult
	var texit string
	if tw != nil {
		tc, tfast = split(tw)
		texit = tw.stop()
	}
	h.mu.Lock()
	lat := append([]float32(nil), h.acct.latencyMS...)
	h.mu.Unlock()
	slices.Sort(lat)

	// Slopes per minute and the chart.
	xs := make([]float64, len(rows))
	col := func(f func(r soakRow) float64) []float64 {
		v := make([]float64, len(rows))
		for i, r := range rows {
			v[i] = f(r)
		}
		return v
	}
	for i, r := range rows {
		xs[i] = r.T / 60
	}
	hostRSS := col(func(r soakRow) float64 { return float64(r.HostRSS) / 1e6 })
	hostFDs := col(func(r soakRow) float64 { return float64(r.HostFDs) })
	// The twin reports goroutines from its first collect tick on.
	var gx, twinGor []float64
	for i, r := range rows {
		if r.TwinGor >= 0 {
			gx, twinGor = append(gx, xs[i]), append(twinGor, float64(r.TwinGor))
		}
	}
	twinRSS := col(func(r soakRow) float64 { return float64(r.TwinRSS) / 1e6 })
	twinFDs := col(func(r soakRow) float64 { return float64(r.TwinFDs) })
	panels := []panel{
		{title: "goroutines (twin: the capture in-process)", unit: "goroutines", lines: []series{{name: "twin", color: "#1f77b4", x: gx, y: twinGor}}},
		{title: "open file descriptors", unit: "fds", lines: []series{{name: "host (.so)", color: "#d62728", x: xs, y: hostFDs}, {name: "twin", color: "#1f77b4", x: xs, y: twinFDs}}},
		{title: "resident memory", unit: "MB", lines: []series{{name: "host (.so)", color: "#d62728", x: xs, y: hostRSS}, {name: "twin", color: "#1f77b4", x: xs, y: twinRSS}}},
	}
	if tw == nil {
		panels[0].lines = nil
	}
	svgPath := filepath.Join(cfg.out, "soak.svg")
	if err := os.WriteFile(svgPath, []byte(chartSVG(fmt.Sprintf("docker_logs soak, %s, Stream_Refresh=%s, %d waves", cfg.soakDuration, cfg.soakRefresh, wave), panels)), 0o644); err != nil {
		return err
	}

	type slopeRow struct {
		Name     string  `json:"name"`
		PerMin   float64 `json:"per_minute"`
		First    float64 `json:"first"`
		Last     float64 `json:"last"`
		Unit     string  `json:"unit"`
		ExclWarm float64 `json:"per_minute_after_first_minute"`
	}
	var slopes []slopeRow
	addSlope := func(n, unit string, x, y []float64) {
		if len(y) == 0 {
			return
		}
		m, _ := slope(x, y)
		var mw float64
		var wx, wy []float64
		for i := range x {
			if x[i] >= 1 {
				wx, wy = append(wx, x[i]), append(wy, y[i])
			}
		}
		mw, _ = slope(wx, wy)
		slopes = append(slopes, slopeRow{Name: n, PerMin: m, ExclWarm: mw, First: y[0], Last: y[len(y)-1], Unit: unit})
	}
	if tw != nil {
		addSlope("twin goroutines", "goroutines", gx, twinGor)
	}
	addSlope("host fds", "fds", xs, hostFDs)
	addSlope("host RSS", "MB", xs, hostRSS)
	if tw != nil {
		addSlope("twin fds", "fds", xs, twinFDs)
		addSlope("twin RSS", "MB", xs, twinRSS)
	}

	s := section{Title: "Soak: growth per minute (least squares over the 10 s samples)",
		Header: []string{"series", "first", "last", "slope/min (all)", "slope/min (after 1st min)"}}
	for _, r := range slopes {
		s.Rows = append(s.Rows, []string{r.Name, fmt.Sprintf("%.1f %s", r.First, r.Unit), fmt.Sprintf("%.1f %s", r.Last, r.Unit),
			signed(r.PerMin), signed(r.ExclWarm)})
	}
	s.Notes = append(s.Notes, fmt.Sprintf("samples: %s (%d rows); chart: %s", csvPath, len(rows), svgPath))
	b.rep.section(s)

	minPre, maxPre := 1<<30, -1
	for _, p := range pre {
		minPre, maxPre = min(minPre, p.Goroutines), max(maxPre, p.Goroutines)
	}
	base := -1
	if len(pre) > 0 {
		base = pre[0].Goroutines
	}
	endGor := -1
	if len(rows) > 0 {
		endGor = rows[len(rows)-1].TwinGor
	}
	cs := section{Title: "Soak: lines and lifecycle", Header: []string{"measure", "value"}}
	cs.Rows = [][]string{
		{"waves", fmt.Sprintf("%d x %d containers (kinds: exits, burst-rm, stopped after 3 s, exits-slow) + %d steady", wave, cfg.soakWaveSize, cfg.soakSteady)},
		{"host: containers kept until read (removed after at most a minute)", checkCell(hc) + fmt.Sprintf(" (%d removed unread after the minute)", lateRemovals)},
		{"host: burst-rm containers (50 lines, removed as soon as they exit, like --rm)", checkCell(hfast)},
		{"twin: containers kept until read", checkCell(tc)},
		{"twin: burst-rm containers", checkCell(tfast)},
		{"twin goroutines before each wave (first / min / max)", fmt.Sprintf("%d / %d / %d", base, minPre, maxPre)},
		{"twin goroutines at the end (only steady containers)", strconv.Itoa(endGor)},
		{"latency p50 / p99 / max", fmt.Sprintf("%.0f / %.0f / %.0f ms (%d records)", percentile(lat, .5), percentile(lat, .99), maxF(lat), len(lat))},
		{"host exit", hexit},
		{"twin exit", texit},
		{"faults (stall, outage, cut)", stall},
	}
	b.rep.section(cs)
	if proxy != nil {
		st := proxy.Stats()
		b.rep.raw("faultproxy", st)
		cs.Rows = append(cs.Rows, []string{"faultproxy", fmt.Sprintf("%d connections, %d logs requests, %d cut in a header, %d in a payload", st.Conns, st.LogsRequests, st.HeaderCuts, st.PayloadCuts)})
	}
	b.rep.raw("soak", map[string]any{"slopes": slopes, "pre_wave": pre, "host_check": hc, "host_check_burst_rm": hfast,
		"twin_check": tc, "twin_check_burst_rm": tfast, "rows": rows, "wave_errors": fmt.Sprint(waveErrs)})
	for _, w := range h.warningSummary() {
		logf("  host: %s", w)
		b.rep.note("host: %s", w)
	}
	if tw != nil {
		for _, w := range tw.warningSummary() {
			logf("  twin: %s", w)
		}
	}
	if err := h.err(); err != nil {
		b.rep.note("host records: %v", err)
	}

	var gorSlope, fdSlope, rssSlope float64
	for _, r := range slopes {
		switch r.Name {
		case "twin goroutines":
			gorSlope = r.ExclWarm
		case "host fds":
			fdSlope = r.ExclWarm
		case "host RSS":
			rssSlope = r.ExclWarm
		}
	}
	b.rep.goal("6a", "soak: every line of kept containers (host; twin)", checkCell(hc)+"; "+checkCell(tc), "all, once", boolp(hc.ok() && (tw == nil || tc.ok())))
	if tw != nil {
		back := maxPre-base <= 3 && endGor-base <= 3
		b.rep.goal("6b", "soak: twin goroutines back to baseline before each wave (first/max before a wave; end)",
			fmt.Sprintf("%d/%d; %d", base, maxPre, endGor), "back to baseline", boolp(back))
	}
	if tw != nil {
		b.rep.goal("6d", "soak: twin goroutines growth per minute (after the first minute)",
			signed(gorSlope), "flat", boolp(abs(gorSlope) < 0.5))
	}
	b.rep.goal("6c", "soak: host fds and RSS growth per minute (after the first minute)",
		fmt.Sprintf("%s fds/min, %s MB/min", signed(fdSlope), signed(rssSlope)), "flat", boolp(abs(fdSlope) < 1 && rssSlope < 1))
	if err := b.rep.write(); err != nil {
		return err
	}
	b.rep.printAll()
	logf("wrote %s, %s, %s", filepath.Join(cfg.out, "soak.md"), csvPath, svgPath)
	return nil
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

// soakWave starts n containers of the kinds in turn and, for each, waits
// for it to end (stopping it if its kind says so), notes its last line and
// removes it.
func (b *bench) soakWave(name string, w, n int, readAll func(id string, n int), mu *sync.Mutex, want, fastRm map[string]int, live *int, ids *[]string) error {
	started, err := b.eng.runMany(b.ctx, n, b.cfg.workers, func(i int) spec {
		return b.loggen(name, soakKinds[i%len(soakKinds)].args...)
	}, logf)
	mu.Lock()
	*ids = append(*ids, started...)
	for _, id := range started {
		if id != "" {
			*live++
		}
	}
	mu.Unlock()
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	var errs []error
	for i, id := range started {
		k := soakKinds[i%len(soakKinds)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			if k.stopIn > 0 {
				time.Sleep(k.stopIn)
				if err := b.eng.stop(ctx, id); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
			if err := b.eng.wait(ctx, id); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				return
			}
			seq, err := b.eng.lastSeq(ctx, id)
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				return
			}
			if !k.rmAtOnce {
				readAll(id, seq) // kept until read (a minute at most)
			}
			rmErr := b.eng.remove(ctx, id)
			mu.Lock()
			if k.rmAtOnce {
				fastRm[id] = seq
			} else {
				want[id] = seq
			}
			*live--
			if rmErr != nil {
				errs = append(errs, rmErr)
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return fmt.Errorf("wave %d: %v", w, errs)
	}
	return nil
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
