// Package docker adapts the Docker Engine SDK to capture.Source. It is the
// only package that imports the SDK: capture sees its own types, an
// io.ReadCloser and the capture error sentinels.
package docker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/go-connections/tlsconfig"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/client"
	"github.com/sirupsen/logrus"

	"github.com/dockerlogs/fluent-bit-docker-logs/capture"
)

// callTimeout bounds a call that is not a stream (list, inspect, the
// answer to an events subscription), so a daemon that hangs cannot hold a
// reader or the supervisor; streams are bounded by capture's refresh.
const callTimeout = 30 * time.Second

// DefaultHost is used when neither the host argument nor DOCKER_HOST is set.
const DefaultHost = "unix:///var/run/docker.sock"

// ErrUnavailable: the daemon could not be reached or answered with a server
// error. Capture retries every failure with backoff and needs no such class;
// it is for this package's callers and tests, which tell it from capture's
// sentinels (ErrNotFound, ErrLogsUnreadable) with errors.Is.
var ErrUnavailable = errors.New("docker daemon unavailable")

// Client is a capture.Source backed by a Docker daemon.
type Client struct {
	api  *client.Client
	host string
	log  logrus.FieldLogger
	// described makes the first successful version check log what the
	// daemon is (and, for Podman, what cannot be exact there) once.
	described sync.Once
}

var _ capture.Source = (*Client)(nil)

// TLS configures the connection to a tcp:// daemon, after the Docker CLI's
// conventions: a directory with ca.pem, cert.pem and key.pem.
type TLS struct {
	// CertPath is the directory; empty means DOCKER_CERT_PATH. Without
	// either, a tcp:// daemon is spoken to in plain HTTP.
	CertPath string
	// SkipVerify accepts any server certificate. Off by default, and an
	// unset DOCKER_TLS_VERIFY does not turn verification off (it does in
	// the Docker CLI): skipping it must be asked for.
	SkipVerify bool
}

// Option configures New.
type Option func(*settings)

type settings struct {
	tls    TLS
	tlsSet bool // WithTLS was given a CertPath: TLS was asked for, not found in the env
}

// WithTLS sets the TLS of a tcp:// daemon.
func WithTLS(t TLS) Option {
	return func(s *settings) { s.tls, s.tlsSet = t, t.CertPath != "" }
}

// New connects lazily to host, "unix:///path" or "tcp://host:port"; empty
// means DOCKER_HOST, else DefaultHost. A tcp:// daemon is spoken to with TLS
// when a certificate directory is given (WithTLS) or DOCKER_CERT_PATH is
// set, verifying the server unless TLS.SkipVerify. The API version is
// negotiated on the first request (the SDK's default; down to 1.40).
func New(host string, log logrus.FieldLogger, options ...Option) (*Client, error) {
	var set settings
	for _, o := range options {
		o(&set)
	}
	if host == "" {
		host = os.Getenv("DOCKER_HOST")
	}
	if host == "" {
		host = DefaultHost
	}
	if err := checkHost(host); err != nil {
		return nil, err
	}
	if log == nil {
		log = logrus.StandardLogger()
	}
	tlsCfg, err := tlsConfig(host, set)
	if err != nil {
		return nil, err
	}
	// The SDK's own transport settings, with TLS when asked for and a
	// larger read buffer: the daemon writes every log entry as its own
	// HTTP chunk, and through the default 4 KiB buffer a history read
	// costs a read system call per 30 lines (measured: 3.1 against 2.1 us
	// of the host's CPU per line). The dialer is WithHost's to replace; set
	// here, it keeps net/http from preparing HTTP/2, which would give the
	// transport a TLS config and make the SDK speak https to a plain
	// daemon.
	tr := &http.Transport{TLSClientConfig: tlsCfg, MaxIdleConns: maxIdleConns, IdleConnTimeout: idleConnTimeout,
		ReadBufferSize: readBufferSize, DialContext: (&net.Dialer{}).DialContext}
	// WithHost after WithHTTPClient: it configures the transport given.
	// No client.WithTimeout: http.Client.Timeout would cut follow streams.
	api, err := client.New(
		client.WithHTTPClient(&http.Client{Transport: tr, CheckRedirect: client.CheckRedirect}),
		client.WithHost(host))
	if err != nil {
		return nil, fmt.Errorf("docker client for %q: %w", host, err)
	}
	return &Client{api: api, host: host, log: log.WithField("docker_host", host)}, nil
}

