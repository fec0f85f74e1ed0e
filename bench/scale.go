package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dockerlogs/fluent-bit-docker-logs/internal/dockertest"
)

type scaleResult struct {
	Name          string       `json:"name"`
	Containers    int          `json:"containers"`
	Rate          int          `json:"lines_per_s_each"`
	StartS        float64      `json:"start_all_s"`
	HostUSPerLine float64      `json:"host_cpu_us_per_line"`
	HostCores     float64      `json:"host_cpu_cores"`
	DockerdCores  float64      `json:"dockerd_cpu_cores"`
	HostRSSMax    int64        `json:"host_rss_max_bytes"`
	HostFDsMax    int          `json:"host_fds_max"`
	TwinBaseline  int          `json:"twin_goroutine_baseline"`
	TwinPeak      int          `json:"twin_goroutines_peak"`
	TwinAfterStop int          `json:"twin_goroutines_after_stop"`
	Lines         int          `json:"lines_written"`
	HostCheck     checkResult  `json:"host_check"`
	TwinCheck     *checkResult `json:"twin_check,omitempty"`
	Latency       string       `json:"latency_p50_p99_max"`
	P99           float64      `json:"latency_p99_ms"`
	// The daemon's own latency: plain follow streams (tail=0) on every
	// -raw-every'th container, receive time - stamp, in the window.
	RawLatency string `json:"raw_latency_p50_p99_max"`
	window     [2]int // the host's first record in the window and the first after it
}

// percentiles is "p50 / p99 / max ms" of sorted latencies, and p99.
func percentiles(v []float32) (string, float64) {
	if len(v) == 0 {
		return "none", 0
	}
	at := func(p float64) float32 { return v[int(p*float64(len(v)-1))] }
	return fmt.Sprintf("%.0f / %.0f / %.0f ms", at(.5), at(.99), at(1)), float64(at(.99))
}

// scalePhase runs p.containers loggen containers at p.rate lines/s each,
// read by the host and (below -twin-max-lines) the twin, measures a window
// of -scale-duration once all run, then stops them and checks every line.
func (b *bench) scalePhase(p scalePhase) (res scaleResult, err error) {
	res = scaleResult{Name: fmt.Sprintf("scale-%dx%d", p.containers, p.rate), Containers: p.containers, Rate: p.rate}
	logf("%s: %d containers x %d lines/s for %s once all run", res.Name, p.containers, p.rate, *scaleDuration)
	runs, err := b.startReaders(res.Name, b.props(res.Name, nil), *twinOn && p.containers*p.rate <= *twinMaxLines)
	if err != nil {
		return res, err
	}
	defer stopAll(runs)
	t0 := time.Now()
	ids, err := b.eng.runMany(b.ctx, p.containers, *workers, func(int) dockertest.RunOptions {
		return b.loggen(res.Name, "-lines", "1000000000", "-interval", (time.Second / time.Duration(p.rate)).String(), "-size", "100", "-hold")
	})
	defer b.removeAll(ids)
	res.StartS = time.Since(t0).Seconds()
	logf("  %d containers started in %.1f s", p.containers, res.StartS)
	if err == nil {
		b.scaleWindow(runs, ids, &res)
		b.scaleEnd(runs, ids, &res)
	}
	return res, err
}

// scaleWindow samples host and twin every 5 s while every container runs,
// follows every -raw-every'th container with a plain stream for the
// daemon's own latency, and derives the window's CPU, RSS and fd figures.
func (b *bench) scaleWindow(runs []*runner, ids []string, res *scaleResult) {
	win := time.Now()
	dm := startCPU(b.dockerd)
	samples := make([][]procSample, len(runs)) // host, twin
	sample := func() {
		for i, r := range runs {
			samples[i] = append(samples[i], r.sample(win))
		}
	}
	sample()
	rawCtx, rawStop := context.WithCancel(b.ctx)
	lats := make([][]float32, len(ids))
	var rawWG sync.WaitGroup // the raw followers; the window waits
	for i := 0; *rawEvery > 0 && i < len(ids); i += *rawEvery {
		rawWG.Add(1)
		go func() { defer rawWG.Done(); lats[i] = b.rawLatency(rawCtx, ids[i]) }()
	}
	for tick := time.Tick(5 * time.Second); b.sleepOr(tick, *scaleDuration-time.Since(win)); {
		sample()
	}
	sample()
	rawStop()
	rawWG.Wait()
	res.RawLatency, _ = percentiles(slices.Sorted(slices.Values(slices.Concat(lats...))))
	dcpu, dwall := dm()
	first, last := samples[0][0], samples[0][len(samples[0])-1]
	res.window = [2]int{first.Records, last.Records} // a latency a record
	res.HostCores, res.DockerdCores = (last.CPU-first.CPU)/(last.T-first.T), dcpu.Seconds()/dwall.Seconds()
	if n := last.Records - first.Records; n > 0 {
		res.HostUSPerLine = (last.CPU - first.CPU) * 1e6 / float64(n)
	}
	for _, s := range samples[0] {
		res.HostRSSMax, res.HostFDsMax = max(res.HostRSSMax, s.RSS), max(res.HostFDsMax, s.FDs)
	}
	for _, s := range samples[len(runs)-1] { // the twin's, if it runs
		res.TwinPeak = max(res.TwinPeak, s.Goroutines)
	}
}

