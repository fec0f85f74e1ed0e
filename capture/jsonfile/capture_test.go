package jsonfile

import (
	"context"
	"errors"

	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/dockerlogs/fluent-bit-docker-logs/capture"
	"github.com/dockerlogs/fluent-bit-docker-logs/internal/capturetest"
	"github.com/dockerlogs/fluent-bit-docker-logs/internal/records"
)

// fakeAPI is the daemon as far as the file path needs it: one container,
// its state, its events. Its logs streams count and fail, so a test sees
// whether anything was read through the API.
type fakeAPI struct {
	mu      sync.Mutex
	c       capture.Container
	gone    bool
	logs    int                // logs requests made to it
	events  chan capture.Event // sent by the test, closed by nobody
	logsErr error
}

func newFakeAPI() *fakeAPI {
	return &fakeAPI{c: capture.Container{ID: testID, Name: "app", Image: "img", Running: true}, events: make(chan capture.Event)}
}

func (a *fakeAPI) List(context.Context) ([]capture.Container, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.gone {
		return nil, nil
	}
	return []capture.Container{a.c}, nil
}

func (a *fakeAPI) Inspect(_ context.Context, id string) (capture.Container, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.gone || id != testID {
		return capture.Container{}, capture.ErrNotFound
	}
	return a.c, nil
}

func (a *fakeAPI) Logs(context.Context, string, capture.LogsRequest) (io.ReadCloser, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.logs++
	return nil, cmpErr(a.logsErr, errNoAPI)
}

// errNoAPI: the fake daemon serves no logs.
var errNoAPI = errors.New("no logs from the fake daemon")

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func (a *fakeAPI) Events(ctx context.Context) (<-chan capture.Event, <-chan error) {
	out := make(chan capture.Event)
	errc := make(chan error, 1)
	go func() {
		defer close(out)
		for {
			select {
			case ev := <-a.events:
				select {
				case out <- ev:
				case <-ctx.Done():
					errc <- nil
					return
				}
			case <-ctx.Done():
				errc <- nil
				return
			}
		}
	}()
	return out, errc
}

func (a *fakeAPI) Close() error { return nil }

func (a *fakeAPI) stop() {
	a.mu.Lock()
	a.c.Running = false
	a.mu.Unlock()
	a.events <- capture.Event{Action: capture.ActionDie, ID: testID}
}

// collector drains a capture as Fluent Bit would.
type collector struct {
	c    *capture.Capture
	mu   sync.Mutex
	recs []records.Record
	// stop ends the draining goroutine, which closes done.
	stop context.CancelFunc
	done chan struct{}
}

func startCapture(t *testing.T, src capture.Source, opts capture.Options) *collector {
	t.Helper()
	l := logrus.New()
	l.SetOutput(io.Discard)
	if testing.Verbose() {
		l.SetOutput(os.Stderr)
		l.SetLevel(logrus.DebugLevel)
	}
	c := capture.New(src, opts, logrus.NewEntry(l))
	c.Start()
	ctx, cancel := context.WithCancel(context.Background())
	col := &collector{c: c, stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(col.done)
		for ctx.Err() == nil {
			if c.WaitQueued(ctx) != nil {
				return
			}
			col.drain(t)
		}
	}()
	t.Cleanup(col.close)
	return col
}

func (col *collector) drain(t *testing.T) {
	b := col.c.Drain(64 << 20)
	if b.Len() == 0 {
		return
	}
	recs, err := records.Decode(b.Bytes())
	if err != nil {
		t.Errorf("decode: %v", err)
	}
	col.c.Commit(b)
	col.mu.Lock()
	col.recs = append(col.recs, recs...)
	col.mu.Unlock()
}

func (col *collector) close() {
	col.stop()
	<-col.done
	if err := col.c.Stop(30 * time.Second); err != nil {
		panic(err)
	}
}

func (col *collector) count() int {
	col.mu.Lock()
	defer col.mu.Unlock()
	return len(col.recs)
}

// waitCount waits for n records, failing after timeout.
func (col *collector) waitCount(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for col.count() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d records after %s, want %d", col.count(), timeout, n)
		}
		time.Sleep(5 * time.Millisecond) // polled: the queue has no "n taken" event
	}
}

