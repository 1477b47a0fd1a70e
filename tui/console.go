package tui

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	tea "charm.land/bubbletea/v2"
	"github.com/muesli/cancelreader" // reads the terminal so a detach can stop the read: no keystroke is lost to a reader left behind
	"golang.org/x/term"

	"github.com/butter-cloud/butter/cloud"
)

// Escaper passes a person's typing to a console and notices the escapes:
// Ctrl+] anywhere, or ~. at the start of a line (~~ sends one ~).
type Escaper struct {
	atLineStart bool
	tilde       bool // a ~ at the start of a line, held back
}

// NewEscaper starts at the beginning of a line.
func NewEscaper() *Escaper { return &Escaper{atLineStart: true} }

// Filter returns what to send and whether the user asked to detach.
func (e *Escaper) Filter(in []byte) (out []byte, detach bool) {
	for _, b := range in {
		switch {
		case b == 0x1d: // Ctrl+]
			return out, true
		case e.tilde:
			e.tilde = false
			if b == '.' {
				return out, true
			}
			out = append(out, '~')
			if b == '~' {
				e.atLineStart = false
				continue
			}
		case e.atLineStart && b == '~':
			e.tilde = true
			continue
		}
		out = append(out, b)
		e.atLineStart = b == '\r' || b == '\n'
	}
	return out, false
}

// ForwardInput copies a person's typing from in to console through an
// Escaper until they detach (true), in ends or fails (false and the read
// error, io.EOF at the end of a script), or console takes no more (false
// and nil: the console has gone). The dashboard's console and the CLI's
// both use it.
func ForwardInput(console io.Writer, in io.Reader) (detached bool, err error) {
	e := NewEscaper()
	buf := make([]byte, 4096)
	for {
		n, err := in.Read(buf)
		send, detach := e.Filter(buf[:n])
		if len(send) > 0 {
			if _, werr := console.Write(send); werr != nil {
				return false, nil
			}
		}
		if detach {
			return true, nil
		}
		if err != nil {
			return false, err
		}
	}
}

// consoleSession is a VM's console as a tea.ExecCommand: the program lets
// go of the terminal, Run attaches in raw mode until an escape or the
// console's end, and the program takes the terminal back and repaints.
type consoleSession struct {
	vm      string
	attach  func(in io.Reader, out io.Writer) error // the console, under the program's context
	stdin   io.Reader
	stdout  io.Writer
	stderr  io.Writer
	detach  func() // stops attach
	stopped chan struct{}
}

func (c *consoleSession) SetStdin(r io.Reader)  { c.stdin = r }
func (c *consoleSession) SetStdout(w io.Writer) { c.stdout = w }
func (c *consoleSession) SetStderr(w io.Writer) { c.stderr = w }

func (c *consoleSession) Run() error {
	if f, ok := c.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		old, err := term.MakeRaw(int(f.Fd()))
		if err != nil {
			return fmt.Errorf("terminal raw mode: %w", err)
		}
		defer term.Restore(int(f.Fd()), old)
	}
	fmt.Fprintf(c.stdout, "\x1b[2J\x1b[H\x1b[?25hConsole of %s. Ctrl+] or ~. at the start of a line returns to the dashboard.\r\n", c.vm)
	in := c.stdin
	var cr cancelreader.CancelReader
	if r, err := cancelreader.NewReader(c.stdin); err == nil {
		cr, in = r, r
	}
	pr, pw := io.Pipe()
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		defer pw.Close()
		if detached, _ := ForwardInput(pw, in); detached {
			c.detach()
		}
	}()
	err := c.attach(pr, c.stdout)
	pr.Close()
	if cr != nil {
		cr.Cancel()
		<-readerDone // nothing may read the terminal once the dashboard has it back
		cr.Close()
	}
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

type consoleDoneMsg struct {
	vm  string
	err error
}

// console hands the terminal to the VM's console.
func (m *Model) console(vm string) tea.Cmd {
	if r := m.data.vms[vm]; r != nil && r.State != "running" && r.State != "" {
		m.setStatus(fmt.Sprintf("console: vm %s is %s; start it first (s)", vm, r.State), true)
		return nil
	}
	cl := m.cl
	return m.run(func(ctx context.Context) tea.Msg {
		cctx, cancel := context.WithCancel(ctx)
		s := &consoleSession{vm: vm, detach: cancel}
		s.attach = func(in io.Reader, out io.Writer) error {
			defer cancel()
			return attach(cctx, cl, vm, in, out)
		}
		return tea.Exec(s, func(err error) tea.Msg { return consoleDoneMsg{vm: vm, err: err} })()
	})
}

func attach(ctx context.Context, cl *cloud.Cloud, vm string, in io.Reader, out io.Writer) error {
	return cl.Console(ctx, vm, in, out)
}

// handedBack says how a hand-off of the terminal (ssh, a console) ended:
// what failed and why, or done.
func (m *Model) handedBack(what, done string, err error) {
	if err != nil {
		m.setStatus(fmt.Sprintf("%s: %v", what, err), true)
		return
	}
	m.setStatus(done, false)
}
