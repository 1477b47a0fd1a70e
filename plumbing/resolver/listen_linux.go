package resolver

import (
	"errors"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// listenConfig binds with IP_FREEBIND, so a server can listen on its
// gateway before the address is on the bridge (and keeps listening while
// the bridge is made again), and SO_REUSEADDR, so it can bind its gateway
// while another program listens on 0.0.0.0:53 with the same option (as
// dnsmasq does).
func listenConfig() net.ListenConfig {
	return net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_FREEBIND, 1); serr != nil {
				return
			}
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		})
		return errors.Join(err, serr)
	}}
}

func explainListen(err error) error {
	if errors.Is(err, unix.EADDRINUSE) {
		return fmt.Errorf("%w; another program holds this port: stop it, or make it listen only on its own addresses (dnsmasq: bind-interfaces)", err)
	}
	return err
}
