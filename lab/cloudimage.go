package lab

// This file builds the real cloud-init tier's guest: Debian 12 (bookworm)
// with cloud-init, made by debootstrap from the mirror apt is configured
// with, turned into a disk laid out as the official cloud images are: an
// MBR partition table, the root file system in its one partition, and GRUB
// (i386-pc) in the MBR and the gap before the partition, so that a BIOS
// boots it from the disk alone. Its kernel and initrd are also kept beside
// it for a direct kernel boot. No loop device or mount is needed: the file
// system is written into the disk file at the partition's offset
// (mkfs.ext4 -d -E offset=), GRUB's core image is made by the image's own
// grub-mkimage and written with the partition table in Go. The build takes
// ~2.5 minutes, so the result is cached under a key made of its inputs and
// built under a lock; see the lab notes.

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// DefaultImageDir holds built guest images, each in a folder named for a
// hash of its build inputs.
const DefaultImageDir = "/var/cache/butter/images"

// cloudImageRecipe is the version of BuildCloudImage's steps. Bump it when
// a step changes in a way the package list and settings below do not show.
const cloudImageRecipe = "cloud-debian12/3"

// cloudImageSuite is the Debian release debootstrap installs.
const cloudImageSuite = "bookworm"

// cloudImagePackages are installed on top of debootstrap's minbase.
// python3-cffi-backend: without it cloud-init is left unconfigured while
// debootstrap still exits 0. grub-pc-bin: GRUB's BIOS modules and
// grub-mkimage, without grub-pc's postinst (which wants a disk device to
// install to). cloud-guest-utils: growpart, so that cloud-init grows the
// root partition to the size of a VM's disk, as on the official images.
var cloudImagePackages = []string{
	"systemd-sysv", "udev", "dbus", "cloud-init", "openssh-server", "iproute2", "ifupdown", "netbase",
	"linux-image-amd64", "initramfs-tools", "iputils-ping", "sudo", "python3-cffi-backend",
	"grub-pc-bin", "cloud-guest-utils",
}

// cloudImageConfig goes to /etc/cloud/cloud.cfg.d/90-butter.cfg: only the
// NoCloud seed (and None), no locale generation (minbase has no locales,
// and cloud-init's status would end in error), /etc/hosts kept by
// cloud-init, only an ed25519 host key (RSA costs ~10 s under TCG), and no
// grub-pc debconf updates (the image has GRUB's files and a fixed
// grub.cfg, not the grub-pc package). locale is the string "false": cloud-init 22.4
// skips the module for it as for the boolean, but its schema wants a
// string and warns "Invalid cloud-config" on every boot about a boolean.
const cloudImageConfig = `# Written by butter's lab image builder.
datasource_list: [NoCloud, None]
locale: "false"
manage_etc_hosts: true
ssh_genkeytypes: [ed25519]
grub_dpkg:
  enabled: false
`

// cloudImageModules are all the initramfs needs to mount the root disk
// (MODULES=list): 6.5 MB instead of 36.
var cloudImageModules = []string{"virtio_pci", "virtio_blk", "ext4"}

// cloudImageDiskMiB is the size of the whole disk; the root partition
// takes all of it after the first MiB.
const cloudImageDiskMiB = 2048

// CloudImage is a built Debian 12 cloud-init image. Boot Disk as it is
// (BIOS, GRUB), or Kernel and Initrd directly with root=/dev/vda1 (see
// CloudImage.Cmdline), always on a copy-on-write overlay of Disk; the image
// itself must stay unchanged.
type CloudImage struct {
	Dir    string // the cache folder holding it all
	Disk   string // qcow2: MBR, GRUB, one ext4 partition
	Kernel string // the image's own vmlinuz
	Initrd string // its initrd, virtio and ext4 only
}

// Cmdline is the kernel command line that boots the image's kernel
// directly from the disk's first partition with its serial console on
// ttyS0.
func (CloudImage) Cmdline() string { return "root=/dev/vda1 rw console=ttyS0" }

