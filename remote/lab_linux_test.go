package remote

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/internal/testbed"
	"github.com/butter-cloud/butter/lab/sim"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// buildButter builds butter, or takes $BUTTER_TEST_BINARY (a butter built
// elsewhere, for running this test while the main package is mid-change).
func buildButter(t *testing.T, ctx context.Context) string {
	t.Helper()
	if bin := os.Getenv("BUTTER_TEST_BINARY"); bin != "" {
		return bin
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "butter")
	cmd := exec.CommandContext(ctx, gobin, "build", "-o", bin, "github.com/butter-cloud/butter")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build butter: %v\n%s", err, out)
	}
	return bin
}

// TestRealSSHD drives a real sshd in a lab machine from this process, in
// the root network namespace, through the lab's host link: log in with a
// pinned host key, install the helper, check prerequisites, start the
// daemon as a supervised background process (lab machines have no
// systemd), call Facts over the serve session, reconnect after the SSH
// connection drops, run a console session, and import an image.
func TestRealSSHD(t *testing.T) {
	testbed.NeedLab(t)
	testbed.NeedPrograms(t, "/usr/sbin/sshd")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	butter := buildButter(t, ctx) // before isolate: it moves HOME
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("SSH_AUTH_SOCK", "")
	// An underlay of its own: the host link routes it in the root namespace.
	name := testbed.ClaimLab(t, "rs")
	l := testbed.UpLab(t, sim.Config{Name: name, Machines: 1, Underlay: testbed.Underlay(name)})
	if _, err := l.AddHostLink(ctx); err != nil {
		t.Fatal(err)
	}
	m := l.Machines[0]

	key := testbed.NewUserKey(t)
	signer := key.Signer
	keyFile := filepath.Join(home, "id_ed25519")
	key.WriteIdentity(t, keyFile)
	hostKey, port, err := m.StartSSHD(ctx, key.Authorized())
	if err != nil {
		t.Fatal(err)
	}
	addr := m.Addr.Addr().String()
	opts := DialOptions{
		User:          "root",
		Port:          port,
		IdentityFiles: []string{keyFile},
		SSHConfig:     "none",
		AgentSocket:   "none",
		KnownHosts:    filepath.Join(t.TempDir(), "known_hosts"),
		HostKey:       ssh.FingerprintSHA256(hostKey),
	}
	c, err := Dial(ctx, addr, opts)
	if err != nil {
		t.Fatalf("dial the lab machine's sshd: %v", err)
	}
	kh, _ := os.ReadFile(opts.KnownHosts)
	if want := knownhosts.Line([]string{knownhosts.Normalize(fmt.Sprintf("%s:%d", addr, port))}, hostKey); strings.TrimSpace(string(kh)) != want {
		t.Fatalf("known_hosts holds %q, want %q", kh, want)
	}
	// A changed key is refused by the real server too.
	bad := opts
	bad.HostKey, bad.KnownHosts = "", filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(bad.KnownHosts, []byte(knownhosts.Line([]string{knownhosts.Normalize(fmt.Sprintf("%s:%d", addr, port))}, signer.PublicKey())+"\n"), 0o600)
	if _, err := Dial(ctx, addr, bad); !errors.Is(err, ErrHostKeyChanged) {
		t.Fatalf("changed key: %v", err)
	}

	// A ProxyCommand through the lab machine as a jump host: OpenSSH's
	// ssh -W to the same real sshd, the ssh config read by ssh -G. With
	// the jump host's key unknown to the ProxyCommand, it fails and says
	// why.
	t.Run("proxycommand", func(t *testing.T) {
		testbed.NeedPrograms(t, "ssh")
		dir := t.TempDir()
		jumpKH := filepath.Join(dir, "jump_known_hosts")
		config := filepath.Join(dir, "config")
		proxy := func(kh string) {
			os.WriteFile(config, []byte(fmt.Sprintf("Host via-jump\n  HostName %s\n  Port %d\n  User root\n  IdentityFile %s\n"+
				"  ProxyCommand ssh -F none -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=%s -i %s -p %%p -W %%h:%%p root@%s\n",
				addr, port, keyFile, kh, keyFile, addr)), 0o600)
		}
		os.WriteFile(jumpKH, []byte(knownhosts.Line([]string{knownhosts.Normalize(fmt.Sprintf("%s:%d", addr, port))}, hostKey)+"\n"), 0o600)
		proxy(jumpKH)
		po := opts
		po.SSHConfig, po.User, po.Port, po.IdentityFiles = config, "", 0, nil
		pc, err := Dial(ctx, "via-jump", po)
		if err != nil {
			t.Fatalf("dial through a ProxyCommand: %v", err)
		}
		if out, err := pc.Output(ctx, false, "echo via"); err != nil || string(out) != "via\n" || !pc.Jumped() {
			t.Fatalf("through the ProxyCommand: %q, %v, jumped %v", out, err, pc.Jumped())
		}
		pc.Close()
		proxy(filepath.Join(dir, "empty"))
		if _, err := Dial(ctx, "via-jump", po); err == nil || !strings.Contains(err.Error(), "ProxyCommand exited") ||
			!strings.Contains(err.Error(), "Host key verification failed") {
			t.Fatalf("a ProxyCommand refusing the jump host: %v, want its words", err)
		}
	})

	p, err := c.Platform(ctx)
	if err != nil || p.OS != "linux" {
		t.Fatalf("platform: %v, %v", p, err)
	}
	ho := HelperOptions{Binaries: map[string]string{p.Arch: butter}}
	start := time.Now()
	h, err := c.InstallHelper(ctx, ho)
	if err != nil || !h.Uploaded {
		t.Fatalf("install: %+v, %v", h, err)
	}
	t.Logf("installed %s in %v", h.Path, time.Since(start).Round(time.Millisecond))
	if h2, err := c.InstallHelper(ctx, ho); err != nil || h2.Uploaded || h2.Path != h.Path {
		t.Fatalf("second install: %+v, %v", h2, err)
	}

	pre, err := c.CheckPrerequisites(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("prerequisites: %+v", pre)

	d, err := c.StartDaemon(ctx, h, DaemonOptions{})
	if err != nil {
		log, _ := m.Run(ctx, "/bin/cat", supervisedLog)
		t.Fatalf("start daemon: %v\nlog:\n%s", err, log)
	}
	if d.Mode != DaemonSupervised || !d.Started {
		t.Fatalf("daemon %+v in a lab machine, want supervised, started", d)
	}
	// The first install made the state folder private, and the log too.
	perms, err := m.Run(ctx, "/usr/bin/stat", "-c", "%a %U %n", helperapi.DefaultStateDir, supervisedLog)
	if want := fmt.Sprintf("700 root %s\n600 root %s\n", helperapi.DefaultStateDir, supervisedLog); err != nil || string(perms) != want {
		t.Errorf("stat: %q, %v; want %q", perms, err, want)
	}
	// Starting it again leaves the running one alone, and says so.
	if d, err := c.StartDaemon(ctx, h, DaemonOptions{}); err != nil || d.Started {
		t.Fatalf("second start: %+v, %v; want not started", d, err)
	}

	mc, err := Connect(ctx, c, h)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer mc.Close()
	cl, err := mc.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	facts, err := cl.Facts(ctx)
	if err != nil || facts.Uplink != sim.MachineUplink {
		t.Fatalf("facts: %+v, %v", facts, err)
	}

	// A TCP connection from the machine, as `vm proxy` opens to a VM: to
	// a service only the machine's own loopback has.
	dialTCPFromMachine(t, ctx, mc, m)

	// The SSH connection drops: the next call dials again.
	mc.mu.Lock()
	mc.ssh.conn.Close() // as a network failure would
	mc.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for {
		cl, err := mc.Client(ctx)
		if err == nil {
			if _, err = cl.Facts(ctx); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reconnect: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// A console session rides the same connection: with no such VM the
	// helper's own error comes back.
	var out bytes.Buffer
	err = mc.Console(ctx, "nosuchvm", strings.NewReader("\x1d"), &out)
	if err == nil || !strings.Contains(err.Error(), "nosuchvm") {
		t.Fatalf("console: %v (%q)", err, out.String())
	}
	t.Logf("console without a VM: %v", err)

	// Import an image.
	img := make([]byte, 3<<20)
	rand.Read(img)
	var sent int64
	got, err := mc.ImportImage(ctx, ImageUpload{Name: "disk.img", Size: int64(len(img)), SHA256: sum(img),
		Body: bytes.NewReader(img), Progress: func(n int64) { sent = n }})
	if err != nil {
		t.Fatalf("import image: %v", err)
	}
	if got.Disk == nil || got.Disk.SHA256 != sum(img) || sent != int64(len(img)) {
		t.Fatalf("imported %+v, sent %d", got, sent)
	}
	cl, err = mc.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	imgs, err := cl.Images(ctx)
	if err != nil || len(imgs) != 1 || imgs[0].ID != got.ID {
		t.Fatalf("images after import: %+v, %v", imgs, err)
	}
	// A wrong checksum is refused.
	_, err = mc.ImportImage(ctx, ImageUpload{Name: "bad.img", Size: 5, SHA256: sum([]byte("other")), Body: strings.NewReader("hello")})
	if err == nil {
		t.Fatal("an image with a wrong checksum was imported")
	}
	t.Logf("wrong checksum: %v", err)
}

// dialTCPFromMachine checks Machine.DialTCP against a service listening on
// the lab machine's loopback: the bytes cross both ways, the service sees
// the machine's own address as the peer, and a port with nothing behind
// it is an error naming the address. The negative control: this process
// cannot reach the service itself.
func dialTCPFromMachine(t *testing.T, ctx context.Context, mc *Machine, m *sim.Machine) {
	t.Helper()
	l, err := testbed.ListenTCPInNetns(filepath.Join(sim.NetnsDir, m.Netns()), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fmt.Fprintf(c, "hello %s\n", c.RemoteAddr().(*net.TCPAddr).IP)
				io.Copy(c, c)
			}()
		}
	}()
	addr := l.Addr().String()
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("the service on the machine's %s is reachable from the test's own namespace: the check below would prove nothing", addr)
	}
	conn, err := mc.DialTCP(ctx, addr)
	if err != nil {
		t.Fatalf("DialTCP %s: %v", addr, err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	hello, err := r.ReadString('\n')
	if err != nil || hello != "hello 127.0.0.1\n" {
		t.Fatalf("the service through the machine said %q, %v", hello, err)
	}
	if _, err := conn.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	if echo, err := r.ReadString('\n'); err != nil || echo != "ping\n" {
		t.Fatalf("echo through the machine: %q, %v", echo, err)
	}
	// Half-closed by us, the service ends and so does the channel.
	if err := conn.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatalf("close write: %v", err)
	}
	if rest, err := io.ReadAll(r); err != nil || len(rest) != 0 {
		t.Fatalf("after the half-close: %q, %v", rest, err)
	}
	l.Close()
	if c, err := mc.DialTCP(ctx, addr); err == nil || !strings.Contains(err.Error(), addr) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("DialTCP to a closed port: %v, want an error naming %s", err, addr)
	}
	t.Logf("through the machine to %s: %q", addr, strings.TrimSpace(hello))
}