// The HTTP transport's tuning.
const (
	// readBufferSize is the transport's read buffer: the daemon writes
	// every log entry as its own HTTP chunk, and a larger buffer reads
	// many per system call (see New).
	readBufferSize = 64 << 10
	// maxIdleConns and idleConnTimeout are the SDK's own defaults
	// (moby/client's defaultHTTPClient), kept because a transport given to
	// the SDK replaces them: without a bound, a long-lived process keeps
	// every idle connection its bursts of requests opened (moby/moby#45539).
	maxIdleConns    = 6
	idleConnTimeout = 30 * time.Second
)

// tlsConfig returns the TLS configuration, or nil for none. A unix
// socket never uses TLS: certificates from the environment are ignored for
// it, as the Docker CLI does, but certificates given to New are an error,
// since the user asked for something that would not happen.
func tlsConfig(host string, set settings) (*tls.Config, error) {
	tcp := strings.HasPrefix(host, "tcp://")
	certPath := set.tls.CertPath
	switch {
	case set.tlsSet && !tcp:
		return nil, fmt.Errorf("TLS certificates %s given for %q: TLS applies to tcp:// hosts only", certPath, host)
	case !tcp:
		return nil, nil
	case certPath == "":
		certPath = os.Getenv("DOCKER_CERT_PATH")
	}
	if certPath == "" {
		if os.Getenv("DOCKER_TLS_VERIFY") != "" {
			// Better to refuse than to talk plain HTTP to a daemon the
			// user asked to verify.
			return nil, errors.New("DOCKER_TLS_VERIFY is set but DOCKER_CERT_PATH is not")
		}
		return nil, nil
	}
	cfg, err := tlsconfig.Client(tlsconfig.Options{
		CAFile:   filepath.Join(certPath, "ca.pem"),
		CertFile: filepath.Join(certPath, "cert.pem"),
		KeyFile:  filepath.Join(certPath, "key.pem"),
		// Only the given CA, not the system's too: the daemon's CA is
		// what the user trusts for it.
		ExclusiveRootPools: true,
		InsecureSkipVerify: set.tls.SkipVerify,
		MinVersion:         tls.VersionTLS12,
	})
	if err != nil {
		return nil, fmt.Errorf("TLS certificates from %s: %w", certPath, err)
	}
	return cfg, nil
}

func checkHost(host string) error {
	u, err := client.ParseHostURL(host)
	if err != nil {
		return fmt.Errorf("invalid docker host %q: %w", host, err)
	}
	switch {
	// For unix, ParseHostURL puts the socket path in Host.
	case (u.Scheme == "unix" || u.Scheme == "tcp") && u.Host != "":
	default:
		return fmt.Errorf("invalid docker host %q: want unix:///path or tcp://host:port", host)
	}
	return nil
}

// Close releases idle connections.
func (c *Client) Close() error { return c.api.Close() }

// List returns all containers. TTY is not in the list answer: it is false
// here, and capture inspects a container before reading it. Capture lists
// on every (re)connection, so List first checks that the daemon and the
// client share an API version (see checkAPI).
func (c *Client) List(ctx context.Context) ([]capture.Container, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if err := c.checkAPI(ctx); err != nil {
		return nil, err
	}
	res, err := c.api.ContainerList(ctx, client.ContainerListOptions{All: true})
	if err != nil {
		return nil, wrap(err, "list containers")
	}
	out := make([]capture.Container, 0, len(res.Items))
	for _, s := range res.Items {
		out = append(out, capture.Container{
			ID:     s.ID,
			Name:   primaryName(s.Names),
			Image:  s.Image,
			Labels: s.Labels,
			// Paused: the process and its follow stream live on; only
			// its lines wait for the unpause.
			Running: s.State == container.StateRunning || s.State == container.StatePaused,
			Created: unixTime(s.Created),
		})
	}
	return out, nil
}

// checkAPI negotiates the API version again (the daemon may have been
// replaced since the last connection) and asks the daemon for its version
// with it. The SDK ignores a failed negotiation and every later request then
// fails, so a daemon older than client.MinAPIVersion (1.40), or one that
// refuses the newest version the client speaks (a raised min-api-version),
// is told here with ErrIncompatible, which capture does not retry.
func (c *Client) checkAPI(ctx context.Context) error {
	ping, err := c.api.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true, ForceNegotiate: true})
	switch {
	case cerrdefs.IsInvalidArgument(err):
		return fmt.Errorf("%w: the daemon at %s speaks API %s, older than %s, the oldest this plugin speaks: %w",
			capture.ErrIncompatible, c.host, ping.APIVersion, client.MinAPIVersion, err)
	case err != nil:
		return wrap(err, "ping")
	}
	v, err := c.api.ServerVersion(ctx, client.ServerVersionOptions{})
	switch {
	case cerrdefs.IsInvalidArgument(err):
		// A 400 to a GET without parameters: the version in its path.
		return fmt.Errorf("%w: the daemon at %s (API %s) refuses API %s, the newest this plugin speaks: %w",
			capture.ErrIncompatible, c.host, ping.APIVersion, c.api.ClientVersion(), err)
	case err != nil:
		return wrap(err, "version")
	}
	c.described.Do(func() { c.describe(v) })
	return nil
}

