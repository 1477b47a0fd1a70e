package cloud

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/inventory"
)

// NewNetwork is what `network create` is told.
type NewNetwork struct {
	Name   string
	Subnet netip.Prefix // invalid: a free /24 is proposed
	// Machines are the members; empty: every machine.
	Machines []string
	Tunnel   string // "" = auto
	// Egress lets the network's VMs out to the internet through each
	// member's uplink.
	Egress bool
}

// CreateNetwork records a private network and builds it on its member
// machines, in parallel. Members that are away are pending: they build it
// when they return (Outcome.Behind names them).
func (c *Cloud) CreateNetwork(ctx context.Context, nn NewNetwork, steps func(Step)) (inventory.Network, Outcome, error) {
	prev, err := c.Inventory()
	if err != nil {
		return inventory.Network{}, Outcome{}, err
	}
	if err := helperapi.CheckName("network", nn.Name); err != nil {
		return inventory.Network{}, Outcome{}, err
	}
	if _, ok := prev.Network(nn.Name); ok {
		return inventory.Network{}, Outcome{}, fmt.Errorf("network %q exists; remove it first or pick another name", nn.Name)
	}
	n := inventory.Network{Name: nn.Name, Subnet: nn.Subnet, Tunnel: nn.Tunnel, Machines: slices.Clone(nn.Machines), Egress: nn.Egress}
	if n.Tunnel == "" {
		n.Tunnel = helperapi.TunnelAuto
	}
	if !n.Subnet.IsValid() {
		if n.Subnet, err = prev.SuggestSubnet(); err != nil {
			return inventory.Network{}, Outcome{}, err
		}
	}
	if len(n.Machines) == 0 {
		n.Machines = machineNames(prev)
	}
	if len(n.Machines) == 0 {
		return inventory.Network{}, Outcome{}, fmt.Errorf("network %q: the cloud has no machines yet; add one with `butter machine add`", n.Name)
	}
	if n.ID, err = prev.NextNetworkID(); err != nil {
		return inventory.Network{}, Outcome{}, err
	}
	next := clone(prev)
	next.Networks = append(next.Networks, n)
	out, err := c.change(ctx, prev, next, nil, steps)
	if err != nil {
		return inventory.Network{}, Outcome{}, err
	}
	return n, out, nil
}

// SetEgress turns network name's egress on or off: a new generation, as
// any change; members that are away catch up when they return. Setting
// what the network already has changes nothing and contacts no machine.
func (c *Cloud) SetEgress(ctx context.Context, name string, on bool, steps func(Step)) (Outcome, error) {
	prev, err := c.Inventory()
	if err != nil {
		return Outcome{}, err
	}
	n, ok := prev.Network(name)
	if !ok {
		return Outcome{}, fmt.Errorf("no network %q; `butter network list` shows them", name)
	}
	if n.Egress == on {
		return Outcome{}, nil
	}
	next := clone(prev)
	m, _ := next.Network(name)
	m.Egress = on
	return c.change(ctx, prev, next, nil, steps)
}

// RemoveNetwork takes a network off its machines; members that are away
// drop it when they return. A network with VMs on it stays: remove them
// first.
func (c *Cloud) RemoveNetwork(ctx context.Context, name string, steps func(Step)) (Outcome, error) {
	prev, err := c.Inventory()
	if err != nil {
		return Outcome{}, err
	}
	if _, ok := prev.Network(name); !ok {
		return Outcome{}, fmt.Errorf("no network %q; `butter network list` shows them", name)
	}
	var on []string
	for _, v := range prev.VMs {
		if v.Network == name {
			on = append(on, v.Name)
		}
	}
	if len(on) > 0 {
		return Outcome{}, fmt.Errorf("network %q still has VMs (%s); remove them first with `butter vm remove`", name, strings.Join(on, ", "))
	}
	next := clone(prev)
	next.Networks = slices.DeleteFunc(next.Networks, func(o inventory.Network) bool { return o.Name == name })
	return c.change(ctx, prev, next, nil, steps)
}

// NetworkStatus is a network as the operator sees it.
type NetworkStatus struct {
	Name     string   `json:"name"`
	Subnet   string   `json:"subnet"`
	ID       int      `json:"id"`
	Machines []string `json:"machines"`
	// MTU and Tunnel are as a member machine built them (0 and the
	// requested kind when none answered).
	MTU    int    `json:"mtu"`
	Tunnel string `json:"tunnel"`
	// Gateway is the network's gateway address, held by every member on
	// its bridge ("" for a subnet too small to have one).
	Gateway string `json:"gateway"`
	// Egress: the network's VMs reach the internet through their
	// machine's uplink.
	Egress bool `json:"egress"`
}

// Networks lists the networks; machines (from Machines) fill in the MTU
// and tunnel kind as built.
func Networks(inv *inventory.Inventory, machines []MachineStatus) []NetworkStatus {
	var out []NetworkStatus
	for _, n := range inv.Networks {
		ns := NetworkStatus{Name: n.Name, Subnet: n.Subnet.String(), ID: n.ID,
			Machines: slices.Clone(n.Machines), Tunnel: n.Tunnel, Egress: n.Egress}
		if gw := helperapi.GatewayAddr(n.Subnet); gw.IsValid() {
			ns.Gateway = gw.String()
		}
		if ns.Machines == nil {
			ns.Machines = []string{}
		}
	found:
		for _, m := range machines {
			if !slices.Contains(n.Machines, m.Name) {
				continue
			}
			for _, r := range m.Facts.Networks {
				if r.Name == n.Name {
					ns.MTU, ns.Tunnel = r.MTU, r.Tunnel
					break found
				}
			}
		}
		out = append(out, ns)
	}
	return out
}
