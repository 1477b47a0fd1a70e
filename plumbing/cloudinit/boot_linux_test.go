package cloudinit_test

// The real cloud-init tier: boot Debian 12 with cloud-init under qemu
// (TCG) from the lab's cached image, with a seed made by this package, and
// prove over SSH, with the key the seed carried and the host key the guest
// printed on its console, that the host name, the default user, the
// static address, the default route and the MTU were applied.

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/butter-cloud/butter/internal/testbed"
	"github.com/butter-cloud/butter/lab/sim"
	"github.com/butter-cloud/butter/plumbing/cloudinit"
)

const (
	guestMem  = "512M"
	guestCPUs = "2"
	// Under TCG the guest needs 56–67 s from qemu's start to cloud-init's
	// end on these machines; leave room for a busy host.
	bootTimeout = 5 * time.Minute
)

func TestBootCloudInit(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a Debian guest under qemu TCG (~1.5 min warm, ~4.5 min cold); not in -short")
	}
	testbed.NeedRoot(t) // debootstrap, network namespaces, tap devices
	testbed.NeedPrograms(t, "qemu-system-x86_64", "qemu-img", "ip", "nsenter")
	testbed.NeedCloudImageTools(t, true)

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	dir := t.TempDir()

	start := time.Now()
	img, err := testbed.BuildCloudImage(ctx, "", testbed.LogWriter{T: t, Prefix: "build: "})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("image %s ready after %s", img.Dir, time.Since(start).Round(100*time.Millisecond))

	overlay := filepath.Join(dir, "disk.qcow2")
	run(ctx, t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", img.Disk, "-F", "qcow2", overlay)

	// The client's key, which the seed authorizes.
	key := testbed.NewUserKey(t)
	signer := key.Signer
	authorized := strings.TrimSpace(string(key.Authorized())) + " butter-test"

	suffix := randomHex(t, 4)
	hostAddr := netip.MustParsePrefix("10.213.7.1/24")
	seed := cloudinit.Seed{
		InstanceID: "butter-test-" + suffix,
		Hostname:   "guest1.lab.test",
		SSHKeys:    []string{authorized},
		User:       "butter",
		NIC: cloudinit.NIC{
			MAC:     net.HardwareAddr{0x52, 0x54, 0x00, 0xb7, 0x7e, 0x01},
			Name:    "lan0",
			Address: netip.MustParsePrefix("10.213.7.2/24"),
			Gateway: hostAddr.Addr(),
			MTU:     1370,
			DNS:     []netip.Addr{hostAddr.Addr()},
		},
	}
	iso, err := seed.ISO()
	if err != nil {
		t.Fatal(err)
	}
	seedPath := filepath.Join(dir, "seed.iso")
	if err := os.WriteFile(seedPath, iso, 0o644); err != nil {
		t.Fatal(err)
	}

	// The guest's link: a tap in a network namespace of the test's own,
	// holding the host side's address. The tap's MTU stays 1500: the
	// guest's 1370 must come from network-config.
	netns := "ci-" + suffix
	run(ctx, t, "ip", "netns", "add", netns)
	t.Cleanup(func() { run(context.Background(), t, "ip", "netns", "delete", netns) })
	run(ctx, t, "ip", "-n", netns, "link", "set", "lo", "up")
	run(ctx, t, "ip", "-n", netns, "tuntap", "add", "dev", "tap0", "mode", "tap")
	run(ctx, t, "ip", "-n", netns, "addr", "add", hostAddr.String(), "dev", "tap0")
	run(ctx, t, "ip", "-n", netns, "link", "set", "tap0", "up")

	g := startGuest(ctx, t, netns, []string{
		"-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio", "-monitor", "none",
		"-machine", "pc", "-accel", "tcg", "-cpu", "max", "-m", guestMem, "-smp", guestCPUs, "-no-reboot",
		"-kernel", img.Kernel, "-initrd", img.Initrd, "-append", img.Cmdline(),
		"-drive", "file=" + overlay + ",if=virtio,format=qcow2",
		"-drive", "file=" + seedPath + ",if=ide,media=cdrom,readonly=on,format=raw",
		"-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no",
		"-device", "virtio-net-pci,netdev=n0,mac=" + seed.NIC.MAC.String(),
	})

	// Wait for cloud-init's last stage, collecting the host keys it
	// printed on the console on the way.
	bootCtx, bootCancel := context.WithTimeout(ctx, bootTimeout)
	defer bootCancel()
	var console strings.Builder
	finished := false
	for !finished {
		var l line
		select {
		case <-bootCtx.Done():
			t.Fatalf("no \"Cloud-init v. … finished\" on the console after %s", bootTimeout)
		case l = <-g.lines:
		case <-g.done:
			t.Fatalf("qemu exited before cloud-init finished: %v", g.err)
		}
		text := l.text
		console.WriteString(text + "\n")
		switch {
		case strings.Contains(text, "Cloud-init v. ") && strings.Contains(text, " finished at "):
			finished = true
			t.Logf("cloud-init finished %s after qemu started", l.at.Round(100*time.Millisecond))
		case strings.Contains(text, "cloud-init") && (strings.Contains(text, "[WARNING]") || strings.Contains(text, "[ERROR]")):
			t.Errorf("cloud-init complained at %s: %s", l.at.Round(100*time.Millisecond), text)
		case strings.Contains(text, "Kernel panic"):
			t.Fatalf("guest kernel panic at %s: %s", l.at, text)
		}
	}

	hostKey, err := testbed.GuestHostKey(console.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pinned the guest's host key %s", ssh.FingerprintSHA256(hostKey))
	config := testbed.GuestSSHConfig(seed.User, signer, hostKey)
	guest := net.JoinHostPort(seed.NIC.Address.Addr().String(), "22")
	sshStart := time.Now()
	client, err := testbed.DialGuestSSH(ctx, "/run/netns/"+netns, guest, config, 90*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	t.Logf("ssh %s@%s: logged in after %s", seed.User, guest, time.Since(sshStart).Round(100*time.Millisecond))

	iface := seed.NIC.Name
	out, err := testbed.RunSSH(ctx, client, strings.Join([]string{
		"hostname", "hostname --fqdn", "id -un",
		"ip -o -4 addr show dev " + iface,
		"cat /sys/class/net/" + iface + "/mtu",
		"ip -4 route show default",
		"cloud-init status",
		"ls /sys/class/net",
		"sudo cloud-init schema --system 2>&1 || true",
	}, "; echo ---; "))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("guest says (after %s):\n%s", time.Since(sshStart).Round(100*time.Millisecond), out)
	parts := strings.Split(out, "---\n")
	if len(parts) != 9 {
		t.Fatalf("guest output has %d parts, want 9:\n%s", len(parts), out)
	}
	field := func(i int) string { return strings.TrimSpace(parts[i]) }
	checks := []struct {
		what, got string
		ok        bool
	}{
		{"hostname", field(0), field(0) == "guest1"},
		{"FQDN", field(1), field(1) == seed.Hostname},
		{"default user", field(2), field(2) == seed.User},
		{"address on " + iface, field(3), strings.Contains(field(3), " "+iface+" ") &&
			strings.Contains(field(3), "inet "+seed.NIC.Address.String()+" ")},
		{"MTU", field(4), field(4) == fmt.Sprint(seed.NIC.MTU)},
		{"default route", field(5), strings.HasPrefix(field(5), "default via "+seed.NIC.Gateway.String()+" dev "+iface)},
		{"cloud-init status", field(6), field(6) == "status: done"},
		{"interfaces", field(7), slices.Contains(strings.Fields(field(7)), iface)},
		{"user-data schema", field(8), strings.Contains(field(8), "Valid cloud-config")},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s: guest says %q", c.what, c.got)
		}
	}
	t.Logf("whole test: %s", time.Since(start).Round(100*time.Millisecond))
}

// line is one line of the guest's serial console.
type line struct {
	at   time.Duration // since qemu started
	text string
}

type guest struct {
	lines <-chan line
	done  <-chan struct{}
	err   error // set before done is closed
}

// startGuest runs qemu inside netns, its serial console on a pipe that is
// read, timestamped and logged as it streams. qemu is killed when the
// test ends.
func startGuest(ctx context.Context, t *testing.T, netns string, args []string) *guest {
	t.Helper()
	nsenter, _ := sim.LookPath("nsenter")
	qemu, _ := sim.LookPath("qemu-system-x86_64")
	cmd := exec.Command(nsenter, append([]string{"--net=/run/netns/" + netns, "--", qemu}, args...)...)
	cmd.WaitDelay = 2 * time.Second
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	started := time.Now()
	if err := cmd.Start(); err != nil { // nsenter execs qemu: one PID
		t.Fatalf("start qemu: %v", err)
	}
	lines := make(chan line, 4096)
	done := make(chan struct{})
	g := &guest{lines: lines, done: done}
	var logMu sync.Mutex
	stopLog := false
	readDone := make(chan struct{})
	go func() { // ends when qemu exits and pw is closed
		defer close(readDone)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
		for sc.Scan() {
			l := line{at: time.Since(started), text: strings.TrimRight(sc.Text(), "\r")}
			logMu.Lock()
			if !stopLog {
				t.Logf("console %7.2fs %s", l.at.Seconds(), l.text)
			}
			logMu.Unlock()
			select {
			case lines <- l:
			default: // nobody is waiting any more
			}
		}
		io.Copy(io.Discard, pr)
	}()
	go func() {
		err := cmd.Wait()
		pw.Close()
		<-readDone
		g.err = err
		close(done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("qemu (pid %d) did not exit after SIGKILL", cmd.Process.Pid)
		}
		logMu.Lock()
		stopLog = true
		logMu.Unlock()
	})
	return g
}

// run runs a command and fails the test if it fails.
func run(ctx context.Context, t *testing.T, name string, args ...string) {
	t.Helper()
	prog, err := sim.LookPath(name)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(ctx, prog, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