// podmanEngine is the component a Podman service names in /version.
const podmanEngine = "Podman Engine"

// describe logs the daemon the plugin talks to, and for Podman what cannot
// be exact there (README, Known limits).
func (c *Client) describe(v client.ServerVersionResult) {
	log := c.log.WithFields(logrus.Fields{"daemon_version": v.Version, "api_version": c.api.ClientVersion()})
	for _, comp := range v.Components {
		if comp.Name == podmanEngine {
			log.Warn("the daemon is Podman: its API stamps log lines to the whole second, so records carry whole-second times; " +
				"each resume makes it read a container's log file from its start, a line it cut into pieces that fall in two seconds arrives as two records, " +
				"a TTY line it cut cannot be parsed, and a container read from now on may also get the second before the start (README, Known limits)")
			return
		}
	}
	log.Info("connected to the docker daemon")
}

// unixTime is t seconds after the epoch; zero stays the zero time.
func unixTime(t int64) time.Time {
	if t == 0 {
		return time.Time{}
	}
	return time.Unix(t, 0)
}

// primaryName picks the container's own name from the list answer, which
// also holds the names it has as a link target ("/other/alias").
func primaryName(names []string) string {
	for _, n := range names {
		n = strings.TrimPrefix(n, "/")
		if !strings.Contains(n, "/") {
			return n
		}
	}
	if len(names) > 0 {
		return strings.TrimPrefix(names[0], "/")
	}
	return ""
}

// Inspect returns one container; the error wraps capture.ErrNotFound when
// it does not exist.
func (c *Client) Inspect(ctx context.Context, id string) (capture.Container, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	res, err := c.api.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return capture.Container{}, wrap(err, "inspect container %s", id)
	}
	r := res.Container
	out := capture.Container{ID: r.ID, Name: strings.TrimPrefix(r.Name, "/")}
	if r.Config != nil {
		out.TTY = r.Config.Tty
		out.Image = r.Config.Image
		out.Labels = r.Config.Labels
	}
	if r.State != nil {
		// Docker reports a paused container as running; Podman's
		// compatible API does not.
		out.Running = r.State.Running || r.State.Paused
	}
	if r.HostConfig != nil {
		out.NoLogs = r.HostConfig.LogConfig.Type == logDriverNone
		out.LogDriver = r.HostConfig.LogConfig.Type
	}
	if t, err := time.Parse(time.RFC3339Nano, r.Created); err == nil {
		out.Created = t
	}
	return out, nil
}

// logDriverNone keeps no logs at all.
const logDriverNone = "none"

// Logs opens GET /containers/{id}/logs with timestamps=1. Cancelling ctx or
// closing the stream ends a Read blocked on it.
func (c *Client) Logs(ctx context.Context, id string, req capture.LogsRequest) (io.ReadCloser, error) {
	opts := client.ContainerLogsOptions{
		ShowStdout: req.Stdout,
		ShowStderr: req.Stderr,
		Follow:     req.Follow,
		Timestamps: true,
		Tail:       "all",
	}
	if req.Since != 0 {
		opts.Since = req.Since.SinceParam()
	}
	if req.Tail >= 0 {
		opts.Tail = strconv.Itoa(req.Tail)
	}
	rc, err := c.api.ContainerLogs(ctx, id, opts)
	if err != nil {
		if cerrdefs.IsConflict(err) {
			// 409: "can not get logs from container which is dead or
			// marked for removal": as good as gone.
			return nil, fmt.Errorf("logs of container %s: %w: %w", id, capture.ErrNotFound, err)
		}
		return nil, wrap(err, "logs of container %s", id)
	}
	return rc, nil
}

// Events subscribes to start, destroy, rename, pause and unpause events of
// containers. It filters on the type only and picks the actions from the
// messages: Podman's event filter names actions otherwise ("remove"), so a
// filter "destroy" matches nothing there, and it reports a destroy as
// "remove".
// The goroutine started here owns both channels: it closes events when the
// subscription ends, after the SDK's own goroutine has ended, then sends one
// error (nil when ctx was cancelled) on the buffered error channel.
func (c *Client) Events(ctx context.Context) (<-chan capture.Event, <-chan error) {
	out := make(chan capture.Event)
	errc := make(chan error, 1)
	// Our own cancel stops the SDK's goroutine when we stop first.
	sub, cancel := context.WithCancel(ctx)
	filters := make(client.Filters).Add("type", string(events.ContainerEventType))
	// Blocks until the daemon has answered, so the subscription is in place
	// when Events returns: a List that follows misses nothing.
	// A daemon that accepts the request but never answers would hold the
	// caller here: give up on it after callTimeout (the subscription is
	// retried), but never cut a subscription that was answered.
	unanswered := time.AfterFunc(callTimeout, cancel)
	res := c.api.Events(sub, client.EventsListOptions{Filters: filters})
	unanswered.Stop()
	go func() {
		err := c.forward(sub, res, out)
		cancel()
		errc <- err
		close(out) // last: a closed channel tells the subscriber we are gone
	}()
	return out, errc
}

