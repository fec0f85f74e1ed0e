// Package faultproxy is a unix-socket proxy between a Docker client and a
// daemon that forwards every byte both ways unchanged, and on request
// injects faults into the responses of logs requests
// (GET [/v1.xx]/containers/{id}/logs): it stalls them, cuts them in the
// middle of a multiplexed frame, or slows them down. Everything else (ping,
// list, inspect, events) always passes untouched.
//
// Each connection has two goroutines: one forwards the client's requests
// and reads each request line to learn whether the request is a logs
// request; the other forwards the daemon's responses and applies the
// faults to those of logs requests. Docker clients (Go's net/http) do not
// pipeline: a request is sent only once the previous response was read to
// its end, so the response being forwarded always answers the request read
// last, and tracking per request needs no parsing of other responses.
package faultproxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Stats counts what the proxy saw and did.
type Stats struct {
	Conns        int // connections accepted
	LogsRequests int // logs requests seen
	HeaderCuts   int // logs responses cut in the middle of a frame header
	PayloadCuts  int // ... in the middle of a frame payload
}

// Proxy forwards a unix socket to an upstream unix socket. Start makes one;
// it is closed when the test ends.
type Proxy struct {
	logf     func(format string, args ...any) // where a failed dial is told
	upstream string
	dir      string
	ln       net.Listener

	// wg counts the accept loop and both goroutines of every connection:
	// Add before each go statement, Wait in Close.
	wg sync.WaitGroup

	mu     sync.Mutex
	closed bool
	conns  map[*conn]struct{}
	f      faults
	// changed is closed and replaced whenever f changes; goroutines that
	// hold bytes back (stalled, paced) select on it.
	changed chan struct{}
	// cuts are the pending CutMidFrame requests, oldest first; each
	// channel is closed when its cut is made.
	cuts  []chan struct{}
	stats Stats
}

// faults is the fault state applied to logs responses.
type faults struct {
	stall bool
	rate  int  // bytes per second; 0: unlimited
	down  bool // every connection is closed as soon as it is accepted
}

// Start is New for a test: it fails the test if the proxy cannot listen,
// logs to it, and closes the proxy at the test's cleanup.
func Start(t testing.TB, upstreamSocket string) *Proxy {
	t.Helper()
	p, err := New(upstreamSocket, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// New listens on a new unix socket in a temporary directory and forwards
// every connection to upstreamSocket (a path, or unix:///path); logf is
// told when the upstream cannot be dialled. The caller closes the proxy.
func New(upstreamSocket string, logf func(format string, args ...any)) (*Proxy, error) {
	// Not t.TempDir: its path has the test's name in it and a unix socket
	// path must stay under 108 bytes.
	dir, err := os.MkdirTemp("", "faultproxy-")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: %w", err)
	}
	ln, err := net.Listen("unix", filepath.Join(dir, "docker.sock"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("faultproxy: %w", err)
	}
	p := &Proxy{logf: logf, upstream: strings.TrimPrefix(upstreamSocket, "unix://"), dir: dir, ln: ln,
		conns: map[*conn]struct{}{}, changed: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Host is the proxy's address for a Docker client: unix:///path.
func (p *Proxy) Host() string { return "unix://" + p.ln.Addr().String() }

// Stall stops forwarding the daemon's bytes on every logs response, open
// or opened later, until Heal: nothing more arrives and the connections
// stay open.
func (p *Proxy) Stall() { p.update(func(f *faults) { f.stall = true }) }

// SlowDown limits every logs response to bytesPerSecond until Heal.
func (p *Proxy) SlowDown(bytesPerSecond int) {
	p.update(func(f *faults) { f.rate = max(bytesPerSecond, 1) })
}

// CutMidFrame arms one cut: the next logs response that has forwarded two
// whole frames is forwarded up to the middle of its next frame and then
// its connection is closed on both sides. Cuts alternate between the
// middle of the 8-byte header and the middle of the payload. The channel
// returned is closed when the cut is made; Heal disarms cuts not made yet,
// whose channels then stay open.
func (p *Proxy) CutMidFrame() <-chan struct{} {
	done := make(chan struct{})
	p.mu.Lock()
	p.cuts = append(p.cuts, done)
	p.mu.Unlock()
	return done
}

// Outage makes the daemon look gone, as while it restarts: every open
// connection is closed on both sides, and new ones are closed as soon as
// they are accepted, until Heal.
func (p *Proxy) Outage() {
	p.update(func(f *faults) { f.down = true })
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.close()
	}
}

// Heal ends every fault: stalled and slowed responses flow at full speed
// again, connections are accepted again and pending cuts are disarmed.
func (p *Proxy) Heal() {
	p.update(func(f *faults) { *f = faults{} })
	p.mu.Lock()
	p.cuts = nil
	p.mu.Unlock()
}

// Stats returns the counts so far.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// Close stops listening, closes every connection and waits for all the
// proxy's goroutines. It is safe to call more than once.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.ln.Close()
	for c := range p.conns {
		c.close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	os.RemoveAll(p.dir)
}

func (p *Proxy) update(change func(*faults)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	change(&p.f)
	close(p.changed)
	p.changed = make(chan struct{})
}

// current returns the faults and the channel that is closed when they
// change.
func (p *Proxy) current() (faults, <-chan struct{}, cutMode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	mode := cutNone
	if len(p.cuts) > 0 {
		mode = cutHeader
		if (p.stats.HeaderCuts+p.stats.PayloadCuts)%2 == 1 {
			mode = cutPayload
		}
	}
	return p.f, p.changed, mode
}

// claimCut takes the oldest pending cut, if one is still pending.
func (p *Proxy) claimCut(mode cutMode) chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.cuts) == 0 {
		return nil
	}
	done := p.cuts[0]
	p.cuts = p.cuts[1:]
	if mode == cutHeader {
		p.stats.HeaderCuts++
	} else {
		p.stats.PayloadCuts++
	}
	return done
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return // closed by Close
		}
		if f, _, _ := p.current(); f.down {
			client.Close()
			continue
		}
		up, err := net.Dial("unix", p.upstream)
		if err != nil {
			p.logf("faultproxy: dial upstream: %v", err)
			client.Close()
			continue
		}
		c := &conn{client: client, upstream: up, closed: make(chan struct{})}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.close()
			return
		}
		p.conns[c] = struct{}{}
		p.stats.Conns++
		p.wg.Add(2)
		p.mu.Unlock()
		go p.pumpRequests(c)
		go p.pumpResponses(c)
	}
}

