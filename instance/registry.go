package instance

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dockerlogs/fluent-bit-docker-logs/conf"
)

// How Fluent Bit (5.1.1's source) drives several inputs of one Go plugin,
// which decides how the registry below serves them:
//
//   - Every instance has its own input thread, and every callback of that
//     instance runs on it: FLBPluginInit (input_thread in
//     src/flb_input_thread.c), the collect and cleanup callbacks (its timer),
//     FLBPluginInputPause/Resume (handle_input_event there) and FLBPluginExit
//     (the thread's exit path, after flb_input_thread_instance_exit). Inits
//     run one after the other: each waits for the previous one's status.
//   - The collect and cleanup callbacks carry the instance's remote_context
//     when the plugin exports the Ctx variants (Fluent Bit 4.1 and newer).
//     Pause, resume and exit carry nothing, so the registry tells the
//     instance by the calling thread, noted at init.
//   - FLBPluginExit is called once per instance that initialized, on its own
//     thread, last instance first, each joined before the next
//     (flb_input_exit_all).
//   - flb_proxy_input_cb_pause and _resume (src/flb_plugin_proxy.c) stop and
//     restart the collect timer of proxy->instance, which every init
//     overwrites: the LAST instance initialized, not the one paused. So a
//     paused instance keeps being collected: its collect must hand nothing
//     (capture.Drain does not while paused), and the last instance gets no
//     collects while another one is paused (its lines wait in its bounded
//     queue; nothing is lost).

// An ID is the remote_context Fluent Bit hands back to the Ctx
// callbacks: an integer, never a Go pointer in C memory. 0 is none.
type ID uintptr

// Host is what an init learns about the Fluent Bit that calls it.
type Host struct {
	// CallsCtx: the host calls FLBPluginInputCallbackCtx and
	// FLBPluginInputCleanupCallbackCtx with the remote_context the plugin
	// sets (Fluent Bit 4.1 and newer), so it can run several instances.
	CallsCtx bool
	// Thread is the input thread the init runs on, and with it every later
	// callback of this instance.
	Thread uint64
}

var (
	// errSecondInstance: the host calls only the callbacks without context.
	errSecondInstance = errors.New("this Fluent Bit calls Go inputs without an instance context (FLBPluginInputCallbackCtx came with Fluent Bit 4.1), so it can run only one docker_logs input: use one input and route by container with rewrite_tag, or upgrade Fluent Bit")
	// errSharedDB: two instances would overwrite each other's positions.
	errSharedDB = errors.New("two docker_logs inputs cannot share a positions file")
	// errSharedMetricsListen: the second bind would fail, or serve the
	// other instance's port.
	errSharedMetricsListen = errors.New("two docker_logs inputs cannot share a metrics port")
)

// Registry holds the running instances. Exports reach instances only
// through it.
type Registry struct {
	// logger makes each instance's logger.
	logger func(ID) *logrus.Entry

	mu   sync.Mutex
	last ID // the last id given; ids are never reused
	byID map[ID]*Instance
	// byThread maps an input thread to its instance, for the callbacks
	// that carry no context; nil for a thread that inited several (not
	// Fluent Bit), whose calls then reach every instance.
	byThread map[uint64]*Instance
}

// NewRegistry makes an empty registry whose instances log through
// logger(id); NewLogger writes as Fluent Bit does.
func NewRegistry(logger func(ID) *logrus.Entry) *Registry {
	return &Registry{logger: logger, byID: map[ID]*Instance{}, byThread: map[uint64]*Instance{}}
}

// Init starts a new instance from its configuration and returns its id,
// or logs every reason it cannot start and returns them.
func (r *Registry) Init(h Host, get conf.Getter) (ID, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last++
	p := &Instance{id: r.last, log: r.logger(r.last)}
	err := r.admit(h, p, get)
	if err != nil {
		// errors.Join puts each problem on its own line; keep one log line.
		p.log.WithField(logrus.ErrorKey, strings.ReplaceAll(err.Error(), "\n", "; ")).Error("init failed")
		return 0, err
	}
	r.byID[p.id] = p
	if _, taken := r.byThread[h.Thread]; taken {
		r.byThread[h.Thread] = nil
	} else {
		r.byThread[h.Thread] = p
	}
	if !h.CallsCtx {
		p.log.Debug("this Fluent Bit calls no Ctx callbacks: one docker_logs input only")
	}
	return p.id, nil
}

