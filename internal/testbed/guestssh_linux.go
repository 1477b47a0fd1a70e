package testbed

import (
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
