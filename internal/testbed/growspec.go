package testbed

import (
	"fmt"
	"net/netip"
	"slices"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/butter-cloud/butter/helperapi"
)

// GrowSpec returns a machine's spec grown to the scale of a larger cloud:
// made-up peers up to peers (fresh keys, no keepalive, so nothing is sent
// to them until traffic is), networks up to networks, and every network on
// every peer. The made-up peers' mesh addresses count down from the top of
// the mesh's range and their endpoints from the top of underlay's, clear
// of a lab's machines; the new networks have subnets 10.78.N.0/24 and IDs
// from 900. The spec's own peers and networks stay, so the machine keeps
// working with the others. It carries no generation.
func GrowSpec(spec helperapi.Spec, peers, networks int, underlay netip.Prefix) (helperapi.Spec, error) {
	if !underlay.Addr().Is4() || !spec.Mesh.Address.Addr().Is4() {
		return spec, fmt.Errorf("grow spec: IPv4 underlay and mesh wanted, have %s and %s", underlay, spec.Mesh.Address)
	}
	spec.Peers = slices.Clone(spec.Peers)
	spec.Networks = slices.Clone(spec.Networks)
	meshIP, endpoint := afterLast(spec.Mesh.Address), afterLast(underlay)
	for i := len(spec.Peers); i < peers; i++ {
		k, err := wgtypes.GeneratePrivateKey()
		if err != nil {
			return spec, err
		}
		meshIP, endpoint = meshIP.Prev(), endpoint.Prev()
		spec.Peers = append(spec.Peers, helperapi.Peer{Name: fmt.Sprintf("grown%02d", i), PublicKey: k.PublicKey().String(),
			Endpoint: netip.AddrPortFrom(endpoint, 51820).String(), MeshIP: meshIP})
	}
	var names []string
	for _, p := range spec.Peers {
		names = append(names, p.Name)
	}
	for i := range spec.Networks {
		spec.Networks[i].Peers = names
	}
	for i := len(spec.Networks); i < networks; i++ {
		spec.Networks = append(spec.Networks, helperapi.Network{Name: fmt.Sprintf("grown%d", i), ID: 900 + i,
			Subnet: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 78, byte(i), 0}), 24), Peers: names})
	}
	spec.Generation, spec.Desired = 0, nil
	return spec, spec.Validate()
}

// afterLast is p's broadcast address (IPv4): counting down from it gives
// p's addresses from the top.
func afterLast(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// TunnelPorts counts the tunnel ports rep reports on spec's networks, and
// the ports those networks need as the helper resolved their tunnels: one
// gretap port a peer, or one VXLAN port for them all (ExpectedChain).
func TunnelPorts(spec helperapi.Spec, rep helperapi.Report) (got, want int) {
	peers := map[string]int{}
	for _, n := range spec.Networks {
		peers[n.Name] = len(n.Peers)
	}
	for _, n := range rep.Networks {
		got += len(n.Ports)
		_, _, ports := ExpectedChain(ChainFacts{Gretap: n.Tunnel == helperapi.TunnelGretap}, n.Tunnel, peers[n.Name])
		want += ports
	}
	return got, want
}
