// Package linecheck compares the lines a test received with the lines it
// expected, per stream, and says where they first differ: the one check
// behind every exactly-once test against the daemon.
package linecheck

import (
	"fmt"
	"strings"
	"testing"
)

// Streams are the two streams a record can come from.
var Streams = []string{"stdout", "stderr"}

// ExactlyOnce fails t unless got holds exactly want: every line once, in
// order per stream, and no stream but stdout and stderr.
func ExactlyOnce(t testing.TB, got, want map[string][]string) {
	t.Helper()
	for s := range got {
		if s != "stdout" && s != "stderr" {
			t.Errorf("%d records of stream %q", len(got[s]), s)
		}
	}
	for _, s := range Streams {
		g, w := got[s], want[s]
		for i := range max(len(g), len(w)) {
			var gl, wl string
			if i < len(g) {
				gl = g[i]
			}
			if i < len(w) {
				wl = w[i]
			}
			if gl != wl {
				t.Errorf("%s: %d records, want %d; first difference at %d: got %s, want %q (lost, repeated or reordered)",
					s, len(g), len(w), i, Around(g, i), Short(wl))
				break
			}
		}
	}
}

// Around shows lines i-2..i+2, marking line i.
func Around(lines []string, i int) string {
	var b strings.Builder
	for j := max(0, i-2); j < min(len(lines), i+3); j++ {
		mark := ""
		if j == i {
			mark = ">"
		}
		fmt.Fprintf(&b, " %s[%d]%q", mark, j, Short(lines[j]))
	}
	if i >= len(lines) {
		b.WriteString(" >[end]")
	}
	return b.String()
}

// Short keeps a long line readable in a failure message.
func Short(s string) string {
	if len(s) > 60 {
		return fmt.Sprintf("%s...(%d bytes)", s[:40], len(s))
	}
	return s
}
