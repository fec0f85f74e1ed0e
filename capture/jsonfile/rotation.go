package jsonfile

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
)

// Finding the file that followed a rotated one. A rotation renames from
// the oldest name down (.N-1 to .N, ..., .1 to .2, the live file to .1)
// and then creates the live file, so the file after the one at .k is the
// one at .k-1 (the live file after .1), and if .k still holds it after
// .k-1 was opened, no rename came between. A plain file keeps its identity
// through renames; once compressed, .k.gz is a new file, recognised by its
// uncompressed size (the gzip trailer) and its first line. The daemon
// also writes a stamp into the gzip header ({"lastTime": ...}), but it is
// not used: Docker 20.10 reads it from the log writer after the rotation,
// from a goroutine, so under load it can be the stamp of a later line.

// errNotCreated: the daemon is between renaming the live file and
// creating it again.
var errNotCreated = errors.New("live log file not created yet")

// maxRotatedLook bounds the rotated names searched for a followed file.
const maxRotatedLook = 100

// place is where a rotated file was found.
type place struct {
	k    int
	name string
	info os.FileInfo // of the file at name when it was found
}

// openNext opens the file that followed cur, which was rotated: the live
// file, or a rotated one, which is then final. It returns nil when that
// file is not known for certain (cur was removed with its container, or
// rotated out after more rotations than were seen). errChanged: a rotation
// moved the names meanwhile; errNotCreated: the live file is not there yet.
func openNext(live string, cur *logFile) (*logFile, error) {
	at, ok := locate(live, cur)
	if !ok {
		return nil, nil
	}
	names := []string{live}
	if at.k > 1 {
		prev := live + "." + strconv.Itoa(at.k-1)
		names = []string{prev, prev + ".gz"} // .k-1 while its compression is under way
	}
	var f *os.File
	var name string
	var err error
	for _, name = range names {
		if f, err = os.Open(name); !errors.Is(err, fs.ErrNotExist) {
			break
		}
	}
	switch {
	case errors.Is(err, fs.ErrNotExist) && at.k == 1:
		return nil, errNotCreated
	case errors.Is(err, fs.ErrNotExist):
		return nil, errChanged
	case err != nil:
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if again, err := os.Stat(at.name); err != nil || !os.SameFile(again, at.info) {
		f.Close()
		return nil, errChanged
	}
	next := &logFile{f: f, r: f, name: name, info: info, live: true, final: at.k > 1}
	if next.gz = len(name) > 3 && name[len(name)-3:] == ".gz"; next.gz {
		if next.r, err = gzip.NewReader(f); err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	return next, nil
}

// locate finds cur among the rotated files. It looks at every rotated
// name there is, not only up to the first missing one: a rotation renames
// .1 to .2 before it renames the live file to .1, so a look in between
// finds no .1 while cur may be at .2.
func locate(live string, cur *logFile) (place, bool) {
	plain, gz, top, err := rotatedSets(live)
	if err != nil {
		return place{}, false
	}
	var id identity
	identified := false
	for k := 1; k <= min(top, maxRotatedLook); k++ {
		name := live + "." + strconv.Itoa(k)
		if plain[k] {
			if fi, err := os.Stat(name); err == nil && isFile(name, fi, cur) {
				return place{k, name, fi}, true
			}
		}
		if !gz[k] {
			continue
		}
		name += ".gz"
		fi, err := os.Stat(name)
		if err != nil {
			continue
		}
		if cur.gz {
			if isFile(name, fi, cur) {
				return place{k, name, fi}, true
			}
			continue
		}
		if !identified {
			if id, identified = identify(cur); !identified {
				return place{}, false
			}
		}
		if compressedFrom(name, fi, id) {
			return place{k, name, fi}, true
		}
	}
	return place{}, false
}

// isFile reports whether the file at name, whose info is fi, is cur. An
// open file's inode is its own; a closed one's may have been given to a
// newer file once the daemon deleted it (after compressing it, or
// rotating it out), so a closed plain file must also begin with the
// first line it had, and a closed compressed one, which keeps none, is
// not recognised.
func isFile(name string, fi os.FileInfo, cur *logFile) bool {
	if !os.SameFile(fi, cur.info) {
		return false
	}
	if cur.f != nil {
		return true
	}
	if cur.gz || cur.ident == nil || fi.Size() < cur.ident.size {
		return false
	}
	f, err := os.Open(name)
	if err != nil {
		return false
	}
	defer f.Close()
	head := make([]byte, len(cur.ident.head))
	if _, err := f.ReadAt(head, 0); err != nil {
		return false
	}
	return bytes.Equal(head, cur.ident.head)
}

// identify tells what a rotated plain file's compressed copy will hold.
func identify(f *logFile) (identity, bool) {
	if f.ident != nil {
		return *f.ident, true
	}
	if f.f == nil {
		return identity{}, false
	}
	// Its size now: the info kept is from when it was opened, and it
	// grew until the daemon rotated it.
	now, err := f.f.Stat()
	if err != nil || now.Size() == 0 {
		return identity{}, false
	}
	head := make([]byte, min(now.Size(), maxHeadBytes))
	if _, err := f.f.ReadAt(head, 0); err != nil && !errors.Is(err, io.EOF) {
		return identity{}, false
	}
	if i := bytes.IndexByte(head, '\n'); i >= 0 {
		head = head[:i+1]
	}
	return identity{size: now.Size(), head: head}, true
}

// maxHeadBytes bounds the first line kept to identify a file: enough for
// the stamp at the end of any line of a 16 KiB piece, escaped.
const maxHeadBytes = 128 << 10

// compressedFrom reports whether the gzip file name holds the file id
// identifies.
func compressedFrom(name string, info os.FileInfo, id identity) bool {
	f, err := os.Open(name)
	if err != nil {
		return false
	}
	defer f.Close()
	var trailer [4]byte // ISIZE: the uncompressed size modulo 2^32
	if info.Size() < int64(len(trailer)) {
		return false
	}
	if _, err := f.ReadAt(trailer[:], info.Size()-4); err != nil || binary.LittleEndian.Uint32(trailer[:]) != uint32(id.size) {
		return false
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		return false
	}
	head := make([]byte, len(id.head))
	if _, err := io.ReadFull(zr, head); err != nil {
		return false
	}
	return bytes.Equal(head, id.head)
}
