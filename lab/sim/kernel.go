// This file finds Debian's installed kernel and turns its compressed bzImage
// into the ELF vmlinux that qemu boots through the PVH entry, about twice as
// fast under TCG as the bzImage with its real-mode setup and in-guest
// decompression.
//
// New dependency: github.com/therootcompany/xz (CC0, pure Go, no
// dependencies of its own), a maintained fork of xi2/xz, itself a port of
// XZ Embedded, the decoder the kernel uses to unpack itself. Debian's x86
// kernels are compressed with `xz --check=crc32 --x86 --lzma2`: the x86 BCJ
// filter is part of the stream, and github.com/ulikunitz/xz, the better
// known Go xz package, decodes LZMA2 only and rejects that filter.

package sim

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/therootcompany/xz"
)

// Kernel is a kernel installed the Debian way: /boot/vmlinuz-<release> with
// its modules under /lib/modules/<release>.
type Kernel struct {
	Release    string // e.g. 6.1.0-56-amd64
	Image      string // the compressed bzImage
	ModulesDir string // holds modules.dep and kernel/
}

// FindKernel returns the newest kernel under root (normally "/") whose
// bzImage and modules.dep are both installed.
func FindKernel(root string) (Kernel, error) {
	images, err := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if err != nil {
		return Kernel{}, fmt.Errorf("find kernel: %w", err)
	}
	var found []Kernel
	for _, img := range images {
		rel := strings.TrimPrefix(filepath.Base(img), "vmlinuz-")
		k := Kernel{Release: rel, Image: img, ModulesDir: filepath.Join(root, "lib", "modules", rel)}
		if _, err := os.Stat(filepath.Join(k.ModulesDir, "modules.dep")); err == nil {
			found = append(found, k)
		}
	}
	if len(found) == 0 {
		return Kernel{}, fmt.Errorf("find kernel: no %s with a matching %s/<release>/modules.dep; install linux-image-amd64",
			filepath.Join(root, "boot", "vmlinuz-*"), filepath.Join(root, "lib", "modules"))
	}
	slices.SortFunc(found, func(a, b Kernel) int { return compareVersions(a.Release, b.Release) })
	return found[len(found)-1], nil
}

// compareVersions orders release strings such as 6.1.0-9-amd64 and
// 6.1.0-56-amd64 numerically where they hold numbers.
func compareVersions(a, b string) int {
	split := func(s string) []string {
		return strings.FieldsFunc(s, func(r rune) bool { return r == '.' || r == '-' || r == '+' || r == '~' })
	}
	as, bs := split(a), split(b)
	for i := 0; i < len(as) && i < len(bs); i++ {
		an, aerr := strconv.Atoi(as[i])
		bn, berr := strconv.Atoi(bs[i])
		var c int
		if aerr == nil && berr == nil {
			c = an - bn
		} else {
			c = strings.Compare(as[i], bs[i])
		}
		if c != 0 {
			return c
		}
	}
	return len(as) - len(bs)
}

// xzMagic starts an xz stream (the kernel's compressed payload).
var xzMagic = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}

// ExtractVmlinux finds the xz-compressed kernel inside a bzImage and returns
// it decompressed: an ELF executable qemu can boot through PVH.
func ExtractVmlinux(bzImage []byte) ([]byte, error) {
	var lastErr error
	// The magic can in principle occur by chance before the payload: try
	// every occurrence until one decodes to an ELF file.
	for off := 0; ; {
		i := bytes.Index(bzImage[off:], xzMagic)
		if i < 0 {
			break
		}
		start := off + i
		off = start + 1
		out, err := decodeXZ(bzImage[start:])
		if err != nil {
			lastErr = err
			continue
		}
		if _, err := elf.NewFile(bytes.NewReader(out)); err != nil {
			lastErr = fmt.Errorf("payload at offset %d is not ELF: %w", start, err)
			continue
		}
		return out, nil
	}
	if lastErr == nil {
		return nil, errors.New("extract vmlinux: no xz stream in the image (is the kernel xz-compressed?)")
	}
	return nil, fmt.Errorf("extract vmlinux: %w", lastErr)
}

func decodeXZ(b []byte) ([]byte, error) {
	r, err := xz.NewReader(bytes.NewReader(b), 0)
	if err != nil {
		return nil, fmt.Errorf("xz: %w", err)
	}
	// The kernel's size trailer follows the stream; it is not a second one.
	r.Multistream(false)
	var out bytes.Buffer
	if _, err := io.Copy(&out, r); err != nil {
		return nil, fmt.Errorf("xz: %w", err)
	}
	return out.Bytes(), nil
}

