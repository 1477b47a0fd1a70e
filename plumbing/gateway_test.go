package plumbing

import (
	"net/netip"
	"testing"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/google/go-cmp/cmp"
)

// The gateway filter per network with a subnet, on its own tunnel ports: a
// VXLAN network by its device, a gretap network by its ports' stem; a
// network without a subnet has no gateway and no rules.
func TestGatewayFilterPlan(t *testing.T) {
	spec := testSpec(
		helperapi.Network{Name: "blue", ID: 1, Subnet: netip.MustParsePrefix("10.10.1.0/24"), Tunnel: helperapi.TunnelVXLAN, Peers: []string{"m2"}},
		helperapi.Network{Name: "red", ID: 300, Subnet: netip.MustParsePrefix("10.10.3.0/24"), Tunnel: helperapi.TunnelGretap, Peers: []string{"m2", "m3"}},
		helperapi.Network{Name: "bare", ID: 4, Tunnel: helperapi.TunnelVXLAN, Peers: []string{"m3"}},
	)
	got := gatewayFilter(makePlan(spec, machine{UplinkMTU: 1500, Gretap: true})).String()
	want := `chain gateway-in hook prerouting priority 0 policy accept
  iifname "btvx1" ether saddr 02:62:74:00:00:01 drop
  iifname "btvx1" ether daddr 02:62:74:00:00:01 drop
  iifname "btvx1" arp daddr ip 10.10.1.1 drop
  iifname "btgt300-*" ether saddr 02:62:74:00:01:2c drop
  iifname "btgt300-*" ether daddr 02:62:74:00:01:2c drop
  iifname "btgt300-*" arp daddr ip 10.10.3.1 drop
chain gateway-forward hook forward priority 0 policy accept
  oifname "btvx1" ether saddr 02:62:74:00:00:01 drop
  oifname "btvx1" arp daddr ip 10.10.1.1 drop
  oifname "btgt300-*" ether saddr 02:62:74:00:01:2c drop
  oifname "btgt300-*" arp daddr ip 10.10.3.1 drop
chain gateway-output hook output priority 0 policy accept
  oifname "btvx1" ether saddr 02:62:74:00:00:01 drop
  oifname "btvx1" arp daddr ip 10.10.1.1 drop
  oifname "btgt300-*" ether saddr 02:62:74:00:01:2c drop
  oifname "btgt300-*" arp daddr ip 10.10.3.1 drop
`
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("gateway filter (-want +got):\n%s", diff)
	}
	if got := gatewayFilter(makePlan(testSpec(), machine{})); len(got.Chains) != 3 || len(got.Chains[0].Rules)+len(got.Chains[1].Rules)+len(got.Chains[2].Rules) != 0 {
		t.Errorf("no networks: %v, want the three chains and no rule", got)
	}
}
