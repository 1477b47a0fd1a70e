package plumbing

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/google/go-cmp/cmp"
)

func TestFirewallPlan(t *testing.T) {
	blue := helperapi.Network{Name: "blue", ID: 1, Peers: []string{"m2", "m3"}}
	red := helperapi.Network{Name: "red", ID: 7, Tunnel: helperapi.TunnelVXLAN, Peers: []string{"m3"}}
	lonely := helperapi.Network{Name: "lonely", ID: 9, Tunnel: helperapi.TunnelVXLAN}
	relay := testSpec(red)
	relay.Mesh.Relay = true
	tests := []struct {
		name    string
		spec    helperapi.Spec
		machine machine
		want    string
	}{{
		name: "mesh only: no tunnel port is closed, bridges reach nothing, the mesh forwards nothing",
		spec: testSpec(),
		want: `chain input hook input priority 0 policy accept
  iifname "btbr*" drop
chain forward hook forward priority 0 policy accept
  iifname "btwg0" drop
  oifname "btwg0" drop
`,
	}, {
		name: "vxlan: each network's VNI from its own members over WireGuard, the port closed to all else",
		spec: testSpec(blue, red),
		want: `chain input hook input priority 0 policy accept
  iifname "btwg0" ip saddr 10.99.0.2 udp dport 4789 vxlan vni 1 accept
  iifname "btwg0" ip saddr 10.99.0.3 udp dport 4789 vxlan vni 1 accept
  iifname "btwg0" ip saddr 10.99.0.3 udp dport 4789 vxlan vni 7 accept
  udp dport 4789 drop
  iifname "btbr*" drop
chain forward hook forward priority 0 policy accept
  iifname "btwg0" drop
  oifname "btwg0" drop
  iifname "btbr1" oifname "btbr*" oifname != "btbr1" drop
  iifname "btbr7" oifname "btbr*" oifname != "btbr7" drop
chain notrack-in hook prerouting priority -300 policy accept
  iifname "btwg0" udp dport 4789 notrack
chain notrack-out hook output priority -300 policy accept
  oifname "btwg0" udp dport 4789 notrack
`,
	}, {
		name:    "gretap: each network's key from its own members over WireGuard, GRE closed to all else",
		spec:    testSpec(blue, red),
		machine: machine{Gretap: true},
		want: `chain input hook input priority 0 policy accept
  iifname "btwg0" ip saddr 10.99.0.2 gre key 1 accept
  iifname "btwg0" ip saddr 10.99.0.3 gre key 1 accept
  iifname "btwg0" ip saddr 10.99.0.3 udp dport 4789 vxlan vni 7 accept
  udp dport 4789 drop
  meta l4proto gre drop
  iifname "btbr*" drop
chain forward hook forward priority 0 policy accept
  iifname "btwg0" drop
  oifname "btwg0" drop
  iifname "btbr1" oifname "btbr*" oifname != "btbr1" drop
  iifname "btbr7" oifname "btbr*" oifname != "btbr7" drop
chain notrack-in hook prerouting priority -300 policy accept
  iifname "btwg0" udp dport 4789 notrack
chain notrack-out hook output priority -300 policy accept
  oifname "btwg0" udp dport 4789 notrack
`,
	}, {
		name: "a network with no member peer takes no tunnel packet at all",
		spec: testSpec(lonely),
		want: `chain input hook input priority 0 policy accept
  udp dport 4789 drop
  iifname "btbr*" drop
chain forward hook forward priority 0 policy accept
  iifname "btwg0" drop
  oifname "btwg0" drop
  iifname "btbr9" oifname "btbr*" oifname != "btbr9" drop
chain notrack-in hook prerouting priority -300 policy accept
  iifname "btwg0" udp dport 4789 notrack
chain notrack-out hook output priority -300 policy accept
  oifname "btwg0" udp dport 4789 notrack
`,
	}, {
		name: "a relay forwards WireGuard to WireGuard and nothing else",
		spec: relay,
		want: `chain input hook input priority 0 policy accept
  iifname "btwg0" ip saddr 10.99.0.3 udp dport 4789 vxlan vni 7 accept
  udp dport 4789 drop
  iifname "btbr*" drop
chain forward hook forward priority 0 policy accept
  iifname "btwg0" oifname "btwg0" accept
  iifname "btwg0" drop
  oifname "btwg0" drop
  iifname "btbr7" oifname "btbr*" oifname != "btbr7" drop
chain notrack-in hook prerouting priority -300 policy accept
  iifname "btwg0" udp dport 4789 notrack
chain notrack-out hook output priority -300 policy accept
  oifname "btwg0" udp dport 4789 notrack
`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fw := makeFirewall(tt.spec, makePlan(tt.spec, tt.machine))
			fw.Chains = slices.DeleteFunc(fw.Chains, isEgressChain) // TestEgressPlan's
			got := fw.String()
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("firewall (-want +got):\n%s", diff)
			}
		})
	}
}

