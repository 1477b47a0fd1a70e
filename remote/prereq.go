package remote

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Missing is one thing the machine lacks.
type Missing struct {
	// What is missing (libvirt, qemu, wireguard-or-tun, bridge, tunnel).
	What string
	// Detail says what was looked for.
	Detail string
	// Packages install it with the machine's package manager; empty when
	// no package does (a kernel built without the feature).
	Packages []string
}

// Prerequisites is what a machine lacks for the helper.
type Prerequisites struct {
	Platform Platform
	// Distro is /etc/os-release's ID, and IDLike its ID_LIKE.
	Distro, IDLike string
	Missing        []Missing
	// InstallCommand installs every missing package (as root), empty when
	// none is installable or nothing is missing.
	InstallCommand string
	// Notes are facts worth showing that need no action, e.g. WireGuard
	// will run in userspace.
	Notes []string
}

// OK says nothing is missing.
func (p Prerequisites) OK() bool { return len(p.Missing) == 0 }

// prereqScript prints "key value" lines about the machine. Each check
// tries what works without root: the binary on PATH or in sbin, the
// module loaded (/sys/module), available (modinfo) or built in.
const prereqScript = `PATH=$PATH:/usr/sbin:/sbin:/usr/local/sbin
. /etc/os-release 2>/dev/null
echo "id ${ID:-unknown}"
echo "like ${ID_LIKE:-}"
echo "uname $(uname -sm)"
have() { command -v "$1" >/dev/null 2>&1; }
mod() { [ -d "/sys/module/$1" ] || modinfo "$1" >/dev/null 2>&1 || grep -qs "/$1.ko" "/lib/modules/$(uname -r)/modules.builtin"; }
if have libvirtd || have virtqemud || [ -S /run/libvirt/libvirt-sock ] || [ -S /var/run/libvirt/libvirt-sock ]; then echo "libvirt ok"; else echo "libvirt missing"; fi
case $(uname -m) in x86_64) q=qemu-system-x86_64;; aarch64|arm64) q=qemu-system-aarch64;; *) q=qemu-system-$(uname -m);; esac
if have $q || [ -x /usr/libexec/qemu-kvm ]; then echo "qemu ok"; else echo "qemu missing $q"; fi
if mod wireguard; then echo "wireguard kernel"; elif [ -c /dev/net/tun ]; then echo "wireguard tun"; else echo "wireguard missing"; fi
if mod bridge; then echo "bridge ok"; else echo "bridge missing"; fi
if mod vxlan || mod ip_gre; then echo "tunnel ok"; else echo "tunnel missing"; fi
if have sha256sum; then echo "sha256sum ok"; else echo "sha256sum missing"; fi
`

// CheckPrerequisites finds what the machine lacks for the helper: libvirt,
// qemu for its architecture, WireGuard (the kernel module, or /dev/net/tun
// for the userspace fallback), bridges, and VXLAN or GRE tunnels; and the
// command that installs what a package can provide.
func (c *Client) CheckPrerequisites(ctx context.Context) (Prerequisites, error) {
	out, err := c.Output(ctx, false, prereqScript)
	if err != nil {
		return Prerequisites{}, fmt.Errorf("check prerequisites on %s: %w", c.Host, err)
	}
	return parsePrerequisites(string(out))
}

