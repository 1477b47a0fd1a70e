package testbed

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
	"context"
	"crypto/sha256"
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

	"github.com/butter-cloud/butter/lab/sim"
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
	BuiltImage
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
		if _, err := sim.LookPath(p.name); err != nil {
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
	b, err := cachedImage(ctx, cacheDir, CloudImageKey(), cloudImageRecipe, debianImage{
		packages: cloudImagePackages,
		files:    []imageFile{{path: "etc/cloud/cloud.cfg.d/90-butter.cfg", data: cloudImageConfig}},
		modules:  cloudImageModules,
		diskMiB:  cloudImageDiskMiB,
	}, log)
	return CloudImage{b}, err
}

// BuiltImage is a built Debian image's files, in its cache folder.
type BuiltImage struct {
	Dir    string // the cache folder holding it all
	Disk   string // qcow2: MBR, GRUB, one ext4 partition
	Kernel string // the image's own vmlinuz
	Initrd string // its initrd, virtio and ext4 only
}

// cachedImage returns the image img describes in cacheDir/key (cacheDir
// DefaultImageDir if empty), building it first if it is not there, and
// keeps the two newest images whose key has the same prefix (up to its
// last "-"; older recipes' are ~800 MB each).
func cachedImage(ctx context.Context, cacheDir, key, recipe string, img debianImage, log io.Writer) (BuiltImage, error) {
	if cacheDir == "" {
		cacheDir = DefaultImageDir
	}
	if log == nil {
		log = io.Discard
	}
	dir, err := sim.Cached(ctx, cacheDir, key, recipe, func(dir string) error {
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
		return buildImage(ctx, dir, mirror, img, log)
	})
	if err != nil {
		return BuiltImage{}, err
	}
	prefix := key[:strings.LastIndex(key, "-")+1]
	if err := sim.PruneCache(cacheDir, prefix, 2); err != nil {
		fmt.Fprintf(log, "prune old %s images: %v\n", prefix, err)
	}
	b := BuiltImage{
		Dir:    dir,
		Disk:   filepath.Join(dir, "disk.qcow2"),
		Kernel: filepath.Join(dir, "vmlinuz"),
		Initrd: filepath.Join(dir, "initrd.img"),
	}
	for _, f := range []string{b.Disk, b.Kernel, b.Initrd} {
		if _, err := os.Stat(f); err != nil {
			return BuiltImage{}, fmt.Errorf("image %s: %w (remove the folder to rebuild it)", dir, err)
		}
	}
	return b, nil
}

// debianImage is what an image builder varies: the packages installed on
// top of debootstrap's minbase, the image's own files, the modules its
// initramfs holds and the disk's size.
type debianImage struct {
	packages []string
	files    []imageFile
	remove   []string // files of installed packages to drop
	modules  []string
	diskMiB  int
}

// buildImage fills dir with disk.qcow2, vmlinuz and initrd.img of Debian
// (cloudImageSuite) as img says, from mirror.
func buildImage(ctx context.Context, dir, mirror string, img debianImage, log io.Writer) (err error) {
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
		prog, err := sim.LookPath(name)
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

	if err := step("debootstrap", "--variant=minbase", "--include="+strings.Join(img.packages, ","),
		cloudImageSuite, root, mirror); err != nil {
		return err
	}
	// debootstrap exits 0 even when a package is left unconfigured.
	chrootPath, err := sim.LookPath("chroot")
	if err != nil {
		return err
	}
	audit, err := sim.Output(exec.CommandContext(ctx, chrootPath, root, "dpkg", "--audit"))
	if err != nil {
		return err
	}
	if s := strings.TrimSpace(string(audit)); s != "" {
		return fmt.Errorf("dpkg --audit in the new root reports broken packages:\n%s", s)
	}

	return makeDisk(ctx, dir, root, img, step, log)
}

// imageFile is a file an image builder writes into the root (path relative
// to it), mode 0644; a data starting with "->" makes a symbolic link to
// the rest instead.
type imageFile struct {
	path string
	data string
}

// makeDisk turns the installed root into the image in dir: img's own
// settings and the common files, an initramfs with img's modules only,
// GRUB, and disk.qcow2, vmlinuz and initrd.img. step runs a command,
// logging it.
func makeDisk(ctx context.Context, dir, root string, img debianImage,
	step func(name string, args ...string) error, log io.Writer) error {
	rootUUID, err := newUUID()
	if err != nil {
		return err
	}
	files := append([]imageFile{
		{"etc/fstab", "# Written by butter's lab image builder.\nUUID=" + rootUUID + " / ext4 rw,discard,errors=remount-ro 0 1\n"},
		{"boot/grub/grub.cfg", grubConfig(rootUUID)},
		{"etc/initramfs-tools/conf.d/butter", "MODULES=list\n"},
		{"etc/initramfs-tools/modules", strings.Join(img.modules, "\n") + "\n"},
		// Empty: every VM makes its own at first boot.
		{"etc/machine-id", ""},
		{"etc/hostname", "localhost\n"},
	}, img.files...)
	for _, f := range img.remove {
		if err := os.Remove(filepath.Join(root, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("image: %w", err)
		}
	}
	for _, f := range files {
		path := filepath.Join(root, f.path)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return fmt.Errorf("image: %w", err)
		}
		if target, ok := strings.CutPrefix(f.data, "->"); ok {
			os.Remove(path)
			if err := os.Symlink(target, path); err != nil {
				return fmt.Errorf("image: %w", err)
			}
			continue
		}
		if err := os.WriteFile(path, []byte(f.data), 0o644); err != nil {
			return fmt.Errorf("image: %w", err)
		}
	}
	// Host keys made by openssh-server's postinst would be shared by every
	// VM: each VM gets its own at first boot (cloud-init, or the seed).
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

	k, err := sim.FindKernel(root)
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
	partSectors := uint64(img.diskMiB-1) << 20 / sectorSize
	if err := step("mkfs.ext4", "-q", "-L", "root", "-U", rootUUID, "-E", fmt.Sprintf("offset=%d", partStart*sectorSize),
		"-d", root, raw, fmt.Sprintf("%dk", partSectors*sectorSize/1024)); err != nil {
		return err
	}
	if err := writeBootSectors(raw, bootImg, core, diskSignature(rootUUID), partStart, partSectors); err != nil {
		return err
	}
	return step("qemu-img", "convert", "-O", "qcow2", raw, filepath.Join(dir, "disk.qcow2"))
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
		for _, p := range sim.MountPoints(string(data)) {
			if p == dir || strings.HasPrefix(p, dir+"/") {
				pts = append(pts, p)
			}
		}
		slices.SortFunc(pts, func(a, b string) int { return len(b) - len(a) })
		return slices.Compact(pts)
	}
	umount, err := sim.LookPath("umount")
	if err != nil {
		return err
	}
	for _, p := range under() {
		sim.Output(exec.CommandContext(ctx, umount, "--lazy", p))
	}
	if left := under(); len(left) > 0 {
		return fmt.Errorf("still mounted under %s: %s", dir, strings.Join(left, ", "))
	}
	return nil
}
