package remote

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// proxyConn is a connection over a ProxyCommand's standard input and
// output, as OpenSSH runs it: `sh -c "exec COMMAND"`, ended when the
// connection closes. What it says on standard error is kept for the
// error when it fails (package remote writes nothing to the terminal).
type proxyConn struct {
	cmd    *exec.Cmd
	in     *os.File
	out    *os.File
	addr   string // host:port it reaches, for RemoteAddr
	stderr *tailBuffer

	once sync.Once
	done chan struct{} // closed when the command has exited
	err  error
}

// dialProxyCommand starts command to reach addr. The command outlives ctx:
// it is the connection, ended by Close.
func dialProxyCommand(ctx context.Context, command, addr string) (*proxyConn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cmd := exec.Command("/bin/sh", "-c", "exec "+command)
	c := &proxyConn{cmd: cmd, addr: addr, stderr: &tailBuffer{max: 4096}, done: make(chan struct{})}
	cmd.Stderr = c.stderr
	// Pipes of our own: exec's would be closed by Wait, under a Read.
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	cmd.Stdin, cmd.Stdout = inR, outW
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, fmt.Errorf("run ProxyCommand `%s`: %w", command, err)
	}
	c.in, c.out = inW, outR
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

func (c *proxyConn) Read(p []byte) (int, error) {
	n, err := c.out.Read(p)
	return n, c.why(err)
}

func (c *proxyConn) Write(p []byte) (int, error) {
	n, err := c.in.Write(p)
	return n, c.why(err)
}

// why adds, to an error of the connection, that the command ended and
// what it said, when it did.
func (c *proxyConn) why(err error) error {
	if err == nil {
		return nil
	}
	select {
	case <-c.done:
	case <-time.After(100 * time.Millisecond):
		return err
	}
	msg := strings.TrimSpace(c.stderr.String())
	if c.err != nil {
		return fmt.Errorf("%w (%v): %s", errProxyExited, c.err, msg)
	}
	return fmt.Errorf("%w: %s", errProxyExited, msg)
}

// Close ends the command: its input closes (a well-behaved proxy exits),
// and it is killed if it has not after a moment.
func (c *proxyConn) Close() error {
	c.once.Do(func() {
		c.in.Close()
		select {
		case <-c.done:
		case <-time.After(time.Second):
			_ = c.cmd.Process.Kill()
			<-c.done
		}
		c.out.Close()
	})
	return nil
}

func (c *proxyConn) LocalAddr() net.Addr              { return proxyAddr("proxycommand") }
func (c *proxyConn) RemoteAddr() net.Addr             { return proxyAddr(c.addr) }
func (c *proxyConn) SetDeadline(time.Time) error      { return nil }
func (c *proxyConn) SetReadDeadline(time.Time) error  { return nil }
func (c *proxyConn) SetWriteDeadline(time.Time) error { return nil }

type proxyAddr string

func (a proxyAddr) Network() string { return "proxycommand" }
func (a proxyAddr) String() string  { return string(a) }
