package testhost

import (
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/dockerlogs/fluent-bit-docker-logs/internal/dockertest"
	"github.com/dockerlogs/fluent-bit-docker-logs/internal/records"
)

// A crash of Fluent Bit (SIGKILL of the host) with DB set repeats lines,
// never loses them, with both storage types: with memory the host's output
// writes appended buffers a few seconds late and a kill loses those, so the
// DB trails the commits by DB_Margin; with filesystem an appended buffer
// survives the kill and the DB may hold exact positions (DB_Margin 0).
func TestCrashRepeatsButLosesNoLine(t *testing.T) {
	for _, tc := range []struct {
		storage string
		// flushMS is the host output's interval; margin the plugin's
		// DB_Margin ("" keeps the default, 5s).
		flushMS string
		margin  string
	}{
		{storage: "memory", flushMS: "3000"},
		{storage: "filesystem", flushMS: "1000", margin: "0"},
	} {
		t.Run(tc.storage, func(t *testing.T) {
			dockertest.LoggenImage(t)
			labels := caseLabels(t)
			const lines = 4000 // about 20 s
			props := hostProps()
			props["Include_Labels"] += "," + labelCase + "=" + labels[labelCase]
			props["DB"] = filepath.Join(t.TempDir(), "positions.db")
			props["storage.type"] = tc.storage
			if tc.margin != "" {
				props["DB_Margin"] = tc.margin
			}
			args := []string{"-F", tc.flushMS}

			// The host first: the container must still write when it is
			// killed.
			first := StartArgs(t, props, args...)
			id := dockertest.Run(t, dockertest.RunOptions{
				Args:   []string{"-lines", strconv.Itoa(lines), "-interval", "5ms", "-stream", "both", "-hold"},
				Labels: labels,
			})
			first.WaitRecords(t, func(r []records.Record) bool { return countByContainer(r, id) >= 500 }, 2*time.Minute)
			// Killed two collects after the output's next write: with memory
			// storage those two batches wait in the host, and a DB written
			// at once would hold their commits by then.
			from := first.lineCount()
			_, ok := first.await(from, commandTimeout, func(l string) bool { return ParseLine(l).Kind == LineOut })
			from = first.lineCount()
			for i := 0; ok && i < 2; i++ {
				_, ok = first.await(from, commandTimeout, isCollect)
				from = first.lineCount()
			}
			if !ok {
				t.Fatalf("the host did not collect twice")
			}
			first.Kill()
			before := first.Records(t)

			second := StartArgs(t, props, args...)
			dockertest.WaitForLog(t, id, fmt.Sprintf("seq=%d ", lines), 2*time.Minute)
			after := second.WaitRecords(t, func(r []records.Record) bool {
				return countByContainer(r, id)+countByContainer(before, id) >= lines &&
					covers(append(before[:len(before):len(before)], r...), id, lines)
			}, 2*time.Minute)
			second.Exit()

			got := map[string]int{}
			for _, r := range append(before, after...) {
				if r.ContainerID == id {
					got[r.Log]++
				}
			}
			var lost []string
			repeated := 0
			for seq := 1; seq <= lines; seq++ {
				stream := "stdout"
				if seq%2 == 0 {
					stream = "stderr"
				}
				l := fmt.Sprintf("seq=%d stream=%s", seq, stream)
				switch n := got[l]; {
				case n == 0:
					lost = append(lost, l)
				case n > 1:
					repeated += n - 1
				}
			}
			t.Logf("%s storage: %d lines delivered before the kill, %d after; %d repeated, %d lost",
				tc.storage, countByContainer(before, id), countByContainer(after, id), repeated, len(lost))
			if len(lost) > 0 {
				t.Errorf("%d lines lost in the crash, first %q", len(lost), lost[0])
			}
			// The second run resumed from positions the DB held: what it
			// repeats is, in each stream, the end of what the first run
			// delivered.
			again := map[string]bool{}
			for _, r := range after {
				again[r.Log] = true
			}
			repeating := map[string]bool{}
			for _, r := range before {
				if r.ContainerID != id {
					continue
				}
				switch {
				case again[r.Log]:
					repeating[r.Stream] = true
				case repeating[r.Stream]:
					t.Errorf("%s %q was not repeated after the crash though lines before it were", r.Stream, r.Log)
				}
			}
		})
	}
}

// covers reports whether recs hold loggen's lines 1..n of container id.
func covers(recs []records.Record, id string, n int) bool {
	seen := make(map[string]bool, n)
	for _, r := range recs {
		if r.ContainerID == id {
			seen[r.Log] = true
		}
	}
	return len(seen) >= n
}