func checkRecords(t *testing.T, recs []records.Record, w []written) {
	t.Helper()
	if len(recs) != len(w) {
		t.Errorf("%d records, want %d", len(recs), len(w))
	}
	for i := range min(len(recs), len(w)) {
		r := recs[i]
		want := w[i]
		stream := map[capture.StreamKind]string{capture.Stdout: "stdout", capture.Stderr: "stderr"}[want.stream]
		if r.Log+"\n" != want.log || r.Stream != stream || r.Time.UnixNano() != int64(want.ts) {
			t.Fatalf("record %d: %s %q at %d, want %s %q at %d", i, r.Stream, r.Log, r.Time.UnixNano(), stream, want.log, want.ts)
		}
	}
}

// TestEveryLineOnceThroughFastRotation runs the real reader over files
// rotated as fast as they can be written, plain and compressed, with
// streams refreshed often (each refresh closes the stream that holds the
// rotated files): every line arrives once, in order, with its stamp, and
// nothing is asked of the API.
func TestEveryLineOnceThroughFastRotation(t *testing.T) {
	for _, compress := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "compressed"}[compress], func(t *testing.T) {
			dir := t.TempDir()
			d := newFakeDriver(t, dir, 1<<20, 3, compress)
			api := newFakeAPI()
			opts := capturetest.Options()
			opts.StreamRefresh = 100 * time.Millisecond
			col := startCapture(t, New(api, Files, dir, quietLog()), opts)
			const n = 100000
			w := writeLines(d, 0, n)
			col.waitCount(t, n, 2*time.Minute)
			api.stop()
			col.close()
			checkRecords(t, col.recs, w)
			if api.logs != 0 {
				t.Errorf("%d logs requests went to the API", api.logs)
			}
			t.Logf("%d lines through %d rotations", n, d.rotations)
		})
	}
}

// TestMovingBetweenFilesAndAPIKeepsEveryLineOnce stops a capture reading
// files, and starts one reading the same container from the positions
// the first one committed, through another Source; then back.
func TestMovingBetweenFilesAndAPIKeepsEveryLineOnce(t *testing.T) {
	dir := t.TempDir()
	d := newFakeDriver(t, dir, 32<<10, 1000, false)
	db := filepath.Join(t.TempDir(), "positions.db")
	var all []records.Record
	var w []written
	// files, then files again (a restart), then the API (files not
	// mounted: auto falls back), then files.
	for round, mode := range []string{"files", "files", "auto-unmounted", "files"} {
		w = append(w, writeLines(d, len(w), 3000)...)
		pos, err := capture.OpenPositions(db, 0, logrus.NewEntry(logrus.New()))
		if err != nil {
			t.Fatal(err)
		}
		opts := capturetest.Options()
		opts.Positions = pos
		api := newFakeAPI()
		var src capture.Source
		switch mode {
		case "files":
			src = New(api, Files, dir, quietLog())
		case "auto-unmounted":
			// The API path is served here by the file stream itself over
			// the real directory, standing in for the daemon: both answer
			// the same request the same way, which is what the move
			// relies on.
			api.logsErr = nil
			src = New(&servingAPI{fakeAPI: api, dir: dir}, Auto, t.TempDir(), quietLog())
		}
		col := startCapture(t, src, opts)
		col.waitCount(t, len(w)-len(all), time.Minute)
		col.close()
		if round == 2 && api.logs == 0 {
			t.Errorf("round %d: nothing read through the API", round)
		}
		all = append(all, col.recs...)
	}
	checkRecords(t, all, w)
}

// servingAPI answers logs requests from the files, as the daemon does.
type servingAPI struct {
	*fakeAPI
	dir string
}

func (a *servingAPI) Logs(ctx context.Context, id string, req capture.LogsRequest) (io.ReadCloser, error) {
	a.mu.Lock()
	a.logs++
	a.mu.Unlock()
	return newStream(ctx, filepath.Join(a.dir, id, id+"-json.log"), req, &containerInfo{}, nil, quietLog())
}

