package main

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// refreshResult is the daemon's cost of refreshing a stream of one quiet
// container whose log holds a given size.
type refreshResult struct {
	Size           string  `json:"size"`
	Lines          int     `json:"lines"`
	LogBytes       int64   `json:"log_bytes"`
	Tail           costMS  `json:"since_tail256_follow"`
	Plain          costMS  `json:"since_follow_no_tail"`
	Plugin         costMS  `json:"plugin_per_refresh"`
	PluginSeconds  float64 `json:"plugin_seconds"`
	PluginHostCPUS float64 `json:"plugin_host_cpu_s"`
}

// sinceParam turns a stamp as the daemon prints it into since's
// seconds.nanoseconds.
func sinceParam(stamp string) (string, error) {
	t, err := time.Parse(time.RFC3339Nano, stamp)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond()), nil
}

// resumeOnce does what the reader does on a refresh of a quiet container:
// open since=<last stamp> (with tail when tail >= 0) and follow=1, read
// until the last line comes back, then close.
func (b *bench) resumeOnce(id, since, lastStamp string, tail int) error {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Minute)
	defer cancel()
	rc, closeIdle, err := b.eng.openLogs(ctx, id, logsQuery{follow: true, since: since, tail: tail})
	if err != nil {
		return err
	}
	defer closeIdle()
	defer rc.Close()
	fs := newFrameScanner(rc)
	for {
		_, p, err := fs.next()
		if err != nil {
			return fmt.Errorf("stream ended before the last line: %w", err)
		}
		if strings.HasPrefix(string(p), lastStamp+" ") {
			return nil
		}
	}
}

// idleRate measures dockerd's CPU with nothing asked of it, to subtract
// (the daemon is shared with other work on this machine).
func (b *bench) idleRate(d time.Duration) float64 {
	m := startCPU(b.dockerd)
	select {
	case <-b.ctx.Done():
	case <-time.After(d):
	}
	cpu, wall := m.stop()
	return float64(cpu) / float64(wall) // CPU seconds per second
}

// costMS is dockerd's CPU per operation with the idle rate measured just
// before and just after subtracted; noise is what the difference between
// those two idle rates makes of it.
type costMS struct {
	Each   float64 `json:"each_ms"`
	Noise  float64 `json:"noise_ms"`
	WallMS float64 `json:"wall_ms_each"`
	N      int     `json:"n"`
	IdleMS float64 `json:"idle_ms_per_s"`
}

func (c costMS) String() string {
	return fmt.Sprintf("%.1f ± %.1f ms", c.Each, c.Noise)
}

// measure runs f (which performs n operations; n known after) between two
// idle windows.
func (b *bench) measure(idleWin time.Duration, f func() (int, error)) (costMS, error) {
	idle1 := b.idleRate(idleWin)
	m := startCPU(b.dockerd)
	n, err := f()
	time.Sleep(200 * time.Millisecond) // the daemon finishes with closed streams
	cpu, wall := m.stop()
	idle2 := b.idleRate(idleWin)
	if err != nil || n == 0 {
		return costMS{N: n}, err
	}
	idle := (idle1 + idle2) / 2
	c := costMS{N: n, IdleMS: idle * 1e3,
		Each:   max(float64(cpu)-idle*float64(wall), 0) / 1e6 / float64(n),
		Noise:  math.Abs(idle1-idle2) / 2 * float64(wall) / 1e6 / float64(n),
		WallMS: float64((wall - 200*time.Millisecond).Microseconds()) / 1e3 / float64(n)}
	return c, nil
}

// requests measures k resumeOnce requests (after one untimed).
func (b *bench) requests(k int, id, since, stamp string, tail int) (costMS, error) {
	if err := b.resumeOnce(id, since, stamp, tail); err != nil {
		return costMS{}, err
	}
	return b.measure(2*time.Second, func() (int, error) {
		for i := range k {
			if err := b.resumeOnce(id, since, stamp, tail); err != nil {
				return i, err
			}
		}
		return k, nil
	})
}

