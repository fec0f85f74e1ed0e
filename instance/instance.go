// Package instance runs the docker_logs inputs of one Fluent Bit process:
// the registry of running instances and its rules (what two instances may
// not share, which instance a callback without context belongs to), and
// each instance's life, from its configuration to the capture, Docker
// client and metrics server it builds and stops. It is pure Go; the cgo
// exports in plugin/ translate Fluent Bit's calls into calls of a Registry.
package instance

import (
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/sirupsen/logrus"

	"github.com/dockerlogs/fluent-bit-docker-logs/capture"
	"github.com/dockerlogs/fluent-bit-docker-logs/capture/jsonfile"
	"github.com/dockerlogs/fluent-bit-docker-logs/conf"
	"github.com/dockerlogs/fluent-bit-docker-logs/docker"
	"github.com/dockerlogs/fluent-bit-docker-logs/metrics"
)

// PluginName is the name Fluent Bit knows the input by.
const PluginName = "docker_logs"

// exitTimeout is how long FLBPluginExit waits for every goroutine of the
// instances it stops.
const exitTimeout = 2 * time.Second

// Instance is the whole state of one docker_logs input. The Registry
// holds every running instance; the exports reach them only through it.
type Instance struct {
	id  ID
	log *logrus.Entry

	mu      sync.Mutex
	cfg     conf.Config
	src     *jsonfile.Source // over the docker client; Close closes both
	capture *capture.Capture
	// metrics serves /metrics when Metrics_Listen is set; started by
	// start, closed by exit.
	metrics *metrics.Server
	// inFlight holds the batches handed to Fluent Bit by address until its
	// cleanup callback returns them; the callback adds, cleanup removes.
	inFlight map[unsafe.Pointer]capture.Batch
	// bufs are the C buffers of the collects, one kept for the next.
	bufs collectBuffers
}

// NewLogger writes like Fluent Bit, with the instance's number in the
// prefix: [input:docker_logs:2].
func NewLogger(id ID) *logrus.Entry {
	l := logrus.New()
	l.SetOutput(os.Stderr)
	l.SetFormatter(fluentFormatter{name: fmt.Sprintf("%s:%d", PluginName, id)})
	return logrus.NewEntry(l)
}

// start begins capturing with cfg. An unreachable daemon is not an error
// here: the supervisor retries with backoff.
func (p *Instance) start(cfg conf.Config) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log.Logger.SetLevel(cfg.LogLevel)
	positions, err := capture.OpenPositions(cfg.DB, cfg.DBMargin, p.log)
	if err != nil {
		return fmt.Errorf("%s: %w", strings.ToLower(conf.KeyDB), err)
	}
	// Bound first: a port in use fails init before anything runs.
	var ln net.Listener
	if cfg.MetricsListen != "" {
		if ln, err = metrics.Listen(cfg.MetricsListen); err != nil {
			return err
		}
	}
	src, err := docker.New(cfg.DockerHost, p.log,
		docker.WithTLS(docker.TLS{CertPath: cfg.DockerCertPath, SkipVerify: !cfg.DockerTLSVerify}))
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		return fmt.Errorf("docker client: %w", err)
	}
	opts := cfg.Options()
	opts.Positions = positions
	// Logs come from the containers' files below the reader where they
	// can; discovery, inspect and events stay on the daemon.
	files := jsonfile.New(src, cfg.LogsFrom, cfg.ContainersPath, p.log)
	c := capture.New(files, opts, p.log)
	if ln != nil {
		if p.metrics, err = metrics.Serve(ln, c.Stats, cfg.MetricsContainerLabels, p.log); err != nil {
			src.Close()
			return err
		}
	}
	p.cfg, p.src, p.capture = cfg, files, c
	p.inFlight = make(map[unsafe.Pointer]capture.Batch)
	p.capture.Start()
	p.log.WithField("stream_refresh", cfg.StreamRefresh.String()).WithField("logs_from", cfg.LogsFrom.String()).
		WithField("containers_path", cfg.ContainersPath).Info("started")
	return nil
}

// Collect drains the queue into one buffer of C memory for Fluent Bit,
// which hands it back to cleanup. It never waits.
func (p *Instance) Collect(mem Memory) (unsafe.Pointer, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.capture == nil {
		return nil, 0
	}
	b := p.capture.Drain(p.cfg.QueueMaxSize)
	if b.Len() == 0 {
		p.bufs.release() // idle: the memory goes back
		return nil, 0
	}
	ptr := p.bufs.get(mem, b.Len(), p.cfg.QueueMaxSize)
	b.CopyTo(unsafe.Slice((*byte)(ptr), b.Len()))
	p.inFlight[ptr] = b
	return ptr, b.Len()
}

// Cleanup is called once Fluent Bit has appended the buffer: its lines are
// delivered, so their positions advance, and the buffer serves the next
// Collect.
func (p *Instance) Cleanup(ptr unsafe.Pointer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b, ok := p.inFlight[ptr]
	if !ok {
		return
	}
	delete(p.inFlight, ptr)
	p.bufs.put(ptr)
	p.capture.Commit(b)
}

func (p *Instance) pause() {
	if c := p.current(); c != nil {
		c.Pause()
		p.log.Debug("paused")
	}
}

func (p *Instance) resume() {
	if c := p.current(); c != nil {
		c.Resume()
		p.log.Debug("resumed")
	}
}

func (p *Instance) current() *capture.Capture {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.capture
}

// exit stops every goroutine and closes every stream by deadline.
func (p *Instance) exit(deadline time.Time) {
	p.mu.Lock()
	c, src, m := p.capture, p.src, p.metrics
	p.capture, p.src, p.metrics = nil, nil, nil
	p.bufs.release()
	p.mu.Unlock()
	if c == nil {
		return
	}
	if m != nil {
		m.Close()
	}
	if err := c.Stop(time.Until(deadline)); err != nil {
		p.log.WithError(err).Error("stopping")
	}
	if err := src.Close(); err != nil {
		p.log.WithError(err).Warn("closing the docker client")
	}
	p.log.Info("stopped")
}
