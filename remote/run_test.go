package remote

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// client dials the fixture's server with its key pinned in known_hosts.
func (f *fixture) client(t *testing.T) *Client {
	t.Helper()
	knownHostsFile(t, filepath.Join(f.home, ".ssh"), f.srv.addr, f.srv.hostKeys[0].PublicKey())
	c, err := f.dial(t, f.opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRunStreams(t *testing.T) {
	f := newFixture(t)
	c := f.client(t)
	var out, errOut bytes.Buffer
	err := c.Run(context.Background(), Cmd{Line: "cat; echo oops >&2", Stdin: strings.NewReader("in"), Stdout: &out, Stderr: &errOut})
	if err != nil || out.String() != "in" || errOut.String() != "oops\n" {
		t.Fatalf("got %q, %q, %v", out.String(), errOut.String(), err)
	}
	err = c.Run(context.Background(), Cmd{Line: "echo broken >&2; exit 3"})
	var re *RunError
	if !errors.As(err, &re) || re.Status != 3 || !strings.Contains(err.Error(), "broken") {
		t.Fatalf("failing command: got %v", err)
	}
}

func TestRunCancel(t *testing.T) {
	f := newFixture(t)
	c := f.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := c.Run(ctx, Cmd{Line: "sleep 30"})
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Fatalf("cancelled run: %v after %s", err, time.Since(start))
	}
	// The connection still works.
	if out, err := c.Output(context.Background(), false, "echo alive"); err != nil || string(out) != "alive\n" {
		t.Fatalf("after cancel: %q, %v", out, err)
	}
}

// A user who is not root runs root commands through sudo -n; when sudo
// wants a password the error says so and how to fix it.
func TestSudoPassword(t *testing.T) {
	f := newFixture(t)
	f.srv.users["alice"] = f.srv.users["root"]
	f.srv.handler = func(cmd string, ch ssh.Channel, _ <-chan struct{}) int {
		if strings.HasPrefix(cmd, "sudo -n ") {
			ch.Stderr().Write([]byte("sudo: a password is required\n"))
			return 1
		}
		return shellHandler(cmd, ch, nil)
	}
	o := f.opts
	o.User = "alice"
	f.opts = o
	c := f.client(t)
	_, err := c.Output(context.Background(), true, "id -u")
	if !errors.Is(err, ErrSudoPassword) {
		t.Fatalf("got %v, want ErrSudoPassword", err)
	}
	for _, want := range []string{`"alice"`, "NOPASSWD", "sudo -n", c.Host} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if !f.srv.sawExec("sudo -n id -u") {
		t.Errorf("commands run: %q", f.srv.execs)
	}
	// Commands that need no root run as they are.
	if out, err := c.Output(context.Background(), false, "echo plain"); err != nil || string(out) != "plain\n" {
		t.Fatalf("plain command: %q, %v", out, err)
	}
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestUpload(t *testing.T) {
	f := newFixture(t)
	c := f.client(t)
	dir := filepath.Join(t.TempDir(), "bin")
	target := filepath.Join(dir, "tool")
	body := []byte("#!/bin/sh\necho tool\n")
	ctx := context.Background()

	// A mismatch is refused and leaves nothing.
	err := c.Upload(ctx, Upload{Path: target, Mode: 0o755, SHA256: sum([]byte("other")), Body: bytes.NewReader(body), Root: true})
	if !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), sum(body)) {
		t.Fatalf("mismatch: got %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("a refused upload left %v", entries)
	}

	if err := c.Upload(ctx, Upload{Path: target, Mode: 0o755, SHA256: sum(body), Body: bytes.NewReader(body), Root: true}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(target)
	fi, _ := os.Stat(target)
	if err != nil || !bytes.Equal(got, body) || fi.Mode().Perm() != 0o755 {
		t.Fatalf("uploaded %q (%v), %v", got, fi.Mode(), err)
	}
	// Replacing it with a mismatch keeps the old file.
	err = c.Upload(ctx, Upload{Path: target, SHA256: sum(body), Body: strings.NewReader("truncated"), Root: true})
	if !errors.Is(err, ErrChecksum) {
		t.Fatalf("got %v", err)
	}
	if got, _ := os.ReadFile(target); !bytes.Equal(got, body) {
		t.Fatalf("a refused upload replaced the file: %q", got)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("left behind: %v", entries)
	}
}

func TestInstallHelperFromCache(t *testing.T) {
	f := newFixture(t)
	c := f.client(t)
	// The running test binary is a linux/<arch> ELF: stand it in for a
	// helper in the cache folder.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.Platform(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	if err := os.WriteFile(filepath.Join(cache, "butter-linux-"+p.Arch), data, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "bin")
	bin, err := loadHelper(p, filepath.Join(cache, "butter-linux-"+p.Arch), "")
	if err != nil {
		t.Fatal(err)
	}
	h, err := c.installBinary(context.Background(), bin, dir)
	if err != nil || !h.Uploaded || h.Path != filepath.Join(dir, "butter-"+bin.Version) {
		t.Fatalf("install: %+v, %v", h, err)
	}
	if got, _ := os.ReadFile(h.Path); !bytes.Equal(got, data) {
		t.Fatal("installed binary differs")
	}
	h2, err := c.installBinary(context.Background(), bin, dir)
	if err != nil || h2.Uploaded {
		t.Fatalf("second install uploaded again: %+v, %v", h2, err)
	}
}

func TestFindHelper(t *testing.T) {
	isolate(t)
	_, err := FindHelper(Platform{OS: "linux", Arch: "riscv64"}, HelperOptions{})
	if !errors.Is(err, ErrNoHelper) {
		t.Fatalf("riscv64: got %v", err)
	}
	other := map[string]string{"amd64": "arm64", "arm64": "amd64"}[hostArch()]
	_, err = FindHelper(Platform{OS: "linux", Arch: other}, HelperOptions{CacheDir: t.TempDir()})
	if !errors.Is(err, ErrNoHelper) || !strings.Contains(err.Error(), "GOARCH="+other) || !strings.Contains(err.Error(), "embedded") {
		t.Fatalf("no %s binary: got %v", other, err)
	}
	// A binary for the wrong architecture is refused.
	exe, _ := os.Executable()
	_, err = FindHelper(Platform{OS: "linux", Arch: other}, HelperOptions{Binaries: map[string]string{other: exe}})
	if err == nil || !strings.Contains(err.Error(), "built for") {
		t.Fatalf("wrong architecture: got %v", err)
	}
}

func TestParsePrerequisites(t *testing.T) {
	out := "id debian\nlike \nuname Linux x86_64\nlibvirt missing\nqemu missing qemu-system-x86_64\n" +
		"wireguard tun\nbridge ok\ntunnel ok\nsha256sum ok\n"
	p, err := parsePrerequisites(out)
	if err != nil {
		t.Fatal(err)
	}
	want := "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libvirt-daemon-system qemu-system-x86 qemu-utils"
	if p.InstallCommand != want || len(p.Missing) != 2 || len(p.Notes) != 1 {
		t.Fatalf("got %+v", p)
	}
	p, _ = parsePrerequisites("id fedora\nlike \nuname Linux aarch64\nlibvirt ok\nqemu missing qemu-system-aarch64\nwireguard missing\nbridge ok\ntunnel missing\nsha256sum ok\n")
	if p.InstallCommand != "dnf install -y qemu-kvm qemu-img" || len(p.Missing) != 3 || p.Platform.Arch != "arm64" {
		t.Fatalf("got %+v", p)
	}
	p, _ = parsePrerequisites("id ubuntu\nlike debian\nuname Linux x86_64\nlibvirt ok\nqemu ok\nwireguard kernel\nbridge ok\ntunnel ok\nsha256sum ok\n")
	if !p.OK() || p.InstallCommand != "" {
		t.Fatalf("got %+v", p)
	}
}

// The prerequisite script runs on this machine through the fake server.
func TestCheckPrerequisitesRuns(t *testing.T) {
	f := newFixture(t)
	c := f.client(t)
	p, err := c.CheckPrerequisites(context.Background())
	if err != nil || p.Platform.OS != "linux" {
		t.Fatalf("got %+v, %v", p, err)
	}
	t.Logf("this machine: %+v", p)
}

func hostArch() string {
	p, _ := parseUname("Linux " + unameMachine())
	return p.Arch
}
