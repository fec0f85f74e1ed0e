package testhost

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dockerlogs/fluent-bit-docker-logs/internal/dockertest"
	"github.com/dockerlogs/fluent-bit-docker-logs/internal/records"
)

// freeAddr is FreeAddr for a test.
func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// scrape is Scrape for a test.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	m, err := Scrape(addr)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	return m
}

// deliveredByStream counts the records of container id and their log
// bytes, by stream.
func deliveredByStream(recs []records.Record, id string) (lines, bytes map[string]int) {
	lines, bytes = map[string]int{}, map[string]int{}
	for _, r := range recs {
		if r.ContainerID == id {
			lines[r.Stream]++
			bytes[r.Stream] += len(r.Log)
		}
	}
	return lines, bytes
}

func TestMetricsCountTheRecordsDeliveredAndExitStopsTheServer(t *testing.T) {
	labels := caseLabels(t)
	addr := freeAddr(t)
	props := hostProps()
	props["Metrics_Listen"] = addr
	h := Start(t, props)
	if code := h.ExitCode(); code != -1 {
		t.Fatalf("init failed (exit code %d)", code)
	}

	const lines = 400
	id := dockertest.Run(t, dockertest.RunOptions{
		Args:   []string{"-lines", strconv.Itoa(lines), "-stream", "both", "-size", "60", "-hold"},
		Labels: labels,
	})
	recs := h.WaitRecords(t, func(r []records.Record) bool { return countByContainer(r, id) >= lines }, 2*time.Minute)
	wantLines, wantBytes := deliveredByStream(recs, id)

	m := scrape(t, addr)
	for _, s := range []string{"stdout", "stderr"} {
		if got := m[`docker_logs_lines_total{stream="`+s+`"}`]; got != float64(wantLines[s]) {
			t.Errorf(`docker_logs_lines_total{stream="%s"} = %v, %d records delivered`, s, got, wantLines[s])
		}
		if got := m[`docker_logs_bytes_total{stream="`+s+`"}`]; got != float64(wantBytes[s]) {
			t.Errorf(`docker_logs_bytes_total{stream="%s"} = %v, the records hold %d bytes`, s, got, wantBytes[s])
		}
	}
	for series, want := range map[string]float64{
		"docker_logs_containers_watched":          1,
		"docker_logs_paused":                      0,
		"docker_logs_queue_capacity_bytes":        64 << 20,
		"docker_logs_lines_truncated_total":       0,
		`docker_logs_errors_total{reason="open"}`: 0,
	} {
		if got, ok := m[series]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, want)
		}
	}
	for _, series := range []string{
		"go_goroutines", "process_open_fds", "process_resident_memory_bytes",
		"docker_logs_queue_bytes", "docker_logs_streams_open", "docker_logs_stream_refreshes_total", "docker_logs_reconnects_total",
		"docker_logs_position_writes_total", "docker_logs_position_write_failures_total",
		`docker_logs_errors_total{reason="inspect"}`, `docker_logs_errors_total{reason="list"}`,
		`docker_logs_errors_total{reason="read"}`, `docker_logs_errors_total{reason="malformed"}`,
		`docker_logs_errors_total{reason="unreadable"}`, `docker_logs_errors_total{reason="events"}`,
		`docker_logs_errors_total{reason="positions"}`, `docker_logs_errors_total{reason="clock_step"}`, `docker_logs_errors_total{reason="gap"}`,
	} {
		if _, ok := m[series]; !ok {
			t.Errorf("no %s in the scrape", series)
		}
	}
	// Off by default: series must not grow with the containers.
	for series := range m {
		if strings.HasPrefix(series, "docker_logs_container_") {
			t.Errorf("per-container series %s without Metrics_Container_Labels", series)
		}
	}

	info := h.Exit()
	if info.TookMS >= 2000 {
		t.Errorf("exit took %d ms, want < 2000", info.TookMS)
	}
	if info.Goroutines != info.Baseline {
		t.Errorf("%d goroutines after exit, %d before init: the metrics server left some behind", info.Goroutines, info.Baseline)
	}
	if c, err := net.DialTimeout("tcp", addr, 5*time.Second); err == nil {
		c.Close()
		t.Errorf("%s still accepts connections after exit", addr)
	}
}

func TestMetricsContainerLabelsAddSeriesPerContainerName(t *testing.T) {
	labels := caseLabels(t)
	addr := freeAddr(t)
	props := hostProps()
	props["Metrics_Listen"] = addr
	props["Metrics_Container_Labels"] = "on"
	h := Start(t, props)
	if code := h.ExitCode(); code != -1 {
		t.Fatalf("init failed (exit code %d)", code)
	}
	const lines = 50
	id := dockertest.Run(t, dockertest.RunOptions{
		Args:   []string{"-lines", strconv.Itoa(lines), "-stream", "stderr", "-hold"},
		Labels: labels,
	})
	name := strings.TrimPrefix(dockertest.Docker(t, "inspect", "--format", "{{.Name}}", id), "/")
	recs := h.WaitRecords(t, func(r []records.Record) bool { return countByContainer(r, id) >= lines }, 2*time.Minute)
	_, wantBytes := deliveredByStream(recs, id)

	m := scrape(t, addr)
	for series, want := range map[string]float64{
		fmt.Sprintf(`docker_logs_container_lines_total{container=%q,stream="stderr"}`, name): lines,
		fmt.Sprintf(`docker_logs_container_lines_total{container=%q,stream="stdout"}`, name): 0,
		fmt.Sprintf(`docker_logs_container_bytes_total{container=%q,stream="stderr"}`, name): float64(wantBytes["stderr"]),
	} {
		if got, ok := m[series]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, want)
		}
	}
}

// A metrics address that cannot be served fails init, with a log line of
// the plugin that names the key.
func TestMetricsListenThatCannotBeServedFailsInit(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for name, addr := range map[string]string{
		"port in use":   taken.Addr().String(),
		"not host:port": "banana:xx",
	} {
		t.Run(name, func(t *testing.T) {
			h := Start(t, map[string]string{"Metrics_Listen": addr})
			if code := h.ExitCode(); code != ExitCodeInitFailed {
				t.Fatalf("exit code %d, want %d (init failed)", code, ExitCodeInitFailed)
			}
			for _, l := range h.StderrLines() {
				if !strings.HasPrefix(l, "testhost: ") && strings.Contains(l, "metrics_listen") && strings.Contains(l, addr) {
					return
				}
			}
			t.Errorf("no log line of the plugin names metrics_listen and %s:\n%s", addr, h.Stderr())
		})
	}
}
