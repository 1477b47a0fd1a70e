package remote

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// fixture is a server that logs in "root" with one key, and the options to
// reach it with that key file and an empty known_hosts of butter's own.
type fixture struct {
	srv  *testServer
	home string
	opts DialOptions
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	home := isolate(t)
	priv, signer := newUserKey(t)
	keyFile := filepath.Join(home, ".ssh", "id_ed25519")
	writeKey(t, keyFile, priv, "")
	srv := startServer(t, &testServer{users: map[string][]ssh.PublicKey{"root": {signer.PublicKey()}}})
	return &fixture{srv: srv, home: home, opts: DialOptions{
		User:           "root",
		KnownHosts:     filepath.Join(home, ".config", "butter", "known_hosts"),
		UserKnownHosts: []string{filepath.Join(home, ".ssh", "known_hosts")},
		SSHConfig:      "none",
		AgentSocket:    "none",
		KeepAlive:      -1,
	}}
}

func (f *fixture) dial(t *testing.T, o DialOptions) (*Client, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, f.srv.addr, o)
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

func hostKeyReason(err error) error {
	var hke *HostKeyError
	if errors.As(err, &hke) {
		return hke.Reason
	}
	return nil
}

func TestUnknownHostKey(t *testing.T) {
	f := newFixture(t)
	fp := ssh.FingerprintSHA256(f.srv.hostKeys[0].PublicKey())

	_, err := f.dial(t, f.opts)
	if hostKeyReason(err) != ErrHostKeyUnknown || !strings.Contains(err.Error(), fp) {
		t.Fatalf("dial with an unknown key and no trust: got %v, want an unknown-key error showing %s", err, fp)
	}
	if _, serr := os.Stat(f.opts.KnownHosts); !errors.Is(serr, os.ErrNotExist) {
		t.Fatalf("a refused key was recorded: %v", serr)
	}

	o := f.opts
	var asked []string
	o.TrustUnknown = func(ctx context.Context, host string, key ssh.PublicKey) (bool, error) {
		asked = append(asked, host+" "+ssh.FingerprintSHA256(key))
		return false, nil
	}
	_, err = f.dial(t, o)
	var hke *HostKeyError
	if !errors.As(err, &hke) || !hke.Declined || len(asked) != 1 {
		t.Fatalf("declined trust: got %v after asking %v", err, asked)
	}

	o.TrustUnknown = func(ctx context.Context, host string, key ssh.PublicKey) (bool, error) { return true, nil }
	// Trusted by a dry run (known_hosts read-only): the key is not recorded.
	ro := o
	ro.KnownHostsReadOnly = true
	c, err := f.dial(t, ro)
	if err != nil {
		t.Fatalf("dial with trust, known_hosts read-only: %v", err)
	}
	c.Close()
	if _, serr := os.Stat(f.opts.KnownHosts); !errors.Is(serr, os.ErrNotExist) {
		t.Fatalf("a key trusted with known_hosts read-only was recorded: %v", serr)
	}
	c, err = f.dial(t, o)
	if err != nil {
		t.Fatalf("dial with trust: %v", err)
	}
	c.Close()
	data, err := os.ReadFile(f.opts.KnownHosts)
	if err != nil || !strings.Contains(string(data), "["+"127.0.0.1]:"+strconv.Itoa(f.srv.port())) {
		t.Fatalf("the trusted key was not recorded: %q, %v", data, err)
	}
	// Recorded: the next dial needs no trust.
	if _, err := f.dial(t, f.opts); err != nil {
		t.Fatalf("dial after recording: %v", err)
	}
}

func TestAcceptNewHostKey(t *testing.T) {
	f := newFixture(t)
	o := f.opts
	o.AcceptNewHostKey = true
	if _, err := f.dial(t, o); err != nil {
		t.Fatal(err)
	}
	if _, err := f.dial(t, f.opts); err != nil {
		t.Fatalf("dial after accept-new: %v", err)
	}
}

func TestChangedHostKeyRefused(t *testing.T) {
	f := newFixture(t)
	old := newKey(t).PublicKey()
	kh := knownHostsFile(t, filepath.Join(f.home, ".ssh"), f.srv.addr, old)
	newFP := ssh.FingerprintSHA256(f.srv.hostKeys[0].PublicKey())
	for name, o := range map[string]DialOptions{
		"plain":      f.opts,
		"accept-new": func() DialOptions { o := f.opts; o.AcceptNewHostKey = true; return o }(),
		"trust": func() DialOptions {
			o := f.opts
			o.TrustUnknown = func(context.Context, string, ssh.PublicKey) (bool, error) { return true, nil }
			return o
		}(),
		"pinned to the new key": func() DialOptions { o := f.opts; o.HostKey = newFP; return o }(),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := f.dial(t, o)
			if hostKeyReason(err) != ErrHostKeyChanged {
				t.Fatalf("got %v, want a changed-key error", err)
			}
			msg := err.Error()
			for _, want := range []string{newFP, ssh.FingerprintSHA256(old), kh + " line 1", "CHANGED"} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not show %q", msg, want)
				}
			}
		})
	}
	if _, err := os.Stat(f.opts.KnownHosts); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a changed key was recorded")
	}
}

