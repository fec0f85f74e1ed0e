package main

// The bench's client of the daemon. Containers are made and removed with
// dockertest (the docker CLI); logs are read over the socket against the
// HTTP API rather than the SDK: the raw reads are the daemon's ceiling, so
// they must not carry any of the plugin's code.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
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

// engine reads the logs of one daemon's containers.
type engine struct {
	logs *http.Client // a connection a stream, nothing pooled, as the reader's streams are
}

func newEngine(sock string) *engine {
	return &engine{logs: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		DisableKeepAlives:  true,
		DisableCompression: true,
	}}}
}

// unrotated keeps a whole big log in one json-file (this machine's daemon
// rotates at 10 MB x 3 files by default, which keeps only ~180k lines of
// 100 bytes).
var unrotated = map[string]string{"max-size": "100g", "max-file": "1"}

// runMany starts n containers, `workers` at a time, container i as mk(i)
// says. It returns the ids in order ("" where a create failed).
func (e *engine) runMany(ctx context.Context, n, workers int, mk func(i int) dockertest.RunOptions) ([]string, error) {
	ids := make([]string, n)
	err := parallel(n, workers, func(i int) (err error) {
		if err = ctx.Err(); err == nil {
			ids[i], err = dockertest.Start(mk(i))
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

// stop, remove and wait are docker stop, rm and wait.
func (e *engine) stop(id string) error { _, err := dockertest.Command("stop", id); return err }
func (e *engine) remove(id string) error {
	_, err := dockertest.Command("rm", "-f", "-v", id)
	return err
}
func (e *engine) wait(id string) error { _, err := dockertest.Command("wait", id); return err }

// logPath is the container's json-file log.
func (e *engine) logPath(id string) (string, error) {
	out, err := dockertest.Command("inspect", "-f", "{{.LogPath}}", id)
	return strings.TrimSpace(out), err
}

// logSize is the size of the container's json-file log (the bench runs as
// root beside the daemon); -1 if unknown.
func (e *engine) logSize(id string) int64 {
	p, _ := e.logPath(id)
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
	q.Set("stdout", "1")
	q.Set("stderr", "1")
	q.Set("timestamps", "1")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/v1.41/containers/"+id+"/logs?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	res, err := e.logs.Do(req)
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
	seq, _ := parseSeq([]byte(text))
	return seq, err
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
