package plumbing

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/butter-cloud/butter/helperapi"
)

// The port guard is the helper's second nftables table: GuardTable in the
// bridge family, one chain on the bridge's prerouting hook that sees every
// frame a VM's tap puts on a bridge, before the bridge forwards it or
// hands it to the machine. Per VM port it lets through only the VM's own
// MAC as Ethernet and ARP source, the VM's own address as IPv4 and ARP
// source (an ARP probe's 0.0.0.0 too), no DHCP server reply (UDP source
// port 67), and nothing but IPv4 and ARP: IPv6, router advertisements
// included, and every other ethertype are dropped.
//
// Why the helper's own table and not libvirt's clean-traffic nwfilter:
// nwfilter needs libvirt's nwfilter driver and writes ebtables/iptables
// (legacy) rules the helper can neither read back nor converge; this
// table is planned, diffed, restored and removed with the rest of the
// helper's firewall, through the same nf_tables library, and works where
// there is no libvirt at all (the namespace lab, where a probe stands in
// for a VM on a port named as the VM's tap).
//
// The helper finds a VM's port and MAC from the desired state alone: the
// tap is named helperapi.VMPort(name) in the VM's domain, and its MAC is
// helperapi.VMMAC(address).

// GuardTable is the name of the port guard's table (family bridge). It is
// a table of its own, beside the gateway filter (table bridge butter,
// gateway.go): the guard is planned from the desired state's VMs, the
// gateway filter from the links, and each is written whole without
// rewriting the other. Its chain runs first (priority -200).
const GuardTable = "butter-guard"

// The port guard's one chain: a base chain on the bridge family's
// prerouting hook, at the filter priority, accepting what no rule drops
// (frames of ports that are no VM's: tunnels, the bridge itself).
const (
	ChainGuard    = "ports"
	guardHook     = "prerouting"
	guardPriority = -200
)

// Ethertypes a guard rule matches.
const (
	etherIPv4 = 0x0800
	etherARP  = 0x0806
)

// guardRule is one rule of the port guard. Its String is the rule in
// nft's words, kept as its comment.
type guardRule struct {
	Port string // iifname: the VM's tap

	NotEtherSrc net.HardwareAddr // ether saddr is not this
	EtherType   uint16           // ether type is this (0: any)
	NotARPMAC   net.HardwareAddr // arp: the sender's MAC is not this
	NotARPAddr  netip.Addr       // arp: the sender's address is neither this nor 0.0.0.0
	NotIPSrc    netip.Addr       // ip saddr is not this
	UDPSPort    uint16           // udp source port is this

	Verdict string
}

func (r guardRule) String() string {
	f := []string{"iifname", strconv.Quote(r.Port)}
	add := func(s ...string) { f = append(f, s...) }
	if r.NotEtherSrc != nil {
		add("ether", "saddr", "!=", r.NotEtherSrc.String())
	}
	switch {
	case r.EtherType == etherARP && r.NotARPMAC == nil && !r.NotARPAddr.IsValid():
		add("ether", "type", "arp")
	case r.EtherType == etherIPv4 && !r.NotIPSrc.IsValid() && r.UDPSPort == 0:
		add("ether", "type", "ip")
	case r.EtherType != 0 && r.EtherType != etherARP && r.EtherType != etherIPv4:
		add("ether", "type", fmt.Sprintf("0x%04x", r.EtherType))
	}
	if r.NotARPMAC != nil {
		add("arp", "saddr", "ether", "!=", r.NotARPMAC.String())
	}
	if r.NotARPAddr.IsValid() {
		add("arp", "saddr", "ip", "!=", "{", r.NotARPAddr.String()+",", "0.0.0.0", "}")
	}
	if r.NotIPSrc.IsValid() {
		add("ip", "saddr", "!=", r.NotIPSrc.String())
	}
	if r.UDPSPort != 0 {
		add("udp", "sport", strconv.Itoa(int(r.UDPSPort)))
	}
	add(r.Verdict)
	return strings.Join(f, " ")
}

