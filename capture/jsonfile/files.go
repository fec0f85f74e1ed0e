package jsonfile

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// A container's json-file log is its live file <id>-json.log and, with
// max-file > 1, the files rotated out of it: <id>-json.log.1 (the newest)
// up to .<max-file - 1>. With compress=true the daemon rotates the live file
// to .1, then writes .1.gz next to it and removes .1 once .1.gz is
// complete, and older files are .N.gz. The daemon closes the live file
// before it renames it, so a rotated file is complete.

// logFile is one of a container's log files, opened.
type logFile struct {
	f    *os.File
	r    io.Reader // f, or a gzip reader over f
	name string
	info os.FileInfo // of f, for os.SameFile
	gz   bool
	// skip is how many entries at the start of a compressed file a tail
	// window leaves out (an uncompressed one is read from an offset).
	skip int
	// live is the container's current file, which grows while followed.
	live bool
	// final: the live file was renamed or removed, so the daemon has
	// closed it and what it holds is all it will hold.
	final bool
	// ident is what tells a compressed copy of it apart, kept when it is
	// closed while a chain still needs it (see chain.release).
	ident *identity
}

// identity of a rotated plain file, to recognise its compressed copy: its
// size and its first line (whose nanosecond stamp no other file of the
// container has).
type identity struct {
	size int64
	head []byte
}

// rewind moves l back to its start, for a stream that reads it again.
func (l *logFile) rewind() error {
	if l.f == nil {
		return os.ErrClosed
	}
	if _, err := l.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	l.skip, l.final = 0, false
	if !l.gz {
		l.r = l.f
		return nil
	}
	zr, err := gzip.NewReader(l.f)
	if err != nil {
		return err
	}
	l.r = zr
	return nil
}

func (l *logFile) close() {
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
}

// snapshotAttempts bounds the retries of a snapshot that a rotation
// changed while it was opened; a rotation renames a few files in
// microseconds, so a handful of attempts meets a quiet moment.
const snapshotAttempts = 20

// errRotating: every snapshot attempt met a rotation.
var errRotating = errors.New("log files kept changing while opened")

// openSnapshot opens the container's log files, oldest first, the live
// file last. It retries until no rotation changed the set while it opened
// it. The error wraps fs.ErrNotExist when there is no live file.
func openSnapshot(live string) ([]*logFile, error) {
	for range snapshotAttempts {
		files, err := openOnce(live)
		if errors.Is(err, errChanged) {
			continue
		}
		return files, err
	}
	return nil, fmt.Errorf("%s: %w", live, errRotating)
}

var errChanged = errors.New("log files changed while opened")

func openOnce(live string) ([]*logFile, error) {
	names, err := rotatedNames(live)
	if err != nil {
		return nil, err
	}
	names = append(names, live)
	files := make([]*logFile, 0, len(names))
	fail := func(err error) ([]*logFile, error) {
		for _, f := range files {
			f.close()
		}
		return nil, err
	}
	for i, name := range names {
		f, err := os.Open(name)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && (i < len(names)-1 || rotatingNow(live)) {
				return fail(errChanged) // renamed or compressed meanwhile
			}
			return fail(err)
		}
		info, err := f.Stat()
		if err != nil {
			f.Close()
			return fail(err)
		}
		lf := &logFile{f: f, r: f, name: name, info: info, gz: strings.HasSuffix(name, ".gz"), live: i == len(names)-1}
		files = append(files, lf)
		if lf.gz {
			if lf.r, err = gzip.NewReader(f); err != nil {
				return fail(fmt.Errorf("%s: %w", name, err))
			}
		}
	}
	// Nothing renamed since: each name still holds the file opened.
	again, err := rotatedNames(live)
	if err != nil || !slices.Equal(again, names[:len(names)-1]) {
		return fail(errChanged)
	}
	for _, lf := range files {
		info, err := os.Stat(lf.name)
		if err != nil || !os.SameFile(info, lf.info) {
			return fail(errChanged)
		}
	}
	return files, nil
}

// rotatingNow reports whether the live file is missing only because the
// daemon is between renaming it to .1 and creating it again.
func rotatingNow(live string) bool {
	_, err := os.Stat(live + ".1")
	return err == nil
}

// rotatedNames lists the rotated files, oldest first. Where both .N and
// .N.gz exist the compression of .N is under way, and .N is the complete
// one.
func rotatedNames(live string) ([]string, error) {
	plain, gz, top, err := rotatedSets(live)
	if err != nil {
		return nil, err
	}
	var names []string
	for n := top; n >= 1; n-- {
		switch {
		case plain[n]:
			names = append(names, live+"."+strconv.Itoa(n))
		case gz[n]:
			names = append(names, live+"."+strconv.Itoa(n)+".gz")
		}
	}
	return names, nil
}

