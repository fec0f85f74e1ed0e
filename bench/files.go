package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/dockerlogs/fluent-bit-docker-logs/internal/dockertest"
)

// The files suite: one container's log of filesLines lines of filesLineSize
// bytes, unrotated, read to its last record by a real Fluent Bit three
// ways in one run: the plugin from the files, the plugin through the API,
// and Fluent Bit's tail input with the docker parser on the same file.
// Each is a fresh fluent-bit process with -o null; the time to the last
// record is taken from Fluent Bit's own input counter (its HTTP server,
// polled every filesPoll), the CPU from /proc of Fluent Bit's process and
// of dockerd.

const (
	filesLines    = 1000000
	filesLineSize = 100
	filesPoll     = 20 * time.Millisecond
	// filesTimeout bounds one reader's run.
	filesTimeout = 5 * time.Minute
)

// fluentBitPath finds fluent-bit on PATH.
func fluentBitPath() (string, error) { return exec.LookPath("fluent-bit") }

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
	fb, err := fluentBitPath()
	if err != nil {
		b.rep.note("files: fluent-bit is not on PATH; suite skipped")
		return nil
	}
	name := "dl-bench-files-" + dockertest.RunID()
	// -hold keeps it running: the plugin reads running containers from
	// their head with Read_From_Head.
	out, err := exec.CommandContext(b.ctx, "docker", "run", "-d", "--network", "none", "--name", name,
		"--label", dockertest.LabelTest+"=1", "--label", dockertest.LabelRun+"="+dockertest.RunID(),
		"--log-opt", "max-size=1g", b.image,
		"-lines", strconv.Itoa(filesLines), "-size", strconv.Itoa(filesLineSize), "-hold").Output()
	if err != nil {
		return fmt.Errorf("docker run: %w", err)
	}
	id := strings.TrimSpace(string(out))
	defer exec.Command("docker", "rm", "-f", id).Run() //nolint:errcheck // removed by label at exit too
	logf("files: waiting for %d lines in %s", filesLines, id[:12])
	if err := b.eng.waitLastSeq(b.ctx, id, filesLines, logf); err != nil {
		return err
	}
	lp, err := exec.CommandContext(b.ctx, "docker", "inspect", "-f", "{{.LogPath}}", id).Output()
	if err != nil {
		return fmt.Errorf("docker inspect: %w", err)
	}
	logPath := strings.TrimSpace(string(lp))
	parsers := filepath.Join(b.cfg.paths.tmp, "files-parsers.conf")
	// Fluent Bit's own docker parser (conf/parsers.conf).
	const dockerParser = "[PARSER]\n    Name        docker\n    Format      json\n    Time_Key    time\n    Time_Format %Y-%m-%dT%H:%M:%S.%L\n    Time_Keep   On\n"
	if err := os.WriteFile(parsers, []byte(dockerParser), 0o644); err != nil {
		return err
	}
	plugin := func(mode string) []string {
		return []string{"-e", b.cfg.paths.so, "-i", "docker_logs", "-p", "Logs_From=" + mode,
			"-p", "Read_From_Head=on", "-p", "Include_Names=^" + name + "$"}
	}
	runs := []struct {
		name string
		args []string
	}{
		{"plugin, files", plugin("files")},
		{"plugin, API", plugin("api")},
		{"tail + docker parser", []string{"-R", parsers, "-i", "tail", "-p", "path=" + logPath, "-p", "parser=docker",
			"-p", "read_from_head=on", "-p", "refresh_interval=1", "-p", "buffer_max_size=1M"}},
	}
	var results []filesRun
	for _, r := range runs {
		if b.ctx.Err() != nil {
			return b.ctx.Err()
		}
		res := b.fluentBitRun(fb, r.name, r.args)
		if res.err != nil {
			logf("files: %s: %v", r.name, res.err)
			b.rep.note("files: %s: %v", r.name, res.err)
		}
		logf("files: %s: %d records in %s, Fluent Bit %s CPU, dockerd %s CPU", r.name, res.records,
			res.wall.Round(time.Millisecond), res.fbCPU.Round(time.Millisecond), res.dockerd.Round(time.Millisecond))
		results = append(results, res)
	}
	b.reportFiles(results)
	return nil
}

