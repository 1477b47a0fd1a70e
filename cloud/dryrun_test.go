package cloud

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
)

// A dry run asks every machine for its plan and writes nothing: the
// inventory is byte-identical, no machine applied or prepared anything,
// and a machine away is said to be away while the others answer.
func TestDryRunChangesNothing(t *testing.T) {
	c, fc := newFakeCloud(t, 3)
	addAll(t, c, 3)
	before, err := os.ReadFile(c.Path())
	if err != nil {
		t.Fatal(err)
	}
	applies, prepares := map[string]int{}, map[string]int{}
	for a, m := range fc.machines {
		applies[a], prepares[a] = m.applies, m.prepares
	}
	fc.down["192.0.2.3"] = true
	c.forget("m3")
	ctx := context.Background()
	check := func(what string, d DryRun, err error, wantSteps string) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		after, _ := os.ReadFile(c.Path())
		if !bytes.Equal(before, after) {
			t.Errorf("%s: the inventory changed", what)
		}
		for a, m := range fc.machines {
			if m.applies != applies[a] || m.prepares != prepares[a] {
				t.Errorf("%s: machine %s applied or prepared", what, a)
			}
		}
		got := map[string]string{}
		for _, md := range d.Machines {
			switch {
			case md.Away:
				got[md.Machine] = "away"
			case md.Err != nil:
				got[md.Machine] = "error: " + md.Err.Error()
			default:
				var cmds []string
				for _, s := range md.Steps {
					cmds = append(cmds, s.Commands...)
				}
				got[md.Machine] = strings.Join(cmds, "; ")
			}
		}
		if got["m3"] != "away" || !strings.Contains(got["m1"], wantSteps) || !strings.Contains(got["m2"], wantSteps) {
			t.Errorf("%s: plans %q; want m3 away and m1, m2 with %q", what, got, wantSteps)
		}
	}
	n, d, err := c.DryRunCreateNetwork(ctx, NewNetwork{Name: "blue"})
	check("network create", d, err, "ip link add name btbr1 type bridge")
	if n.ID != 1 || d.Generation != 4 {
		t.Errorf("network %+v at generation %d, want id 1 at generation 4", n, d.Generation)
	}
	if _, _, err := c.CreateNetwork(ctx, NewNetwork{Name: "blue"}, nil); err != nil {
		t.Fatal(err)
	}
	if before, err = os.ReadFile(c.Path()); err != nil {
		t.Fatal(err)
	}
	for a, m := range fc.machines {
		applies[a], prepares[a] = m.applies, m.prepares
	}
	d, err = c.DryRunSetEgress(ctx, "blue", true)
	check("network set --egress", d, err, "btbr1")
	d, err = c.DryRunRemoveNetwork(ctx, "blue")
	check("network remove", d, err, "")
	for _, md := range d.Machines {
		if md.Machine != "m3" && len(md.Steps) != 0 {
			t.Errorf("network remove: %s would still add %+v", md.Machine, md.Steps)
		}
	}
	if _, _, err := c.DryRunCreateNetwork(ctx, NewNetwork{Name: "blue"}); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("a dry run of a refused change: %v, want the refusal", err)
	}
}

// machine remove's dry run asks the machine for its VMs' removal and its
// teardown, the others for their new specs; with force the machine is not
// asked at all. vm remove's asks the VM's machine for the VM's removal.
func TestDryRunRemoveMachineAndVM(t *testing.T) {
	c, fc := newFakeCloud(t, 2)
	addAll(t, c, 2)
	ctx := context.Background()
	if _, _, err := c.CreateNetwork(ctx, NewNetwork{Name: "blue"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateVM(ctx, NewVM{Name: "web", Machine: "m2", Network: "blue", Image: "debian-12"}, nil, nil); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(c.Path())
	asked := func(d DryRun) []string {
		var out []string
		for _, md := range d.Machines {
			out = append(out, md.Machine+": "+md.What)
		}
		return out
	}
	d, err := c.DryRunRemoveMachine(ctx, "m2", false)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"m1: apply generation 5", "m2: vm remove web", "m2: tear down its networks and mesh"}
	if got := asked(d); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("machine remove asked %q, want %q", got, want)
	}
	d, err = c.DryRunRemoveMachine(ctx, "m2", true)
	if err != nil {
		t.Fatal(err)
	}
	if got := asked(d); strings.Join(got, "|") != "m1: apply generation 5" {
		t.Errorf("machine remove --force asked %q, want only m1", got)
	}
	d, err = c.DryRunVMAction(ctx, "web", "remove")
	if err != nil {
		t.Fatal(err)
	}
	want = []string{"m1: apply generation 5", "m2: vm remove web", "m2: apply generation 5"}
	if got := asked(d); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("vm remove asked %q, want %q", got, want)
	}
	if d, err = c.DryRunVMAction(ctx, "web", "stop"); err != nil || len(d.Machines) != 1 || d.Generation != 0 {
		t.Errorf("vm stop: %+v, %v; want only m2 asked, no generation", d, err)
	}
	after, _ := os.ReadFile(c.Path())
	if !bytes.Equal(before, after) || len(fc.machines["192.0.2.2"].vms) != 1 {
		t.Errorf("a dry run changed the inventory or removed the VM")
	}
}
