package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// Cmd is a command to run on the machine.
type Cmd struct {
	// Line is a POSIX shell command line, run by sh whatever the login
	// user's shell is (see wireLine).
	Line string
	// Root runs it as root: through `sudo -n sh -c …` when the login user
	// is not root.
	Root bool
	// Stdin feeds its standard input (nil: none); Stdout and Stderr
	// receive its output (nil: discarded).
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// ErrSudoPassword: the login user is not root and sudo wants a password,
// which butter cannot type.
var ErrSudoPassword = errors.New("sudo needs a password")

// SudoError is a command that sudo refused to run.
type SudoError struct {
	Reason     error // ErrSudoPassword, or nil for another refusal
	User, Host string
	Message    string // what sudo said
}

func (e *SudoError) Unwrap() error { return e.Reason }

func (e *SudoError) Error() string {
	if e.Reason == ErrSudoPassword {
		return fmt.Sprintf("on %s, user %q needs a password for sudo, and butter runs `sudo -n`, which cannot ask for one: "+
			"allow this user passwordless sudo (as root there: echo '%s ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/butter && chmod 0440 /etc/sudoers.d/butter), "+
			"or connect as root", e.Host, e.User, e.User)
	}
	return fmt.Sprintf("on %s, user %q cannot run commands as root through sudo: %s; give this user passwordless sudo or connect as root",
		e.Host, e.User, e.Message)
}

// RunError is a command that ran and failed.
type RunError struct {
	Line   string
	Host   string
	Status int    // exit status; -1 if it ended without one (a signal, a lost connection)
	Stderr string // the end of what it wrote on standard error
	Err    error
}

func (e *RunError) Unwrap() error { return e.Err }

func (e *RunError) Error() string {
	msg := fmt.Sprintf("run `%s` on %s: %v", shorten(e.Line, 120), e.Host, e.Err)
	if s := strings.TrimSpace(e.Stderr); s != "" {
		msg += ": " + s
	}
	return msg
}

func shorten(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// wireLine is what the SSH exec request carries for line, run as root
// (through sudo -n when c's user is not root) or as the login user.
//
// sshd hands that text to the login user's shell, which may be fish, tcsh
// or anything else: a POSIX line (quotes, $, newlines, backslashes) means
// different things there. So the text the login shell parses is always
//
//	[sudo -n ]sh -c 'eval "$(printf "\ooo\ooo…")"'
//
// with every byte of line written as a three-digit octal escape: plain
// words and one single-quoted string holding only digits, backslashes
// before digits, $ ( ) and ", which every shell reads the same way (fish's
// \\ and \' escapes, csh's ! history and newline rules all stay out of it).
// sh's own printf decodes it, so the machine needs nothing more than sh.
// Each byte takes four: butter's command lines (a few KiB at most) stay
// far below Linux's 128 KiB bound on one argument.
// line itself is built with shellQuote, the one quoting function, for sh.
func (c *Client) wireLine(line string, root bool) string {
	var b strings.Builder
	b.WriteString(`sh -c 'eval "$(printf "`)
	for i := 0; i < len(line); i++ {
		fmt.Fprintf(&b, `\%03o`, line[i])
	}
	b.WriteString(`")"'`)
	if root && c.User != "root" {
		return "sudo -n " + b.String()
	}
	return b.String()
}

// session starts cmd in a new session with its standard streams wired.
// The tail of standard error is kept in the returned buffer.
func (c *Client) start(cmd Cmd) (*ssh.Session, *tailBuffer, string, error) {
	s, err := c.conn.NewSession()
	if err != nil {
		return nil, nil, "", fmt.Errorf("open a session on %s: %w", c.Host, err)
	}
	line := c.wireLine(cmd.Line, cmd.Root)
	tail := &tailBuffer{max: 4096}
	s.Stdin = cmd.Stdin
	s.Stdout = cmd.Stdout
	if s.Stdout == nil {
		s.Stdout = io.Discard
	}
	s.Stderr = tail
	if cmd.Stderr != nil {
		s.Stderr = io.MultiWriter(tail, cmd.Stderr)
	}
	if err := s.Start(line); err != nil {
		s.Close()
		return nil, nil, "", fmt.Errorf("start `%s` on %s: %w", shorten(cmd.Line, 120), c.Host, err)
	}
	return s, tail, line, nil
}

// abandonGrace is how long a canceled command's session may take to end.
const abandonGrace = 3 * time.Second

// Run runs cmd and waits for it. When ctx ends first, the command is sent
// SIGTERM and its session closed; Run returns then, at most abandonGrace
// later.
func (c *Client) Run(ctx context.Context, cmd Cmd) (err error) {
	start := time.Now()
	defer func() { c.logRun(ctx, cmd, start, err) }()
	s, tail, _, err := c.start(cmd)
	if err != nil {
		return err
	}
	defer s.Close()
	waited := make(chan error, 1)
	go func() { waited <- s.Wait() }()
	select {
	case err = <-waited:
	case <-ctx.Done():
		// Ask the command to end and close the session; a machine that
		// does not confirm within abandonGrace is left behind (closing
		// the connection ends it), so a cancel never hangs the caller.
		_ = s.Signal(ssh.SIGTERM)
		s.Close()
		select {
		case err = <-waited:
		case <-time.After(abandonGrace):
		}
	}
	if ctx.Err() != nil {
		return fmt.Errorf("run `%s` on %s: %w", shorten(cmd.Line, 120), c.Host, ctx.Err())
	}
	return c.runError(cmd, tail.String(), err)
}

// runError explains how a command failed.
func (c *Client) runError(cmd Cmd, stderr string, err error) error {
	if err == nil {
		return nil
	}
	if cmd.Root && c.User != "root" {
		if serr := sudoError(stderr); serr != nil {
			serr.User, serr.Host = c.User, c.Host
			return serr
		}
	}
	status := -1
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		status = ee.ExitStatus()
	}
	return &RunError{Line: cmd.Line, Host: c.Host, Status: status, Stderr: stderr, Err: err}
}

// sudoError recognizes sudo's refusals on standard error.
func sudoError(stderr string) *SudoError {
	for line := range strings.Lines(stderr) {
		line = strings.TrimSpace(line)
		switch {
		case strings.Contains(line, "a password is required"), strings.Contains(line, "a terminal is required"):
			return &SudoError{Reason: ErrSudoPassword, Message: line}
		case strings.HasPrefix(line, "sudo:") && (strings.Contains(line, "not in the sudoers") ||
			strings.Contains(line, "not allowed to execute") || strings.Contains(line, "command not found")),
			strings.Contains(line, "sudo: not found"), strings.Contains(line, "sudo: command not found"):
			return &SudoError{Message: line}
		}
	}
	return nil
}

// MaxOutput bounds the standard output kept of a command run for its
// answer (Output, the helper's image verbs): every real answer is a line
// or a small JSON object, so a machine that prints more is refused rather
// than held in memory.
const MaxOutput = 1 << 20

// Output runs line (as root if root) and returns its standard output, at
// most MaxOutput bytes of it: more is an error.
func (c *Client) Output(ctx context.Context, root bool, line string) ([]byte, error) {
	out := &cappedBuffer{max: MaxOutput}
	if err := c.Run(ctx, Cmd{Line: line, Root: root, Stdout: out}); err != nil {
		return out.Bytes(), err
	}
	return out.Bytes(), out.check(c.Host, line)
}

// cappedBuffer keeps the first max bytes written to it and drops the rest,
// noting that it did (the command still runs to its end: a writer that
// failed would leave it blocked on a full channel).
type cappedBuffer struct {
	mu   sync.Mutex
	max  int
	buf  []byte
	over bool
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	keep := min(len(p), b.max-len(b.buf))
	b.buf = append(b.buf, p[:keep]...)
	if keep < len(p) {
		b.over = true
	}
	return len(p), nil
}

// Bytes is what was kept.
func (b *cappedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf
}

func (b *cappedBuffer) String() string { return string(b.Bytes()) }

// check says when the command printed more than was kept.
func (b *cappedBuffer) check(host, line string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.over {
		return fmt.Errorf("`%s` on %s printed more than %d bytes; that is not an answer butter expects", shorten(line, 120), host, b.max)
	}
	return nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = t.buf[len(t.buf)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// shellQuote quotes s as one word for a POSIX shell (sh, which every
// command runs under: see wireLine). Every remote command line is built
// with it (or shellJoin).
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,@+%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// ShellJoin quotes each argument for a POSIX shell and joins them with
// spaces: a command line for sh -c.
func ShellJoin(args ...string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = shellQuote(a)
	}
	return strings.Join(q, " ")
}
