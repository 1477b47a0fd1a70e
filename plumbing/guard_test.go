package plumbing

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/google/go-cmp/cmp"
)

// guardSpec is m1's spec in a cloud with VMs on m1 (web on blue, db on
// red), on m2 (far, on blue), and one on m1 in a network m1 is no member
// of (stray).
func guardSpec() helperapi.Spec {
	blue := helperapi.Network{Name: "blue", ID: 1, Subnet: netip.MustParsePrefix("10.10.1.0/24"), Peers: []string{"m2"}}
	red := helperapi.Network{Name: "red", ID: 2, Subnet: netip.MustParsePrefix("10.10.2.0/24")}
	s := testSpec(blue, red)
	s.Desired = &helperapi.Desired{
		Machines: []helperapi.DesiredMachine{
			{Name: "m1", MeshIP: netip.MustParseAddr("10.99.0.1")},
			{Name: "m2", MeshIP: netip.MustParseAddr("10.99.0.2")},
		},
		VMs: []helperapi.DesiredVM{
			{Name: "web", Machine: "m1", Network: "blue", Address: netip.MustParseAddr("10.10.1.2")},
			{Name: "far", Machine: "m2", Network: "blue", Address: netip.MustParseAddr("10.10.1.3")},
			{Name: "db", Machine: "m1", Network: "red", Address: netip.MustParseAddr("10.10.2.2")},
			{Name: "stray", Machine: "m1", Network: "green", Address: netip.MustParseAddr("10.10.3.2")},
		},
	}
	return s
}

// The guard holds this machine's VMs, and only them, to their own MAC and
// address, drops DHCP server replies and everything but IPv4 and ARP.
func TestGuardPlan(t *testing.T) {
	var got strings.Builder
	for _, r := range guardFor(guardVMs(guardSpec())) {
		got.WriteString(r.String() + "\n")
	}
	each := `iifname "PORT" ether saddr != MAC drop
iifname "PORT" arp saddr ether != MAC drop
iifname "PORT" arp saddr ip != { ADDR, 0.0.0.0 } drop
iifname "PORT" ether type arp accept
iifname "PORT" ip saddr != ADDR drop
iifname "PORT" udp sport 67 drop
iifname "PORT" ether type ip accept
iifname "PORT" drop
`
	want := strings.NewReplacer("PORT", helperapi.VMPort("db"), "MAC", "52:54:00:0a:02:02", "ADDR", "10.10.2.2").Replace(each) +
		strings.NewReplacer("PORT", helperapi.VMPort("web"), "MAC", "52:54:00:0a:01:02", "ADDR", "10.10.1.2").Replace(each)
	if diff := cmp.Diff(want, got.String()); diff != "" {
		t.Errorf("guard (-want +got):\n%s", diff)
	}
	// Without the desired state, or with this machine not in it, no VM is
	// known: no port is guarded.
	bare := guardSpec()
	bare.Desired = nil
	if vms := guardVMs(bare); len(vms) != 0 {
		t.Errorf("a spec without desired state guards %v", vms)
	}
	moved := guardSpec()
	moved.Mesh.Address = netip.MustParsePrefix("10.99.0.9/16")
	if vms := guardVMs(moved); len(vms) != 0 {
		t.Errorf("a machine not in the desired state guards %v", vms)
	}
}

// A network's bridge reaches the machine for ICMP and DNS to its own
// gateway (its subnet's first address) and for nothing else.
func TestFirewallGatewayFromSpec(t *testing.T) {
	s := guardSpec()
	got := makeFirewall(s, makePlan(s, machine{})).Chains[0].String()
	for _, want := range []string{
		`iifname "btbr1" ip daddr 10.10.1.1 meta l4proto icmp accept`,
		`iifname "btbr1" ip daddr 10.10.1.1 udp dport 53 accept`,
		`iifname "btbr1" ip daddr 10.10.1.1 tcp dport 53 accept`,
		`iifname "btbr2" ip daddr 10.10.2.1 meta l4proto icmp accept`,
	} {
		if !strings.Contains(got, want+"\n") {
			t.Errorf("input chain lacks %s:\n%s", want, got)
		}
	}
	if strings.Contains(got, "dport 67") || strings.Contains(got, "dport 22") {
		t.Errorf("input chain takes more than ICMP and DNS from a bridge:\n%s", got)
	}
	if !strings.HasSuffix(got, "  iifname \"btbr*\" drop\n") {
		t.Errorf("input chain does not end with the bridges' drop:\n%s", got)
	}
}

// The guard reports a missing table, a dormant one, an extra chain, a
// wrong header and wrong rules.
func TestGuardDiff(t *testing.T) {
	want := guardFor(guardVMs(guardSpec()))
	texts := func() []string {
		var s []string
		for _, r := range want {
			s = append(s, r.String())
		}
		return s
	}
	same := &guardHave{Chains: map[string]string{ChainGuard: guardHeader()}, Rules: map[string][]string{ChainGuard: texts()}}
	if d := guardDiff(want, same); len(d) != 0 {
		t.Errorf("same table: %v", d)
	}
	if d := guardDiff(want, nil); !cmp.Equal(d, []string{"table bridge butter-guard missing"}) {
		t.Errorf("no table: %v", d)
	}
	gone := &guardHave{Dormant: true, Chains: map[string]string{ChainGuard: "hook prerouting priority 0 policy accept", "x": ""},
		Rules: map[string][]string{ChainGuard: texts()[1:]}}
	d := guardDiff(want, gone)
	wantD := []string{"table bridge butter-guard is dormant", "extra chain x",
		"chain ports has hook prerouting priority 0 policy accept, want hook prerouting priority -200 policy accept",
		"ports: missing rule: " + want[0].String()}
	if diff := cmp.Diff(wantD, d); diff != "" {
		t.Errorf("damaged table (-want +got):\n%s", diff)
	}
}
