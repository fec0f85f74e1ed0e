package jsonfile

import (
	"os"
	"path/filepath"
	"testing"
)

// Once a closed file is deleted (compressed, or rotated out), the file
// system may give its inode to a newer file: the inode alone must not
// make the newer file taken for it, or the reader skips the files between.
// The reuse is simulated by rewriting the closed file in place (one inode,
// other lines), which the file system's choice cannot make pass by luck.
func TestAClosedFileIsKnownByItsFirstLineNotOnlyByItsInode(t *testing.T) {
	for _, c := range []struct {
		name      string
		rewritten bool
		want      bool
	}{{"the same lines", false, true}, {"other lines in its inode", true, false}} {
		t.Run(c.name, func(t *testing.T) {
			live := filepath.Join(t.TempDir(), testID+"-json.log")
			const lines = `{"log":"a\n","stream":"stdout","time":"2026-12-02T06:00:00.000000001Z"}` + "\n" +
				`{"log":"b\n","stream":"stdout","time":"2026-12-02T06:00:00.000000002Z"}` + "\n"
			if err := os.WriteFile(live, []byte(lines), 0o640); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(live)
			if err != nil {
				t.Fatal(err)
			}
			info, err := f.Stat()
			if err != nil {
				t.Fatal(err)
			}
			cur := &logFile{f: f, r: f, name: live, info: info, live: true}
			ch := &chain{live: live, last: cur, log: quietLog()}
			ch.release(cur) // closed, its identity kept
			if cur.f != nil || cur.ident == nil {
				t.Fatalf("released: open %v, identity %v; want closed with an identity", cur.f != nil, cur.ident)
			}
			if c.rewritten {
				other := `{"log":"c\n","stream":"stdout","time":"2026-12-02T06:00:01.000000001Z"}` + "\n" + lines
				if err := os.WriteFile(live, []byte(other), 0o640); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Rename(live, live+".1"); err != nil {
				t.Fatal(err)
			}
			at, found := locate(live, cur)
			if found != c.want || (found && at.k != 1) {
				t.Fatalf("located %v at %d; want located %v at 1", found, at.k, c.want)
			}
		})
	}
}