// forward translates messages until the subscription ends. It returns only
// once the SDK's goroutine has sent its error, so nothing outlives it.
func (c *Client) forward(ctx context.Context, res client.EventsResult, out chan<- capture.Event) error {
	for {
		select {
		case m := <-res.Messages:
			ev, ok := translate(m)
			if !ok {
				c.log.WithField("action", m.Action).Debug("ignoring event")
				continue
			}
			select {
			case out <- ev:
				continue
			case <-ctx.Done():
			}
		case <-ctx.Done():
		case err := <-res.Err:
			drain(res.Err)
			if ctx.Err() != nil {
				return nil
			}
			// The stream of events has no end of its own: even a clean EOF
			// means the daemon went away.
			if err == nil || errors.Is(err, io.EOF) {
				return fmt.Errorf("events: %w: %w", ErrUnavailable, errOrEOF(err))
			}
			return wrap(err, "events")
		}
		// ctx is done: the SDK's goroutine sees it too, sends its error and
		// closes the channel as it returns.
		drain(res.Err)
		return nil
	}
}

// drain waits until the SDK's events goroutine has closed its error
// channel, which it does last.
func drain(errs <-chan error) {
	for range errs {
	}
}

func errOrEOF(err error) error {
	if err == nil {
		return io.EOF
	}
	return err
}

// podmanRemove is Podman's action for a destroyed container.
const podmanRemove = "remove"

func translate(m events.Message) (capture.Event, bool) {
	a := capture.EventAction(m.Action)
	if m.Action == podmanRemove {
		a = capture.ActionDestroy
	}
	switch a {
	case capture.ActionStart, capture.ActionDie, capture.ActionDestroy, capture.ActionRename,
		capture.ActionPause, capture.ActionUnpause:
	default:
		return capture.Event{}, false
	}
	t := time.Unix(m.Time, 0)
	if m.TimeNano != 0 {
		t = time.Unix(0, m.TimeNano)
	}
	ev := capture.Event{
		Action: a,
		ID:     m.Actor.ID,
		Name:   strings.TrimPrefix(m.Actor.Attributes["name"], "/"),
		Image:  m.Actor.Attributes["image"],
		Time:   t.UTC(),
	}
	if a == capture.ActionStart {
		ev.Labels = eventLabels(m.Actor.Attributes)
	}
	return ev, true
}

// eventAttributes are the attributes the daemons add to a container's
// event beside its labels (Docker: name, image, and exitCode and signal
// on others than start; Podman: containerExitCode, podId).
var eventAttributes = map[string]bool{"name": true, "image": true, "exitCode": true, "signal": true,
	"containerExitCode": true, "podId": true}

// eventLabels are the container's labels among an event's attributes.
func eventLabels(attrs map[string]string) map[string]string {
	var labels map[string]string
	for k, v := range attrs {
		if eventAttributes[k] {
			continue
		}
		if labels == nil {
			labels = make(map[string]string, len(attrs))
		}
		labels[k] = v
	}
	return labels
}

// wrap names the operation and adds the sentinel that err belongs
// to, keeping err itself in the chain.
func wrap(err error, format string, args ...any) error {
	op := fmt.Sprintf(format, args...)
	if s := classify(err); s != nil {
		return fmt.Errorf("%s: %w: %w", op, s, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// classify maps an SDK error to a sentinel, or nil. Cancellation is
// left alone: the caller knows whether it asked for it. The SDK keeps the
// class of 500, 501 and 503 only: a 502 or 504 (from a proxy; dockerd does
// not send them) loses its status in moby/client v0.6.2 and stays unclassified.
func classify(err error) error {
	var netErr *net.OpError
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return nil
	case cerrdefs.IsNotFound(err):
		return capture.ErrNotFound
	case cerrdefs.IsNotImplemented(err):
		return capture.ErrLogsUnreadable
	case client.IsErrConnectionFailed(err),
		cerrdefs.IsUnavailable(err),
		cerrdefs.IsInternal(err),
		// A connection lost in the middle of an answer.
		errors.As(err, &netErr),
		errors.Is(err, io.ErrUnexpectedEOF):
		return ErrUnavailable
	}
	return nil
}
