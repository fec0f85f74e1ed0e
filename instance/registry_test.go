package instance

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/dockerlogs/fluent-bit-docker-logs/conf"
)

func TestConflictNamesWhatTwoInstancesWouldShare(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "real"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "real"), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "real", "p.db")
	running := conf.Config{DB: db, MetricsListen: "127.0.0.1:2021"}
	for _, tc := range []struct {
		name       string
		cfg        conf.Config
		db, listen bool
	}{
		{"nothing shared", conf.Config{DB: filepath.Join(dir, "q.db"), MetricsListen: "127.0.0.1:2022"}, false, false},
		{"no DB, no metrics", conf.Config{}, false, false},
		{"same DB", conf.Config{DB: db}, true, false},
		{"same DB through dot-dot", conf.Config{DB: filepath.Join(dir, "real", "..", "real", "p.db")}, true, false},
		{"same DB through a link", conf.Config{DB: filepath.Join(dir, "link", "p.db")}, true, false},
		{"same address", conf.Config{MetricsListen: "127.0.0.1:2021"}, false, true},
		{"same port on every interface", conf.Config{MetricsListen: ":2021"}, false, true},
		{"same port on another address", conf.Config{MetricsListen: "127.0.0.2:2021"}, false, false},
		{"both", conf.Config{DB: db, MetricsListen: "0.0.0.0:2021"}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := conflict(tc.cfg, 1, running)
			if got := errors.Is(err, errSharedDB); got != tc.db {
				t.Errorf("shared DB: %v, want %v (err %v)", got, tc.db, err)
			}
			if got := errors.Is(err, errSharedMetricsListen); got != tc.listen {
				t.Errorf("shared metrics port: %v, want %v (err %v)", got, tc.listen, err)
			}
		})
	}
}

func TestAnyPortNeverConflicts(t *testing.T) {
	if err := conflict(conf.Config{MetricsListen: "127.0.0.1:0"}, 1, conf.Config{MetricsListen: "127.0.0.1:0"}); err != nil {
		t.Errorf("port 0 twice: %v", err)
	}
}

// Pause, resume and exit reach the instance of the calling thread; from a
// thread of none, every instance.
func TestOnThreadFindsTheCallersInstanceElseEvery(t *testing.T) {
	one, two := &Instance{id: 1}, &Instance{id: 2}
	r := NewRegistry(NewLogger)
	r.byID = map[ID]*Instance{1: one, 2: two}
	r.byThread = map[uint64]*Instance{100: one, 200: two}
	if got := r.onThread(200); len(got) != 1 || got[0] != two {
		t.Errorf("thread 200: %v, want instance 2", got)
	}
	if got := r.onThread(300); len(got) != 2 {
		t.Errorf("unknown thread: %d instances, want both", len(got))
	}
	if got := r.Only(); got != nil {
		t.Errorf("Only() with two instances: %v, want nil", got)
	}
}

// A host that inits several instances on one thread (Fluent Bit does not)
// gets that thread's pause, resume and exit applied to every instance.
func TestInitsOnOneThreadMakeItsCallsReachEveryInstance(t *testing.T) {
	r := NewRegistry(NewLogger)
	get := func(key string) string {
		if key == conf.KeyDockerHost {
			return "unix:///nonexistent/docker.sock"
		}
		return ""
	}
	for range 2 {
		if _, err := r.Init(Host{CallsCtx: true, Thread: 7}, get); err != nil {
			t.Fatalf("init: %v", err)
		}
	}
	if got := r.onThread(7); len(got) != 2 {
		t.Errorf("thread 7 reaches %d instances, want both", len(got))
	}
	r.Exit(7)
	if len(r.byID) != 0 || len(r.byThread) != 0 {
		t.Errorf("after exit: %d instances, %d threads left", len(r.byID), len(r.byThread))
	}
}
