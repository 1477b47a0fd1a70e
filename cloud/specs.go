package cloud

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/inventory"
)

// Keepalive is the persistent keepalive, in seconds, every machine sends
// its directly reachable peers: it keeps a NAT mapping open, and it keeps
// handshakes fresh, so a handshake's age tells the link's health.
const Keepalive = 25

// Specs computes every machine's spec from the inventory: a full
// WireGuard mesh among the machines that have joined (a public key and a
// mesh address), and each network on its member machines.
//
// A machine behind NAT has no endpoint: it peers outwards with a
// keepalive. Two machines behind NAT cannot reach each other, so they
// reach each other through a relay: the first reachable machine by name,
// whose WireGuard device then forwards.
func Specs(inv *inventory.Inventory) (map[string]helperapi.Spec, error) {
	var joined []inventory.Machine
	for _, m := range inv.Machines {
		if m.PublicKey != "" && m.MeshIP.IsValid() {
			joined = append(joined, m)
		}
	}
	slices.SortFunc(joined, func(a, b inventory.Machine) int { return strings.Compare(a.Name, b.Name) })
	var relay *inventory.Machine
	nat := 0
	for i, m := range joined {
		if m.NAT {
			nat++
		} else if relay == nil {
			relay = &joined[i]
		}
	}
	if nat >= 2 && relay == nil {
		return nil, fmt.Errorf("machines behind NAT need a reachable machine to relay between them; add one with a public address or an --endpoint")
	}
	port := inv.Mesh.Port
	if port == 0 {
		port = inventory.DefaultMeshPort
	}
	specs := map[string]helperapi.Spec{}
	for _, m := range joined {
		s := helperapi.Spec{Mesh: helperapi.Mesh{
			Address:    netip.PrefixFrom(m.MeshIP, inv.Mesh.Prefix.Bits()),
			ListenPort: port,
			Relay:      relay != nil && relay.Name == m.Name && nat >= 2,
		}}
		for _, o := range joined {
			if o.Name == m.Name {
				continue
			}
			p := helperapi.Peer{Name: o.Name, PublicKey: o.PublicKey, MeshIP: o.MeshIP}
			switch {
			case m.NAT && o.NAT:
				p = helperapi.Peer{Name: o.Name, MeshIP: o.MeshIP, Via: relay.Name}
			case o.NAT:
				// It reaches out to us; we learn its endpoint from its
				// handshakes.
				p.Keepalive = Keepalive
			default:
				p.Endpoint = endpoint(o, port)
				p.Keepalive = Keepalive
			}
			s.Peers = append(s.Peers, p)
		}
		for _, n := range inv.Networks {
			if !slices.Contains(n.Machines, m.Name) {
				continue
			}
			pn := helperapi.Network{Name: n.Name, ID: n.ID, Subnet: n.Subnet, Tunnel: n.Tunnel}
			for _, other := range n.Machines {
				if other != m.Name && slices.ContainsFunc(joined, func(j inventory.Machine) bool { return j.Name == other }) {
					pn.Peers = append(pn.Peers, other)
				}
			}
			s.Networks = append(s.Networks, pn)
		}
		if err := s.Validate(); err != nil {
			return nil, fmt.Errorf("spec of machine %q: %w", m.Name, err)
		}
		specs[m.Name] = s
	}
	return specs, nil
}

// endpoint is where peers reach a machine's WireGuard: its --endpoint, or
// its SSH address with the mesh port.
func endpoint(m inventory.Machine, port int) string {
	if m.Endpoint != "" {
		return m.Endpoint
	}
	host := m.Address
	if h, _, err := net.SplitHostPort(m.Address); err == nil {
		host = h
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}
