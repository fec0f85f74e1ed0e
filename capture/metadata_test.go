package capture

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dockerlogs/fluent-bit-docker-logs/internal/records"
)

var composeContainer = Container{
	ID:    strings.Repeat("0123456789abcdef", 4),
	Name:  "shop-web-1",
	Image: "nginx:1.27",
	Labels: map[string]string{
		labelComposeProject: "shop",
		labelComposeService: "web",
		"team":              "payments",
		"tier":              "front",
	},
}

// labelsField returns the record's "labels" map with string values, and
// whether it has one.
func labelsField(t *testing.T, r records.Record) (map[string]string, bool) {
	t.Helper()
	v, ok := r.Fields["labels"]
	if !ok {
		return nil, false
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("labels is %T, want a map", v)
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		s, ok := v.(string)
		if !ok {
			t.Fatalf("label %s is %T, want a msgpack str", k, v)
		}
		out[k] = s
	}
	return out, true
}

func TestRecordMetadataSelectsLabelsAndComposeFields(t *testing.T) {
	base := []string{"container_id", "container_image", "container_name", "log", "stream"}
	compose := []string{"compose_project", "compose_service"}
	for _, tc := range []struct {
		name       string
		md         *Metadata
		c          Container
		wantLabels map[string]string // nil: no labels field
		wantExtra  []string          // fields besides base
	}{
		{"none", nil, composeContainer, nil, nil},
		{"compose fields only", &Metadata{ComposeFields: true}, composeContainer, nil, compose},
		{"every label", &Metadata{Labels: true}, composeContainer, composeContainer.Labels, []string{"labels"}},
		{"every label and compose fields", &Metadata{Labels: true, ComposeFields: true}, composeContainer,
			composeContainer.Labels, append([]string{"labels"}, compose...)},
		{"only the keys asked for, missing ones left out", &Metadata{LabelKeys: []string{"tier", "absent", "tier"}}, composeContainer,
			map[string]string{"tier": "front"}, []string{"labels"}},
		{"no key present: no labels field", &Metadata{LabelKeys: []string{"absent"}}, composeContainer, nil, nil},
		{"container without labels", &Metadata{Labels: true, ComposeFields: true}, encodeContainerNoLabels(), nil, nil},
		{"compose project without service", &Metadata{ComposeFields: true},
			Container{ID: "x", Labels: map[string]string{labelComposeProject: "shop"}}, nil, []string{"compose_project"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fixed := containerFields(tc.c, tc.md)
			for _, truncated := range []bool{false, true} {
				r := decodeOne(t, appendRecord(nil, 1, []byte("hello"), Stdout, truncated, fixed))
				want := append(append([]string(nil), base...), tc.wantExtra...)
				if truncated {
					want = append(want, "log_truncated")
				}
				if got := fieldNames(r); fmt.Sprint(got) != fmt.Sprint(slices.Sorted(slices.Values(want))) {
					t.Errorf("truncated=%v: fields %v, want %v", truncated, got, slices.Sorted(slices.Values(want)))
				}
				labels, ok := labelsField(t, r)
				if ok != (tc.wantLabels != nil) || !maps.Equal(labels, tc.wantLabels) {
					t.Errorf("labels = %v (present %v), want %v", labels, ok, tc.wantLabels)
				}
				if slices.Contains(tc.wantExtra, "compose_project") && r.Fields["compose_project"] != "shop" {
					t.Errorf("compose_project = %v, want shop", r.Fields["compose_project"])
				}
				if slices.Contains(tc.wantExtra, "compose_service") && r.Fields["compose_service"] != "web" {
					t.Errorf("compose_service = %v, want web", r.Fields["compose_service"])
				}
				if r.Log != "hello" || r.ContainerName != tc.c.Name {
					t.Errorf("log %q name %q, want hello %q", r.Log, r.ContainerName, tc.c.Name)
				}
			}
		})
	}
}

func encodeContainerNoLabels() Container {
	c := encodeContainer
	c.Labels = nil
	return c
}

