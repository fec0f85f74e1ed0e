package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"
)

// procSample is one reading of a process.
type procSample struct {
	T          float64 `json:"t_s"`
	CPU        float64 `json:"cpu_s"`
	RSS        int64   `json:"rss_bytes"`
	FDs        int     `json:"fds"`
	Threads    int     `json:"threads"`
	Goroutines int     `json:"goroutines,omitempty"`
	Records    int     `json:"records"`
}

func sampleRunner(r *runner, t0 time.Time) procSample {
	cpu, _ := procCPU(r.pid)
	m, _ := procStatus(r.pid)
	s := procSample{T: time.Since(t0).Seconds(), CPU: cpu.Seconds(), RSS: m.RSS, FDs: procFDs(r.pid), Threads: m.Threads}
	r.mu.Lock()
	s.Goroutines, s.Records = r.goroutines, r.acct.records
	r.mu.Unlock()
	return s
}

type scaleResult struct {
	Name          string       `json:"name"`
	Containers    int          `json:"containers"`
	Rate          int          `json:"lines_per_s_each"`
	StartS        float64      `json:"start_all_s"`
	WindowS       float64      `json:"window_s"`
	HostUSPerLine float64      `json:"host_cpu_us_per_line"`
	HostCores     float64      `json:"host_cpu_cores"`
	DockerdCores  float64      `json:"dockerd_cpu_cores"`
	HostRSSMax    int64        `json:"host_rss_max_bytes"`
	HostHWM       int64        `json:"host_vmhwm_bytes"`
	HostFDsMax    int          `json:"host_fds_max"`
	TwinBaseline  int          `json:"twin_goroutine_baseline"`
	TwinPeak      int          `json:"twin_goroutines_peak"`
	TwinAfterStop int          `json:"twin_goroutines_after_stop"`
	TwinExit      string       `json:"twin_exit"`
	HostExit      string       `json:"host_exit"`
	Lines         int          `json:"lines_written"`
	HostCheck     checkResult  `json:"host_check"`
	TwinCheck     *checkResult `json:"twin_check,omitempty"`
	LatencyN      int          `json:"latency_samples"`
	P50, P99, Max float64      // ms
	// The daemon's own latency: raw follow streams (tail=0) on every
	// -raw-every'th container, receive time - stamp, in the window.
	RawN                   int          `json:"raw_latency_samples"`
	RawP50, RawP99, RawMax float64      // ms
	HostSamples            []procSample `json:"host_samples"`
	TwinSamples            []procSample `json:"twin_samples,omitempty"`
}

func percentile(v []float32, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	i := int(p * float64(len(v)-1))
	return float64(v[i])
}

func (b *bench) scalePhase(p scalePhase) (scaleResult, error) {
	name := fmt.Sprintf("scale-%dx%d", p.containers, p.rate)
	res := scaleResult{Name: name, Containers: p.containers, Rate: p.rate}
	logf("%s: %d containers x %d lines/s for %s once all run", name, p.containers, p.rate, b.cfg.scaleDuration)
	h, err := startRunner(b.cfg.paths, "host", name, b.props(name, nil), true)
	if err != nil {
		return res, err
	}
	defer h.removeOut()
	var tw *runner
	if b.cfg.twin && p.containers*p.rate <= b.cfg.twinMaxLines {
		if tw, err = startRunner(b.cfg.paths, "twin", name, b.props(name, nil), false); err != nil {
			h.stop()
			return res, err
		}
		defer tw.removeOut()
		res.TwinBaseline = tw.baseline
	}
	interval := time.Second / time.Duration(p.rate)
	t0 := time.Now()
	ids, err := b.eng.runMany(b.ctx, p.containers, b.cfg.workers, func(int) spec {
		return b.loggen(name, "-lines", "1000000000", "-interval", interval.String(), "-size", "100", "-hold")
	}, logf)
	defer b.removeAll(ids)
	res.StartS = time.Since(t0).Seconds()
	logf("  %d containers started in %.1f s (%.1f/s)", p.containers, res.StartS, float64(p.containers)/res.StartS)
	if err != nil {
		h.stop()
		if tw != nil {
			tw.stop()
		}
		return res, err
	}

	b.scaleWindow(h, tw, ids, &res)
	b.scaleEnd(h, tw, ids, &res)
	return res, nil
}

