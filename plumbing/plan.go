package plumbing

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/butter-cloud/butter/helperapi"
)

// Overheads of each layer, in bytes, for the MTU arithmetic.
const (
	// WireGuardOverhead is what WireGuard adds over an IPv6 underlay
	// (40 IPv6 + 8 UDP + 32 WireGuard), so one MTU fits both families.
	WireGuardOverhead = 80
	// GretapOverhead is outer IPv4 20 + GRE 4 + key 4 + inner Ethernet 14.
	GretapOverhead = 42
	// VXLANOverhead is outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14.
	VXLANOverhead = 50
)

// WireGuardMTU is the WireGuard device's MTU: the spec's override, or the
// uplink's MTU less WireGuard's overhead.
func WireGuardMTU(m helperapi.Mesh, uplinkMTU int) int {
	if m.MTU != 0 {
		return m.MTU
	}
	if uplinkMTU <= 0 {
		uplinkMTU = 1500
	}
	return uplinkMTU - WireGuardOverhead
}

// NetworkMTU is the MTU of every port of a network's bridge, for a tunnel
// kind riding on WireGuard at wgMTU.
func NetworkMTU(tunnel string, wgMTU int) int {
	if tunnel == helperapi.TunnelGretap {
		return wgMTU - GretapOverhead
	}
	return wgMTU - VXLANOverhead
}

// machine is what the plan needs to know of the machine itself.
type machine struct {
	Uplink    string // the link towards the peers and the internet
	UplinkMTU int
	Gretap    bool // the kernel can make gretap links
}

// plan is the desired state of a machine for a spec.
type plan struct {
	// Uplink is the machine's uplink, where egress leaves.
	Uplink       string
	WireGuardMTU int
	Links        []Link
	Networks     []helperapi.NetworkReport
}

func resolveTunnel(kind string, m machine) string {
	switch kind {
	case helperapi.TunnelGretap, helperapi.TunnelVXLAN:
		return kind
	}
	if m.Gretap {
		return helperapi.TunnelGretap
	}
	return helperapi.TunnelVXLAN
}

// makePlan computes every link spec asks of this machine. The spec must be
// valid.
func makePlan(spec helperapi.Spec, m machine) plan {
	wgMTU := WireGuardMTU(spec.Mesh, m.UplinkMTU)
	self := spec.Mesh.Address.Addr()
	mesh := spec.Mesh.Address.Masked()
	var routes []netip.Prefix
	peers := map[string]helperapi.Peer{}
	for _, p := range spec.Peers {
		peers[p.Name] = p
		for _, a := range p.AllowedIPs {
			if !mesh.Contains(a.Addr()) || a.Bits() < mesh.Bits() {
				routes = append(routes, a)
			}
		}
	}
	p := plan{WireGuardMTU: wgMTU, Uplink: m.Uplink}
	p.Links = append(p.Links, Link{
		Name: WireGuardName, Kind: KindWireGuard, MTU: wgMTU, Up: true,
		Alias: "butter mesh", Addrs: []netip.Prefix{spec.Mesh.Address}, Routes: routes,
	})
	for _, n := range spec.Networks {
		tunnel := resolveTunnel(n.Tunnel, m)
		mtu := NetworkMTU(tunnel, wgMTU)
		br := BridgeName(n.ID)
		rep := helperapi.NetworkReport{Name: n.Name, ID: n.ID, Tunnel: tunnel, MTU: mtu, Bridge: br, Ports: []string{}, Egress: n.Egress}
		bridge := Link{Name: br, Kind: KindBridge, MTU: mtu, Up: true, Alias: "butter network " + n.Name}
		// The distributed gateway: every member holds the same address
		// and MAC on its own bridge; the bridge filter keeps its frames
		// and its ARP off the tunnels, so each VM talks to its own
		// machine's gateway.
		if gw := helperapi.GatewayAddr(n.Subnet); gw.IsValid() {
			bridge.Addrs = []netip.Prefix{netip.PrefixFrom(gw, n.Subnet.Bits())}
			bridge.MAC = helperapi.GatewayMAC(n.ID).String()
			rep.Gateway = gw
		}
		p.Links = append(p.Links, bridge)
		switch tunnel {
		case helperapi.TunnelGretap:
			for _, pn := range n.Peers {
				peer := peers[pn]
				name := GretapName(n.ID, peer.MeshIP)
				rep.Ports = append(rep.Ports, name)
				p.Links = append(p.Links, Link{
					Name: name, Kind: KindGretap, MTU: mtu, Master: br, Isolated: true, Up: true,
					Alias: fmt.Sprintf("butter network %s to %s", n.Name, pn),
					Key:   uint32(n.ID), Local: self, Remote: peer.MeshIP,
				})
			}
		case helperapi.TunnelVXLAN:
			name := VXLANName(n.ID)
			rep.Ports = append(rep.Ports, name)
			var fdb []netip.Addr
			for _, pn := range n.Peers {
				fdb = append(fdb, peers[pn].MeshIP)
			}
			slices.SortFunc(fdb, netip.Addr.Compare)
			// Learning stays on: the spec gives the peers (the flood
			// list) but not where each VM's MAC address lives, and without
			// learning every frame would go to every peer. Only members
			// can inject frames to learn from (the firewall), and a member
			// that lies about a MAC address would, with learning off, get
			// every frame anyway.
			p.Links = append(p.Links, Link{
				Name: name, Kind: KindVXLAN, MTU: mtu, Master: br, Up: true,
				Alias: "butter network " + n.Name,
				Key:   uint32(n.ID), Local: self, Dev: WireGuardName, Port: VXLANPort, FDB: fdb, Learning: true,
			})
		}
		p.Networks = append(p.Networks, rep)
	}
	return p
}

