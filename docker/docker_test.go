package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/sirupsen/logrus"

	"github.com/dockerlogs/fluent-bit-docker-logs/capture"
)

const id64 = "4f1c0a8f3d2b6e5a7c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d"

var versionPrefix = regexp.MustCompile(`^/v[0-9]+\.[0-9]+`)

// fakeDaemon serves the routes of mux as a daemon of API 1.41 would, with the
// version prefix stripped, and records the prefix each request used.
type fakeDaemon struct {
	mux      *http.ServeMux
	versions chan string
}

func newFake(t *testing.T) (*fakeDaemon, *httptest.Server) {
	t.Helper()
	f := &fakeDaemon{mux: http.NewServeMux(), versions: make(chan string, 100)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", "1.41")
		if r.URL.Path == "/_ping" {
			_, _ = io.WriteString(w, "OK")
			return
		}
		select {
		case f.versions <- versionPrefix.FindString(r.URL.Path):
		default:
		}
		r.URL.Path = versionPrefix.ReplaceAllString(r.URL.Path, "")
		f.mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	f.mux.HandleFunc("GET /version", serveVersion)
	return f, srv
}

// serveVersion answers /version as Docker 20.10 does; List asks for it.
func serveVersion(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"Version": "20.10.24", "ApiVersion": "1.41", "MinAPIVersion": "1.12"})
}

func newClient(t *testing.T, host string) *Client {
	t.Helper()
	log := logrus.New()
	log.SetOutput(io.Discard)
	c, err := New(host, log)
	if err != nil {
		t.Fatalf("New(%q): %v", host, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func fakeClient(t *testing.T) (*fakeDaemon, *Client) {
	f, srv := newFake(t)
	return f, newClient(t, "tcp://"+srv.Listener.Addr().String())
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func daemonError(status int, msg string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, status, map[string]string{"message": msg})
	}
}

func TestListTranslatesSummariesAndAsksForAll(t *testing.T) {
	f, c := fakeClient(t)
	f.mux.HandleFunc("GET /containers/json", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("all") != "1" {
			t.Errorf("query %q, want all=1", r.URL.RawQuery)
		}
		writeJSON(w, 200, []map[string]any{
			{"Id": id64, "Names": []string{"/db/alias", "/web"}, "Image": "nginx:1.27",
				"Labels": map[string]string{"a": "b"}, "State": "running", "Created": 1795888803},
			{"Id": "b" + id64[1:], "Names": []string{"/old"}, "Image": "sha256:abc", "State": "exited"},
			// A paused container still has its process and its follow
			// stream stays open: it is read like a running one.
			{"Id": "c" + id64[1:], "Names": []string{"/frozen"}, "Image": "x", "State": "paused"},
		})
	})
	got, err := c.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []capture.Container{
		{ID: id64, Name: "web", Image: "nginx:1.27", Labels: map[string]string{"a": "b"}, Running: true, Created: time.Unix(1795888803, 0)},
		{ID: "b" + id64[1:], Name: "old", Image: "sha256:abc"},
		{ID: "c" + id64[1:], Name: "frozen", Image: "x", Running: true},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("List = %+v\nwant %+v", got, want)
	}
	if v := <-f.versions; v != "/v1.41" {
		t.Errorf("request used %q, want the negotiated /v1.41", v)
	}
}

func TestInspectTranslatesConfigAndState(t *testing.T) {
	f, c := fakeClient(t)
	f.mux.HandleFunc("GET /containers/{id}/json", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{
			"Id": r.PathValue("id"), "Name": "/web", "Image": "sha256:deadbeef", "Created": "2026-11-28T12:00:03.123456789Z",
			"Config": map[string]any{"Tty": true, "Image": "nginx:1.27", "Labels": map[string]string{"x": "y"}},
			"State":  map[string]any{"Running": true, "Status": "running"},
		})
	})
	got, err := c.Inspect(context.Background(), id64)
	if err != nil {
		t.Fatal(err)
	}
	want := capture.Container{ID: id64, Name: "web", Image: "nginx:1.27", Labels: map[string]string{"x": "y"}, TTY: true, Running: true,
		Created: time.Date(2026, 11, 28, 12, 0, 3, 123456789, time.UTC)}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Inspect = %+v, want %+v", got, want)
	}
}

