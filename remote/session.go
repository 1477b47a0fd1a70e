package remote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/butter-cloud/butter/helperapi"
)

// ErrHelperMismatch: the helper on the machine is missing or speaks
// another protocol version; install it again (InstallHelper, StartDaemon)
// and reconnect.
var ErrHelperMismatch = errors.New("the machine's helper does not match this butter")

// ErrClosed: the Machine was closed.
var ErrClosed = errors.New("machine connection closed")

// Machine is the protocol connection to one machine's helper: one
// long-lived SSH session running `helper serve`, carrying JSON-RPC calls,
// their answers and pushed notifications. When the connection drops, the
// next Client call dials again, with backoff. Per-call timeouts come from
// each call's ctx. Its methods may be called from many goroutines.
type Machine struct {
	helper Helper
	// any, until the first connection, are the helpers ConnectAny may
	// start; helper is then the one that answered.
	any  []Helper
	dial chan struct{} // a token: held while (re)connecting

	mu      sync.Mutex
	ssh     *Client
	client  *helperapi.Client
	closed  bool
	wait    time.Duration // the next reconnect's backoff
	nextTry time.Time
}

// Connect starts the protocol over c (which the Machine then owns) with the
// helper h installed there. A *HelloError (errors.Is ErrHelperMismatch)
// means the helper must be installed again.
func Connect(ctx context.Context, c *Client, h Helper) (*Machine, error) {
	return connectFirst(ctx, &Machine{helper: h, dial: make(chan struct{}, 1), ssh: c})
}

// ConnectAny is Connect with whichever of hs (ExpectedHelpers) is built
// for the machine's platform, found in the same session that starts it
// (Client.OpenServeAny): a machine whose helper runs is reached in one
// session, where Platform, then Connect, take two. Helper says which
// one answered.
func ConnectAny(ctx context.Context, c *Client, hs []Helper) (*Machine, error) {
	if len(hs) == 0 {
		c.Close()
		return nil, fmt.Errorf("connect to %s: %w: this butter has no helper binary", c.Host, ErrNoHelper)
	}
	return connectFirst(ctx, &Machine{any: hs, dial: make(chan struct{}, 1), ssh: c})
}

func connectFirst(ctx context.Context, m *Machine) (*Machine, error) {
	c := m.ssh
	m.dial <- struct{}{}
	defer func() { <-m.dial }()
	cl, err := m.connect(ctx)
	if err != nil {
		c.Close()
		return nil, err
	}
	m.mu.Lock()
	m.client = cl
	m.mu.Unlock()
	return m, nil
}

// Helper is the helper the Machine talks to.
func (m *Machine) Helper() Helper { return m.helper }

// Client returns the live protocol client, dialing again (SSH connection
// and serve session) if the connection dropped. Transient failures are
// retried with backoff (0.5 s doubling to 30 s) until ctx ends; a host key,
// login, sudo or helper mismatch error, or an *UnreachableError (the
// machine is away), is returned at once.
func (m *Machine) Client(ctx context.Context) (*helperapi.Client, error) {
	if cl, err := m.current(); cl != nil || err != nil {
		return cl, err
	}
	select {
	case m.dial <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-m.dial }()
	var last error
	for {
		if cl, err := m.current(); cl != nil || err != nil {
			return cl, err
		}
		m.mu.Lock()
		wait := time.Until(m.nextTry)
		m.mu.Unlock()
		if wait > 0 {
			select {
			case <-ctx.Done():
				if last != nil {
					return nil, fmt.Errorf("reconnect to %s: %w (last try: %v)", m.helperHost(), ctx.Err(), last)
				}
				return nil, ctx.Err()
			case <-time.After(wait):
			}
		}
		cl, err := m.connect(ctx)
		m.mu.Lock()
		if err == nil {
			m.client, m.wait, m.nextTry = cl, 0, time.Time{}
			m.mu.Unlock()
			return cl, nil
		}
		m.wait = min(max(2*m.wait, 500*time.Millisecond), 30*time.Second)
		m.nextTry = time.Now().Add(m.wait)
		m.mu.Unlock()
		// An unreachable machine is not retried within this call: the
		// caller learns at once that it is away (the backoff still
		// spaces the next calls' tries).
		var ue *UnreachableError
		if permanent(err) || ctx.Err() != nil || errors.As(err, &ue) {
			return nil, err
		}
		last = err
	}
}

