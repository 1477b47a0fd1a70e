package plumbing

import (
	"fmt"
	"net/netip"
)

// The distributed gateway: every member machine holds its network's
// gateway address and MAC (helperapi.GatewayAddr, GatewayMAC) on its own
// bridge, so a VM always talks to its own machine. For that to hold, the
// gateway's frames and the ARP for its address must never cross a tunnel:
// otherwise a remote machine would answer a VM's ARP as well, and a
// machine's frames (its ARP for a VM, its replies) would reach VMs of other
// machines, whose bridge then sees its own MAC arrive on a tunnel port.
//
// Bridge port settings cannot say this (flooding on a tunnel port is
// needed for the VMs' own ARP and broadcasts, and the bridge has no
// per-address filter), so the gateway filter is a table of the bridge
// family, named FirewallTable like the inet one and owned whole by the
// helper in the same way (plan, diff, one-transaction write). Bridge-family
// hooks see each frame per port: prerouting as it enters from a port,
// forward as it leaves towards a port, output as the machine's own bridge
// sends it out of a port. Per network, on its tunnel ports:
//
//   - in (prerouting): a frame from or to the gateway MAC, or ARP for the
//     gateway address, from a tunnel is dropped;
//   - forward: ARP for the gateway address, or a frame claiming the
//     gateway MAC, is not sent into a tunnel;
//   - output: nothing the machine itself sends (its source MAC is the
//     gateway's) goes into a tunnel.

// Chains of the gateway filter (table bridge FirewallTable).
const (
	ChainGatewayIn      = "gateway-in"
	ChainGatewayForward = "gateway-forward"
	ChainGatewayOutput  = "gateway-output"
)

// gatewayNetwork is what the gateway filter needs of one network.
type gatewayNetwork struct {
	Addr netip.Addr
	MAC  string
	// Ports matches the network's tunnel ports: the VXLAN device's name,
	// or "btgt<id>-*" for its gretaps.
	Ports string
}

// gatewayNetworks lists the networks of p that have a gateway.
func gatewayNetworks(p plan) []gatewayNetwork {
	var out []gatewayNetwork
	for _, n := range p.Networks {
		if !n.Gateway.IsValid() {
			continue
		}
		g := gatewayNetwork{Addr: n.Gateway, Ports: fmt.Sprintf("btgt%d-*", n.ID)}
		if n.Tunnel == KindVXLAN {
			g.Ports = VXLANName(n.ID)
		}
		for _, l := range p.Links {
			if l.Name == n.Bridge {
				g.MAC = l.MAC
			}
		}
		out = append(out, g)
	}
	return out
}

// gatewayFilter is the bridge-family table for plan p: its three chains,
// with the rules of every network that has a gateway.
func gatewayFilter(p plan) fwTable {
	var in, fwd, out []fwRule
	for _, g := range gatewayNetworks(p) {
		in = append(in,
			fwRule{IIF: g.Ports, EtherSAddr: g.MAC, Verdict: VerdictDrop},
			fwRule{IIF: g.Ports, EtherDAddr: g.MAC, Verdict: VerdictDrop},
			fwRule{IIF: g.Ports, ARPTarget: g.Addr, Verdict: VerdictDrop},
		)
		fwd = append(fwd,
			fwRule{OIF: g.Ports, EtherSAddr: g.MAC, Verdict: VerdictDrop},
			fwRule{OIF: g.Ports, ARPTarget: g.Addr, Verdict: VerdictDrop},
		)
		out = append(out,
			fwRule{OIF: g.Ports, EtherSAddr: g.MAC, Verdict: VerdictDrop},
			fwRule{OIF: g.Ports, ARPTarget: g.Addr, Verdict: VerdictDrop},
		)
	}
	return fwTable{Family: "bridge", Chains: []fwChain{
		{Name: ChainGatewayIn, Hook: "prerouting", Policy: VerdictAccept, Rules: in},
		{Name: ChainGatewayForward, Hook: "forward", Policy: VerdictAccept, Rules: fwd},
		{Name: ChainGatewayOutput, Hook: "output", Policy: VerdictAccept, Rules: out},
	}}
}
