package plumbing

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/butter-cloud/butter/helperapi"
)

// The helper's firewall is one nftables table, FirewallTable in the inet
// family, that the helper owns whole and converges like the links: a pure
// plan from the spec (makeFirewall), a comparison with the table the
// kernel has (fwDiff), and a write that replaces the table in one
// transaction (convergeFirewall). It touches no other table. With it:
//
//   - a network's tunnel packets (VXLAN to the plan's port with the
//     network's VNI, gretap with its key) are taken only when they arrive
//     on the WireGuard device from the mesh address of one of that
//     network's member peers; every other packet to the VXLAN port, and
//     every other GRE packet, is dropped while the machine has a network
//     of that kind;
//   - nothing is forwarded into or out of the WireGuard device, except
//     WireGuard to WireGuard on a relay;
//   - nothing is routed from one network's bridge to another's;
//   - a bridge reaches the machine itself only for ICMP and DNS (UDP and
//     TCP 53) to its own network's gateway address (helperapi.GatewayAddr
//     of the network's subnet), nothing else: no sshd, no mesh address,
//     no other network's gateway; a network without a subnet reaches
//     nothing; and the replies to connections the machine opened from that
//     address (how `butter vm proxy` reaches a VM's sshd).
//
// Besides the table, IPv6 is off on the bridges and all their ports (no
// link-local address, no router advertisement taken), and the port guard
// (guard.go) holds each VM to its own MAC and address.

// bridgeGlob matches the name of every bridge the helper makes.
const bridgeGlob = "btbr*"

// FirewallTable is the name of the helper's nftables table (family inet).
const FirewallTable = "butter"

// Chains of the firewall table, each a base chain on the hook of its name
// (the notrack chains: prerouting and output, before conntrack).
const (
	ChainInput      = "input"
	ChainForward    = "forward"
	ChainNotrackIn  = "notrack-in"
	ChainNotrackOut = "notrack-out"
)

// PriorityRaw is the priority of the notrack chains: nftables' "raw",
// before conntrack (-200) looks at a packet.
const PriorityRaw = -300

// Verdicts of a firewall rule.
const (
	VerdictAccept     = "accept"
	VerdictDrop       = "drop"
	VerdictMasquerade = "masquerade" // nat chains: the outgoing interface's address as source
	VerdictNotrack    = "notrack"    // conntrack leaves the packet alone (chains before conntrack's hook)
)

// fwRule is one rule of the firewall in the few terms the helper uses. Its
// String is the rule in nft's words; the kernel keeps it as the rule's
// comment for people reading `nft list ruleset`.
type fwRule struct {
	IIF    string // iifname; a trailing "*" matches names that start so
	OIF    string // oifname, the same way
	NotOIF string // oifname is not this one
	NotIIF string // iifname is not this one

	SAddr netip.Addr   // IPv4 source address
	DAddr netip.Addr   // IPv4 destination address
	SNet  netip.Prefix // IPv4 source address inside this prefix

	// Reply matches packets of a connection conntrack has seen both ways
	// (ct state established,related).
	Reply bool
	// ACK matches TCP segments with the ACK flag (tcp flags & ack == ack):
	// every segment of a connection but the one that opens it.
	ACK bool

	Proto  string // "udp", "tcp", "gre", "icmp" (meta l4proto)
	SPort  uint16 // udp or tcp source port
	DPort  uint16 // udp or tcp destination port
	VNI    uint32 // udp: the VXLAN header's network id (0: any)
	GREKey uint32 // gre: a keyed Ethernet-over-GRE header with this key (0: any)

	// Bridge family (the gateway filter, gateway.go):
	EtherSAddr string     // Ethernet source address
	EtherDAddr string     // Ethernet destination address
	ARPTarget  netip.Addr // an ARP packet's target IPv4 address

	// Verdict is accept or drop, or masquerade in a nat chain.
	Verdict string

	// Unknown describes a rule read from the kernel that says something
	// the helper never writes: it matches no rule of a plan.
	Unknown string
}

