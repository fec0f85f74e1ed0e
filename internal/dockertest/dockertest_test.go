package dockertest

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func lines(s string) []string { return strings.Split(strings.TrimSuffix(s, "\n"), "\n") }

func TestLoggenWritesNumberedLinesInOrder(t *testing.T) {
	id := Run(t, RunOptions{Args: []string{"-lines", "3"}})
	if code := WaitExited(t, id, time.Minute); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	out, errOut := Logs(t, id)
	want := []string{"seq=1 stream=stdout", "seq=2 stream=stdout", "seq=3 stream=stdout"}
	if got := lines(out); fmt.Sprint(got) != fmt.Sprint(want) || !strings.HasSuffix(out, "\n") {
		t.Errorf("stdout = %q, want lines %q", out, want)
	}
	if errOut != "" {
		t.Errorf("stderr = %q, want nothing", errOut)
	}
}

func TestLoggenBothAlternatesStreamsFromStart(t *testing.T) {
	id := Run(t, RunOptions{Args: []string{"-lines", "4", "-stream", "both", "-start", "7"}})
	WaitExited(t, id, time.Minute)
	out, errOut := Logs(t, id)
	if got, want := lines(out), []string{"seq=7 stream=stdout", "seq=9 stream=stdout"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("stdout lines = %q, want %q", got, want)
	}
	if got, want := lines(errOut), []string{"seq=8 stream=stderr", "seq=10 stream=stderr"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("stderr lines = %q, want %q", got, want)
	}
}

func TestLoggenPadsLinesToSize(t *testing.T) {
	id := Run(t, RunOptions{Args: []string{"-lines", "2", "-size", "100"}})
	WaitExited(t, id, time.Minute)
	out, _ := Logs(t, id)
	for i, l := range lines(out) {
		if len(l)+1 != 100 || !strings.HasPrefix(l, fmt.Sprintf("seq=%d stream=stdout xx", i+1)) || strings.Trim(l[len("seq=1 stream=stdout "):], "x") != "" {
			t.Errorf("line %d = %q (%d bytes with newline), want 100 bytes padded with x", i, l, len(l)+1)
		}
	}
}

// The daemon splits the 40000-byte line into 16 KiB pieces; docker logs
// joins them back, and -partial leaves it without its newline.
func TestLoggenLongLineMatchesLongPayloadAndPartialDropsNewline(t *testing.T) {
	id := Run(t, RunOptions{Args: []string{"-lines", "1", "-long", "40000", "-partial"}})
	WaitExited(t, id, time.Minute)
	out, _ := Logs(t, id)
	if want := "seq=1 stream=stdout\n" + LongPayload(40000); out != want {
		t.Errorf("stdout is %d bytes ending %q, want %d bytes ending %q", len(out), tail(out), len(want), tail(want))
	}
}

// Numbered long lines with another fill, written in parts, on both
// streams: LongLine says what loggen writes.
func TestLoggenLongsMatchLongLine(t *testing.T) {
	SkipOnPodman(t, "Stored models how Docker's json-file stores a long line cut into 16 KiB pieces; Podman's k8s-file cuts and stores it otherwise")
	id := Run(t, RunOptions{Args: []string{"-lines", "0", "-long", "40000", "-longs", "2", "-fill", "€", "-stream", "both", "-split", "10ms"}})
	WaitExited(t, id, time.Minute)
	out, errOut := Logs(t, id)
	if want := Stored(LongLine(1, 40000, "€") + "\n"); out != want {
		t.Errorf("stdout is %d bytes ending %q, want %d bytes ending %q", len(out), tail(out), len(want), tail(want))
	}
	if want := Stored(LongLine(2, 40000, "€") + "\n"); errOut != want {
		t.Errorf("stderr is %d bytes ending %q, want %d bytes ending %q", len(errOut), tail(errOut), len(want), tail(want))
	}
}

func tail(s string) string { return s[max(0, len(s)-20):] }

