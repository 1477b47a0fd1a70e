package sim

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
)

// HostLinkPeer is the host link's end inside the underlay namespace, a
// port of UnderlayBridge.
const HostLinkPeer = "hostlink"

// HostLink is an opt-in veth from the root network namespace into the
// lab's underlay bridge, so that programs on the host itself (tests, the
// operator's butter) reach the machines' underlay addresses. It is the one
// thing a lab puts in the root namespace: it goes away with the underlay
// namespace when the lab goes down.
type HostLink struct {
	// Name is the link in the root namespace: blab-<lab> (never bt…, the
	// helper's prefix).
	Name string
	// Addr is its address: the underlay's second-to-last host number (the
	// last is the NAT router's).
	Addr netip.Prefix
}

// HostLinkName is the name of lab name's host link.
func HostLinkName(name string) string { return "blab-" + name }

// AddHostLink plugs the root namespace into the underlay. Only one lab per
// underlay prefix can have one, since the root namespace routes the
// prefix to it.
func (l *Lab) AddHostLink(ctx context.Context) (_ *HostLink, err error) {
	h := &HostLink{Name: HostLinkName(l.Name), Addr: HostAddr(l.Underlay, hostCount(l.Underlay)-1)}
	wrap := func(err error) error { return fmt.Errorf("lab %q: host link %s: %w", l.Name, h.Name, err) }
	if _, err := net.InterfaceByName(h.Name); err == nil {
		return nil, wrap(fmt.Errorf("already exists"))
	}
	mtu := strconv.Itoa(l.MTU)
	if err := l.tools.runIP(ctx, "link", "add", h.Name, "mtu", mtu, "type", "veth",
		"peer", "name", HostLinkPeer, "mtu", mtu, "netns", l.UnderlayNetns()); err != nil {
		return nil, wrap(err)
	}
	defer func() {
		if err != nil {
			_ = l.tools.runIP(context.WithoutCancel(ctx), "link", "del", h.Name)
		}
	}()
	if err := l.tools.runIP(ctx, "-n", l.UnderlayNetns(), "link", "set", HostLinkPeer, "master", UnderlayBridge, "up"); err != nil {
		return nil, wrap(err)
	}
	// No IPv6 chatter on the underlay (which is IPv4 only); the knob is
	// missing when the host has IPv6 off, which is as good.
	_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+h.Name+"/disable_ipv6", []byte("1\n"), 0o644)
	if err := l.tools.runIP(ctx, "addr", "add", h.Addr.String(), "dev", h.Name); err != nil {
		return nil, wrap(err)
	}
	if err := l.tools.runIP(ctx, "link", "set", h.Name, "up"); err != nil {
		return nil, wrap(err)
	}
	return h, nil
}

// RemoveHostLink removes the host link; it tolerates one already gone.
func (l *Lab) RemoveHostLink(ctx context.Context) error {
	name := HostLinkName(l.Name)
	if _, err := net.InterfaceByName(name); err != nil {
		return nil
	}
	if err := l.tools.runIP(ctx, "link", "del", name); err != nil {
		return fmt.Errorf("lab %q: remove host link: %w", l.Name, err)
	}
	return nil
}
