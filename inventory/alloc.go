package inventory

import (
	"fmt"
	"net/netip"
)

// Machine is the machine called name, to read or change in place.
func (inv *Inventory) Machine(name string) (*Machine, bool) {
	for i := range inv.Machines {
		if inv.Machines[i].Name == name {
			return &inv.Machines[i], true
		}
	}
	return nil, false
}

// Network is the network called name, to read or change in place.
func (inv *Inventory) Network(name string) (*Network, bool) {
	for i := range inv.Networks {
		if inv.Networks[i].Name == name {
			return &inv.Networks[i], true
		}
	}
	return nil, false
}

// VM is the VM called name, to read or change in place.
func (inv *Inventory) VM(name string) (*VM, bool) {
	for i := range inv.VMs {
		if inv.VMs[i].Name == name {
			return &inv.VMs[i], true
		}
	}
	return nil, false
}

// NextMeshIP is the lowest address of the mesh prefix that is neither its
// network nor its broadcast address nor any machine's mesh IP.
func (inv *Inventory) NextMeshIP() (netip.Addr, error) {
	p := inv.Mesh.Prefix
	if !p.IsValid() || !p.Addr().Is4() || p.Bits() > 30 {
		return netip.Addr{}, fmt.Errorf("mesh prefix %s: want an IPv4 range of /30 or larger", p)
	}
	taken := map[netip.Addr]bool{}
	for _, m := range inv.Machines {
		taken[m.MeshIP] = true
	}
	if a, ok := firstFree(p, taken, 1); ok {
		return a, nil
	}
	return netip.Addr{}, fmt.Errorf("mesh %s: every address is taken; use a larger mesh prefix", p)
}

// NextNetworkID is the lowest network ID (from 1) no network has.
func (inv *Inventory) NextNetworkID() (int, error) {
	taken := map[int]bool{}
	for _, n := range inv.Networks {
		taken[n.ID] = true
	}
	for id := 1; id <= MaxNetworkID; id++ {
		if !taken[id] {
			return id, nil
		}
	}
	return 0, fmt.Errorf("every network ID up to %d is taken", MaxNetworkID)
}

// NextVMAddress is the lowest free host address of network's subnet. It
// never hands out the subnet's first host address (10.100.1.1 in
// 10.100.1.0/24): that is the network's gateway (helperapi.GatewayAddr),
// which helperapi.CheckVMAddress refuses to a VM.
func (inv *Inventory) NextVMAddress(network string) (netip.Addr, error) {
	n, ok := inv.Network(network)
	if !ok {
		return netip.Addr{}, fmt.Errorf("network %q: no such network in the inventory", network)
	}
	p := n.Subnet
	if !p.IsValid() || !p.Addr().Is4() || p.Bits() > 30 {
		return netip.Addr{}, fmt.Errorf("network %q subnet %s: want an IPv4 range of /30 or larger", network, p)
	}
	taken := map[netip.Addr]bool{}
	for _, v := range inv.VMs {
		taken[v.Address] = true
	}
	if a, ok := firstFree(p, taken, 2); ok {
		return a, nil
	}
	return netip.Addr{}, fmt.Errorf("network %q subnet %s: every address is taken", network, p)
}

// firstFree is the lowest address of p from its skip-th host on (1: the
// first host) that is not taken and is not the broadcast address.
func firstFree(p netip.Prefix, taken map[netip.Addr]bool, skip int) (netip.Addr, bool) {
	p = p.Masked()
	last := lastAddr(p)
	a := p.Addr()
	for range skip {
		a = a.Next()
	}
	for ; a.IsValid() && a.Less(last); a = a.Next() {
		if !taken[a] {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// suggestRange is where SuggestSubnet looks.
var suggestRange = netip.MustParsePrefix("10.100.0.0/16")

// SuggestSubnet is the lowest /24 of 10.100.0.0/16 that overlaps neither the
// mesh nor any network: what a form proposes for a new network.
func (inv *Inventory) SuggestSubnet() (netip.Prefix, error) {
	base := suggestRange.Addr().As4()
	for i := range 256 {
		s := netip.PrefixFrom(netip.AddrFrom4([4]byte{base[0], base[1], byte(i), 0}), 24)
		free := !(inv.Mesh.Prefix.IsValid() && s.Overlaps(inv.Mesh.Prefix))
		for _, n := range inv.Networks {
			if n.Subnet.IsValid() && s.Overlaps(n.Subnet) {
				free = false
				break
			}
		}
		if free {
			return s, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("no free /24 in %s; choose a subnet yourself", suggestRange)
}
