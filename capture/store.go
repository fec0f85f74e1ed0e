package capture

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// ErrPositionsDB marks a positions file that cannot be read or written.
var ErrPositionsDB = errors.New("positions db")

// dbVersion is the positions file's format version. Version 2 added
// watch_since; version 1 files are still read (see decode).
const dbVersion = 2

// What to do about a file the store cannot use, for the init error.
const dbAdvice = "move it away or delete it (the plugin then starts without positions, " +
	"as on a first start), or point DB at another file"

// Positions keeps the committed positions: the lines Fluent Bit has taken.
// With a path they survive a restart in a file written atomically.
//
// Crash semantics: a crash must repeat lines, never lose them. A batch that
// Fluent Bit has appended to an input with memory storage dies with its
// process until an output has sent it, so with a margin the file holds, for
// each container, the newest position committed at least margin ago: a
// crash repeats what was committed in the last margin plus one write
// interval, and loses nothing an output sends within the margin. A clean
// stop writes the exact positions. Margin 0 writes what is committed; even
// with storage.type filesystem Fluent Bit 5.1.1 can lose a threaded input's
// last appended batches in a crash (its ring buffer), so the default is not
// 0 for either storage type.
type Positions = store

type store struct {
	path   string
	margin time.Duration
	log    *logrus.Entry
	// stats counts the writes; New points it at the Capture's before the
	// writer runs, so OpenPositions' own write is not reported.
	stats *Stats

	mu sync.Mutex
	// positions are the committed ones, exact; commits never move them
	// back.
	positions map[string]position
	// durable are what the file holds, or will at the next write: the
	// positions committed at least margin ago.
	durable map[string]position
	// trail holds the batches committed within the margin, oldest first.
	trail []trailBatch
	// watch is the start of the watch, carried across restarts: every line
	// stamped after it of a container without a position is still to be
	// delivered. restarted says it comes from a previous run's file.
	watch     Timestamp
	restarted bool
	// batches counts commitBatch calls; durableBatches those in durable;
	// writtenBatches those in the file.
	batches, durableBatches, writtenBatches int64
	dirty                                   bool
	// written is closed and replaced after every write; WaitDBWritten
	// selects on it.
	written chan struct{}
	// changed wakes the writer; commits send without blocking (it has
	// room for one), the writer receives; nobody closes it.
	changed chan struct{}
}

// trailBatch is one committed batch not yet durable.
type trailBatch struct {
	at      time.Time
	seq     int64
	commits []trailCommit
}

type trailCommit struct {
	owner *containerState
	pos   position
}

// dbFile is the file's JSON form. Stamps are nanoseconds since the epoch;
// 0 means no position.
type dbFile struct {
	Version    int                    `json:"version"`
	WatchSince int64                  `json:"watch_since,omitempty"`
	Containers map[string]dbContainer `json:"containers"`
}

type dbContainer struct {
	LastStream string `json:"last_stream"`
	LastTime   int64  `json:"last_time"`
	// How many entries (pieces) the last line took, when more than one.
	LastEntries int   `json:"last_entries,omitempty"`
	Stdout      int64 `json:"stdout_time,omitempty"`
	Stderr      int64 `json:"stderr_time,omitempty"`
	// How many entries of the stream at its stamp were read, when more
	// than one: a daemon that stamps to the second (Podman) gives one
	// stamp to all the lines of a second. Absent means one, as in files
	// of versions 1 and 2, which never needed more.
	StdoutCount int `json:"stdout_count,omitempty"`
	StderrCount int `json:"stderr_count,omitempty"`
	// A long line begun before the last line and not delivered yet: its
	// stamp and how many of its pieces come before the last line. A
	// restart reads it again from its first piece.
	StdoutOpen       int64 `json:"stdout_open_time,omitempty"`
	StdoutOpenPieces int   `json:"stdout_open_pieces,omitempty"`
	StderrOpen       int64 `json:"stderr_open_time,omitempty"`
	StderrOpenPieces int   `json:"stderr_open_pieces,omitempty"`
}

// OpenPositions loads path (a missing file is an empty store whose watch
// starts now), removes temporary files a crash left beside it, and checks
// that it can be written. An empty path keeps positions in memory only.
// margin is how far the file trails the committed positions.
func OpenPositions(path string, margin time.Duration, log *logrus.Entry) (*Positions, error) {
	s := &store{path: path, margin: margin, log: log, stats: new(Stats), positions: map[string]position{},
		durable: map[string]position{}, watch: Timestamp(time.Now().UnixNano()),
		written: make(chan struct{}), changed: make(chan struct{}, 1)}
	if path == "" {
		s.margin = 0 // nothing outlives the process: no reason to trail
		return s, nil
	}
	s.removeTemporaryFiles()
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("%w: read %s: %w", ErrPositionsDB, path, err)
	default:
		var modified time.Time
		if fi, err := os.Stat(path); err == nil {
			modified = fi.ModTime()
		}
		if err := s.decode(b, modified); err != nil {
			return nil, fmt.Errorf("%w: %s: %w; %s", ErrPositionsDB, path, err, dbAdvice)
		}
	}
	if err := s.write(); err != nil {
		return nil, err
	}
	return s, nil
}

