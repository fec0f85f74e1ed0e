package testhost

import "testing"

func TestParseLineReadsEachLineOfTheProtocol(t *testing.T) {
	for _, tc := range []struct {
		line string
		want Line
	}{
		{"init ok", Line{Kind: LineInitOK, Goroutines: -1}},
		{"init failed", Line{Kind: LineInitFailed, Goroutines: -1}},
		{"goroutines baseline=7", Line{Kind: LineBaseline, Goroutines: 7}},
		{"goroutines now=12", Line{Kind: LineGoroutines, Goroutines: 12}},
		{"collect bytes=4096", Line{Kind: LineCollect, Bytes: 4096, Instance: 1, Goroutines: -1}},
		{"collect bytes=10 goroutines=30", Line{Kind: LineCollect, Bytes: 10, Instance: 1, Goroutines: 30}},
		{"out bytes=4096", Line{Kind: LineOut, Bytes: 4096, Instance: 1, Goroutines: -1}},
		{"out bytes=", Line{Goroutines: -1}},
		{"collect instance=2 bytes=512", Line{Kind: LineCollect, Bytes: 512, Instance: 2, Goroutines: -1}},
		{"collect instance=1 empty", Line{Kind: LineCollect, Instance: 1, Goroutines: -1}},
		{"collect instance=x bytes=5", Line{Goroutines: -1}},
		{"collect instance=2 bytes=", Line{Goroutines: -1}},
		{"collect instance=2", Line{Goroutines: -1}},
		{"ok pause", Line{Kind: LineOK, Command: "pause", Goroutines: -1}},
		{"exit took_ms=3 goroutines=5 at_return=6 settle_ms=0", Line{Kind: LineExit, Goroutines: -1}},
		{"collect bytes=", Line{Goroutines: -1}},
		{"collect bytes=x", Line{Goroutines: -1}},
		{"goroutines now=many", Line{Goroutines: -1}},
		{"[2026/12/02 06:00:00] [ info] [input:docker_logs] started", Line{Goroutines: -1}},
	} {
		if got := ParseLine(tc.line); got != tc.want {
			t.Errorf("ParseLine(%q) = %+v, want %+v", tc.line, got, tc.want)
		}
	}
}
