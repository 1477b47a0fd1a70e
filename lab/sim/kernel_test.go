package sim

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// A cut of Debian 6.1's modules.dep: the shape depmod writes.
const modulesDep = `kernel/drivers/net/wireguard/wireguard.ko: kernel/lib/crypto/libchacha20poly1305.ko kernel/arch/x86/crypto/chacha-x86_64.ko kernel/arch/x86/crypto/poly1305-x86_64.ko kernel/arch/x86/crypto/curve25519-x86_64.ko kernel/lib/crypto/libcurve25519-generic.ko kernel/lib/crypto/libchacha.ko kernel/net/ipv6/ip6_udp_tunnel.ko kernel/net/ipv4/udp_tunnel.ko
kernel/lib/crypto/libchacha20poly1305.ko: kernel/arch/x86/crypto/chacha-x86_64.ko kernel/arch/x86/crypto/poly1305-x86_64.ko kernel/lib/crypto/libchacha.ko
kernel/arch/x86/crypto/chacha-x86_64.ko: kernel/lib/crypto/libchacha.ko
kernel/arch/x86/crypto/poly1305-x86_64.ko:
kernel/arch/x86/crypto/curve25519-x86_64.ko: kernel/lib/crypto/libcurve25519-generic.ko
kernel/lib/crypto/libcurve25519-generic.ko:
kernel/lib/crypto/libchacha.ko:
kernel/net/ipv6/ip6_udp_tunnel.ko:
kernel/net/ipv4/udp_tunnel.ko:
kernel/net/ipv4/ip_gre.ko: kernel/net/ipv4/ip_tunnel.ko kernel/net/ipv4/gre.ko
kernel/net/ipv4/ip_tunnel.ko:
kernel/net/ipv4/gre.ko:
kernel/net/bridge/bridge.ko: kernel/net/802/stp.ko kernel/net/llc/llc.ko
kernel/net/802/stp.ko: kernel/net/llc/llc.ko
kernel/net/llc/llc.ko:
kernel/drivers/net/veth.ko:
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
`

func moduleNames(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = moduleName(p)
	}
	return out
}

func TestModuleOrder(t *testing.T) {
	tests := []struct {
		name string
		dep  string
		want []string
		out  []string
		err  string
	}{
		{
			name: "no dependencies",
			dep:  modulesDep,
			want: []string{"veth"},
			out:  []string{"veth"},
		},
		{
			name: "dependencies first, each once",
			dep:  modulesDep,
			want: []string{"virtio_pci", "virtio_net"},
			out: []string{"virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci",
				"failover", "net_failover", "virtio_net"},
		},
		{
			name: "dash and underscore are one",
			dep:  modulesDep,
			want: []string{"chacha-x86_64", "curve25519_x86_64"},
			out:  []string{"libchacha", "chacha_x86_64", "libcurve25519_generic", "curve25519_x86_64"},
		},
		{
			name: "the lab's set",
			dep:  modulesDep,
			want: []string{"virtio_pci", "virtio_net", "wireguard", "ip_gre", "bridge", "veth"},
			out: []string{"virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci",
				"failover", "net_failover", "virtio_net",
				"udp_tunnel", "ip6_udp_tunnel", "libchacha", "libcurve25519_generic", "curve25519_x86_64",
				"poly1305_x86_64", "chacha_x86_64", "libchacha20poly1305", "wireguard",
				"gre", "ip_tunnel", "ip_gre", "llc", "stp", "bridge", "veth"},
		},
		{
			name: "unknown module",
			dep:  modulesDep,
			want: []string{"veth", "nosuch", "neither"},
			err:  "no module nosuch, neither in modules.dep",
		},
		{
			name: "dependency missing from the file",
			dep:  "a.ko: b.ko\n",
			want: []string{"a"},
			err:  "module b (needed by a) is not in modules.dep",
		},
		{
			name: "cycle",
			dep:  "a.ko: b.ko\nb.ko: c.ko\nc.ko: a.ko\n",
			want: []string{"a"},
			err:  "dependency cycle: a → b → c → a",
		},
		{
			name: "malformed",
			dep:  "a.ko b.ko\n",
			want: []string{"a"},
			err:  "modules.dep line 1: no colon",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ModuleOrder(strings.NewReader(tt.dep), tt.want)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.out, moduleNames(got)); diff != "" {
				t.Errorf("order (-want +got):\n%s", diff)
			}
			// Whatever the order, each module comes after all it needs.
			deps := map[string][]string{}
			for _, line := range strings.Split(tt.dep, "\n") {
				if p, rest, ok := strings.Cut(line, ":"); ok {
					deps[p] = strings.Fields(rest)
				}
			}
			pos := map[string]int{}
			for i, p := range got {
				pos[p] = i
			}
			for _, p := range got {
				for _, d := range deps[p] {
					if dp, ok := pos[d]; !ok || dp > pos[p] {
						t.Errorf("%s loads before its dependency %s", p, d)
					}
				}
			}
		})
	}
}

