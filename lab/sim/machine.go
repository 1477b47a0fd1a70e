package sim

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
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
func (m *Machine) Netns() string { return m.place().netns() }

func (m *Machine) place() place { return place{lab: m.lab, name: m.Name, mountNS: m.MountNS} }

// Command returns a command that runs name inside the machine's network
// and mount namespaces. nsenter starts it in /, so give name and paths in
// args absolute (a relative name with a slash is made absolute here; a
// bare name is looked up on PATH).
func (m *Machine) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return m.place().command(ctx, name, args...)
}

// Run runs name in the machine and returns its standard output; the error
// carries its standard error.
func (m *Machine) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	return m.place().run(ctx, name, args...)
}

// Start starts name in the background inside the machine (a daemon); see
// Process. out receives its standard output and error (nil: discarded).
// ctx bounds only the start: the process runs until stopped, killed, or
// the lab goes down.
func (m *Machine) Start(ctx context.Context, out io.Writer, name string, args ...string) (*Process, error) {
	return m.place().start(ctx, out, name, args)
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
	for _, p := range MountPoints(string(data)) {
		if strings.HasPrefix(p, "/run/") {
			under = append(under, p)
		}
	}
	slices.Reverse(under) // children before parents
	args := []string{"--mount=" + m.MountNS, "--propagation", "private",
		l.tools.nsenter, "--net=" + netnsPath(m.Netns()), "--",
		l.tools.sh, "-c", mountScript(l.tools), "sh"}
	args = append(args, under...)
	_, err = Output(exec.CommandContext(ctx, l.tools.unshare, args...))
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
