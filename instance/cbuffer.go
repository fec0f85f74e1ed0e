package instance

import "unsafe"

// Memory allocates the C buffers that Collect hands Fluent Bit: C.malloc
// and C.free in the plugin, a fake in tests.
type Memory interface {
	Alloc(n int) unsafe.Pointer
	Free(p unsafe.Pointer)
}

// collectBuffers keeps the buffer of one collect for the next. A busy
// input hands Fluent Bit tens of megabytes a second; malloc serves each as
// a fresh mapping whose every 4 KiB page faults at its first touch, which
// cost the copy into it more than the copy itself (a third of the
// plugin's CPU per line in a profile inside Fluent Bit). Fluent Bit copies
// the buffer before it calls cleanup, so the same one serves the next
// collect. The instance's lock guards it.
type collectBuffers struct {
	spare     unsafe.Pointer // free for the next collect; nil: none
	spareSize int
	mem       Memory // where the buffers come from, set by get
	// handed holds the size of each buffer Fluent Bit has, until cleanup.
	handed map[unsafe.Pointer]int
}

const (
	// spareHeadroom: a new buffer is this fraction larger than its batch,
	// so the next batches, which vary by a chunk or two, fit; one over half
	// the drain's bound gets the bound. Pages never touched cost nothing.
	spareHeadroom = 4 // n + n/4
	// spareShrink: a spare more than this many times a batch's size is
	// freed instead of used, so a trickle after a burst does not hold the
	// burst's memory.
	spareShrink = 4
)

// get returns a buffer of at least n bytes for a batch of at most bound.
func (b *collectBuffers) get(m Memory, n, bound int) unsafe.Pointer {
	b.mem = m
	if b.handed == nil {
		b.handed = map[unsafe.Pointer]int{}
	}
	if b.spare != nil {
		if b.spareSize >= n && b.spareSize/spareShrink <= n {
			p := b.spare
			b.handed[p] = b.spareSize
			b.spare, b.spareSize = nil, 0
			return p
		}
		b.release()
	}
	size := n + n/spareHeadroom
	if n > bound/2 {
		// A backlog: the next batches are as large as the drain allows.
		size = max(n, bound)
	}
	p := m.Alloc(size)
	b.handed[p] = size
	return p
}

// put takes back a buffer Fluent Bit has copied: it becomes the spare, or
// is freed when a spare is already kept.
func (b *collectBuffers) put(p unsafe.Pointer) {
	size, ok := b.handed[p]
	if !ok {
		return
	}
	delete(b.handed, p)
	if b.spare != nil {
		b.mem.Free(p)
		return
	}
	b.spare, b.spareSize = p, size
}

// release frees the spare: the input is idle or exiting.
func (b *collectBuffers) release() {
	if b.spare != nil {
		b.mem.Free(b.spare)
		b.spare, b.spareSize = nil, 0
	}
}