func TestLoggenHoldExitsZeroOnSIGTERM(t *testing.T) {
	for _, args := range [][]string{
		{"-lines", "1", "-hold"},
		{"-lines", "5", "-interval", "1h"}, // signalled while sleeping between lines
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			id := Run(t, RunOptions{Args: args})
			// loggen installs its handler before the first line.
			WaitForLog(t, id, "seq=1 ", time.Minute)
			begin := time.Now()
			// An ignored SIGTERM would take the 30 s timeout and end in
			// SIGKILL (137); an unhandled one dies of the signal (non-zero).
			Docker(t, "stop", "-t", "30", id)
			if d := time.Since(begin); d > 10*time.Second {
				t.Errorf("stop took %v", d)
			}
			if code := Docker(t, "inspect", "-f", "{{.State.ExitCode}}", id); code != "0" {
				t.Errorf("exit code %s, want 0", code)
			}
		})
	}
}

func TestRunAppliesLabelsNetworkAndTTY(t *testing.T) {
	id := Run(t, RunOptions{
		Args:   []string{"-hold"},
		TTY:    true,
		Labels: map[string]string{"app": "x"},
	})
	got := Docker(t, "inspect", "-f",
		`{{index .Config.Labels "`+LabelTest+`"}} {{index .Config.Labels "`+LabelRun+`"}} {{index .Config.Labels "app"}} {{.HostConfig.NetworkMode}} {{.Config.Tty}}`, id)
	if want := "1 " + RunID() + " x none true"; got != want {
		t.Errorf("inspect = %q, want %q", got, want)
	}
}

func TestRunAppliesLogOpts(t *testing.T) {
	SkipOnPodman(t, "its Docker-compatible inspect leaves HostConfig.LogConfig.Config empty")
	id := Run(t, RunOptions{Args: []string{"-hold"}, LogOpts: map[string]string{"max-size": "1m"}})
	if got := Docker(t, "inspect", "-f", `{{index .HostConfig.LogConfig.Config "max-size"}}`, id); got != "1m" {
		t.Errorf("inspect max-size = %q, want 1m", got)
	}
}

func TestWaitExitedReturnsExitCode(t *testing.T) {
	id := Run(t, RunOptions{Args: []string{"-stream", "bogus"}})
	if code := WaitExited(t, id, time.Minute); code != 2 {
		t.Errorf("exit code %d, want 2 for a bad flag", code)
	}
}

// fakeTB records what require asks of the test instead of ending it.
type fakeTB struct {
	testing.TB
	skipped, failed bool
}

func (f *fakeTB) Helper()               {}
func (f *fakeTB) Skipf(string, ...any)  { f.skipped = true }
func (f *fakeTB) Fatalf(string, ...any) { f.failed = true }

func TestRequireFailsInCIAndSkipsElsewhere(t *testing.T) {
	down := fmt.Errorf("%w: no socket", ErrNoDaemon)
	for _, tc := range []struct {
		err        error
		ci         bool
		skip, fail bool
	}{
		{nil, true, false, false},
		{nil, false, false, false},
		{down, true, false, true},
		{down, false, true, false},
	} {
		f := &fakeTB{}
		require(f, tc.err, tc.ci)
		if f.skipped != tc.skip || f.failed != tc.fail {
			t.Errorf("err=%v ci=%v: skipped=%v failed=%v, want %v %v", tc.err, tc.ci, f.skipped, f.failed, tc.skip, tc.fail)
		}
	}
}

func TestProbeFailsWithErrNoDaemonOnBadHost(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix://"+t.TempDir()+"/none.sock")
	if _, err := probe(); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("probe() = %v, want ErrNoDaemon", err)
	}
}

// The daemon's kind decides skips and expected image names, so a Podman
// service must be told from Docker; the matrix names which one it runs.
func TestServerIsPodmanExactlyWhenTheMatrixRunsPodman(t *testing.T) {
	d := Server(t)
	want, named := os.LookupEnv("DOCKERLOGS_DAEMON")
	if !named {
		t.Skip("skipping: DOCKERLOGS_DAEMON is not set (scripts/integration.sh sets it)")
	}
	if d.Podman != (want == "podman") {
		t.Errorf("DOCKERLOGS_DAEMON=%s but the daemon is %s", want, d)
	}
	if d.Version == "" || d.APIVersion == "" {
		t.Errorf("daemon %+v: no version", d)
	}
}
