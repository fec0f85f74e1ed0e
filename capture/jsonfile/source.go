// Package jsonfile reads containers' logs from their json-file log files,
// below capture's reader: Source serves the same logs requests as the
// daemon's API (since, tail, follow, timestamps=1), from the files, so the
// reader, its positions and its resume logic are the same for both paths,
// and a container moves between them without losing or repeating a line.
// Discovery, metadata and filters stay on the API. It is pure Go, without
// the Docker SDK: the docker package is the only importer of that.
package jsonfile

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dockerlogs/fluent-bit-docker-logs/capture"
)

// Mode chooses where logs are read from.
type Mode int

const (
	// Auto reads a container's files where they are readable and the API
	// otherwise.
	Auto Mode = iota
	// Files reads only files; a container without readable files is not
	// read.
	Files
	// API reads only through the daemon's API.
	API
)

func (m Mode) String() string {
	switch m {
	case Auto:
		return "auto"
	case Files:
		return "files"
	case API:
		return "api"
	}
	return "mode(" + strconv.Itoa(int(m)) + ")"
}

// DefaultContainersPath is where the daemon keeps its containers'
// directories (Docker Root Dir + /containers).
const DefaultContainersPath = "/var/lib/docker/containers"

// Source is a capture.Source whose logs streams come from the containers'
// json-file files where it can, and from inner otherwise. Everything else
// is inner's.
type Source struct {
	inner capture.Source
	mode  Mode
	dir   string
	log   logrus.FieldLogger

	// pre holds new containers' files open for their first request (nil
	// in API mode).
	pre *preopener

	mu         sync.Mutex
	containers map[string]*containerInfo
}

var _ capture.Source = (*Source)(nil)

// New wraps inner. dir is where the containers' directories are seen from
// this process (the daemon's LogPath is in its own mount namespace). A nil
// log is logrus's standard logger.
func New(inner capture.Source, mode Mode, dir string, log logrus.FieldLogger) *Source {
	if log == nil {
		log = logrus.StandardLogger()
	}
	s := &Source{inner: inner, mode: mode, dir: dir, log: log, containers: map[string]*containerInfo{}}
	if mode != API {
		s.pre = newPreopener(dir, log)
	}
	return s
}

// containerInfo is what the file path needs to know of a container: the
// events and inspects that pass through say whether it runs (a followed
// file ends when it stops, as the API's follow stream does) and whether it
// has a TTY (its stream is then raw).
type containerInfo struct {
	mu      sync.Mutex
	running bool
	known   bool // running was learned; unknown counts as running
	tty     bool // set by an inspect, which the reader does before its first read
	// jsonFile: an inspect said its log driver is json-file, so a log
	// file that does not exist yet is an empty log (created, never
	// started), not an unreadable one.
	jsonFile bool
	events   uint64 // start and die events seen, so an inspect older than one is not believed
	logged   bool   // the fall back to the API was logged
	// kept are the files a closed stream had not read to their end
	// (rotated out, maybe deleted), oldest first, for the next stream
	// of the container; forgetting the container closes them.
	kept []*logFile
	// keeping is the closed stream's chain, which goes on opening each
	// file created after kept until the next stream takes it, so none
	// is missed between two streams. Its watcher goroutine is stopped by
	// takeKept, by keep (forgetting the container, or another stream's
	// close), or by expire when no stream comes within keepTTL.
	keeping *chain
	// expire is keeping's timer; whoever replaces keeping stops it.
	expire *time.Timer
}

// keepTTL bounds how long a closed stream's chain holds new files for a
// stream that does not come (the container left the filters): a reader
// opens its next stream within a second, and held files keep their disk
// space.
const keepTTL = time.Minute

// keep stores files, and the chain still following them (nil: none), for
// the next stream, closing any kept before.
func (c *containerInfo) keep(files []*logFile, ch *chain) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropLocked()
	c.kept, c.keeping = files, ch
	if ch != nil {
		c.expire = time.AfterFunc(keepTTL, func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.keeping == ch {
				c.dropLocked()
			}
		})
	}
}

// dropLocked stops the kept chain, whose watcher looks at the newest kept
// file, then closes what is kept (c.mu held).
func (c *containerInfo) dropLocked() {
	if c.keeping != nil {
		c.expire.Stop()
		held, _ := c.keeping.stopKeeping()
		closeAll(held)
		c.keeping, c.expire = nil, nil
	}
	closeAll(c.kept)
	c.kept = nil
}

// takeKept hands over the kept files, oldest first, with those the kept
// chain opened after them; the caller closes them. whole is false when
// that chain found a file gone before it could open it: lines are
// missing after the files handed over.
func (c *containerInfo) takeKept() (files []*logFile, whole bool) {
	c.mu.Lock()
	files, ch := c.kept, c.keeping
	c.kept, c.keeping = nil, nil
	if ch != nil {
		c.expire.Stop()
		c.expire = nil
	}
	c.mu.Unlock()
	if ch == nil {
		return files, true
	}
	held, whole := ch.stopKeeping()
	return append(files, held...), whole
}

func closeAll(files []*logFile) {
	for _, f := range files {
		f.close()
	}
}

func (c *containerInfo) isRunning() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.known || c.running
}

func (c *containerInfo) isJSONFile() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.jsonFile
}

// jsonFileDriver is the log driver whose files this package reads.
const jsonFileDriver = "json-file"

func (c *containerInfo) isTTY() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tty
}

func (s *Source) info(id string) *containerInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.containers[id]
	if c == nil {
		c = &containerInfo{}
		s.containers[id] = c
	}
	return c
}

func (s *Source) forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.containers[id]; c != nil {
		c.keep(nil, nil)
	}
	delete(s.containers, id)
}

