package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sync"
	"time"
)

// readResult is one timed read of every container's history.
type readResult struct {
	Kind       string  `json:"kind"` // raw, raw-follow, plugin
	WallS      float64 `json:"wall_s"`
	WallLowS   float64 `json:"wall_low_s,omitempty"` // plugin: the collect before the completing one
	DockerdCPU float64 `json:"dockerd_cpu_s"`
	ClientCPU  float64 `json:"client_cpu_s"` // raw: this process; plugin: the host process
	Lines      int     `json:"lines"`
	Check      string  `json:"check"`
	OK         bool    `json:"ok"`
}

// rawRead reads every container's logs at once and discards them: to EOF
// (follow=0), or with follow=1 until each container's n lines have come.
func (b *bench) rawRead(ids []string, n int, follow bool) readResult {
	res := readResult{Kind: map[bool]string{false: "raw", true: "raw-follow"}[follow]}
	var mu sync.Mutex // guards res and errs
	var errs []error
	dm, self, t0 := startCPU(b.dockerd), selfCPU(), time.Now()
	_ = parallel(len(ids), len(ids), func(i int) error {
		// A follow stream does not end: stop after the last line.
		ctx, cancel := context.WithTimeout(b.ctx, 10*time.Minute)
		defer cancel()
		lines := 0
		err := b.eng.frames(ctx, ids[i], url.Values{"follow": {map[bool]string{false: "0", true: "1"}[follow]}}, func([]byte) bool {
			lines++
			return lines < n || !follow
		})
		mu.Lock()
		defer mu.Unlock()
		res.Lines += lines
		if err != nil {
			errs = append(errs, err)
		}
		return nil
	})
	dcpu, _ := dm()
	res.WallS, res.DockerdCPU, res.ClientCPU = time.Since(t0).Seconds(), dcpu.Seconds(), (selfCPU() - self).Seconds()
	res.OK = len(errs) == 0 && res.Lines == n*len(ids)
	if err := errors.Join(errs...); err != nil {
		res.Check = err.Error()
	}
	return res
}

// pluginRead runs the .so in the test host from the head of the case's
// containers until every line has been collected.
func (b *bench) pluginRead(caseName string, want map[string]int) readResult {
	res := readResult{Kind: "plugin"}
	total := 0
	for _, n := range want {
		total += n
	}
	dm := startCPU(b.dockerd)
	h, err := b.start("host", caseName, b.props(caseName, nil))
	if err != nil {
		res.Check = err.Error()
		return res
	}
	last, prev, ok := h.waitRecords(total, 30*time.Second)
	dcpu, _ := dm()
	h.idle(1500 * time.Millisecond) // duplicates would show up in the next collect
	h.stop()
	res.WallS, res.WallLowS = last.at.Sub(h.t0).Seconds(), prev.at.Sub(h.t0).Seconds()
	res.ClientCPU, res.DockerdCPU, res.Lines = last.cpu.Seconds(), dcpu.Seconds(), last.records
	c := h.check(want)
	res.Check, res.OK = c.String(), ok && c.ok() && c.Extra == 0
	if !ok {
		res.Check += fmt.Sprintf("; %d of %d records, then none for 30 s", last.records, total)
	}
	return res
}

// historyCase generates containers of n lines each, then compares raw reads
// with the plugin's, side by side, reps times: raw, raw-follow, plugin.
func (b *bench) historyCase(name string, containers, n int) ([]readResult, error) {
	logf("history %s: %d container(s) x %d lines of 100 bytes", name, containers, n)
	ids, err := b.logs(func(int) string { return name }, slices.Repeat([]int{n}, containers)...)
	defer b.removeAll(ids)
	if err != nil {
		return nil, err
	}
	want := map[string]int{}
	for _, id := range ids {
		want[id] = n
	}
	var out []readResult
	for rep := range *reps {
		for _, r := range []func() readResult{
			func() readResult { return b.rawRead(ids, n, false) },
			func() readResult { return b.rawRead(ids, n, true) },
			func() readResult { return b.pluginRead(name, want) },
		} {
			if b.ctx.Err() != nil {
				return out, b.ctx.Err()
			}
			res := r()
			logf("  rep %d %-10s wall %.2fs dockerd %.2fs client %.2fs lines %d ok=%v %s",
				rep+1, res.Kind, res.WallS, res.DockerdCPU, res.ClientCPU, res.Lines, res.OK, res.Check)
			out = append(out, res)
		}
	}
	return out, nil
}

// runHistory compares, for one container and for several read at once,
// the plugin's read of their whole history with raw reads of the same logs:
// GET /containers/{id}/logs?stdout=1&stderr=1&timestamps=1 to EOF (raw) or
// with follow=1 (what the plugin asks for a running container) until the
// last line, all containers at once, discarded. The plugin's wall time runs
// from the host's exec to the collect that completed the count (a 1 s
// collect timer); the collect before it bounds it from below. Containers
// run loggen -hold: one that exited before the plugin starts is not read
// even with Read_From_Head=on.
func (b *bench) runHistory() error {
	for ci, c := range []struct{ containers, lines int }{{1, *histLines}, {*histN, *histNLine}} {
		if c.containers <= 0 || c.lines <= 0 {
			continue
		}
		name := fmt.Sprintf("history-%dx%d", c.containers, c.lines)
		results, err := b.historyCase(name, c.containers, c.lines)
		b.rep.raw(name, results)
		var ratios, low, follow, cpu, raw []float64
		failed := 0 // reps whose plugin run did not deliver every line once
		perLine := func(s float64) float64 { return s * 1e6 / float64(c.containers*c.lines) }
		for i := 0; i+2 < len(results); i += 3 {
			rw, rf, pl := results[i], results[i+1], results[i+2]
			if !pl.OK { // a run that failed its check has no meaningful wall or CPU
				failed++
				continue
			}
			ratios, low, follow = append(ratios, pl.WallS/rw.WallS), append(low, pl.WallLowS/rw.WallS), append(follow, pl.WallS/rf.WallS)
			cpu, raw = append(cpu, perLine(pl.ClientCPU)), append(raw, perLine(rw.ClientCPU))
		}
		b.medianGoal("1"+string(rune('a'+ci)), name+": plugin wall / raw wall, median (the collect before the last; / raw-follow)", ratios, failed,
			1.10, "%.2f", fmt.Sprintf(" (%.2f; %.2f)", median(low), median(follow)))
		if ci == 0 {
			b.medianGoal("2a", "plugin host CPU per line, history of 1 container (a raw Go client that only reads the stream)", cpu, failed,
				0.5, "%.2f us", fmt.Sprintf(" (%.2f us)", median(raw)))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// medianGoal reports the median of v, then more, against a bound, or
// that runs failed.
func (b *bench) medianGoal(id, what string, v []float64, failed int, bound float64, format, more string) {
	goal := fmt.Sprintf("<= "+format, bound)
	switch {
	case failed > 0:
		b.rep.goal(id, what, fmt.Sprintf("%d runs failed their check", failed), goal, boolp(false))
	case len(v) > 0:
		b.rep.goal(id, what, fmt.Sprintf(format, median(v))+more, goal, boolp(median(v) <= bound))
	}
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Sorted(slices.Values(v))
	return (v[(len(v)-1)/2] + v[len(v)/2]) / 2
}
