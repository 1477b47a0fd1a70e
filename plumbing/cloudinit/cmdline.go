package cloudinit

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// KernelCmdline returns the kernel command line that configures the NIC of
// a VM booted from a kernel and initrd directly, in dracut's syntax (which
// Debian's and most initrds' ip= parsers share), followed by extra:
//
//	ip=<address>::<gateway>:<netmask>:<hostname>:<nic name>:none[:<mtu>]
//	ifname=<nic name>:<mac> nameserver=<dns>… <extra>
//
// The gateway is empty when there is none, IPv6 addresses are bracketed
// with the prefix length as netmask, and a NIC without an address asks
// for DHCP (ip=<nic name>:dhcp[:<mtu>]). ifname= names the interface that
// has the MAC, as set-name does in network-config. The seed is expected
// to be valid (see Seed.Validate); fields it lacks are left out.
func KernelCmdline(seed Seed, extra string) string {
	n := seed.NIC
	var args []string
	mtu := ""
	if n.MTU > 0 {
		mtu = ":" + strconv.Itoa(n.MTU)
	}
	switch {
	case n.Address.IsValid():
		gw := ""
		if n.Gateway.IsValid() {
			gw = ipField(n.Gateway)
		}
		args = append(args, "ip="+strings.Join([]string{
			ipField(n.Address.Addr()), "", gw, netmask(n.Address), seed.Hostname, n.Name, "none",
		}, ":")+mtu)
	case n.Name != "":
		args = append(args, "ip="+n.Name+":dhcp"+mtu)
	}
	if n.Name != "" && len(n.MAC) > 0 {
		args = append(args, "ifname="+n.Name+":"+n.MAC.String())
	}
	for _, d := range n.DNS {
		args = append(args, "nameserver="+ipField(d))
	}
	if extra = strings.TrimSpace(extra); extra != "" {
		args = append(args, extra)
	}
	return strings.Join(args, " ")
}

// ipField writes an address for a colon-separated ip= field.
func ipField(a netip.Addr) string {
	if a.Is6() && !a.Is4In6() {
		return "[" + a.String() + "]"
	}
	return a.String()
}

// netmask is the dotted netmask of an IPv4 prefix, the prefix length of
// an IPv6 one.
func netmask(p netip.Prefix) string {
	if !p.Addr().Is4() {
		return strconv.Itoa(p.Bits())
	}
	return net.IP(net.CIDRMask(p.Bits(), 32)).String()
}
