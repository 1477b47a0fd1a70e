package remote

// A `helper serve` session: started on an SSH session, checked by its
// hello (protocol and version), then JSON-RPC over its standard streams.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/butter-cloud/butter/helperapi"
	"golang.org/x/crypto/ssh"
)

// HelloError is a serve session that did not start with the expected
// hello line.
type HelloError struct {
	Host string
	// Protocol and Version are what the helper said (0 and "" if it said
	// nothing recognizable); Want are what this butter expects.
	Protocol, WantProtocol int
	Version, WantVersion   string
	// Detail is what came instead, or the helper's error.
	Detail string
}

func (e *HelloError) Unwrap() error { return ErrHelperMismatch }

func (e *HelloError) Error() string {
	switch {
	case e.Protocol == 0:
		return fmt.Sprintf("the helper on %s did not start the protocol: %s", e.Host, e.Detail)
	case e.Protocol != e.WantProtocol:
		return fmt.Sprintf("the helper on %s speaks protocol %d (version %s), this butter speaks %d: reinstall the helper",
			e.Host, e.Protocol, e.Version, e.WantProtocol)
	}
	return fmt.Sprintf("the helper on %s is version %s, not the installed %s: reinstall the helper", e.Host, e.Version, e.WantVersion)
}

// helloLimit is how much stray output (login banners, profile scripts)
// may come before the hello line.
const helloLimit = 64 << 10

// NewHelperClient is the protocol client over conn, every call logged.
func NewHelperClient(conn net.Conn, log *slog.Logger) *helperapi.Client {
	cl := helperapi.NewClient(context.Background(), conn)
	cl.Observe(func(method string, took time.Duration, err error) {
		took = took.Round(time.Millisecond)
		if err != nil {
			log.Warn("helper call failed", "method", method, "took", took, "error", err.Error())
			return
		}
		log.Info("helper call", "method", method, "took", took)
	})
	return cl
}

// ServeStream is a `helper serve` session past its hello: JSON-RPC both
// ways. Closing it closes the session.
type ServeStream struct {
	r      *bufio.Reader
	w      io.WriteCloser
	s      *ssh.Session
	exited chan error    // the session's end, once
	done   chan struct{} // closed when the session has ended
}

// Ended says the session has ended (the helper exited, or the connection
// dropped).
func (st *ServeStream) Ended() bool {
	select {
	case <-st.done:
		return true
	default:
		return false
	}
}

func (st *ServeStream) Read(p []byte) (int, error)  { return st.r.Read(p) }
func (st *ServeStream) Write(p []byte) (int, error) { return st.w.Write(p) }
func (st *ServeStream) Close() error                { return st.s.Close() }

// OpenServe starts `helper serve` of the installed helper h on a new
// session of c and checks its hello (protocol and version): a
// *HelloError (errors.Is ErrHelperMismatch) means the helper must be
// installed again.
func (c *Client) OpenServe(ctx context.Context, h Helper) (*ServeStream, error) {
	st, _, err := c.openServe(ctx, ShellJoin(h.Path, "helper", "serve"), []Helper{h})
	return st, err
}

// OpenServeAny is OpenServe of whichever of hs (helpers for different
// platforms, ExpectedHelpers) is built for the machine's platform: the
// session's shell asks `uname -sm` and starts that one, so no session of
// its own asks first. It returns the helper that answered. A machine of
// a platform none of hs is built for fails to start, with the platform
// in the error.
func (c *Client) OpenServeAny(ctx context.Context, hs []Helper) (*ServeStream, Helper, error) {
	if len(hs) == 0 {
		return nil, Helper{}, fmt.Errorf("start the helper on %s: %w: this butter has no helper binary", c.Host, ErrNoHelper)
	}
	return c.openServe(ctx, servePick(hs), hs)
}

// servePick is a shell line that starts `helper serve` of the helper of
// hs built for the machine's platform, or fails naming the platform.
func servePick(hs []Helper) string {
	var b strings.Builder
	b.WriteString(`case "$(uname -sm)" in`)
	for _, h := range hs {
		var pats []string
		for _, m := range unameArch[h.Platform.Arch] {
			pats = append(pats, ShellJoin("Linux "+m))
		}
		fmt.Fprintf(&b, " %s) exec %s;;", strings.Join(pats, "|"), ShellJoin(h.Path, "helper", "serve"))
	}
	b.WriteString(` *) echo "no butter helper here for $(uname -sm)" >&2; exit 126;; esac`)
	return b.String()
}

// openServe starts line, a `helper serve` of one of hs, and checks its
// hello against them.
func (c *Client) openServe(ctx context.Context, line string, hs []Helper) (*ServeStream, Helper, error) {
	want := hs[0]
	if len(hs) > 1 {
		var paths, versions []string
		for _, h := range hs {
			paths, versions = append(paths, h.Path), append(versions, h.Version)
		}
		want = Helper{Path: strings.Join(paths, " or "), Version: strings.Join(versions, " or ")}
	}
	st, version, err := c.startServe(ctx, line, want)
	if err != nil {
		return nil, Helper{}, err
	}
	for _, h := range hs {
		if h.Version == version {
			return st, h, nil
		}
	}
	st.Close()
	return nil, Helper{}, &HelloError{Host: c.Host, Protocol: helperapi.ServeProtocol, WantProtocol: helperapi.ServeProtocol,
		Version: version, WantVersion: want.Version}
}

