package helperapi

import (
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
