package capture

import (
	"sort"
	"sync"
	"sync/atomic"
)

// ErrorReason says what failed when an error is counted. The set is fixed
// so that a metric labelled with it keeps a bounded number of series.
type ErrorReason int

// The reasons, in the order NumErrorReasons counts them.
const (
	ReasonInspect    ErrorReason = iota // inspecting a container failed
	ReasonList                          // listing the containers failed
	ReasonOpen                          // opening a logs stream failed
	ReasonRead                          // reading a logs stream failed
	ReasonMalformed                     // a logs stream was not in the daemon's format
	ReasonUnreadable                    // the daemon cannot serve a container's logs (501)
	ReasonEvents                        // the events stream ended with an error
	ReasonPositions                     // writing the positions file failed
	ReasonClockStep                     // a stream's new lines are stamped before its position
	ReasonGap                           // a resume's position was no longer in the log: lines after it may be lost
	NumErrorReasons
)

var reasonNames = [NumErrorReasons]string{"inspect", "list", "open", "read", "malformed", "unreadable", "events", "positions", "clock_step", "gap"}

func (r ErrorReason) String() string {
	if r < 0 || r >= NumErrorReasons {
		return "unknown"
	}
	return reasonNames[r]
}

// Stats are a Capture's counters. Readers, the supervisor and the positions
// writer add to them with atomics; an exporter reads them through
// (*Capture).Stats. Lines and bytes are counted by each reader locally and
// added once per chunk, so the per-line path has no atomic operation.
type Stats struct {
	containers atomic.Int64 // readers running
	streams    atomic.Int64 // logs streams open
	refreshes  atomic.Int64 // streams closed at their age and reopened
	reconnects atomic.Int64 // events subscriptions renewed after one ended
	errors     [NumErrorReasons]atomic.Int64
	lines      [2]atomic.Int64 // by streamIndex, lines handed to the queue
	bytes      [2]atomic.Int64 // by streamIndex, bytes of those lines
	truncated  atomic.Int64    // lines cut at MaxLineSize
	posWrites  atomic.Int64    // positions file written; failures are errors[ReasonPositions]

	// perContainer is set by New (Options.ContainerStats) before any
	// goroutine starts; then the supervisor tracks its containers here.
	perContainer bool
	mu           sync.Mutex
	tracked      map[*containerState]struct{}
}

// lineCounts is what a reader has read since its last flush; only the
// reader touches it.
type lineCounts struct {
	lines, bytes [2]int64
	truncated    int64
}

func (c *lineCounts) add(s StreamKind, n int, truncated bool) {
	i := streamIndex(s)
	c.lines[i]++
	c.bytes[i] += int64(n)
	if truncated {
		c.truncated++
	}
}

// containerCounts are one container's lines and bytes by stream, kept only
// with Options.ContainerStats.
type containerCounts struct {
	lines, bytes [2]atomic.Int64
	readers      atomic.Int64 // running for the container: 0 or 1
}

func (s *Stats) countError(r ErrorReason) {
	s.errors[r].Add(1)
}

// statField names one of the counters and gauges that readers, the
// supervisor and the positions writer move one at a time.
type statField int

const (
	gaugeStreams statField = iota
	countRefreshes
	countReconnects
	countPositionWrites
)

func (s *Stats) add(f statField, n int64) {
	switch f {
	case gaugeStreams:
		s.streams.Add(n)
	case countRefreshes:
		s.refreshes.Add(n)
	case countReconnects:
		s.reconnects.Add(n)
	case countPositionWrites:
		s.posWrites.Add(n)
	}
}

// addLines moves a reader's counts into the totals (and the container's)
// and clears them; the reader calls it when it hands its chunk to the
// queue.
func (s *Stats) addLines(cs *containerState, c *lineCounts) {
	for i := range c.lines {
		if c.lines[i] == 0 {
			continue
		}
		s.lines[i].Add(c.lines[i])
		s.bytes[i].Add(c.bytes[i])
		if s.perContainer {
			cs.counts.lines[i].Add(c.lines[i])
			cs.counts.bytes[i].Add(c.bytes[i])
		}
	}
	if c.truncated > 0 {
		s.truncated.Add(c.truncated)
	}
	*c = lineCounts{}
}

