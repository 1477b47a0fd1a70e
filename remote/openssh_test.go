package remote

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/butter-cloud/butter/internal/testbed"
)

// redhatConf is Fedora's and RHEL's /etc/ssh/ssh_config.d/50-redhat.conf:
// a Match final block, which the ssh_config library cannot read.
const redhatConf = `# The options here are in the "Match final block" to be applied as the last
# options and could be potentially overwritten by the user configuration
Match final all
	# Follow system-wide Crypto Policy, if defined:
	Include /etc/crypto-policies/back-ends/openssh.config

	GSSAPIAuthentication yes

# If this option is set to yes then remote X11 clients will have full access
# to the original X11 display. As virtually no X11 client supports the untrusted
# mode correctly we set this to yes.
	ForwardX11Trusted yes

# Uncomment this if you want to use .local domain
# Host *.local
#   CanonicalDomains local
#   CanonicalizeHostname yes
`

// The ssh config is read by ssh -G, as ssh reads it: Fedora's Match final
// block, an Include (which alone names the key), and a Match exec that
// alone gives the right port (without its file, the config's catch-all
// port, where nothing listens).
func TestOpenSSHConfig(t *testing.T) {
	testbed.NeedPrograms(t, "ssh")
	f := newFixture(t)
	knownHostsFile(t, filepath.Join(f.home, ".ssh"), f.srv.addr, f.srv.hostKeys[0].PublicKey())
	priv, signer := newUserKey(t)
	f.srv.users = map[string][]ssh.PublicKey{"root": {signer.PublicKey()}}
	os.Remove(filepath.Join(f.home, ".ssh", "id_ed25519"))
	key := filepath.Join(f.home, "keys", "box")
	writeKey(t, key, priv, "")

	dir := t.TempDir()
	marker := filepath.Join(dir, "at-work")
	confd := filepath.Join(dir, "ssh_config.d")
	os.MkdirAll(confd, 0o700)
	os.WriteFile(filepath.Join(confd, "50-redhat.conf"), []byte(redhatConf), 0o600)
	os.WriteFile(filepath.Join(confd, "60-box.conf"), []byte("Host box\n  IdentityFile "+key+"\n"), 0o600)
	config := filepath.Join(dir, "config")
	os.WriteFile(config, []byte(fmt.Sprintf(`Include %s/*.conf
Host box
  HostName 127.0.0.1
  User root
Match host 127.0.0.1 exec "test -e %s"
  Port %d
Host *
  Port %d
`, confd, marker, f.srv.port(), closedPort(t))), 0o600)

	if _, err := loadSSHConfig(config); err == nil {
		t.Log("the ssh_config library reads this config now")
	}
	o := f.opts
	o.SSHConfig, o.User = config, ""
	ctx := context.Background()
	var ue *UnreachableError
	if _, err := Dial(ctx, "box", o); !errors.As(err, &ue) {
		t.Fatalf("without the Match exec file: %v, want the catch-all port unreachable", err)
	}
	os.WriteFile(marker, nil, 0o600)
	c, err := Dial(ctx, "box", o)
	if err != nil {
		t.Fatalf("dial box: %v", err)
	}
	defer c.Close()
	if c.Addr != f.srv.addr || c.User != "root" || c.Jumped() {
		t.Fatalf("box resolved to %s@%s (jumped %v), want root@%s", c.User, c.Addr, c.Jumped(), f.srv.addr)
	}
}

// UserKnownHostsFile from the ssh config is where host keys are read.
func TestOpenSSHKnownHostsFile(t *testing.T) {
	testbed.NeedPrograms(t, "ssh")
	f := newFixture(t)
	dir := t.TempDir()
	kh := knownHostsFile(t, dir, f.srv.addr, f.srv.hostKeys[0].PublicKey())
	config := filepath.Join(dir, "config")
	os.WriteFile(config, []byte(fmt.Sprintf("Host box\n  HostName 127.0.0.1\n  Port %d\n  UserKnownHostsFile %s\n", f.srv.port(), kh)), 0o600)
	o := f.opts
	o.SSHConfig, o.UserKnownHosts = config, nil
	c, err := Dial(context.Background(), "box", o)
	if err != nil {
		t.Fatalf("dial with the config's known_hosts: %v", err)
	}
	c.Close()
	os.WriteFile(kh, nil, 0o600)
	if _, err := Dial(context.Background(), "box", o); hostKeyReason(err) != ErrHostKeyUnknown {
		t.Fatalf("with that file empty: %v, want an unknown host key", err)
	}
}

