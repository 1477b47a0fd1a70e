package cloud

import (
	"net"
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
// whose WireGuard device then forwards. helperapi.Plan does the planning.
func Specs(inv *inventory.Inventory) (map[string]helperapi.Spec, error) {
	var joined []inventory.Machine
	for _, m := range inv.Machines {
		if m.PublicKey != "" && m.MeshIP.IsValid() {
			joined = append(joined, m)
		}
	}
	slices.SortFunc(joined, func(a, b inventory.Machine) int { return strings.Compare(a.Name, b.Name) })
	port := inv.Mesh.Port
	if port == 0 {
		port = inventory.DefaultMeshPort
	}
	plan := helperapi.MeshPlan{Prefix: inv.Mesh.Prefix, Port: port, Keepalive: Keepalive}
	for _, m := range joined {
		member := helperapi.Member{Name: m.Name, PublicKey: m.PublicKey, MeshIP: m.MeshIP, NAT: m.NAT}
		if !m.NAT {
			member.Endpoint = endpoint(m, port)
		}
		plan.Members = append(plan.Members, member)
	}
	for _, n := range inv.Networks {
		plan.Networks = append(plan.Networks, helperapi.PlanNetwork{
			Network:  helperapi.Network{Name: n.Name, ID: n.ID, Subnet: n.Subnet, Tunnel: n.Tunnel, Egress: n.Egress},
			Machines: n.Machines,
		})
	}
	return helperapi.Plan(plan)
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
