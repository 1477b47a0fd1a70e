package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Machine is a simulated machine: a network namespace with eth0 on the
// underlay, and a persistent private mount namespace with its own /run,
// /var/lib/butter, libvirt folders and a sysfs showing its own links.
type Machine struct {
	// Name is m1, m2, …
	Name string
	// Index is the machine's number, its host number on the underlay.
	Index int
	// Addr is eth0's address: on the underlay, or on the router's LAN for
	// a machine behind NAT.
	Addr netip.Prefix
	// Router is the NAT router the machine sits behind, nil if it is on
	// the underlay itself.
	Router *Router
	// MountNS is the file its mount namespace is bound to.
	MountNS string

	lab *Lab
}

// Netns is the name of the machine's network namespace.
func (m *Machine) Netns() string { return m.lab.Name + "-" + m.Name }

// Command returns a command that runs name inside the machine's network
// and mount namespaces. nsenter starts it in /, so give name and paths in
// args absolute (a relative name with a slash is made absolute here; a
// bare name is looked up on PATH).
func (m *Machine) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return m.lab.tools.nsCommand(ctx, netnsPath(m.Netns()), m.MountNS, name, args...)
}

// Run runs name in the machine and returns its standard output; the error
// carries its standard error.
func (m *Machine) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	out, err := output(m.Command(ctx, name, args...))
	if err != nil {
		return out, fmt.Errorf("on %s: %w", m.Name, err)
	}
	return out, nil
}

// Start starts name in the background inside the machine (a daemon); see
// Process. out receives its standard output and error (nil: discarded).
// ctx bounds only the start: the process runs until stopped, killed, or
// the lab goes down.
func (m *Machine) Start(ctx context.Context, out io.Writer, name string, args ...string) (*Process, error) {
	return m.lab.start(ctx, m.Name, netnsPath(m.Netns()), m.MountNS, out, name, args)
}

// addMachine makes machine i with eth0 at addr, on the underlay or, if r
// is not nil, on r's LAN.
func (l *Lab) addMachine(ctx context.Context, i int, addr netip.Prefix, r *Router) (*Machine, error) {
	m := &Machine{
		Name:   fmt.Sprintf("m%d", i),
		Index:  i,
		Addr:   addr,
		Router: r,
		lab:    l,
	}
	// Where eth0's other end goes: the underlay bridge, or the router's LAN.
	upNS, upBridge := l.UnderlayNetns(), UnderlayBridge
	if r != nil {
		upNS, upBridge = r.Netns(), RouterLAN
	}
	m.MountNS = filepath.Join(l.Dir, "ns", m.Name)
	wrap := func(err error) error { return fmt.Errorf("lab %q machine %s: %w", l.Name, m.Name, err) }
	ns := m.Netns()
	if err := l.addNetns(ctx, ns, false); err != nil {
		return nil, wrap(err)
	}
	mtu := strconv.Itoa(l.MTU)
	// The far end is named after the machine; the machine's end is made
	// as eth0 right in its fresh namespace, which has no eth0 yet.
	if err := l.tools.runIP(ctx, "-n", upNS, "link", "add", m.Name, "mtu", mtu, "type", "veth",
		"peer", "name", MachineUplink, "mtu", mtu, "netns", ns); err != nil {
		return nil, wrap(err)
	}
	if err := l.tools.runIP(ctx, "-n", upNS, "link", "set", m.Name, "master", upBridge, "up"); err != nil {
		return nil, wrap(err)
	}
	if err := l.makeMountNS(ctx, m); err != nil {
		return nil, wrap(err)
	}
	// The lab's underlay is IPv4 only: no IPv6 chatter on captures.
	if err := l.sysctl(ctx, netnsPath(ns), "", "net.ipv6.conf."+MachineUplink+".disable_ipv6=1"); err != nil {
		return nil, wrap(err)
	}
	if err := l.tools.runIP(ctx, "-n", ns, "addr", "add", m.Addr.String(), "dev", MachineUplink); err != nil {
		return nil, wrap(err)
	}
	if err := l.tools.runIP(ctx, "-n", ns, "link", "set", MachineUplink, "up"); err != nil {
		return nil, wrap(err)
	}
	if r != nil {
		if err := l.tools.runIP(ctx, "-n", ns, "route", "add", "default", "via", r.LAN.Addr().String()); err != nil {
			return nil, wrap(err)
		}
	}
	return m, nil
}