// CloudImageKey names the cache folder of the image the current recipe
// builds: cloud-debian12-<hash of the package list, settings and recipe>.
func CloudImageKey() string {
	h := sha256.New()
	for _, s := range []string{
		cloudImageRecipe, cloudImageSuite, strings.Join(cloudImagePackages, ","),
		cloudImageConfig, strings.Join(cloudImageModules, ","), fmt.Sprint(cloudImageDiskMiB),
		grubConfig("UUID"), grubEarlyConfig("UUID"), strings.Join(grubCoreModules, ","),
	} {
		fmt.Fprintf(h, "%d:%s\n", len(s), s)
	}
	return "cloud-debian12-" + hex.EncodeToString(h.Sum(nil))[:16]
}

// CloudImageTools lists what BuildCloudImage runs that is missing here,
// each with the Debian package that has it; empty when all are there.
func CloudImageTools() []string {
	var missing []string
	for _, p := range []struct{ name, pkg string }{
		{"debootstrap", "debootstrap"},
		{"chroot", "coreutils"},
		{"mkfs.ext4", "e2fsprogs"},
		{"qemu-img", "qemu-utils"},
		{"umount", "mount"},
	} {
		if _, err := lookPath(p.name); err != nil {
			missing = append(missing, fmt.Sprintf("%s (package %s)", p.name, p.pkg))
		}
	}
	return missing
}

// BuildCloudImage returns the Debian 12 cloud-init image under cacheDir
// (DefaultImageDir if empty), building it first if it is not there: ~2.5
// minutes and ~131 MiB from the mirror apt is configured with. Concurrent
// callers wait for one build. The build's output goes to log (may be nil).
// It needs root.
func BuildCloudImage(ctx context.Context, cacheDir string, log io.Writer) (CloudImage, error) {
	if cacheDir == "" {
		cacheDir = DefaultImageDir
	}
	if log == nil {
		log = io.Discard
	}
	key := CloudImageKey()
	dir, err := Cached(ctx, cacheDir, key, cloudImageRecipe, func(dir string) error {
		if missing := CloudImageTools(); len(missing) > 0 {
			return fmt.Errorf("missing %s: install it", strings.Join(missing, ", "))
		}
		if os.Geteuid() != 0 {
			return errors.New("debootstrap needs root")
		}
		mirror, err := AptMirror(cloudImageSuite)
		if err != nil {
			return err
		}
		return buildCloudImage(ctx, dir, mirror, log)
	})
	if err != nil {
		return CloudImage{}, err
	}
	// Images of older recipes are ~750 MB each: keep only the last two.
	if err := PruneCache(cacheDir, "cloud-debian12-", 2); err != nil {
		fmt.Fprintf(log, "prune old cloud images: %v\n", err)
	}
	img := CloudImage{
		Dir:    dir,
		Disk:   filepath.Join(dir, "disk.qcow2"),
		Kernel: filepath.Join(dir, "vmlinuz"),
		Initrd: filepath.Join(dir, "initrd.img"),
	}
	for _, f := range []string{img.Disk, img.Kernel, img.Initrd} {
		if _, err := os.Stat(f); err != nil {
			return CloudImage{}, fmt.Errorf("cloud image %s: %w (remove the folder to rebuild it)", dir, err)
		}
	}
	return img, nil
}

// buildCloudImage fills dir with disk.qcow2, vmlinuz and initrd.img.
func buildCloudImage(ctx context.Context, dir, mirror string, log io.Writer) (err error) {
	root := filepath.Join(dir, "root")
	defer func() {
		// debootstrap mounts proc and sys (and may bind /dev) in the
		// root; never delete through a mount that is still there.
		if uerr := unmountUnder(context.WithoutCancel(ctx), root); uerr != nil {
			err = errors.Join(err, uerr)
			return
		}
		if rerr := os.RemoveAll(root); rerr != nil {
			err = errors.Join(err, fmt.Errorf("remove the build root: %w", rerr))
		}
	}()
	step := func(name string, args ...string) error {
		start := time.Now()
		fmt.Fprintf(log, "+ %s %s\n", name, strings.Join(args, " "))
		prog, err := lookPath(name)
		if err != nil {
			return err
		}
		cmd := exec.CommandContext(ctx, prog, args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C.UTF-8")
		cmd.Stdout, cmd.Stderr = log, log
		cmd.WaitDelay = 5 * time.Second
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
		}
		fmt.Fprintf(log, "  (%s took %s)\n", name, time.Since(start).Round(100*time.Millisecond))
		return nil
	}

	if err := step("debootstrap", "--variant=minbase", "--include="+strings.Join(cloudImagePackages, ","),
		cloudImageSuite, root, mirror); err != nil {
		return err
	}
	// debootstrap exits 0 even when a package is left unconfigured.
	chrootPath, err := lookPath("chroot")
	if err != nil {
		return err
	}
	audit, err := output(exec.CommandContext(ctx, chrootPath, root, "dpkg", "--audit"))
	if err != nil {
		return err
	}
	if s := strings.TrimSpace(string(audit)); s != "" {
		return fmt.Errorf("dpkg --audit in the new root reports broken packages:\n%s", s)
	}

	return makeDisk(ctx, dir, root, step, log)
}

