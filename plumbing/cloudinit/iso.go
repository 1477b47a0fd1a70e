package cloudinit

// The seed image is written with github.com/diskfs/go-diskfs (MIT, actively
// maintained, used by LinuxKit and others). Its ISO 9660 writer emits Rock
// Ridge (RRIP 1.12: NM entries carrying the real, lower-case names) and,
// on request, Joliet, so Linux's isofs shows meta-data, user-data and
// network-config as they are. github.com/kdomanski/iso9660, the other pure
// Go writer, reads Rock Ridge but writes only plain ISO 9660 names, mangled
// to upper-case d-characters (META_DATA), which cloud-init cannot find.
// go-diskfs stages the files in a temporary folder and writes the image
// through a backend; ours keeps it in memory.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/diskfs/go-diskfs/backend"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
)

// VolumeLabel is the label cloud-init's NoCloud data source looks for.
const VolumeLabel = "cidata"

// Seed file names on the image.
const (
	MetaDataFile      = "meta-data"
	UserDataFile      = "user-data"
	NetworkConfigFile = "network-config"
)

// Files returns the seed's documents by file name.
func (s Seed) Files() (map[string][]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	for name, doc := range map[string]func() ([]byte, error){
		MetaDataFile:      s.MetaData,
		UserDataFile:      s.UserData,
		NetworkConfigFile: s.NetworkConfig,
	} {
		b, err := doc()
		if err != nil {
			return nil, fmt.Errorf("seed %s: %w", name, err)
		}
		files[name] = b
	}
	return files, nil
}

// ISO returns the NoCloud seed image: ISO 9660 with Rock Ridge and Joliet
// names, labelled cidata, holding meta-data, user-data and network-config.
// Attach it to the VM as a CD-ROM or a read-only disk.
func (s Seed) ISO() ([]byte, error) {
	files, err := s.Files()
	if err != nil {
		return nil, err
	}
	workspace, err := os.MkdirTemp("", "butter-cidata-")
	if err != nil {
		return nil, fmt.Errorf("seed image: %w", err)
	}
	defer os.RemoveAll(workspace)

	img := &memImage{}
	iso, err := iso9660.Create(img, 0, 0, 2048, workspace)
	if err != nil {
		return nil, fmt.Errorf("seed image: %w", err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(workspace, name), data, 0o644); err != nil {
			return nil, fmt.Errorf("seed image %s: %w", name, err)
		}
	}
	if err := iso.Finalize(iso9660.FinalizeOptions{
		RockRidge:        true,
		Joliet:           true,
		VolumeIdentifier: VolumeLabel,
	}); err != nil {
		return nil, fmt.Errorf("seed image: write ISO 9660: %w", err)
	}
	return padImage(img.buf), nil
}

// padImage extends an image to the volume space size its primary volume
// descriptor records, and to whole sectors: go-diskfs may stop short of
// its last sector, which a CD-ROM drive (qemu's too) would then cut off.
func padImage(b []byte) []byte {
	const sector = 2048
	size := len(b)
	if pvd := 16 * sector; len(b) >= pvd+sector && string(b[pvd+1:pvd+6]) == "CD001" {
		blocks := int(binary.LittleEndian.Uint32(b[pvd+80:]))
		blockSize := int(binary.LittleEndian.Uint16(b[pvd+128:]))
		size = max(size, blocks*blockSize)
	}
	size = (size + sector - 1) / sector * sector
	return append(b, make([]byte, size-len(b))...)
}

// WriteISO writes the seed image (see ISO) to w.
func (s Seed) WriteISO(w io.Writer) error {
	b, err := s.ISO()
	if err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write seed image: %w", err)
	}
	return nil
}

// memImage is a go-diskfs backend.Storage in memory.
type memImage struct {
	buf []byte
	off int64
}

var (
	_ backend.Storage      = (*memImage)(nil)
	_ backend.WritableFile = (*memImage)(nil)
)

func (m *memImage) Stat() (fs.FileInfo, error) { return memInfo{size: int64(len(m.buf))}, nil }
func (m *memImage) Close() error               { return nil }
func (m *memImage) Path() string               { return "" }

func (m *memImage) Sys() (*os.File, error) {
	return nil, errors.New("in-memory image has no file")
}

func (m *memImage) Writable() (backend.WritableFile, error) { return m, nil }

func (m *memImage) Read(p []byte) (int, error) {
	n, err := m.ReadAt(p, m.off)
	m.off += int64(n)
	return n, err
}

func (m *memImage) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read at %d: negative offset", off)
	}
	if off >= int64(len(m.buf)) {
		return 0, io.EOF
	}
	n := copy(p, m.buf[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memImage) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("write at %d: negative offset", off)
	}
	if end := off + int64(len(p)); end > int64(len(m.buf)) {
		m.buf = append(m.buf, make([]byte, end-int64(len(m.buf)))...)
	}
	return copy(m.buf[off:], p), nil
}

func (m *memImage) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = m.off + offset
	case io.SeekEnd:
		abs = int64(len(m.buf)) + offset
	default:
		return 0, fmt.Errorf("seek: whence %d", whence)
	}
	if abs < 0 {
		return 0, fmt.Errorf("seek to %d: negative position", abs)
	}
	m.off = abs
	return abs, nil
}

type memInfo struct{ size int64 }

func (i memInfo) Name() string       { return "cidata.iso" }
func (i memInfo) Size() int64        { return i.size }
func (i memInfo) Mode() fs.FileMode  { return 0o444 }
func (i memInfo) ModTime() time.Time { return time.Time{} }
func (i memInfo) IsDir() bool        { return false }
func (i memInfo) Sys() any           { return nil }
