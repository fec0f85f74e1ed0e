package jsonfile

import (
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/dockerlogs/fluent-bit-docker-logs/capture"
)

// fakeDriver writes a container's log as the json-file driver does:
// encoding/json lines, rotation when the live file reaches maxSize (close,
// shift .N names up, rename the live file to .1, create it again) and, with
// compress, .1 compressed to .1.gz by another goroutine that removes .1
// when done; the next rotation waits for it, as the daemon's lock does.
type fakeDriver struct {
	t        testing.TB
	live     string
	maxSize  int64 // 0: never rotate
	maxFiles int
	compress bool

	mu    sync.Mutex // held by write and rotate
	f     *os.File
	size  int64
	stamp time.Time // strictly increasing stamps
	// compressing is held by a compression from the rotation that started
	// it until .1.gz is complete; the next rotation takes it first.
	compressing sync.Mutex
	rotations   int
	// lateHeader is added to the stamp written into the gzip header:
	// Docker 20.10 reads it after the rotation, so under load it can be a
	// later line's.
	lateHeader time.Duration
}

const testID = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func newFakeDriver(t testing.TB, dir string, maxSize int64, maxFiles int, compress bool) *fakeDriver {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, testID), 0o755); err != nil {
		t.Fatal(err)
	}
	d := &fakeDriver{t: t, live: filepath.Join(dir, testID, testID+"-json.log"), maxSize: maxSize,
		maxFiles: maxFiles, compress: compress, stamp: time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)}
	var err error
	if d.f, err = os.OpenFile(d.live, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.compressing.Lock() // wait for a compression under way
		defer d.compressing.Unlock()
		d.f.Close()
	})
	return d
}

// write appends one entry and returns its stamp.
func (d *fakeDriver) write(stream, log string) capture.Timestamp {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stamp = d.stamp.Add(time.Microsecond + time.Duration(len(log)%7)*time.Nanosecond)
	b, err := json.Marshal(struct {
		Log    string `json:"log"`
		Stream string `json:"stream"`
		Time   string `json:"time"`
	}{log, stream, d.stamp.Format(time.RFC3339Nano)})
	if err != nil {
		d.t.Error(err)
	}
	b = append(b, '\n')
	if _, err := d.f.Write(b); err != nil {
		d.t.Error(err)
	}
	d.size += int64(len(b))
	if d.maxSize > 0 && d.size >= d.maxSize {
		d.rotate()
	}
	return capture.Timestamp(d.stamp.UnixNano())
}

func (d *fakeDriver) rotate() {
	d.compressing.Lock()
	d.f.Close()
	ext := ""
	if d.compress {
		ext = ".gz"
	}
	if d.maxFiles > 1 {
		os.Remove(d.live + "." + strconv.Itoa(d.maxFiles-1) + ext)
		for i := d.maxFiles - 1; i > 1; i-- {
			os.Rename(d.live+"."+strconv.Itoa(i-1)+ext, d.live+"."+strconv.Itoa(i)+ext)
		}
		if err := os.Rename(d.live, d.live+".1"); err != nil {
			d.t.Error(err)
		}
	}
	var err error
	if d.f, err = os.OpenFile(d.live, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o640); err != nil {
		d.t.Error(err)
	}
	d.size = 0
	d.rotations++
	if !d.compress || d.maxFiles < 2 {
		d.compressing.Unlock()
		return
	}
	last := d.stamp.Add(d.lateHeader)
	go func() {
		defer d.compressing.Unlock()
		if err := compressFile(d.live+".1", last); err != nil {
			d.t.Error(err)
		}
	}()
}

// compressFile is the daemon's: the stamp of the last entry goes into the
// gzip header.
func compressFile(name string, last time.Time) error {
	in, err := os.Open(name)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(name+".gz", os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o640)
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(out)
	if zw.Header.Extra, err = json.Marshal(map[string]time.Time{"lastTime": last}); err != nil {
		return err
	}
	if _, err := io.Copy(zw, in); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Remove(name)
}

// line is what the nth line of a test says, with its newline.
func line(n int, stream string) string { return fmt.Sprintf("seq=%d stream=%s\n", n, stream) }