func TestInspectTakesAPausedContainerForRunning(t *testing.T) {
	f, c := fakeClient(t)
	// Podman's compatible API says Running false for a paused container
	// (Docker says true): its process and follow stream live on all the same.
	f.mux.HandleFunc("GET /containers/{id}/json", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"Id": r.PathValue("id"), "Name": "/web",
			"State": map[string]any{"Running": false, "Paused": true, "Status": "paused"}})
	})
	got, err := c.Inspect(context.Background(), id64)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Running {
		t.Errorf("Inspect of a paused container = %+v, want Running", got)
	}
}

func TestLogsSendsSinceWithNineDigitsTailFollowStreamsAndTimestamps(t *testing.T) {
	for _, tc := range []struct {
		req  capture.LogsRequest
		want url.Values
	}{
		{capture.LogsRequest{Stdout: true, Follow: true, Since: 1_700_000_000_000_000_001, Tail: 64},
			url.Values{"stdout": {"1"}, "follow": {"1"}, "since": {"1700000000.000000001"}, "tail": {"64"}, "timestamps": {"1"}}},
		{capture.LogsRequest{Stderr: true, Since: 1_700_000_000_000_000_000, Tail: 0},
			url.Values{"stderr": {"1"}, "since": {"1700000000.000000000"}, "tail": {"0"}, "timestamps": {"1"}}},
		// No since, all entries: neither parameter is sent.
		{capture.LogsRequest{Stdout: true, Stderr: true, Tail: -1},
			url.Values{"stdout": {"1"}, "stderr": {"1"}, "timestamps": {"1"}}},
	} {
		f, c := fakeClient(t)
		const body = "\x01\x00\x00\x00\x00\x00\x00\x03hi\n"
		f.mux.HandleFunc("GET /containers/{id}/logs", func(w http.ResponseWriter, r *http.Request) {
			if r.PathValue("id") != id64 {
				t.Errorf("path %q", r.URL.Path)
			}
			if got := r.URL.Query(); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("%+v: query %v, want %v", tc.req, got, tc.want)
			}
			_, _ = io.WriteString(w, body)
		})
		rc, err := c.Logs(context.Background(), id64, tc.req)
		if err != nil {
			t.Fatalf("%+v: %v", tc.req, err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || string(b) != body {
			t.Errorf("%+v: body %q, %v; want %q", tc.req, b, err, body)
		}
	}
}

func TestErrorsAreClassifiedAndNameTheContainer(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		// nil: none of the capture sentinels
		wantLogs, wantInspect error
	}{
		{"404", http.StatusNotFound, capture.ErrNotFound, capture.ErrNotFound},
		{"501", http.StatusNotImplemented, capture.ErrLogsUnreadable, capture.ErrLogsUnreadable},
		{"500", http.StatusInternalServerError, ErrUnavailable, ErrUnavailable},
		{"503", http.StatusServiceUnavailable, ErrUnavailable, ErrUnavailable},
		{"400", http.StatusBadRequest, nil, nil},
		// The daemon's answer to logs of a container that is dead or
		// being removed: it is gone for the reader. Inspect never gets a
		// 409, so one there stays unclassified.
		{"409", http.StatusConflict, capture.ErrNotFound, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, c := fakeClient(t)
			f.mux.Handle("GET /containers/{id}/logs", daemonError(tc.status, "from the fake"))
			f.mux.Handle("GET /containers/{id}/json", daemonError(tc.status, "from the fake"))
			_, errLogs := c.Logs(context.Background(), id64, capture.LogsRequest{Stdout: true, Tail: -1})
			_, errInspect := c.Inspect(context.Background(), id64)
			for i, err := range []error{errLogs, errInspect} {
				if err == nil {
					t.Fatal("no error")
				}
				want := []error{tc.wantLogs, tc.wantInspect}[i]
				for _, s := range []error{capture.ErrNotFound, capture.ErrLogsUnreadable, ErrUnavailable} {
					if errors.Is(err, s) != (s == want) {
						t.Errorf("errors.Is(%q, %v) = %v", err, s, !(s == want))
					}
				}
				if !strings.Contains(err.Error(), id64) || !strings.Contains(err.Error(), "from the fake") {
					t.Errorf("error %q should name the container and keep the daemon's message", err)
				}
			}
			if tc.status == http.StatusNotFound && !cerrdefs.IsNotFound(errInspect) {
				t.Errorf("%q lost the SDK's classification", errInspect)
			}
		})
	}
}

