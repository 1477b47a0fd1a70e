package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"
)

// Process is a program started in the background inside a machine or a
// probe. PID is the program's own (nsenter execs it in place), so signals
// reach it and not a wrapper.
type Process struct {
	// Where is the machine or probe it runs in.
	Where string
	// Name and Args are the program and its arguments.
	Name string
	Args []string

	lab          *Lab
	netns, mntns string
	out          io.Writer
	cmd          *exec.Cmd
	done         chan struct{}
	err          error
}

func (l *Lab) start(ctx context.Context, where, netns, mntns string, out io.Writer, name string, args []string) (*Process, error) {
	// Not CommandContext: ctx bounds the start, not the daemon's life.
	cmd := l.tools.nsCommand(context.Background(), netns, mntns, name, args...)
	if out != nil {
		cmd.Stdout, cmd.Stderr = out, out
	} // else /dev/null, not a pipe that dies with this process
	cmd.WaitDelay = time.Second
	// A session of its own: a daemon of the lab outlives the command that
	// started it (`butter lab up`) and its terminal's Ctrl+C and hang-up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	p := &Process{Where: where, Name: name, Args: slices.Clone(args), lab: l, netns: netns, mntns: mntns, out: out, cmd: cmd, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s on %s: %w", name, where, err)
	}
	l.mu.Lock()
	l.procs[p] = true
	l.mu.Unlock()
	go func() {
		p.err = cmd.Wait()
		l.mu.Lock()
		delete(l.procs, p)
		l.mu.Unlock()
		close(p.done)
	}()
	if err := p.waitExec(ctx); err != nil {
		_ = p.Kill()
		return nil, err
	}
	return p, nil
}

// waitExec waits until nsenter has become the program, so that PID names
// the program and signals reach it.
func (p *Process) waitExec(ctx context.Context) error {
	nsenter, err := filepath.EvalSymlinks(p.lab.tools.nsenter)
	if err != nil {
		nsenter = p.lab.tools.nsenter
	}
	exe := filepath.Join("/proc", strconv.Itoa(p.PID()), "exe")
	for {
		if target, err := os.Readlink(exe); err == nil && target != nsenter {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("start %s on %s: exited at once: %v", p.Name, p.Where, p.err)
		case <-ctx.Done():
			return fmt.Errorf("start %s on %s: %w", p.Name, p.Where, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// PID is the program's process ID.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Done is closed when the program has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is how the program exited; valid once Done is closed.
func (p *Process) Err() error {
	<-p.done
	return p.err
}

// Signal sends sig to the program.
func (p *Process) Signal(sig os.Signal) error {
	select {
	case <-p.done:
		return fmt.Errorf("signal %s on %s: already exited", p.Name, p.Where)
	default:
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal %s on %s: %w", p.Name, p.Where, err)
	}
	return nil
}

// Kill kills the program with SIGKILL and waits until it is gone.
func (p *Process) Kill() error {
	if err := p.Signal(syscall.SIGKILL); err != nil {
		select {
		case <-p.done:
			return nil
		default:
			return err
		}
	}
	<-p.done
	return nil
}

// Stop asks the program to exit with SIGTERM and waits; when ctx ends
// first it kills it.
func (p *Process) Stop(ctx context.Context) error {
	_ = p.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return p.Kill()
	}
}

// Restart kills the program and starts it again the same way, in the same
// namespaces, writing to the same output. It returns the new process.
func (p *Process) Restart(ctx context.Context) (*Process, error) {
	if err := p.Kill(); err != nil {
		return nil, err
	}
	return p.lab.start(ctx, p.Where, p.netns, p.mntns, p.out, p.Name, p.Args)
}
