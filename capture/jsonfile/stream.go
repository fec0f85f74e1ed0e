package jsonfile

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dockerlogs/fluent-bit-docker-logs/capture"
)

// stream serves one LogsRequest from a container's files in the form the
// logs API sends with timestamps=1: a multiplexed stream of frames (an
// 8-byte header, then "<stamp> <log>"), or for a TTY container the raw
// "<stamp> <log>" entries. The reader decodes both, so it cannot tell the
// two sources apart.
type stream struct {
	ctx  context.Context
	req  capture.LogsRequest
	live string // the container's live log file
	ctr  *containerInfo
	log  logrus.FieldLogger

	// closed is closed by Close; a Read that waits for lines selects on it.
	closed    chan struct{}
	closeOnce sync.Once

	// mu is held by Read while it works and by Close while it closes the
	// files, so a Close from another goroutine never pulls a file from
	// under a Read.
	mu sync.Mutex
	// files are the files still to read, oldest first; files[0] is being
	// read. With follow, the last one is the live file.
	files          []*logFile
	in             []byte // read from files[0]; in[inStart:inEnd] is not parsed yet
	inStart, inEnd int
	// discarding: a line longer than maxLineBytes is being skipped up to
	// its newline.
	discarding bool
	out        []byte // encoded entries not handed out yet, from outStart
	outStart   int
	tty        bool
	started    bool // tty is decided (at the first Read, after inspect)
	stopping   bool // the container stopped: read to the end once more, then end
	poll       time.Duration
	ended      bool
	// chain opens the files that replace the live one as soon as they are
	// created (follow only); Close stops it.
	chain *chain
	bad   int // malformed lines skipped, for the log
}

// Tuning of the file path, with the reasons.
const (
	// readBufSize is how much of a file one read takes: many lines per
	// system call.
	readBufSize = 256 << 10
	// maxLineBytes bounds one line of the file. The daemon writes at most
	// 16 KiB of log per line, which escaping can grow to 6x (\u0000), so a
	// longer line is not the driver's and is skipped.
	maxLineBytes = 1 << 20
	// minPoll and maxPoll bound the wait between looks at a followed file
	// that has no new line: the wait doubles while the file is quiet, so a
	// busy file is read within a millisecond and a quiet one costs two
	// system calls a maxPoll. maxPoll is also the longest a new line of a
	// quiet container waits.
	minPoll = time.Millisecond
	maxPoll = 100 * time.Millisecond
)

// errClosed is the error of a Read after Close.
var errClosed = fmt.Errorf("logs stream: %w", os.ErrClosed)

// newStream opens the files of live for req. kept, oldest first, are
// files opened before: the live file as it was when the container was
// created, and those a closed stream had not read to their end. Each is
// read first if the daemon has rotated it out or removed the container
// since, and closed otherwise.
func newStream(ctx context.Context, live string, req capture.LogsRequest, ctr *containerInfo, kept []*logFile, log logrus.FieldLogger) (*stream, error) {
	files, err := openSnapshot(live)
	switch {
	case err != nil && len(kept) > 0 && errors.Is(err, fs.ErrNotExist):
		// Removed since: the kept files are all of its log (the daemon
		// closed them when it removed the container).
		files = kept
		for _, f := range files[:len(files)-1] {
			f.live = false
		}
		files[len(files)-1].live = true
	case err != nil:
		closeAll(kept)
		return nil, err
	case len(kept) > 0:
		files = merge(kept, files)
	}
	newest := files[len(files)-1]
	if req.Tail >= 0 {
		if files, err = applyTail(files, req.Tail); err != nil {
			return nil, err
		}
	}
	s := &stream{ctx: ctx, req: req, live: live, ctr: ctr, log: log, files: files,
		closed: make(chan struct{}), in: make([]byte, readBufSize), poll: minPoll}
	if req.Follow {
		s.chain = startChain(live, newest, log)
	}
	return s, nil
}

// Close ends a Read waiting for lines and closes the files. A followed
// stream that has not ended hands the files it has not read to their end
// to the container's next stream, with its chain, which goes on opening
// each new file until then: a rotated file that the daemon deletes
// meanwhile is still read whole (a refresh closes streams of readers that
// are behind).
func (s *stream) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	// A Read holds mu while it works, and returns at once after closed.
	s.mu.Lock()
	defer s.mu.Unlock()
	files, ch := s.files, s.chain
	s.files, s.chain = nil, nil
	keep := s.req.Follow && !s.ended && len(files) > 0
	for i := 0; keep && i < len(files); i++ {
		keep = files[i].rewind() == nil
	}
	if keep {
		s.ctr.keep(files, ch)
		return nil
	}
	if ch != nil {
		held, _ := ch.stopKeeping()
		files = append(files, held...)
	}
	closeAll(files)
	return nil
}