// scaleWindow samples host and twin while every container runs, follows
// every -raw-every'th container with a plain stream for the daemon's own
// latency, and derives the window's CPU, RSS and fd figures.
func (b *bench) scaleWindow(h, tw *runner, ids []string, res *scaleResult) {
	win := time.Now()
	h.startWindow()
	dm := startCPU(b.dockerd)
	first := sampleRunner(h, win)
	res.HostSamples = append(res.HostSamples, first)
	if tw != nil {
		res.TwinSamples = append(res.TwinSamples, sampleRunner(tw, win))
	}
	rawCtx, rawStop := context.WithCancel(b.ctx)
	var rawLat []float32
	var rawMu sync.Mutex
	var rawWG sync.WaitGroup
	if b.cfg.rawEvery > 0 {
		for i := 0; i < len(ids); i += b.cfg.rawEvery {
			rawWG.Add(1)
			go func() {
				defer rawWG.Done()
				lat := b.rawLatency(rawCtx, ids[i])
				rawMu.Lock()
				rawLat = append(rawLat, lat...)
				rawMu.Unlock()
			}()
		}
	}
	tick := time.NewTicker(5 * time.Second)
	end := time.After(b.cfg.scaleDuration)
window:
	for {
		select {
		case <-b.ctx.Done():
			break window
		case <-end:
			break window
		case <-tick.C:
			hs := sampleRunner(h, win)
			res.HostSamples = append(res.HostSamples, hs)
			line := fmt.Sprintf("  t=%3.0fs host: %d records, cpu %.1fs, rss %s, fds %d", hs.T, hs.Records, hs.CPU, mb(hs.RSS), hs.FDs)
			if tw != nil {
				ts := sampleRunner(tw, win)
				res.TwinSamples = append(res.TwinSamples, ts)
				line += fmt.Sprintf("; twin: goroutines %d (baseline %d), rss %s", ts.Goroutines, tw.baseline, mb(ts.RSS))
			}
			logf("%s", line)
		}
	}
	tick.Stop()
	h.endWindow()
	rawStop()
	rawWG.Wait()
	slices.Sort(rawLat)
	res.RawN, res.RawP50, res.RawP99 = len(rawLat), percentile(rawLat, 0.5), percentile(rawLat, 0.99)
	if len(rawLat) > 0 {
		res.RawMax = float64(rawLat[len(rawLat)-1])
	}
	last := sampleRunner(h, win)
	res.HostSamples = append(res.HostSamples, last)
	dcpu, dwall := dm.stop()
	res.WindowS = last.T - first.T
	res.HostCores = (last.CPU - first.CPU) / res.WindowS
	res.DockerdCores = dcpu.Seconds() / dwall.Seconds()
	if n := last.Records - first.Records; n > 0 {
		res.HostUSPerLine = (last.CPU - first.CPU) * 1e6 / float64(n)
	}
	for _, s := range res.HostSamples {
		res.HostRSSMax = max(res.HostRSSMax, s.RSS)
		res.HostFDsMax = max(res.HostFDsMax, s.FDs)
	}
	if m, err := procStatus(h.pid); err == nil {
		res.HostHWM = m.HWM
	}
	for _, s := range res.TwinSamples {
		res.TwinPeak = max(res.TwinPeak, s.Goroutines)
	}

}

