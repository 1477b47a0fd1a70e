package cloud

import (
	"context"
	"net/netip"
	"slices"
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

// network set --egress is a change like any: a new generation whose specs
// carry the flag to every member (and the desired-state copy with it);
// setting what the network has already contacts no machine; the list
// shows the gateway and the flag.
func TestSetEgress(t *testing.T) {
	ctx := context.Background()
	c, fc := newFakeCloud(t, 2)
	addAll(t, c, 2)
	if _, _, err := c.CreateNetwork(ctx, NewNetwork{Name: "blue", Egress: true}, nil); err != nil {
		t.Fatal(err)
	}
	egress := func(want bool) {
		t.Helper()
		for _, m := range fc.machines {
			s := m.spec
			if len(s.Networks) != 1 || s.Networks[0].Egress != want || len(s.Desired.Networks) != 1 || s.Desired.Networks[0].Egress != want {
				t.Errorf("%s: networks %+v, desired %+v; want egress %v", m.name, s.Networks, s.Desired.Networks, want)
			}
		}
	}
	egress(true)
	gen := fc.machines["192.0.2.1"].spec.Generation
	if _, err := c.SetEgress(ctx, "blue", false, nil); err != nil {
		t.Fatal(err)
	}
	egress(false)
	if got := fc.machines["192.0.2.1"].spec.Generation; got != gen+1 {
		t.Errorf("generation %d after set, want %d", got, gen+1)
	}
	applies := fc.machines["192.0.2.1"].applies
	if _, err := c.SetEgress(ctx, "blue", false, nil); err != nil || fc.machines["192.0.2.1"].applies != applies {
		t.Errorf("setting egress off again: %v, %d applies (was %d); want nothing done", err, fc.machines["192.0.2.1"].applies, applies)
	}
	if _, err := c.SetEgress(ctx, "nosuch", true, nil); err == nil {
		t.Error("SetEgress on a network that does not exist succeeded")
	}
	inv, err := c.Inventory()
	if err != nil {
		t.Fatal(err)
	}
	ns := Networks(inv, nil)
	if len(ns) != 1 || ns[0].Gateway != "10.100.0.1" || ns[0].Egress {
		t.Errorf("Networks = %+v, want blue with gateway 10.100.0.1 and egress off", ns)
	}
}

// A machine's notes come from its facts: userspace WireGuard, VMs without
// KVM; an older helper (no accelerator) or unproven KVM says nothing.
func TestMachineNotes(t *testing.T) {
	for _, tt := range []struct {
		facts helperapi.Facts
		want  []string
	}{
		{helperapi.Facts{KernelWireGuard: true, Accel: helperapi.AccelKVM}, nil},
		{helperapi.Facts{KernelWireGuard: true}, nil},
		{helperapi.Facts{Accel: helperapi.AccelKVM}, []string{NoteUserspaceWireGuard}},
		{helperapi.Facts{KernelWireGuard: true, Accel: helperapi.AccelTCG}, []string{NoteTCG}},
		{helperapi.Facts{Accel: helperapi.AccelTCG}, []string{NoteUserspaceWireGuard, NoteTCG}},
	} {
		if got := notes(tt.facts); !slices.Equal(got, tt.want) {
			t.Errorf("notes(%+v) = %q; want %q", tt.facts, got, tt.want)
		}
	}
}