// makeDisk turns the installed root into the image in dir: settings,
// initramfs, GRUB, and disk.qcow2, vmlinuz and initrd.img. step runs a
// command, logging it.
func makeDisk(ctx context.Context, dir, root string, step func(name string, args ...string) error, log io.Writer) error {
	rootUUID, err := newUUID()
	if err != nil {
		return err
	}
	files := []struct {
		path string
		data string
	}{
		{"etc/cloud/cloud.cfg.d/90-butter.cfg", cloudImageConfig},
		{"etc/fstab", "# Written by butter's lab image builder.\nUUID=" + rootUUID + " / ext4 rw,discard,errors=remount-ro 0 1\n"},
		{"boot/grub/grub.cfg", grubConfig(rootUUID)},
		{"etc/initramfs-tools/conf.d/butter", "MODULES=list\n"},
		{"etc/initramfs-tools/modules", strings.Join(cloudImageModules, "\n") + "\n"},
		// Empty: every VM makes its own at first boot.
		{"etc/machine-id", ""},
		{"etc/hostname", "localhost\n"},
	}
	for _, f := range files {
		path := filepath.Join(root, f.path)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return fmt.Errorf("cloud image: %w", err)
		}
		if err := os.WriteFile(path, []byte(f.data), 0o644); err != nil {
			return fmt.Errorf("cloud image: %w", err)
		}
	}
	// Host keys made by openssh-server's postinst would be shared by every
	// VM: cloud-init makes each VM its own.
	keys, _ := filepath.Glob(filepath.Join(root, "etc/ssh/ssh_host_*"))
	for _, k := range keys {
		if err := os.Remove(k); err != nil {
			return fmt.Errorf("cloud image: %w", err)
		}
	}
	os.Remove(filepath.Join(root, "var/lib/dbus/machine-id"))

	if err := step("chroot", root, "update-initramfs", "-u", "-k", "all"); err != nil {
		return err
	}
	if err := step("chroot", root, "apt-get", "clean"); err != nil {
		return err
	}
	lists, _ := filepath.Glob(filepath.Join(root, "var/lib/apt/lists/*_*"))
	for _, l := range lists {
		os.Remove(l)
	}

	k, err := FindKernel(root)
	if err != nil {
		return err
	}
	if err := copyFile(k.Image, filepath.Join(dir, "vmlinuz")); err != nil {
		return err
	}
	if err := copyFile(filepath.Join(root, "boot", "initrd.img-"+k.Release), filepath.Join(dir, "initrd.img")); err != nil {
		return err
	}

	core, err := grubCoreImage(ctx, root, rootUUID, log)
	if err != nil {
		return err
	}
	bootImg, err := os.ReadFile(filepath.Join(root, grubModuleDir, "boot.img"))
	if err != nil {
		return fmt.Errorf("cloud image: %w", err)
	}

	// The file system goes straight into the disk file at the partition's
	// offset; the MBR and GRUB's core image then fill the first MiB.
	raw := filepath.Join(dir, "disk.raw")
	defer os.Remove(raw)
	partSectors := uint64(cloudImageDiskMiB-1) << 20 / sectorSize
	if err := step("mkfs.ext4", "-q", "-L", "root", "-U", rootUUID, "-E", fmt.Sprintf("offset=%d", partStart*sectorSize),
		"-d", root, raw, fmt.Sprintf("%dk", partSectors*sectorSize/1024)); err != nil {
		return err
	}
	if err := writeBootSectors(raw, bootImg, core, diskSignature(rootUUID), partStart, partSectors); err != nil {
		return err
	}
	return step("qemu-img", "convert", "-O", "qcow2", raw, filepath.Join(dir, "disk.qcow2"))
}

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
	chroot, err := lookPath("chroot")
	if err != nil {
		return nil, err
	}
	args := append([]string{root, "grub-mkimage", "-O", "i386-pc", "-c", inRoot + "/early.cfg",
		"-p", "/boot/grub", "-o", inRoot + "/core.img"}, grubCoreModules...)
	fmt.Fprintf(log, "+ chroot %s\n", strings.Join(args, " "))
	if _, err := output(exec.CommandContext(ctx, chroot, args...)); err != nil {
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

// copyFile copies src to dst (created, mode 0644).
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return nil
}

