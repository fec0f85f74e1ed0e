// Package metrics serves the capture's counters, the Go runtime's and the
// process's in Prometheus' text format at /metrics.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"
	"golang.org/x/net/netutil"

	"github.com/dockerlogs/fluent-bit-docker-logs/capture"
	"github.com/dockerlogs/fluent-bit-docker-logs/conf"
)

// namespace prefixes every metric's name.
const namespace = "docker_logs"

// shutdownTimeout bounds how long Close waits for scrapes in progress; it
// is part of the plugin's exit timeout.
const shutdownTimeout = 500 * time.Millisecond

// serverLimits bound what clients of the metrics server can hold in Fluent
// Bit's process: every connection is a file descriptor and two goroutines.
type serverLimits struct {
	read, write, idle time.Duration
	conns             int
}

// limits: a scrape is one small request and a response of some kilobytes
// (more with Metrics_Container_Labels on a large host), sent in well under
// a second.
var limits = serverLimits{
	// The whole request, which has no body.
	read: 10 * time.Second,
	// The response, from the end of the request's headers: a client that
	// stops reading is dropped.
	write: 30 * time.Second,
	// A keep-alive connection left idle: Prometheus scrapes every 15 to
	// 60 s and reconnects at little cost; left open, idle connections
	// held file descriptors for minutes.
	idle: 30 * time.Second,
	// Connections served at once: a few scrapers (an HA pair of
	// Prometheus, an agent, someone's curl). Beyond it new ones wait in
	// the kernel's backlog until one closes.
	conns: 16,
}

// Listen binds the metrics address at init, before anything starts, so that
// a port in use fails init with an error naming the key.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", strings.ToLower(conf.KeyMetricsListen), addr, err)
	}
	return ln, nil
}

// Server serves Prometheus' text format at /metrics from its own registry:
// the Go and process collectors and the capture's counters.
type Server struct {
	srv *http.Server
	log *logrus.Entry
	// done is closed by the serving goroutine when Serve has returned;
	// close waits on it.
	done chan struct{}
}

// Serve starts serving on ln, which it then owns. stats is read at each
// scrape; perContainer adds the series by container name.
func Serve(ln net.Listener, stats func() capture.StatsSnapshot, perContainer bool, log *logrus.Entry) (*Server, error) {
	return serve(ln, stats, perContainer, log, limits)
}

func serve(ln net.Listener, stats func() capture.StatsSnapshot, perContainer bool, log *logrus.Entry, limits serverLimits) (*Server, error) {
	reg := prometheus.NewRegistry()
	for _, col := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newCaptureCollector(stats, perContainer),
	} {
		if err := reg.Register(col); err != nil {
			ln.Close()
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      log,
		ErrorHandling: promhttp.ContinueOnError,
	}))
	m := &Server{
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout: limits.read, WriteTimeout: limits.write, IdleTimeout: limits.idle},
		log:  log,
		done: make(chan struct{}),
	}
	// Accept waits while limits.conns connections are open.
	bounded := netutil.LimitListener(ln, limits.conns)
	go func() {
		defer close(m.done)
		if err := m.srv.Serve(bounded); !errors.Is(err, http.ErrServerClosed) {
			log.WithError(err).Error("metrics server stopped")
		}
	}()
	log.WithField("metrics_listen", ln.Addr().String()).Info("serving metrics at /metrics")
	return m, nil
}

// Close stops the server: scrapes in progress get shutdownTimeout, then
// their connections are cut. It returns once the serving goroutine has.
func (m *Server) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := m.srv.Shutdown(ctx); err != nil {
		m.log.WithError(err).Warn("metrics server did not stop in time, closing its connections")
		m.srv.Close() //nolint:errcheck // the listener is closed already; the error is Shutdown's
	}
	<-m.done
}

// captureCollector reads the capture's counters at each scrape; nothing is
// kept between scrapes, so the plugin's hot path never touches prometheus.
type captureCollector struct {
	stats        func() capture.StatsSnapshot
	perContainer bool

	containers, streams, refreshes, reconnects *prometheus.Desc
	errors, lines, bytes, truncated            *prometheus.Desc
	queueBytes, queueCapacity, paused          *prometheus.Desc
	posWrites, posFailures                     *prometheus.Desc
	containerLines, containerBytes             *prometheus.Desc
}

