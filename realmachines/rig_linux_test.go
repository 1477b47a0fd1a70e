package realmachines

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/butter-cloud/butter/internal/testbed"
)

// Guests under TCG: 2 vCPUs boot systemd ~13 s sooner than one (lab
// notes); 640 MiB leaves libvirtd's qemu capability probe room.
const (
	guestMemory = 640
	guestCPUs   = 2
	bootWithin  = 4 * time.Minute
)

// rig is the tier's lab: the butter binary with a home of its own, a
// bridge in the root namespace holding the operator's address on the
// underlay, and machines, each a qemu guest on a tap of that bridge.
type rig struct {
	t        *testing.T
	ctx      context.Context
	dir      string
	img      testbed.MachineImage
	butter   string
	env      []string
	bridge   string
	underlay netip.Prefix
	signer   ssh.Signer
	keyFile  string
	machines []*machine
}

// machine is one real machine: its seed, its disk (an overlay of the
// image) and, while it runs, its qemu.
type machine struct {
	name     string
	seed     testbed.MachineSeed
	hostKey  string // SHA256:… as butter machine add --host-key takes it
	tap      string
	overlay  string
	seedDisk string
	mtu      int // offered to its NIC at the next boot; 0: the default

	mu      sync.Mutex
	guest   *testbed.Guest
	console *os.File
	lines   []testbed.SerialLine // since the last boot
	client  *ssh.Client
}

func (m *machine) addr() netip.Addr { return m.seed.Address.Addr() }

// newRig builds (or finds) the image, builds butter, and makes the bridge
// and n machines' disks and taps, none booted yet.
func newRig(t *testing.T, ctx context.Context, n int) *rig {
	t.Helper()
	r := &rig{t: t, ctx: ctx, dir: t.TempDir()}
	start := time.Now()
	img, err := testbed.BuildMachineImage(ctx, "", logWriter{t, "image: "})
	if err != nil {
		t.Fatal(err)
	}
	r.img = img
	t.Logf("image %s ready after %s", img.Dir, time.Since(start).Round(100*time.Millisecond))

	r.butter = filepath.Join(r.dir, "butter")
	build := exec.CommandContext(ctx, "go", "build", "-o", r.butter, ".")
	build.Dir = ".."
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build butter: %v: %s", err, out)
	}
	home := filepath.Join(r.dir, "home")
	r.env = append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"),
		"XDG_CACHE_HOME="+filepath.Join(home, ".cache"), "SSH_AUTH_SOCK=", "BUTTER_HOLDER=off")

	// The operator's key, which every machine's seed authorizes.
	key := testbed.NewUserKey(t)
	r.signer = key.Signer
	r.keyFile = filepath.Join(r.dir, "id_ed25519")
	key.WriteIdentity(t, r.keyFile)

	name := testbed.LabName("rm")
	r.underlay = testbed.Underlay(name)
	r.bridge = "b" + name
	hostAddr := netip.PrefixFrom(r.underlay.Addr().Next(), r.underlay.Bits())
	t.Cleanup(func() { r.ip("link", "delete", r.bridge) })
	r.mustIP("link", "add", r.bridge, "type", "bridge")
	r.mustIP("addr", "add", hostAddr.String(), "dev", r.bridge)
	r.mustIP("link", "set", r.bridge, "up")

	for i := range n {
		m := &machine{name: fmt.Sprintf("m%d", i+1), tap: fmt.Sprintf("%s-%d", name, i+1)}
		_, hk, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		addr := r.underlay.Addr()
		for range 11 + i {
			addr = addr.Next()
		}
		m.seed = testbed.MachineSeed{
			Hostname:      m.name,
			HostKey:       hk,
			AuthorizedKey: r.signer.PublicKey(),
			MAC:           net.HardwareAddr{0x52, 0x54, 0x00, 0xb7, 0x7f, byte(i + 1)},
			Address:       netip.PrefixFrom(addr, r.underlay.Bits()),
		}
		if m.hostKey, err = m.seed.HostKeyFingerprint(); err != nil {
			t.Fatal(err)
		}
		m.seedDisk = filepath.Join(r.dir, m.name+"-seed.raw")
		if err := m.seed.WriteDisk(ctx, m.seedDisk); err != nil {
			t.Fatal(err)
		}
		m.overlay = filepath.Join(r.dir, m.name+".qcow2")
		if out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2", "-b", img.Disk, "-F", "qcow2", m.overlay).CombinedOutput(); err != nil {
			t.Fatalf("overlay for %s: %v: %s", m.name, err, out)
		}
		t.Cleanup(func() { r.ip("link", "delete", m.tap) })
		r.mustIP("tuntap", "add", "dev", m.tap, "mode", "tap")
		r.mustIP("link", "set", m.tap, "master", r.bridge, "up")
		r.machines = append(r.machines, m)
	}
	t.Cleanup(func() {
		for _, m := range r.machines {
			m.kill()
		}
	})
	return r
}

// ip runs ip(8) in the root namespace.
func (r *rig) ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func (r *rig) mustIP(args ...string) {
	r.t.Helper()
	if err := r.ip(args...); err != nil {
		r.t.Fatal(err)
	}
}

