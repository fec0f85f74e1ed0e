package conf_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/dockerlogs/fluent-bit-docker-logs/conf"
)

// readmeKeyRow is one row of the README's table of keys.
type readmeKeyRow struct{ name, def, meaning string }

// readmeKeyRows reads the table of the README's Configuration section.
func readmeKeyRows(t *testing.T) []readmeKeyRow {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Configuration\n")
	if !ok {
		t.Fatal("README has no Configuration section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var rows []readmeKeyRow
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.SplitN(strings.TrimSuffix(strings.TrimPrefix(line, "| "), " |"), " | ", 3)
		if len(cells) != 3 {
			t.Fatalf("README row without three cells: %s", line)
		}
		rows = append(rows, readmeKeyRow{strings.Trim(cells[0], "`"), cells[1], cells[2]})
	}
	return rows
}

// oneCodeSpan is a default cell that reads as a value, e.g. `on`.
var oneCodeSpan = regexp.MustCompile("^`[^`]*`$")

// TestReadmeTableIsKeys: the README documents exactly the keys Parse walks,
// in their order, each with the default Parse uses and a meaning that starts
// with the key's help.
func TestReadmeTableIsKeys(t *testing.T) {
	rows := readmeKeyRows(t)
	for i := 0; i < max(len(rows), len(conf.Keys)); i++ {
		if i >= len(rows) {
			t.Errorf("conf.Keys has %s, which the README's table does not", conf.Keys[i].Name)
			continue
		}
		row := rows[i]
		if i >= len(conf.Keys) {
			t.Errorf("the README's table has %s, which conf.Keys does not", row.name)
			continue
		}
		k := conf.Keys[i]
		if row.name != k.Name {
			t.Errorf("row %d of the README's table is %s, conf.Keys has %s there", i+1, row.name, k.Name)
			continue
		}
		switch {
		case k.Default != "" && row.def != "`"+k.Default+"`":
			t.Errorf("%s: the README's default is %s, conf.Keys has `%s`", k.Name, row.def, k.Default)
		case k.Default == "" && (row.def == "" || oneCodeSpan.MatchString(row.def)):
			t.Errorf("%s: the README's default is %q, but conf.Keys has none: say what unset means", k.Name, row.def)
		}
		if !strings.HasPrefix(row.meaning, k.Help) {
			t.Errorf("%s: the README's meaning does not start with the key's help %q:\n%s", k.Name, k.Help, row.meaning)
		}
	}
}
