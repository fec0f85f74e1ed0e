package capture

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// fakeDaemon is a Source that keeps each container's log in memory and
// serves it with the daemon's semantics as measured on 20.10: tail picks
// the last K entries of the whole log (both streams), since then drops
// every entry stamped before it, follow continues from the end of the log
// as it was, and a follow stream ends when the container stops. Faults
// are injected per stream through hooks.
type fakeDaemon struct {
	mu         sync.Mutex
	containers map[string]*fakeContainer
	// changed is closed and replaced on every change; blocked streams and
	// event subscribers select on it.
	changed chan struct{}
	events  []Event
	// cutAfter, when set, ends each stream with EOF after that many
	// entries, as a daemon restart or a proxy would.
	cutAfter func() int
	// corrupt, when set, is asked before each entry is sent; true sends a
	// frame with an unknown stream byte instead and ends the stream.
	corrupt func() bool
	// repeat, when set, is asked after each follow entry; n > 0 sends the
	// previous n entries again (Docker 20.10 around a rotation).
	repeat func() int
	// onCut, when set, runs (without the lock) when a stream is cut.
	onCut func()
	// pace, when set, runs (without the lock) before each entry is sent,
	// as a daemon slower than its reader.
	pace func()
	// silence, when set, tells how long a stream sends nothing after it
	// opens, as a daemon scanning its log for since.
	silence func(LogsRequest) time.Duration
	// cutBreaks makes a cut a broken connection (a truncated chunked body)
	// instead of a clean end of the stream.
	cutBreaks bool
	// wholeSeconds serves the log as Podman 4.3's API does: it keeps the
	// nanoseconds written and filters since on them (strictly after), but
	// stamps the entries it sends to the whole second.
	wholeSeconds bool
	requests     []LogsRequest
	open         int  // streams open now
	maxOpen      int  // the most streams open at once
	down         bool // every call fails and open streams break, as while dockerd restarts
	refused      int  // calls that failed because the daemon was down
	// epoch counts the times the daemon went down: a stream or
	// subscription of an older epoch is broken even if the daemon is back.
	epoch int
}

var errFakeDown = errors.New("fake daemon is down")

// setDown stops or starts the daemon. Stopping ends every stream and
// events subscription; events of the downtime are never delivered.
func (d *fakeDaemon) setDown(down bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.down = down
	if down {
		d.epoch++
	}
	d.notifyLocked()
}

// setRunningQuietly changes a container's state without an event, as when
// it dies while the daemon is down. A container already removed stays
// removed: a test's source may remove it as soon as it is inspected.
func (d *fakeDaemon) setRunningQuietly(id string, running bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c, ok := d.containers[id]
	if !ok {
		return
	}
	c.Running = running
	d.notifyLocked()
}

type fakeContainer struct {
	Container
	log []entry
}

func newFakeDaemon() *fakeDaemon {
	return &fakeDaemon{containers: map[string]*fakeContainer{}, changed: make(chan struct{})}
}

func (d *fakeDaemon) notifyLocked() {
	close(d.changed)
	d.changed = make(chan struct{})
}

func (d *fakeDaemon) add(c Container) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c.Created.IsZero() {
		c.Created = time.Now()
	}
	d.containers[c.ID] = &fakeContainer{Container: c}
	d.notifyLocked()
}

// write appends one entry to a container's log.
func (d *fakeDaemon) write(id string, s StreamKind, ts Timestamp, data string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.containers[id]
	c.log = append(c.log, entry{stream: s, ts: ts, data: []byte(data)})
	d.notifyLocked()
}

// rotateOut drops a container's whole log, as a rotation past max-file
// does with the lines a reader has not read.
func (d *fakeDaemon) rotateOut(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.containers[id].log = nil
	d.notifyLocked()
}

func (d *fakeDaemon) setRunning(id string, running bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.containers[id]
	c.Running = running
	if running { // a stop sends nothing capture subscribes to
		d.events = append(d.events, Event{Action: ActionStart, ID: id, Name: c.Name, Image: c.Image, Labels: c.Labels})
	}
	d.notifyLocked()
}

// rename gives a container a new name, as docker rename does at stamp at.
func (d *fakeDaemon) rename(id, name string, at Timestamp) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.containers[id].Name = name
	d.events = append(d.events, Event{Action: ActionRename, ID: id, Name: name, Time: at.Time()})
	d.notifyLocked()
}