// Layer 4 protocols a rule may match, with their IP protocol numbers.
var fwProtocols = map[string]uint8{"icmp": 1, "tcp": 6, "udp": 17, "gre": 47}

func (r fwRule) String() string {
	if r.Unknown != "" {
		return "unknown rule: " + r.Unknown
	}
	var f []string
	add := func(s ...string) { f = append(f, s...) }
	if r.IIF != "" {
		add("iifname", strconv.Quote(r.IIF))
	}
	if r.NotIIF != "" {
		add("iifname", "!=", strconv.Quote(r.NotIIF))
	}
	if r.OIF != "" {
		add("oifname", strconv.Quote(r.OIF))
	}
	if r.NotOIF != "" {
		add("oifname", "!=", strconv.Quote(r.NotOIF))
	}
	if r.SAddr.IsValid() {
		add("ip", "saddr", r.SAddr.String())
	}
	if r.DAddr.IsValid() {
		add("ip", "daddr", r.DAddr.String())
	}
	if r.SNet.IsValid() {
		add("ip", "saddr", r.SNet.String())
	}
	if r.Reply {
		add("ct", "state", "established,related")
	}
	if r.EtherSAddr != "" {
		add("ether", "saddr", r.EtherSAddr)
	}
	if r.EtherDAddr != "" {
		add("ether", "daddr", r.EtherDAddr)
	}
	if r.ARPTarget.IsValid() {
		add("arp", "daddr", "ip", r.ARPTarget.String())
	}
	switch {
	case r.Proto == "gre" && r.GREKey != 0:
		add("gre", "key", strconv.FormatUint(uint64(r.GREKey), 10))
	case r.SPort == 0 && r.DPort == 0 && r.VNI == 0 && r.Proto != "" && !r.ACK:
		add("meta", "l4proto", r.Proto)
	}
	if r.SPort != 0 {
		add(r.Proto, "sport", strconv.Itoa(int(r.SPort)))
	}
	if r.DPort != 0 {
		add(r.Proto, "dport", strconv.Itoa(int(r.DPort)))
	}
	if r.VNI != 0 {
		add("vxlan", "vni", strconv.FormatUint(uint64(r.VNI), 10))
	}
	// After the ports, as encodeRule writes it (nft keeps the order a
	// rule is written in).
	if r.Proto == "tcp" && r.ACK {
		add("tcp", "flags", "&", "ack", "==", "ack")
	}
	add(r.Verdict)
	return strings.Join(f, " ")
}

// fwChain is a base chain of the firewall table.
type fwChain struct {
	Name     string
	Type     string // "" (filter) or "nat"
	Hook     string // the netfilter hook: "input", "forward", ...
	Priority int
	Policy   string
	Rules    []fwRule
}

func (c fwChain) header() string {
	h := fmt.Sprintf("hook %s priority %d policy %s", c.Hook, c.Priority, c.Policy)
	if c.Type != "" {
		h = "type " + c.Type + " " + h
	}
	return h
}

// fwTable is the firewall table: the plan, or what the kernel has.
type fwTable struct {
	// Family is the table's nftables family: "inet" (the default, "")
	// or "bridge" (the gateway filter).
	Family string
	Chains []fwChain
	// Dormant is a table that is there but switched off (flags dormant).
	Dormant bool
}

// name is the table's family and name, as nft names it.
func (t fwTable) name() string {
	if t.Family == "" {
		return "inet " + FirewallTable
	}
	return t.Family + " " + FirewallTable
}

// String prints the table as `nft list table` would, less the syntax.
func (t fwTable) String() string {
	var b strings.Builder
	if t.Dormant {
		b.WriteString("dormant\n")
	}
	for _, c := range t.Chains {
		fmt.Fprintf(&b, "chain %s %s\n", c.Name, c.header())
		for _, r := range c.Rules {
			fmt.Fprintf(&b, "  %s\n", r)
		}
	}
	return b.String()
}