func (p *Proxy) forget(c *conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// conn is one proxied connection.
type conn struct {
	client, upstream net.Conn
	// kind describes the request read last: its number shifted left by one,
	// with bit 0 set for a logs request. The request pump stores it before
	// forwarding the request; the response pump loads it.
	kind atomic.Uint64

	closeOnce sync.Once
	// closed is closed by close, which either pump or Close calls.
	closed chan struct{}
}

func (c *conn) close() {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.client.Close()
		c.upstream.Close()
	})
}

// logsPath matches the path of a logs request, with or without the API
// version prefix.
var logsPath = regexp.MustCompile(`^(/v[0-9]+(\.[0-9]+)?)?/containers/[^/]+/logs$`)

// maxHead bounds a request's line and headers; beyond it the proxy stops
// parsing and forwards the rest of the connection as it comes.
const maxHead = 1 << 20

// request is what the request pump needs of one request's head.
type request struct {
	logs     bool
	length   int64 // Content-Length; 0 when none
	chunked  bool
	upgraded bool // the connection becomes a raw stream after this request
}

// pumpRequests forwards the client's bytes to the daemon, parsing each
// request's head to mark the connection's current request.
func (p *Proxy) pumpRequests(c *conn) {
	defer p.wg.Done()
	defer p.forget(c)
	defer c.close()
	br := bufio.NewReaderSize(c.client, 32<<10)
	for seq := uint64(1); ; seq++ {
		head, req, err := readHead(br)
		if err != nil {
			// Not HTTP as far as we can tell: forward it all unparsed.
			if len(head) > 0 && !errors.Is(err, io.EOF) {
				if _, err := c.upstream.Write(head); err == nil {
					io.Copy(c.upstream, br) //nolint:errcheck // either side closing ends it
				}
			}
			return
		}
		kind := seq << 1
		if req.logs {
			kind |= 1
			p.mu.Lock()
			p.stats.LogsRequests++
			p.mu.Unlock()
		}
		c.kind.Store(kind)
		if _, err := c.upstream.Write(head); err != nil {
			return
		}
		switch {
		case req.upgraded:
			io.Copy(c.upstream, br) //nolint:errcheck // either side closing ends it
			return
		case req.chunked:
			err = copyChunked(c.upstream, br)
		case req.length > 0:
			_, err = io.CopyN(c.upstream, br, req.length)
		}
		if err != nil {
			return
		}
	}
}