// admit parses the configuration, checks it against the running instances
// and starts p. r.mu is held.
func (r *Registry) admit(h Host, p *Instance, get conf.Getter) error {
	if !h.CallsCtx && len(r.byID) > 0 {
		return errSecondInstance
	}
	cfg, err := conf.Parse(get)
	if err != nil {
		return err
	}
	for _, other := range r.byID {
		if err := conflict(cfg, other.id, other.cfg); err != nil {
			return err
		}
	}
	return p.start(cfg)
}

// conflict names what cfg would share with the running instance other.
func conflict(cfg conf.Config, otherID ID, other conf.Config) error {
	var errs []error
	if cfg.DB != "" && samePath(cfg.DB, other.DB) {
		errs = append(errs, fmt.Errorf("%s %s: %w: docker_logs input %d uses it; give each input its own",
			strings.ToLower(conf.KeyDB), cfg.DB, errSharedDB, otherID))
	}
	if cfg.MetricsListen != "" && samePort(cfg.MetricsListen, other.MetricsListen) {
		errs = append(errs, fmt.Errorf("%s %s: %w: docker_logs input %d serves %s",
			strings.ToLower(conf.KeyMetricsListen), cfg.MetricsListen, errSharedMetricsListen, otherID, other.MetricsListen))
	}
	return errors.Join(errs...)
}

// samePath: a and b name one file, whatever the relative parts or links of
// their directories.
func samePath(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	return canonical(a) == canonical(b)
}

func canonical(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return filepath.Clean(path)
	}
	if dir, err := filepath.EvalSymlinks(filepath.Dir(abs)); err == nil {
		return filepath.Join(dir, filepath.Base(abs))
	}
	return abs
}

// samePort: listening on a and on b would collide: the same port on the
// same host, or on every interface for either. Port 0 (any free port)
// never collides.
func samePort(a, b string) bool {
	ha, pa, errA := net.SplitHostPort(a)
	hb, pb, errB := net.SplitHostPort(b)
	if errA != nil || errB != nil || pa != pb || pa == "0" {
		return false
	}
	return ha == hb || anyHost(ha) || anyHost(hb)
}

func anyHost(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }

// ByContext is the instance of a Ctx callback's remote_context.
func (r *Registry) ByContext(id ID) *Instance {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byID[id]
}

// Only is the instance of a callback without context: there is at most one
// when the host calls no Ctx callbacks. With several, nil: such a call
// cannot be told apart.
func (r *Registry) Only() *Instance {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.byID) != 1 {
		return nil
	}
	for _, p := range r.byID {
		return p
	}
	return nil
}

// onThread is the instance whose input thread calls, for pause, resume
// and exit; every instance if the thread is none of theirs (a host that
// calls them from elsewhere: one instance is then the only one).
func (r *Registry) onThread(thread uint64) []*Instance {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.onThreadLocked(thread)
}

func (r *Registry) onThreadLocked(thread uint64) []*Instance {
	if p := r.byThread[thread]; p != nil {
		return []*Instance{p}
	}
	all := make([]*Instance, 0, len(r.byID))
	for _, p := range r.byID {
		all = append(all, p)
	}
	return all
}

// Pause pauses the instance of the calling thread (every instance if the
// thread is none of theirs): its collects hand nothing over until resume.
func (r *Registry) Pause(thread uint64) {
	for _, p := range r.onThread(thread) {
		p.pause()
	}
}

// Resume undoes pause for the same instances.
func (r *Registry) Resume(thread uint64) {
	for _, p := range r.onThread(thread) {
		p.resume()
	}
}

// Exit stops the instance of the calling thread (every instance if the
// thread is none of theirs), each once: it leaves the registry first.
// Several are stopped at once, so that all fit in one exitTimeout.
func (r *Registry) Exit(thread uint64) {
	r.mu.Lock()
	stopping := r.onThreadLocked(thread)
	for _, p := range stopping {
		delete(r.byID, p.id)
		for t, q := range r.byThread {
			if q == p {
				delete(r.byThread, t)
			}
		}
	}
	if len(r.byID) == 0 {
		clear(r.byThread)
	}
	r.mu.Unlock()
	deadline := time.Now().Add(exitTimeout)
	// wg counts the stopping instances; exit waits on it.
	var wg sync.WaitGroup
	for _, p := range stopping {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.exit(deadline)
		}()
	}
	wg.Wait()
}