// fwNetwork is what the firewall needs to know of one network on this
// machine.
type fwNetwork struct {
	Bridge string
	// Tunnel is the network's tunnel kind, Key its VNI or GRE key, Port
	// the VXLAN UDP port.
	Tunnel string
	Key    uint32
	Port   int
	// Peers are the mesh addresses of the network's member peers: the
	// only sources its tunnel packets may come from.
	Peers []netip.Addr
	// Gateway is the network's gateway address on this machine's bridge,
	// if the network has one: a bridge reaches the machine only there.
	Gateway netip.Addr
}

// fwInput is what the firewall is planned from.
type fwInput struct {
	Networks []fwNetwork
	// Relay: this machine forwards mesh traffic between peers.
	Relay bool
}

// makeFirewall plans the firewall for spec on a machine whose links are
// p's: the tunnels' ends come from the links, so a network's packets are
// taken from exactly the peers its tunnels point at.
func makeFirewall(spec helperapi.Spec, p plan) fwTable {
	in := fwInput{Relay: spec.Mesh.Relay}
	byBridge := map[string]int{}
	for _, l := range p.Links {
		if l.Kind == KindBridge {
			byBridge[l.Name] = len(in.Networks)
			// A network without a subnet has no gateway: its bridge
			// reaches the machine for nothing.
			n := fwNetwork{Bridge: l.Name}
			if len(l.Addrs) > 0 {
				n.Gateway = l.Addrs[0].Addr()
			}
			in.Networks = append(in.Networks, n)
		}
	}
	for _, l := range p.Links {
		i, ok := byBridge[l.Master]
		if !ok {
			continue
		}
		n := &in.Networks[i]
		switch l.Kind {
		case KindVXLAN:
			n.Tunnel, n.Key, n.Port = KindVXLAN, l.Key, l.Port
			n.Peers = append(n.Peers, l.FDB...)
		case KindGretap:
			n.Tunnel, n.Key = KindGretap, l.Key
			n.Peers = append(n.Peers, l.Remote)
		}
	}
	t := firewallFor(in)
	t.Chains = append(t.Chains, egressChains(egressFor(spec, p))...)
	return t
}