// HostKeyAlias from the ssh config is the name the host key is known by,
// as in ssh: known under the alias alone, the key passes with the alias
// and is unknown without it. The Go reader reads the alias too.
func TestOpenSSHHostKeyAlias(t *testing.T) {
	testbed.NeedPrograms(t, "ssh")
	f := newFixture(t)
	dir := t.TempDir()
	kh := knownHostsFile(t, dir, "boxkey", f.srv.hostKeys[0].PublicKey())
	config := filepath.Join(dir, "config")
	base := fmt.Sprintf("Host box\n  HostName 127.0.0.1\n  Port %d\n  UserKnownHostsFile %s\n", f.srv.port(), kh)
	os.WriteFile(config, []byte(base+"  HostKeyAlias boxkey\n"), 0o600)
	o := f.opts
	o.SSHConfig, o.UserKnownHosts, o.KnownHosts = config, nil, ""
	c, err := Dial(context.Background(), "box", o)
	if err != nil {
		t.Fatalf("dial with HostKeyAlias boxkey: %v", err)
	}
	c.Close()
	cfg, err := loadSSHConfig(config)
	if err != nil {
		t.Fatal(err)
	}
	if h, err := cfg.resolve("box", o, 0); err != nil || h.HostKeyAlias != "boxkey" {
		t.Errorf("the Go reader: HostKeyAlias %q, %v; want boxkey", h.HostKeyAlias, err)
	}
	os.WriteFile(config, []byte(base), 0o600)
	if _, err := Dial(context.Background(), "box", o); hostKeyReason(err) != ErrHostKeyUnknown {
		t.Fatalf("without the alias: %v, want an unknown host key (it is known only as boxkey)", err)
	}
}

// A ProxyCommand runs as OpenSSH runs it: here OpenSSH's own client
// through a jump host (ssh -W), whose standard input and output are the
// connection. A command that fails says so.
func TestOpenSSHProxyCommand(t *testing.T) {
	testbed.NeedPrograms(t, "ssh")
	f := newFixture(t)
	jumpKey := newKey(t)
	jump := startServer(t, &testServer{hostKeys: []ssh.Signer{jumpKey}, users: f.srv.users, forward: true})
	knownHostsFile(t, filepath.Join(f.home, ".ssh"), f.srv.addr, f.srv.hostKeys[0].PublicKey())
	dir := t.TempDir()
	jumpKH := knownHostsFile(t, dir, jump.addr, jumpKey.PublicKey())
	key := filepath.Join(f.home, ".ssh", "id_ed25519")
	proxy := fmt.Sprintf("ssh -F none -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=%s -i %s -p %d -W %%h:%%p root@127.0.0.1",
		jumpKH, key, jump.port())
	config := filepath.Join(dir, "config")
	write := func(proxy string) {
		os.WriteFile(config, []byte(fmt.Sprintf("Host target\n  HostName 127.0.0.1\n  Port %d\n  ProxyCommand %s\n", f.srv.port(), proxy)), 0o600)
	}
	write(proxy)
	o := f.opts
	o.SSHConfig = config
	ctx := context.Background()
	c, err := Dial(ctx, "target", o)
	if err != nil {
		t.Fatalf("dial through the ProxyCommand: %v", err)
	}
	if out, err := c.Output(ctx, false, "echo via"); err != nil || string(out) != "via\n" {
		t.Fatalf("run through the ProxyCommand: %q, %v", out, err)
	}
	if !c.Jumped() || c.Addr != f.srv.addr {
		t.Errorf("client at %s, jumped %v; want %s, jumped", c.Addr, c.Jumped(), f.srv.addr)
	}
	c.Close()
	jump.mu.Lock()
	fw := jump.forwards
	jump.mu.Unlock()
	if len(fw) != 1 || fw[0] != net.JoinHostPort("127.0.0.1", strconv.Itoa(f.srv.port())) {
		t.Fatalf("the jump host forwarded to %v, want [%s]", fw, f.srv.addr)
	}

	write("sh -c 'echo no route to the bastion >&2; exit 7'")
	_, err = Dial(ctx, "target", o)
	if err == nil || !strings.Contains(err.Error(), "ProxyCommand exited") || !strings.Contains(err.Error(), "no route to the bastion") {
		t.Fatalf("a failing ProxyCommand: %v, want it named with what it said", err)
	}
}

// closedPort is a loopback TCP port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// BenchmarkResolveHost: what resolving a host costs by ssh -G (a process
// per dial) beside the library, on the same config.
func BenchmarkResolveHost(b *testing.B) {
	bin, err := exec.LookPath("ssh")
	if err != nil {
		b.Skip("no ssh")
	}
	config := filepath.Join(b.TempDir(), "config")
	os.WriteFile(config, []byte("Host box\n  HostName 127.0.0.1\n  Port 2222\n  User root\n"), 0o600)
	o := DialOptions{SSHConfig: config}
	b.Run("ssh -G", func(b *testing.B) {
		for b.Loop() {
			if _, err := resolveOpenSSH(context.Background(), bin, "box", o, 0); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("library", func(b *testing.B) {
		for b.Loop() {
			cfg, err := loadSSHConfig(config)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := cfg.resolve("box", o, 0); err != nil {
				b.Fatal(err)
			}
		}
	})
}
