package jsonfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// preopener holds each new container's log files open from the moment the
// daemon creates them, before the container's process starts, until the
// container's first logs request takes them. A container removed as soon as
// it exits (--rm) is then read whole from the open descriptor, however
// late its reader asks: its start event, and the reader it starts, can
// come after the daemon removed its directory. A goroutine watches the
// containers directory (inotify; nothing where that is not available) and
// opens the files; Logs takes them.
type preopener struct {
	dir string
	log logrus.FieldLogger

	mu    sync.Mutex
	files map[string]*preopened // by container id; not taken yet
	// closed: the Source is closed; nothing is held any more.
	closed bool

	// watching is closed (once, by watchStarted) when a watch of the
	// directory is first in place; tests wait on it.
	watching     chan struct{}
	watchingOnce sync.Once
}

func (p *preopener) watchStarted() { p.watchingOnce.Do(func() { close(p.watching) }) }

// preopened are the log files a container had before its reader asked,
// oldest first: a container that writes fast rotates several away before
// its first logs request, and each is read whole from its descriptor.
type preopened struct {
	files []*logFile
	at    time.Time
}

// preopenTTL bounds how long a file is held for a request that does not
// come (a container the filters leave out, or one never read): a reader
// asks within a second on a loaded host; the held file keeps its disk
// space while it is held.
const preopenTTL = time.Minute

func newPreopener(dir string, log logrus.FieldLogger) *preopener {
	return &preopener{dir: dir, log: log, files: map[string]*preopened{}, watching: make(chan struct{})}
}

// open holds container id's log files: the live one and those rotated
// since the last look, so a watcher that gets a CPU late still holds
// every file the daemon has not deleted yet, not only the newest. It
// reports whether files of the container are held now.
func (p *preopener) open(id string, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	h := p.files[id]
	if h != nil && len(h.files) >= maxHeld {
		return true // the oldest are kept; the reader's chain reports a gap
	}
	files, err := openSnapshot(filepath.Join(p.dir, id, id+"-json.log"))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			p.log.WithError(err).WithField("container_id", id[:12]).Debug("cannot open a new container's log files ahead of its reader")
		}
		return h != nil
	}
	if h == nil {
		h = &preopened{at: now}
		p.files[id] = h
	}
	// Those held already and rotated out since come first; the others
	// are the snapshot's.
	h.files = merge(h.files, files)
	return true
}

// take hands over container id's held file, if any; the caller closes it.
// A nil preopener holds nothing.
func (p *preopener) take(id string) []*logFile {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	h := p.files[id]
	if h == nil {
		return nil
	}
	delete(p.files, id)
	return h.files
}

// holds reports whether files of container id are held.
func (p *preopener) holds(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.files[id] != nil
}

// expire closes the files held since before now - preopenTTL.
func (p *preopener) expire(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, h := range p.files {
		if now.Sub(h.at) > preopenTTL {
			closeAll(h.files)
			delete(p.files, id)
		}
	}
}

// close closes every held file; nothing is held after it.
func (p *preopener) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for id, h := range p.files {
		closeAll(h.files)
		delete(p.files, id)
	}
}

// merge puts the kept files that a snapshot does not have (by name, or
// compressed) in front of its files: they were rotated out, and maybe
// deleted, since they were opened. The others are closed.
func merge(kept, files []*logFile) []*logFile {
	var older []*logFile
	for _, k := range kept {
		if inSnapshot(k, files) {
			k.close()
			continue
		}
		k.live = false // replaced by the live file: complete
		older = append(older, k)
	}
	return append(older, files...)
}

func inSnapshot(k *logFile, files []*logFile) bool {
	for _, f := range files {
		if os.SameFile(f.info, k.info) {
			return true
		}
	}
	if k.gz {
		return false
	}
	id, ok := identify(k)
	if !ok {
		return false
	}
	for _, f := range files {
		if f.gz {
			if info, err := os.Stat(f.name); err == nil && compressedFrom(f.name, info, id) {
				return true
			}
		}
	}
	return false
}

// errNoWatch: the containers directory cannot be watched here.
var errNoWatch = fmt.Errorf("containers directory not watched")
