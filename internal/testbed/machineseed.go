package testbed

import (
	"context"
	"crypto/ed25519"
	"encoding/pem"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"

	"golang.org/x/crypto/ssh"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/lab/sim"
)

// MachineSeed is one real machine's identity, applied at every boot by the
// image's seed unit (machineimage.go): its host name, its SSH host key
// (made by the test, so that it can pin it as an operator checks a key out
// of band), root's authorized key, and its NIC's static address.
type MachineSeed struct {
	Hostname      string
	HostKey       ed25519.PrivateKey
	AuthorizedKey ssh.PublicKey
	MAC           net.HardwareAddr
	Address       netip.Prefix
}

// seedScript applies the files beside it (its first argument is their
// folder): systemd-networkd reads the .network file from /run at start.
const seedScript = `d=$1
cat "$d/hostname" > /etc/hostname
hostname "$(cat "$d/hostname")"
install -m 0600 "$d/ssh_host_ed25519_key" /etc/ssh/ssh_host_ed25519_key
install -m 0644 "$d/ssh_host_ed25519_key.pub" /etc/ssh/ssh_host_ed25519_key.pub
install -d -m 0700 /root/.ssh
install -m 0600 "$d/authorized_keys" /root/.ssh/authorized_keys
install -d -m 0755 /run/systemd/network
install -m 0644 "$d/10-lab.network" /run/systemd/network/10-lab.network
`

// files returns the seed's files by name.
func (s MachineSeed) files() (map[string]string, error) {
	if err := helperapi.CheckName("host name", s.Hostname); err != nil {
		return nil, fmt.Errorf("machine seed: %w", err)
	}
	if len(s.HostKey) != ed25519.PrivateKeySize || s.AuthorizedKey == nil || len(s.MAC) != 6 || !s.Address.IsValid() {
		return nil, fmt.Errorf("machine seed %s: a host key, an authorized key, a MAC and an address are required", s.Hostname)
	}
	block, err := ssh.MarshalPrivateKey(s.HostKey, "")
	if err != nil {
		return nil, fmt.Errorf("machine seed %s: %w", s.Hostname, err)
	}
	pub, err := ssh.NewPublicKey(s.HostKey.Public())
	if err != nil {
		return nil, fmt.Errorf("machine seed %s: %w", s.Hostname, err)
	}
	network := fmt.Sprintf(`[Match]
MACAddress=%s

[Link]
RequiredForOnline=yes

[Network]
Address=%s
LinkLocalAddressing=no
IPv6AcceptRA=no
`, s.MAC, s.Address)
	return map[string]string{
		"seed.sh":                  seedScript,
		"hostname":                 s.Hostname + "\n",
		"ssh_host_ed25519_key":     string(pem.EncodeToMemory(block)),
		"ssh_host_ed25519_key.pub": string(ssh.MarshalAuthorizedKey(pub)),
		"authorized_keys":          string(ssh.MarshalAuthorizedKey(s.AuthorizedKey)),
		"10-lab.network":           network,
	}, nil
}

// HostKeyFingerprint is the host key's SHA256:… fingerprint, as
// `ssh-keygen -l` prints it and `butter machine add --host-key` takes it.
func (s MachineSeed) HostKeyFingerprint() (string, error) {
	pub, err := ssh.NewPublicKey(s.HostKey.Public())
	if err != nil {
		return "", fmt.Errorf("machine seed %s: %w", s.Hostname, err)
	}
	return ssh.FingerprintSHA256(pub), nil
}

// WriteDisk writes the seed as a small ext4 disk image (raw) at path, to
// attach as the machine's second virtio disk.
func (s MachineSeed) WriteDisk(ctx context.Context, path string) error {
	files, err := s.files()
	if err != nil {
		return err
	}
	src, err := os.MkdirTemp(filepath.Dir(path), "seed-")
	if err != nil {
		return fmt.Errorf("machine seed %s: %w", s.Hostname, err)
	}
	defer os.RemoveAll(src)
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(src, name), []byte(data), 0o600); err != nil {
			return fmt.Errorf("machine seed %s: %w", s.Hostname, err)
		}
	}
	mkfs, err := sim.LookPath("mkfs.ext4")
	if err != nil {
		return err
	}
	os.Remove(path)
	if _, err := sim.Output(exec.CommandContext(ctx, mkfs, "-q", "-L", "butter-seed", "-d", src, path, "4M")); err != nil {
		return fmt.Errorf("machine seed %s: %w", s.Hostname, err)
	}
	return nil
}