func parsePrerequisites(out string) (Prerequisites, error) {
	var p Prerequisites
	facts := map[string]string{}
	for line := range strings.Lines(out) {
		k, v, _ := strings.Cut(strings.TrimSpace(line), " ")
		facts[k] = v
	}
	plat, err := parseUname(facts["uname"])
	if err != nil {
		return p, err
	}
	p.Platform, p.Distro, p.IDLike = plat, facts["id"], facts["like"]
	pm := packageManager(p.Distro, p.IDLike)
	add := func(what, detail string, pkgs []string) {
		p.Missing = append(p.Missing, Missing{What: what, Detail: detail, Packages: pkgs})
	}
	if facts["libvirt"] != "ok" {
		add("libvirt", "no libvirtd or virtqemud, and no libvirt socket", pm.libvirt)
	}
	if q, ok := strings.CutPrefix(facts["qemu"], "missing"); ok {
		add("qemu", "no "+strings.TrimSpace(q), pm.qemu(plat.Arch))
	}
	switch facts["wireguard"] {
	case "kernel":
	case "tun":
		p.Notes = append(p.Notes, "the kernel has no WireGuard module: the helper runs WireGuard in userspace on /dev/net/tun (slower)")
	default:
		add("wireguard", "no wireguard kernel module and no /dev/net/tun for the userspace fallback", nil)
	}
	if facts["bridge"] != "ok" {
		add("bridge", "the kernel has no bridge module", nil)
	}
	if facts["tunnel"] != "ok" {
		add("tunnel", "the kernel has neither vxlan nor ip_gre", nil)
	}
	if facts["sha256sum"] != "ok" {
		add("sha256sum", "no sha256sum (coreutils), which the helper upload uses", pm.coreutils)
	}
	var pkgs []string
	for _, m := range p.Missing {
		for _, pkg := range m.Packages {
			if !slices.Contains(pkgs, pkg) {
				pkgs = append(pkgs, pkg)
			}
		}
	}
	if len(pkgs) > 0 && pm.install != nil {
		p.InstallCommand = pm.install(pkgs)
	}
	return p, nil
}

// pkgManager is how one family of distributions installs things.
type pkgManager struct {
	libvirt   []string
	qemu      func(arch string) []string
	coreutils []string
	install   func(pkgs []string) string
}

func packageManager(id, like string) pkgManager {
	family := func(names ...string) bool {
		for _, f := range append([]string{id}, strings.Fields(like)...) {
			if slices.Contains(names, f) {
				return true
			}
		}
		return false
	}
	switch {
	case family("debian", "ubuntu"):
		return pkgManager{
			libvirt: []string{"libvirt-daemon-system"},
			qemu: func(arch string) []string {
				if arch == "arm64" {
					return []string{"qemu-system-arm", "qemu-utils"}
				}
				return []string{"qemu-system-x86", "qemu-utils"}
			},
			coreutils: []string{"coreutils"},
			install: func(pkgs []string) string {
				return "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends " + ShellJoin(pkgs...)
			},
		}
	case family("fedora", "rhel", "centos", "rocky", "almalinux"):
		return pkgManager{
			libvirt:   []string{"libvirt-daemon-kvm"},
			qemu:      func(string) []string { return []string{"qemu-kvm", "qemu-img"} },
			coreutils: []string{"coreutils"},
			install: func(pkgs []string) string {
				cmd := "dnf install -y " + ShellJoin(pkgs...)
				if slices.Contains(pkgs, "libvirt-daemon-kvm") {
					cmd += " && (systemctl enable --now libvirtd || systemctl enable --now virtqemud.socket)"
				}
				return cmd
			},
		}
	case family("arch", "archarm", "manjaro"):
		return pkgManager{
			libvirt:   []string{"libvirt"},
			qemu:      func(string) []string { return []string{"qemu-base"} },
			coreutils: []string{"coreutils"},
			install: func(pkgs []string) string {
				cmd := "pacman -S --noconfirm --needed " + ShellJoin(pkgs...)
				if slices.Contains(pkgs, "libvirt") {
					cmd += " && systemctl enable --now libvirtd"
				}
				return cmd
			},
		}
	}
	return pkgManager{libvirt: nil, qemu: func(string) []string { return nil }}
}

// InstallPrerequisites runs p.InstallCommand as root, its output to out.
// Call it only with the user's consent.
func (c *Client) InstallPrerequisites(ctx context.Context, p Prerequisites, out io.Writer) error {
	if p.InstallCommand == "" {
		return fmt.Errorf("install prerequisites on %s: no package-manager command for what is missing", c.Host)
	}
	return c.Run(ctx, Cmd{Line: p.InstallCommand, Root: true, Stdout: out, Stderr: out})
}