func (b *bench) runRefresh() error {
	if b.dockerd == 0 {
		return fmt.Errorf("dockerd's pid is unknown: its CPU cannot be measured")
	}
	sizes := b.cfg.refreshSizes
	logf("refresh: generating %d quiet containers at once", len(sizes))
	t0 := time.Now()
	ids, err := b.eng.runMany(b.ctx, len(sizes), len(sizes), func(i int) spec {
		s := b.loggen("refresh-"+sizes[i].name, "-lines", strconv.Itoa(sizes[i].lines), "-size", "100", "-hold")
		s.logOpts = unrotated
		return s
	})
	defer b.removeAll(ids)
	if err != nil {
		return err
	}
	for i, sz := range sizes {
		if err := b.eng.waitLastSeq(b.ctx, ids[i], sz.lines); err != nil {
			return err
		}
		logf("  %s: %d lines, log %s, ready after %s", sz.name, sz.lines, mb(b.eng.logSize(b.ctx, ids[i])), time.Since(t0).Round(time.Second))
	}
	s := section{
		Title: "Refresh cost against log size (dockerd CPU per refresh of a quiet container, idle rate subtracted)",
		Header: []string{"log", "lines", "since+tail=256+follow (the reader's)", "plain since+follow (no tail)",
			"plain/tail", "plugin refreshes, dockerd CPU each", "dockerd idle"},
		Notes: []string{"each request is read until the log's last line comes back, then closed, as a refresh of a quiet container does",
			"plugin: the .so in the test host with Read_From_Head=off, a short Stream_Refresh (-refresh-every) and Metrics_Listen; refreshes read from its docker_logs_stream_refreshes_total",
			"the daemon is shared (other work runs on it): its idle CPU is measured just before and after each series and subtracted; ± is half the difference of those two idle rates"},
	}
	var results []refreshResult
	worst := 0.0
	for i, sz := range sizes {
		if b.ctx.Err() != nil {
			break
		}
		id := ids[i]
		stamp, _, err := b.eng.lastEntry(b.ctx, id)
		if err != nil {
			return err
		}
		since, err := sinceParam(stamp)
		if err != nil {
			return err
		}
		r := refreshResult{Size: sz.name, Lines: sz.lines, LogBytes: b.eng.logSize(b.ctx, id)}
		if r.Tail, err = b.requests(b.cfg.refreshK, id, since, stamp, 256); err != nil {
			return err
		}
		plainK := b.cfg.refreshPlainK
		if sz.lines >= 5_000_000 {
			plainK = max(1, plainK/2)
		}
		if r.Plain, err = b.requests(plainK, id, since, stamp, -1); err != nil {
			return err
		}
		logf("  %s: dockerd CPU per request: since+tail=256 %s, plain since %s (idle %.0f ms/s)", sz.name, r.Tail, r.Plain, r.Tail.IdleMS)
		if err := b.pluginRefreshes(sz, &r); err != nil {
			return err
		}
		logf("  %s: plugin %d refreshes in %.1fs, %s dockerd CPU each", sz.name, r.Plugin.N, r.PluginSeconds, r.Plugin)
		worst = max(worst, r.Tail.Each)
		if r.Plugin.N > 0 {
			worst = max(worst, r.Plugin.Each)
		}
		results = append(results, r)
		s.Rows = append(s.Rows, []string{sz.name + " (" + mb(r.LogBytes) + ")", strconv.Itoa(sz.lines),
			fmt.Sprintf("%s (%d req, %.1f ms wall each)", r.Tail, r.Tail.N, r.Tail.WallMS),
			fmt.Sprintf("%s (%d req, %.0f ms wall each)", r.Plain, r.Plain.N, r.Plain.WallMS),
			fmt.Sprintf("%.0fx", r.Plain.Each/max(r.Tail.Each, 0.1)),
			fmt.Sprintf("%d in %.0f s, %s", r.Plugin.N, r.PluginSeconds, r.Plugin),
			fmt.Sprintf("%.0f ms/s", r.Tail.IdleMS),
		})
	}
	b.rep.section(s)
	b.rep.raw("refresh", results)
	if len(results) > 0 {
		first, last := results[0], results[len(results)-1]
		flat := last.Tail.Each <= max(2*first.Tail.Each, first.Tail.Each+5)
		b.rep.goal("3", "dockerd CPU per refresh, worst size (tail requests and plugin); flat from "+first.Size+" to "+last.Size,
			fmt.Sprintf("%.1f ms (tail: %s %s, %s %s; plugin %s: %s)", worst, first.Size, first.Tail, last.Size, last.Tail, last.Size, last.Plugin),
			"<= 20 ms, flat", boolp(worst <= 20 && flat))
	}
	return nil
}

// pluginRefreshes measures the plugin's own refreshes of sz's container, as
// often as it allows, for a signal above the shared daemon's noise.
func (b *bench) pluginRefreshes(sz refreshSize, r *refreshResult) error {
	var err error
	r.Plugin, err = b.measure(3*time.Second, func() (int, error) {
		metricsAddr, err := freeAddr()
		if err != nil {
			return 0, err
		}
		name := "refresh-" + sz.name
		h, err := b.start("host", name, b.props(name, map[string]string{
			"Read_From_Head": "off", "Stream_Refresh": b.cfg.refreshEvery, "Metrics_Listen": metricsAddr}), false)
		if err != nil {
			return 0, err
		}
		defer h.stop()
		h.idle(b.cfg.refreshRun)
		r.PluginSeconds = time.Since(h.initAt).Seconds()
		hc, _ := procCPU(h.pid)
		r.PluginHostCPUS = hc.Seconds()
		return scrapeCounter(metricsAddr, "docker_logs_stream_refreshes_total")
	})
	return err
}