func newCaptureCollector(stats func() capture.StatsSnapshot, perContainer bool) *captureCollector {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, labels, nil)
	}
	return &captureCollector{
		stats:         stats,
		perContainer:  perContainer,
		containers:    desc("containers_watched", "Containers with a reader running."),
		streams:       desc("streams_open", "Logs streams open to the daemon."),
		refreshes:     desc("stream_refreshes_total", "Streams closed at Stream_Refresh and reopened."),
		reconnects:    desc("reconnects_total", "Reconnections to the daemon after its events stream ended."),
		errors:        desc("errors_total", "Errors, by what failed.", "reason"),
		lines:         desc("lines_total", "Log lines read and queued for Fluent Bit, by stream.", "stream"),
		bytes:         desc("bytes_total", "Bytes of those lines (without line ends), by stream.", "stream"),
		truncated:     desc("lines_truncated_total", "Lines cut at Max_Line_Size."),
		queueBytes:    desc("queue_bytes", "Encoded records waiting for Fluent Bit."),
		queueCapacity: desc("queue_capacity_bytes", "Queue_Max_Size: the bound of queue_bytes."),
		paused:        desc("paused", "1 while Fluent Bit has paused the input, else 0."),
		posWrites:     desc("position_writes_total", "Writes of the DB positions file."),
		posFailures:   desc("position_write_failures_total", "Writes of the DB positions file that failed (also errors_total{reason=\"positions\"})."),
		containerLines: desc("container_lines_total",
			"Log lines read and queued, by container name and stream (Metrics_Container_Labels).", "container", "stream"),
		containerBytes: desc("container_bytes_total",
			"Bytes of those lines, by container name and stream (Metrics_Container_Labels).", "container", "stream"),
	}
}

func (c *captureCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.containers, c.streams, c.refreshes, c.reconnects, c.errors, c.lines, c.bytes,
		c.truncated, c.queueBytes, c.queueCapacity, c.paused, c.posWrites, c.posFailures,
	} {
		ch <- d
	}
	if c.perContainer {
		ch <- c.containerLines
		ch <- c.containerBytes
	}
}

func (c *captureCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	gauge := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- constMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- constMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge(c.containers, s.ContainersWatched)
	gauge(c.streams, s.StreamsOpen)
	counter(c.refreshes, s.Refreshes)
	counter(c.reconnects, s.Reconnects)
	for r := range capture.NumErrorReasons {
		counter(c.errors, s.Errors[r], r.String())
	}
	counter(c.lines, s.StdoutLines, "stdout")
	counter(c.lines, s.StderrLines, "stderr")
	counter(c.bytes, s.StdoutBytes, "stdout")
	counter(c.bytes, s.StderrBytes, "stderr")
	counter(c.truncated, s.LinesTruncated)
	gauge(c.queueBytes, s.QueueBytes)
	gauge(c.queueCapacity, s.QueueCapacity)
	paused := int64(0)
	if s.Paused {
		paused = 1
	}
	gauge(c.paused, paused)
	counter(c.posWrites, s.PositionWrites)
	counter(c.posFailures, s.PositionWriteFailures)
	if !c.perContainer {
		return
	}
	for _, ct := range s.Containers {
		counter(c.containerLines, ct.StdoutLines, ct.Name, "stdout")
		counter(c.containerLines, ct.StderrLines, ct.Name, "stderr")
		counter(c.containerBytes, ct.StdoutBytes, ct.Name, "stdout")
		counter(c.containerBytes, ct.StderrBytes, ct.Name, "stderr")
	}
}

// constMetric reports a bad metric to the scrape instead of panicking, as
// prometheus.MustNewConstMetric would.
func constMetric(d *prometheus.Desc, t prometheus.ValueType, v int64, labels ...string) prometheus.Metric {
	m, err := prometheus.NewConstMetric(d, t, float64(v), labels...)
	if err != nil {
		return prometheus.NewInvalidMetric(d, err)
	}
	return m
}
