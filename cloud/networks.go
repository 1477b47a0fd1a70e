package cloud

import (
	"context"
	"fmt"
	"maps"
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
	prev, next, n, err := c.networkCreation(nn)
	if err != nil {
		return inventory.Network{}, Outcome{}, err
	}
	out, err := c.change(ctx, prev, next, nil, steps)
	if err != nil {
		return inventory.Network{}, Outcome{}, err
	}
	return n, out, nil
}

// DryRunCreateNetwork is what CreateNetwork would do, changing nothing.
func (c *Cloud) DryRunCreateNetwork(ctx context.Context, nn NewNetwork) (inventory.Network, DryRun, error) {
	prev, next, n, err := c.networkCreation(nn)
	if err != nil {
		return inventory.Network{}, DryRun{}, err
	}
	d, err := c.dryRunChange(ctx, prev, next, nil)
	return n, d, err
}

// networkCreation is the inventory as it is and as CreateNetwork makes
// it, with the new network.
func (c *Cloud) networkCreation(nn NewNetwork) (prev, next *inventory.Inventory, _ inventory.Network, err error) {
	prev, err = c.Inventory()
	if err != nil {
		return nil, nil, inventory.Network{}, err
	}
	if err := helperapi.CheckName("network", nn.Name); err != nil {
		return nil, nil, inventory.Network{}, err
	}
	if _, ok := prev.Network(nn.Name); ok {
		return nil, nil, inventory.Network{}, fmt.Errorf("network %q exists; remove it first or pick another name", nn.Name)
	}
	n := inventory.Network{Name: nn.Name, Subnet: nn.Subnet, Tunnel: nn.Tunnel, Machines: slices.Clone(nn.Machines), Egress: nn.Egress}
	if n.Tunnel == "" {
		n.Tunnel = helperapi.TunnelAuto
	}
	if !n.Subnet.IsValid() {
		if n.Subnet, err = prev.SuggestSubnet(); err != nil {
			return nil, nil, inventory.Network{}, err
		}
	}
	if len(n.Machines) == 0 {
		n.Machines = machineNames(prev)
	}
	if len(n.Machines) == 0 {
		return nil, nil, inventory.Network{}, fmt.Errorf("network %q: the cloud has no machines yet; add one with `butter machine add`", n.Name)
	}
	if n.ID, err = prev.NextNetworkID(); err != nil {
		return nil, nil, inventory.Network{}, err
	}
	next = clone(prev)
	next.Networks = append(next.Networks, n)
	return prev, next, n, nil
}

// SetEgress turns network name's egress on or off: a new generation, as
// any change; members that are away catch up when they return. Setting
// what the network already has changes nothing and contacts no machine.
func (c *Cloud) SetEgress(ctx context.Context, name string, on bool, steps func(Step)) (Outcome, error) {
	prev, next, err := c.egressSetting(name, on)
	if err != nil || next == nil {
		return Outcome{}, err
	}
	return c.change(ctx, prev, next, nil, steps)
}

// DryRunSetEgress is what SetEgress would do, changing nothing.
func (c *Cloud) DryRunSetEgress(ctx context.Context, name string, on bool) (DryRun, error) {
	prev, next, err := c.egressSetting(name, on)
	if err != nil || next == nil {
		return DryRun{}, err
	}
	return c.dryRunChange(ctx, prev, next, nil)
}

// egressSetting is the inventory as it is and as SetEgress makes it; next
// is nil when nothing changes.
func (c *Cloud) egressSetting(name string, on bool) (prev, next *inventory.Inventory, err error) {
	prev, err = c.Inventory()
	if err != nil {
		return nil, nil, err
	}
	n, ok := prev.Network(name)
	if !ok {
		return nil, nil, fmt.Errorf("no network %q; `butter network list` shows them", name)
	}
	if n.Egress == on {
		return prev, nil, nil
	}
	next = clone(prev)
	m, _ := next.Network(name)
	m.Egress = on
	return prev, next, nil
}

// RemoveNetwork takes a network off its machines; members that are away
// drop it when they return. A network with VMs on it stays: remove them
// first.
func (c *Cloud) RemoveNetwork(ctx context.Context, name string, steps func(Step)) (Outcome, error) {
	prev, next, err := c.networkRemoval(name)
	if err != nil {
		return Outcome{}, err
	}
	return c.change(ctx, prev, next, nil, steps)
}

// DryRunRemoveNetwork is what RemoveNetwork would do, changing nothing.
func (c *Cloud) DryRunRemoveNetwork(ctx context.Context, name string) (DryRun, error) {
	prev, next, err := c.networkRemoval(name)
	if err != nil {
		return DryRun{}, err
	}
	return c.dryRunChange(ctx, prev, next, nil)
}

// networkRemoval is the inventory as it is and as RemoveNetwork makes it.
func (c *Cloud) networkRemoval(name string) (prev, next *inventory.Inventory, err error) {
	prev, err = c.Inventory()
	if err != nil {
		return nil, nil, err
	}
	if _, ok := prev.Network(name); !ok {
		return nil, nil, fmt.Errorf("no network %q; `butter network list` shows them", name)
	}
	var on []string
	for _, v := range prev.VMs {
		if v.Network == name {
			on = append(on, v.Name)
		}
	}
	if len(on) > 0 {
		return nil, nil, fmt.Errorf("network %q still has VMs (%s); remove them first with `butter vm remove`", name, strings.Join(on, ", "))
	}
	next = clone(prev)
	next.Networks = slices.DeleteFunc(next.Networks, func(o inventory.Network) bool { return o.Name == name })
	return prev, next, nil
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
	// Problem says what is wrong with it as built: its machines built it
	// with different MTUs (each derives its own from its uplink), so
	// full-size frames from the larger side are lost on the way.
	Problem string `json:"problem,omitempty"`
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
		mtus := map[int][]string{}
		for _, m := range machines {
			if !slices.Contains(n.Machines, m.Name) {
				continue
			}
			for _, r := range m.Facts.Networks {
				if r.Name == n.Name {
					if ns.MTU == 0 {
						ns.MTU, ns.Tunnel = r.MTU, r.Tunnel
					}
					mtus[r.MTU] = append(mtus[r.MTU], m.Name)
				}
			}
		}
		ns.Problem = mtuProblem(mtus)
		out = append(out, ns)
	}
	return out
}

// mtuProblem describes a network built with different MTUs (machines by
// the MTU they built it with); "" when they agree.
func mtuProblem(mtus map[int][]string) string {
	if len(mtus) < 2 {
		return ""
	}
	sizes := slices.Sorted(maps.Keys(mtus))
	var parts []string
	for _, mtu := range sizes {
		parts = append(parts, fmt.Sprintf("%d on %s", mtu, strings.Join(mtus[mtu], ", ")))
	}
	return fmt.Sprintf("MTU differs across machines (%s): frames larger than %d are lost on the way to %s; "+
		"their uplinks' MTUs differ (butter helper facts on each shows uplink_mtu)",
		strings.Join(parts, "; "), sizes[0], strings.Join(mtus[sizes[0]], ", "))
}
