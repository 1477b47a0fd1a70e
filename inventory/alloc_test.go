package inventory

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/google/go-cmp/cmp"
)

func TestLookups(t *testing.T) {
	inv := sample()
	if m, ok := inv.Machine("beta"); !ok || m.Address != "beta.example.com" {
		t.Errorf("Machine(beta) = %+v, %v", m, ok)
	}
	if n, ok := inv.Network("green"); !ok || n.ID != 2 {
		t.Errorf("Network(green) = %+v, %v", n, ok)
	}
	if v, ok := inv.VM("db"); !ok || v.Machine != "beta" {
		t.Errorf("VM(db) = %+v, %v", v, ok)
	}
	for _, found := range []bool{
		func() bool { _, ok := inv.Machine("gamma"); return ok }(),
		func() bool { _, ok := inv.Network("red"); return ok }(),
		func() bool { _, ok := inv.VM("mail"); return ok }(),
	} {
		if found {
			t.Errorf("found something that is not there")
		}
	}
	// The pointers are into the inventory: changes stick.
	m, _ := inv.Machine("alpha")
	m.Port = 2200
	if inv.Machines[0].Port != 2200 {
		t.Errorf("Machine returned a copy")
	}
}

func machinesAt(ips ...string) []Machine {
	var ms []Machine
	for i, ip := range ips {
		m := Machine{Name: fmt.Sprintf("m%d", i), Address: "192.0.2.1", Port: 22}
		if ip != "" {
			m.MeshIP = netip.MustParseAddr(ip)
		}
		ms = append(ms, m)
	}
	return ms
}

func TestNextMeshIP(t *testing.T) {
	tests := []struct {
		name     string
		prefix   string
		machines []Machine
		want     string
		wantErr  string
	}{
		{name: "empty", prefix: "10.99.0.0/16", want: "10.99.0.1"},
		{name: "after the taken", prefix: "10.99.0.0/16", machines: machinesAt("10.99.0.1", "10.99.0.2"), want: "10.99.0.3"},
		{name: "a hole", prefix: "10.99.0.0/16", machines: machinesAt("10.99.0.1", "10.99.0.3"), want: "10.99.0.2"},
		{name: "machines without one are skipped", prefix: "10.99.0.0/16", machines: machinesAt("", "10.99.0.1"), want: "10.99.0.2"},
		{name: "crosses a byte", prefix: "10.99.0.0/23", machines: machinesAt(hostsFrom("10.99.0.1", 255)...), want: "10.99.1.0"},
		{name: "a /30 has two", prefix: "10.99.0.0/30", machines: machinesAt("10.99.0.1"), want: "10.99.0.2"},
		{name: "full: broadcast not handed out", prefix: "10.99.0.0/30", machines: machinesAt("10.99.0.1", "10.99.0.2"),
			wantErr: "mesh 10.99.0.0/30: every address is taken; use a larger mesh prefix"},
		{name: "no mesh", prefix: "", wantErr: `mesh prefix invalid Prefix: want an IPv4 range of /30 or larger`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv := New()
			inv.Mesh.Prefix = netip.Prefix{}
			if tt.prefix != "" {
				inv.Mesh.Prefix = netip.MustParsePrefix(tt.prefix)
			}
			inv.Machines = tt.machines
			got, err := inv.NextMeshIP()
			checkNext(t, got.String(), err, tt.want, tt.wantErr)
		})
	}
}

func hostsFrom(first string, n int) []string {
	a := netip.MustParseAddr(first)
	var out []string
	for range n {
		out = append(out, a.String())
		a = a.Next()
	}
	return out
}

func checkNext(t *testing.T, got string, err error, want, wantErr string) {
	t.Helper()
	if wantErr != "" {
		if err == nil || err.Error() != wantErr {
			t.Errorf("got %s, %v; want error %q", got, err, wantErr)
		}
		return
	}
	if err != nil || got != want {
		t.Errorf("got %s, %v; want %s", got, err, want)
	}
}

func TestNextNetworkID(t *testing.T) {
	tests := []struct {
		name    string
		ids     []int
		want    int
		wantErr string
	}{
		{name: "empty", want: 1},
		{name: "next", ids: []int{1, 2}, want: 3},
		{name: "a hole", ids: []int{3, 1}, want: 2},
		{name: "all taken", ids: seq(1, MaxNetworkID), wantErr: "every network ID up to 65535 is taken"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv := New()
			for _, id := range tt.ids {
				inv.Networks = append(inv.Networks, Network{ID: id})
			}
			got, err := inv.NextNetworkID()
			checkNext(t, fmt.Sprint(got), err, fmt.Sprint(tt.want), tt.wantErr)
		})
	}
}

