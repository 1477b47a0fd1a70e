package helperapi

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// NATKeepalive is the persistent keepalive, in seconds, that a machine
// behind NAT sends every peer it reaches directly, whatever the plan's
// Keepalive: without it the NAT forgets the mapping and its peers lose it.
const NATKeepalive = 25

// MeshPlan is the whole mesh as the operator (or a test) knows it: every
// machine that has joined, and the private networks over them. Plan turns
// it into each machine's Spec.
type MeshPlan struct {
	// Prefix is the mesh; every member's address takes its length.
	Prefix netip.Prefix
	// Port is WireGuard's listen port on every machine (DefaultListenPort
	// if zero); a reachable member's Endpoint normally ends in it.
	Port int
	// Keepalive is the persistent keepalive, in seconds, towards every
	// directly reached peer (0: off; a member behind NAT still sends
	// NATKeepalive).
	Keepalive int
	// Members are the machines of the mesh. The first reachable one (not
	// behind NAT) relays between members behind NAT.
	Members []Member
	// Networks are the private networks.
	Networks []PlanNetwork
}

// Member is one machine of a MeshPlan.
type Member struct {
	// Name is the machine's name; peers and networks name it so.
	Name string
	// PublicKey is its WireGuard public key (base64).
	PublicKey string
	// MeshIP is its address inside the mesh.
	MeshIP netip.Addr
	// Endpoint is host:port where the other members reach its WireGuard;
	// unused when it is behind NAT.
	Endpoint string
	// NAT says it sits behind NAT: nobody can reach it first, so it peers
	// outwards with a keepalive, and reaches the other members behind NAT
	// through the relay.
	NAT bool
}

// PlanNetwork is a private network and the members it spans.
type PlanNetwork struct {
	// Network is the network; its Peers are ignored (Plan fills them in
	// for each machine).
	Network Network
	// Machines names the members the network spans; names that are not
	// members are left out.
	Machines []string
}

// Plan returns every member's spec, by member name: a full WireGuard mesh
// among the members, and each network on the members it spans.
//
// A member behind NAT has no endpoint: it peers outwards with a keepalive,
// and its peers learn its endpoint from its handshakes. Two members behind
// NAT cannot reach each other, so they reach each other through a relay:
// the first reachable member, whose WireGuard device then forwards. Every
// spec is validated; Plan reports every problem at once.
func Plan(p MeshPlan) (map[string]Spec, error) {
	var errs []error
	names := map[string]bool{}
	for _, m := range p.Members {
		if names[m.Name] {
			errs = append(errs, fmt.Errorf("machine %q: listed twice", m.Name))
		}
		names[m.Name] = true
		if m.PublicKey == "" {
			errs = append(errs, fmt.Errorf("machine %q: no public key", m.Name))
		}
		if !m.MeshIP.IsValid() {
			errs = append(errs, fmt.Errorf("machine %q: no mesh address", m.Name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var relay *Member
	nat := 0
	for i, m := range p.Members {
		if m.NAT {
			nat++
		} else if relay == nil {
			relay = &p.Members[i]
		}
	}
	if nat >= 2 && relay == nil {
		return nil, fmt.Errorf("machines behind NAT need a reachable machine to relay between them; add one with a public address or an --endpoint")
	}
	port := p.Port
	if port == 0 {
		port = DefaultListenPort
	}
	specs := map[string]Spec{}
	for _, m := range p.Members {
		s := Spec{Mesh: Mesh{
			Address:    netip.PrefixFrom(m.MeshIP, p.Prefix.Bits()),
			ListenPort: port,
			Relay:      relay != nil && relay.Name == m.Name && nat >= 2,
		}}
		for _, o := range p.Members {
			if o.Name == m.Name {
				continue
			}
			peer := Peer{Name: o.Name, PublicKey: o.PublicKey, MeshIP: o.MeshIP, Keepalive: p.Keepalive}
			switch {
			case m.NAT && o.NAT:
				peer = Peer{Name: o.Name, MeshIP: o.MeshIP, Via: relay.Name}
			case o.NAT:
				// It reaches out to us; we learn its endpoint from its
				// handshakes.
			default:
				peer.Endpoint = o.Endpoint
			}
			if m.NAT && peer.Via == "" && peer.Keepalive == 0 {
				peer.Keepalive = NATKeepalive
			}
			s.Peers = append(s.Peers, peer)
		}
		for _, n := range p.Networks {
			if !slices.Contains(n.Machines, m.Name) {
				continue
			}
			pn := n.Network
			pn.Peers = nil
			for _, other := range n.Machines {
				if other != m.Name && names[other] {
					pn.Peers = append(pn.Peers, other)
				}
			}
			s.Networks = append(s.Networks, pn)
		}
		if err := s.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("spec of machine %q: %w", m.Name, err))
		}
		specs[m.Name] = s
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return specs, nil
}
