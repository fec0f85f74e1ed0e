package faultproxy

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// frame is one multiplexed frame of the logs stream.
func frame(stream byte, payload string) []byte {
	b := []byte{stream, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[4:], uint32(len(payload)))
	return append(b, payload...)
}

// fakeDaemon serves logs and inspect over a unix socket like dockerd:
// GET /v1.41/containers/c/logs?frames=N writes N frames at once, one chunk
// each; with follow=1 it then writes every frame sent on more until the
// client goes.
type fakeDaemon struct {
	path string
	more chan []byte
	// followEnded gets a value each time a follow response returns, so a
	// test can wait until no stale request takes a frame sent on more; the
	// serve handlers send, the test receives.
	followEnded chan struct{}
	srv         *http.Server
	// served is closed by Serve's goroutine when it returns.
	served chan struct{}
}

func startFakeDaemon(t *testing.T) *fakeDaemon {
	t.Helper()
	dir, err := os.MkdirTemp("", "fakedaemon-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	d := &fakeDaemon{path: filepath.Join(dir, "d.sock"), more: make(chan []byte), followEnded: make(chan struct{}, 16), served: make(chan struct{})}
	ln, err := net.Listen("unix", d.path)
	if err != nil {
		t.Fatal(err)
	}
	d.srv = &http.Server{Handler: http.HandlerFunc(d.serve)}
	go func() {
		defer close(d.served)
		d.srv.Serve(ln) //nolint:errcheck // ends with Close
	}()
	t.Cleanup(func() {
		d.srv.Close()
		<-d.served
	})
	return d
}

func (d *fakeDaemon) serve(w http.ResponseWriter, r *http.Request) {
	if !logsPath.MatchString(r.URL.Path) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"Id":"c"}`) //nolint:errcheck // the client may be gone
		return
	}
	n, _ := strconv.Atoi(r.URL.Query().Get("frames"))
	w.WriteHeader(http.StatusOK)
	f := w.(http.Flusher)
	f.Flush()
	for i := range n {
		if _, err := w.Write(frame(1, fmt.Sprintf("line %d\n", i))); err != nil {
			return
		}
		f.Flush()
	}
	if r.URL.Query().Get("follow") != "1" {
		return
	}
	defer func() {
		select {
		case d.followEnded <- struct{}{}:
		default: // no test waits on it; a handler never blocks
		}
	}()
	for {
		select {
		case b := <-d.more:
			if _, err := w.Write(b); err != nil {
				return
			}
			f.Flush()
		case <-r.Context().Done():
			return
		}
	}
}

// rawClient speaks HTTP/1.1 over one connection to the proxy, so reads can
// have deadlines and a cut is seen as it is.
type rawClient struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dial(t *testing.T, p *Proxy) *rawClient {
	t.Helper()
	c, err := net.Dial("unix", strings.TrimPrefix(p.Host(), "unix://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawClient{t: t, c: c, br: bufio.NewReader(c)}
}

// get sends a GET and reads the response head, waiting at most timeout.
func (rc *rawClient) get(target string, timeout time.Duration) (*http.Response, error) {
	rc.t.Helper()
	if _, err := fmt.Fprintf(rc.c, "GET %s HTTP/1.1\r\nHost: docker\r\n\r\n", target); err != nil {
		rc.t.Fatal(err)
	}
	rc.c.SetReadDeadline(time.Now().Add(timeout)) //nolint:errcheck // a closed conn fails the read
	return http.ReadResponse(rc.br, nil)
}

// readN reads n body bytes within timeout.
func readN(t *testing.T, rc *rawClient, body io.Reader, n int, timeout time.Duration) ([]byte, error) {
	t.Helper()
	rc.c.SetReadDeadline(time.Now().Add(timeout)) //nolint:errcheck // a closed conn fails the read
	b := make([]byte, n)
	k, err := io.ReadFull(body, b)
	return b[:k], err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestForwardsEveryByteUnchangedBothWays(t *testing.T) {
	upPath := filepath.Join(t.TempDir(), "up.sock")
	ln, err := net.Listen("unix", upPath)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// Several requests on one connection: a ping, a chunked POST, a POST
	// with a length, a logs request. The answer is arbitrary bytes.
	sent := "HEAD /_ping HTTP/1.1\r\nHost: docker\r\n\r\n" +
		"POST /v1.41/build HTTP/1.1\r\nHost: docker\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: 1\r\n\r\n" +
		"POST /containers/x/start HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc" +
		"GET /v1.41/containers/0123/logs?stdout=1&follow=1 HTTP/1.1\r\nHost: docker\r\n\r\n"
	answer := make([]byte, 300<<10)
	for i := range answer {
		answer[i] = byte(rand.IntN(256))
	}
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		b := make([]byte, len(sent))
		_, err = io.ReadFull(c, b)
		got <- b
		if err == nil {
			c.Write(answer) //nolint:errcheck // the test compares what arrives
		}
	}()
	p := Start(t, "unix://"+upPath)
	rc := dial(t, p)
	if _, err := io.WriteString(rc.c, sent); err != nil {
		t.Fatal(err)
	}
	if b := <-got; string(b) != sent {
		t.Errorf("daemon got %q, want %q", b, sent)
	}
	back, err := readN(t, rc, rc.br, len(answer), 10*time.Second)
	if err != nil || !bytes.Equal(back, answer) {
		t.Errorf("client got %d bytes (%v), want the daemon's %d unchanged", len(back), err, len(answer))
	}
	if s := p.Stats(); s.LogsRequests != 1 || s.Conns != 1 {
		t.Errorf("stats %+v, want 1 connection and 1 logs request", s)
	}
}

func TestStallHoldsLogsResponsesAndNothingElse(t *testing.T) {
	d := startFakeDaemon(t)
	p := Start(t, d.path)
	rc := dial(t, p)

	// A logs response that completes, then an inspect on the same
	// connection: once the stall begins only logs responses are held.
	res, err := rc.get("/v1.41/containers/c/logs?frames=3", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(res.Body); err != nil || len(b) != 3*len(frame(1, "line 0\n")) {
		t.Fatalf("logs before the stall: %d bytes, %v", len(b), err)
	}
	p.Stall()
	res, err = rc.get("/v1.41/containers/c/json", 5*time.Second)
	if err != nil {
		t.Fatalf("inspect during a stall on a connection that carried logs: %v", err)
	}
	io.Copy(io.Discard, res.Body) //nolint:errcheck // only the head matters

	// A new logs request: not even its head arrives.
	if _, err := rc.get("/v1.41/containers/c/logs?frames=1&follow=1", 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("logs head arrived during a stall: %v", err)
	}
	p.Heal()
	rc.c.SetReadDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck // a closed conn fails the read
	res, err = http.ReadResponse(rc.br, nil)
	if err != nil {
		t.Fatalf("logs head after heal: %v", err)
	}
	if _, err := readN(t, rc, res.Body, len(frame(1, "line 0\n")), 5*time.Second); err != nil {
		t.Fatalf("first frame after heal: %v", err)
	}

	// A stall in the middle of an open stream: the frame sent meanwhile
	// arrives only after Heal, and the connection stays open.
	p.Stall()
	d.more <- frame(2, "held\n")
	// Peek, not the body: a chunked body's read error is sticky.
	rc.c.SetReadDeadline(time.Now().Add(300 * time.Millisecond)) //nolint:errcheck // a closed conn fails the read
	if b, err := rc.br.Peek(1); !isTimeout(err) {
		t.Fatalf("read %q during a stall (%v)", b, err)
	}
	p.Heal()
	want := frame(2, "held\n")
	b, err := readN(t, rc, res.Body, len(want), 5*time.Second)
	if err != nil || !bytes.Equal(b, want) {
		t.Fatalf("after heal got %q (%v), want %q", b, err, want)
	}
}

func TestCutMidFrameAlternatesHeaderAndPayload(t *testing.T) {
	d := startFakeDaemon(t)
	p := Start(t, d.path)
	whole := 0 // bytes of the two whole frames forwarded before a cut
	for i := range 2 {
		whole += len(frame(1, fmt.Sprintf("line %d\n", i)))
	}
	for i, wantExtra := range []int{frameHeaderLen / 2, frameHeaderLen + len("payload-of-frame-3\n")/2} {
		cut := p.CutMidFrame()
		rc := dial(t, p)
		res, err := rc.get("/v1.41/containers/c/logs?frames=2&follow=1", 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		d.more <- frame(1, "payload-of-frame-3\n")
		select {
		case <-cut:
		case <-time.After(10 * time.Second):
			t.Fatalf("cut %d never made", i)
		}
		rc.c.SetReadDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck // a closed conn fails the read
		b, err := io.ReadAll(res.Body)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("cut %d: body ended with %v, want an unexpected EOF", i, err)
		}
		if len(b) != whole+wantExtra {
			t.Errorf("cut %d: %d bytes arrived, want %d (two frames and %d bytes of the third)", i, len(b), whole+wantExtra, wantExtra)
		}
		// The daemon's side of the cut request must be gone before the
		// next frame is sent, or it may take that frame.
		select {
		case <-d.followEnded:
		case <-time.After(10 * time.Second):
			t.Fatalf("cut %d: the daemon's response never ended", i)
		}
	}
	if s := p.Stats(); s.HeaderCuts != 1 || s.PayloadCuts != 1 {
		t.Errorf("stats %+v, want one cut of each kind", s)
	}
}

func TestSlowDownPacesLogsResponsesUntilHeal(t *testing.T) {
	d := startFakeDaemon(t)
	p := Start(t, d.path)
	rc := dial(t, p)
	const rate = 16 << 10
	p.SlowDown(rate)
	res, err := rc.get("/v1.41/containers/c/logs?frames=1&follow=1", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readN(t, rc, res.Body, len(frame(1, "line 0\n")), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	big := frame(1, strings.Repeat("x", 2*rate))
	go func() { d.more <- big }()
	start := time.Now()
	if _, err := readN(t, rc, res.Body, rate, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 800*time.Millisecond {
		t.Errorf("%d bytes at %d B/s took %s", rate, rate, el)
	}
	p.Heal()
	start = time.Now()
	if _, err := readN(t, rc, res.Body, len(big)-rate, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 500*time.Millisecond {
		t.Errorf("after heal the rest took %s", el)
	}
}

func TestCloseLeavesNoGoroutine(t *testing.T) {
	d := startFakeDaemon(t)
	baseline := runtime.NumGoroutine()
	p := Start(t, d.path)
	for range 3 {
		p.Stall()
		stalled := dial(t, p)
		if _, err := stalled.get("/v1.41/containers/c/logs?frames=5&follow=1", 100*time.Millisecond); !isTimeout(err) {
			t.Fatalf("stalled logs head: %v", err)
		}
		idle := dial(t, p)
		if res, err := idle.get("/v1.41/containers/c/json", 5*time.Second); err != nil {
			t.Fatal(err)
		} else {
			io.Copy(io.Discard, res.Body) //nolint:errcheck // only the head matters
		}
		// Closed before the cut is armed, so the cut lands on the next
		// request and not on the stalled response that Heal releases.
		stalled.c.Close()
		idle.c.Close()
		p.Heal()
		made := p.CutMidFrame()
		cut := dial(t, p)
		res, err := cut.get("/v1.41/containers/c/logs?frames=5&follow=1", 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, res.Body); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("logs body ended with %v, want the cut's unexpected EOF", err)
		}
		<-made
		cut.c.Close()
	}
	open := dial(t, p) // left open: Close must end it
	if _, err := open.get("/v1.41/containers/c/json", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.Close()
	// The proxy's goroutines are gone when Close returns; the fake
	// daemon's end when they see their connections closed, which no event
	// announces.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > baseline {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after Close, %d before:\n%s", runtime.NumGoroutine(), baseline, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := net.Dial("unix", strings.TrimPrefix(p.Host(), "unix://")); err == nil {
		t.Error("the proxy still accepts connections after Close")
	}
}

func TestOutageClosesEveryConnectionUntilHeal(t *testing.T) {
	d := startFakeDaemon(t)
	p := Start(t, d.path)
	// inspect sends an inspect request on rc; it returns the error of the
	// write or of the response.
	inspect := func(rc *rawClient) error {
		if _, err := io.WriteString(rc.c, "GET /v1.41/containers/c/json HTTP/1.1\r\nHost: docker\r\n\r\n"); err != nil {
			return err
		}
		rc.c.SetReadDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck // a closed conn fails the read
		res, err := http.ReadResponse(rc.br, nil)
		if err == nil {
			_, err = io.Copy(io.Discard, res.Body)
		}
		return err
	}
	open := dial(t, p)
	if err := inspect(open); err != nil {
		t.Fatalf("before the outage: %v", err)
	}
	p.Outage()
	if err := inspect(open); err == nil || isTimeout(err) {
		t.Errorf("a connection open before the outage answered or hung (%v), want it closed", err)
	}
	if err := inspect(dial(t, p)); err == nil || isTimeout(err) {
		t.Errorf("a connection made during the outage answered or hung (%v), want it closed", err)
	}
	p.Heal()
	if err := inspect(dial(t, p)); err != nil {
		t.Errorf("after Heal: %v", err)
	}
}
