package testbed

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/lab/sim"
	"github.com/google/go-cmp/cmp"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func fakeLab(n int) *sim.Lab {
	l := &sim.Lab{Name: "t", Underlay: sim.DefaultUnderlay}
	for i := 1; i <= n; i++ {
		l.Machines = append(l.Machines, &sim.Machine{Name: "m" + string(rune('0'+i)), Index: i, Addr: sim.HostAddr(sim.DefaultUnderlay, i)})
	}
	return l
}

func newKey(t *testing.T) string {
	t.Helper()
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey().String()
}

func TestSpecs(t *testing.T) {
	l := fakeLab(3)
	keys := map[string]string{"m1": newKey(t), "m2": newKey(t), "m3": newKey(t)}
	mesh := Mesh{Networks: []helperapi.Network{
		{Name: "blue", ID: 1, Subnet: netip.MustParsePrefix("10.10.1.0/24"), Tunnel: helperapi.TunnelVXLAN},
		{Name: "green", ID: 2, Tunnel: helperapi.TunnelAuto, Peers: []string{"m1", "m3"}},
	}}
	specs, err := Specs(l, mesh, keys)
	if err != nil {
		t.Fatal(err)
	}
	got := specs["m2"]
	want := helperapi.Spec{
		Mesh: helperapi.Mesh{Address: netip.MustParsePrefix("10.99.0.2/16"), ListenPort: 51820},
		Peers: []helperapi.Peer{
			{Name: "m1", PublicKey: keys["m1"], Endpoint: "10.250.0.1:51820", MeshIP: netip.MustParseAddr("10.99.0.1")},
			{Name: "m3", PublicKey: keys["m3"], Endpoint: "10.250.0.3:51820", MeshIP: netip.MustParseAddr("10.99.0.3")},
		},
		Networks: []helperapi.Network{
			{Name: "blue", ID: 1, Subnet: netip.MustParsePrefix("10.10.1.0/24"), Tunnel: helperapi.TunnelVXLAN, Peers: []string{"m1", "m3"}},
		},
	}
	cmpAddr := cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
	cmpPrefix := cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })
	if diff := cmp.Diff(want, got, cmpAddr, cmpPrefix); diff != "" {
		t.Errorf("spec for m2 mismatch (-want +got):\n%s", diff)
	}
	// A machine named in a network's peers does not list itself; one not
	// named does not get the network (m2 above).
	if got := specs["m1"].Networks[1].Peers; !cmp.Equal(got, []string{"m3"}) {
		t.Errorf("m1's green peers = %v, want [m3]", got)
	}
}

func TestSpecsMissingKey(t *testing.T) {
	l := fakeLab(2)
	_, err := Specs(l, Mesh{}, map[string]string{"m1": newKey(t)})
	if err == nil || !strings.Contains(err.Error(), `machine "m2": no public key`) {
		t.Errorf("Specs without m2's key: %v, want an error naming m2", err)
	}
}

func TestSpecsNAT(t *testing.T) {
	l := fakeLab(1)
	r := &sim.Router{Name: "r1", Addr: sim.HostAddr(sim.DefaultUnderlay, 254), LAN: sim.HostAddr(sim.DefaultLAN, 1)}
	for j := 1; j <= 2; j++ {
		l.Machines = append(l.Machines, &sim.Machine{Name: "m" + string(rune('1'+j)), Index: 1 + j, Addr: sim.HostAddr(sim.DefaultLAN, 1+j), Router: r})
	}
	keys := map[string]string{"m1": newKey(t), "m2": newKey(t), "m3": newKey(t)}
	specs, err := Specs(l, Mesh{}, keys)
	if err != nil {
		t.Fatal(err)
	}
	type peerView struct {
		Endpoint  string
		Keepalive int
		Via       string
	}
	view := func(s helperapi.Spec) map[string]peerView {
		v := map[string]peerView{}
		for _, p := range s.Peers {
			v[p.Name] = peerView{p.Endpoint, p.Keepalive, p.Via}
		}
		return v
	}
	tests := []struct {
		machine string
		want    map[string]peerView
	}{
		// The public machine cannot reach into the LAN: no endpoints.
		{"m1", map[string]peerView{"m2": {}, "m3": {}}},
		// Behind NAT: the public machine with a keepalive, the other
		// machine behind NAT through it.
		{"m2", map[string]peerView{"m1": {"10.250.0.1:51820", helperapi.NATKeepalive, ""}, "m3": {"", 0, "m1"}}},
		{"m3", map[string]peerView{"m1": {"10.250.0.1:51820", helperapi.NATKeepalive, ""}, "m2": {"", 0, "m1"}}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, view(specs[tt.machine])); diff != "" {
			t.Errorf("%s's peers mismatch (-want +got):\n%s", tt.machine, diff)
		}
	}
	if !specs["m1"].Mesh.Relay {
		t.Error("m1 does not relay between the machines behind NAT")
	}
	if got := specs["m3"].Mesh.Address.String(); got != "10.99.0.3/16" {
		t.Errorf("m3's mesh address = %s, want 10.99.0.3/16", got)
	}
}