func TestUnreachableDaemonIsUnavailable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "tcp://" + l.Addr().String()
	l.Close()
	noSocket := "unix://" + filepath.Join(t.TempDir(), "none.sock")
	for _, host := range []string{refused, noSocket} {
		c := newClient(t, host)
		if _, err := c.List(context.Background()); !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s: List error %v, want ErrUnavailable", host, err)
		}
		if _, err := c.Inspect(context.Background(), id64); !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s: Inspect error %v, want ErrUnavailable", host, err)
		}
		_, errc := c.Events(context.Background())
		if err := <-errc; !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s: Events error %v, want ErrUnavailable", host, err)
		}
	}
}

func TestCancelledRequestIsNotClassified(t *testing.T) {
	f, c := fakeClient(t)
	f.mux.HandleFunc("GET /containers/{id}/json", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.Inspect(ctx, id64)
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnavailable) {
		t.Errorf("Inspect on a cancelled ctx = %v, want context.Canceled only", err)
	}
}

func TestNewRejectsInvalidHostNamingIt(t *testing.T) {
	for _, host := range []string{"ftp://x", "unix://", "tcp://", "no-scheme", "tcp://a:b:c"} {
		if _, err := New(host, nil); err == nil || !strings.Contains(err.Error(), host) {
			t.Errorf("New(%q) = %v, want an error naming the host", host, err)
		}
	}
}

func TestNewRefusesTLSVerifyWithoutCertPath(t *testing.T) {
	t.Setenv("DOCKER_CERT_PATH", "")
	t.Setenv("DOCKER_TLS_VERIFY", "1")
	if _, err := New("tcp://127.0.0.1:2376", nil); err == nil {
		t.Error("New accepted DOCKER_TLS_VERIFY without certificates")
	}
}

func TestNewUsesDockerHostWhenHostIsEmpty(t *testing.T) {
	f, srv := newFake(t)
	f.mux.HandleFunc("GET /containers/json", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, []any{}) })
	t.Setenv("DOCKER_HOST", "tcp://"+srv.Listener.Addr().String())
	c := newClient(t, "")
	if _, err := c.List(context.Background()); err != nil {
		t.Errorf("List through DOCKER_HOST: %v", err)
	}
}

func TestNewServesAUnixSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "dk") // short: socket paths are limited to ~100 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	l, err := net.Listen("unix", filepath.Join(dir, "d.sock"))
	if err != nil {
		t.Fatal(err)
	}
	f, _ := newFake(t) // reuse its handler on our listener
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", "1.41")
		if r.URL.Path == "/_ping" {
			_, _ = io.WriteString(w, "OK")
			return
		}
		r.URL.Path = versionPrefix.ReplaceAllString(r.URL.Path, "")
		f.mux.ServeHTTP(w, r)
	}))
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	f.mux.HandleFunc("GET /containers/json", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, []any{}) })
	c := newClient(t, "unix://"+l.Addr().String())
	if _, err := c.List(context.Background()); err != nil {
		t.Errorf("List over unix socket: %v", err)
	}
}

// eventsHandler checks the filters, sends msgs, then holds the stream open
// until the client goes (hold) or ends it (EOF). closed is closed when the
// handler returns.
func eventsHandler(t *testing.T, msgs []map[string]any, hold bool, closed chan struct{}) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		defer close(closed)
		var filters map[string]map[string]bool
		if err := json.Unmarshal([]byte(r.URL.Query().Get("filters")), &filters); err != nil {
			t.Errorf("filters %q: %v", r.URL.Query().Get("filters"), err)
		}
		// Only what Docker and Podman both apply: Podman's event filters
		// name some actions otherwise (see podmanEventsHandler).
		want := map[string]map[string]bool{"type": {"container": true}}
		if fmt.Sprint(filters) != fmt.Sprint(want) {
			t.Errorf("filters %v, want %v", filters, want)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(200)
		enc := json.NewEncoder(w)
		for _, m := range msgs {
			_ = enc.Encode(m)
		}
		w.(http.Flusher).Flush()
		if hold {
			<-r.Context().Done()
		}
	}
}