// rotatedSets lists the numbers N of the rotated files there are, plain
// (.N) and compressed (.N.gz), and the highest.
func rotatedSets(live string) (plain, gz map[int]bool, top int, err error) {
	dir, base := filepath.Split(live)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, 0, err
	}
	plain, gz = map[int]bool{}, map[int]bool{}
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), base+".")
		if !ok {
			continue
		}
		set := plain
		if r, ok := strings.CutSuffix(rest, ".gz"); ok {
			rest, set = r, gz
		}
		n, err := strconv.Atoi(rest)
		if err != nil || n < 1 || strconv.Itoa(n) != rest {
			continue
		}
		set[n] = true
		top = max(top, n)
	}
	return plain, gz, top, nil
}

// tailBlock is how much of a file one backward read takes while counting
// entries from its end.
const tailBlock = 64 << 10

// applyTail keeps the last n entries of files (oldest first), counted
// across files as the daemon counts them: whole lines of the json-file log,
// so a long line's pieces count one each. Files before the window are
// closed and dropped; the first kept one is positioned at the window's
// start. A trailing line without '\n' in the live file is not written yet
// and not counted.
func applyTail(files []*logFile, n int) ([]*logFile, error) {
	if n == 0 {
		// Nothing of the past: the live file from the end of its last
		// complete line.
		live := files[len(files)-1]
		for _, f := range files[:len(files)-1] {
			f.close()
		}
		off, err := lastLineEnd(live.f, live.info.Size())
		if err == nil {
			_, err = live.f.Seek(off, io.SeekStart)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", live.name, err)
		}
		return files[len(files)-1:], nil
	}
	need := n
	for i := len(files) - 1; i >= 0; i-- {
		lf := files[i]
		if need == 0 {
			for _, f := range files[:i+1] {
				f.close()
			}
			return files[i+1:], nil
		}
		if lf.gz {
			count, err := countLines(lf)
			if err != nil {
				return nil, err
			}
			if count >= need {
				lf.skip = count - need
				for _, f := range files[:i] {
					f.close()
				}
				return files[i:], nil
			}
			need -= count
			continue
		}
		off, found, err := backwardStart(lf.f, lf.info.Size(), need)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", lf.name, err)
		}
		if found == need {
			if _, err := lf.f.Seek(off, io.SeekStart); err != nil {
				return nil, fmt.Errorf("%s: %w", lf.name, err)
			}
			for _, f := range files[:i] {
				f.close()
			}
			return files[i:], nil
		}
		need -= found
	}
	return files, nil
}

// backwardStart finds where the last n complete lines of f (size bytes)
// begin, reading backwards; found is how many it found (n, or all there are
// when fewer, then off is 0).
func backwardStart(f *os.File, size int64, n int) (off int64, found int, err error) {
	buf := make([]byte, tailBlock)
	end := size
	// Newlines seen from the end; the first ends the last complete line,
	// and the (n+1)th ends the line before the window.
	seen := 0
	first := true
	for end > 0 {
		start := max(0, end-tailBlock)
		b := buf[:end-start]
		if _, err := f.ReadAt(b, start); err != nil && !errors.Is(err, io.EOF) {
			return 0, 0, err
		}
		for i := len(b) - 1; i >= 0; i-- {
			if b[i] != '\n' {
				continue
			}
			if first {
				// Bytes after the last newline are a line being written.
				first = false
				seen++
				continue
			}
			if seen == n {
				return start + int64(i) + 1, n, nil
			}
			seen++
		}
		end = start
	}
	return 0, seen, nil
}

// lastLineEnd is the offset after the last '\n' of f, 0 when it has none.
func lastLineEnd(f *os.File, size int64) (int64, error) {
	buf := make([]byte, tailBlock)
	for end := size; end > 0; {
		start := max(0, end-tailBlock)
		b := buf[:end-start]
		if _, err := f.ReadAt(b, start); err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
			return start + int64(i) + 1, nil
		}
		end = start
	}
	return 0, nil
}

// countLines counts the entries of a compressed file and rewinds it.
func countLines(lf *logFile) (int, error) {
	buf := make([]byte, tailBlock)
	count := 0
	for {
		n, err := lf.r.Read(buf)
		count += bytes.Count(buf[:n], []byte{'\n'})
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("%s: %w", lf.name, err)
		}
	}
	if _, err := lf.f.Seek(0, io.SeekStart); err != nil {
		return 0, fmt.Errorf("%s: %w", lf.name, err)
	}
	zr, err := gzip.NewReader(lf.f)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", lf.name, err)
	}
	lf.r = zr
	return count, nil
}
