package remote

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/butter-cloud/butter/helperapi"
)

// DefaultHelperDir is where helpers are installed on machines, one file per
// version: butter-<version>.
const DefaultHelperDir = "/var/lib/butter/bin"

// Platform is a machine's operating system and architecture, as Go names
// them (linux, amd64).
type Platform struct {
	OS, Arch string
}

func (p Platform) String() string { return p.OS + "/" + p.Arch }

// parseUname reads `uname -sm`.
func parseUname(s string) (Platform, error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return Platform{}, fmt.Errorf("uname -sm said %q", strings.TrimSpace(s))
	}
	p := Platform{OS: strings.ToLower(f[0]), Arch: f[1]}
	for arch, names := range unameArch {
		if slices.Contains(names, f[1]) {
			p.Arch = arch
		}
	}
	return p, nil
}

// unameArch lists, for each architecture the helper runs on, the names
// `uname -m` gives it.
var unameArch = map[string][]string{
	"amd64": {"x86_64", "amd64"},
	"arm64": {"aarch64", "arm64", "aarch64_be", "armv8l", "armv8b"},
}

// Platform asks the machine what it runs (uname -sm).
func (c *Client) Platform(ctx context.Context) (Platform, error) {
	out, err := c.Output(ctx, false, "uname -sm")
	if err != nil {
		return Platform{}, err
	}
	return parseUname(string(out))
}

// HelperOptions say where helper binaries come from and where they go.
type HelperOptions struct {
	// Binaries maps a GOARCH (amd64, arm64) to a butter binary built for
	// linux/<arch>, overriding every other source.
	Binaries map[string]string
	// CacheDir holds butter-linux-<arch> files; default
	// <user cache dir>/butter/helpers (~/.cache/butter/helpers on Linux,
	// ~/Library/Caches/butter/helpers on macOS).
	CacheDir string
	// Dir is the folder on the machine; default DefaultHelperDir.
	Dir string
}

func (o HelperOptions) cacheDir() string {
	if o.CacheDir != "" {
		return o.CacheDir
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(d, "butter", "helpers")
}

// HelperBinary is a butter binary for one platform.
type HelperBinary struct {
	Platform Platform
	// From says where it was found, for people.
	From string
	Data []byte
	// SHA256 is Data's hex sha256; Version its helper version
	// (helperapi.VersionOf).
	SHA256, Version string
}

// ErrNoHelper: no butter binary for the machine's platform was found.
var ErrNoHelper = errors.New("no helper binary for the machine's platform")

var (
	binariesMu sync.Mutex
	binaries   = map[string]*HelperBinary{} // by source
)

// FindHelper finds the butter binary to run on machines of platform p,
// trying in order: o.Binaries[arch]; the binaries embedded in a release
// build; this very executable when it is linux/<arch>; the cache folder.
// The error lists every place tried and how to build the binary.
func FindHelper(p Platform, o HelperOptions) (*HelperBinary, error) {
	if p.OS != "linux" || (p.Arch != "amd64" && p.Arch != "arm64") {
		return nil, fmt.Errorf("%w: the helper runs on linux/amd64 and linux/arm64, and this machine is %s", ErrNoHelper, p)
	}
	var tried []string
	if f := o.Binaries[p.Arch]; f != "" {
		b, err := loadHelper(p, f, "")
		if err != nil {
			return nil, err
		}
		return b, nil
	}
	if data := embeddedHelper(p.Arch); data != nil {
		return loadHelper(p, "embedded:"+p.Arch, "", data)
	}
	tried = append(tried, "the binaries embedded in release builds (this build has none)")
	if runtime.GOOS == "linux" && runtime.GOARCH == p.Arch {
		if exe, err := os.Executable(); err == nil {
			if b, err := loadHelper(p, exe, "this executable"); err == nil {
				return b, nil
			} else {
				tried = append(tried, err.Error())
			}
		} else {
			tried = append(tried, fmt.Sprintf("this executable: %v", err))
		}
	} else {
		tried = append(tried, fmt.Sprintf("this executable (it is %s/%s)", runtime.GOOS, runtime.GOARCH))
	}
	if dir := o.cacheDir(); dir != "" {
		f := filepath.Join(dir, "butter-linux-"+p.Arch)
		if b, err := loadHelper(p, f, ""); err == nil {
			return b, nil
		} else if errors.Is(err, os.ErrNotExist) {
			tried = append(tried, f+" (no such file)")
		} else {
			tried = append(tried, err.Error())
		}
	}
	return nil, fmt.Errorf("%w (%s): tried %s; build one with `CGO_ENABLED=0 GOOS=linux GOARCH=%s go build -trimpath -o %s .` in butter's source, or use a release build",
		ErrNoHelper, p, strings.Join(tried, ", "), p.Arch, filepath.Join(o.cacheDir(), "butter-linux-"+p.Arch))
}

// loadHelper reads (or takes data for) the binary at source and checks that
// it is an ELF executable for p. Binaries are kept in memory once read.
func loadHelper(p Platform, source, label string, data ...[]byte) (*HelperBinary, error) {
	if label == "" {
		label = source
	}
	binariesMu.Lock()
	defer binariesMu.Unlock()
	key := source
	if len(data) == 0 {
		fi, err := os.Stat(source)
		if err != nil {
			return nil, fmt.Errorf("helper binary %s: %w", source, err)
		}
		key = fmt.Sprintf("%s@%d@%d", source, fi.Size(), fi.ModTime().UnixNano())
	}
	if b := binaries[key]; b != nil {
		return b, nil
	}
	var d []byte
	if len(data) > 0 {
		d = data[0]
	} else {
		var err error
		if d, err = os.ReadFile(source); err != nil {
			return nil, fmt.Errorf("helper binary %s: %w", source, err)
		}
	}
	if err := checkELF(d, p); err != nil {
		return nil, fmt.Errorf("helper binary %s: %w", label, err)
	}
	sum := sha256.Sum256(d)
	b := &HelperBinary{Platform: p, From: label, Data: d, SHA256: hex.EncodeToString(sum[:]), Version: helperapi.VersionOfSum(sum)}
	binaries[key] = b
	return b, nil
}

// checkELF checks that data is a Linux executable for p's architecture.
func checkELF(data []byte, p Platform) error {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("not a Linux executable: %w", err)
	}
	defer f.Close()
	want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[p.Arch]
	if f.Machine != want {
		return fmt.Errorf("built for %s, not %s", f.Machine, p)
	}
	return nil
}

