package cloudinit

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/butter-cloud/butter/internal/testbed"
	"github.com/butter-cloud/butter/lab/sim"

	"github.com/diskfs/go-diskfs/filesystem/iso9660"
	"github.com/google/go-cmp/cmp"
)

func seedISO(t *testing.T) (Seed, map[string][]byte, []byte) {
	t.Helper()
	s := goldenSeeds["fqdn-user-two-keys"]()
	files, err := s.Files()
	if err != nil {
		t.Fatal(err)
	}
	img, err := s.ISO()
	if err != nil {
		t.Fatal(err)
	}
	if len(img)%2048 != 0 {
		t.Errorf("image is %d bytes, not whole 2048-byte sectors", len(img))
	}
	return s, files, img
}

// TestISORoundTripDiskfs reads the image back with go-diskfs, which writes it.
func TestISORoundTripDiskfs(t *testing.T) {
	_, want, img := seedISO(t)
	fsys, err := iso9660.Read(&memImage{buf: img}, int64(len(img)), 0, 2048)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimRight(fsys.Label(), " \x00"); got != VolumeLabel {
		t.Errorf("label = %q, want %q", got, VolumeLabel)
	}
	entries, err := fsys.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]byte{}
	for _, e := range entries {
		b, err := fsys.ReadFile(e.Name())
		if err != nil {
			t.Fatalf("read %s: %v", e.Name(), err)
		}
		got[e.Name()] = b
	}
	if diff := cmp.Diff(stringMap(want), stringMap(got)); diff != "" {
		t.Errorf("files read back by go-diskfs (-want +got):\n%s", diff)
	}
}

// TestISORoundTripRockRidge reads the image with a reader of its own, as
// Linux's isofs does: the names must come from Rock Ridge NM entries
// (lower-case, with their dashes), and the Joliet tree must have the same
// names, for readers that prefer Joliet.
func TestISORoundTripRockRidge(t *testing.T) {
	_, want, img := seedISO(t)
	for _, tree := range []struct {
		name   string
		sector int
	}{{"Rock Ridge", 16}, {"Joliet", 17}} {
		got, err := readISOTree(img, tree.sector)
		if err != nil {
			t.Fatalf("%s: %v", tree.name, err)
		}
		if diff := cmp.Diff(stringMap(want), stringMap(got)); diff != "" {
			t.Errorf("files read back by their %s names (-want +got):\n%s", tree.name, diff)
		}
	}
	if got := strings.TrimRight(string(img[16*2048+40:16*2048+72]), " \x00"); got != VolumeLabel {
		t.Errorf("volume identifier = %q, want %q", got, VolumeLabel)
	}
}

// readISOTree reads the root folder of the volume whose descriptor is at
// sector: the primary one (16), by Rock Ridge names, or the Joliet one
// (17), by its UCS-2 names.
func readISOTree(img []byte, sector int) (map[string][]byte, error) {
	const ss = 2048
	if len(img) < (sector+1)*ss {
		return nil, fmt.Errorf("image of %d bytes has no sector %d", len(img), sector)
	}
	vd := img[sector*ss : (sector+1)*ss]
	joliet := vd[0] == 2
	switch {
	case string(vd[1:6]) != "CD001":
		return nil, fmt.Errorf("sector %d: no volume descriptor", sector)
	case sector == 16 && vd[0] != 1:
		return nil, fmt.Errorf("sector 16: type %d, want a primary volume descriptor", vd[0])
	case sector != 16 && (!joliet || !bytes.HasPrefix(vd[88:], []byte("%/"))):
		return nil, fmt.Errorf("sector %d: not a Joliet supplementary volume descriptor", sector)
	}
	extent := func(rec []byte) []byte {
		lba := int(binary.LittleEndian.Uint32(rec[2:]))
		size := int(binary.LittleEndian.Uint32(rec[10:]))
		if lba*ss+size > len(img) {
			return nil
		}
		return img[lba*ss : lba*ss+size]
	}
	dir := extent(vd[156:190])
	files := map[string][]byte{}
	sawSP := false
	for off := 0; off < len(dir); {
		n := int(dir[off])
		if n == 0 { // the rest of this sector is padding
			off = (off/ss + 1) * ss
			continue
		}
		if off+n > len(dir) || n < 34 {
			return nil, fmt.Errorf("directory record at %d: bad length %d", off, n)
		}
		rec := dir[off : off+n]
		off += n
		nameLen := int(rec[32])
		id := rec[33 : 33+nameLen]
		su := rec[33+nameLen+(1-nameLen%2):]            // System Use, after the padding byte
		if nameLen == 1 && (id[0] == 0 || id[0] == 1) { // . and ..
			if id[0] == 0 && len(su) >= 7 && string(su[:2]) == "SP" && su[4] == 0xbe && su[5] == 0xef {
				sawSP = true
			}
			continue
		}
		var name string
		if joliet {
			u := make([]uint16, nameLen/2)
			for i := range u {
				u[i] = binary.BigEndian.Uint16(id[2*i:])
			}
			name = strings.TrimSuffix(string(utf16.Decode(u)), ";1")
		} else {
			for len(su) >= 4 && int(su[2]) >= 4 && int(su[2]) <= len(su) {
				if string(su[:2]) == "NM" && su[2] >= 5 {
					name += string(su[5:su[2]])
				}
				su = su[su[2]:]
			}
			if name == "" {
				return nil, fmt.Errorf("file %q has no Rock Ridge name", id)
			}
		}
		files[name] = extent(rec)
	}
	if !joliet && !sawSP {
		return nil, errors.New("root folder has no SUSP SP entry: no Rock Ridge")
	}
	return files, nil
}