// A peer reached through a relay sends its tunnel packets with its own
// mesh address: it is a member like any other.
func TestFirewallRelayedPeer(t *testing.T) {
	spec := testSpec(helperapi.Network{Name: "blue", ID: 1, Tunnel: helperapi.TunnelVXLAN, Peers: []string{"m4"}})
	spec.Peers = append(spec.Peers, helperapi.Peer{Name: "m4", Via: "m2", MeshIP: netip.MustParseAddr("10.99.0.4")})
	got := makeFirewall(spec, makePlan(spec, machine{})).Chains[0].Rules[0].String()
	if want := `iifname "btwg0" ip saddr 10.99.0.4 udp dport 4789 vxlan vni 1 accept`; got != want {
		t.Errorf("first input rule = %s, want %s", got, want)
	}
}

// Once a network has a gateway on the machine, its bridge reaches the
// machine there for ICMP and DNS, and with replies to connections the
// machine opened (vm proxy), and for nothing else; another network's
// bridge still reaches nothing.
func TestFirewallGateway(t *testing.T) {
	gw := netip.MustParseAddr("10.10.1.1")
	got := firewallFor(fwInput{Networks: []fwNetwork{
		{Bridge: "btbr1", Tunnel: KindVXLAN, Key: 1, Port: VXLANPort, Gateway: gw},
		{Bridge: "btbr2", Tunnel: KindVXLAN, Key: 2, Port: VXLANPort},
	}}).Chains[0].String()
	want := `chain input hook input priority 0 policy accept
  udp dport 4789 drop
  iifname "btbr1" ip daddr 10.10.1.1 meta l4proto icmp accept
  iifname "btbr1" ip daddr 10.10.1.1 udp dport 53 accept
  iifname "btbr1" ip daddr 10.10.1.1 tcp dport 53 accept
  iifname "btbr1" ip daddr 10.10.1.1 tcp flags & ack == ack accept
  iifname "btbr*" drop
`
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("input chain (-want +got):\n%s", diff)
	}
}

func (c fwChain) String() string {
	return fwTable{Chains: []fwChain{c}}.String()
}

