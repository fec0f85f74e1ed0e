package capture

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// ErrPositionsDB marks a positions file that cannot be read or written.
var ErrPositionsDB = errors.New("positions db")

// dbVersion is the positions file's format version.
const dbVersion = 1

// dbWriteInterval is the most often the file is written while positions
// change.
const dbWriteInterval = time.Second

// Positions keeps the committed positions: the lines Fluent Bit has taken.
// With a path they survive a restart in a file written atomically.
type Positions = store

type store struct {
	path string
	log  *logrus.Entry
	// stats counts the writes; New points it at the Capture's before the
	// writer runs, so OpenPositions' own write is not reported.
	stats *Stats

	mu        sync.Mutex
	positions map[string]position
	dirty     bool
	// changed wakes the writer; Commit sends without blocking (it has room
	// for one), the writer receives; nobody closes it.
	changed chan struct{}
}

// dbFile is the file's JSON form. Stamps are nanoseconds since the epoch;
// 0 means no position.
type dbFile struct {
	Version    int                    `json:"version"`
	Containers map[string]dbContainer `json:"containers"`
}

type dbContainer struct {
	LastStream string `json:"last_stream"`
	LastTime   int64  `json:"last_time"`
	Stdout     int64  `json:"stdout_time,omitempty"`
	Stderr     int64  `json:"stderr_time,omitempty"`
	// A long line begun before the last line and not delivered yet: its
	// stamp and how many of its pieces come before the last line. A
	// restart reads it again from its first piece.
	StdoutOpen       int64 `json:"stdout_open_time,omitempty"`
	StdoutOpenPieces int   `json:"stdout_open_pieces,omitempty"`
	StderrOpen       int64 `json:"stderr_open_time,omitempty"`
	StderrOpenPieces int   `json:"stderr_open_pieces,omitempty"`
}

// OpenPositions loads path (a missing file is an empty store) and checks
// that it can be written. An empty path keeps positions in memory only.
func OpenPositions(path string, log *logrus.Entry) (*Positions, error) {
	s := &store{path: path, log: log, stats: new(Stats), positions: map[string]position{}, changed: make(chan struct{}, 1)}
	if path == "" {
		return s, nil
	}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("%w: read %s: %w", ErrPositionsDB, path, err)
	default:
		if err := s.decode(b); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrPositionsDB, path, err)
		}
	}
	if err := s.write(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *store) decode(b []byte) error {
	var f dbFile
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("not a positions file: %w", err)
	}
	if f.Version != dbVersion {
		return fmt.Errorf("format version %d, this plugin reads %d", f.Version, dbVersion)
	}
	for id, c := range f.Containers {
		var p position
		switch c.LastStream {
		case "stdout":
			p.last = lastLine{stream: Stdout, ts: Timestamp(c.LastTime), valid: true}
		case "stderr":
			p.last = lastLine{stream: Stderr, ts: Timestamp(c.LastTime), valid: true}
		default:
			return fmt.Errorf("container %s: last_stream %q", id, c.LastStream)
		}
		if c.Stdout != 0 {
			p.streams[streamIndex(Stdout)] = streamPos{ts: Timestamp(c.Stdout), valid: true}
		}
		if c.Stderr != 0 {
			p.streams[streamIndex(Stderr)] = streamPos{ts: Timestamp(c.Stderr), valid: true}
		}
		if c.StdoutOpenPieces > 0 {
			p.open[streamIndex(Stdout)] = openLine{ts: Timestamp(c.StdoutOpen), pieces: c.StdoutOpenPieces, valid: true}
		}
		if c.StderrOpenPieces > 0 {
			p.open[streamIndex(Stderr)] = openLine{ts: Timestamp(c.StderrOpen), pieces: c.StderrOpenPieces, valid: true}
		}
		s.positions[id] = p
	}
	return nil
}

// get returns the committed position of a container.
func (s *store) get(id string) (position, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.positions[id]
	return p, ok
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

// commit advances a container's position; it never moves back.
func (s *store) commit(id string, p position) {
	if !p.last.valid {
		return
	}
	s.mu.Lock()
	if old, ok := s.positions[id]; !ok || p.after(old) {
		s.positions[id] = p
		s.dirty = true
	}
	s.mu.Unlock()
	s.wake()
}

// forget drops the position of a container that no longer exists.
func (s *store) forget(id string) {
	s.mu.Lock()
	if _, ok := s.positions[id]; ok {
		delete(s.positions, id)
		s.dirty = true
	}
	s.mu.Unlock()
	s.wake()
}

func (s *store) wake() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// run writes the file when positions change, at most once per interval,
// and once more when ctx ends. A failed write is logged and retried.
func (s *store) run(ctx context.Context) {
	if s.path == "" {
		return
	}
	retry := time.NewTicker(dbWriteInterval)
	defer retry.Stop()
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			if err := s.flush(); err != nil {
				s.log.WithError(err).Error("writing positions at exit")
			}
			return
		case <-s.changed:
		case <-retry.C:
			s.mu.Lock()
			dirty := s.dirty
			s.mu.Unlock()
			if !dirty {
				continue // nothing to retry; last stays the last write
			}
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
	f := dbFile{Version: dbVersion, Containers: make(map[string]dbContainer, len(s.positions))}
	for id, p := range s.positions {
		c := dbContainer{LastStream: p.last.stream.String(), LastTime: int64(p.last.ts)}
		if sp := p.streams[streamIndex(Stdout)]; sp.valid {
			c.Stdout = int64(sp.ts)
		}
		if sp := p.streams[streamIndex(Stderr)]; sp.valid {
			c.Stderr = int64(sp.ts)
		}
		if o := p.open[streamIndex(Stdout)]; o.valid {
			c.StdoutOpen, c.StdoutOpenPieces = int64(o.ts), o.pieces
		}
		if o := p.open[streamIndex(Stderr)]; o.valid {
			c.StderrOpen, c.StderrOpenPieces = int64(o.ts), o.pieces
		}
		f.Containers[id] = c
	}
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
	return nil
}

func writeAtomic(path string, f dbFile) error {
	b, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	dir := filepath.Dir(path)
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
