package capture

import (
	"context"
	"sync"
)

// chunk is a run of encoded records from one container, with that
// container's read position after its last record, so a batch can commit
// positions once Fluent Bit has taken it.
type chunk struct {
	data  []byte
	owner *containerState
	pos   position
}

// queue holds encoded chunks between the readers and Fluent Bit's collect
// callback, bounded in bytes. Readers wait for room (the daemon keeps the
// logs on disk, so waiting loses nothing); the callback never waits.
type queue struct {
	max int

	mu     sync.Mutex
	chunks []chunk
	bytes  int
	// room is closed (and replaced) by take when it frees bytes; readers
	// waiting for room select on it and on their context.
	room chan struct{}
	// queued is closed (and replaced) by push; WaitQueued selects on it.
	queued chan struct{}

	pool sync.Pool // of *[]byte chunk buffers, returned by release
}

func newQueue(maxBytes int) *queue {
	return &queue{max: maxBytes, room: make(chan struct{}), queued: make(chan struct{})}
}

// push appends c, waiting while the queue is full. A chunk is accepted
// whenever the queue is below its bound, so one larger than the bound still
// goes through instead of waiting forever.
func (q *queue) push(ctx context.Context, c chunk) error {
	return q.wait(ctx, func() (bool, <-chan struct{}) {
		if q.bytes >= q.max {
			return false, q.room
		}
		q.chunks = append(q.chunks, c)
		q.bytes += len(c.data)
		close(q.queued)
		q.queued = make(chan struct{})
		return true, nil
	})
}

// wait calls try under the lock until it reports done; between calls it
// waits for the channel try returned, which is closed when what try waits
// for may have changed, or for ctx.
func (q *queue) wait(ctx context.Context, try func() (done bool, changed <-chan struct{})) error {
	for {
		q.mu.Lock()
		done, changed := try()
		q.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// take removes whole chunks from the front, up to maxBytes in all but at
// least one.
func (q *queue) take(maxBytes int) []chunk {
	q.mu.Lock()
	defer q.mu.Unlock()
	n, size := 0, 0
	for n < len(q.chunks) && (n == 0 || size+len(q.chunks[n].data) <= maxBytes) {
		size += len(q.chunks[n].data)
		n++
	}
	if n == 0 {
		return nil
	}
	taken := make([]chunk, n)
	copy(taken, q.chunks[:n])
	rest := copy(q.chunks, q.chunks[n:])
	clear(q.chunks[rest:])
	q.chunks = q.chunks[:rest]
	q.bytes -= size
	close(q.room)
	q.room = make(chan struct{})
	return taken
}

// size reports the queued bytes.
func (q *queue) size() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.bytes
}

// waitQueued returns when something is queued or ctx is done.
func (q *queue) waitQueued(ctx context.Context) error {
	return q.wait(ctx, func() (bool, <-chan struct{}) { return len(q.chunks) > 0, q.queued })
}

// buffer returns an empty chunk buffer, reused when one is free.
func (q *queue) buffer() []byte {
	if b, ok := q.pool.Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return make([]byte, 0, chunkTarget+minReadBuf)
}

// release returns a chunk buffer that Fluent Bit no longer needs.
func (q *queue) release(b []byte) {
	if cap(b) > maxPooledChunk || cap(b) < chunkTarget {
		return // an outsized one (a long line) is left to the collector
	}
	q.pool.Put(&b)
}
