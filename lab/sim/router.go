package sim

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os/exec"
	"strconv"
)

// RouterLAN is the bridge, inside the router's namespace, that the
// machines behind NAT are plugged into.
const RouterLAN = "lan0"

// Router is a NAT router: a network namespace whose eth0 is on the
// underlay and which masquerades its LAN bridge, behind which machines sit
// as they would behind a home or cloud NAT.
type Router struct {
	// Name is r1.
	Name string
	// Addr is eth0's underlay address; LAN is the router's own address on
	// its LAN.
	Addr netip.Prefix
	LAN  netip.Prefix

	lab *Lab
}

// Netns is the name of the router's network namespace.
func (r *Router) Netns() string { return r.place().netns() }

func (r *Router) place() place { return place{lab: r.lab, name: r.Name, kind: "router "} }

// Command returns a command that runs name in the router's network
// namespace (iptables, conntrack, tcpdump).
func (r *Router) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return r.place().command(ctx, name, args...)
}

// Run runs name in the router and returns its standard output.
func (r *Router) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	return r.place().run(ctx, name, args...)
}

// Start starts name in the background in the router; see Machine.Start.
func (r *Router) Start(ctx context.Context, out io.Writer, name string, args ...string) (*Process, error) {
	return r.place().start(ctx, out, name, args)
}

func (l *Lab) makeRouter(ctx context.Context, r *Router) error {
	wrap := func(err error) error { return fmt.Errorf("lab %q router %s: %w", l.Name, r.Name, err) }
	iptables, err := LookPath("iptables")
	if err != nil {
		return wrap(fmt.Errorf("machines behind NAT need iptables (package iptables): %w", err))
	}
	ns := r.Netns()
	if err := l.addNetns(ctx, ns, true); err != nil {
		return wrap(err)
	}
	mtu := strconv.Itoa(l.MTU)
	for _, args := range [][]string{
		{"-n", l.UnderlayNetns(), "link", "add", r.Name, "mtu", mtu, "type", "veth", "peer", "name", "eth0", "mtu", mtu, "netns", ns},
		{"-n", l.UnderlayNetns(), "link", "set", r.Name, "master", UnderlayBridge, "up"},
		{"-n", ns, "addr", "add", r.Addr.String(), "dev", "eth0"},
		{"-n", ns, "link", "set", "eth0", "up"},
		{"-n", ns, "link", "add", RouterLAN, "mtu", mtu, "type", "bridge"},
		{"-n", ns, "addr", "add", r.LAN.String(), "dev", RouterLAN},
		{"-n", ns, "link", "set", RouterLAN, "up"},
	} {
		if err := l.tools.runIP(ctx, args...); err != nil {
			return wrap(err)
		}
	}
	if err := l.sysctl(ctx, netnsPath(ns), "", "net.ipv4.ip_forward=1"); err != nil {
		return wrap(err)
	}
	if _, err := r.Run(ctx, iptables, "-t", "nat", "-A", "POSTROUTING", "-s", r.LAN.Masked().String(), "-o", "eth0", "-j", "MASQUERADE"); err != nil {
		return wrap(err)
	}
	return nil
}

// ForwardPort makes the router forward TCP port on its underlay address to
// to:toPort on its LAN, as a port forward on a home router does (the lab's
// operator reaches machines behind NAT over SSH this way).
func (r *Router) ForwardPort(ctx context.Context, port int, to netip.Addr, toPort int) error {
	iptables, err := LookPath("iptables")
	if err != nil {
		return err
	}
	if _, err := r.Run(ctx, iptables, "-t", "nat", "-A", "PREROUTING", "-i", "eth0", "-p", "tcp",
		"--dport", strconv.Itoa(port), "-j", "DNAT", "--to-destination", netip.AddrPortFrom(to, uint16(toPort)).String()); err != nil {
		return fmt.Errorf("lab %q router %s: forward port %d: %w", r.lab.Name, r.Name, port, err)
	}
	return nil
}
