package main

// A small client of the Docker Engine API over its unix socket, written
// against the HTTP API rather than the SDK: the raw reads are the daemon's
// ceiling, so they must not carry any of the plugin's code, and container
// churn needs nothing more than a few POSTs.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dockerlogs/fluent-bit-docker-logs/internal/dockertest"
)

const apiVersion = "v1.41" // Docker 20.10; newer daemons still serve it

// engine talks to one daemon.
type engine struct {
	sock string
	hc   *http.Client // control requests: create, start, stop, remove
}

func newEngine(sock string) *engine {
	return &engine{sock: sock, hc: &http.Client{Transport: unixTransport(sock, 64)}}
}

// unixTransport dials the socket for every host name. No Timeout on the
// client: logs streams can be long.
func unixTransport(sock string, idle int) *http.Transport {
	return &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		MaxIdleConns:        idle,
		MaxIdleConnsPerHost: idle,
		DisableCompression:  true,
	}
}

func (e *engine) url(path string, q url.Values) string {
	return "http://docker/" + apiVersion + path + "?" + q.Encode()
}

// do sends a request and decodes a JSON answer into out (if not nil); a
// status >= 300 but also is an error with the daemon's message.
func (e *engine) do(ctx context.Context, method, path string, q url.Values, body, out any, also int) error {
	b, err := json.Marshal(body)
	if body == nil {
		b = nil // no body: start and stop refuse one
	}
	req, err2 := http.NewRequestWithContext(ctx, method, e.url(path, q), bytes.NewReader(b))
	if err = errors.Join(err, err2); err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := e.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	if res.StatusCode >= 300 && res.StatusCode != also {
		msg, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
		return fmt.Errorf("%s %s: %d %s", method, path, res.StatusCode, bytes.TrimSpace(msg))
	}
	if out != nil {
		return json.NewDecoder(res.Body).Decode(out)
	}
	_, err = io.Copy(io.Discard, res.Body)
	return err
}

// spec is one loggen container.
type spec struct {
	image  string
	args   []string
	labels map[string]string // besides the dockertest labels
	// logOpts replace the daemon's default json-file options (this
	// machine's daemon rotates at 10 MB x 3 files, which keeps only ~180k
	// lines of 100 bytes).
	logOpts map[string]string
}

// unrotated keeps a whole big log in one json-file.
var unrotated = map[string]string{"max-size": "100g", "max-file": "1"}

// run creates and starts a container labelled as dockertest labels its own,
// so dockertest.CleanupAll removes it, and returns its id.
func (e *engine) run(ctx context.Context, s spec) (string, error) {
	labels := map[string]string{dockertest.LabelTest: "1", dockertest.LabelRun: dockertest.RunID()}
	maps.Copy(labels, s.labels)
	hostConfig := map[string]any{"NetworkMode": "none"}
	if s.logOpts != nil {
		hostConfig["LogConfig"] = map[string]any{"Type": "json-file", "Config": s.logOpts}
	}
	body := map[string]any{"Image": s.image, "Cmd": s.args, "Labels": labels, "HostConfig": hostConfig}
	var created struct{ ID string }
	err := e.do(ctx, http.MethodPost, "/containers/create", nil, body, &created, 0)
	if err == nil {
		err = e.do(ctx, http.MethodPost, "/containers/"+created.ID+"/start", nil, nil, nil, 0)
	}
	return created.ID, err
}

// runMany starts n containers, `workers` requests at a time; spec i is
// made by mk(i). It returns the ids in order ("" where a create failed).
func (e *engine) runMany(ctx context.Context, n, workers int, mk func(i int) spec) ([]string, error) {
	ids := make([]string, n)
	err := parallel(n, workers, func(i int) (err error) {
		if err = ctx.Err(); err == nil {
			ids[i], err = e.run(ctx, mk(i))
		}
		return err
	})
	return ids, err
}

// each runs f on every id but "", `workers` at a time.
func each(ids []string, workers int, f func(id string) error) error {
	return parallel(len(ids), workers, func(i int) error {
		if ids[i] == "" {
			return nil
		}
		return f(ids[i])
	})
}