// unmountUnder lazily unmounts every mount point at or below dir, deepest
// first, and fails if any is left.
func unmountUnder(ctx context.Context, dir string) error {
	under := func() []string {
		data, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			return nil
		}
		var pts []string
		for _, p := range mountPoints(string(data)) {
			if p == dir || strings.HasPrefix(p, dir+"/") {
				pts = append(pts, p)
			}
		}
		slices.SortFunc(pts, func(a, b string) int { return len(b) - len(a) })
		return slices.Compact(pts)
	}
	umount, err := lookPath("umount")
	if err != nil {
		return err
	}
	for _, p := range under() {
		output(exec.CommandContext(ctx, umount, "--lazy", p))
	}
	if left := under(); len(left) > 0 {
		return fmt.Errorf("still mounted under %s: %s", dir, strings.Join(left, ", "))
	}
	return nil
}

// AptMirror returns the URI of the first Debian archive that apt's own
// configuration (/etc/apt/sources.list and /etc/apt/sources.list.d) lists
// with suite and the main component, so that debootstrap uses the same
// mirror as apt-get.
func AptMirror(suite string) (string, error) {
	var paths []string
	if _, err := os.Stat("/etc/apt/sources.list"); err == nil {
		paths = append(paths, "/etc/apt/sources.list")
	}
	more, _ := filepath.Glob("/etc/apt/sources.list.d/*")
	paths = append(paths, more...)
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		var uri string
		switch {
		case strings.HasSuffix(p, ".sources"):
			uri = mirrorDeb822(f, suite)
		case strings.HasSuffix(p, ".list"):
			uri = mirrorOneLine(f, suite)
		}
		f.Close()
		if uri != "" {
			return uri, nil
		}
	}
	return "", fmt.Errorf("no apt source for Debian %s main in /etc/apt/sources.list or /etc/apt/sources.list.d: add one (apt-get must work)", suite)
}

// mirrorOneLine reads the one-line format: deb [options] uri suite comp….
func mirrorOneLine(r io.Reader, suite string) string {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) < 4 || f[0] != "deb" {
			continue
		}
		f = f[1:]
		if strings.HasPrefix(f[0], "[") { // options, possibly several fields
			for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
				f = f[1:]
			}
			if len(f) > 0 {
				f = f[1:]
			}
		}
		if len(f) >= 3 && f[1] == suite && slices.Contains(f[2:], "main") {
			return f[0]
		}
	}
	return ""
}

// mirrorDeb822 reads the deb822 format: stanzas of Types, URIs, Suites,
// Components, separated by blank lines.
func mirrorDeb822(r io.Reader, suite string) string {
	stanza := map[string]string{}
	check := func() string {
		defer clear(stanza)
		if stanza["enabled"] == "no" || !slices.Contains(strings.Fields(stanza["types"]), "deb") {
			return ""
		}
		if !slices.Contains(strings.Fields(stanza["suites"]), suite) ||
			!slices.Contains(strings.Fields(stanza["components"]), "main") {
			return ""
		}
		if uris := strings.Fields(stanza["uris"]); len(uris) > 0 {
			return uris[0]
		}
		return ""
	}
	sc := bufio.NewScanner(r)
	last := ""
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		if strings.TrimSpace(line) == "" {
			if uri := check(); uri != "" {
				return uri
			}
			continue
		}
		if (line[0] == ' ' || line[0] == '\t') && last != "" { // continuation
			stanza[last] += " " + strings.TrimSpace(line)
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		last = strings.ToLower(strings.TrimSpace(k))
		stanza[last] = strings.TrimSpace(v)
	}
	return check()
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