func TestUnreadableFilesUseTheAPIInAutoAndAreAnErrorInFiles(t *testing.T) {
	api := newFakeAPI()
	api.logsErr = errors.New("from the api")
	s := New(api, Auto, t.TempDir(), quietLog())
	if _, err := s.Logs(context.Background(), testID, capture.LogsRequest{Stdout: true}); err == nil || err.Error() != "from the api" || api.logs != 1 {
		t.Errorf("auto: %v after %d API requests, want the API's answer", err, api.logs)
	}
	// Files only: a directory without a json-file log is another
	// driver's (unreadable); no directory is a removed container.
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, testID), 0o755); err != nil {
		t.Fatal(err)
	}
	s = New(api, Files, dir, quietLog())
	if _, err := s.Logs(context.Background(), testID, capture.LogsRequest{Stdout: true}); !errors.Is(err, capture.ErrLogsUnreadable) || api.logs != 1 {
		t.Errorf("files: %v after %d API requests, want ErrLogsUnreadable and no request", err, api.logs)
	}
	api.gone = true
	s = New(api, Files, t.TempDir(), quietLog())
	if _, err := s.Logs(context.Background(), testID, capture.LogsRequest{Stdout: true}); !errors.Is(err, capture.ErrNotFound) || api.logs != 1 {
		t.Errorf("files, removed: %v after %d API requests, want ErrNotFound and no request", err, api.logs)
	}
	api.gone = false
	s = New(api, API, t.TempDir(), quietLog())
	if _, err := s.Logs(context.Background(), testID, capture.LogsRequest{Stdout: true}); api.logs != 2 {
		t.Errorf("api: %v after %d API requests, want 2", err, api.logs)
	}
}

// A container removed as soon as it exits (--rm) whose start event comes
// after its directory is gone is still read whole: its live file was
// opened when the daemon created it.
func TestAContainerRemovedBeforeItsReaderAsksIsReadWhole(t *testing.T) {
	dir := t.TempDir()
	src, api, col := startWatchedCapture(t, dir)
	d := newFakeDriver(t, dir, 0, 1, false)
	waitPreopened(t, src, testID, 1)
	w := writeLines(d, 0, 500)
	if err := os.RemoveAll(filepath.Join(dir, testID)); err != nil {
		t.Fatal(err)
	}
	readOnStart(t, api, col, w)
}

// A container that writes fast rotates its live file away, and the daemon
// deletes it, before its reader asks (max-file 2, three rotations here):
// each live file it had is held from its creation and read whole.
func TestAContainerThatRotatedBeforeItsReaderAsksIsReadWhole(t *testing.T) {
	dir := t.TempDir()
	src, api, col := startWatchedCapture(t, dir)
	d := newFakeDriver(t, dir, 0, 2, false)
	var w []written
	for files := 1; ; files++ {
		waitPreopened(t, src, testID, files)
		w = append(w, writeLines(d, len(w), 100)...)
		if files == 4 {
			break
		}
		d.rotate() // from the third on, deletes the oldest
	}
	readOnStart(t, api, col, w)
}

// A watcher that gets a CPU only after the daemon rotated twice still
// holds the file in between (at .1 then), so when the daemon deletes it
// before the reader asks, it is read whole.
func TestFilesRotatedWhileTheWatcherWaitsAreHeldToo(t *testing.T) {
	dir := t.TempDir()
	src, api, col := startWatchedCapture(t, dir)
	d := newFakeDriver(t, dir, 0, 3, false)
	waitPreopened(t, src, testID, 1)
	w := writeLines(d, 0, 100)
	// The watcher waits (for the lock, here, as for a CPU on a loaded
	// host) while the daemon rotates twice.
	src.pre.mu.Lock()
	for range 2 {
		d.rotate()
		w = append(w, writeLines(d, len(w), 100)...)
	}
	src.pre.mu.Unlock()
	waitPreopened(t, src, testID, 3)
	// Two more rotations delete the first two files.
	for files := 4; files <= 5; files++ {
		d.rotate()
		w = append(w, writeLines(d, len(w), 100)...)
		waitPreopened(t, src, testID, files)
	}
	readOnStart(t, api, col, w)
}

// A container created and not started yet has its directory but no log
// file (the daemon creates it at the first start): its log is empty, as
// the API says, not unreadable, and once it starts its lines are read.
func TestACreatedContainerIsReadOnceItStarts(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, testID), 0o755); err != nil {
		t.Fatal(err)
	}
	api := newFakeAPI()
	api.c.Running, api.c.LogDriver = false, "json-file"
	src := capturetest.NewCountingSource(New(api, Files, dir, quietLog()), false)
	col := startCapture(t, src, capturetest.Options())
	deadline := time.Now().Add(time.Minute)
	for len(src.Streams(testID)) == 0 { // the read of its log as listed
		if time.Now().After(deadline) {
			t.Fatal("the created container's empty log was not read")
		}
		time.Sleep(time.Millisecond) // a stream opened sends no event here
	}
	d := newFakeDriver(t, dir, 0, 1, false) // the first start creates the file
	api.mu.Lock()
	api.c.Running = true
	api.mu.Unlock()
	api.events <- capture.Event{Action: capture.ActionStart, ID: testID, Name: "app", Image: "img"}
	w := writeLines(d, 0, 100)
	col.waitCount(t, len(w), time.Minute)
	api.stop()
	col.close()
	checkRecords(t, col.recs, w)
}

