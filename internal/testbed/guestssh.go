package testbed

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// GuestHostKey finds the ed25519 host key a cloud-init guest printed on
// its console (between its BEGIN/END SSH HOST KEY KEYS lines) and checks
// that its fingerprint is among the fingerprints it printed too, so a test
// can pin it.
func GuestHostKey(console string) (ssh.PublicKey, error) {
	section := func(what string) []string {
		_, rest, ok := strings.Cut(console, "-----BEGIN SSH HOST KEY "+what+"-----")
		if !ok {
			return nil
		}
		body, _, _ := strings.Cut(rest, "-----END SSH HOST KEY "+what+"-----")
		return strings.Split(body, "\n")
	}
	var key ssh.PublicKey
	for _, l := range section("KEYS") {
		i := strings.Index(l, "ssh-ed25519 ") // a kernel message may share the line
		if i < 0 {
			continue
		}
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(l[i:]))
		if err != nil {
			return nil, fmt.Errorf("host key line %q on the console: %w", l, err)
		}
		key = k
	}
	if key == nil {
		return nil, fmt.Errorf("no ssh-ed25519 host key printed on the console")
	}
	fp := ssh.FingerprintSHA256(key)
	for _, l := range section("FINGERPRINTS") {
		if strings.Contains(l, fp) {
			return key, nil
		}
	}
	return nil, fmt.Errorf("host key %s is not among the fingerprints printed on the console", fp)
}

// RunSSH runs cmd on c and returns its standard output; it gives up after
// a minute or when ctx ends.
func RunSSH(ctx context.Context, c *ssh.Client, cmd string) (string, error) {
	return RunSSHWithin(ctx, c, cmd, time.Minute)
}

// RunSSHWithin is RunSSH for a command that may take longer (or must take
// less) than a minute. A command that ran and failed returns its standard
// output too; the error carries both streams.
func RunSSHWithin(ctx context.Context, c *ssh.Client, cmd string, within time.Duration) (string, error) {
	s, err := c.NewSession()
	if err != nil {
		return "", fmt.Errorf("ssh session: %w", err)
	}
	defer s.Close()
	var stdout, stderr bytes.Buffer
	s.Stdout, s.Stderr = &stdout, &stderr
	errc := make(chan error, 1)
	go func() { errc <- s.Run(cmd) }()
	select {
	case err := <-errc:
		if err != nil {
			return stdout.String(), fmt.Errorf("ssh %q: %w\nstdout:\n%s\nstderr:\n%s", cmd, err, stdout.String(), stderr.String())
		}
		return stdout.String(), nil
	case <-time.After(within):
		return "", fmt.Errorf("ssh %q: no end after %s", cmd, within)
	case <-ctx.Done():
		return "", fmt.Errorf("ssh %q: %w", cmd, ctx.Err())
	}
}

// GuestSSHConfig logs in as user with signer, and takes only hostKey (the
// one the guest printed on its console, see GuestHostKey) from the guest.
func GuestSSHConfig(user string, signer ssh.Signer, hostKey ssh.PublicKey) *ssh.ClientConfig {
	return &ssh.ClientConfig{
		User: user,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			if !bytes.Equal(key.Marshal(), hostKey.Marshal()) {
				return fmt.Errorf("host key %s is not the %s the guest printed on its console",
					ssh.FingerprintSHA256(key), ssh.FingerprintSHA256(hostKey))
			}
			return nil
		},
		HostKeyAlgorithms: []string{hostKey.Type()},
		Timeout:           20 * time.Second,
	}
}