// removeTemporaryFiles removes what writeAtomic leaves when the process
// dies between creating its temporary file and the rename: only names
// os.CreateTemp made from the file's own pattern.
func (s *store) removeTemporaryFiles() {
	dir, base := filepath.Dir(s.path), filepath.Base(s.path)
	temp := regexp.MustCompile(`^\.` + regexp.QuoteMeta(base) + `\.[0-9]+$`)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return // the write that follows reports an unusable directory
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || !temp.MatchString(e.Name()) {
			continue
		}
		f := filepath.Join(dir, e.Name())
		if err := os.Remove(f); err != nil {
			s.log.WithError(err).WithField("file", f).Warn("cannot remove a temporary positions file")
			continue
		}
		s.log.WithField("file", f).Info("removed a temporary positions file left by a crash")
	}
}

// decode loads a file of this version or of version 1, which had no watch:
// its last write (modified) stands in, the latest moment its positions
// were saved.
func (s *store) decode(b []byte, modified time.Time) error {
	var f dbFile
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("not a positions file: %w", err)
	}
	switch {
	case f.Version == 1 && !modified.IsZero():
		f.WatchSince = modified.UnixNano()
	case f.Version != dbVersion:
		return fmt.Errorf("format version %d, this plugin reads 1 and %d", f.Version, dbVersion)
	case f.WatchSince <= 0:
		return errors.New("no watch_since")
	}
	for id, c := range f.Containers {
		var p position
		last := lastLine{ts: Timestamp(c.LastTime), entries: max(c.LastEntries, 1), valid: true}
		switch c.LastStream {
		case "stdout":
			last.stream = Stdout
		case "stderr":
			last.stream = Stderr
		default:
			return fmt.Errorf("container %s: last_stream %q", id, c.LastStream)
		}
		p.last = last
		if c.Stdout != 0 {
			p.streams[streamIndex(Stdout)] = streamPos{ts: Timestamp(c.Stdout), n: max(c.StdoutCount, 1), valid: true}
		}
		if c.Stderr != 0 {
			p.streams[streamIndex(Stderr)] = streamPos{ts: Timestamp(c.Stderr), n: max(c.StderrCount, 1), valid: true}
		}
		if c.StdoutOpenPieces > 0 {
			p.open[streamIndex(Stdout)] = openLine{ts: Timestamp(c.StdoutOpen), pieces: c.StdoutOpenPieces, valid: true}
		}
		if c.StderrOpenPieces > 0 {
			p.open[streamIndex(Stderr)] = openLine{ts: Timestamp(c.StderrOpen), pieces: c.StderrOpenPieces, valid: true}
		}
		s.positions[id] = p
		s.durable[id] = p
	}
	s.watch, s.restarted = Timestamp(f.WatchSince), true
	return nil
}

// get returns the committed position of a container.
func (s *store) get(id string) (position, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.positions[id]
	return p, ok
}

// resumedWatch returns the watch's start when it comes from a previous
// run's file: a container without a position is then read from it.
func (s *store) resumedWatch() (Timestamp, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.watch, s.restarted
}

// ids lists the containers with a position.
func (s *store) ids() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.positions))
	for id := range s.positions {
		out = append(out, id)
	}
	return out
}

// commitBatch records a batch Fluent Bit has taken: each chunk's position
// advances its container's, never backwards, unless the container was
// destroyed meanwhile (its chunk was queued before the destroy).
func (s *store) commitBatch(chunks []chunk) {
	now := time.Now()
	s.mu.Lock()
	s.batches++
	tb := trailBatch{at: now, seq: s.batches}
	for _, ch := range chunks {
		if !ch.pos.last.valid || ch.owner.forgotten {
			continue
		}
		id := ch.owner.id
		if old, ok := s.positions[id]; ok && !ch.pos.after(old) {
			continue
		}
		s.positions[id] = ch.pos
		tb.commits = append(tb.commits, trailCommit{owner: ch.owner, pos: ch.pos})
	}
	s.trail = append(s.trail, tb)
	if s.margin == 0 {
		s.promoteLocked(now)
	}
	s.mu.Unlock()
	s.wake()
}

// promoteLocked makes durable the batches committed at least margin
// before now.
func (s *store) promoteLocked(now time.Time) {
	n := 0
	for ; n < len(s.trail) && !s.trail[n].at.After(now.Add(-s.margin)); n++ {
		for _, c := range s.trail[n].commits {
			if !c.owner.forgotten {
				s.durable[c.owner.id] = c.pos // in commit order: never backwards
			}
		}
		s.durableBatches = s.trail[n].seq
		s.dirty = true
	}
	clear(s.trail[:n]) // drop the references to their containers
	s.trail = s.trail[n:]
}

