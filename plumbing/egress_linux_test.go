package plumbing

import (
	"context"
	"net/netip"
	"testing"

	"github.com/butter-cloud/butter/helperapi"
)

// TestEgressKernel writes the inet table with the egress chains (a nat
// chain with masquerade, ct state, a source prefix, negated names) into a
// fresh network namespace and reads every rule back as written.
func TestEgressKernel(t *testing.T) {
	inFreshNetns(t)
	ctx := context.Background()
	spec := testSpec(
		helperapi.Network{Name: "blue", ID: 1, Subnet: netip.MustParsePrefix("10.10.1.0/24"), Tunnel: helperapi.TunnelVXLAN, Peers: []string{"m2"}, Egress: true},
		helperapi.Network{Name: "red", ID: 7, Subnet: netip.MustParsePrefix("10.10.7.0/25"), Tunnel: helperapi.TunnelVXLAN, Peers: []string{"m3"}, Egress: true},
	)
	want := makeFirewall(spec, makePlan(spec, machine{Uplink: "eth0", UplinkMTU: 1500}))
	k := nftTable{}
	writeReadBack(t, ctx, k, want)
}