func msg(action, name string, nano int64) map[string]any {
	return map[string]any{"Type": "container", "Action": action, "time": nano / 1e9, "timeNano": nano,
		"Actor": map[string]any{"ID": id64, "Attributes": map[string]string{"name": name, "image": "x", "team": "web"}}}
}

func TestEventsTranslatesAndEndsWithNilWhenCtxIsCancelled(t *testing.T) {
	f, c := fakeClient(t)
	closed := make(chan struct{})
	f.mux.Handle("GET /events", eventsHandler(t, []map[string]any{
		msg("start", "web", 1_700_000_000_123_456_789),
		msg("exec_start: sh", "web", 1_700_000_001_000_000_000), // not ours: dropped
		msg("rename", "/new", 1_700_000_002_000_000_000),
		msg("pause", "new", 1_700_000_003_000_000_000),
		msg("unpause", "new", 1_700_000_004_000_000_000),
	}, true, closed))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	evc, errc := c.Events(ctx)
	want := []capture.Event{
		// The start's labels are among its attributes: a container gone
		// before its inspect is filtered with them.
		{Action: capture.ActionStart, ID: id64, Name: "web", Image: "x", Labels: map[string]string{"team": "web"},
			Time: time.Unix(0, 1_700_000_000_123_456_789).UTC()},
		{Action: capture.ActionRename, ID: id64, Name: "new", Image: "x", Time: time.Unix(1_700_000_002, 0).UTC()},
		{Action: capture.ActionPause, ID: id64, Name: "new", Image: "x", Time: time.Unix(1_700_000_003, 0).UTC()},
		{Action: capture.ActionUnpause, ID: id64, Name: "new", Image: "x", Time: time.Unix(1_700_000_004, 0).UTC()},
	}
	for i, w := range want {
		if got := <-evc; !reflect.DeepEqual(got, w) {
			t.Errorf("event %d = %+v, want %+v", i, got, w)
		}
	}
	cancel()
	for ev := range evc {
		t.Errorf("unexpected event %+v", ev)
	}
	if err := <-errc; err != nil {
		t.Errorf("error after cancel = %v, want nil", err)
	}
	<-closed // the request was cancelled: the daemon sees the client go
	waitGoroutinesGone(t, "docker.(*Client).Events", "client.(*Client).Events")
}

func TestEventsStreamEndIsUnavailable(t *testing.T) {
	f, c := fakeClient(t)
	f.mux.Handle("GET /events", eventsHandler(t, []map[string]any{msg("start", "web", 1)}, false, make(chan struct{})))
	evc, errc := c.Events(context.Background())
	var n int
	for range evc {
		n++
	}
	if err := <-errc; n != 1 || !errors.Is(err, ErrUnavailable) {
		t.Errorf("got %d events then %v, want 1 then ErrUnavailable", n, err)
	}
	waitGoroutinesGone(t, "docker.(*Client).Events", "client.(*Client).Events")
}

// podmanEventsHandler answers an events subscription as Podman 4.3 does: its
// event filter matches an action by Podman's own name for it (a "die" is
// "died", a destroy is "remove"), so filters "die" and "destroy" match
// nothing; and a destroy comes as Action "remove". It sends a container's
// start, die and destroy, then holds the stream until the client goes;
// capture takes start and destroy.
func podmanEventsHandler(w http.ResponseWriter, r *http.Request) {
	var filters map[string]map[string]bool
	_ = json.Unmarshal([]byte(r.URL.Query().Get("filters")), &filters)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(200)
	enc := json.NewEncoder(w)
	for _, e := range []struct{ action, filterName string }{
		{"start", "start"}, {"die", "died"}, {"remove", "remove"},
	} {
		if ev := filters["event"]; len(ev) > 0 && !ev[e.filterName] {
			continue
		}
		_ = enc.Encode(msg(e.action, "web", 1_700_000_000_000_000_000))
	}
	w.(http.Flusher).Flush()
	<-r.Context().Done()
}

