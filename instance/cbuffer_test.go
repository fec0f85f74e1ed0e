package instance

import (
	"syscall"
	"testing"
	"unsafe"
)

// fakeMemory hands out Go memory and counts the calls, standing in for
// C.malloc and C.free.
type fakeMemory struct {
	allocs, frees int
	live          map[unsafe.Pointer][]byte
}

func (m *fakeMemory) Alloc(n int) unsafe.Pointer {
	if m.live == nil {
		m.live = map[unsafe.Pointer][]byte{}
	}
	b := make([]byte, n)
	p := unsafe.Pointer(&b[0])
	m.live[p] = b
	m.allocs++
	return p
}

func (m *fakeMemory) Free(p unsafe.Pointer) {
	if _, ok := m.live[p]; !ok {
		panic("free of a pointer not allocated, or freed twice")
	}
	delete(m.live, p)
	m.frees++
}

// A busy input hands Fluent Bit a batch every second; each fresh buffer of
// tens of megabytes costs a page fault per 4 KiB page at its first touch,
// so the buffer of one collect serves the next.
func TestCollectBufferIsReusedForBatchesOfSimilarSize(t *testing.T) {
	m := &fakeMemory{}
	var b collectBuffers
	for i, n := range []int{40 << 20, 38 << 20, 41 << 20, 40 << 20} {
		p := b.get(m, n, 64<<20)
		if p == nil {
			t.Fatalf("batch %d: nil buffer", i)
		}
		if got := len(m.live[p]); got < n {
			t.Fatalf("batch %d: buffer of %d bytes for %d", i, got, n)
		}
		b.put(p)
	}
	if m.allocs != 1 {
		t.Errorf("%d allocations for 4 batches of about the same size, want 1", m.allocs)
	}
	if len(m.live) != 1 {
		t.Errorf("%d buffers held, want the one spare", len(m.live))
	}
}

// Under a backlog the first batch can be smaller than the next ones (seen:
// 50.9 MB, then 67.1 MB with a 64 MiB bound); the buffer of the first
// still serves them.
func TestCollectBufferOfABacklogHoldsTheBound(t *testing.T) {
	m := &fakeMemory{}
	var b collectBuffers
	const bound = 64 << 20
	for _, n := range []int{50881600, 67106600, bound, 60 << 20} {
		b.put(b.get(m, n, bound))
	}
	if m.allocs != 1 {
		t.Errorf("%d allocations for a backlog's batches, want 1", m.allocs)
	}
}

// A spare much larger than the batch is given back rather than kept for a
// trickle of small batches, and an empty collect gives it back too.
func TestCollectBufferIsReleasedWhenBatchesShrinkOrStop(t *testing.T) {
	m := &fakeMemory{}
	var b collectBuffers
	b.put(b.get(m, 64<<20, 64<<20))
	p := b.get(m, 4<<10, 64<<20)
	if got := len(m.live[p]); got >= 1<<20 {
		t.Errorf("a 4 KiB batch got a buffer of %d bytes", got)
	}
	b.put(p)
	if len(m.live) != 1 {
		t.Errorf("%d buffers held after a small batch, want only its own", len(m.live))
	}
	b.release()
	if len(m.live) != 0 {
		t.Errorf("%d buffers held after release, want 0", len(m.live))
	}
}

// Buffers still in Fluent Bit's hands when the next collect comes (a host
// that calls cleanup late) are not reused under it.
func TestCollectBufferInUseIsNotHandedOutAgain(t *testing.T) {
	m := &fakeMemory{}
	var b collectBuffers
	p1 := b.get(m, 1<<20, 64<<20)
	p2 := b.get(m, 1<<20, 64<<20)
	if p1 == p2 {
		t.Fatal("the same buffer handed out twice before its cleanup")
	}
	b.put(p1)
	b.put(p2)
	if len(m.live) != 1 {
		t.Errorf("%d buffers held after both came back, want 1 spare", len(m.live))
	}
	b.release()
	if m.allocs != m.frees {
		t.Errorf("%d allocations, %d frees", m.allocs, m.frees)
	}
}

// mmapMemory maps each buffer, as glibc's malloc does for one above its
// mmap threshold (at most 32 MiB): every page faults at its first touch.
type mmapMemory struct{ maps map[unsafe.Pointer][]byte }

func (m *mmapMemory) Alloc(n int) unsafe.Pointer {
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		panic(err)
	}
	if m.maps == nil {
		m.maps = map[unsafe.Pointer][]byte{}
	}
	m.maps[unsafe.Pointer(&b[0])] = b
	return unsafe.Pointer(&b[0])
}

func (m *mmapMemory) Free(p unsafe.Pointer) {
	syscall.Munmap(m.maps[p]) //nolint:errcheck // a test's own mapping
	delete(m.maps, p)
}

// BenchmarkCollectCopy copies a 40 MiB batch into the collect's buffer:
// "fresh" maps a new one each time (as before collectBuffers), "reused"
// keeps it.
func BenchmarkCollectCopy(b *testing.B) {
	const n = 40 << 20
	batch := make([]byte, n)
	for _, reuse := range []bool{false, true} {
		name := "fresh"
		if reuse {
			name = "reused"
		}
		b.Run(name, func(b *testing.B) {
			m := &mmapMemory{}
			var bufs collectBuffers
			b.SetBytes(n)
			for b.Loop() {
				p := bufs.get(m, n, n)
				copy(unsafe.Slice((*byte)(p), n), batch)
				bufs.put(p)
				if !reuse {
					bufs.release()
				}
			}
			bufs.release()
		})
	}
}
