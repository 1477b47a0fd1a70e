package cloud

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/holder"
	"github.com/butter-cloud/butter/inventory"
	"github.com/butter-cloud/butter/remote"
)

// viaHolder reaches m's helper through the holder's SSH connection. An
// unreachable machine is a *remote.UnreachableError, as a dial of its own
// would give; any other failure is returned for the caller to dial itself.
func (s SSH) viaHolder(ctx context.Context, m inventory.Machine, o remote.DialOptions) (Link, error) {
	req := holder.Request{Machine: m.Name, Host: m.Address, Helpers: s.Helpers, Dial: holder.Dial{
		User: o.User, Port: o.Port, IdentityFiles: o.IdentityFiles, SSHConfig: o.SSHConfig, AgentSocket: o.AgentSocket,
		KnownHosts: o.KnownHosts, UserKnownHosts: o.UserKnownHosts, ConnectTimeout: o.ConnectTimeout}}
	if req.Dial.AgentSocket == "" {
		// The verb's agent, not whichever the holder started with.
		if req.Dial.AgentSocket = os.Getenv("SSH_AUTH_SOCK"); req.Dial.AgentSocket == "" {
			req.Dial.AgentSocket = "none"
		}
	}
	l := &heldLink{s: s, m: m, req: req}
	if _, err := l.Helper(ctx); err != nil {
		var ae *holder.AnswerError
		if errors.As(err, &ae) && ae.Answer.Kind == holder.KindUnreachable {
			var cause error = errors.New(ae.Answer.Cause)
			if ae.Answer.TimedOut {
				cause = timeoutError(ae.Answer.Cause)
			}
			l.log().Info("holder: machine away", "machine", m.Name, "error", ae.Answer.Error)
			return nil, &remote.UnreachableError{Addr: ae.Answer.Addr, Timeout: ae.Answer.Timeout, Err: cause}
		}
		return nil, err
	}
	return l, nil
}

// timeoutError is a connect that ran out of time, as the holder saw it.
type timeoutError string

func (e timeoutError) Error() string   { return string(e) }
func (e timeoutError) Timeout() bool   { return true }
func (e timeoutError) Temporary() bool { return true }

// heldLink is a Link through the holder: the helper's protocol and
// commands ride its SSH connection; a console or a TCP connection (rare
// and long) dials the machine itself.
type heldLink struct {
	s   SSH
	m   inventory.Machine
	req holder.Request

	mu     sync.Mutex
	cl     *helperapi.Client
	route  Route
	path   string // the helper's binary on the machine
	direct Link
	closed bool
}

func (l *heldLink) log() *slog.Logger {
	if l.s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l.s.Log
}

// Helper implements Link: the protocol stream, opened again through the
// holder if it closed.
func (l *heldLink) Helper(ctx context.Context) (Helper, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, remote.ErrClosed
	}
	if l.cl != nil {
		select {
		case <-l.cl.Done():
		default:
			return l.cl, nil
		}
	}
	start := time.Now()
	conn, a, err := l.s.Holder.Serve(ctx, l.req)
	took := time.Since(start).Round(time.Millisecond)
	if err != nil {
		l.log().Info("holder not used", "machine", l.m.Name, "took", took, "error", err.Error())
		return nil, err
	}
	l.log().Info("holder used", "machine", l.m.Name, "reused", a.Reused, "spare", a.Spare, "took", took, "version", a.Version)
	l.cl = remote.NewHelperClient(conn, l.log().With("host", l.m.Address, "holder", true))
	l.route = Route{Addr: a.Addr, Jumped: a.Jumped, Version: a.Version}
	l.path = a.Path
	return l.cl, nil
}

// Via implements Link.
func (l *heldLink) Via() Route {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.route
}

// Close implements Link.
func (l *heldLink) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	var errs []error
	if l.cl != nil {
		errs = append(errs, l.cl.Close())
	}
	if l.direct != nil {
		errs = append(errs, l.direct.Close())
	}
	return errors.Join(errs...)
}

// directLink is a connection of the verb's own, for what the holder does
// not carry.
func (l *heldLink) directLink(ctx context.Context) (Link, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, remote.ErrClosed
	}
	if l.direct != nil {
		return l.direct, nil
	}
	s := l.s
	s.Holder = nil
	d, err := s.Connect(ctx, l.m, Trust{}, nil)
	if err != nil {
		return nil, err
	}
	l.direct = d
	return d, nil
}

// Console implements Link, over a connection of the verb's own.
func (l *heldLink) Console(ctx context.Context, vmName string, in io.Reader, out io.Writer) error {
	d, err := l.directLink(ctx)
	if err != nil {
		return err
	}
	return d.Console(ctx, vmName, in, out)
}

// DialTCP implements tcpDialer, over a connection of the verb's own.
func (l *heldLink) DialTCP(ctx context.Context, addr string) (net.Conn, error) {
	d, err := l.directLink(ctx)
	if err != nil {
		return nil, err
	}
	td, ok := d.(tcpDialer)
	if !ok {
		return nil, fmt.Errorf("connect from %s to %s: not over this connection", l.m.Name, addr)
	}
	return td.DialTCP(ctx, addr)
}

// exec runs a helper verb on the machine through the holder.
func (l *heldLink) exec(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	if _, err := l.Helper(ctx); err != nil {
		return err
	}
	l.mu.Lock()
	req := l.req
	req.Line, req.Root = remote.ShellJoin(append([]string{l.path}, args...)...), true
	l.mu.Unlock()
	var stderr strings.Builder
	_, err := l.s.Holder.Exec(ctx, req, stdin, stdout, &limitedWriter{w: &stderr, n: 4096})
	if err != nil {
		return fmt.Errorf("%s on %s: %w", strings.Join(args, " "), l.m.Name, err)
	}
	return nil
}

// Upload implements Link as sshLink's does (remote.Machine.ImportImage),
// its commands through the holder.
func (l *heldLink) Upload(ctx context.Context, kind string, f *helperapi.File, progress func(helperapi.Progress)) error {
	if err := sumFile(f); err != nil {
		return err
	}
	n := f.Size
	name := filepath.Base(f.Path)
	done := func() {
		if progress != nil {
			progress(helperapi.Progress{Name: name, Phase: helperapi.PhaseUpload, Done: n, Total: n})
		}
	}
	var has strings.Builder
	if err := l.exec(ctx, []string{"helper", "image", "has", "--kind", kind, "--sha256", f.SHA256}, nil,
		&limitedWriter{w: &has, n: 64}); err == nil && strings.TrimSpace(has.String()) == "yes" {
		done()
		return nil
	}
	// Not there: sent over a connection of the verb's own, with its
	// progress (large, and rare once the machine's store has it).
	d, err := l.directLink(ctx)
	if err != nil {
		return err
	}
	return d.Upload(ctx, kind, f, progress)
}

// limitedWriter keeps the first n bytes and takes the rest silently.
type limitedWriter struct {
	w io.Writer
	n int
}

func (lw *limitedWriter) Write(p []byte) (int, error) {
	if lw.n > 0 {
		k := min(len(p), lw.n)
		lw.w.Write(p[:k])
		lw.n -= k
	}
	return len(p), nil
}
