package lab

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

// DialInNetns opens a TCP connection from inside the network namespace at
// nsPath: the socket is made on a thread that has entered it, and stays
// there.
func DialInNetns(ctx context.Context, nsPath, addr string) (net.Conn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is unlocked only once it is back in its own
		// namespace; otherwise it ends with this goroutine.
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer self.Close()
		target, err := os.Open(nsPath)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("enter %s: %w", nsPath, err)}
			return
		}
		d := net.Dialer{Timeout: 5 * time.Second}
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err == nil {
			runtime.UnlockOSThread()
		}
		ch <- result{conn, err}
	}()
	r := <-ch
	return r.conn, r.err
}

// DialGuestSSH logs in over SSH to a guest at addr from inside the network
// namespace at nsPath, retrying until its sshd answers or within passes; a
// wrong host key or a refused login fails at once.
func DialGuestSSH(ctx context.Context, nsPath, addr string, config *ssh.ClientConfig, within time.Duration) (*ssh.Client, error) {
	deadline := time.Now().Add(within)
	for {
		conn, err := DialInNetns(ctx, nsPath, addr)
		if err == nil {
			c, chans, reqs, cerr := ssh.NewClientConn(conn, addr, config)
			if cerr == nil {
				return ssh.NewClient(c, chans, reqs), nil
			}
			conn.Close()
			if msg := cerr.Error(); strings.Contains(msg, "host key") || strings.Contains(msg, "unable to authenticate") {
				return nil, fmt.Errorf("ssh %s@%s: %w", config.User, addr, cerr)
			}
			err = cerr
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("ssh %s@%s: %w", config.User, addr, err)
		}
		time.Sleep(time.Second)
	}
}

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
			return "", fmt.Errorf("ssh %q: %w\nstdout:\n%s\nstderr:\n%s", cmd, err, stdout.String(), stderr.String())
		}
		return stdout.String(), nil
	case <-time.After(time.Minute):
		return "", fmt.Errorf("ssh %q: no answer after a minute", cmd)
	case <-ctx.Done():
		return "", fmt.Errorf("ssh %q: %w", cmd, ctx.Err())
	}
}