// Helper is a helper installed on a machine.
type Helper struct {
	// Path is the installed binary; Version its helper version.
	Path, Version string
	Platform      Platform
	// From is where the binary came from; Uploaded says it was sent now
	// (false: it was already there).
	From     string
	Uploaded bool
}

// InstallHelper makes sure the machine has the helper for its platform at
// <Dir>/butter-<version>, uploading it (atomically, sha256-checked) when
// it is missing or different. It does not start the daemon.
func (c *Client) InstallHelper(ctx context.Context, o HelperOptions) (Helper, error) {
	bin, err := c.binaryFor(ctx, o, "install helper on")
	if err != nil {
		return Helper{}, err
	}
	return c.installBinary(ctx, bin, o.Dir)
}

// binaryFor is the helper binary for the machine's platform; doing says
// what it is for in an error ("install helper on").
func (c *Client) binaryFor(ctx context.Context, o HelperOptions, doing string) (*HelperBinary, error) {
	p, err := c.Platform(ctx)
	if err == nil {
		var bin *HelperBinary
		if bin, err = FindHelper(p, o); err == nil {
			return bin, nil
		}
	}
	return nil, fmt.Errorf("%s %s: %w", doing, c.Host, err)
}

// ExpectedHelpers are the helpers InstallHelper would install on a
// machine of each platform the helper runs on that this butter has a
// binary for, asking no machine: what a connection that does not know
// its machine's platform yet may start (ConnectAny), saving the session
// that asks it.
func ExpectedHelpers(o HelperOptions) []Helper {
	var out []Helper
	for _, arch := range slices.Sorted(maps.Keys(unameArch)) {
		if bin, err := FindHelper(Platform{OS: "linux", Arch: arch}, o); err == nil {
			out = append(out, helperAt(bin, o.Dir))
		}
	}
	return out
}

// ExpectedHelper is the helper InstallHelper would install, without
// looking at the machine beyond its platform: a caller that connects to
// it (Connect checks the version in the hello) and installs only when that
// fails saves the checks' round trips on every connection but the first.
func (c *Client) ExpectedHelper(ctx context.Context, o HelperOptions) (Helper, error) {
	bin, err := c.binaryFor(ctx, o, "helper for")
	if err != nil {
		return Helper{}, err
	}
	return helperAt(bin, o.Dir), nil
}

func helperAt(bin *HelperBinary, dir string) Helper {
	if dir == "" {
		dir = DefaultHelperDir
	}
	return Helper{Path: path.Join(dir, "butter-"+bin.Version), Version: bin.Version, Platform: bin.Platform, From: bin.From}
}

func (c *Client) installBinary(ctx context.Context, bin *HelperBinary, dir string) (Helper, error) {
	h := helperAt(bin, dir)
	have, err := c.remoteSHA256(ctx, true, h.Path)
	if err != nil {
		return Helper{}, fmt.Errorf("install helper on %s: %w", c.Host, err)
	}
	if have == bin.SHA256 {
		return h, nil
	}
	err = c.Upload(ctx, Upload{Path: h.Path, Mode: 0o755, SHA256: bin.SHA256, Body: bytes.NewReader(bin.Data), Root: true})
	if err != nil {
		return Helper{}, fmt.Errorf("install helper on %s: %w", c.Host, err)
	}
	h.Uploaded = true
	return h, nil
}
