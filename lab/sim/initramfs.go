package sim

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// Initramfs is the content of an initial RAM file system: what the kernel
// unpacks into its root before it runs /init. Parent folders are added on
// their own; names are slash-separated, relative to the root.
type Initramfs struct {
	entries []cpioEntry
	names   map[string]bool
}

type cpioEntry struct {
	name         string
	mode         uint32 // type and permission bits, as in stat(2)
	data         []byte // file content, or a symlink's target
	major, minor uint32 // of a device node
}

// Types of stat(2)'s st_mode.
const (
	cpioModeDir  = 0o040000
	cpioModeReg  = 0o100000
	cpioModeLink = 0o120000
	cpioModeChr  = 0o020000
)

// AddFile adds a regular file.
func (r *Initramfs) AddFile(name string, data []byte, perm fs.FileMode) error {
	return r.add(cpioEntry{name: name, mode: cpioModeReg | uint32(perm.Perm()), data: data})
}

// AddHostFile adds the content of a file of this machine under name.
func (r *Initramfs) AddHostFile(name, hostPath string, perm fs.FileMode) error {
	data, err := os.ReadFile(hostPath)
	if err != nil {
		return fmt.Errorf("initramfs %s: %w", name, err)
	}
	return r.AddFile(name, data, perm)
}

// AddDir adds a folder (parents of other entries are added anyway).
func (r *Initramfs) AddDir(name string, perm fs.FileMode) error {
	return r.add(cpioEntry{name: name, mode: cpioModeDir | uint32(perm.Perm())})
}

// AddSymlink adds a symbolic link to target.
func (r *Initramfs) AddSymlink(name, target string) error {
	return r.add(cpioEntry{name: name, mode: cpioModeLink | 0o777, data: []byte(target)})
}

// AddCharDevice adds a character device node, such as dev/console (5, 1),
// which the kernel opens for /init's standard streams before any devtmpfs
// is mounted.
func (r *Initramfs) AddCharDevice(name string, major, minor uint32, perm fs.FileMode) error {
	return r.add(cpioEntry{name: name, mode: cpioModeChr | uint32(perm.Perm()), major: major, minor: minor})
}

func (r *Initramfs) add(e cpioEntry) error {
	name := path.Clean(strings.TrimPrefix(e.name, "/"))
	if name == "." || name == ".." || strings.HasPrefix(name, "../") {
		return fmt.Errorf("initramfs: bad name %q", e.name)
	}
	if r.names == nil {
		r.names = map[string]bool{}
	}
	if r.names[name] {
		return fmt.Errorf("initramfs %s: added twice", name)
	}
	if dir := path.Dir(name); dir != "." && !r.names[dir] {
		if err := r.add(cpioEntry{name: dir, mode: cpioModeDir | 0o755}); err != nil {
			return err
		}
	}
	e.name = name
	r.names[name] = true
	r.entries = append(r.entries, e)
	return nil
}

// WriteCPIO writes the entries as an uncompressed cpio archive in the
// "newc" format the kernel unpacks (see the kernel's
// Documentation/driver-api/early-userspace/buffer-format.rst). Timestamps
// and owners are zero, so equal content gives equal bytes.
func (r *Initramfs) WriteCPIO(w io.Writer) error {
	cw := &cpioWriter{w: w}
	for i, e := range r.entries {
		cw.entry(uint32(i+1), e)
	}
	cw.entry(0, cpioEntry{name: "TRAILER!!!"})
	return cw.err
}

type cpioWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (cw *cpioWriter) write(b []byte) {
	if cw.err != nil {
		return
	}
	n, err := cw.w.Write(b)
	cw.n += int64(n)
	cw.err = err
}

func (cw *cpioWriter) pad() {
	if rem := cw.n % 4; rem != 0 {
		cw.write(make([]byte, 4-rem))
	}
}

func (cw *cpioWriter) entry(ino uint32, e cpioEntry) {
	nlink := uint32(1)
	if e.mode&0o170000 == cpioModeDir {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, e.mode, 0, 0, nlink, 0, // ino mode uid gid nlink mtime
		len(e.data), 0, 0, // filesize devmajor devminor
		e.major, e.minor, // rdevmajor rdevminor
		len(e.name)+1, 0) // namesize (with its NUL) check
	cw.write([]byte(hdr))
	cw.write(append([]byte(e.name), 0))
	cw.pad()
	cw.write(e.data)
	cw.pad()
}

// WriteGzip writes the archive gzip-compressed, as the kernel takes it
// with -initrd.
func (r *Initramfs) WriteGzip(w io.Writer) error {
	zw := gzip.NewWriter(w)
	if err := r.WriteCPIO(zw); err != nil {
		return fmt.Errorf("write initramfs: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("write initramfs: %w", err)
	}
	return nil
}

// initramfsVersion changes the cache key when the format written changes.
const initramfsVersion = "initramfs-1"

// Cached returns the path of the gzip'd archive in cacheDir, writing it
// there unless an archive with the same content already is. The newest
// keep archives are kept, older ones removed.
func (r *Initramfs) Cached(ctx context.Context, cacheDir string, keep int) (string, error) {
	var raw bytes.Buffer
	if err := r.WriteCPIO(&raw); err != nil {
		return "", fmt.Errorf("initramfs: %w", err)
	}
	sum := sha256.Sum256(raw.Bytes())
	key := "initramfs-" + hex.EncodeToString(sum[:8])
	dir, err := Cached(ctx, cacheDir, key, initramfsVersion, func(dir string) error {
		f, err := os.Create(filepath.Join(dir, "initramfs.cpio.gz"))
		if err != nil {
			return err
		}
		zw := gzip.NewWriter(f)
		if _, err := zw.Write(raw.Bytes()); err != nil {
			f.Close()
			return err
		}
		if err := zw.Close(); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	})
	if err != nil {
		return "", err
	}
	if err := PruneCache(cacheDir, "initramfs-", keep); err != nil {
		return "", err
	}
	return filepath.Join(dir, "initramfs.cpio.gz"), nil
}

// Names lists the entries in archive order, for tests and logs.
func (r *Initramfs) Names() []string {
	names := make([]string, len(r.entries))
	for i, e := range r.entries {
		names[i] = e.name
	}
	return slices.Clip(names)
}
