package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// goalRow is one goal of the issue and how the run did against it.
type goalRow struct {
	Suite string `json:"suite"`
	ID    string `json:"id"`
	What  string `json:"what"`
	Value string `json:"value"`
	Goal  string `json:"goal"`
	// Met is nil when the goal could not be measured in this run.
	Met *bool `json:"met"`
}

type section struct {
	Suite  string     `json:"suite"`
	Title  string     `json:"title"`
	Header []string   `json:"header"`
	Rows   [][]string `json:"rows"`
	Notes  []string   `json:"notes,omitempty"`
}

// report collects everything a run prints and writes.
type report struct {
	mu       sync.Mutex
	dir      string
	name     string            // results or soak
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
	return &report{dir: dir, name: name, Machine: machine, Started: time.Now(),
		Command: strings.Join(os.Args, " "), Raw: map[string]any{}}
}

func (r *report) goal(id, what, value, goal string, met *bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Goals = append(r.Goals, goalRow{Suite: r.suite, ID: id, What: what, Value: value, Goal: goal, Met: met})
}

func (r *report) section(s section) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s.Suite = r.suite
	r.Sections = append(r.Sections, s)
}

// upsert adds s, or replaces the section of the same suite and title.
func (r *report) upsert(s section) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s.Suite = r.suite
	for i := range r.Sections {
		if r.Sections[i].Suite == s.Suite && r.Sections[i].Title == s.Title {
			r.Sections[i] = s
			return
		}
	}
	r.Sections = append(r.Sections, s)
}

// setSuite tags what follows with a suite's name.
func (r *report) setSuite(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.suite = name
}

// load takes an earlier run's <name>.json, dropping what the suites about
// to run will measure again, so one results file holds every suite.
func (r *report) load(rerun map[string]bool) error {
	b, err := os.ReadFile(filepath.Join(r.dir, r.name+".json"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	var old report
	if err := json.Unmarshal(b, &old); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, g := range old.Goals {
		if !rerun[g.Suite] {
			r.Goals = append(r.Goals, g)
		}
	}
	for _, s := range old.Sections {
		if !rerun[s.Suite] {
			r.Sections = append(r.Sections, s)
		}
	}
	for k, v := range old.Raw {
		if !rerun[k] && !rerun[strings.SplitN(k, "_", 2)[0]] {
			r.Raw[k] = v
		}
	}
	for _, n := range old.Notes {
		if !strings.HasPrefix(n, "suite ") || !rerun[strings.Fields(n)[1]] {
			r.Notes = append(r.Notes, n)
		}
	}
	for k, v := range old.Machine {
		if _, ok := r.Machine[k]; !ok || k == "load average at start" {
			r.Machine[k] = v
		}
	}
	r.Started = old.Started
	r.Command = old.Command + " ; then " + r.Command
	return nil
}

func (r *report) raw(key string, v any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Raw[key] = v
}

func (r *report) note(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

func boolp(b bool) *bool { return &b }

// write saves <name>.json and <name>.md; called after every suite so a
// failure later keeps what was measured.
func (r *report) write() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Finished = time.Now()
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(r.dir, r.name+".json"), b, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(r.dir, r.name+".md"), []byte(r.markdown()), 0o644)
}

func (r *report) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# docker_logs %s\n\n", r.name)
	keys := make([]string, 0, len(r.Machine))
	for k := range r.Machine {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintf(&b, "- date: %s (%s)\n", r.Started.UTC().Format(time.RFC3339), r.Finished.Sub(r.Started).Round(time.Second))
	for _, k := range keys {
		fmt.Fprintf(&b, "- %s: %s\n", k, r.Machine[k])
	}
	fmt.Fprintf(&b, "- command: `%s`\n\n", r.Command)
	if len(r.Goals) > 0 {
		b.WriteString(table(goalsTable(r.Goals)))
		b.WriteString("\n")
	}
	for _, s := range r.Sections {
		fmt.Fprintf(&b, "## %s\n\n", s.Title)
		b.WriteString(table(s))
		for _, n := range s.Notes {
			fmt.Fprintf(&b, "\n- %s", n)
		}
		b.WriteString("\n\n")
	}
	if len(r.Notes) > 0 {
		b.WriteString("## Notes\n\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	return b.String()
}

func goalsTable(goals []goalRow) section {
	s := section{Title: "Goals", Header: []string{"#", "measure", "value", "goal", "met"}}
	for _, g := range goals {
		met := "not measured"
		if g.Met != nil {
			met = map[bool]string{true: "yes", false: "**NO**"}[*g.Met]
		}
		s.Rows = append(s.Rows, []string{g.ID, g.What, g.Value, g.Goal, met})
	}
	return s
}

// table renders a markdown table.
func table(s section) string {
	var b strings.Builder
	b.WriteString("| " + strings.Join(s.Header, " | ") + " |\n|")
	for range s.Header {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, row := range s.Rows {
		b.WriteString("| " + strings.Join(row, " | ") + " |\n")
	}
	return b.String()
}

// text renders a table for the terminal, columns aligned.
func text(s section) string {
	w := make([]int, len(s.Header))
	for i, h := range s.Header {
		w[i] = len(h)
	}
	for _, row := range s.Rows {
		for i, c := range row {
			if i < len(w) {
				w[i] = max(w[i], len(c))
			}
		}
	}
	var b strings.Builder
	line := func(cells []string) {
		for i, c := range cells {
			if i < len(w) {
				fmt.Fprintf(&b, "%-*s  ", w[i], c)
			}
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "== %s\n", s.Title)
	line(s.Header)
	for _, row := range s.Rows {
		line(row)
	}
	for _, n := range s.Notes {
		fmt.Fprintf(&b, "  - %s\n", n)
	}
	return b.String()
}

// printAll prints the goals and every section.
func (r *report) printAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Println()
	for _, s := range r.Sections {
		fmt.Print(text(s))
		fmt.Println()
	}
	if len(r.Goals) > 0 {
		fmt.Print(text(goalsTable(r.Goals)))
	}
	for _, n := range r.Notes {
		fmt.Printf("note: %s\n", n)
	}
}