// Read hands out encoded entries. It waits only while following a file
// that has no new line, and returns io.EOF at the end of a read without
// follow, when the container stopped, was removed, or its files rotated
// past where a follow can continue with certainty (the reader then resumes
// from its position, as after any end of stream).
func (s *stream) Read(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		s.started = true
		s.tty = s.ctr.isTTY()
	}
	for {
		if s.outStart < len(s.out) {
			n := copy(p, s.out[s.outStart:])
			s.outStart += n
			return n, nil
		}
		select {
		case <-s.closed:
			return 0, errClosed
		default:
		}
		if err := s.ctx.Err(); err != nil {
			return 0, err
		}
		if s.ended {
			return 0, io.EOF
		}
		s.out, s.outStart = s.out[:0], 0
		wait, err := s.fill(len(p))
		if err != nil {
			return 0, err
		}
		if len(s.out) > 0 || !wait {
			continue
		}
		if err := s.sleep(); err != nil {
			return 0, err
		}
	}
}

// sleep waits for the next look at a followed file, without the lock.
func (s *stream) sleep() error {
	d := s.poll
	s.poll = min(2*s.poll, maxPoll)
	s.mu.Unlock()
	defer s.mu.Lock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-s.closed:
		return errClosed
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
}

// fill encodes entries into out until it holds want bytes or the files
// have nothing more now; wait reports that a followed file has nothing new.
func (s *stream) fill(want int) (wait bool, err error) {
	for len(s.out) < want {
		if s.nextLine() {
			s.poll = minPoll
			continue
		}
		if len(s.files) == 0 {
			s.ended = true
			return false, nil
		}
		cur := s.files[0]
		n, err := s.readMore(cur)
		if n > 0 {
			if s.chain != nil {
				// A reader that is behind runs often: it looks for new
				// files too, so they are opened even when the watcher's
				// goroutine waits for a CPU (at 30 ms a rotation, max-file=3
				// leaves a file 90 ms before it is deleted).
				s.chain.extend()
			}
			continue
		}
		if err != nil {
			return false, err
		}
		// At the end of cur.
		if !cur.live {
			s.endOfFile(cur)
			continue
		}
		if !s.req.Follow {
			s.ended = true
			return false, nil
		}
		if len(s.out) > 0 {
			return false, nil // hand over what is read before looking around
		}
		next, err := s.atLiveEnd(cur)
		switch {
		case err != nil:
			return false, err
		case next == followWait:
			return true, nil
		case next == followEnd:
			s.ended = true
			return false, nil
		}
	}
	return false, nil
}

// readMore reads from f into in, keeping what is not parsed. It returns
// the bytes read; 0 with a nil error is the end of the file for now.
func (s *stream) readMore(f *logFile) (int, error) {
	if s.inStart > 0 {
		s.inEnd = copy(s.in, s.in[s.inStart:s.inEnd])
		s.inStart = 0
	}
	if s.inEnd == len(s.in) {
		if len(s.in) >= maxLineBytes {
			// One line fills the buffer: not the driver's; skip it.
			s.skipLong(f)
		} else {
			s.in = append(s.in, make([]byte, len(s.in))...)
		}
	}
	n, err := f.r.Read(s.in[s.inEnd:])
	s.inEnd += n
	if errors.Is(err, io.EOF) {
		err = nil
	}
	if err != nil {
		return n, fmt.Errorf("read %s: %w", f.name, err)
	}
	return n, nil
}

func (s *stream) skipLong(f *logFile) {
	s.bad++
	s.log.WithField("file", f.name).Warnf("skipping a line longer than %d bytes: not a json-file entry", maxLineBytes)
	s.inStart, s.inEnd, s.discarding = 0, 0, true
}

// nextLine encodes the next complete line of in, if there is one.
func (s *stream) nextLine() bool {
	b := s.in[s.inStart:s.inEnd]
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return false
	}
	s.inStart += i + 1
	if s.discarding {
		s.discarding = false
		return true
	}
	s.encode(b[:i])
	return true
}