func TestFirewallDiff(t *testing.T) {
	spec := testSpec(helperapi.Network{Name: "blue", ID: 1, Peers: []string{"m2", "m3"}})
	want := makeFirewall(spec, makePlan(spec, machine{}))
	edit := func(f func(t *fwTable)) *fwTable {
		t := fwTable{Chains: slices.Clone(want.Chains)}
		for i := range t.Chains {
			t.Chains[i].Rules = slices.Clone(t.Chains[i].Rules)
		}
		f(&t)
		return &t
	}
	input := want.Chains[0].Rules
	tests := []struct {
		name string
		have *fwTable
		want []string
	}{
		{"same", edit(func(*fwTable) {}), nil},
		{"no table", nil, []string{"table inet butter missing"}},
		{"dormant", edit(func(t *fwTable) { t.Dormant = true }), []string{"table inet butter is dormant"}},
		{"chain gone", edit(func(t *fwTable) { t.Chains = slices.Delete(t.Chains, 1, 2) }), []string{"chain forward missing"}},
		{"extra chain", edit(func(t *fwTable) { t.Chains = append(t.Chains, fwChain{Name: "mine", Hook: "none", Policy: "none"}) }),
			[]string{"extra chain mine"}},
		{"policy", edit(func(t *fwTable) { t.Chains[0].Policy = VerdictDrop }),
			[]string{"chain input has hook input priority 0 policy drop, want hook input priority 0 policy accept"}},
		{"rule gone", edit(func(t *fwTable) { t.Chains[0].Rules = slices.Delete(t.Chains[0].Rules, 1, 2) }),
			[]string{"input: missing rule: " + input[1].String()}},
		{"rule added", edit(func(t *fwTable) {
			t.Chains[0].Rules = slices.Insert(t.Chains[0].Rules, 0, fwRule{Proto: "tcp", DPort: 22, Verdict: VerdictAccept})
		}), []string{"input: extra rule: tcp dport 22 accept"}},
		{"rule changed", edit(func(t *fwTable) { t.Chains[0].Rules[0].SAddr = netip.MustParseAddr("10.99.0.9") }),
			[]string{"input: missing rule: " + input[0].String(),
				`input: extra rule: iifname "btwg0" ip saddr 10.99.0.9 udp dport 4789 vxlan vni 1 accept`}},
		{"unknown rule", edit(func(t *fwTable) { t.Chains[1].Rules[0] = fwRule{Unknown: "counter"} }),
			[]string{`forward: missing rule: iifname "btwg0" drop`, "forward: extra rule: unknown rule: counter"}},
		{"order", edit(func(t *fwTable) { r := t.Chains[0].Rules; r[0], r[len(r)-1] = r[len(r)-1], r[0] }),
			[]string{"input: rules out of order"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := fwDiff(want, tt.have)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("diff (-want +got):\n%s", diff)
			}
		})
	}
}

// fakeRules is an in-memory nftables: the helper's table, and others
// (by "family name") that stand for other programs' tables, which must
// never change.
type fakeRules struct {
	butter *fwTable
	others map[string]string
	writes int
}

func newFakeRules() *fakeRules {
	return &fakeRules{others: map[string]string{"inet filter": "someone else's rules", "bridge " + FirewallTable: "not ours either"}}
}

func cloneTable(t *fwTable) *fwTable {
	if t == nil {
		return nil
	}
	c := &fwTable{Dormant: t.Dormant, Chains: slices.Clone(t.Chains)}
	for i := range c.Chains {
		c.Chains[i].Rules = slices.Clone(c.Chains[i].Rules)
	}
	return c
}

func (f *fakeRules) Table(ctx context.Context) (*fwTable, error) { return cloneTable(f.butter), nil }

func (f *fakeRules) Write(ctx context.Context, t fwTable) error {
	f.writes++
	f.butter = cloneTable(&t)
	return nil
}

func (f *fakeRules) Delete(ctx context.Context) error {
	f.butter = nil
	return nil
}

func (f *fakeRules) dump() string {
	var b strings.Builder
	if f.butter != nil {
		fmt.Fprintf(&b, "inet %s:\n%s", FirewallTable, f.butter)
	}
	for _, k := range slices.Sorted(maps.Keys(f.others)) {
		fmt.Fprintf(&b, "%s: %s\n", k, f.others[k])
	}
	return b.String()
}

// fwDamageKinds are what fwDamage can do to the helper's table, by name.
var fwDamageKinds = []string{"delete table", "delete rule", "add rule", "foreign rule", "change rule", "policy", "dormant", "delete chain", "swap rules"}

