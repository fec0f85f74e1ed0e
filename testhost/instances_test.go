package testhost

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dockerlogs/fluent-bit-docker-logs/internal/dockertest"
	"github.com/dockerlogs/fluent-bit-docker-logs/internal/records"
)

// pair is two instances of the plugin side by side: instance i+1 reads the
// containers whose names start with prefix[i], keeps its positions in
// db[i] and serves its metrics at metrics[i].
type pair struct {
	*Host
	prefix, db, metrics [2]string
}

func twoInstances(t *testing.T) pair {
	t.Helper()
	dir := t.TempDir()
	p := pair{
		prefix:  [2]string{"dl-" + dockertest.RunID() + "-one-", "dl-" + dockertest.RunID() + "-two-"},
		db:      [2]string{filepath.Join(dir, "one.db"), filepath.Join(dir, "two.db")},
		metrics: [2]string{freeAddr(t), freeAddr(t)},
	}
	var props []map[string]string
	for i := range 2 {
		props = append(props, hostProps())
		props[i]["Include_Names"] = "^" + p.prefix[i]
		props[i]["DB"] = p.db[i]
		props[i]["Metrics_Listen"] = p.metrics[i]
	}
	p.Host = StartInstances(t, props)
	if code := p.ExitCode(); code != -1 {
		t.Fatalf("test host exited with code %d at init", code)
	}
	return p
}

// Two inputs are two captures: each gets exactly the lines of its own
// containers, once, and keeps its own positions.
func TestTwoInstancesEachDeliverOnlyTheirOwnContainersOnce(t *testing.T) {
	image := dockertest.LoggenImage(t)
	labels := caseLabels(t)
	h := twoInstances(t)
	prefix := h.prefix

	run := func(name string, args ...string) string {
		return dockertest.Run(t, dockertest.RunOptions{Name: name, Args: args, Labels: labels})
	}
	a1 := run(prefix[0]+"a1", "-lines", "400", "-stream", "both", "-interval", "1ms", "-hold")
	a2 := run(prefix[0]+"a2", "-lines", "300", "-stream", "both", "-hold")
	b1 := run(prefix[1]+"b1", "-lines", "500", "-stream", "both", "-interval", "1ms", "-hold")
	for id, last := range map[string]string{a1: "seq=400 ", a2: "seq=300 ", b1: "seq=500 "} {
		dockertest.WaitForLog(t, id, last, time.Minute)
	}

	want := [2]map[string]containerLog{
		{a1: dockerLogs(t, a1, image), a2: dockerLogs(t, a2, image)},
		{b1: dockerLogs(t, b1, image)},
	}
	for i := range 2 {
		recs := h.WaitInstanceRecords(t, i+1, func(r []records.Record) bool {
			for id, c := range want[i] {
				if countByContainer(r, id) < len(c.lines) {
					return false
				}
			}
			return true
		}, 2*time.Minute)
		// Records of the other instance's containers fail as "not one of
		// this test's"; a line twice as "delivered again".
		checkDelivered(t, recs, want[i])
	}

	info := h.Exit()
	if info.Goroutines != info.Baseline {
		t.Errorf("%d goroutines after exit, %d before the inits", info.Goroutines, info.Baseline)
	}
	if info.TookMS >= 2*2000 {
		t.Errorf("exit of two instances took %d ms, want < 2 s each", info.TookMS)
	}
	// Each DB holds its own containers' positions and no other.
	for i, wantIDs := range [2][]string{{a1, a2}, {b1}} {
		got := dbContainers(t, h.db[i])
		slices.Sort(wantIDs)
		if !slices.Equal(got, wantIDs) {
			t.Errorf("DB of instance %d holds %.12q, want %.12q", i+1, got, wantIDs)
		}
	}
}

