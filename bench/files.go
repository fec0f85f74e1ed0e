package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/dockerlogs/fluent-bit-docker-logs/testhost"
)

// The files suite: one container's log of -files-lines lines of 100 bytes,
// unrotated, read to its last record by a real Fluent Bit three ways in one
// run: the plugin from the files, the plugin through the API,
// and Fluent Bit's tail input with the docker parser on the same file.
// Each is a fresh fluent-bit process with -o null; the time to the last
// record is taken from Fluent Bit's own input counter (its HTTP server,
// polled every filesPoll), the CPU from /proc of Fluent Bit's process and
// of dockerd.

const (
	filesPoll = 20 * time.Millisecond
	// filesTimeout bounds one reader's run.
	filesTimeout = 5 * time.Minute
)

type filesRun struct {
	name     string
	wall     time.Duration // from the process's start to the last record
	fbCPU    time.Duration
	dockerd  time.Duration
	records  int
	err      error
	complete bool
}

func (b *bench) runFiles() error {
	fb, err := exec.LookPath("fluent-bit")
	if err != nil {
		b.rep.note("files: fluent-bit is not on PATH; suite skipped")
		return nil
	}
	ids, err := b.logs(func(int) string { return "files" }, *filesLines)
	defer b.removeAll(ids)
	logPath, parsers := "", filepath.Join(runTmp, "files-parsers.conf")
	if err == nil {
		logPath, err = b.eng.logPath(ids[0])
	}
	// Fluent Bit's own docker parser (conf/parsers.conf).
	const dockerParser = "[PARSER]\n    Name        docker\n    Format      json\n    Time_Key    time\n    Time_Format %Y-%m-%dT%H:%M:%S.%L\n    Time_Keep   On\n"
	if err = errors.Join(err, os.WriteFile(parsers, []byte(dockerParser), 0o644)); err != nil {
		return err
	}
	plugin := []string{"-e", *pluginSO, "-i", "docker_logs", "-p", "Read_From_Head=on", "-p", "Include_Labels=" + labelCase + "=" + caseValue("files"), "-p"}
	var results []filesRun
	for _, r := range []struct {
		name string
		args []string
	}{
		{"plugin, files", append(plugin, "Logs_From=files")},
		{"plugin, API", append(plugin, "Logs_From=api")},
		{"tail + docker parser", []string{"-R", parsers, "-i", "tail", "-p", "path=" + logPath, "-p", "parser=docker",
			"-p", "read_from_head=on", "-p", "refresh_interval=1", "-p", "buffer_max_size=1M"}},
	} {
		if b.ctx.Err() != nil {
			return b.ctx.Err()
		}
		res := b.fluentBitRun(fb, r.name, r.args)
		logf("files: %s: %d records in %s, Fluent Bit %s CPU, dockerd %s CPU; %v", r.name, res.records,
			res.wall.Round(time.Millisecond), res.fbCPU.Round(time.Millisecond), res.dockerd.Round(time.Millisecond), res.err)
		if res.err != nil {
			b.rep.note("files: %s: %v", r.name, res.err)
		}
		results = append(results, res)
	}
	b.reportFiles(results)
	return nil
}

// fluentBitRun starts fluent-bit with an input, -o null and its HTTP server,
// and waits until the input has counted -files-lines records.
func (b *bench) fluentBitRun(fb, name string, input []string) (res filesRun) {
	res.name = name
	addr, err := testhost.FreeAddr()
	_, port, _ := strings.Cut(addr, ":")
	ctx, cancel := context.WithTimeout(b.ctx, filesTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, fb, append(append([]string{"-q", "-H", "-P", port, "-f", "1"}, input...), "-o", "null")...)
	log, _ := os.Create(filepath.Join(logsDir, "files-"+strings.NewReplacer(" ", "", ",", "-", "+", "").Replace(name)+".log"))
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	dm, t0 := startCPU(b.dockerd), time.Now()
	if res.err = errors.Join(err, cmd.Start()); res.err != nil {
		return res
	}
	defer func() {
		res.fbCPU, _ = procCPU(cmd.Process.Pid)
		_ = cmd.Process.Signal(os.Interrupt) // it may have exited
		_ = cmd.Wait()
	}()
	tick := time.NewTicker(filesPoll)
	defer tick.Stop()
	for res.records < *filesLines {
		select {
		case <-ctx.Done():
			res.err = fmt.Errorf("%d of %d records after %s", res.records, *filesLines, filesTimeout)
			return res
		case <-tick.C:
		}
		res.records, _ = inputRecords("http://" + addr + "/api/v1/metrics") // 0 until it listens
	}
	res.wall, res.complete = time.Since(t0), true
	if b.dockerd != 0 {
		res.dockerd, _ = dm()
	}
	return res
}