// linkTable is the kernel's table of links, as far as the helper needs it.
type linkTable interface {
	// Links lists the links whose names carry Prefix.
	Links(ctx context.Context) ([]Link, error)
	// Add creates a link with its identity; Set then settles the rest.
	Add(ctx context.Context, l Link) error
	// Set changes have's settable attributes to want's.
	Set(ctx context.Context, have, want Link) error
	// Delete removes a link; one already gone is not an error.
	Delete(ctx context.Context, l Link) error
}

// converge changes t until its links match want and returns what it
// changed. It works in passes, since replacing a device can take the links
// that ride on it along; each pass adds before it deletes.
func converge(ctx context.Context, t linkTable, want []Link) ([]Change, error) {
	var done []Change
	for pass := 0; pass < 3; pass++ {
		have, err := t.Links(ctx)
		if err != nil {
			return done, err
		}
		changes := diff(want, have)
		if len(changes) == 0 {
			return done, nil
		}
		haveBy := map[string]Link{}
		for _, h := range have {
			haveBy[h.Name] = h
		}
		var errs []error
		// Links replaced in this pass: what rides on them (a VXLAN on its
		// device, a port on its bridge) may have gone with them, so it is
		// read again in the next pass instead of changed from stale facts.
		replaced := map[string]bool{}
		for _, c := range changes {
			if err := ctx.Err(); err != nil {
				return done, err
			}
			if c.Op != OpDelete && (replaced[c.Link.Dev] || replaced[c.Link.Master]) {
				continue
			}
			if err := step(ctx, t, c, haveBy[c.Link.Name]); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", c, err))
				continue
			}
			done = append(done, c)
			if c.Op == OpReplace {
				replaced[c.Link.Name] = true
			}
		}
		if err := errors.Join(errs...); err != nil {
			return done, err
		}
	}
	have, err := t.Links(ctx)
	if err != nil {
		return done, err
	}
	if left := diff(want, have); len(left) > 0 {
		return done, fmt.Errorf("links did not settle after 3 passes; still to do: %s", left[0])
	}
	return done, nil
}

func step(ctx context.Context, t linkTable, c Change, have Link) error {
	switch c.Op {
	case OpDelete:
		return t.Delete(ctx, c.Link)
	case OpSet:
		return t.Set(ctx, have, c.Link)
	case OpReplace:
		if err := t.Delete(ctx, have); err != nil {
			return err
		}
		fallthrough
	case OpAdd:
		if err := t.Add(ctx, c.Link); err != nil {
			return err
		}
		return t.Set(ctx, Link{Name: c.Link.Name, Kind: c.Link.Kind}, c.Link)
	}
	return fmt.Errorf("unknown change %q", c.Op)
}