// scaleEnd stops every container, so that each log is complete, waits for
// host and twin to deliver it all, and checks what they did.
func (b *bench) scaleEnd(runs []*runner, ids []string, res *scaleResult) {
	logf("  stopping %d containers", len(ids))
	seqs := make([]int, len(ids))
	err := parallel(len(ids), *workers, func(i int) (err error) {
		if err = b.eng.stop(ids[i]); err == nil {
			seqs[i], err = b.eng.lastSeq(b.ctx, ids[i])
		}
		return err
	})
	want := map[string]int{}
	for i, id := range ids {
		want[id] = seqs[i]
		res.Lines += seqs[i]
	}
	checks := settle(runs, want, 2*time.Minute)
	res.HostCheck = checks[0]
	res.Latency, res.P99 = percentiles(runs[0].latencies(res.window[0], res.window[1]))
	if len(runs) > 1 {
		runs[1].idle(3 * time.Second) // every reader has returned once its container stopped
		res.TwinCheck, res.TwinAfterStop, res.TwinBaseline = &checks[1], runs[1].sample(time.Now()).Goroutines, runs[1].baseline
	}
	logf("  host: %s; twin: %v; latency %s; the daemon's own (raw follow): %s; errors: %v", res.HostCheck, res.TwinCheck, res.Latency, res.RawLatency, err)
}

func (b *bench) runScale() error {
	s := section{
		Title: "Scale: many containers at once (steady window once all run)",
		Header: []string{"phase", "start all", "lines", "host check", "twin check", "host CPU/line", "host CPU", "dockerd CPU",
			"host RSS max", "host fds max", "twin goroutines peak (baseline; limit)", "after stop", "latency p50 / p99 / max", "daemon's own latency p50 / p99 / max"},
		Notes: []string{
			"host: the .so in goproxy-testhost (CPU, RSS, fds, latency); twin: the same capture in-process in this program with a 1 s collect ticker (goroutines, which the C host prints only at start and exit); both read the same containers at once",
			"latency: collect wall time (as the bench reads the host's 'collect' line) - record time (the daemon's stamp), for records collected in the window",
			"daemon's own latency: plain follow streams (tail=0) opened by the bench on every -raw-every'th container during the window: receive time - stamp; what any API reader gets at best",
			"twin goroutines: peak during the window minus the count before capture started; after stop: once every container has stopped",
		},
	}
	var results []scaleResult
	var errs []error
	for _, p := range *scalePhases {
		if b.ctx.Err() != nil {
			break
		}
		r, err := b.scalePhase(p)
		results = append(results, r)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		twin, gor, lim := "not run (-twin-max-lines)", "-", 16+3*r.Containers
		if r.TwinCheck != nil {
			twin, gor = r.TwinCheck.String(), fmt.Sprintf("%d (%d; %d)", r.TwinPeak-r.TwinBaseline, r.TwinBaseline, lim)
			b.rep.goal("4-"+r.Name+"-goroutines", r.Name+": goroutines above baseline, peak (twin)",
				strconv.Itoa(r.TwinPeak-r.TwinBaseline), fmt.Sprintf("<= 16 + 3x%d = %d", r.Containers, lim), boolp(r.TwinPeak-r.TwinBaseline <= lim))
		}
		s.Rows = append(s.Rows, []string{r.Name, fmt.Sprintf("%.0f s", r.StartS), strconv.Itoa(r.Lines), r.HostCheck.String(), twin,
			fmt.Sprintf("%.2f us", r.HostUSPerLine), fmt.Sprintf("%.2f cores", r.HostCores), fmt.Sprintf("%.2f cores", r.DockerdCores),
			mb(r.HostRSSMax), strconv.Itoa(r.HostFDsMax), gor, strconv.Itoa(r.TwinAfterStop - r.TwinBaseline), r.Latency, r.RawLatency})
		b.rep.goal("4-"+r.Name+"-lines", r.Name+": every line captured once (host; twin)", r.HostCheck.String()+"; "+twin, "all, once",
			boolp(r.HostCheck.ok() && r.HostCheck.Extra == 0 && (r.TwinCheck == nil || r.TwinCheck.ok())))
		b.rep.goal("4-"+r.Name+"-cpu", r.Name+": host CPU per line, cores / RSS max, fds max (reported)",
			fmt.Sprintf("%.2f us, %.2f cores (dockerd %.2f) / %s, %d", r.HostUSPerLine, r.HostCores, r.DockerdCores, mb(r.HostRSSMax), r.HostFDsMax), "(report)", nil)
		b.rep.goal("5-"+r.Name, r.Name+": latency p50 / p99 / max (write -> leaving collect)", r.Latency, "p99 <= 1200 ms",
			boolp(r.P99 > 0 && r.P99 <= 1200))
	}
	b.rep.section(s)
	b.rep.raw("scale", results)
	return errors.Join(errs...)
}

// rawLatency follows one container from now on until ctx ends and returns
// receive time - stamp for each line, in ms.
func (b *bench) rawLatency(ctx context.Context, id string) (out []float32) {
	_ = b.eng.frames(ctx, id, url.Values{"follow": {"1"}, "tail": {"0"}}, func(p []byte) bool {
		stamp, _, _ := strings.Cut(string(p), " ")
		if t, err := time.Parse(time.RFC3339Nano, stamp); err == nil {
			out = append(out, float32(float64(time.Since(t).Microseconds())/1e3))
		}
		return true
	})
	return out
}