// A server with two host keys shows the one known_hosts records, because
// HostKeyAlgorithms asks for it; otherwise the ed25519 key would come
// first and look like a change.
func TestHostKeyAlgorithmsFromKnownHosts(t *testing.T) {
	f := newFixture(t)
	ecdsaKey := newECDSAKey(t)
	f.srv = startServer(t, &testServer{
		hostKeys: []ssh.Signer{newKey(t), ecdsaKey},
		users:    f.srv.users,
	})
	knownHostsFile(t, filepath.Join(f.home, ".ssh"), f.srv.addr, ecdsaKey.PublicKey())
	if _, err := f.dial(t, f.opts); err != nil {
		t.Fatalf("dial a host known by its ECDSA key: %v", err)
	}
}

func TestPinnedHostKey(t *testing.T) {
	f := newFixture(t)
	o := f.opts
	o.HostKey = ssh.FingerprintSHA256(newKey(t).PublicKey())
	_, err := f.dial(t, o)
	if hostKeyReason(err) != ErrHostKeyPinned {
		t.Fatalf("wrong pin: got %v", err)
	}
	o.HostKey = ssh.FingerprintSHA256(f.srv.hostKeys[0].PublicKey())
	if _, err := f.dial(t, o); err != nil {
		t.Fatalf("right pin: %v", err)
	}
	if _, err := f.dial(t, f.opts); err != nil {
		t.Fatalf("dial after a pinned key was recorded: %v", err)
	}
	o.HostKey = "SHA256:tooshort"
	if _, err := f.dial(t, o); err == nil || !strings.Contains(err.Error(), "43 characters") {
		t.Fatalf("malformed pin: got %v", err)
	}
}

func TestAgentAuth(t *testing.T) {
	f := newFixture(t)
	os.Remove(filepath.Join(f.home, ".ssh", "id_ed25519"))
	knownHostsFile(t, filepath.Join(f.home, ".ssh"), f.srv.addr, f.srv.hostKeys[0].PublicKey())
	priv, signer := newUserKey(t)
	f.srv.users["root"] = append(f.srv.users["root"], signer.PublicKey())

	o := f.opts
	o.AgentSocket = startAgent(t, priv)
	c, err := f.dial(t, o)
	if err != nil {
		t.Fatalf("dial with the agent's key: %v", err)
	}
	out, err := c.Output(context.Background(), false, "echo hi")
	if err != nil || string(out) != "hi\n" {
		t.Fatalf("run over the agent-authenticated connection: %q, %v", out, err)
	}

	// SSH_AUTH_SOCK is the default.
	t.Setenv("SSH_AUTH_SOCK", o.AgentSocket)
	o.AgentSocket = ""
	if _, err := f.dial(t, o); err != nil {
		t.Fatalf("dial with SSH_AUTH_SOCK: %v", err)
	}
}

func TestEncryptedKeyWithoutAgent(t *testing.T) {
	f := newFixture(t)
	knownHostsFile(t, filepath.Join(f.home, ".ssh"), f.srv.addr, f.srv.hostKeys[0].PublicKey())
	priv, signer := newUserKey(t)
	f.srv.users["root"] = []ssh.PublicKey{signer.PublicKey()}
	keyFile := filepath.Join(f.home, ".ssh", "id_ed25519")
	writeKey(t, keyFile, priv, "secret")

	_, err := f.dial(t, f.opts)
	var ae *AuthError
	if !errors.As(err, &ae) || !strings.Contains(err.Error(), "ssh-add "+keyFile) || !strings.Contains(err.Error(), "encrypted") {
		t.Fatalf("got %v, want an error saying to add the encrypted key to the agent", err)
	}
	// With the key in the agent it works.
	o := f.opts
	o.AgentSocket = startAgent(t, priv)
	if _, err := f.dial(t, o); err != nil {
		t.Fatalf("dial with the encrypted key's agent copy: %v", err)
	}
}

