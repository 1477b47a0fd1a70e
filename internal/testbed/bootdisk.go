package testbed

// This file lays out the cloud image's disk as grub-install and fdisk
// would: GRUB's configuration and core image, and the MBR with its
// partition table, written in Go.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/butter-cloud/butter/lab/sim"
)

// The disk's layout: sectors of 512 bytes, the MBR in sector 0, GRUB's
// core image from sector 1 and the one partition from sector 2048 (1 MiB,
// as fdisk and the official images place it).
const (
	sectorSize = 512
	partStart  = 2048
)

// grubModuleDir is where grub-pc-bin keeps boot.img and the BIOS modules,
// inside the image.
const grubModuleDir = "usr/lib/grub/i386-pc"

// grubCoreModules are built into GRUB's core image: enough to read the
// partition table and ext4 and to find the root file system by its UUID;
// the rest (normal, linux, …) load from /boot/grub/i386-pc.
var grubCoreModules = []string{"biosdisk", "part_msdos", "ext2", "search_fs_uuid"}

// grubEarlyConfig is built into the core image, as grub-install does: it
// finds the root file system by UUID (the first disk's first partition if
// that fails) and loads the rest of GRUB from it.
func grubEarlyConfig(uuid string) string {
	return "set root=(hd0,msdos1)\nsearch.fs_uuid " + uuid + " root\nset prefix=($root)/boot/grub\n"
}

// grubConfig is /boot/grub/grub.cfg: no menu, output on the serial console
// and the screen, and the kernel and initrd that /vmlinuz and /initrd.img
// point at (Debian's kernel packages keep those links current), with the
// same arguments as a direct kernel boot, the root found by UUID.
func grubConfig(uuid string) string {
	return `# Written by butter's lab image builder.
set timeout=0
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
search.fs_uuid ` + uuid + ` root
linux /vmlinuz root=UUID=` + uuid + ` rw console=tty0 console=ttyS0,115200
initrd /initrd.img
boot
`
}

// grubCoreImage copies GRUB's BIOS modules to /boot/grub/i386-pc in root
// (as grub-install does) and makes the core image with root's own
// grub-mkimage, returning it.
func grubCoreImage(ctx context.Context, root, uuid string, log io.Writer) ([]byte, error) {
	src := filepath.Join(root, grubModuleDir)
	dst := filepath.Join(root, "boot/grub/i386-pc")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return nil, fmt.Errorf("cloud image: %w", err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return nil, fmt.Errorf("cloud image: GRUB's modules: %w", err)
	}
	for _, e := range entries {
		if ext := filepath.Ext(e.Name()); e.Type().IsRegular() && (ext == ".mod" || ext == ".lst") {
			if err := copyFile(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
				return nil, err
			}
		}
	}
	tmp, err := os.MkdirTemp(filepath.Join(root, "tmp"), "grub-")
	if err != nil {
		return nil, fmt.Errorf("cloud image: %w", err)
	}
	defer os.RemoveAll(tmp)
	inRoot := "/" + filepath.Join("tmp", filepath.Base(tmp))
	if err := os.WriteFile(filepath.Join(tmp, "early.cfg"), []byte(grubEarlyConfig(uuid)), 0o644); err != nil {
		return nil, fmt.Errorf("cloud image: %w", err)
	}
	chroot, err := sim.LookPath("chroot")
	if err != nil {
		return nil, err
	}
	args := append([]string{root, "grub-mkimage", "-O", "i386-pc", "-c", inRoot + "/early.cfg",
		"-p", "/boot/grub", "-o", inRoot + "/core.img"}, grubCoreModules...)
	fmt.Fprintf(log, "+ chroot %s\n", strings.Join(args, " "))
	if _, err := sim.Output(exec.CommandContext(ctx, chroot, args...)); err != nil {
		return nil, err
	}
	core, err := os.ReadFile(filepath.Join(tmp, "core.img"))
	if err != nil {
		return nil, fmt.Errorf("cloud image: %w", err)
	}
	return core, nil
}

