package remote

import "net"

// RemoteIP is the address the connection reached, without the port (the
// last hop's, through jump hosts).
func (c *Client) RemoteIP() string {
	host, _, err := net.SplitHostPort(c.conn.RemoteAddr().String())
	if err != nil {
		return c.conn.RemoteAddr().String()
	}
	return host
}

// Jumped tells whether the connection goes through ProxyJump hosts or a
// ProxyCommand (then RemoteIP is not an address the machine is reached at).
func (c *Client) Jumped() bool {
	_, proxied := c.conn.RemoteAddr().(proxyAddr)
	return len(c.jumps) > 0 || proxied
}