// scaleEnd stops every container, so that each log is complete, waits for
// host and twin to deliver it all, and checks and reports what they did.
func (b *bench) scaleEnd(h, tw *runner, ids []string, res *scaleResult) {
	logf("  stopping %d containers", len(ids))
	t1 := time.Now()
	if err := each(ids, b.cfg.workers*2, func(id string) error { return b.eng.stop(context.Background(), id) }); err != nil {
		logf("  stop: %v", err)
	}
	logf("  stopped in %s; reading each one's last line", time.Since(t1).Round(100*time.Millisecond))
	want := map[string]int{}
	var mu sync.Mutex
	if err := each(ids, b.cfg.workers, func(id string) error {
		n, err := b.eng.lastSeq(context.Background(), id)
		mu.Lock()
		want[id] = n
		mu.Unlock()
		return err
	}); err != nil {
		logf("  last lines: %v", err)
	}
	for _, n := range want {
		res.Lines += n
	}
	done := func(r *runner) func() bool { return func() bool { return r.haveAll(want) } }
	if !h.wait(2*time.Minute, done(h)) {
		logf("  host: not every line after 2 minutes")
	}
	if tw != nil {
		if !tw.wait(time.Minute, done(tw)) {
			logf("  twin: not every line after 1 minute")
		}
		// Every reader has returned once its container stopped.
		time.Sleep(3 * time.Second)
		tw.wait(2*time.Second, func() bool { return false })
		tw.mu.Lock()
		res.TwinAfterStop = tw.goroutines
		tw.mu.Unlock()
	}
	h.wait(1500*time.Millisecond, func() bool { return false }) // duplicates would come now
	res.HostCheck = h.check(want)
	res.HostExit = h.stop()
	if tw != nil {
		c := tw.check(want)
		res.TwinCheck = &c
		res.TwinExit = tw.stop()
	}
	h.mu.Lock()
	lat := h.acct.latencyMS
	h.mu.Unlock()
	slices.Sort(lat)
	res.LatencyN = len(lat)
	res.P50, res.P99 = percentile(lat, 0.50), percentile(lat, 0.99)
	if len(lat) > 0 {
		res.Max = float64(lat[len(lat)-1])
	}
	for _, w := range h.warningSummary() {
		logf("  host: %s", w)
	}
	if err := h.err(); err != nil {
		logf("  host records: %v", err)
	}
	logf("  host: %s", res.HostCheck)
	if res.TwinCheck != nil {
		logf("  twin: %s", *res.TwinCheck)
	}
	logf("  latency p50 %.0f ms, p99 %.0f ms, max %.0f ms (%d records); the daemon's own (raw follow): p50 %.0f ms, p99 %.0f ms, max %.0f ms (%d lines)",
		res.P50, res.P99, res.Max, res.LatencyN, res.RawP50, res.RawP99, res.RawMax, res.RawN)
}