// TestISOBlkid asks util-linux's blkid (what cloud-init asks) for the label
// of the image file.
func TestISOBlkid(t *testing.T) {
	testbed.NeedPrograms(t, "blkid")
	blkid, _ := sim.LookPath("blkid")
	_, _, img := seedISO(t)
	path := filepath.Join(t.TempDir(), "cidata.iso")
	if err := os.WriteFile(path, img, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, blkid, "-p", "-o", "export", path).CombinedOutput()
	if err != nil {
		t.Fatalf("blkid: %v: %s", err, out)
	}
	for _, w := range []string{"LABEL=cidata", "TYPE=iso9660"} {
		if !slices.Contains(strings.Fields(string(out)), w) {
			t.Errorf("blkid says\n%s\nwant %s", out, w)
		}
	}
}

// TestISOMount mounts the image through a loop device and lists it with
// the kernel's own isofs. The kernel must have iso9660: this lab's host
// kernel has none and cannot load modules, so there it is skipped even in
// CI; the real cloud-init tier (boot_linux_test.go) mounts the seed with
// Debian's kernel instead.
func TestISOMount(t *testing.T) {
	testbed.NeedRoot(t)
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skip("no /dev/loop-control: loop devices are unavailable here")
	}
	fss, err := os.ReadFile("/proc/filesystems")
	if err != nil || !slices.Contains(strings.Fields(string(fss)), "iso9660") {
		t.Skip("this kernel has no iso9660 file system (not in /proc/filesystems)")
	}
	_, want, img := seedISO(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "cidata.iso")
	if err := os.WriteFile(path, img, 0o644); err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "mount", "-o", "loop,ro", path, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount: %v: %s", err, out)
		}
	})
	entries, err := os.ReadDir(mnt)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]byte{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(mnt, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		got[e.Name()] = b
	}
	if diff := cmp.Diff(stringMap(want), stringMap(got)); diff != "" {
		t.Errorf("files in the mounted image (-want +got):\n%s", diff)
	}
}

func TestWriteISO(t *testing.T) {
	s, _, _ := seedISO(t)
	var buf bytes.Buffer
	if err := s.WriteISO(&buf); err != nil {
		t.Fatal(err)
	}
	if buf.Len() == 0 || buf.Len()%2048 != 0 || !bytes.Equal(buf.Bytes()[16*2048+1:16*2048+6], []byte("CD001")) {
		t.Errorf("WriteISO wrote %d bytes, not an ISO 9660 image", buf.Len())
	}
}

func TestPadImage(t *testing.T) {
	pvd := make([]byte, 17*2048+10)
	copy(pvd[16*2048:], "\x01CD001")
	pvd[16*2048+80] = 20 // volume space: 20 blocks
	pvd[16*2048+128] = 0 // of 2048 bytes
	pvd[16*2048+129] = 8
	if got := len(padImage(pvd)); got != 20*2048 {
		t.Errorf("padded to %d bytes, want %d", got, 20*2048)
	}
	if got := len(padImage(make([]byte, 3000))); got != 4096 {
		t.Errorf("padded to %d bytes, want 4096", got)
	}
}

func stringMap(m map[string][]byte) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = string(v)
	}
	return out
}
