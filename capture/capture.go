package capture

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
)

// Options configure a Capture. conf.Config converts to it.
type Options struct {
	Stdout, Stderr bool
	// ReadFromHead reads containers already running at start-up from their
	// first line; otherwise from the moment capture starts.
	ReadFromHead bool
	// StreamRefresh is the age at which a stream is closed and reopened.
	StreamRefresh time.Duration
	// MaxLineSize bounds one line; the rest is dropped and the record marked.
	MaxLineSize int
	// QueueMaxSize bounds the encoded bytes waiting for Fluent Bit.
	QueueMaxSize int
	// Include selects the containers to capture; nil captures all.
	Include func(Container) bool
	// Positions keeps what Fluent Bit has taken, across restarts when it
	// has a file (OpenPositions); nil keeps them in memory.
	Positions *Positions
	// Metadata selects the container labels that records carry.
	Metadata Metadata
	// ContainerStats keeps lines and bytes per container for Stats, whose
	// snapshot then grows with the containers.
	ContainerStats bool

	// seekBound replaces the package's seekBound in tests; 0 keeps it.
	seekBound time.Duration
	// clock replaces time.Now in tests of how long a stream stays behind
	// its position; nil keeps it.
	clock func() time.Time
	// watchAfter replaces time.AfterFunc for the streams' watches in tests
	// that decide when a watch checks its stream; nil keeps it.
	watchAfter afterFunc
}

// Capture is one running instance: a supervisor, its readers and the queue
// they fill.
type Capture struct {
	opts   Options
	q      *queue
	sup    *supervisor
	paused atomic.Bool
	stats  Stats

	// cancel stops the supervisor and its readers; set by Start, called by
	// Stop.
	cancel context.CancelFunc
	// done is closed by the supervisor goroutine when it, every reader and
	// the positions writer have returned; Stop waits on it.
	done chan struct{}
}

// New makes a Capture; Start begins it.
func New(src Source, opts Options, log *logrus.Entry) *Capture {
	q := newQueue(opts.QueueMaxSize)
	if opts.Positions == nil {
		opts.Positions, _ = OpenPositions("", 0, log) // cannot fail without a file
	}
	c := &Capture{opts: opts, q: q, done: make(chan struct{})}
	c.stats.perContainer = opts.ContainerStats
	opts.Positions.stats = &c.stats
	c.sup = &supervisor{src: src, opts: &c.opts, q: q, log: log, store: opts.Positions, stats: &c.stats,
		containers: make(map[string]*containerState), exited: make(chan *containerState)}
	return c
}

// Start runs the supervisor in its own goroutine.
func (c *Capture) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.sup.startedAt = time.Now()
	go func() {
		defer close(c.done)
		var writer sync.WaitGroup // the positions writer; waited on here
		writer.Add(1)
		go func() {
			defer writer.Done()
			c.opts.Positions.run(ctx)
		}()
		c.sup.run(ctx)
		writer.Wait()
	}()
}

// Stop cancels every goroutine of the capture, which closes every stream,
// and waits for them up to timeout.
func (c *Capture) Stop(timeout time.Duration) error {
	if c.cancel == nil {
		return nil
	}
	c.cancel()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-c.done:
		return nil
	case <-t.C:
		return fmt.Errorf("capture did not stop in time: still running after %s", timeout)
	}
}

// Batch is what one collect hands to Fluent Bit: whole chunks, in order.
type Batch struct {
	chunks []chunk
	size   int
}

// Len is the batch's size in bytes.
func (b *Batch) Len() int { return b.size }

// CopyTo copies the encoded records into dst, which must hold Len bytes.
func (b *Batch) CopyTo(dst []byte) {
	off := 0
	for _, c := range b.chunks {
		off += copy(dst[off:], c.data)
	}
}

// Bytes returns the encoded records as one new slice.
func (b *Batch) Bytes() []byte {
	out := make([]byte, b.size)
	b.CopyTo(out)
	return out
}

// Drain takes what is queued, up to maxBytes (at least one chunk), unless
// paused. It never waits.
func (c *Capture) Drain(maxBytes int) Batch {
	if c.paused.Load() {
		return Batch{}
	}
	chunks := c.q.take(maxBytes)
	size := 0
	for _, ch := range chunks {
		size += len(ch.data)
	}
	return Batch{chunks: chunks, size: size}
}

// Commit records that Fluent Bit has taken the batch: the positions of its
// containers advance, and its buffers are reused.
func (c *Capture) Commit(b Batch) {
	c.opts.Positions.commitBatch(b.chunks)
	for _, ch := range b.chunks {
		c.q.release(ch.data)
	}
}

// WaitDBWritten returns, once the positions file holds the positions of
// more than after committed batches (counting Commit calls), how many it
// holds; or ctx's error. A test host knows with it which batches a crash
// may repeat.
func (c *Capture) WaitDBWritten(ctx context.Context, after int64) (int64, error) {
	return c.opts.Positions.waitWritten(ctx, after)
}

// Pause stops the draining; readers fill the queue up to its bound and then
// wait.
func (c *Capture) Pause() { c.paused.Store(true) }

// Resume restarts the draining.
func (c *Capture) Resume() { c.paused.Store(false) }

// Stats returns the counters as they are now; cheap enough for every
// scrape (with ContainerStats, it walks the containers).
func (c *Capture) Stats() StatsSnapshot {
	s := c.stats.snapshot()
	s.QueueBytes = int64(c.q.size())
	s.QueueCapacity = int64(c.q.max)
	s.Paused = c.paused.Load()
	return s
}

// Queued reports the encoded bytes waiting.
func (c *Capture) Queued() int { return c.q.size() }

// WaitQueued returns when something is queued or ctx ends. Tests and the
// test host await records with it instead of sleeping.
func (c *Capture) WaitQueued(ctx context.Context) error { return c.q.waitQueued(ctx) }