func (b *bench) runScale() error {
	s := section{
		Title: "Scale: many containers at once (steady window once all run)",
		Header: []string{"phase", "start all", "lines", "host check", "twin check", "host CPU/line", "host CPU", "dockerd CPU",
			"host RSS max (HWM)", "host fds max", "twin goroutines peak (baseline; limit)", "after stop", "latency p50 / p99 / max", "daemon's own latency p50 / p99 / max"},
		Notes: []string{
			"host: the .so in goproxy-testhost (CPU, RSS, fds, latency); twin: the same capture in-process in this program with a 1 s collect ticker (goroutines, which the C host prints only at start and exit); both read the same containers at once",
			"latency: collect wall time (as the bench reads the host's 'collect' line) - record time (the daemon's stamp), for records collected in the window",
			"daemon's own latency: plain follow streams (tail=0) opened by the bench on every -raw-every'th container during the window: receive time - stamp; what any API reader gets at best",
			"twin goroutines: peak during the window minus the count before capture started; after stop: once every container has stopped",
		},
	}
	var results []scaleResult
	var lastErr error
	for _, p := range b.cfg.scale {
		if b.ctx.Err() != nil {
			break
		}
		r, err := b.scalePhase(p)
		results = append(results, r)
		if err != nil {
			lastErr = err
			logf("  %v", err)
			continue
		}
		twin := "-"
		gor := "-"
		if r.TwinCheck != nil {
			twin = checkCell(*r.TwinCheck)
			gor = fmt.Sprintf("%d (%d; %d)", r.TwinPeak-r.TwinBaseline, r.TwinBaseline, 16+3*r.Containers)
		}
		s.Rows = append(s.Rows, []string{r.Name, fmt.Sprintf("%.0f s", r.StartS), strconv.Itoa(r.Lines),
			checkCell(r.HostCheck), twin,
			fmt.Sprintf("%.2f us", r.HostUSPerLine), fmt.Sprintf("%.2f cores", r.HostCores), fmt.Sprintf("%.2f cores", r.DockerdCores),
			fmt.Sprintf("%s (%s)", mb(r.HostRSSMax), mb(r.HostHWM)), strconv.Itoa(r.HostFDsMax), gor,
			strconv.Itoa(r.TwinAfterStop - r.TwinBaseline),
			fmt.Sprintf("%.0f / %.0f / %.0f ms", r.P50, r.P99, r.Max),
			fmt.Sprintf("%.0f / %.0f / %.0f ms", r.RawP50, r.RawP99, r.RawMax),
		})
		allOK := r.HostCheck.ok() && r.HostCheck.Missing == 0 && (r.TwinCheck == nil || r.TwinCheck.ok())
		b.rep.goal("4-"+r.Name+"-lines", r.Name+": every line captured once (host; twin)",
			checkCell(r.HostCheck)+"; "+twin, "all, once", boolp(allOK))
		if r.TwinCheck == nil {
			b.rep.goal("4-"+r.Name+"-goroutines", r.Name+": goroutines above baseline, peak (twin)",
				"twin not run (-twin-max-lines)", fmt.Sprintf("<= 16 + 3x%d", r.Containers), nil)
		} else {
			lim := 16 + 3*r.Containers
			b.rep.goal("4-"+r.Name+"-goroutines", r.Name+": goroutines above baseline, peak (twin)",
				strconv.Itoa(r.TwinPeak-r.TwinBaseline), fmt.Sprintf("<= 16 + 3x%d = %d", r.Containers, lim), boolp(r.TwinPeak-r.TwinBaseline <= lim))
		}
		b.rep.goal("4-"+r.Name+"-cpu", r.Name+": host CPU per line / RSS max (reported)",
			fmt.Sprintf("%.2f us, %.2f cores / %s", r.HostUSPerLine, r.HostCores, mb(r.HostRSSMax)), "(report)", nil)
		b.rep.goal("5-"+r.Name, r.Name+": latency p50 / p99 (write -> leaving collect)",
			fmt.Sprintf("%.0f / %.0f ms", r.P50, r.P99), "p99 <= 1200 ms", boolp(r.P99 <= 1200 && r.LatencyN > 0))
		// Written after each phase: a later one may not finish.
		b.rep.upsert(s)
		b.rep.raw("scale", results)
		if err := b.rep.write(); err != nil {
			logf("write results: %v", err)
		}
	}
	b.rep.upsert(s)
	b.rep.raw("scale", results)
	return lastErr
}

func checkCell(c checkResult) string {
	if c.ok() && c.Extra == 0 {
		return fmt.Sprintf("all %d once", c.Expected)
	}
	return fmt.Sprintf("**%d missing (%d ctrs), %d dup, %d extra**", c.Missing, c.IncompleteOf, c.Duplicates, c.Extra)
}

// rawLatency follows one container from now on until ctx ends and returns
// receive time - stamp for each line, in ms.
func (b *bench) rawLatency(ctx context.Context, id string) []float32 {
	rc, closeIdle, err := b.eng.openLogs(ctx, id, logsQuery{follow: true, tail: 0})
	if err != nil {
		return nil
	}
	defer closeIdle()
	stop := context.AfterFunc(ctx, func() { rc.Close() })
	defer stop()
	defer rc.Close()
	fs := newFrameScanner(rc)
	var out []float32
	for {
		_, p, err := fs.next()
		if err != nil {
			return out
		}
		now := time.Now()
		if len(p) < 31 {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, string(p[:30]))
		if err != nil {
			continue
		}
		out = append(out, float32(float64(now.Sub(t).Microseconds())/1e3))
	}
}