// diskSignature derives the MBR's disk signature from the root file
// system's UUID, so that one build has one identity.
func diskSignature(uuid string) uint32 {
	h := sha256.Sum256([]byte(uuid))
	return binary.LittleEndian.Uint32(h[:4])
}

// newUUID returns a random (version 4) UUID.
func newUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("uuid: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], nil
}

// Offsets in GRUB's i386-pc boot.img (grub/include/grub/i386/pc/boot.h)
// and in an MBR.
const (
	bootKernelSector = 0x5c // uint64: the sector core.img starts at
	bootDriveCheck   = 0x66 // a jmp that grub-bios-setup nops out for hard disks
	mbrCodeEnd       = 440  // boot code ends, the disk signature starts
	mbrPartTable     = 446  // four 16-byte partition entries
	mbrBootSig       = 510  // 0x55 0xaa
	chsHeads         = 255  // the geometry fdisk assumes for CHS fields
	chsSectors       = 63
	chsMaxCylinder   = 1023
	partTypeLinux    = 0x83
	partActive       = 0x80
)

// writeBootSectors writes, into the disk file at path, what grub-bios-setup
// would: GRUB's boot.img as the MBR's boot code (with the boot drive check
// off, as for a hard disk) and its core.img from sector 1; plus the disk
// signature and a partition table with one active Linux partition of
// sectors sectors from sector start. core.img's own block list already
// points at sector 2 for its sectors after the first, and boot.img's at
// sector 1 for core.img.
func writeBootSectors(path string, boot, core []byte, signature uint32, start, sectors uint64) error {
	wrap := func(err error) error { return fmt.Errorf("boot sectors of %s: %w", path, err) }
	if len(boot) != sectorSize || boot[mbrBootSig] != 0x55 || boot[mbrBootSig+1] != 0xaa {
		return wrap(fmt.Errorf("boot.img of %d bytes is not a boot sector", len(boot)))
	}
	if ks := binary.LittleEndian.Uint64(boot[bootKernelSector:]); ks != 1 {
		return wrap(fmt.Errorf("boot.img loads core.img from sector %d, want 1", ks))
	}
	if len(core) == 0 || uint64(len(core)) > (start-1)*sectorSize {
		return wrap(fmt.Errorf("core.img of %d bytes does not fit in the %d sectors before the partition", len(core), start-1))
	}
	if start == 0 || sectors == 0 || start+sectors > 1<<32 {
		return wrap(fmt.Errorf("partition of %d sectors from sector %d does not fit an MBR", sectors, start))
	}
	mbr := make([]byte, sectorSize)
	copy(mbr, boot[:mbrCodeEnd])
	mbr[bootDriveCheck], mbr[bootDriveCheck+1] = 0x90, 0x90
	binary.LittleEndian.PutUint32(mbr[mbrCodeEnd:], signature)
	p := mbr[mbrPartTable : mbrPartTable+16]
	p[0] = partActive
	copy(p[1:4], chs(start))
	p[4] = partTypeLinux
	copy(p[5:8], chs(start+sectors-1))
	binary.LittleEndian.PutUint32(p[8:], uint32(start))
	binary.LittleEndian.PutUint32(p[12:], uint32(sectors))
	mbr[mbrBootSig], mbr[mbrBootSig+1] = 0x55, 0xaa

	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return wrap(err)
	}
	if _, err := f.WriteAt(mbr, 0); err != nil {
		f.Close()
		return wrap(err)
	}
	if _, err := f.WriteAt(core, sectorSize); err != nil {
		f.Close()
		return wrap(err)
	}
	return f.Close()
}

// chs encodes a sector number as an MBR's cylinder-head-sector triple,
// clamped to the largest one as fdisk does beyond 8 GB.
func chs(lba uint64) []byte {
	c := lba / (chsHeads * chsSectors)
	h := lba / chsSectors % chsHeads
	s := lba%chsSectors + 1
	if c > chsMaxCylinder {
		c, h, s = chsMaxCylinder, chsHeads-1, chsSectors
	}
	return []byte{byte(h), byte(s) | byte(c>>2&0xc0), byte(c)}
}