// forget drops the position of a container that no longer exists, for
// good: a chunk of it committed later does not bring it back. cs is nil
// for a container known only from the file.
func (s *store) forget(id string, cs *containerState) {
	s.mu.Lock()
	if cs != nil {
		cs.forgotten = true
	}
	_, had := s.positions[id]
	_, hadDurable := s.durable[id]
	delete(s.positions, id)
	delete(s.durable, id)
	s.dirty = s.dirty || had || hadDurable
	s.mu.Unlock()
	s.wake()
}

func (s *store) wake() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// run writes the file when durable positions change, at most once per
// interval, and the exact positions once more when ctx ends. A failed
// write is logged and retried.
func (s *store) run(ctx context.Context) {
	if s.path == "" {
		return
	}
	// tick retries failed writes and promotes what ages past the margin.
	tick := time.NewTicker(dbWriteInterval)
	defer tick.Stop()
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			// A clean stop: Fluent Bit has flushed its outputs before its
			// exit callbacks, so the exact positions are delivered.
			s.mu.Lock()
			s.promoteLocked(time.Now().Add(s.margin))
			s.mu.Unlock()
			if err := s.flush(); err != nil {
				s.log.WithError(err).Error("writing positions at exit")
			}
			return
		case <-s.changed:
		case <-tick.C:
		}
		s.mu.Lock()
		s.promoteLocked(time.Now())
		dirty := s.dirty
		s.mu.Unlock()
		if !dirty {
			continue // last stays the last write
		}
		if wait := dbWriteInterval - time.Since(last); wait > 0 {
			if !sleepCtx(ctx, wait) {
				continue // the ctx case writes
			}
		}
		last = time.Now()
		if err := s.flush(); err != nil {
			s.log.WithError(err).Warn("writing positions failed, retrying")
		}
	}
}

// flush writes the file if positions changed since the last write.
func (s *store) flush() error {
	s.mu.Lock()
	s.promoteLocked(time.Now())
	dirty := s.dirty
	s.mu.Unlock()
	if !dirty || s.path == "" {
		return nil
	}
	return s.write()
}

// write replaces the file atomically: a temporary file beside it, fsync,
// rename, fsync of the directory.
func (s *store) write() error {
	s.mu.Lock()
	f := dbFile{Version: dbVersion, WatchSince: int64(s.watch), Containers: make(map[string]dbContainer, len(s.durable))}
	for id, p := range s.durable {
		c := dbContainer{LastStream: p.last.stream.String(), LastTime: int64(p.last.ts), LastEntries: countField(p.last.entries)}
		if sp := p.streams[streamIndex(Stdout)]; sp.valid {
			c.Stdout, c.StdoutCount = int64(sp.ts), countField(sp.n)
		}
		if sp := p.streams[streamIndex(Stderr)]; sp.valid {
			c.Stderr, c.StderrCount = int64(sp.ts), countField(sp.n)
		}
		if o := p.open[streamIndex(Stdout)]; o.valid {
			c.StdoutOpen, c.StdoutOpenPieces = int64(o.ts), o.pieces
		}
		if o := p.open[streamIndex(Stderr)]; o.valid {
			c.StderrOpen, c.StderrOpenPieces = int64(o.ts), o.pieces
		}
		f.Containers[id] = c
	}
	batches := s.durableBatches
	s.dirty = false
	s.mu.Unlock()
	if err := writeAtomic(s.path, f); err != nil {
		s.mu.Lock()
		s.dirty = true
		s.mu.Unlock()
		s.stats.countError(ReasonPositions)
		return fmt.Errorf("%w: %w", ErrPositionsDB, err)
	}
	s.stats.add(countPositionWrites, 1)
	s.mu.Lock()
	s.writtenBatches = max(s.writtenBatches, batches)
	close(s.written)
	s.written = make(chan struct{})
	s.mu.Unlock()
	return nil
}

// countField is a count as the file keeps it: omitted when one,
// so a file of stamps to the nanosecond stays as version 2 wrote it.
func countField(n int) int {
	if n <= 1 {
		return 0
	}
	return n
}

// waitWritten returns how many committed batches the file holds once
// they are more than after, or when ctx ends.
func (s *store) waitWritten(ctx context.Context, after int64) (int64, error) {
	for {
		s.mu.Lock()
		n, written := s.writtenBatches, s.written
		s.mu.Unlock()
		if n > after {
			return n, nil
		}
		select {
		case <-written:
		case <-ctx.Done():
			return n, ctx.Err()
		}
	}
}

func writeAtomic(path string, f dbFile) error {
	b, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	dir := filepath.Dir(path)
	// The pattern's "*" becomes digits: removeTemporaryFiles knows it.
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("create temporary file in %s: %w", dir, err)
	}
	defer os.Remove(tmp.Name()) //nolint:errcheck // gone after the rename
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("fsync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rename to %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}
