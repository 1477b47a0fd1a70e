package sim

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

type readEntry struct {
	Name         string
	Mode         uint32
	Data         string
	Major, Minor uint32
}

// readCPIO is a reader for newc written straight from the format's
// description, independent of the writer.
func readCPIO(t *testing.T, b []byte) []readEntry {
	t.Helper()
	var out []readEntry
	off := 0
	align := func() { off = (off + 3) &^ 3 }
	for {
		if off+110 > len(b) {
			t.Fatalf("truncated header at %d", off)
		}
		h := b[off : off+110]
		if string(h[:6]) != "070701" {
			t.Fatalf("bad magic %q at %d", h[:6], off)
		}
		field := func(i int) uint32 {
			v, err := strconv.ParseUint(string(h[6+8*i:6+8*i+8]), 16, 32)
			if err != nil {
				t.Fatalf("field %d: %v", i, err)
			}
			return uint32(v)
		}
		mode, size, rmaj, rmin, nameSize := field(1), field(6), field(9), field(10), field(11)
		off += 110
		name := string(b[off : off+int(nameSize)-1])
		if b[off+int(nameSize)-1] != 0 {
			t.Fatalf("name %q not NUL-terminated", name)
		}
		off += int(nameSize)
		align()
		data := string(b[off : off+int(size)])
		off += int(size)
		align()
		if name == "TRAILER!!!" {
			if off != len(b) {
				t.Errorf("%d bytes after the trailer", len(b)-off)
			}
			return out
		}
		out = append(out, readEntry{name, mode, data, rmaj, rmin})
	}
}

func TestInitramfsCPIO(t *testing.T) {
	var r Initramfs
	okOrFatal(t, r.AddCharDevice("dev/console", 5, 1, 0o600))
	okOrFatal(t, r.AddFile("/init", []byte("#!/bin/sh\n"), 0o755))
	okOrFatal(t, r.AddFile("modules/a/b.ko", []byte("odd"), 0o644))
	okOrFatal(t, r.AddSymlink("bin/sh", "/init"))
	okOrFatal(t, r.AddDir("var/lib/butter", 0o700))
	if err := r.AddFile("init", nil, 0o755); err == nil {
		t.Error("a name added twice: no error")
	}
	if err := r.AddFile("../etc/passwd", nil, 0o644); err == nil {
		t.Error("a name outside the root: no error")
	}

	var buf bytes.Buffer
	okOrFatal(t, r.WriteCPIO(&buf))
	if buf.Len()%4 != 0 {
		t.Errorf("archive of %d bytes, not a multiple of 4", buf.Len())
	}
	want := []readEntry{
		{Name: "dev", Mode: 0o040755},
		{Name: "dev/console", Mode: 0o020600, Major: 5, Minor: 1},
		{Name: "init", Mode: 0o100755, Data: "#!/bin/sh\n"},
		{Name: "modules", Mode: 0o040755},
		{Name: "modules/a", Mode: 0o040755},
		{Name: "modules/a/b.ko", Mode: 0o100644, Data: "odd"},
		{Name: "bin", Mode: 0o040755},
		{Name: "bin/sh", Mode: 0o120777, Data: "/init"},
		{Name: "var", Mode: 0o040755},
		{Name: "var/lib", Mode: 0o040755},
		{Name: "var/lib/butter", Mode: 0o040700},
	}
	if diff := cmp.Diff(want, readCPIO(t, buf.Bytes())); diff != "" {
		t.Errorf("archive (-want +got):\n%s", diff)
	}

	// The first header, spelled out: ino 1, a folder, nlink 2, name "dev".
	wantHdr := "070701" + "00000001" + "000041ed" + "00000000" + "00000000" + "00000002" + "00000000" +
		"00000000" + "00000000" + "00000000" + "00000000" + "00000000" + "00000004" + "00000000" + "dev\x00"
	if got := buf.String()[:len(wantHdr)]; got != wantHdr {
		t.Errorf("first header\n got %q\nwant %q", got, wantHdr)
	}

	var again bytes.Buffer
	okOrFatal(t, r.WriteCPIO(&again))
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Error("writing twice gave different bytes")
	}

	var gz bytes.Buffer
	okOrFatal(t, r.WriteGzip(&gz))
	zr, err := gzip.NewReader(&gz)
	okOrFatal(t, err)
	unzipped, err := io.ReadAll(zr)
	okOrFatal(t, err)
	if !bytes.Equal(unzipped, buf.Bytes()) {
		t.Error("the gzip'd archive does not hold the cpio archive")
	}
}

// GNU cpio, when installed, must read what we write.
func TestInitramfsGNUCPIO(t *testing.T) {
	bin, err := exec.LookPath("cpio")
	if err != nil {
		t.Skip("GNU cpio not installed")
	}
	var r Initramfs
	okOrFatal(t, r.AddFile("init", []byte("hello"), 0o755))
	okOrFatal(t, r.AddFile("a/b/c", bytes.Repeat([]byte("x"), 1001), 0o644))
	okOrFatal(t, r.AddSymlink("a/l", "b/c"))
	var buf bytes.Buffer
	okOrFatal(t, r.WriteCPIO(&buf))
	dir := t.TempDir()
	cmd := exec.Command(bin, "-idm", "--quiet", "--no-absolute-filenames")
	cmd.Dir = dir
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio: %v\n%s", err, out)
	}
	for name, want := range map[string]string{"init": "hello", "a/b/c": strings.Repeat("x", 1001), "a/l": strings.Repeat("x", 1001)} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Error(err)
			continue
		}
		if string(got) != want {
			t.Errorf("%s: %s", name, fmt.Sprintf("%.20q…", got))
		}
	}
}

func TestInitramfsCached(t *testing.T) {
	dir := t.TempDir()
	paths := map[string]bool{}
	for i := range 4 {
		var r Initramfs
		okOrFatal(t, r.AddFile("init", []byte(strconv.Itoa(i%3)), 0o755))
		p, err := r.Cached(t.Context(), dir, 2)
		okOrFatal(t, err)
		paths[p] = true
	}
	if len(paths) != 3 {
		t.Errorf("%d distinct archives for 3 distinct contents", len(paths))
	}
	left, _ := filepath.Glob(filepath.Join(dir, "initramfs-*[^k]")) // not the .lock files
	var dirs int
	for _, l := range left {
		if fi, err := os.Stat(l); err == nil && fi.IsDir() {
			dirs++
		}
	}
	if dirs != 2 {
		t.Errorf("%d archives kept, want 2: %v", dirs, left)
	}
}