// boot starts m's qemu (its tap's MTU set to m.mtu first, if any) and
// keeps its console in <dir>/<name>-console.log and in memory.
func (r *rig) boot(m *machine) {
	r.t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mtu > 0 {
		r.mustIP("link", "set", m.tap, "mtu", fmt.Sprint(m.mtu))
	}
	if m.console == nil {
		f, err := os.Create(filepath.Join(r.dir, m.name+"-console.log"))
		if err != nil {
			r.t.Fatal(err)
		}
		m.console = f
		r.t.Cleanup(func() {
			if r.t.Failed() {
				r.t.Logf("%s's console: %s", m.name, f.Name())
			}
			f.Close()
		})
	}
	g, err := testbed.StartGuest(r.ctx, testbed.GuestOptions{
		Name: m.name, Kernel: r.img.Kernel, Initrd: r.img.Initrd, Append: r.img.Cmdline(),
		Memory: guestMemory, CPUs: guestCPUs, Tap: m.tap, MAC: m.seed.MAC.String(), HostMTU: m.mtu,
		Disks: []string{m.overlay, m.seedDisk}, Reboot: true,
	})
	if err != nil {
		r.t.Fatal(err)
	}
	m.guest, m.lines = g, nil
	fmt.Fprintf(m.console, "=== qemu started %s\n", g.Started.Format(time.RFC3339))
	go func() {
		for l := range g.Lines() {
			m.mu.Lock()
			m.lines = append(m.lines, l)
			fmt.Fprintf(m.console, "[%7.2f] %s\n", l.At.Seconds(), l.Text)
			m.mu.Unlock()
		}
	}()
}

// kill stops m's qemu at once, as a power loss does.
func (m *machine) kill() {
	m.mu.Lock()
	g, c := m.guest, m.client
	m.guest, m.client = nil, nil
	m.mu.Unlock()
	if c != nil {
		c.Close()
	}
	if g != nil {
		g.Kill()
		g.Wait()
	}
}

// consoleTail is the last lines of m's console since it booted.
func (m *machine) consoleTail(n int) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var b strings.Builder
	for _, l := range m.lines[max(0, len(m.lines)-n):] {
		fmt.Fprintf(&b, "[%7.2f] %s\n", l.At.Seconds(), l.Text)
	}
	return b.String()
}

// ssh returns a client logged in to m as root with the operator's key
// and m's host key pinned, dialing (and waiting for sshd) if needed.
func (r *rig) ssh(m *machine, within time.Duration) (*ssh.Client, error) {
	m.mu.Lock()
	c := m.client
	m.mu.Unlock()
	if c != nil {
		return c, nil
	}
	want := m.seed.HostKey.Public().(ed25519.PublicKey)
	config := &ssh.ClientConfig{
		User: "root",
		Auth: []ssh.AuthMethod{ssh.PublicKeys(r.signer)},
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			ck, ok := key.(ssh.CryptoPublicKey)
			if !ok || !bytes.Equal(ck.CryptoPublicKey().(ed25519.PublicKey), want) {
				return fmt.Errorf("host key %s is not %s's %s", ssh.FingerprintSHA256(key), m.name, m.hostKey)
			}
			return nil
		},
		HostKeyAlgorithms: []string{ssh.KeyAlgoED25519},
		Timeout:           20 * time.Second,
	}
	c, err := testbed.DialGuestSSH(r.ctx, "/proc/self/ns/net", net.JoinHostPort(m.addr().String(), "22"), config, within)
	if err != nil {
		return nil, fmt.Errorf("%s: %w\nits console's end:\n%s", m.name, err, m.consoleTail(30))
	}
	m.mu.Lock()
	m.client = c
	m.mu.Unlock()
	return c, nil
}

// sh runs a shell line on m as root and returns its standard output; it
// gives up after a minute.
func (r *rig) sh(m *machine, line string) (string, error) {
	return r.shWithin(m, line, time.Minute)
}

// shWithin is sh for a line that may take longer than a minute.
func (r *rig) shWithin(m *machine, line string, within time.Duration) (string, error) {
	c, err := r.ssh(m, bootWithin)
	if err != nil {
		return "", err
	}
	out, err := testbed.RunSSHWithin(r.ctx, c, line, within)
	if err != nil {
		return out, fmt.Errorf("on %s: %w", m.name, err)
	}
	return out, nil
}

func (r *rig) mustSh(m *machine, line string) string {
	r.t.Helper()
	out, err := r.sh(m, line)
	if err != nil {
		r.t.Fatal(err)
	}
	return out
}

// forget drops m's SSH client (after a reboot or power loss).
func (m *machine) forget() {
	m.mu.Lock()
	c := m.client
	m.client = nil
	m.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// run runs the butter binary and returns its standard output; standard
// error goes into the error.
func (r *rig) run(args ...string) (string, error) {
	cmd := exec.CommandContext(r.ctx, r.butter, args...)
	cmd.Env = r.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("butter %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String(), nil
}

func (r *rig) must(args ...string) string {
	r.t.Helper()
	out, err := r.run(args...)
	if err != nil {
		r.t.Fatal(err)
	}
	return out
}

// add runs `butter machine add` for m as a user would: over SSH as root
// with the operator's key, the host key pinned, and VMs under TCG (the
// guest's CPU shows SVM, and KVM nested in TCG is no use).
func (r *rig) add(m *machine) string {
	r.t.Helper()
	return r.must("machine", "add", m.name, "--address", m.addr().String(), "--user", "root",
		"--identity", r.keyFile, "--host-key", m.hostKey, "--accel", "tcg", "--yes")
}

// logWriter sends a build's output to t.Log line by line, prefixed.
type logWriter struct {
	t      *testing.T
	prefix string
}

func (w logWriter) Write(p []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		w.t.Log(w.prefix + l)
	}
	return len(p), nil
}