// A header that counts the wrong number of fields would make the decoder
// read the next event as part of this one: events of containers with
// different field counts must decode one after another.
func TestRecordsWithDifferentFieldCountsDecodeInSequence(t *testing.T) {
	many := Container{ID: "m", Name: "many", Image: "i", Labels: map[string]string{}}
	for i := range 40 { // more than a fixmap holds: a map16 header
		many.Labels[fmt.Sprintf("k%02d", i)] = strings.Repeat("v", i)
	}
	containers := []struct {
		c  Container
		md *Metadata
	}{
		{encodeContainer, nil},
		{composeContainer, &Metadata{Labels: true, ComposeFields: true}},
		{many, &Metadata{Labels: true}},
		{composeContainer, &Metadata{ComposeFields: true}},
	}
	var b []byte
	for i := range 20 {
		ct := containers[i%len(containers)]
		b = appendRecord(b, Timestamp(i+1), []byte(fmt.Sprint("line ", i)), StreamKind(1+i%2), i%3 == 0, containerFields(ct.c, ct.md))
	}
	recs, err := records.Decode(b)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if len(recs) != 20 {
		t.Fatalf("decoded %d records, want 20", len(recs))
	}
	for i, r := range recs {
		ct := containers[i%len(containers)]
		if r.Log != fmt.Sprint("line ", i) || r.ContainerName != ct.c.Name || r.Truncated != (i%3 == 0) {
			t.Errorf("record %d: log %q name %q truncated %v", i, r.Log, r.ContainerName, r.Truncated)
		}
		if labels, _ := labelsField(t, r); ct.md != nil && ct.md.Labels && !maps.Equal(labels, ct.c.Labels) {
			t.Errorf("record %d: %d labels, want %d", i, len(labels), len(ct.c.Labels))
		}
	}
}

func TestAppendRecordWithLabelsDoesNotAllocate(t *testing.T) {
	fixed := containerFields(composeContainer, &Metadata{Labels: true, ComposeFields: true})
	line := []byte(strings.Repeat("GET /api/v1/items 200 ", 10))
	dst := make([]byte, 0, 64<<10)
	allocs := testing.AllocsPerRun(1000, func() {
		dst = appendRecord(dst[:0], 1, line, Stdout, false, fixed)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per record, want 0", allocs)
	}
}

// renameFake renames a container of the fake daemon and sends the event.
func renameFake(d *fakeDaemon, id, name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.containers[id].Name = name
	d.events = append(d.events, Event{Action: ActionRename, ID: id, Name: name})
	d.notifyLocked()
}

func TestRecordsKeepTheirLabelsAcrossARename(t *testing.T) {
	d := newFakeDaemon()
	c := composeContainer
	c.Running = true
	d.add(c)
	opts := testOptions()
	opts.Metadata = Metadata{LabelKeys: []string{"team"}, ComposeFields: true}
	t0 := Timestamp(time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC).UnixNano())
	d.write(c.ID, Stdout, t0, "before\n")
	src := newRecordingSource(d)
	h := newHarnessOf(t, src, d, opts)
	h.waitFor("the first record", 10*time.Second, countFor(c.ID, 1))
	renameFake(d, c.ID, "renamed")
	// A rename re-encodes the container's fields; a line read once the
	// supervisor has handled it carries the new name.
	src.awaitEventsHandled(t)
	d.write(c.ID, Stdout, t0+1, "after\n")
	h.waitFor("the record after the rename", 10*time.Second, countFor(c.ID, 2))
	if recs := h.records(); recs[len(recs)-1].ContainerName != "renamed" {
		t.Fatalf("the record read after the rename was handled carries the name %q, want the new one", recs[len(recs)-1].ContainerName)
	}
	for _, r := range h.records() {
		labels, _ := labelsField(t, r)
		if !maps.Equal(labels, map[string]string{"team": "payments"}) ||
			r.Fields["compose_project"] != "shop" || r.Fields["compose_service"] != "web" {
			t.Errorf("record %q of %s: labels %v, compose %v/%v", r.Log, r.ContainerName,
				labels, r.Fields["compose_project"], r.Fields["compose_service"])
		}
	}
}