// parallel runs f(0..n-1), `workers` at a time, and joins their errors.
func parallel(n, workers int, f func(i int) error) error {
	sem := make(chan struct{}, workers)
	errs := make([]error, n)
	var wg sync.WaitGroup // f's goroutines; parallel waits
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			errs[i] = f(i)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// stop stops a container; one already stopped is no error.
func (e *engine) stop(ctx context.Context, id string) error {
	return e.do(ctx, http.MethodPost, "/containers/"+id+"/stop", url.Values{"t": {"10"}}, nil, nil, http.StatusNotModified)
}

// remove removes a container; one already gone is no error.
func (e *engine) remove(ctx context.Context, id string) error {
	return e.do(ctx, http.MethodDelete, "/containers/"+id, url.Values{"force": {"1"}, "v": {"1"}}, nil, nil, http.StatusNotFound)
}

// wait blocks until the container has exited.
func (e *engine) wait(ctx context.Context, id string) error {
	return e.do(ctx, http.MethodPost, "/containers/"+id+"/wait", nil, nil, nil, 0)
}

// logPath is the container's json-file log.
func (e *engine) logPath(ctx context.Context, id string) (string, error) {
	var r struct{ LogPath string }
	err := e.do(ctx, http.MethodGet, "/containers/"+id+"/json", nil, nil, &r, 0)
	return r.LogPath, err
}

// logSize is the size of the container's json-file log (the bench runs as
// root beside the daemon); -1 if unknown.
func (e *engine) logSize(ctx context.Context, id string) int64 {
	p, _ := e.logPath(ctx, id)
	fi, err := os.Stat(p)
	if err != nil {
		return -1
	}
	return fi.Size()
}

// frames opens a logs stream with timestamps and its own connection (a
// fresh transport: nothing pooled, as the reader's streams are) and calls
// fn with each frame's payload (valid until fn returns) until fn returns
// false or the stream ends (nil at EOF); canceling ctx ends it.
func (e *engine) frames(ctx context.Context, id string, q url.Values, fn func(p []byte) bool) error {
	tr := unixTransport(e.sock, 1)
	defer tr.CloseIdleConnections()
	q.Set("stdout", "1")
	q.Set("stderr", "1")
	q.Set("timestamps", "1")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.url("/containers/"+id+"/logs", q), nil)
	if err != nil {
		return err
	}
	res, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
		return fmt.Errorf("logs %s: %d %s", id[:12], res.StatusCode, bytes.TrimSpace(msg))
	}
	r := bufio.NewReaderSize(res.Body, 256<<10)
	var hdr [8]byte
	var buf []byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
		n := int(binary.BigEndian.Uint32(hdr[4:]))
		buf = slices.Grow(buf[:0], n)[:n]
		if _, err := io.ReadFull(r, buf); err != nil {
			return err
		}
		if !fn(buf) {
			return nil
		}
	}
}

// lastEntry returns the stamp and text of the container's last log entry.
func (e *engine) lastEntry(ctx context.Context, id string) (stamp, text string, err error) {
	err = e.frames(ctx, id, url.Values{"tail": {"1"}}, func(p []byte) bool {
		stamp, text, _ = strings.Cut(string(p), " ")
		return true
	})
	return stamp, text, err
}

// lastSeq is the seq of the container's last loggen line, 0 if none.
func (e *engine) lastSeq(ctx context.Context, id string) (int, error) {
	_, text, err := e.lastEntry(ctx, id)
	if err != nil {
		return 0, err
	}
	seq, _ := parseSeq([]byte(text))
	return seq, nil
}

// waitLastSeq polls until the container's last line has seq >= n.
func (e *engine) waitLastSeq(ctx context.Context, id string, n int) error {
	for {
		if seq, err := e.lastSeq(ctx, id); err != nil || seq >= n {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// parseSeq reads n from a loggen line "seq=<n> stream=...".
func parseSeq(b []byte) (int, bool) {
	if len(b) < 5 || string(b[:4]) != "seq=" {
		return 0, false
	}
	n, i := 0, 4
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		n = n*10 + int(b[i]-'0')
	}
	return n, i > 4
}

func mb(n int64) string {
	if n < 0 {
		return "?"
	}
	return fmt.Sprintf("%.1f MB", float64(n)/1e6)
}
