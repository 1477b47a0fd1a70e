package plumbing

import (
	"net/netip"

	"github.com/butter-cloud/butter/helperapi"
)

// Egress: a network with Egress set lets its VMs out to the internet
// through this machine's uplink, as libvirt's and Incus's NAT networks do.
// Two chains of the helper's inet table carry it, planned with the rest of
// the table (so converged, checked for drift and removed with it):
//
//   - egress (filter, hook forward): a packet routed into a bridge from a
//     link that is no bridge passes only as a reply of a connection
//     conntrack knows (nothing inbound unless a reply); from an egress
//     network's bridge to the uplink it passes; anything else routed out
//     of a bridge to a link that is no bridge is dropped (a network
//     without egress gets nothing out, whatever forwarding says). Between
//     two bridges the forward chain drops it already;
//   - egress-nat (nat, hook postrouting): what leaves the uplink from an
//     egress network's subnet is masqueraded to the uplink's address.
//
// Without an egress network there is no nat chain and no rule that asks
// conntrack: the kernel then tracks no connection for the helper at all.
//
// The kernel forwards only what arrives on an interface whose forwarding is
// on: the helper turns it on for an egress network's bridge (off for the
// others) and for the uplink, for the replies (egress_linux.go).

// Chains of the helper's inet table for egress.
const (
	ChainEgress    = "egress"
	ChainEgressNAT = "egress-nat"
)

// egressNetwork is what egress needs of one network.
type egressNetwork struct {
	Bridge string
	Subnet netip.Prefix
}

// egressInput is what the egress chains are planned from.
type egressInput struct {
	// Uplink is where egress leaves ("": no uplink found, no egress).
	Uplink string
	// Networks are the networks with egress on.
	Networks []egressNetwork
}

// egressFor lists spec's networks with egress on, with their bridges.
func egressFor(spec helperapi.Spec, p plan) egressInput {
	in := egressInput{Uplink: p.Uplink}
	for _, n := range spec.Networks {
		if n.Egress && n.Subnet.IsValid() {
			in.Networks = append(in.Networks, egressNetwork{Bridge: BridgeName(n.ID), Subnet: n.Subnet})
		}
	}
	return in
}

// egressChains are the two egress chains for in.
func egressChains(in egressInput) []fwChain {
	// Where br_netfilter is loaded (bridge-nf-call-iptables, as Docker
	// does), frames bridged within a bridge cross this hook too, in and
	// out of the same bridge: the rules name only what crosses between a
	// bridge and a link that is no bridge.
	var accept, nat []fwRule
	if in.Uplink != "" {
		for _, n := range in.Networks {
			accept = append(accept, fwRule{IIF: n.Bridge, OIF: in.Uplink, Verdict: VerdictAccept})
			nat = append(nat, fwRule{OIF: in.Uplink, SNet: n.Subnet, Verdict: VerdictMasquerade})
		}
	}
	var fwd []fwRule
	if len(nat) > 0 {
		// The replies of what went out. Only then: conntrack runs on a
		// machine only while a rule or a nat chain needs it.
		fwd = append(fwd, fwRule{OIF: bridgeGlob, Reply: true, Verdict: VerdictAccept})
	}
	fwd = append(fwd, fwRule{NotIIF: bridgeGlob, OIF: bridgeGlob, Verdict: VerdictDrop})
	fwd = append(fwd, accept...)
	fwd = append(fwd, fwRule{IIF: bridgeGlob, NotOIF: bridgeGlob, Verdict: VerdictDrop})
	chains := []fwChain{{Name: ChainEgress, Hook: "forward", Priority: 10, Policy: VerdictAccept, Rules: fwd}}
	if len(nat) > 0 {
		chains = append(chains, fwChain{Name: ChainEgressNAT, Type: "nat", Hook: "postrouting", Priority: 100, Policy: VerdictAccept, Rules: nat})
	}
	return chains
}

func isEgressChain(c fwChain) bool { return c.Name == ChainEgress || c.Name == ChainEgressNAT }

// egressBridges says, per bridge of p, whether its network has egress:
// the bridge's forwarding switch follows it.
func egressBridges(spec helperapi.Spec) map[string]bool {
	out := map[string]bool{}
	for _, n := range spec.Networks {
		out[BridgeName(n.ID)] = n.Egress && n.Subnet.IsValid()
	}
	return out
}