// Fluent Bit pauses instance 1 on instance 1's thread but stops the collect
// timer of the last instance (flb_proxy_input_cb_pause): instance 1's
// collects go on and must hand over nothing until it is resumed.
func TestPausedInstanceHandsNothingWhileItsCollectsGoOn(t *testing.T) {
	image := dockertest.LoggenImage(t)
	labels := caseLabels(t)
	h := twoInstances(t)

	const lines = 600
	id := dockertest.Run(t, dockertest.RunOptions{Name: h.prefix[0] + "paused",
		Args: []string{"-lines", "600", "-interval", "10ms", "-hold"}, Labels: labels})
	before := h.WaitInstanceRecords(t, 1, func(r []records.Record) bool { return countByContainer(r, id) >= 20 }, time.Minute)

	h.PauseInstance(1)
	paused := h.lineCount()
	dockertest.WaitForLog(t, id, "seq=600 ", time.Minute)
	// Instance 1's timer still runs in this host, as in Fluent Bit: three
	// of its collects must come, and hand nothing over.
	empty := 0
	if _, ok := h.await(paused, 20*time.Second, func(s string) bool {
		if l := ParseLine(s); l.Kind == LineCollect && l.Instance == 1 && l.Bytes == 0 {
			empty++
		}
		return empty == 3
	}); !ok {
		t.Fatalf("%d collects of instance 1 while paused, want 3 (its timer runs on)", empty)
	}
	for _, s := range h.StderrLines()[paused:] {
		if l := ParseLine(s); l.Kind == LineCollect && l.Instance == 1 && l.Bytes > 0 {
			t.Fatalf("instance 1 handed records over while paused: %q", s)
		}
	}
	if n := len(h.InstanceRecords(t, 1)); n != len(before) {
		t.Fatalf("%d records of instance 1 while paused, had %d at the pause", n, len(before))
	}
	// The pause came on instance 1's thread: only instance 1 is paused.
	for i, want := range [2]float64{1, 0} {
		if got := scrape(t, h.metrics[i])["docker_logs_paused"]; got != want {
			t.Errorf("instance %d: docker_logs_paused = %v, want %v", i+1, got, want)
		}
	}

	h.ResumeInstance(1)
	want := map[string]containerLog{id: dockerLogs(t, id, image)}
	recs := h.WaitInstanceRecords(t, 1, func(r []records.Record) bool { return countByContainer(r, id) >= lines }, time.Minute)
	checkDelivered(t, recs, want)
	if n := len(h.InstanceRecords(t, 2)); n != 0 {
		t.Errorf("instance 2 delivered %d records of instance 1's container", n)
	}
}

// A Fluent Bit older than 4.1 calls no Ctx callbacks: a second input must
// fail its init and say why; Fluent Bit then stops.
func TestSecondInstanceWithoutCtxFailsInitWithAMessage(t *testing.T) {
	dockertest.Require(t)
	h := StartWithoutCtx(t, []map[string]string{hostProps(), hostProps()})
	if code := h.ExitCode(); code != ExitCodeInitFailed {
		t.Fatalf("exit code %d, want %d (init failed)", code, ExitCodeInitFailed)
	}
	lines := h.StderrLines()
	if !slices.Contains(lines, "instance 1 init ok") || !slices.Contains(lines, "instance 2 init failed") {
		t.Fatalf("want instance 1 to start and instance 2 to fail:\n%s", h.Stderr())
	}
	if !strings.Contains(h.Stderr(), "without an instance context") {
		t.Errorf("no log line says why the second instance failed:\n%s", h.Stderr())
	}
}

// In a Fluent Bit older than 4.1 one input works through the callbacks
// without context.
func TestOneInstanceWithoutCtxDelivers(t *testing.T) {
	labels := caseLabels(t)
	h := StartWithoutCtx(t, []map[string]string{hostProps()})
	id := dockertest.Run(t, dockertest.RunOptions{Args: []string{"-lines", "50"}, Labels: labels})
	dockertest.WaitForLog(t, id, "seq=50 ", time.Minute)
	want := map[string]containerLog{id: dockerLogs(t, id, dockertest.LoggenImage(t))}
	recs := h.WaitRecords(t, func(r []records.Record) bool { return countByContainer(r, id) >= 50 }, time.Minute)
	checkDelivered(t, recs, want)
}

// Two inputs sharing a DB file or a metrics port would overwrite each
// other's positions or fail at bind: the second init fails, naming both.
func TestSecondInstanceSharingDBOrMetricsPortFailsInit(t *testing.T) {
	dockertest.Require(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	first := hostProps()
	first["DB"] = filepath.Join(dir, "positions.db")
	first["Metrics_Listen"] = addr
	second := hostProps()
	second["DB"] = filepath.Join(dir, ".", "sub", "..", "positions.db")
	second["Metrics_Listen"] = ":" + addr[strings.LastIndexByte(addr, ':')+1:]
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}

	h := StartInstances(t, []map[string]string{first, second})
	if code := h.ExitCode(); code != ExitCodeInitFailed {
		t.Fatalf("exit code %d, want %d (init failed)", code, ExitCodeInitFailed)
	}
	if !slices.Contains(h.StderrLines(), "instance 2 init failed") {
		t.Fatalf("instance 2 did not fail its init:\n%s", h.Stderr())
	}
	for _, want := range []string{"cannot share a positions file", "cannot share a metrics port"} {
		if !strings.Contains(h.Stderr(), want) {
			t.Errorf("no log line says %q:\n%s", want, h.Stderr())
		}
	}
}

// dbContainers lists the container ids in a DB file, sorted.
func dbContainers(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read DB: %v", err)
	}
	var f struct {
		Containers map[string]json.RawMessage `json:"containers"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("DB %s: %v", path, err)
	}
	ids := make([]string, 0, len(f.Containers))
	for id := range f.Containers {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}