// firewallFor is the firewall table for in.
func firewallFor(in fwInput) fwTable {
	var input, forward []fwRule
	// Tunnels: taken from the network's member peers over WireGuard only.
	vxlanPorts := map[int]bool{}
	gre := false
	for _, n := range in.Networks {
		peers := slices.Clone(n.Peers)
		slices.SortFunc(peers, netip.Addr.Compare)
		peers = slices.Compact(peers)
		for _, a := range peers {
			switch n.Tunnel {
			case KindVXLAN:
				input = append(input, fwRule{IIF: WireGuardName, SAddr: a, Proto: "udp", DPort: uint16(n.Port), VNI: n.Key, Verdict: VerdictAccept})
			case KindGretap:
				input = append(input, fwRule{IIF: WireGuardName, SAddr: a, Proto: "gre", GREKey: n.Key, Verdict: VerdictAccept})
			}
		}
		switch n.Tunnel {
		case KindVXLAN:
			vxlanPorts[n.Port] = true
		case KindGretap:
			gre = true
		}
	}
	for _, port := range slices.Sorted(maps.Keys(vxlanPorts)) {
		input = append(input, fwRule{Proto: "udp", DPort: uint16(port), Verdict: VerdictDrop})
	}
	if gre {
		input = append(input, fwRule{Proto: "gre", Verdict: VerdictDrop})
	}
	// Bridges to the machine: the gateway's services, nothing else.
	for _, n := range in.Networks {
		g := n.Gateway
		if !g.IsValid() {
			continue
		}
		input = append(input,
			fwRule{IIF: n.Bridge, DAddr: g, Proto: "icmp", Verdict: VerdictAccept},
			fwRule{IIF: n.Bridge, DAddr: g, Proto: "udp", DPort: 53, Verdict: VerdictAccept},
			fwRule{IIF: n.Bridge, DAddr: g, Proto: "tcp", DPort: 53, Verdict: VerdictAccept},
			// Replies only: a VM cannot open a connection to the machine
			// this way (a segment without ACK opens one; one with ACK
			// and no connection gets a reset), but the machine can open
			// one to a VM (vm proxy). Stateless, so the table needs no
			// conntrack: see notrackChains.
			fwRule{IIF: n.Bridge, DAddr: g, Proto: "tcp", ACK: true, Verdict: VerdictAccept},
		)
	}
	input = append(input, fwRule{IIF: bridgeGlob, Verdict: VerdictDrop})

	// Forwarding: WireGuard to WireGuard on a relay, never into or out of
	// the mesh otherwise, never between networks.
	if in.Relay {
		forward = append(forward, fwRule{IIF: WireGuardName, OIF: WireGuardName, Verdict: VerdictAccept})
	}
	forward = append(forward,
		fwRule{IIF: WireGuardName, Verdict: VerdictDrop},
		fwRule{OIF: WireGuardName, Verdict: VerdictDrop},
	)
	for _, n := range in.Networks {
		forward = append(forward, fwRule{IIF: n.Bridge, OIF: bridgeGlob, NotOIF: n.Bridge, Verdict: VerdictDrop})
	}
	return fwTable{Chains: append([]fwChain{
		{Name: ChainInput, Hook: "input", Policy: VerdictAccept, Rules: input},
		{Name: ChainForward, Hook: "forward", Policy: VerdictAccept, Rules: forward},
	}, notrackChains(slices.Sorted(maps.Keys(vxlanPorts)))...)}
}

// notrackChains keep conntrack off the VXLAN packets on the WireGuard
// device, both ways, where conntrack runs on the machine (an egress
// network's NAT, libvirt's default network, a host firewall): each such
// packet would otherwise cost a connection lookup on the way in and out,
// a tenth of the chain's throughput on the bench. The rules that take
// them (input) look at addresses, ports and the VNI, never at conntrack,
// and VXLAN's source port changes with the inner flow, so conntrack never
// saw them as replies anyway. GRE keeps its tracking: a host firewall that
// accepts established traffic may take a gretap's packets only as
// replies of its own.
func notrackChains(vxlanPorts []int) []fwChain {
	if len(vxlanPorts) == 0 {
		return nil
	}
	var in, out []fwRule
	for _, port := range vxlanPorts {
		in = append(in, fwRule{IIF: WireGuardName, Proto: "udp", DPort: uint16(port), Verdict: VerdictNotrack})
		out = append(out, fwRule{OIF: WireGuardName, Proto: "udp", DPort: uint16(port), Verdict: VerdictNotrack})
	}
	return []fwChain{
		{Name: ChainNotrackIn, Hook: "prerouting", Priority: PriorityRaw, Policy: VerdictAccept, Rules: in},
		{Name: ChainNotrackOut, Hook: "output", Priority: PriorityRaw, Policy: VerdictAccept, Rules: out},
	}
}

// ipv6Off lists the links on which IPv6 must be off: the bridges and the
// tunnels that are their ports.
func ipv6Off(p plan) []string {
	var out []string
	for _, l := range p.Links {
		switch l.Kind {
		case KindBridge, KindVXLAN, KindGretap:
			out = append(out, l.Name)
		}
	}
	return out
}

// ipv6Settings are the per-link IPv6 settings (net.ipv6.conf.<link>.<key>)
// that turn IPv6 off on a link: no address, link-local included, and no
// router advertisement taken.
var ipv6Settings = []struct{ Key, Value string }{
	{"disable_ipv6", "1"},
	{"accept_ra", "0"},
}