// extractorVersion changes the cache key when the extraction changes.
const extractorVersion = "vmlinux-1"

// Vmlinux returns the path of k's extracted ELF kernel, extracting it into
// cacheDir on first use.
func (k Kernel) Vmlinux(ctx context.Context, cacheDir string) (string, error) {
	img, err := os.ReadFile(k.Image)
	if err != nil {
		return "", fmt.Errorf("read kernel image: %w", err)
	}
	sum := sha256.Sum256(img)
	key := "vmlinux-" + hex.EncodeToString(sum[:8])
	dir, err := Cached(ctx, cacheDir, key, extractorVersion, func(dir string) error {
		out, err := ExtractVmlinux(img)
		if err != nil {
			return fmt.Errorf("%s: %w", k.Image, err)
		}
		return os.WriteFile(filepath.Join(dir, "vmlinux"), out, 0o644)
	})
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "vmlinux"), nil
}

// Module is a loadable kernel module file.
type Module struct {
	Name string // as modprobe spells it, with underscores: ip_gre
	Path string // absolute path of the .ko file
}

// Modules returns want and everything they depend on, each once, in an
// order that can be loaded one by one: dependencies first.
func (k Kernel) Modules(want ...string) ([]Module, error) {
	f, err := os.Open(filepath.Join(k.ModulesDir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("kernel %s modules: %w", k.Release, err)
	}
	defer f.Close()
	order, err := ModuleOrder(f, want)
	if err != nil {
		return nil, fmt.Errorf("kernel %s modules: %w", k.Release, err)
	}
	mods := make([]Module, len(order))
	for i, rel := range order {
		mods[i] = Module{Name: moduleName(rel), Path: filepath.Join(k.ModulesDir, rel)}
	}
	return mods, nil
}

// moduleName turns kernel/net/ipv4/ip_gre.ko into ip_gre, and
// chacha-x86_64.ko into chacha_x86_64, as the kernel names modules.
func moduleName(path string) string {
	base := filepath.Base(path)
	for _, ext := range []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"} {
		if s, ok := strings.CutSuffix(base, ext); ok {
			base = s
			break
		}
	}
	return strings.ReplaceAll(base, "-", "_")
}

// ModuleOrder reads a modules.dep file and returns the module paths (as
// written there, relative to the modules folder) that loading want needs,
// dependencies first, the way modprobe would load them.
func ModuleOrder(modulesDep io.Reader, want []string) ([]string, error) {
	deps := map[string][]string{} // path → its dependencies' paths
	byName := map[string]string{} // module name → path
	sc := bufio.NewScanner(modulesDep)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		path, rest, ok := strings.Cut(text, ":")
		if !ok {
			return nil, fmt.Errorf("modules.dep line %d: no colon in %q", line, text)
		}
		path = strings.TrimSpace(path)
		deps[path] = strings.Fields(rest)
		byName[moduleName(path)] = path
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read modules.dep: %w", err)
	}

	const (
		visiting = 1
		done     = 2
	)
	state := map[string]int{}
	var order []string
	var visit func(path string, chain []string) error
	visit = func(path string, chain []string) error {
		switch state[path] {
		case done:
			return nil
		case visiting:
			return fmt.Errorf("dependency cycle: %s", strings.Join(append(chain, moduleName(path)), " → "))
		}
		ds, ok := deps[path]
		if !ok {
			return fmt.Errorf("module %s (needed by %s) is not in modules.dep", moduleName(path), strings.Join(chain, " → "))
		}
		state[path] = visiting
		chain = append(chain, moduleName(path))
		// depmod lists a module's dependencies so that the last one has to
		// be loaded first; modprobe walks them backwards.
		for i := len(ds) - 1; i >= 0; i-- {
			if err := visit(ds[i], chain); err != nil {
				return err
			}
		}
		state[path] = done
		order = append(order, path)
		return nil
	}
	var missing []string
	for _, w := range want {
		path, ok := byName[strings.ReplaceAll(w, "-", "_")]
		if !ok {
			missing = append(missing, w)
			continue
		}
		if err := visit(path, nil); err != nil {
			return nil, err
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("no module %s in modules.dep (built in, or not installed?)", strings.Join(missing, ", "))
	}
	return order, nil
}