// List is inner's; the containers not listed are forgotten.
func (s *Source) List(ctx context.Context) ([]capture.Container, error) {
	list, err := s.inner.List(ctx)
	if err != nil {
		return nil, err
	}
	present := make(map[string]bool, len(list))
	for _, c := range list {
		present[c.ID] = true
	}
	s.mu.Lock()
	for id, c := range s.containers {
		if !present[id] {
			c.keep(nil, nil)
			delete(s.containers, id)
		}
	}
	s.mu.Unlock()
	return list, nil
}

// Inspect is inner's, and learns the container's TTY and state.
func (s *Source) Inspect(ctx context.Context, id string) (capture.Container, error) {
	ci := s.info(id)
	ci.mu.Lock()
	before := ci.events
	ci.mu.Unlock()
	c, err := s.inner.Inspect(ctx, id)
	if err != nil {
		return c, err
	}
	ci.mu.Lock()
	ci.tty = c.TTY
	ci.jsonFile = c.LogDriver == jsonFileDriver
	if ci.events == before {
		ci.running, ci.known = c.Running, true
	}
	ci.mu.Unlock()
	return c, nil
}

// Events is inner's subscription, passed through by a goroutine that
// learns from start, die and destroy events on the way. That goroutine
// owns both channels it returns: it sends inner's error, then closes the
// events channel as the last thing it does, as Source requires.
func (s *Source) Events(ctx context.Context) (<-chan capture.Event, <-chan error) {
	in, inErr := s.inner.Events(ctx)
	out := make(chan capture.Event)
	errc := make(chan error, 1)
	// The watch of the containers directory lives as long as the
	// subscription: this goroutine stops it and waits for it (done) before
	// it closes out.
	stopWatch, watchDone := func() {}, make(chan struct{})
	if s.pre != nil {
		var err error
		if stopWatch, err = s.pre.watch(watchDone); err != nil {
			s.log.WithError(err).WithField("containers_path", s.dir).
				Debug("new containers' log files are opened when their reader asks")
		}
	} else {
		close(watchDone)
	}
	go func() {
		defer close(out)
		defer func() {
			stopWatch()
			<-watchDone
		}()
		for ev := range in {
			s.observe(ev)
			select {
			case out <- ev:
			case <-ctx.Done(): // inner ends too; keep draining it
			}
		}
		// inner sent its error before it closed its channel.
		errc <- <-inErr
	}()
	return out, errc
}

func (s *Source) observe(ev capture.Event) {
	switch ev.Action {
	case capture.ActionStart, capture.ActionDie:
		ci := s.info(ev.ID)
		ci.mu.Lock()
		ci.events++
		ci.running, ci.known = ev.Action == capture.ActionStart, true
		ci.mu.Unlock()
	case capture.ActionDestroy:
		s.forget(ev.ID)
	}
}

// Close closes the files held for requests that did not come, and is
// inner's.
func (s *Source) Close() error {
	if s.pre != nil {
		s.pre.close()
	}
	s.mu.Lock()
	for _, c := range s.containers {
		c.keep(nil, nil)
	}
	s.mu.Unlock()
	return s.inner.Close()
}

// LogPath is where the container's json-file log is seen from here.
func (s *Source) LogPath(id string) string {
	return filepath.Join(s.dir, id, id+"-json.log")
}

// Logs reads the container's files when the mode allows and they are
// readable; otherwise the API (Auto, with one info line per container) or
// an error wrapping capture.ErrLogsUnreadable (Files).
func (s *Source) Logs(ctx context.Context, id string, req capture.LogsRequest) (io.ReadCloser, error) {
	if s.mode == API || !validID(id) {
		return s.inner.Logs(ctx, id, req)
	}
	ci := s.info(id)
	kept, whole := ci.takeKept()
	if !whole {
		s.log.WithField("container_id", id[:12]).Warn("a rotated log file was gone before it could be opened between two streams: lines may be lost")
	}
	if pre := s.pre.take(id); pre != nil {
		kept = append(pre, kept...)
	}
	st, err := newStream(ctx, s.LogPath(id), req, ci, kept, s.log.WithField("container_id", id[:12]))
	if err == nil {
		return st, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		dir, dirErr := os.Stat(filepath.Dir(s.LogPath(id)))
		if dirErr == nil && dir.IsDir() && ci.isJSONFile() {
			// The daemon creates the file when the container first
			// starts: until then its log is empty, as the API says.
			return io.NopCloser(bytes.NewReader(nil)), nil
		}
		if errors.Is(dirErr, fs.ErrNotExist) {
			// No directory: removed with it, or Containers_Path is not
			// where the daemon's directories are. Only the daemon knows
			// which.
			if _, inspErr := s.inner.Inspect(ctx, id); errors.Is(inspErr, capture.ErrNotFound) {
				return nil, fmt.Errorf("read log files of container %s: %w: %w", id[:12], capture.ErrNotFound, err)
			}
		}
	}
	if s.mode == Files {
		return nil, fmt.Errorf("read log files of container %s at %s: %w: %w", id[:12], s.LogPath(id), capture.ErrLogsUnreadable, err)
	}
	ci.mu.Lock()
	first := !ci.logged
	ci.logged = true
	ci.mu.Unlock()
	if first {
		s.log.WithField("container_id", id[:12]).WithField("log_path", s.LogPath(id)).WithError(err).
			Info("log files not readable at Containers_Path (not mounted there, another log driver, or permissions): reading this container through the API")
	}
	// An error is the daemon's (gone, or failing), not the files'.
	return s.inner.Logs(ctx, id, req)
}

// validID keeps a path built from an id inside dir.
func validID(id string) bool {
	if len(id) != 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