// guardVM is what the guard needs to know of one VM on this machine.
type guardVM struct {
	Name string
	Port string
	MAC  net.HardwareAddr
	Addr netip.Addr
}

// guardVMs are the VMs of the desired state that run on this machine (the
// machine whose mesh address is spec's) on a network of spec, by name.
func guardVMs(spec helperapi.Spec) []guardVM {
	if spec.Desired == nil {
		return nil
	}
	self := ""
	for _, m := range spec.Desired.Machines {
		if m.MeshIP.IsValid() && m.MeshIP == spec.Mesh.Address.Addr() {
			self = m.Name
		}
	}
	networks := map[string]bool{}
	for _, n := range spec.Networks {
		networks[n.Name] = true
	}
	var out []guardVM
	for _, v := range spec.Desired.VMs {
		if self == "" || v.Machine != self || !networks[v.Network] {
			continue
		}
		mac := helperapi.VMMAC(v.Address)
		if mac == nil {
			continue // no IPv4 address: the helper made no such VM
		}
		out = append(out, guardVM{Name: v.Name, Port: helperapi.VMPort(v.Name), MAC: mac, Addr: v.Address})
	}
	slices.SortFunc(out, func(a, b guardVM) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// guardFor is the port guard's chain for vms, rule by rule in order.
func guardFor(vms []guardVM) []guardRule {
	var out []guardRule
	for _, v := range vms {
		p := v.Port
		out = append(out,
			guardRule{Port: p, NotEtherSrc: v.MAC, Verdict: VerdictDrop},
			guardRule{Port: p, EtherType: etherARP, NotARPMAC: v.MAC, Verdict: VerdictDrop},
			guardRule{Port: p, EtherType: etherARP, NotARPAddr: v.Addr, Verdict: VerdictDrop},
			guardRule{Port: p, EtherType: etherARP, Verdict: VerdictAccept},
			guardRule{Port: p, EtherType: etherIPv4, NotIPSrc: v.Addr, Verdict: VerdictDrop},
			guardRule{Port: p, EtherType: etherIPv4, UDPSPort: 67, Verdict: VerdictDrop},
			guardRule{Port: p, EtherType: etherIPv4, Verdict: VerdictAccept},
			guardRule{Port: p, Verdict: VerdictDrop},
		)
	}
	return out
}

// guardHave is the port guard's table as the kernel has it, in words: its
// chains' headers and its rules' texts (a rule that is not one of the
// plan's, expression for expression, reads as unknown).
type guardHave struct {
	Dormant bool
	Chains  map[string]string   // name: header
	Rules   map[string][]string // chain name: rule texts in order
}

func guardHeader() string {
	return fmt.Sprintf("hook %s priority %d policy %s", guardHook, guardPriority, VerdictAccept)
}

// guardDiff says, one line each, how have (nil: no table) differs from the
// chain of rules want; nothing when they are the same.
func guardDiff(want []guardRule, have *guardHave) []string {
	if have == nil {
		return []string{fmt.Sprintf("table bridge %s missing", GuardTable)}
	}
	var out []string
	if have.Dormant {
		out = append(out, fmt.Sprintf("table bridge %s is dormant", GuardTable))
	}
	for _, name := range slices.Sorted(maps.Keys(have.Chains)) {
		if name != ChainGuard {
			out = append(out, "extra chain "+name)
		}
	}
	h, ok := have.Chains[ChainGuard]
	if !ok {
		return append(out, "chain "+ChainGuard+" missing")
	}
	if h != guardHeader() {
		out = append(out, fmt.Sprintf("chain %s has %s, want %s", ChainGuard, h, guardHeader()))
	}
	w := make([]string, len(want))
	for i, r := range want {
		w[i] = r.String()
	}
	return append(out, textDiff(ChainGuard, w, have.Rules[ChainGuard])...)
}
