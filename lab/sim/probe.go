package sim

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
)

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
func (p *Probe) Netns() string { return p.place().netns() }

func (p *Probe) place() place { return place{lab: p.lab, name: p.Name, kind: "probe "} }

// Command returns a command that runs name in the probe's network
// namespace (the host's mount namespace).
func (p *Probe) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return p.place().command(ctx, name, args...)
}

// Run runs name in the probe and returns its standard output.
func (p *Probe) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	return p.place().run(ctx, name, args...)
}

// Start starts name in the background in the probe; see Machine.Start.
func (p *Probe) Start(ctx context.Context, out io.Writer, name string, args ...string) (*Process, error) {
	return p.place().start(ctx, out, name, args)
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

// Probes returns the probes added so far.
func (l *Lab) Probes() []*Probe {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.probes)
}

// AddProbe makes a plain network namespace <lab>-p<k> with eth0 at addr
// and the given MTU, whose veth peer prb<k> is a port of bridge inside
// machine m. The bridge must exist.
func (l *Lab) AddProbe(ctx context.Context, m *Machine, bridge string, addr netip.Prefix, mtu int) (_ *Probe, err error) {
	if m == nil || m.lab != l {
		return nil, fmt.Errorf("lab %q: add probe: machine is not this lab's", l.Name)
	}
	if mtu < 68 || mtu > 65535 {
		return nil, fmt.Errorf("lab %q: add probe on %s %s: MTU %d out of range", l.Name, m.Name, bridge, mtu)
	}
	l.mu.Lock()
	k := len(l.probes) + 1
	p := &Probe{
		Name:    fmt.Sprintf("p%d", k),
		Machine: m,
		Bridge:  bridge,
		Port:    fmt.Sprintf("prb%d", k),
		Addr:    addr,
		MTU:     mtu,
		lab:     l,
	}
	l.probes = append(l.probes, p)
	l.mu.Unlock()

	ns := p.Netns()
	wrap := func(err error) error {
		return fmt.Errorf("lab %q: add probe %s on %s %s: %w", l.Name, p.Name, m.Name, bridge, err)
	}
	if err := l.addNetns(ctx, ns, true); err != nil {
		return nil, wrap(err)
	}
	if err := l.tools.runIP(ctx, "-n", ns, "link", "add", "eth0", "mtu", strconv.Itoa(mtu), "type", "veth",
		"peer", "name", p.Port, "mtu", strconv.Itoa(mtu), "netns", m.Netns()); err != nil {
		return nil, wrap(err)
	}
	if err := l.tools.runIP(ctx, "-n", ns, "addr", "add", addr.String(), "dev", "eth0"); err != nil {
		return nil, wrap(err)
	}
	if err := l.tools.runIP(ctx, "-n", ns, "link", "set", "eth0", "up"); err != nil {
		return nil, wrap(err)
	}
	if err := p.Attach(ctx); err != nil {
		return nil, err
	}
	return p, nil
}