// inputRecords is the records counter of Fluent Bit's only input.
func inputRecords(url string) (int, error) {
	resp, err := (&http.Client{Timeout: time.Second}).Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var m struct {
		Input map[string]struct {
			Records int `json:"records"`
		} `json:"input"`
	}
	err = json.NewDecoder(resp.Body).Decode(&m)
	for _, in := range m.Input {
		return in.Records, err
	}
	return 0, err
}

// reportFiles writes the table of the runs (files, API, tail, in that
// order) and the goals of reading the files.
func (b *bench) reportFiles(rs []filesRun) {
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 / float64(*filesLines) }
	all := func(r filesRun) float64 { return us(r.fbCPU + r.dockerd) }
	ratio := func(a, b float64, base filesRun) string {
		if !base.complete {
			return ""
		}
		return fmt.Sprintf("%.3f", a/b)
	}
	files, api, tail := rs[0], rs[1], rs[2]
	s := section{Title: fmt.Sprintf("Reading one container's %d-line log (100 B lines, unrotated) in a real Fluent Bit, -o null", *filesLines),
		Header: []string{"reader", "time to last record", "x tail", "Fluent Bit CPU/line", "dockerd CPU/line", "CPU/line all told", "x tail", "x API path"},
		Notes:  []string{"CPU of Fluent Bit's process from its start (plugin init included) to the last record; dockerd's over the same span."}}
	for _, r := range rs {
		if !r.complete {
			s.Rows = append(s.Rows, []string{r.name, fmt.Sprintf("incomplete: %d records", r.records), "", "", "", "", "", ""})
			continue
		}
		s.Rows = append(s.Rows, []string{r.name, fmt.Sprintf("%.2f s", r.wall.Seconds()), ratio(r.wall.Seconds(), tail.wall.Seconds(), tail),
			fmt.Sprintf("%.2f us", us(r.fbCPU)), fmt.Sprintf("%.2f us", us(r.dockerd)), fmt.Sprintf("%.2f us", all(r)),
			ratio(all(r), all(tail), tail), ratio(all(r), all(api), api)})
		b.rep.raw("files/"+r.name, map[string]any{"wall_s": r.wall.Seconds(), "fluentbit_cpu_s": r.fbCPU.Seconds(),
			"dockerd_cpu_s": r.dockerd.Seconds(), "records": r.records})
	}
	b.rep.section(s)
	if !files.complete {
		return
	}
	if tail.complete {
		b.rep.goal("files-time", "files: time to the last record", fmt.Sprintf("%.2f s", files.wall.Seconds()),
			fmt.Sprintf("<= tail's %.2f s", tail.wall.Seconds()), boolp(files.wall <= tail.wall))
		b.rep.goal("files-cpu-tail", "files: CPU per line all told", fmt.Sprintf("%.2f us", all(files)),
			fmt.Sprintf("<= tail's %.2f us", all(tail)), boolp(all(files) <= all(tail)))
	}
	if api.complete {
		b.rep.goal("files-cpu-api", "files: CPU per line all told", fmt.Sprintf("%.2f us", all(files)),
			fmt.Sprintf("<= 1/5 of the API path's %.2f us", all(api)), boolp(all(files)*5 <= all(api)))
	}
	if b.dockerd != 0 {
		b.rep.goal("files-dockerd", "files: dockerd CPU during the read", files.dockerd.Round(time.Millisecond).String(), "~0 (< 50 ms)",
			boolp(files.dockerd < 50*time.Millisecond))
	}
}
