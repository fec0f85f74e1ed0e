package testhost

import (
	"strconv"
	"strings"
)

// LineKind is what one stderr line of the host tells (see the head of
// goproxy_testhost.c). The bench's in-process twin speaks the same protocol
// and adds goroutine counts.
type LineKind int

const (
	LineOther      LineKind = iota // a log line of the plugin, or anything informative
	LineInitOK                     // init ok
	LineInitFailed                 // init failed
	LineBaseline                   // goroutines baseline=<n>
	LineGoroutines                 // goroutines now=<n> (the twin, at a collect with nothing)
	LineCollect                    // collect bytes=<n> [goroutines=<g>]; collect instance=<k> bytes=<n>|empty
	LineOut                        // out bytes=<n>: the OUT of one instance holds n more bytes
	LineOK                         // ok <command>
	LineExit                       // exit took_ms=<n> ...
)

// Line is one parsed stderr line.
type Line struct {
	Kind LineKind
	// Bytes is how many bytes a collect appended (several instances: to
	// OUT), or an out line wrote to OUT; 0 for a collect that handed
	// nothing over.
	Bytes int
	// Instance is the instance (from 1) a collect was of: 1 unless the host
	// runs several.
	Instance int
	// Goroutines is the count of a baseline, a goroutines line or a twin's
	// collect; -1 where the line has none.
	Goroutines int
	// Command is the command an ok line answers.
	Command string
}

// ParseLine reads one stderr line of the host; a line that does not parse
// as what its prefix announces is LineOther.
func ParseLine(s string) Line {
	l := Line{Goroutines: -1}
	switch {
	case s == "init ok":
		l.Kind = LineInitOK
	case s == "init failed":
		l.Kind = LineInitFailed
	case strings.HasPrefix(s, "exit took_ms="):
		l.Kind = LineExit
	case strings.HasPrefix(s, "ok "):
		l.Kind, l.Command = LineOK, strings.TrimPrefix(s, "ok ")
	case strings.HasPrefix(s, "goroutines baseline="):
		l.Kind, l.Goroutines = number(LineBaseline, strings.TrimPrefix(s, "goroutines baseline="))
	case strings.HasPrefix(s, "goroutines now="):
		l.Kind, l.Goroutines = number(LineGoroutines, strings.TrimPrefix(s, "goroutines now="))
	case strings.HasPrefix(s, "out bytes="):
		l.Kind, l.Bytes = number(LineOut, strings.TrimPrefix(s, "out bytes="))
		l.Instance = 1
	case strings.HasPrefix(s, "collect instance="):
		k, rest, _ := strings.Cut(strings.TrimPrefix(s, "collect instance="), " ")
		if rest == "empty" {
			rest = "bytes=0"
		}
		if n, ok := strings.CutPrefix(rest, "bytes="); ok {
			l.Kind, l.Bytes = number(LineCollect, n)
			if l.Kind == LineCollect {
				l.Kind, l.Instance = number(LineCollect, k)
			}
		}
	case strings.HasPrefix(s, "collect bytes="):
		f := append(strings.Fields(strings.TrimPrefix(s, "collect bytes=")), "")
		l.Kind, l.Bytes = number(LineCollect, f[0])
		l.Instance = 1
		if len(f) > 2 {
			if g, ok := strings.CutPrefix(f[1], "goroutines="); ok {
				_, l.Goroutines = number(LineCollect, g)
			}
		}
	}
	if l.Kind == LineOther {
		return Line{Goroutines: -1}
	}
	return l
}

// number is kind with v as a number, or LineOther and -1 when v is none.
func number(kind LineKind, v string) (LineKind, int) {
	n, err := strconv.Atoi(v)
	if err != nil {
		return LineOther, -1
	}
	return kind, n
}
