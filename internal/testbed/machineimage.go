package testbed

// This file builds the real-machines tier's guest: Debian 12 as a user's
// machine is before butter touches it, systemd, sshd, libvirt and qemu
// installed, Debian's own kernel (kernel WireGuard, gretap). It is laid out
// and cached as the cloud-init image is (cloudimage.go), without
// cloud-init: each VM's identity (host name, SSH host key, the operator's
// key, its address) comes from a small seed disk that a unit of the image
// reads at every boot before the network and sshd start (MachineSeed).

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
)

// machineImageRecipe is the version of BuildMachineImage's steps. Bump it
// when a step changes in a way the lists below do not show.
const machineImageRecipe = "machine-debian12/1"

// machineImagePackages are installed on top of debootstrap's minbase:
// what a machine needs before `butter machine add` (libvirt with its qemu
// driver and qemu; Debian's kernel; sshd), systemd-networkd comes with
// systemd, iputils-ping for the probes, grub-pc-bin for the disk's GRUB.
// libpam-systemd: libvirt's polkitd needs a logind, and without one
// debootstrap leaves both unconfigured.
var machineImagePackages = []string{
	"systemd-sysv", "udev", "dbus", "libpam-systemd", "openssh-server", "iproute2", "netbase", "kmod",
	"linux-image-amd64", "initramfs-tools", "iputils-ping",
	"libvirt-daemon-system", "libvirt-daemon-driver-qemu", "qemu-system-x86", "grub-pc-bin",
}

// seedDevice is the seed disk: the second virtio disk.
const seedDevice = "/dev/vdb"

// machineSeedScript runs at every boot: it mounts the seed disk and runs
// its seed.sh with the mount point as its argument.
const machineSeedScript = `#!/bin/sh
# Written by butter's lab image builder: this machine's identity comes from
# the seed disk the lab attaches (` + seedDevice + `); its seed.sh applies it.
set -e
mkdir -p /run/butter-seed
mount -o ro ` + seedDevice + ` /run/butter-seed
trap 'umount /run/butter-seed' EXIT
sh -e /run/butter-seed/seed.sh /run/butter-seed
`

// machineSeedUnit runs machineSeedScript before the network and sshd.
const machineSeedUnit = `# Written by butter's lab image builder.
[Unit]
Description=butter lab: this machine's identity from its seed disk
DefaultDependencies=no
Requires=dev-vdb.device
After=dev-vdb.device local-fs.target
Before=network-pre.target ssh.service sysinit.target
Wants=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh /usr/local/sbin/butter-lab-seed

[Install]
WantedBy=sysinit.target
`

// machineImageFiles are the image's own settings: the seed unit (enabled),
// systemd-networkd enabled and told to leave alone the routes and rules it
// did not make (the helper's), sshd with the seed's ed25519 key only and
// no passwords, and no libvirt default network (it would add a NAT bridge
// the machine does not have on a real host before butter).
var machineImageFiles = []imageFile{
	{"usr/local/sbin/butter-lab-seed", machineSeedScript},
	{"etc/systemd/system/butter-lab-seed.service", machineSeedUnit},
	{"etc/systemd/system/sysinit.target.wants/butter-lab-seed.service", "->/etc/systemd/system/butter-lab-seed.service"},
	{"etc/systemd/system/multi-user.target.wants/systemd-networkd.service", "->/lib/systemd/system/systemd-networkd.service"},
	{"etc/systemd/system/sockets.target.wants/systemd-networkd.socket", "->/lib/systemd/system/systemd-networkd.socket"},
	{"etc/systemd/system/network-online.target.wants/systemd-networkd-wait-online.service", "->/lib/systemd/system/systemd-networkd-wait-online.service"},
	{"etc/systemd/networkd.conf.d/butter-lab.conf", "# Written by butter's lab image builder.\n[Network]\nManageForeignRoutes=no\nManageForeignRoutingPolicyRules=no\n"},
	{"etc/ssh/sshd_config.d/butter-lab.conf", "# Written by butter's lab image builder.\nHostKey /etc/ssh/ssh_host_ed25519_key\nPasswordAuthentication no\nUseDNS no\n"},
}

// machineImageRemove are files of installed packages the image drops.
var machineImageRemove = []string{"etc/libvirt/qemu/networks/autostart/default.xml"}

// machineImageDiskMiB is the size of the whole disk.
const machineImageDiskMiB = 3072

// MachineImage is a built real-machine image: boot Kernel and Initrd
// directly with Cmdline (or Disk through GRUB) on a copy-on-write overlay of
// Disk, with a seed disk (MachineSeed) as the second virtio disk.
type MachineImage struct {
	BuiltImage
}

// Cmdline boots the image's kernel from the disk's first partition, its
// console on ttyS0, the NIC named eth0.
func (MachineImage) Cmdline() string {
	return "root=/dev/vda1 rw console=ttyS0 net.ifnames=0"
}

// MachineImageKey names the cache folder of the image the current recipe
// builds: machine-debian12-<hash of its inputs>.
func MachineImageKey() string {
	h := sha256.New()
	parts := []string{machineImageRecipe, cloudImageSuite, strings.Join(machineImagePackages, ","),
		strings.Join(cloudImageModules, ","), fmt.Sprint(machineImageDiskMiB), strings.Join(machineImageRemove, ","),
		grubConfig("UUID"), grubEarlyConfig("UUID"), strings.Join(grubCoreModules, ",")}
	for _, f := range machineImageFiles {
		parts = append(parts, f.path, f.data)
	}
	for _, s := range parts {
		fmt.Fprintf(h, "%d:%s\n", len(s), s)
	}
	return "machine-debian12-" + hex.EncodeToString(h.Sum(nil))[:16]
}

// BuildMachineImage returns the real-machine image under cacheDir
// (DefaultImageDir if empty), building it first if it is not there (~3.5
// minutes). Concurrent callers wait for one build; the build's output goes
// to log (may be nil). It needs root.
func BuildMachineImage(ctx context.Context, cacheDir string, log io.Writer) (MachineImage, error) {
	b, err := cachedImage(ctx, cacheDir, MachineImageKey(), machineImageRecipe, debianImage{
		packages: machineImagePackages,
		files:    machineImageFiles,
		remove:   machineImageRemove,
		modules:  cloudImageModules,
		diskMiB:  machineImageDiskMiB,
	}, log)
	return MachineImage{b}, err
}