// encode appends one line as the logs API would send it, unless the
// request leaves it out.
func (s *stream) encode(line []byte) {
	f := s.files[0]
	if f.skip > 0 {
		f.skip--
		return
	}
	start := len(s.out)
	header := 0
	if !s.tty {
		header = frameHeaderLen
		s.out = append(s.out, 0, 0, 0, 0, 0, 0, 0, 0)
	}
	out, e, err := parseLine(s.out, line)
	if err != nil {
		s.out = s.out[:start]
		s.bad++
		if s.bad <= maxBadLogged {
			s.log.WithError(err).WithField("file", f.name).Warn("skipping a line that is not a json-file entry")
		}
		return
	}
	if (e.stream == capture.Stdout && !s.req.Stdout) || (e.stream == capture.Stderr && !s.req.Stderr) ||
		(s.req.Since != 0 && e.ts < s.req.Since) {
		s.out = out[:start]
		return
	}
	s.out = out
	if header > 0 {
		s.out[start] = byte(e.stream)
		binary.BigEndian.PutUint32(s.out[start+4:start+frameHeaderLen], uint32(len(out)-start-frameHeaderLen))
	}
}

// frameHeaderLen is the multiplexed stream's header: [stream, 0, 0, 0,
// size uint32 big-endian].
const frameHeaderLen = 8

// maxBadLogged bounds the warnings of one stream about malformed lines.
const maxBadLogged = 10

// endOfFile moves on from a file read to its end. Bytes after its last
// newline can never complete: the daemon writes whole lines and has closed
// the file.
func (s *stream) endOfFile(f *logFile) {
	if s.inEnd > s.inStart && !s.discarding {
		s.bad++
		s.log.WithField("file", f.name).Warnf("skipping %d bytes after the last line of a finished log file", s.inEnd-s.inStart)
	}
	s.inStart, s.inEnd, s.discarding = 0, 0, false
	if s.chain != nil {
		s.chain.release(f)
	} else {
		f.close()
	}
	s.files = s.files[1:]
}

type followNext int

const (
	followRead followNext = iota // read the file again
	followWait                   // nothing new: wait, then look again
	followEnd                    // end the stream
)

// atLiveEnd decides what follows the end of the live file: wait for more,
// read again (it was rotated or the container stopped, and the daemon may
// have written more before), move to the file that replaced it, or end.
func (s *stream) atLiveEnd(cur *logFile) (followNext, error) {
	info, err := os.Stat(s.live)
	switch {
	case err == nil && os.SameFile(info, cur.info):
		if off, serr := cur.f.Seek(0, io.SeekCurrent); serr == nil && info.Size() < off {
			// max-file=1 truncates the file in place: what was written
			// since the last read is gone, as it is for the daemon's
			// own readers.
			s.log.WithField("file", cur.name).Warn("log file truncated in place (max-file=1): lines written meanwhile may be lost")
			if _, err := cur.f.Seek(0, io.SeekStart); err != nil {
				return followEnd, fmt.Errorf("%s: %w", cur.name, err)
			}
			s.inStart, s.inEnd = 0, 0
			return followRead, nil
		}
		if s.ctr.isRunning() {
			s.stopping = false
			return followWait, nil
		}
		if !s.stopping {
			// Its last lines were written before it stopped, but maybe
			// after the read that found the end: read once more.
			s.stopping = true
			return followRead, nil
		}
		return followEnd, nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return followEnd, fmt.Errorf("%s: %w", s.live, err)
	}
	// Renamed or removed. The daemon closed it first, so one more read to
	// its end takes everything.
	if !cur.final {
		cur.final = true
		return followRead, nil
	}
	next, err := s.chain.next(cur)
	switch {
	case errors.Is(err, errNotCreated):
		return followWait, nil
	case err != nil:
		return followEnd, err
	case next == nil:
		if _, err := os.Stat(filepath.Dir(s.live)); errors.Is(err, fs.ErrNotExist) {
			// The container was removed: cur, read to its end, was
			// its last file.
			s.log.Debug("container removed, its log file is read to its end")
			return followEnd, nil
		}
		// The file after cur is not known for certain: it was compressed
		// or deleted before it could be opened. End; the reader resumes
		// from its position.
		s.log.WithField("file", cur.name).Warn("a rotated log file was gone before it could be opened; resuming from the last position")
		return followEnd, nil
	}
	s.endOfFile(cur)
	s.files = append(s.files, next)
	return followRead, nil
}
