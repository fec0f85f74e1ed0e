package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/dockerlogs/fluent-bit-docker-logs/testhost"
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

func (c costMS) String() string { return fmt.Sprintf("%.1f ± %.1f ms", c.Each, c.Noise) }

// measure runs f (which performs n operations; n known after) between two
// windows of idleWin in which dockerd's idle rate is measured (the daemon
// is shared with other work on this machine).
func (b *bench) measure(idleWin time.Duration, f func() (int, error)) (costMS, error) {
	idleRate := func() float64 {
		m := startCPU(b.dockerd)
		b.sleep(idleWin)
		cpu, wall := m()
		return float64(cpu) / float64(wall) // CPU seconds per second
	}
	idle1, m := idleRate(), startCPU(b.dockerd)
	n, err := f()
	time.Sleep(200 * time.Millisecond) // the daemon finishes with closed streams
	cpu, wall := m()
	idle2 := idleRate()
	if err != nil || n == 0 {
		return costMS{N: n}, err
	}
	idle, per := (idle1+idle2)/2, 1e6*float64(n)
	return costMS{N: n, IdleMS: idle * 1e3, Each: max(float64(cpu)-idle*float64(wall), 0) / per,
		Noise: math.Abs(idle1-idle2) / 2 * float64(wall) / per, WallMS: float64(wall-200*time.Millisecond) / per}, nil
}

// requests measures k refreshes as the reader does them on a quiet
// container (after one untimed): open since=<last stamp> (with tail when
// tail >= 0) and follow=1, read until the last line comes back, close.
func (b *bench) requests(k int, id, lastStamp string, tail int) (costMS, error) {
	t, err := time.Parse(time.RFC3339Nano, lastStamp)
	q := url.Values{"follow": {"1"}, "since": {fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond())}}
	if tail >= 0 {
		q.Set("tail", strconv.Itoa(tail))
	}
	once := func() error {
		ctx, cancel := context.WithTimeout(b.ctx, 10*time.Minute)
		defer cancel()
		found := false
		err := b.eng.frames(ctx, id, q, func(p []byte) bool {
			found = strings.HasPrefix(string(p), lastStamp+" ")
			return !found
		})
		if !found && err == nil {
			err = errors.New("stream ended before the last line")
		}
		return err
	}
	if err = errors.Join(err, once()); err != nil {
		return costMS{}, err
	}
	return b.measure(2*time.Second, func() (int, error) {
		for i := range k {
			if err := once(); err != nil {
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
	sizes := *refreshLines
	logf("refresh: generating %d quiet containers at once", len(sizes))
	ids, err := b.logs(func(i int) string { return "refresh-" + strconv.Itoa(i) }, sizes...)
	defer b.removeAll(ids)
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
	for i := 0; err == nil && b.ctx.Err() == nil && i < len(sizes); i++ {
		var r refreshResult
		if r, err = b.refreshSize(i, sizes[i], ids[i]); err == nil {
			worst = max(worst, r.Tail.Each, r.Plugin.Each)
			results = append(results, r)
			s.Rows = append(s.Rows, []string{r.Size, strconv.Itoa(r.Lines),
				fmt.Sprintf("%s (%d req, %.1f ms wall each)", r.Tail, r.Tail.N, r.Tail.WallMS),
				fmt.Sprintf("%s (%d req, %.0f ms wall each)", r.Plain, r.Plain.N, r.Plain.WallMS),
				fmt.Sprintf("%.0fx", r.Plain.Each/max(r.Tail.Each, 0.1)), fmt.Sprintf("%d in %.0f s, %s", r.Plugin.N, r.PluginSeconds, r.Plugin),
				fmt.Sprintf("%.0f ms/s", r.Tail.IdleMS)})
		}
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
	return err
}

// refreshSize measures tail and plain requests on one container, then the
// plugin's own refreshes of it, as often as it allows, for a signal above
// the shared daemon's noise.
func (b *bench) refreshSize(i, lines int, id string) (r refreshResult, err error) {
	r = refreshResult{Lines: lines, LogBytes: b.eng.logSize(id)}
	r.Size = mb(r.LogBytes)
	stamp, _, err := b.eng.lastEntry(b.ctx, id)
	plainK := *refreshPlainK
	if lines >= 5_000_000 {
		plainK = max(1, plainK/2)
	}
	if err == nil {
		r.Tail, err = b.requests(*refreshK, id, stamp, 256)
	}
	if err == nil {
		r.Plain, err = b.requests(plainK, id, stamp, -1)
	}
	if err != nil {
		return r, err
	}
	logf("  %s: dockerd CPU per request: since+tail=256 %s, plain since %s (idle %.0f ms/s)", r.Size, r.Tail, r.Plain, r.Tail.IdleMS)
	r.Plugin, err = b.measure(3*time.Second, func() (int, error) {
		metricsAddr, err := testhost.FreeAddr()
		if err != nil {
			return 0, err
		}
		name := "refresh-" + strconv.Itoa(i)
		h, err := b.start("host", name, b.props(name, map[string]string{
			"Read_From_Head": "off", "Stream_Refresh": *refreshEvery, "Metrics_Listen": metricsAddr}))
		if err != nil {
			return 0, err
		}
		defer h.stop()
		h.idle(*refreshRun)
		r.PluginSeconds = time.Since(h.initAt).Seconds()
		hc, _ := procCPU(h.pid)
		r.PluginHostCPUS = hc.Seconds()
		m, err := testhost.Scrape(metricsAddr)
		return int(m["docker_logs_stream_refreshes_total"]), err
	})
	logf("  %s: plugin %d refreshes in %.1fs, %s dockerd CPU each", r.Size, r.Plugin.N, r.PluginSeconds, r.Plugin)
	return r, err
}