// unpause sends an unpause event for a container that runs from then on.
func (d *fakeDaemon) unpause(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.containers[id]
	c.Running = true
	d.events = append(d.events, Event{Action: ActionUnpause, ID: id, Name: c.Name})
	d.notifyLocked()
}

func (d *fakeDaemon) destroy(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.containers, id)
	d.events = append(d.events, Event{Action: ActionDestroy, ID: id})
	d.notifyLocked()
}

// cutFirstStreamAfter ends the first stream opened after n entries; later
// streams are not cut.
func (d *fakeDaemon) cutFirstStreamAfter(n int) {
	first := true
	d.cutAfter = func() int { // called under d.mu
		if first {
			first = false
			return n
		}
		return -1
	}
}

func (d *fakeDaemon) logRequests() []LogsRequest {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]LogsRequest(nil), d.requests...)
}

func (d *fakeDaemon) openStreams() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.open
}

func (d *fakeDaemon) List(ctx context.Context) ([]Container, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.down {
		d.refused++
		return nil, errFakeDown
	}
	var out []Container
	for _, c := range d.containers {
		out = append(out, c.Container)
	}
	return out, nil
}

func (d *fakeDaemon) Inspect(ctx context.Context, id string) (Container, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.down {
		return Container{}, errFakeDown
	}
	c, ok := d.containers[id]
	if !ok {
		return Container{}, fmt.Errorf("inspect %s: %w", id, ErrNotFound)
	}
	return c.Container, nil
}

func (d *fakeDaemon) Events(ctx context.Context) (<-chan Event, <-chan error) {
	out, errs := make(chan Event), make(chan error, 1)
	d.mu.Lock()
	next := len(d.events) // only events from now on, as the daemon does
	down, epoch := d.down, d.epoch
	d.mu.Unlock()
	if down {
		d.mu.Lock()
		d.refused++
		d.mu.Unlock()
		errs <- errFakeDown
		close(out)
		return out, errs
	}
	go func() {
		defer close(out)
		for {
			d.mu.Lock()
			if d.down || d.epoch != epoch {
				d.mu.Unlock()
				errs <- errFakeDown
				return
			}
			pending := append([]Event(nil), d.events[next:]...)
			next = len(d.events)
			changed := d.changed
			d.mu.Unlock()
			for _, ev := range pending {
				select {
				case out <- ev:
				case <-ctx.Done():
					errs <- nil
					return
				}
			}
			select {
			case <-changed:
			case <-ctx.Done():
				errs <- nil
				return
			}
		}
	}()
	return out, errs
}

func (d *fakeDaemon) Close() error { return nil }

func (d *fakeDaemon) Logs(ctx context.Context, id string, req LogsRequest) (io.ReadCloser, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.down {
		return nil, errFakeDown
	}
	c, ok := d.containers[id]
	if !ok {
		return nil, fmt.Errorf("logs %s: %w", id, ErrNotFound)
	}
	d.requests = append(d.requests, req)
	start := 0
	if req.Tail >= 0 && req.Tail < len(c.log) {
		start = len(c.log) - req.Tail
	}
	var window []entry
	for _, e := range c.log[start:] {
		if req.Since != 0 && (e.ts < req.Since || d.wholeSeconds && e.ts == req.Since) {
			continue
		}
		window = append(window, e)
	}
	limit := -1
	if d.cutAfter != nil {
		limit = d.cutAfter()
	}
	d.open++
	d.maxOpen = max(d.maxOpen, d.open)
	return &fakeStream{d: d, epoch: d.epoch, ctx: ctx, c: c, req: req, window: window, next: len(c.log),
		limit: limit, closed: make(chan struct{})}, nil
}

// fakeStream serves one logs request.
type fakeStream struct {
	d      *fakeDaemon
	epoch  int
	ctx    context.Context
	c      *fakeContainer
	req    LogsRequest
	window []entry // still to send from the tail window
	next   int     // next log index to follow
	limit  int     // entries left before a cut; negative: no cut
	buf    []byte
	done   bool
	broken bool // end with io.ErrUnexpectedEOF instead of io.EOF
	once   sync.Once
	closed chan struct{} // closed by Close
	sent   []entry
	waited bool // the silence after the open is over
}

func (s *fakeStream) Close() error {
	s.once.Do(func() {
		close(s.closed)
		s.d.mu.Lock()
		s.d.open--
		s.d.mu.Unlock()
	})
	return nil
}