func (m *Machine) helperHost() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ssh != nil {
		return m.ssh.Host
	}
	return "the machine"
}

// current is the live client, or ErrClosed.
func (m *Machine) current() (*helperapi.Client, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	return m.client, nil
}

// permanent errors are not cured by dialing again.
func permanent(err error) bool {
	var (
		hk *HostKeyError
		ae *AuthError
		se *SudoError
	)
	return errors.As(err, &hk) || errors.As(err, &ae) || errors.As(err, &se) || errors.Is(err, ErrHelperMismatch)
}

// sshClient returns the SSH connection, dialing a new one if it closed.
// Call with the dial token held.
func (m *Machine) sshClient(ctx context.Context) (*Client, error) {
	m.mu.Lock()
	c := m.ssh
	m.mu.Unlock()
	if c != nil && c.alive() {
		return c, nil
	}
	if c == nil {
		return nil, ErrClosed
	}
	nc, err := c.redial(ctx)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		nc.Close()
		return nil, ErrClosed
	}
	m.ssh.Close()
	m.ssh = nc
	return nc, nil
}

// Alive says the connection has not closed.
func (c *Client) Alive() bool { return c.alive() }

// Ping asks the server for a keepalive reply within timeout. A connection
// that gives none is closed, and the machine is away: an
// *UnreachableError, as a dial that timed out would give.
func (c *Client) Ping(ctx context.Context, timeout time.Duration) error {
	reply := make(chan error, 1)
	go func() {
		_, _, err := c.conn.SendRequest("keepalive@openssh.com", true, nil)
		reply <- err
	}()
	select {
	case err := <-reply:
		if err != nil {
			c.Close()
			return fmt.Errorf("ping %s: %w", c.Host, err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(timeout):
		c.Close()
		return &UnreachableError{Addr: c.Addr, Timeout: timeout, Err: pingTimeout{}}
	}
}

// pingTimeout is a keepalive that got no reply in time.
type pingTimeout struct{}

func (pingTimeout) Error() string   { return "no keepalive reply" }
func (pingTimeout) Timeout() bool   { return true }
func (pingTimeout) Temporary() bool { return true }

// alive says the connection has not closed.
func (c *Client) alive() bool {
	select {
	case <-c.closed():
		return false
	default:
		return true
	}
}

// closed is closed when the connection has closed.
func (c *Client) closed() <-chan struct{} {
	c.waitOnce.Do(func() {
		c.done = make(chan struct{})
		go func() {
			c.conn.Wait()
			close(c.done)
		}()
	})
	return c.done
}

// connect opens the serve session and checks the hello. Call with the
// dial token held.
func (m *Machine) connect(ctx context.Context) (*helperapi.Client, error) {
	c, err := m.sshClient(ctx)
	if err != nil {
		return nil, err
	}
	var st *ServeStream
	if m.any != nil {
		st, m.helper, err = c.OpenServeAny(ctx, m.any)
		if err == nil {
			m.any = nil
		}
	} else {
		st, err = c.OpenServe(ctx, m.helper)
	}
	if err != nil {
		return nil, err
	}
	conn := &sessionConn{r: st.r, w: st.w, s: st.s}
	if tw := c.opts.Transcript; tw != nil {
		conn.in = &transcript{w: tw, host: c.Host, dir: "<"}
		conn.out = &transcript{w: tw, host: c.Host, dir: ">"}
	}
	cl := NewHelperClient(conn, c.opts.log().With("host", c.Host))
	go func() {
		// The session ends when the helper exits or the connection drops:
		// hang the client up so pending calls fail, and forget it.
		<-st.exited
		cl.Close()
		m.mu.Lock()
		if m.client == cl {
			m.client = nil
		}
		m.mu.Unlock()
	}()
	return cl, nil
}

// Close hangs up.
func (m *Machine) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	var errs []error
	if m.client != nil {
		m.client.Close()
		m.client = nil
	}
	if m.ssh != nil {
		errs = append(errs, m.ssh.Close())
	}
	return errors.Join(errs...)
}

// withSSH runs fn with the live SSH connection.
func (m *Machine) withSSH(ctx context.Context, fn func(*Client) error) error {
	if _, err := m.current(); err != nil {
		return err
	}
	select {
	case m.dial <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	c, err := m.sshClient(ctx)
	<-m.dial
	if err != nil {
		return err
	}
	return fn(c)
}

// Console attaches to VM name's serial console over a second session on
// the same SSH connection: in goes to the console, the console to out.
// The byte 0x1d (Ctrl+]) in in detaches; Console returns then, or when ctx
// ends (closing the session). A Read from in that blocks is left behind,
// as with exec.Cmd.
func (m *Machine) Console(ctx context.Context, name string, in io.Reader, out io.Writer) error {
	return m.withSSH(ctx, func(c *Client) error {
		return c.Run(ctx, Cmd{Root: true, Line: ShellJoin(m.helper.Path, "helper", "vm", "console", name),
			Stdin: in, Stdout: out})
	})
}

// DialTCP opens a TCP connection from the machine to addr (host:port), as
// an SSH direct-tcpip channel on the same SSH connection: what
// `butter vm proxy` hands to ssh's ProxyCommand. Once open, the
// connection outlives ctx; closing it closes the channel.
func (m *Machine) DialTCP(ctx context.Context, addr string) (net.Conn, error) {
	var conn net.Conn
	err := m.withSSH(ctx, func(c *Client) error {
		var err error
		if conn, err = c.conn.DialContext(ctx, "tcp", addr); err != nil {
			return fmt.Errorf("connect from %s to %s: %w", c.Host, addr, err)
		}
		return nil
	})
	return conn, err
}

// ImageUpload is a disk image sent from the operator's computer.
type ImageUpload struct {
	// Name is for display (the file's base name).
	Name string
	// Kind is "disk" (the default), or "kernel" or "initrd" for a file of
	// a kernel boot image.
	Kind string
	// Size and SHA256 (hex) describe Body's content.
	Size   int64
	SHA256 string
	Body   io.Reader
	// Progress, if set, hears how many bytes were sent, at most every
	// 100 ms and once at the end.
	Progress func(sent int64)
}

// ImportImage streams an image into the machine's image store (`helper
// image import`, over a session on the same SSH connection). The machine
// checks size and sha256 before keeping it, and reads nothing when it holds
// the content already.
func (m *Machine) ImportImage(ctx context.Context, u ImageUpload) (helperapi.Image, error) {
	var img helperapi.Image
	err := m.withSSH(ctx, func(c *Client) error {
		out := &cappedBuffer{max: MaxOutput}
		body := &progressReader{r: u.Body, fn: u.Progress}
		kind := u.Kind
		if kind == "" {
			kind = "disk"
		}
		// Skip what the machine holds already.
		has := &cappedBuffer{max: 64}
		hasLine := ShellJoin(m.helper.Path, "helper", "image", "has", "--kind", kind, "--sha256", u.SHA256)
		if err := c.Run(ctx, Cmd{Root: true, Line: hasLine, Stdout: has}); err == nil && strings.TrimSpace(has.String()) == "yes" {
			if u.Progress != nil {
				u.Progress(u.Size)
			}
			img = helperapi.Image{ID: u.SHA256, Name: u.Name}
			return nil
		}
		line := ShellJoin(m.helper.Path, "helper", "image", "import", "--name", u.Name,
			"--size", strconv.FormatInt(u.Size, 10), "--sha256", u.SHA256, "--kind", kind)
		if err := c.Run(ctx, Cmd{Root: true, Line: line, Stdin: body, Stdout: out}); err != nil {
			return fmt.Errorf("import image %s: %w", u.Name, err)
		}
		if err := out.check(c.Host, line); err != nil {
			return fmt.Errorf("import image %s: %w", u.Name, err)
		}
		body.report(true)
		if err := json.Unmarshal([]byte(out.String()), &img); err != nil {
			return fmt.Errorf("import image %s: the helper answered %q: %w", u.Name, shorten(out.String(), 200), err)
		}
		return nil
	})
	return img, err
}

// progressReader counts what is read from r (which the session writes to
// the machine as it reads).
type progressReader struct {
	r    io.Reader
	fn   func(int64)
	mu   sync.Mutex
	n    int64
	last time.Time
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.mu.Lock()
	p.n += int64(n)
	p.mu.Unlock()
	p.report(err != nil)
	return n, err
}

func (p *progressReader) report(final bool) {
	if p.fn == nil {
		return
	}
	p.mu.Lock()
	if !final && time.Since(p.last) < 100*time.Millisecond {
		p.mu.Unlock()
		return
	}
	p.last = time.Now()
	n := p.n
	p.mu.Unlock()
	p.fn(n)
}