// fwDamage does to the fake what a person with nft might, and says which
// of fwDamageKinds it did ("" when there was nothing to damage).
func fwDamage(rng *rand.Rand, f *fakeRules) string {
	t := f.butter
	if t == nil || len(t.Chains) == 0 {
		return ""
	}
	c := &t.Chains[rng.IntN(len(t.Chains))]
	what := fwDamageKinds[rng.IntN(len(fwDamageKinds))]
	switch what {
	case "delete table":
		f.butter = nil
	case "delete rule", "change rule":
		if len(c.Rules) == 0 {
			return ""
		}
		i := rng.IntN(len(c.Rules))
		if what == "change rule" {
			c.Rules[i].Verdict = VerdictAccept
			c.Rules[i].IIF = "eth0"
		} else {
			c.Rules = slices.Delete(c.Rules, i, i+1)
		}
	case "add rule":
		c.Rules = append(c.Rules, fwRule{Proto: "tcp", DPort: 22, Verdict: VerdictAccept})
	case "foreign rule":
		c.Rules = slices.Insert(c.Rules, 0, fwRule{Unknown: "counter, jump"})
	case "policy":
		c.Policy = VerdictDrop
	case "dormant":
		t.Dormant = true
	case "delete chain":
		t.Chains = slices.DeleteFunc(t.Chains, func(o fwChain) bool { return o.Name == c.Name })
	case "swap rules":
		if len(c.Rules) < 2 {
			return ""
		}
		c.Rules[0], c.Rules[1] = c.Rules[1], c.Rules[0]
	}
	return what
}

func TestConvergeFirewall(t *testing.T) {
	spec := testSpec(helperapi.Network{Name: "blue", ID: 1, Peers: []string{"m2", "m3"}})
	want := makeFirewall(spec, makePlan(spec, machine{}))
	f := newFakeRules()
	others := fmt.Sprint(f.others)
	ctx := context.Background()
	changes, err := convergeFirewall(ctx, f, want)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"firewall: table inet butter missing"}, changes); diff != "" {
		t.Errorf("first apply (-want +got):\n%s", diff)
	}
	if got := f.butter.String(); got != want.String() {
		t.Errorf("table after the first apply:\n%s\nwant:\n%s", got, want)
	}
	for range 3 {
		if changes, err := convergeFirewall(ctx, f, want); err != nil || len(changes) != 0 {
			t.Errorf("apply again changed %q (err %v), want nothing", changes, err)
		}
	}
	if f.writes != 1 {
		t.Errorf("%d writes, want 1: a table that matches is left alone", f.writes)
	}
	f.butter.Chains[0].Rules = f.butter.Chains[0].Rules[1:]
	changes, err = convergeFirewall(ctx, f, want)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"firewall: input: missing rule: " + want.Chains[0].Rules[0].String()}, changes); diff != "" {
		t.Errorf("apply after a rule was deleted (-want +got):\n%s", diff)
	}
	if got := fmt.Sprint(f.others); got != others {
		t.Errorf("other tables changed: %s, were %s", got, others)
	}
}

// A write the kernel takes otherwise than meant is an error, not a table
// written again on every apply.
func TestConvergeFirewallReadsBack(t *testing.T) {
	want := makeFirewall(testSpec(), makePlan(testSpec(), machine{}))
	_, err := convergeFirewall(context.Background(), lossyRules{newFakeRules()}, want)
	if err == nil || !strings.Contains(err.Error(), "reads back otherwise") {
		t.Fatalf("err = %v, want one saying the table reads back otherwise", err)
	}
}

// lossyRules loses every table's last rule.
type lossyRules struct{ *fakeRules }

func (l lossyRules) Write(ctx context.Context, t fwTable) error {
	c := cloneTable(&t)
	c.Chains[0].Rules = c.Chains[0].Rules[:len(c.Chains[0].Rules)-1]
	return l.fakeRules.Write(ctx, *c)
}