func (s *fakeStream) Read(p []byte) (int, error) {
	for len(s.buf) == 0 {
		if s.done && s.broken {
			return 0, io.ErrUnexpectedEOF
		}
		if s.done {
			return 0, io.EOF
		}
		if err := s.produce(); err != nil {
			return 0, err
		}
	}
	n := copy(p, s.buf)
	s.buf = s.buf[n:]
	return n, nil
}

// produce encodes the next entries, blocking for new ones in follow mode.
func (s *fakeStream) produce() error {
	if !s.waited {
		s.waited = true
		s.d.mu.Lock()
		silence := s.d.silence
		s.d.mu.Unlock()
		if silence != nil {
			t := time.NewTimer(silence(s.req))
			defer t.Stop()
			select {
			case <-t.C:
			case <-s.ctx.Done():
				return s.ctx.Err()
			case <-s.closed:
				return io.ErrClosedPipe
			}
		}
	}
	for {
		select {
		case <-s.ctx.Done():
			return s.ctx.Err()
		case <-s.closed:
			return io.ErrClosedPipe
		default:
		}
		s.d.mu.Lock()
		if s.d.down || s.d.epoch != s.epoch {
			s.d.mu.Unlock()
			return io.ErrUnexpectedEOF // the connection breaks mid-stream
		}
		var batch []entry
		batch, s.window = s.window, nil
		if s.req.Follow {
			batch = append(batch, s.c.log[s.next:]...)
			s.next = len(s.c.log)
		}
		stopped := !s.req.Follow || !s.c.Running
		if _, exists := s.d.containers[s.c.ID]; !exists {
			stopped = true
		}
		changed := s.d.changed
		corrupt, repeat, onCut, pace := s.d.corrupt, s.d.repeat, s.d.onCut, s.d.pace
		s.d.mu.Unlock()
		for i, e := range batch {
			if !s.wanted(e) {
				continue
			}
			if pace != nil {
				pace()
			}
			if corrupt != nil && corrupt() {
				s.buf = append(s.buf, 9, 0, 0, 0, 0, 0, 0, 1, 'x')
				s.done = true
				return nil
			}
			s.emit(e)
			if repeat != nil && s.req.Follow {
				if n := min(repeat(), len(s.sent)); n > 0 && wholeLines(s.sent[len(s.sent)-n:]) {
					for _, r := range s.sent[len(s.sent)-n:] {
						s.emit(r)
					}
				}
			}
			if s.limit--; s.limit == 0 {
				s.done = true
				if onCut != nil {
					onCut()
				}
				if s.d.cutBreaks {
					s.broken = true
				}
				return nil
			}
			if pace != nil {
				// One entry per Read: the rest waits its turn.
				s.window = batch[i+1:]
				return nil
			}
		}
		if len(s.buf) > 0 {
			return nil
		}
		if stopped {
			s.done = true
			return nil
		}
		select {
		case <-changed:
		case <-s.ctx.Done():
			return s.ctx.Err()
		case <-s.closed:
			return io.ErrClosedPipe
		}
	}
}

// wholeLines reports whether entries hold no piece of an unfinished line:
// the reader cannot tell a repeated piece from the line's next one (a
// known limit), so the fake daemon repeats only whole lines.
func wholeLines(entries []entry) bool {
	for _, e := range entries {
		if n := len(e.data); n == 0 || e.data[n-1] != '\n' {
			return false
		}
	}
	return true
}

func (s *fakeStream) wanted(e entry) bool {
	return (e.stream == Stdout && s.req.Stdout) || (e.stream == Stderr && s.req.Stderr && !s.c.TTY)
}

func (s *fakeStream) emit(e entry) {
	stamp := e.ts.Time().Format("2006-01-02T15:04:05.000000000Z07:00")
	if s.d.wholeSeconds {
		stamp = e.ts.Time().Format(time.RFC3339) // as Podman's API sends it
	}
	payload := append([]byte(stamp+" "), e.data...)
	if s.c.TTY {
		s.buf = append(s.buf, payload...)
	} else {
		s.buf = appendFrame(s.buf, e.stream, payload)
	}
	s.sent = append(s.sent, e)
}

func appendFrame(dst []byte, s StreamKind, payload []byte) []byte {
	dst = append(dst, byte(s), 0, 0, 0)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	return append(dst, payload...)
}
