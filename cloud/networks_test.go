package cloud

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/inventory"
)

func TestNetworksMTUProblem(t *testing.T) {
	built := func(name string, mtu int) MachineStatus {
		return MachineStatus{Name: name, Facts: helperapi.Facts{Networks: []helperapi.NetworkReport{{Name: "blue", MTU: mtu, Tunnel: "gretap"}}}}
	}
	inv := &inventory.Inventory{Networks: []inventory.Network{{Name: "blue", ID: 1,
		Subnet: netip.MustParsePrefix("10.20.0.0/24"), Machines: []string{"m1", "m2", "m3"}}}}
	tests := []struct {
		name     string
		machines []MachineStatus
		mtu      int
		problem  []string // all in the problem; none: no problem
	}{
		{name: "same everywhere", machines: []MachineStatus{built("m1", 1378), built("m2", 1378), built("m3", 1378)}, mtu: 1378},
		{name: "one away", machines: []MachineStatus{built("m1", 1378), {Name: "m2"}, built("m3", 1378)}, mtu: 1378},
		{name: "one uplink smaller", machines: []MachineStatus{built("m1", 1378), built("m2", 1278), built("m3", 1378)}, mtu: 1378,
			problem: []string{"1278 on m2", "1378 on m1, m3", "larger than 1278 are lost on the way to m2", "uplink_mtu"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := Networks(inv, tt.machines)
			if len(ns) != 1 || ns[0].MTU != tt.mtu {
				t.Fatalf("networks %+v; want blue at MTU %d", ns, tt.mtu)
			}
			if len(tt.problem) == 0 && ns[0].Problem != "" {
				t.Errorf("problem %q; want none", ns[0].Problem)
			}
			for _, want := range tt.problem {
				if !strings.Contains(ns[0].Problem, want) {
					t.Errorf("problem %q; want it to say %q", ns[0].Problem, want)
				}
			}
		})
	}
}
