package helperapi

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
)

// GatewayAddr is a network's gateway address: its subnet's first host
// address (10.100.1.1 in 10.100.1.0/24). Every member machine holds it on
// its own bridge (a distributed gateway, as Incus and OpenStack DVR do), so
// a VM always talks to its own machine's gateway; IPAM never hands it to a
// VM. Invalid for a network without an IPv4 subnet of /30 or larger.
func GatewayAddr(subnet netip.Prefix) netip.Addr {
	if !subnet.IsValid() || !subnet.Addr().Is4() || subnet.Bits() > 30 {
		return netip.Addr{}
	}
	return subnet.Masked().Addr().Next()
}

// GatewayMAC is the gateway's MAC address on every member machine of
// network id: locally administered, unicast, 02:62:74 ("bt") and the id's
// low 24 bits, so it is the same on each machine and distinct per network.
func GatewayMAC(id int) net.HardwareAddr {
	return net.HardwareAddr{0x02, 0x62, 0x74, byte(id >> 16), byte(id >> 8), byte(id)}
}

// CheckVMAddress is the one rule for a VM's address on network, whose
// subnet is subnet: an IPv4 host address inside it that is neither the
// subnet's network nor its broadcast address nor the gateway's (every
// member machine holds that one on its bridge). A network without a subnet
// takes any IPv4 address.
func CheckVMAddress(network string, subnet netip.Prefix, a netip.Addr) error {
	switch {
	case !a.IsValid():
		return fmt.Errorf("address: missing; want an IPv4 address")
	case !a.Is4():
		return fmt.Errorf("address %s: want an IPv4 address", a)
	case !subnet.IsValid():
		return nil
	case !subnet.Contains(a):
		return fmt.Errorf("address %s: outside network %q's subnet %s; pick one inside it, or leave it out for the next free one", a, network, subnet)
	case a == subnet.Masked().Addr():
		return fmt.Errorf("address %s: network %q's network address; pick a host address, or leave it out for the next free one", a, network)
	case a == lastAddr(subnet):
		return fmt.Errorf("address %s: network %q's broadcast address; pick a host address, or leave it out for the next free one", a, network)
	case a == GatewayAddr(subnet):
		return fmt.Errorf("address %s: network %q's gateway (every member machine holds it on its bridge); pick another, or leave it out for the next free one", a, network)
	}
	return nil
}

// lastAddr is the highest address of IPv4 prefix p: its broadcast address.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	v := binary.BigEndian.Uint32(b[:]) | (uint32(1)<<(32-p.Bits()) - 1)
	return netip.AddrFrom4([4]byte(binary.BigEndian.AppendUint32(nil, v)))
}