// readerStarted and readerEnded move the gauge of running readers, and
// the container's; the supervisor calls them around a reader's run.
func (s *Stats) readerStarted(cs *containerState) { s.readers(cs, 1) }
func (s *Stats) readerEnded(cs *containerState)   { s.readers(cs, -1) }

func (s *Stats) readers(cs *containerState, n int64) {
	s.containers.Add(n)
	if s.perContainer {
		cs.counts.readers.Add(n)
	}
}

// track and untrack keep the per-container list; the supervisor calls them
// when it adds a container to its map and when it deletes one.
func (s *Stats) track(cs *containerState) {
	if !s.perContainer {
		return
	}
	s.mu.Lock()
	if s.tracked == nil {
		s.tracked = make(map[*containerState]struct{})
	}
	s.tracked[cs] = struct{}{}
	s.mu.Unlock()
}

func (s *Stats) untrack(cs *containerState) {
	if !s.perContainer {
		return
	}
	s.mu.Lock()
	delete(s.tracked, cs)
	s.mu.Unlock()
}

// StatsSnapshot is the counters at one moment. Counters only grow while
// the Capture lives; the gauges (ContainersWatched, StreamsOpen,
// QueueBytes, Paused) go up and down.
type StatsSnapshot struct {
	ContainersWatched     int64 // containers with a reader running
	StreamsOpen           int64
	Refreshes             int64
	Reconnects            int64
	Errors                [NumErrorReasons]int64 // by ErrorReason
	StdoutLines           int64
	StderrLines           int64
	StdoutBytes           int64
	StderrBytes           int64
	LinesTruncated        int64
	QueueBytes            int64
	QueueCapacity         int64
	Paused                bool
	PositionWrites        int64
	PositionWriteFailures int64
	// Containers is filled only with Options.ContainerStats: one entry per
	// container name, sorted by name.
	Containers []ContainerStats
}

// ContainerStats are one container's counts, by its current name.
type ContainerStats struct {
	Name                     string
	StdoutLines, StderrLines int64
	StdoutBytes, StderrBytes int64
	// Readers is how many readers run for it: 0 once a stopped
	// container's log is read to its end.
	Readers int64
}

func (s *Stats) snapshot() StatsSnapshot {
	// The per-container counts are read before the totals: a reader moves
	// the total first, so a container seen with no reader is never beside
	// a total that still counts it.
	var containers []ContainerStats
	if s.perContainer {
		containers = s.containerSnapshot()
	}
	out := StatsSnapshot{
		Containers:            containers,
		ContainersWatched:     s.containers.Load(),
		StreamsOpen:           s.streams.Load(),
		Refreshes:             s.refreshes.Load(),
		Reconnects:            s.reconnects.Load(),
		StdoutLines:           s.lines[streamIndex(Stdout)].Load(),
		StderrLines:           s.lines[streamIndex(Stderr)].Load(),
		StdoutBytes:           s.bytes[streamIndex(Stdout)].Load(),
		StderrBytes:           s.bytes[streamIndex(Stderr)].Load(),
		LinesTruncated:        s.truncated.Load(),
		PositionWrites:        s.posWrites.Load(),
		PositionWriteFailures: s.errors[ReasonPositions].Load(),
	}
	for i := range s.errors {
		out.Errors[i] = s.errors[i].Load()
	}
	return out
}

// containerSnapshot sums by name: a removed container whose reader is still
// finishing can share its name with a new one, and an exporter must not
// see one name twice.
func (s *Stats) containerSnapshot() []ContainerStats {
	s.mu.Lock()
	byName := make(map[string]*ContainerStats, len(s.tracked))
	for cs := range s.tracked {
		m := cs.meta.Load()
		if m == nil {
			continue // not inspected yet: nothing read, no name
		}
		c := byName[m.info.Name]
		if c == nil {
			c = &ContainerStats{Name: m.info.Name}
			byName[m.info.Name] = c
		}
		c.StdoutLines += cs.counts.lines[streamIndex(Stdout)].Load()
		c.StderrLines += cs.counts.lines[streamIndex(Stderr)].Load()
		c.StdoutBytes += cs.counts.bytes[streamIndex(Stdout)].Load()
		c.StderrBytes += cs.counts.bytes[streamIndex(Stderr)].Load()
		c.Readers += cs.counts.readers.Load()
	}
	s.mu.Unlock()
	out := make([]ContainerStats, 0, len(byName))
	for _, c := range byName {
		out = append(out, *c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
