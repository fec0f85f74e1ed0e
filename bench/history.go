package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"sync"
	"time"
)

// readResult is one timed read of every container's history.
type readResult struct {
	Kind       string  `json:"kind"` // raw, raw-follow, plugin
	WallS      float64 `json:"wall_s"`
	WallLowS   float64 `json:"wall_low_s,omitempty"` // plugin: the collect before the completing one
	FromInitS  float64 `json:"from_init_s,omitempty"`
	DockerdCPU float64 `json:"dockerd_cpu_s"`
	ClientCPU  float64 `json:"client_cpu_s"` // raw: this process; plugin: the host process
	Bytes      int64   `json:"bytes"`
	Lines      int     `json:"lines"`
	Check      string  `json:"check,omitempty"`
	OK         bool    `json:"ok"`
	Widened    int     `json:"resume_windows_widened,omitempty"`
}

// rawRead reads every container's logs at once with plain GETs to EOF
// (follow=false), discarding; with follow, it reads frames until each
// container's n lines have come, then closes.
func (b *bench) rawRead(ids []string, n int, follow bool) (readResult, error) {
	res := readResult{Kind: "raw"}
	if follow {
		res.Kind = "raw-follow"
	}
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	dm := startCPU(b.dockerd)
	self := selfCPU()
	t0 := time.Now()
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(b.ctx, 10*time.Minute)
			defer cancel()
			rc, closeIdle, err := b.eng.openLogs(ctx, id, logsQuery{follow: follow, tail: -1})
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				return
			}
			defer closeIdle()
			defer rc.Close()
			var nb int64
			lines := 0
			if !follow {
				fc := &frameCounter{}
				_, err = io.Copy(fc, rc)
				nb, lines = fc.bytes, fc.frames
			} else {
				// A follow stream does not end: stop after the last line,
				// or when nothing came for 20 s.
				cr := &countingReader{r: rc}
				idle := time.AfterFunc(20*time.Second, func() { rc.Close() })
				fs := newFrameScanner(cr)
				for lines < n {
					if _, _, err = fs.next(); err != nil {
						break
					}
					lines++
					if lines%1024 == 0 {
						idle.Reset(20 * time.Second)
					}
				}
				idle.Stop()
				nb = cr.n
			}
			mu.Lock()
			res.Bytes += nb
			res.Lines += lines
			if err != nil && !errors.Is(err, io.EOF) {
				errs = append(errs, err)
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	wall := time.Since(t0)
	dcpu, _ := dm.stop()
	res.WallS = wall.Seconds()
	res.DockerdCPU = dcpu.Seconds()
	res.ClientCPU = (selfCPU() - self).Seconds()
	res.OK = len(errs) == 0 && res.Lines == n*len(ids)
	return res, errors.Join(errs...)
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// pluginRead runs the .so in the test host from the head of the case's
// containers until every line has been collected.
func (b *bench) pluginRead(caseName string, want map[string]int) (readResult, error) {
	res := readResult{Kind: "plugin"}
	total := 0
	for _, n := range want {
		total += n
	}
	dm := startCPU(b.dockerd)
	// Debug logging shows resume windows being widened (a refresh that
	// cut the history read); it adds a handful of lines.
	h, err := startRunner(b.cfg.paths, "host", caseName, b.props(caseName, map[string]string{"Plugin_Log_Level": "debug"}), false)
	if err != nil {
		return res, err
	}
	defer h.removeOut()
	last, ok := h.waitRecords(total, 10*time.Minute, 30*time.Second)
	dcpu, _ := dm.stop()
	// A second more: duplicates would show up in the next collect.
	h.wait(1500*time.Millisecond, func() bool { return false })
	prev := h.collectBefore(last)
	h.stop()
	res.WallS = last.at.Sub(h.t0).Seconds()
	res.WallLowS = prev.at.Sub(h.t0).Seconds()
	res.FromInitS = last.at.Sub(h.initAt).Seconds()
	res.ClientCPU = last.cpu.Seconds()
	res.DockerdCPU = dcpu.Seconds()
	h.with(func(a *account) { res.Bytes, res.Lines = a.bytes, a.records })
	c := h.check(want)
	res.Check = c.String()
	h.mu.Lock()
	res.Widened = h.widened
	h.mu.Unlock()
	if res.Widened > 0 {
		res.Check += fmt.Sprintf("; resume window widened %d times (a refresh cut the history read)", res.Widened)
	}
	res.OK = ok && c.ok() && c.Extra == 0
	if err := h.err(); err != nil {
		res.OK = false
		res.Check += "; " + err.Error()
	}
	for _, w := range h.warningSummary() {
		logf("  host: %s", w)
	}
	if !ok {
		return res, fmt.Errorf("plugin: %d of %d records, then none for 30 s (or 10 minutes passed)", res.Lines, total)
	}
	return res, nil
}

// historyCase generates containers of n lines each, then compares raw reads
// with the plugin's, side by side, reps times.
func (b *bench) historyCase(name string, containers, n int) ([]readResult, error) {
	logf("history %s: %d container(s) x %d lines of 100 bytes", name, containers, n)
	t0 := time.Now()
	ids, err := b.eng.runMany(b.ctx, containers, b.cfg.workers, func(int) spec {
		s := b.loggen(name, "-lines", strconv.Itoa(n), "-size", "100", "-hold")
		s.logOpts = unrotated
		return s
	}, logf)
	defer b.removeAll(ids)
	if err != nil {
		return nil, err
	}
	want := map[string]int{}
	for _, id := range ids {
		want[id] = n
		if err := b.eng.waitLastSeq(b.ctx, id, n, logf); err != nil {
			return nil, err
		}
	}
	var size int64
	for _, id := range ids {
		size += b.eng.logSize(b.ctx, id)
	}
	logf("  generated in %s (json-file logs: %s)", time.Since(t0).Round(time.Second), mb(size))
	var out []readResult
	for rep := range b.cfg.reps {
		for _, kind := range []string{"raw", "raw-follow", "plugin"} {
			if b.ctx.Err() != nil {
				return out, b.ctx.Err()
			}
			var r readResult
			var err error
			switch kind {
			case "raw":
				r, err = b.rawRead(ids, n, false)
			case "raw-follow":
				r, err = b.rawRead(ids, n, true)
			case "plugin":
				r, err = b.pluginRead(name, want)
			}
			logf("  rep %d %-10s wall %.2fs dockerd %.2fs client %.2fs lines %d ok=%v %s",
				rep+1, kind, r.WallS, r.DockerdCPU, r.ClientCPU, r.Lines, r.OK, r.Check)
			if err != nil {
				logf("  %s: %v", kind, err)
			}
			out = append(out, r)
		}
	}
	return out, nil
}

func (b *bench) runHistory() error {
	cases := []struct {
		name       string
		containers int
		lines      int
	}{
		{"history-1x" + short(b.cfg.histLines), 1, b.cfg.histLines},
		{fmt.Sprintf("history-%dx%s", b.cfg.histN, short(b.cfg.histNLine)), b.cfg.histN, b.cfg.histNLine},
	}
	s := section{
		Title: "History throughput: plugin (.so in the test host) vs raw read of the same logs",
		Header: []string{"case", "rep", "raw wall", "raw-follow wall", "plugin wall [prev collect]",
			"plugin/raw", "plugin/raw-follow", "dockerd CPU raw / plugin", "plugin CPU/line", "raw client CPU/line", "plugin check"},
		Notes: []string{
			"raw: GET /containers/{id}/logs?stdout=1&stderr=1&timestamps=1 to EOF, discarded (all containers at once); raw-follow: the same with follow=1 (what the plugin asks for a running container), closed after the last line",
			"plugin wall: from exec of the host to the collect that completed the count (1 s collect timer); [prev collect]: the collect before it, so the last record became ready in between",
			"containers run loggen -hold: a container that has exited before the plugin starts is not read even with Read_From_Head=on",
		},
	}
	var cpuPerLine1 []float64
	cpuFailed := 0
	raw := map[string]any{}
	for ci, c := range cases {
		if c.containers <= 0 || c.lines <= 0 {
			continue
		}
		results, err := b.historyCase(c.name, c.containers, c.lines)
		raw[c.name] = results
		total := c.containers * c.lines
		var ratios []float64
		failed := 0 // reps whose plugin run did not deliver every line once
		for i := 0; i+2 < len(results); i += 3 {
			rw, rf, pl := results[i], results[i+1], results[i+2]
			if pl.OK {
				// A run that failed its check has no meaningful wall or CPU.
				ratios = append(ratios, pl.WallS/rw.WallS)
				if ci == 0 {
					cpuPerLine1 = append(cpuPerLine1, pl.ClientCPU*1e6/float64(total))
				}
			} else {
				failed++
				if ci == 0 {
					cpuFailed++
				}
			}
			s.Rows = append(s.Rows, []string{c.name, strconv.Itoa(i/3 + 1),
				fmt.Sprintf("%.2f s", rw.WallS), fmt.Sprintf("%.2f s", rf.WallS),
				fmt.Sprintf("%.2f s [%.2f s]", pl.WallS, pl.WallLowS),
				fmt.Sprintf("%.2f [%.2f]", pl.WallS/rw.WallS, pl.WallLowS/rw.WallS),
				fmt.Sprintf("%.2f", pl.WallS/rf.WallS),
				fmt.Sprintf("%.2f / %.2f s", rw.DockerdCPU, pl.DockerdCPU),
				fmt.Sprintf("%.2f us", pl.ClientCPU*1e6/float64(total)),
				fmt.Sprintf("%.2f us", rw.ClientCPU*1e6/float64(total)),
				map[bool]string{true: "all lines once", false: "**" + pl.Check + "**"}[pl.OK] + widenedNote(pl.Widened),
			})
		}
		id, what := "1"+string(rune('a'+ci)), "history "+c.name+": plugin wall / raw wall (median)"
		switch {
		case failed > 0:
			b.rep.goal(id, what, fmt.Sprintf("%d of %d runs failed their check", failed, len(results)/3), "<= 1.10", boolp(false))
		case len(ratios) > 0:
			m := median(ratios)
			b.rep.goal(id, what, fmt.Sprintf("%.2f", m), "<= 1.10", boolp(m <= 1.10))
		}
		if err != nil {
			b.rep.section(s)
			b.rep.raw("history", raw)
			return err
		}
	}
	b.rep.section(s)
	b.rep.raw("history", raw)
	what := "plugin host CPU per line (history 1 container, utime+stime / lines)"
	switch {
	case cpuFailed > 0:
		b.rep.goal("2a", what, fmt.Sprintf("%d runs failed their check", cpuFailed), "<= 0.5 us", boolp(false))
	case len(cpuPerLine1) > 0:
		m := median(cpuPerLine1)
		b.rep.goal("2a", what, fmt.Sprintf("%.2f us", m), "<= 0.5 us", boolp(m <= 0.5))
	}
	return nil
}

func short(n int) string {
	switch {
	case n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return strconv.Itoa(n)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func widenedNote(n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("; %d resume windows widened", n)
}