func seq(from, to int) []int {
	var s []int
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

func TestNextVMAddress(t *testing.T) {
	vmsAt := func(network string, ips ...string) []VM {
		var vms []VM
		for i, ip := range ips {
			vms = append(vms, VM{Name: fmt.Sprintf("vm%d", i), Network: network, Address: netip.MustParseAddr(ip)})
		}
		return vms
	}
	tests := []struct {
		name    string
		subnet  string
		vms     []VM
		want    string
		wantErr string
	}{
		{name: "first skips the gateway", subnet: "10.100.0.0/24", want: "10.100.0.2"},
		{name: "after the taken", subnet: "10.100.0.0/24", vms: vmsAt("blue", "10.100.0.2", "10.100.0.3"), want: "10.100.0.4"},
		{name: "a hole", subnet: "10.100.0.0/24", vms: vmsAt("blue", "10.100.0.2", "10.100.0.4"), want: "10.100.0.3"},
		{name: "a VM given the gateway", subnet: "10.100.0.0/24", vms: vmsAt("blue", "10.100.0.1"), want: "10.100.0.2"},
		{name: "a /30 has one", subnet: "10.100.0.0/30", want: "10.100.0.2"},
		{name: "full: broadcast not handed out", subnet: "10.100.0.0/30", vms: vmsAt("blue", "10.100.0.2"),
			wantErr: `network "blue" subnet 10.100.0.0/30: every address is taken`},
		{name: "other networks' VMs do not count", subnet: "10.100.0.0/24", vms: vmsAt("green", "10.100.1.2"), want: "10.100.0.2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv := New()
			inv.Networks = []Network{{Name: "blue", Subnet: netip.MustParsePrefix(tt.subnet), ID: 1}}
			inv.VMs = tt.vms
			got, err := inv.NextVMAddress("blue")
			checkNext(t, got.String(), err, tt.want, tt.wantErr)
		})
	}
	if _, err := New().NextVMAddress("red"); err == nil || err.Error() != `network "red": no such network in the inventory` {
		t.Errorf("NextVMAddress(unknown) error = %v", err)
	}
}

func TestSuggestSubnet(t *testing.T) {
	tests := []struct {
		name    string
		mesh    string
		subnets []string
		want    string
		wantErr string
	}{
		{name: "empty", mesh: "10.99.0.0/16", want: "10.100.0.0/24"},
		{name: "next", mesh: "10.99.0.0/16", subnets: []string{"10.100.0.0/24", "10.100.1.0/24"}, want: "10.100.2.0/24"},
		{name: "a smaller subnet blocks its /24", mesh: "10.99.0.0/16", subnets: []string{"10.100.0.64/26"}, want: "10.100.1.0/24"},
		{name: "a larger one blocks many", mesh: "10.99.0.0/16", subnets: []string{"10.100.0.0/22"}, want: "10.100.4.0/24"},
		{name: "the mesh blocks", mesh: "10.100.0.0/17", want: "10.100.128.0/24"},
		{name: "full", mesh: "10.99.0.0/16", subnets: []string{"10.0.0.0/8"}, wantErr: "no free /24 in 10.100.0.0/16; choose a subnet yourself"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv := New()
			inv.Mesh.Prefix = netip.MustParsePrefix(tt.mesh)
			for i, s := range tt.subnets {
				inv.Networks = append(inv.Networks, Network{Name: fmt.Sprint("n", i), ID: i + 1, Subnet: netip.MustParsePrefix(s)})
			}
			got, err := inv.SuggestSubnet()
			checkNext(t, got.String(), err, tt.want, tt.wantErr)
		})
	}
}

// TestAllocationsValidate: what the helpers hand out passes Validate, as
// the core will use them.
func TestAllocationsValidate(t *testing.T) {
	inv := New()
	for _, name := range []string{"alpha", "beta", "gamma"} {
		ip, err := inv.NextMeshIP()
		if err != nil {
			t.Fatal(err)
		}
		inv.Machines = append(inv.Machines, Machine{Name: name, Address: name + ".example.com", Port: 22, MeshIP: ip})
	}
	for _, name := range []string{"blue", "green"} {
		id, err := inv.NextNetworkID()
		if err != nil {
			t.Fatal(err)
		}
		subnet, err := inv.SuggestSubnet()
		if err != nil {
			t.Fatal(err)
		}
		inv.Networks = append(inv.Networks, Network{Name: name, Subnet: subnet, ID: id, Tunnel: helperapi.TunnelAuto, Machines: []string{"alpha", "beta", "gamma"}})
	}
	for i := range 10 {
		network := []string{"blue", "green"}[i%2]
		a, err := inv.NextVMAddress(network)
		if err != nil {
			t.Fatal(err)
		}
		inv.VMs = append(inv.VMs, VM{Name: fmt.Sprint("vm", i), Machine: "alpha", Network: network, Address: a})
	}
	if err := inv.Validate(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range inv.VMs[:4] {
		got = append(got, v.Address.String())
	}
	if diff := cmp.Diff([]string{"10.100.0.2", "10.100.1.2", "10.100.0.3", "10.100.1.3"}, got); diff != "" {
		t.Errorf("VM addresses (-want +got):\n%s", diff)
	}
}