// fluentBitRun starts fluent-bit with an input, -o null and its HTTP server,
// and waits until the input has counted filesLines records.
func (b *bench) fluentBitRun(fb, name string, input []string) filesRun {
	res := filesRun{name: name}
	port, err := freePort()
	if err != nil {
		res.err = err
		return res
	}
	args := append([]string{"-q", "-H", "-P", strconv.Itoa(port), "-f", "1"}, input...)
	args = append(args, "-o", "null")
	ctx, cancel := context.WithTimeout(b.ctx, filesTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, fb, args...)
	logFile, err := os.Create(filepath.Join(b.cfg.paths.logs, "files-"+strings.NewReplacer(" ", "", ",", "-", "+", "").Replace(name)+".log"))
	if err == nil {
		defer logFile.Close()
		cmd.Stdout, cmd.Stderr = logFile, logFile
	}
	dockerd0, _ := procCPU(b.dockerd)
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		res.err = err
		return res
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt) //nolint:errcheck // it may have exited
		cmd.Wait()                       //nolint:errcheck // stopped on purpose
	}()
	url := fmt.Sprintf("http://127.0.0.1:%d/api/v1/metrics", port)
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(filesPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			res.err = fmt.Errorf("%d of %d records after %s", res.records, filesLines, filesTimeout)
			res.fbCPU, _ = procCPU(cmd.Process.Pid)
			return res
		case <-tick.C:
		}
		n, err := inputRecords(client, url)
		if err != nil {
			continue // not listening yet
		}
		res.records = n
		if n >= filesLines {
			res.wall = time.Since(t0)
			res.fbCPU, _ = procCPU(cmd.Process.Pid)
			if d1, err := procCPU(b.dockerd); err == nil && b.dockerd != 0 {
				res.dockerd = d1 - dockerd0
			}
			res.complete = true
			return res
		}
	}
}

// inputRecords is the records counter of Fluent Bit's only input.
func inputRecords(c *http.Client, url string) (int, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var m struct {
		Input map[string]struct {
			Records int `json:"records"`
		} `json:"input"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		return 0, err
	}
	for _, in := range m.Input {
		return in.Records, nil
	}
	return 0, errors.New("no input in the metrics")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (b *bench) reportFiles(rs []filesRun) {
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 / filesLines }
	var tail, files, api *filesRun
	for i := range rs {
		switch rs[i].name {
		case "tail + docker parser":
			tail = &rs[i]
		case "plugin, files":
			files = &rs[i]
		case "plugin, API":
			api = &rs[i]
		}
	}
	s := section{Title: fmt.Sprintf("Reading one container's %d-line log (%d B lines, unrotated) in a real Fluent Bit, -o null", filesLines, filesLineSize),
		Header: []string{"reader", "time to last record", "x tail", "Fluent Bit CPU/line", "dockerd CPU/line", "CPU/line all told", "x tail", "x API path"}}
	for _, r := range rs {
		if !r.complete {
			s.Rows = append(s.Rows, []string{r.name, fmt.Sprintf("incomplete: %d records", r.records), "", "", "", "", "", ""})
			continue
		}
		all := us(r.fbCPU + r.dockerd)
		row := []string{r.name, filesSecs(r.wall), "", fmt.Sprintf("%.2f us", us(r.fbCPU)), fmt.Sprintf("%.2f us", us(r.dockerd)),
			fmt.Sprintf("%.2f us", all), "", ""}
		if tail != nil && tail.complete {
			row[2] = filesRatio(r.wall.Seconds(), tail.wall.Seconds())
			row[6] = filesRatio(all, us(tail.fbCPU+tail.dockerd))
		}
		if api != nil && api.complete {
			row[7] = filesRatio(all, us(api.fbCPU+api.dockerd))
		}
		s.Rows = append(s.Rows, row)
		b.rep.raw("files/"+r.name, map[string]any{"wall_s": r.wall.Seconds(), "fluentbit_cpu_s": r.fbCPU.Seconds(),
			"dockerd_cpu_s": r.dockerd.Seconds(), "records": r.records})
	}
	s.Notes = append(s.Notes, "CPU of Fluent Bit's process from its start (plugin init included) to the last record; dockerd's over the same span.")
	b.rep.section(s)
	ok := func(r *filesRun) bool { return r != nil && r.complete }
	if ok(files) && ok(tail) {
		b.rep.goal("files-time", "files: time to the last record", filesSecs(files.wall), "<= tail's "+filesSecs(tail.wall),
			boolp(files.wall <= tail.wall))
		fc, tc := us(files.fbCPU+files.dockerd), us(tail.fbCPU+tail.dockerd)
		b.rep.goal("files-cpu-tail", "files: CPU per line all told", fmt.Sprintf("%.2f us", fc), fmt.Sprintf("<= tail's %.2f us", tc), boolp(fc <= tc))
	}
	if ok(files) && ok(api) {
		fc, ac := us(files.fbCPU+files.dockerd), us(api.fbCPU+api.dockerd)
		b.rep.goal("files-cpu-api", "files: CPU per line all told", fmt.Sprintf("%.2f us", fc), fmt.Sprintf("<= 1/5 of the API path's %.2f us", ac), boolp(fc*5 <= ac))
	}
	if ok(files) && b.dockerd != 0 {
		b.rep.goal("files-dockerd", "files: dockerd CPU during the read", files.dockerd.Round(time.Millisecond).String(), "~0 (< 50 ms)",
			boolp(files.dockerd < 50*time.Millisecond))
	}
}

func filesSecs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func filesRatio(a, b float64) string { return fmt.Sprintf("%.3f", a/b) }
