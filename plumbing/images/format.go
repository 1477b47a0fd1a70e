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
	case magic(0x8001, "CD001"):
		return "", fmt.Errorf("this is an ISO 9660 installer image, not a disk image; use a cloud image (qcow2 or raw)")
	case magic(0, "\x1f\x8b"):
		return "", fmt.Errorf("this is gzip-compressed; decompress it first (gunzip)")
	case magic(0, "\xfd7zXZ\x00"):
		return "", fmt.Errorf("this is xz-compressed; decompress it first (unxz)")
	case magic(0, "\x28\xb5\x2f\xfd"):
		return "", fmt.Errorf("this is zstd-compressed; decompress it first (unzstd)")
	case magic(0, "BZh"):
		return "", fmt.Errorf("this is bzip2-compressed; decompress it first (bunzip2)")
	case magic(0, "KDMV"):
		return "", fmt.Errorf("this is a VMDK image; convert it: qemu-img convert -O qcow2 IN OUT")
	case magic(0, "vhdxfile"):
		return "", fmt.Errorf("this is a VHDX image; convert it: qemu-img convert -O qcow2 IN OUT")
	case magic(0, "conectix"):
		return "", fmt.Errorf("this is a VHD image; convert it: qemu-img convert -O qcow2 IN OUT")
	case magic(0x40, "\x7f\x10\xda\xbe"):
		return "", fmt.Errorf("this is a VirtualBox VDI image; convert it: qemu-img convert -O qcow2 IN OUT")
	}
	return helperapi.FormatRaw, nil
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
