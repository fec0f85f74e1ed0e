package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// runPipeline runs capture's BenchmarkPipeline on one core with a CPU
// profile, and reports the median of -bench-count runs.
func (b *bench) runPipeline() error {
	prof, _ := filepath.Abs(filepath.Join(*outDir, "pipeline.cpu.pprof"))
	bin, _ := filepath.Abs(filepath.Join(*outDir, "capture.test"))
	args := []string{"test", "./capture", "-run", "^$", "-bench", "^BenchmarkPipeline$", "-cpu", "1",
		"-benchmem", "-count", strconv.Itoa(*benchCount), "-cpuprofile", prof, "-o", bin}
	logf("go %s", strings.Join(args, " "))
	out, err := exec.CommandContext(b.ctx, "go", args...).CombinedOutput()
	_ = os.WriteFile(filepath.Join(*outDir, "pipeline.txt"), out, 0o644)
	if err != nil {
		return fmt.Errorf("go test: %w\n%s", err, out)
	}
	// name -> unit -> one value a run
	runs := map[string]map[string][]float64{}
	for _, line := range bytes.Split(out, []byte("\n")) {
		f := append(strings.Fields(string(line)), "")
		name, ok := strings.CutPrefix(f[0], "BenchmarkPipeline/")
		if !ok {
			continue
		}
		if runs[name] == nil {
			runs[name] = map[string][]float64{}
		}
		for i := 2; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				runs[name][f[i+1]] = append(runs[name][f[i+1]], v)
			}
		}
	}
	med := func(name, unit string) float64 {
		if v := slices.Sorted(slices.Values(runs[name][unit])); len(v) > 0 {
			return v[len(v)/2]
		}
		return -1
	}
	b.rep.raw("pipeline", runs)
	b.rep.note("pipeline: BenchmarkPipeline -cpu 1, median of %d: %s; CPU profile %s", *benchCount, filepath.Join(*outDir, "pipeline.txt"), prof)
	if _, ok := runs["stream"]; ok {
		wall, cpu := med("stream", "lines/s"), med("stream", "lines/cpu-s")
		b.rep.goal("2b", "decode + timestamp + merge + encode on one core (BenchmarkPipeline stream: wall / per CPU-s)",
			fmt.Sprintf("%.2fM / %.2fM lines/s (%.0f ns a line)", wall/1e6, cpu/1e6, med("stream", "cpu-ns/line")), ">= 3M", boolp(cpu >= 3e6))
		// Per-chunk allocations (queue hand-off, pooled buffers dropped by
		// GC) are not per line: the per-line path is the "lines" benchmark.
		lines, stream := med("lines", "allocs/op"), med("stream", "allocs/line")
		b.rep.goal("2c", "allocations per line, steady state (lines: allocs/op; stream: allocs/line)",
			fmt.Sprintf("%.0f; %.4f", lines, stream), "0", boolp(lines == 0 && stream < 0.05))
	}
	return nil
}
