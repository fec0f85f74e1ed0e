package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// goalRow is one goal of the issue and how the run did against it.
type goalRow struct {
	Suite string `json:"suite"`
	ID    string `json:"id"`
	What  string `json:"what"`
	Value string `json:"value"`
	Goal  string `json:"goal"`
	// Met is nil when the goal is only reported, or could not be measured.
	Met *bool `json:"met"`
}

// section is one table of the results.
type section struct {
	Suite  string     `json:"suite"`
	Title  string     `json:"title"`
	Header []string   `json:"header"`
	Rows   [][]string `json:"rows"`
	Notes  []string   `json:"notes,omitempty"`
}

// report collects everything a run writes: <name>.md and <name>.json.
// Only the run's main goroutine uses it.
type report struct {
	path     string            // without the extension
	suite    string            // the suite running; tags goals and sections
	Machine  map[string]string `json:"machine"`
	Started  time.Time         `json:"started"`
	Finished time.Time         `json:"finished"`
	Command  string            `json:"command"`
	Goals    []goalRow         `json:"goals"`
	Sections []section         `json:"sections"`
	Raw      map[string]any    `json:"raw"`
	Notes    []string          `json:"notes"`
}

func newReport(dir, name string, machine map[string]string) *report {
	return &report{path: filepath.Join(dir, name), Machine: machine, Started: time.Now(),
		Command: strings.Join(os.Args, " "), Raw: map[string]any{}}
}

func (r *report) goal(id, what, value, goal string, met *bool) {
	r.Goals = append(r.Goals, goalRow{Suite: r.suite, ID: id, What: what, Value: value, Goal: goal, Met: met})
}

func (r *report) section(s section)     { s.Suite = r.suite; r.Sections = append(r.Sections, s) }
func (r *report) raw(key string, v any) { r.Raw[key] = v }

func (r *report) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

func boolp(b bool) *bool { return &b }

// write saves <name>.json and <name>.md; called after every suite so a
// failure later keeps what was measured.
func (r *report) write() error {
	r.Finished = time.Now()
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(r.path+".json", b, 0o644); err != nil {
		return err
	}
	return os.WriteFile(r.path+".md", []byte(r.markdown()), 0o644)
}

// markdown is the whole report: the machine, the goals, each section.
func (r *report) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# docker_logs %s\n\n", filepath.Base(r.path))
	fmt.Fprintf(&b, "- date: %s (%s)\n", r.Started.UTC().Format(time.RFC3339), r.Finished.Sub(r.Started).Round(time.Second))
	for _, k := range slices.Sorted(maps.Keys(r.Machine)) {
		fmt.Fprintf(&b, "- %s: %s\n", k, r.Machine[k])
	}
	fmt.Fprintf(&b, "- command: `%s`\n\n", r.Command)
	goals := section{Title: "Goals", Header: []string{"#", "measure", "value", "goal", "met"}}
	for _, g := range r.Goals {
		met := "not measured"
		if g.Met != nil {
			met = map[bool]string{true: "yes", false: "**NO**"}[*g.Met]
		}
		goals.Rows = append(goals.Rows, []string{g.ID, g.What, g.Value, g.Goal, met})
	}
	for _, s := range append([]section{goals}, r.Sections...) {
		fmt.Fprintf(&b, "## %s\n\n| %s |\n|%s\n", s.Title, strings.Join(s.Header, " | "), strings.Repeat("---|", len(s.Header)))
		for _, row := range s.Rows {
			b.WriteString("| " + strings.Join(row, " | ") + " |\n")
		}
		for _, n := range s.Notes {
			fmt.Fprintf(&b, "\n- %s", n)
		}
		b.WriteString("\n\n")
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "- note: %s\n", n)
	}
	return b.String()
}