// makeMountNS makes the machine's persistent mount namespace: unshare
// binds it to m.MountNS (in the lab's private folder) and, inside it and
// inside the machine's network namespace, a script drops the host's
// mounts under /run (other labs' namespace files among them, which would
// otherwise be kept alive) and mounts the machine's own folders and sysfs.
func (l *Lab) makeMountNS(ctx context.Context, m *Machine) error {
	if err := os.WriteFile(m.MountNS, nil, 0o600); err != nil {
		return err
	}
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var under []string
	for _, p := range mountPoints(string(data)) {
		if strings.HasPrefix(p, "/run/") {
			under = append(under, p)
		}
	}
	slices.Reverse(under) // children before parents
	args := []string{"--mount=" + m.MountNS, "--propagation", "private",
		l.tools.nsenter, "--net=" + netnsPath(m.Netns()), "--",
		l.tools.sh, "-c", mountScript(l.tools), "sh"}
	args = append(args, under...)
	_, err = output(exec.CommandContext(ctx, l.tools.unshare, args...))
	return err
}

// mountScript is run by sh inside a new machine's namespaces, with the
// host's mount points under /run as arguments.
func mountScript(t tools) string {
	var b strings.Builder
	b.WriteString("set -e\n")
	fmt.Fprintf(&b, "for m do %s --lazy \"$m\" 2>/dev/null || true; done\n", t.umount)
	for _, dir := range MachineMounts {
		fmt.Fprintf(&b, "%s -t tmpfs -o mode=0755 butter-lab %s\n", t.mount, dir)
	}
	fmt.Fprintf(&b, "%s -t sysfs butter-lab /sys\n", t.mount)
	return b.String()
}

// Probe is a plain network namespace standing in for a VM: its eth0 is a
// veth whose peer (Port) is a port of Bridge inside Machine.
type Probe struct {
	// Name is p1, p2, … (unique in the lab).
	Name string
	// Machine and Bridge are where the probe is plugged in.
	Machine *Machine
	Bridge  string
	// Port is the probe's veth end inside the machine.
	Port string
	// Addr is the probe's address on eth0; MTU is eth0's and Port's MTU.
	Addr netip.Prefix
	MTU  int

	lab *Lab
}

// Netns is the name of the probe's network namespace.
func (p *Probe) Netns() string { return p.lab.Name + "-" + p.Name }

// Command returns a command that runs name in the probe's network
// namespace (the host's mount namespace).
func (p *Probe) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return p.lab.tools.nsCommand(ctx, netnsPath(p.Netns()), "", name, args...)
}

// Run runs name in the probe and returns its standard output.
func (p *Probe) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	out, err := output(p.Command(ctx, name, args...))
	if err != nil {
		return out, fmt.Errorf("on probe %s: %w", p.Name, err)
	}
	return out, nil
}

// Start starts name in the background in the probe; see Machine.Start.
func (p *Probe) Start(ctx context.Context, out io.Writer, name string, args ...string) (*Process, error) {
	return p.lab.start(ctx, p.Name, netnsPath(p.Netns()), "", out, name, args)
}

// Attach (re)plugs the probe's port into its bridge with the probe's MTU,
// for instance after the bridge was deleted and made again.
func (p *Probe) Attach(ctx context.Context) error {
	err := p.lab.tools.runIP(ctx, "-n", p.Machine.Netns(), "link", "set", p.Port,
		"mtu", strconv.Itoa(p.MTU), "master", p.Bridge, "up")
	if err != nil {
		return fmt.Errorf("lab %q: plug probe %s into %s %s: %w", p.lab.Name, p.Name, p.Machine.Name, p.Bridge, err)
	}
	return nil
}

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

func killPID(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }
