package images

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/butter-cloud/butter/helperapi"
)

// sniffSize is how much of the start of a file detectFormat looks at: the
// ISO 9660 volume descriptor sits at 32 KiB + 1.
const sniffSize = 64 * 1024

// qcow2 incompatible feature bit 2: the guest data lives in an external
// file named in the header.
const qcow2ExternalData = 1 << 2

// detectFormat tells a disk image's format from its first bytes (up to
// sniffSize). It refuses what a VM cannot use as a base image as it is, and
// qcow2 images that point at other files: a backing file or external data
// file named inside an image would let its author read files of the host.
func detectFormat(head []byte, size int64) (helperapi.Format, error) {
	magic := func(off int, m string) bool {
		return len(head) >= off+len(m) && string(head[off:off+len(m)]) == m
	}
	switch {
	case size == 0:
		return "", fmt.Errorf("the file is empty")
	case magic(0, "QFI\xfb"):
		return helperapi.FormatQCOW2, checkQCOW2(head)
	}
	for _, f := range unusableFormats {
		if magic(f.offset, f.magic) {
			return "", fmt.Errorf("this is %s", f.what)
		}
	}
	return helperapi.FormatRaw, nil
}

// convertIt is how a refused image in another VM disk format is made one
// a VM can use.
const convertIt = "convert it: qemu-img convert -O qcow2 IN OUT"

// unusableFormats are files detectFormat refuses, by their magic bytes at
// offset: what they are, and what to do instead.
var unusableFormats = []struct {
	offset int
	magic  string
	what   string
}{
	{0x8001, "CD001", "an ISO 9660 installer image, not a disk image; use a cloud image (qcow2 or raw)"},
	{0, "\x1f\x8b", "gzip-compressed; decompress it first (gunzip)"},
	{0, "\xfd7zXZ\x00", "xz-compressed; decompress it first (unxz)"},
	{0, "\x28\xb5\x2f\xfd", "zstd-compressed; decompress it first (unzstd)"},
	{0, "BZh", "bzip2-compressed; decompress it first (bunzip2)"},
	{0, "KDMV", "a VMDK image; " + convertIt},
	{0, "vhdxfile", "a VHDX image; " + convertIt},
	{0, "conectix", "a VHD image; " + convertIt},
	{0x40, "\x7f\x10\xda\xbe", "a VirtualBox VDI image; " + convertIt},
}

func checkQCOW2(h []byte) error {
	if len(h) < 104 {
		return fmt.Errorf("qcow2 header is cut short")
	}
	be := binary.BigEndian
	version := be.Uint32(h[4:])
	if version != 2 && version != 3 {
		return fmt.Errorf("qcow2 version %d is not supported (2 or 3)", version)
	}
	if off := be.Uint64(h[8:]); off != 0 {
		name := ""
		// Both come from the image: off+n can wrap around, so compare
		// each with what is there.
		if n := uint64(be.Uint32(h[16:])); off <= uint64(len(h)) && n <= uint64(len(h))-off {
			name = string(bytes.ToValidUTF8(h[off:off+n], []byte("?")))
		}
		return fmt.Errorf("qcow2 image has a backing file %q; a base image must stand alone (qemu-img convert -O qcow2 IN OUT flattens it)", name)
	}
	if version == 3 && be.Uint64(h[72:])&qcow2ExternalData != 0 {
		return fmt.Errorf("qcow2 image keeps its data in an external file; a base image must stand alone (qemu-img convert -O qcow2 IN OUT)")
	}
	return nil
}