// readHead reads a request line and its headers, returning their raw
// bytes. On an error, head holds what was read.
func readHead(br *bufio.Reader) (head []byte, req request, err error) {
	first := true
	for {
		line, err := readLine(br, maxHead-len(head))
		head = append(head, line...)
		if err != nil {
			return head, req, err
		}
		text := strings.TrimRight(string(line), "\r\n")
		if first {
			first = false
			method, target, ok := parseRequestLine(text)
			if !ok {
				return head, req, fmt.Errorf("not an http request line: %q", text)
			}
			req.logs = method == "GET" && logsPath.MatchString(target)
			continue
		}
		if text == "" {
			return head, req, nil
		}
		name, value, ok := strings.Cut(text, ":")
		if !ok {
			return head, req, fmt.Errorf("malformed header %q", text)
		}
		value = strings.TrimSpace(value)
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "content-length":
			n, err := strconv.ParseInt(value, 10, 64)
			if err != nil || n < 0 {
				return head, req, fmt.Errorf("content-length %q", value)
			}
			req.length = n
		case "transfer-encoding":
			req.chunked = strings.Contains(strings.ToLower(value), "chunked")
		case "upgrade":
			req.upgraded = true
		}
	}
}

// parseRequestLine returns the method and the target's path.
func parseRequestLine(line string) (method, path string, ok bool) {
	f := strings.Fields(line)
	if len(f) != 3 || !strings.HasPrefix(f[2], "HTTP/") {
		return "", "", false
	}
	target := f[1]
	if i := strings.Index(target, "://"); i >= 0 { // absolute form
		rest := target[i+3:]
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			target = rest[j:]
		} else {
			target = "/"
		}
	}
	path, _, _ = strings.Cut(target, "?")
	return f[0], path, true
}

// readLine reads up to and including '\n', at most limit bytes.
func readLine(br *bufio.Reader, limit int) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		line = append(line, frag...)
		if len(line) > limit {
			return line, errors.New("request head too long")
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			if err == nil {
				return line, nil
			}
			if errors.Is(err, io.EOF) && len(line) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return line, err
		}
	}
}

// copyChunked forwards one chunked body, trailers included.
func copyChunked(dst io.Writer, br *bufio.Reader) error {
	for {
		line, err := readLine(br, maxHead)
		if _, werr := dst.Write(line); werr != nil {
			return werr
		}
		if err != nil {
			return err
		}
		sizeText, _, _ := strings.Cut(strings.TrimRight(string(line), "\r\n"), ";")
		size, err := strconv.ParseInt(strings.TrimSpace(sizeText), 16, 64)
		if err != nil || size < 0 {
			return fmt.Errorf("chunk size %q", sizeText)
		}
		if size == 0 {
			for { // trailers, up to the empty line
				line, err := readLine(br, maxHead)
				if _, werr := dst.Write(line); werr != nil {
					return werr
				}
				if err != nil {
					return err
				}
				if len(bytes.TrimRight(line, "\r\n")) == 0 {
					return nil
				}
			}
		}
		if _, err := io.CopyN(dst, br, size+2); err != nil { // data and CRLF
			return err
		}
	}
}

// pumpResponses forwards the daemon's bytes to the client, applying the
// faults to responses of logs requests.
func (p *Proxy) pumpResponses(c *conn) {
	defer p.wg.Done()
	defer p.forget(c)
	defer c.close()
	buf := make([]byte, 32<<10)
	var resp responseParser
	var kind uint64
	var pace pacer
	for {
		n, err := c.upstream.Read(buf)
		if n > 0 {
			// The first bytes after a new request start its response.
			if k := c.kind.Load(); k != kind {
				kind = k
				resp = responseParser{}
			}
			if kind&1 == 0 {
				if _, err := c.client.Write(buf[:n]); err != nil {
					return
				}
			} else if !p.forwardLogs(c, &resp, &pace, buf[:n]) {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// forwardLogs forwards bytes of a logs response under the current faults.
// It reports whether the connection is still open.
func (p *Proxy) forwardLogs(c *conn, resp *responseParser, pace *pacer, b []byte) bool {
	_, _, mode := p.current()
	end := resp.scan(b, mode)
	var done chan struct{}
	if end >= 0 {
		if done = p.claimCut(mode); done == nil {
			// Another connection made the cut first: read on.
			resp.scan(b[end:], cutNone)
			end = -1
		}
	}
	out := b
	if end >= 0 {
		out = b[:end]
	}
	for len(out) > 0 {
		f, changed, _ := p.current()
		if f.stall {
			select {
			case <-changed:
				continue
			case <-c.closed:
				return false
			}
		}
		n := len(out)
		if f.rate > 0 {
			// Pieces of a fiftieth of a second, each after its due time.
			n = min(n, max(f.rate/50, 1))
			if wait := time.Until(pace.next); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-t.C:
				case <-changed:
					t.Stop()
					continue
				case <-c.closed:
					t.Stop()
					return false
				}
			}
			pace.next = time.Now().Add(time.Duration(n) * time.Second / time.Duration(f.rate))
		}
		if _, err := c.client.Write(out[:n]); err != nil {
			return false
		}
		out = out[n:]
	}
	if done != nil {
		c.close()
		close(done)
		return false
	}
	return true
}

// pacer spaces the pieces of a slowed response.
type pacer struct{ next time.Time }
