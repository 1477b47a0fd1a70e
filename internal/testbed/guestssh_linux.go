package testbed

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// DialInNetns opens a TCP connection from inside the network namespace at
// nsPath: the socket is made on a thread that has entered it, and stays
// there.
func DialInNetns(ctx context.Context, nsPath, addr string) (net.Conn, error) {
	return MakeInNetns(nsPath, func() (net.Conn, error) {
		d := net.Dialer{Timeout: 5 * time.Second}
		return d.DialContext(ctx, "tcp", addr)
	})
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