// readOnStart sends the container's start event, the first news of it, and
// checks that the capture then reads w.
func readOnStart(t *testing.T, api *fakeAPI, col *collector, w []written) {
	t.Helper()
	api.events <- capture.Event{Action: capture.ActionStart, ID: testID, Name: "app", Image: "img"}
	col.waitCount(t, len(w), time.Minute)
	col.close()
	checkRecords(t, col.recs, w)
}

// startWatchedCapture reads files under dir for a container that nobody
// lists, so only its start event tells of it, once the containers
// directory is watched.
func startWatchedCapture(t *testing.T, dir string) (*Source, *fakeAPI, *collector) {
	t.Helper()
	api := newFakeAPI()
	api.gone, api.c.Running = true, false
	src := New(api, Files, dir, quietLog())
	col := startCapture(t, src, capturetest.Options())
	select {
	case <-src.pre.watching:
	case <-time.After(time.Minute):
		t.Fatal("the containers directory is not watched")
	}
	return src, api, col
}

// waitPreopened waits until the Source holds n files of container id.
func waitPreopened(t *testing.T, s *Source, id string, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for heldPreopened(s, id) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of the container's %d log files opened ahead of its reader", heldPreopened(s, id), n)
		}
		time.Sleep(time.Millisecond) // the watch has no event for tests
	}
}

func heldPreopened(s *Source, id string) int {
	s.pre.mu.Lock()
	defer s.pre.mu.Unlock()
	if h := s.pre.files[id]; h != nil {
		return len(h.files)
	}
	return 0
}

// A Containers_Path that is readable but not where the daemon keeps its
// containers, and a log file that cannot be opened: in auto the API reads
// the container, with one info line for it that names the path, however
// often its streams are opened; in files it is unreadable, not gone (the
// daemon says it exists).
func TestFilesNotFoundOrUnreadableAreNamedOnceAndReadThroughTheAPI(t *testing.T) {
	wrong := t.TempDir() // readable, without the container's directory
	loop := t.TempDir()  // the container's log is a symbolic link to itself
	if err := os.Mkdir(filepath.Join(loop, testID), 0o755); err != nil {
		t.Fatal(err)
	}
	live := filepath.Join(loop, testID, testID+"-json.log")
	if err := os.Symlink(live, live); err != nil {
		t.Fatal(err)
	}
	for name, dir := range map[string]string{"wrong path": wrong, "unopenable file": loop} {
		t.Run(name, func(t *testing.T) {
			api := newFakeAPI()
			api.logsErr = errFromAPI
			l, hook := logtest.NewNullLogger()
			l.SetLevel(logrus.InfoLevel)
			s := New(api, Auto, dir, l)
			for range 3 {
				if _, err := s.Logs(context.Background(), testID, capture.LogsRequest{Stdout: true, Follow: true}); !errors.Is(err, errFromAPI) {
					t.Fatalf("auto: %v, want the API's answer", err)
				}
			}
			infos := 0
			for _, e := range hook.AllEntries() {
				if e.Level == logrus.InfoLevel && e.Data["log_path"] == filepath.Join(dir, testID, testID+"-json.log") {
					infos++
				}
			}
			if api.logs != 3 || infos != 1 || len(hook.AllEntries()) != 1 {
				t.Errorf("auto: %d API requests, %d info lines naming the path, %d lines in all; want 3, 1, 1", api.logs, infos, len(hook.AllEntries()))
			}
			s = New(api, Files, dir, quietLog())
			if _, err := s.Logs(context.Background(), testID, capture.LogsRequest{Stdout: true}); !errors.Is(err, capture.ErrLogsUnreadable) || api.logs != 3 {
				t.Errorf("files: %v after %d API requests, want ErrLogsUnreadable and no request", err, api.logs)
			}
		})
	}
}

var errFromAPI = errors.New("from the api")