func TestEventsOfPodmanGiveStartDieAndDestroy(t *testing.T) {
	f, c := fakeClient(t)
	f.mux.HandleFunc("GET /events", podmanEventsHandler)
	// Bounded: events a filter drops never come.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	evc, errc := c.Events(ctx)
	var got []capture.EventAction
	for ev := range evc {
		if got = append(got, ev.Action); len(got) == 3 {
			break
		}
	}
	if want := []capture.EventAction{capture.ActionStart, capture.ActionDie, capture.ActionDestroy}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("actions %v, want %v", got, want)
	}
	cancel()
	for ev := range evc {
		t.Errorf("unexpected event %+v", ev)
	}
	if err := <-errc; err != nil {
		t.Errorf("error after cancel = %v, want nil", err)
	}
}

// waitGoroutinesGone fails if goroutines running any of funcs remain. There
// is no event for a goroutine's end, so it looks again for a few seconds.
func waitGoroutinesGone(t *testing.T, funcs ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		var left []string
		for _, fn := range funcs {
			if strings.Contains(stacks, fn) {
				left = append(left, fn)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines still running %v:\n%s", left, stacks)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// versionedDaemon serves /_ping with API version api and refuses every
// versioned request outside minAPI..api as dockerd does (400, "client
// version ... is too old" or "too new"); /containers/json answers an empty
// list.
func versionedDaemon(t *testing.T, api, minAPI string) *Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", api)
		if r.URL.Path == "/_ping" {
			_, _ = io.WriteString(w, "OK")
			return
		}
		v := strings.TrimPrefix(versionPrefix.FindString(r.URL.Path), "/v")
		if v != "" && versionLess(v, minAPI) {
			writeJSON(w, http.StatusBadRequest, map[string]string{"message": fmt.Sprintf(
				"client version %s is too old. Minimum supported API version is %s, please upgrade your client to a newer version", v, minAPI)})
			return
		}
		if v != "" && versionLess(api, v) {
			writeJSON(w, http.StatusBadRequest, map[string]string{"message": fmt.Sprintf(
				"client version %s is too new. Maximum supported API version is %s", v, api)})
			return
		}
		switch strings.TrimPrefix(r.URL.Path, "/v"+v) {
		case "/version":
			writeJSON(w, http.StatusOK, map[string]any{"Version": "99.0.0", "ApiVersion": api, "MinAPIVersion": minAPI})
		case "/containers/json":
			writeJSON(w, http.StatusOK, []any{})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return newClient(t, "tcp://"+srv.Listener.Addr().String())
}

// versionLess compares "1.x" API versions.
func versionLess(a, b string) bool {
	var am, an, bm, bn int
	_, _ = fmt.Sscanf(a, "%d.%d", &am, &an)
	_, _ = fmt.Sscanf(b, "%d.%d", &bm, &bn)
	return am < bm || am == bm && an < bn
}

func TestListOfADaemonWithNoAPIVersionInCommonIsIncompatible(t *testing.T) {
	for _, tc := range []struct{ name, api, minAPI string }{
		// A future daemon whose minimum is above the newest the client speaks.
		{"minimum above the client", "1.60", "1.58"},
		// A daemon older than the client's floor, API 1.40.
		{"older than 1.40", "1.39", "1.12"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := versionedDaemon(t, tc.api, tc.minAPI)
			for i := range 2 { // a second call gets the same answer
				_, err := c.List(context.Background())
				if !errors.Is(err, capture.ErrIncompatible) || !strings.Contains(err.Error(), tc.api) {
					t.Errorf("List %d: %v, want ErrIncompatible naming the daemon's API %s", i, err, tc.api)
				}
			}
		})
	}
}

func TestListOfADaemonWithARaisedMinimumItAcceptsWorks(t *testing.T) {
	c := versionedDaemon(t, "1.56", "1.56")
	if _, err := c.List(context.Background()); err != nil {
		t.Errorf("List: %v", err)
	}
}
