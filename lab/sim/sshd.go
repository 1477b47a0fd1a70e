package sim

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// sshdDir is where a machine's sshd keeps its files, in the machine's own
// /run (so they go away with the lab).
const sshdDir = "/run/butter-lab-sshd"

// SSHPort is the port the machines' sshd listens on.
const SSHPort = 22

// StartSSHD starts OpenSSH's sshd on the machine, listening on its eth0
// address, port 22, with a fresh ed25519 host key and authorizedKeys (an
// authorized_keys file's content) for root. It returns the host key, to
// pin in a known_hosts file, and the port. sshd runs until the lab goes
// down; its log is /run/butter-lab-sshd/sshd.log inside the machine.
func (m *Machine) StartSSHD(ctx context.Context, authorizedKeys []byte) (hostKey ssh.PublicKey, port int, err error) {
	wrap := func(err error) error { return fmt.Errorf("lab %q machine %s: sshd: %w", m.lab.Name, m.Name, err) }
	sshd, err := LookPath("sshd")
	if err != nil {
		return nil, 0, wrap(fmt.Errorf("%w (package openssh-server)", err))
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, 0, wrap(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		return nil, 0, wrap(err)
	}
	if hostKey, err = ssh.NewPublicKey(pub); err != nil {
		return nil, 0, wrap(err)
	}
	// SHLVL=1: bash, started by this sshd for a session's command, counts
	// itself a nested shell and skips the host user's ~/.bashrc, which a
	// simulated machine shares with the host (/root) and which can cost
	// seconds a session (pyenv's init on the CI machine: a machine list
	// of three took 4.5 s with it, 0.5 s without).
	config := fmt.Sprintf(`ListenAddress %s:%d
HostKey %s/ssh_host_ed25519_key
AuthorizedKeysFile %s/authorized_keys
PidFile %s/sshd.pid
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
PrintLastLog no
AcceptEnv LANG LC_*
SetEnv SHLVL=1
LogLevel VERBOSE
`, m.Addr.Addr(), SSHPort, sshdDir, sshdDir, sshdDir)
	files := []struct {
		name string
		data []byte
	}{
		{"ssh_host_ed25519_key", pem.EncodeToMemory(block)},
		{"authorized_keys", authorizedKeys},
		{"sshd_config", []byte(config)},
	}
	// /run/sshd is sshd's privilege separation folder.
	if _, err := m.Run(ctx, "/bin/sh", "-c", "mkdir -p -m 0700 "+sshdDir+" && mkdir -p -m 0755 /run/sshd"); err != nil {
		return nil, 0, wrap(err)
	}
	for _, f := range files {
		cmd := m.Command(ctx, "/bin/sh", "-c", `umask 077 && cat > "$1"`, "sh", sshdDir+"/"+f.name)
		cmd.Stdin = bytes.NewReader(f.data)
		if _, err := Output(cmd); err != nil {
			return nil, 0, wrap(err)
		}
	}
	conf := sshdDir + "/sshd_config"
	if _, err := m.Run(ctx, sshd, "-t", "-f", conf); err != nil {
		return nil, 0, wrap(err)
	}
	p, err := m.Start(ctx, nil, sshd, "-D", "-f", conf, "-E", sshdDir+"/sshd.log")
	if err != nil {
		return nil, 0, wrap(err)
	}
	// Listening once it says so in its log.
	for {
		log, _ := m.Run(ctx, "/bin/cat", sshdDir+"/sshd.log")
		if strings.Contains(string(log), "Server listening on") {
			return hostKey, SSHPort, nil
		}
		select {
		case <-p.Done():
			return nil, 0, wrap(fmt.Errorf("exited: %v: %s", p.Err(), strings.TrimSpace(string(log))))
		case <-ctx.Done():
			_ = p.Kill()
			return nil, 0, wrap(ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