func TestFindKernel(t *testing.T) {
	root := t.TempDir()
	for _, rel := range []string{"6.1.0-9-amd64", "6.1.0-56-amd64", "6.1.0-99-amd64"} {
		okOrFatal(t, os.MkdirAll(filepath.Join(root, "boot"), 0o755))
		okOrFatal(t, os.WriteFile(filepath.Join(root, "boot", "vmlinuz-"+rel), nil, 0o644))
		if rel == "6.1.0-99-amd64" {
			continue // image without modules: not usable
		}
		okOrFatal(t, os.MkdirAll(filepath.Join(root, "lib", "modules", rel), 0o755))
		okOrFatal(t, os.WriteFile(filepath.Join(root, "lib", "modules", rel, "modules.dep"), nil, 0o644))
	}
	k, err := FindKernel(root)
	if err != nil {
		t.Fatal(err)
	}
	want := Kernel{
		Release:    "6.1.0-56-amd64",
		Image:      filepath.Join(root, "boot", "vmlinuz-6.1.0-56-amd64"),
		ModulesDir: filepath.Join(root, "lib", "modules", "6.1.0-56-amd64"),
	}
	if diff := cmp.Diff(want, k); diff != "" {
		t.Errorf("FindKernel (-want +got):\n%s", diff)
	}
	if _, err := FindKernel(t.TempDir()); err == nil {
		t.Error("FindKernel of an empty root: no error")
	}
}

func TestExtractVmlinuxRejectsJunk(t *testing.T) {
	if _, err := ExtractVmlinux([]byte("MZ no kernel here")); err == nil {
		t.Error("no error for an image without an xz stream")
	}
	bad := append([]byte("junk"), xzMagic...)
	bad = append(bad, "not really xz"...)
	if _, err := ExtractVmlinux(bad); err == nil {
		t.Error("no error for a broken xz stream")
	}
}

// The installed kernel, when there is one: slow-ish (a 60 MB decompression).
func TestExtractVmlinuxInstalled(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the decompression of the installed kernel")
	}
	k, err := FindKernel("/")
	if err != nil {
		t.Skipf("no installed Debian kernel: %v", err)
	}
	img, err := os.ReadFile(k.Image)
	if err != nil {
		t.Skipf("kernel image not readable: %v", err)
	}
	out, err := ExtractVmlinux(img)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 1<<20 {
		t.Errorf("vmlinux of %d bytes: too small", len(out))
	}
}

func TestCached(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	builds := 0
	build := func(d string) error {
		builds++
		return os.WriteFile(filepath.Join(d, "x"), []byte("x"), 0o644)
	}
	for range 2 {
		got, err := Cached(ctx, dir, "k", "v1", build)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(got, "x")); err != nil {
			t.Fatal(err)
		}
	}
	if builds != 1 {
		t.Errorf("built %d times, want 1", builds)
	}
	if _, err := Cached(ctx, dir, "k", "v2", build); err != nil {
		t.Fatal(err)
	}
	if builds != 2 {
		t.Errorf("a new version did not rebuild (builds = %d)", builds)
	}
	failing := func(d string) error { return os.ErrPermission }
	if _, err := Cached(ctx, dir, "bad", "v1", failing); err == nil {
		t.Error("a failing build returned no error")
	}
	if _, err := os.Stat(filepath.Join(dir, "bad")); err == nil {
		t.Error("a failed build left its folder in place")
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*.tmp-*"))
	if len(left) > 0 {
		t.Errorf("temporary folders left: %v", left)
	}
}

func okOrFatal(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