// startServe starts line on a new session and reads the hello: it
// returns the stream and the version the helper said, or why it did not
// start (h is the helper expected, for the error).
func (c *Client) startServe(ctx context.Context, line string, h Helper) (*ServeStream, string, error) {
	s, err := c.conn.NewSession()
	if err != nil {
		return nil, "", fmt.Errorf("open the protocol session on %s: %w", c.Host, err)
	}
	stdin, err := s.StdinPipe()
	if err != nil {
		s.Close()
		return nil, "", err
	}
	stdout, err := s.StdoutPipe()
	if err != nil {
		s.Close()
		return nil, "", err
	}
	tail := &tailBuffer{max: 4096}
	s.Stderr = tail
	line = c.wireLine(line, true)
	if err := s.Start(line); err != nil {
		s.Close()
		return nil, "", fmt.Errorf("start the helper on %s: %w", c.Host, err)
	}
	exited, done := make(chan error, 1), make(chan struct{})
	go func() {
		exited <- s.Wait()
		close(done)
	}()

	r := bufio.NewReaderSize(stdout, 64<<10)
	stop := context.AfterFunc(ctx, func() { s.Close() })
	proto, version, junk, err := helperapi.ReadServeHello(r, helloLimit)
	stop()
	if err != nil {
		s.Close()
		werr := <-exited
		if ctx.Err() != nil {
			return nil, "", fmt.Errorf("start the helper on %s: %w", c.Host, ctx.Err())
		}
		return nil, "", helloFailure(c, h, werr, tail.String(), junk, err)
	}
	if proto != helperapi.ServeProtocol {
		s.Close()
		return nil, "", &HelloError{Host: c.Host, Protocol: proto, WantProtocol: helperapi.ServeProtocol,
			Version: version, WantVersion: h.Version}
	}
	c.opts.log().Info("helper session", "host", c.Host, "command", line, "version", version)
	return &ServeStream{r: r, w: stdin, s: s, exited: exited, done: done}, version, nil
}

// helloFailure explains a serve session that ended before its hello.
func helloFailure(c *Client, h Helper, exit error, stderr, junk string, readErr error) error {
	if serr := sudoError(stderr); serr != nil && c.User != "root" {
		serr.User, serr.Host = c.User, c.Host
		return serr
	}
	if errors.Is(readErr, helperapi.ErrNoHello) {
		// It talks, but not the protocol, and would go on: say so
		// with a taste of what it printed.
		return fmt.Errorf("start the helper on %s: %w; it printed %q…", c.Host, readErr, shorten(junk, 120))
	}
	detail := strings.TrimSpace(stderr)
	if detail == "" {
		detail = shorten(strings.TrimSpace(junk), 400)
	}
	if detail == "" {
		detail = readErr.Error()
	}
	var ee *ssh.ExitError
	if errors.As(exit, &ee) && ee.ExitStatus() == 127 || strings.Contains(stderr, "No such file") || strings.Contains(stderr, "not found") {
		return &HelloError{Host: c.Host, WantProtocol: helperapi.ServeProtocol, WantVersion: h.Version,
			Detail: fmt.Sprintf("%s is missing: %s", h.Path, detail)}
	}
	if _, ok := exit.(*ssh.ExitMissingError); ok || exit == nil {
		// The connection went away: transient.
		return fmt.Errorf("the protocol session on %s ended before it started: %s", c.Host, detail)
	}
	return fmt.Errorf("start the helper on %s: %v: %s", c.Host, exit, detail)
}

// sessionConn is the serve session's stdio as a net.Conn for
// helperapi.NewClient.
type sessionConn struct {
	r *bufio.Reader
	w io.WriteCloser
	s *ssh.Session
	// in and out, if set, record what is read and written (a transcript).
	in, out io.Writer
}

func (c *sessionConn) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.in != nil && n > 0 {
		c.in.Write(p[:n])
	}
	return n, err
}

func (c *sessionConn) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	if c.out != nil && n > 0 {
		c.out.Write(p[:n])
	}
	return n, err
}

// Close closes the session. Not c.w.Close: x/crypto's CloseWrite races
// with a concurrent Write (the jsonrpc2 sender), and closing the session
// ends both directions anyway.
func (c *sessionConn) Close() error                       { return c.s.Close() }
func (c *sessionConn) LocalAddr() net.Addr                { return sessionAddr{} }
func (c *sessionConn) RemoteAddr() net.Addr               { return sessionAddr{} }
func (c *sessionConn) SetDeadline(t time.Time) error      { return nil }
func (c *sessionConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *sessionConn) SetWriteDeadline(t time.Time) error { return nil }

type sessionAddr struct{}

func (sessionAddr) Network() string { return "ssh-session" }
func (sessionAddr) String() string  { return "butter helper serve" }
