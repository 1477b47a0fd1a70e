package plumbing

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/google/go-cmp/cmp"
)

// The egress chains: replies only into bridges, out of an egress network's
// bridge to the uplink only, masquerade by subnet; a network without
// egress (or a machine without an uplink) gets the drops and nothing else.
func TestEgressPlan(t *testing.T) {
	blue := helperapi.Network{Name: "blue", ID: 1, Subnet: netip.MustParsePrefix("10.10.1.0/24"), Peers: []string{"m2"}, Egress: true}
	red := helperapi.Network{Name: "red", ID: 7, Subnet: netip.MustParsePrefix("10.10.7.0/24"), Peers: []string{"m3"}}
	// Without egress: no nat chain and no rule that asks conntrack.
	closed := `chain egress hook forward priority 10 policy accept
  iifname != "btbr*" oifname "btbr*" drop
  iifname "btbr*" oifname != "btbr*" drop
`
	tests := []struct {
		name    string
		spec    helperapi.Spec
		machine machine
		want    string
		bridges map[string]bool
	}{{
		name: "blue with egress, red without", spec: testSpec(blue, red), machine: machine{Uplink: "eth0"},
		want: `chain egress hook forward priority 10 policy accept
  oifname "btbr*" ct state established,related accept
  iifname != "btbr*" oifname "btbr*" drop
  iifname "btbr1" oifname "eth0" accept
  iifname "btbr*" oifname != "btbr*" drop
chain egress-nat type nat hook postrouting priority 100 policy accept
  oifname "eth0" ip saddr 10.10.1.0/24 masquerade
`,
		bridges: map[string]bool{"btbr1": true, "btbr7": false},
	}, {
		name: "no network with egress", spec: testSpec(red), machine: machine{Uplink: "eth0"},
		want: closed, bridges: map[string]bool{"btbr7": false},
	}, {
		name: "egress but no uplink found", spec: testSpec(blue), machine: machine{},
		want: closed, bridges: map[string]bool{"btbr1": true},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fw := makeFirewall(tt.spec, makePlan(tt.spec, tt.machine))
			fw.Chains = slices.DeleteFunc(fw.Chains, func(c fwChain) bool { return !isEgressChain(c) })
			if diff := cmp.Diff(tt.want, fw.String()); diff != "" {
				t.Errorf("egress chains (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.bridges, egressBridges(tt.spec)); diff != "" {
				t.Errorf("bridge forwarding (-want +got):\n%s", diff)
			}
		})
	}
}
