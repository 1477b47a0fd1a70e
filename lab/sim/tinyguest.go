package sim

import (
	"context"
	"debug/elf"
	"fmt"
	"strings"
)

// TinyGuestReady starts the line the tiny guest prints on its serial
// console once its network is up: TinyGuestReady host=… addr=… mtu=…
const TinyGuestReady = "BUTTER-GUEST-READY"

// tinyGuestModules are loaded by the tiny guest's init, dependencies
// first: virtio networking and the ACPI power button (for a graceful
// shutdown).
var tinyGuestModules = []string{"virtio_pci", "virtio_net", "button", "evdev"}

// tinyGuestInit configures the NIC from dracut's ip= argument
// (ip=<addr>::<gateway>:<netmask>:<hostname>:<nic>:none:<mtu>), prints
// TinyGuestReady, powers off on the ACPI power button (its first input
// event), and keeps a shell
// on the serial console.
const tinyGuestInit = `#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /etc/modules); do insmod "/lib/modules/$m.ko" 2>/dev/null; done
for arg in $(cat /proc/cmdline); do
  case "$arg" in ip=*) ipconf="${arg#ip=}" ;; esac
done
set -f
IFS=:
set -- $ipconf
IFS=' 	
'
addr=$1 gw=$3 mask=$4 host=$5 nic=${6:-eth0} mtu=${8:-1500}
set +f
[ -n "$host" ] && hostname "$host"
ip link set lo up
if [ -n "$addr" ]; then
  ifconfig "$nic" "$addr" netmask "$mask" mtu "$mtu" up
  [ -n "$gw" ] && route add default gw "$gw"
fi
(
  for try in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
    for ev in /sys/class/input/event*; do
      if grep -q "Power Button" "$ev/device/name" 2>/dev/null && [ -c "/dev/input/${ev##*/}" ]; then
        dd if="/dev/input/${ev##*/}" bs=24 count=1 >/dev/null 2>&1
        echo "power button: powering off"
        poweroff -f
      fi
    done
    sleep 0.2
  done
) &
echo "` + TinyGuestReady + ` host=$(hostname) addr=$(ip -4 -o addr show dev "$nic" | awk '{print $4}') mtu=$(cat /sys/class/net/$nic/mtu)"
while true; do setsid cttyhack sh -l; sleep 1; done
`

// TinyGuest builds (or finds in cacheDir) the lab's tiny VM image: Debian's
// kernel, extracted so it boots fast through PVH, and a busybox initramfs
// with the virtio modules. It returns the kernel's and the initramfs's
// paths.
func TinyGuest(ctx context.Context, cacheDir string) (kernel, initrd string, err error) {
	k, err := FindKernel("/")
	if err != nil {
		return "", "", fmt.Errorf("tiny guest: %w (install linux-image-amd64)", err)
	}
	busybox, err := LookPath("busybox")
	if err != nil {
		return "", "", fmt.Errorf("tiny guest: no busybox (install busybox-static): %w", err)
	}
	if static, err := IsStatic(busybox); err != nil || !static {
		return "", "", fmt.Errorf("tiny guest: %s is not a static binary (install busybox-static): %v", busybox, err)
	}
	mods, err := k.Modules(tinyGuestModules...)
	if err != nil {
		return "", "", fmt.Errorf("tiny guest: %w", err)
	}
	var r Initramfs
	var names []string
	adds := []error{
		r.AddHostFile("bin/busybox", busybox, 0o755),
		r.AddFile("init", []byte(tinyGuestInit), 0o755),
		r.AddCharDevice("dev/console", 5, 1, 0o600),
	}
	for _, m := range mods {
		adds = append(adds, r.AddHostFile("lib/modules/"+m.Name+".ko", m.Path, 0o644))
		names = append(names, m.Name)
	}
	adds = append(adds, r.AddFile("etc/modules", []byte(strings.Join(names, "\n")+"\n"), 0o644))
	for _, err := range adds {
		if err != nil {
			return "", "", fmt.Errorf("tiny guest initramfs: %w", err)
		}
	}
	if initrd, err = r.Cached(ctx, cacheDir, 4); err != nil {
		return "", "", fmt.Errorf("tiny guest initramfs: %w", err)
	}
	if kernel, err = k.Vmlinux(ctx, cacheDir); err != nil {
		return "", "", fmt.Errorf("tiny guest kernel: %w", err)
	}
	return kernel, initrd, nil
}

// IsStatic tells whether an ELF binary has no program interpreter.
func IsStatic(path string) (bool, error) {
	f, err := elf.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false, nil
		}
	}
	return true, nil
}