func TestWrongUser(t *testing.T) {
	f := newFixture(t)
	knownHostsFile(t, filepath.Join(f.home, ".ssh"), f.srv.addr, f.srv.hostKeys[0].PublicKey())
	o := f.opts
	o.User = "bob"
	_, err := f.dial(t, o)
	var ae *AuthError
	if !errors.As(err, &ae) {
		t.Fatalf("got %v, want an AuthError", err)
	}
	for _, want := range []string{`"bob"`, f.srv.addr, "publickey", "id_ed25519", "authorized_keys"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestSSHConfig(t *testing.T) {
	f := newFixture(t)
	knownHostsFile(t, filepath.Join(f.home, ".ssh"), f.srv.addr, f.srv.hostKeys[0].PublicKey())
	// The key is only where the config says (%h is the HostName, %r the
	// user), the user only in the config.
	priv, signer := newUserKey(t)
	f.srv.users = map[string][]ssh.PublicKey{"alice": {signer.PublicKey()}}
	writeKey(t, filepath.Join(f.home, "keys", "127.0.0.1-alice"), priv, "")
	os.Remove(filepath.Join(f.home, ".ssh", "id_ed25519"))
	config := "Host box\n  HostName 127.0.0.1\n  Port " + strconv.Itoa(f.srv.port()) +
		"\n  User alice\n  IdentityFile ~/keys/%h-%r\n\nHost *\n  User nobody\n"
	if err := os.WriteFile(filepath.Join(f.home, ".ssh", "config"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	o := f.opts
	o.SSHConfig, o.User = "", ""
	ctx := context.Background()
	c, err := Dial(ctx, "box", o)
	if err != nil {
		t.Fatalf("dial the config's alias: %v", err)
	}
	defer c.Close()
	if c.Addr != f.srv.addr || c.User != "alice" || c.Host != "box" {
		t.Fatalf("resolved %s as %s at %s, want alice at %s", c.Host, c.User, c.Addr, f.srv.addr)
	}
}

func TestProxyJump(t *testing.T) {
	f := newFixture(t)
	jumpKey := newKey(t)
	jump := startServer(t, &testServer{hostKeys: []ssh.Signer{jumpKey}, users: f.srv.users, forward: true})
	knownHostsFile(t, filepath.Join(f.home, ".ssh"), f.srv.addr, f.srv.hostKeys[0].PublicKey())
	kh, _ := os.ReadFile(filepath.Join(f.home, ".ssh", "known_hosts"))
	kh = append(kh, []byte("[127.0.0.1]:"+strconv.Itoa(jump.port())+" "+string(ssh.MarshalAuthorizedKey(jumpKey.PublicKey())))...)
	os.WriteFile(filepath.Join(f.home, ".ssh", "known_hosts"), kh, 0o600)

	config := "Host target\n  HostName 127.0.0.1\n  Port " + strconv.Itoa(f.srv.port()) +
		"\n  ProxyJump root@127.0.0.1:" + strconv.Itoa(jump.port()) + "\n"
	os.WriteFile(filepath.Join(f.home, ".ssh", "config"), []byte(config), 0o600)
	o := f.opts
	o.SSHConfig = ""
	c, err := Dial(context.Background(), "target", o)
	if err != nil {
		t.Fatalf("dial through the jump host: %v", err)
	}
	defer c.Close()
	if out, err := c.Output(context.Background(), false, "echo via"); err != nil || string(out) != "via\n" {
		t.Fatalf("run through the jump host: %q, %v", out, err)
	}
	jump.mu.Lock()
	fw := jump.forwards
	jump.mu.Unlock()
	if len(fw) != 1 || fw[0] != f.srv.addr {
		t.Fatalf("the jump host forwarded to %v, want [%s]", fw, f.srv.addr)
	}
	// An unknown jump host key is refused like any other.
	os.WriteFile(filepath.Join(f.home, ".ssh", "known_hosts"), nil, 0o600)
	knownHostsFile(t, filepath.Join(f.home, ".ssh"), f.srv.addr, f.srv.hostKeys[0].PublicKey())
	if _, err := Dial(context.Background(), "target", o); hostKeyReason(err) != ErrHostKeyUnknown || !strings.Contains(err.Error(), "jump host") {
		t.Fatalf("unknown jump host key: got %v", err)
	}
}

// Without OpenSSH's ssh, the library reads the config and refuses a
// ProxyCommand, saying what to do.
func TestProxyCommandRefusedWithoutOpenSSH(t *testing.T) {
	home := isolate(t)
	path := filepath.Join(home, "config")
	os.WriteFile(path, []byte("Host x\n  ProxyCommand nc %h %p\n"), 0o600)
	cfg, err := loadSSHConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = cfg.resolve("x", DialOptions{}, 0)
	if err == nil || !strings.Contains(err.Error(), "ProxyJump") || !strings.Contains(err.Error(), "OpenSSH") {
		t.Fatalf("got %v, want ProxyCommand refused with a hint", err)
	}
}

func TestExpandTokens(t *testing.T) {
	t.Setenv("HOME", "/home/op")
	t.Setenv("USER", "op")
	h := hop{Host: "h.example", User: "ubuntu"}
	for in, want := range map[string]string{
		"~/.ssh/id":         "/home/op/.ssh/id",
		"%d/k-%h-%r-%u":     "/home/op/k-h.example-ubuntu-op",
		"/keys/100%%":       "/keys/100%",
		"/plain/path":       "/plain/path",
		"~notme/x":          "~notme/x",
		"/odd/%z/trailing%": "/odd/%z/trailing%",
	} {
		if got := expandTokens(in, h); got != want {
			t.Errorf("expandTokens(%q) = %q, want %q", in, got, want)
		}
	}
}
