package cloud

import (
	"bytes"
	"context"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/butter-cloud/butter/internal/testbed"
	"github.com/butter-cloud/butter/inventory"
	"github.com/butter-cloud/butter/remote"
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

// rotate-key's dry run makes no key and writes nothing: the machines to
// rotate say how they would make theirs, and every other machine's plan
// swaps the old key for a stand-in of the new one, shown by name. A named
// machine away fails it as the rotation would; with --all a machine away
// keeps its key (no stand-in for it anywhere).
func TestDryRunRotateKey(t *testing.T) {
	c, fc := newFakeCloud(t, 3)
	addAll(t, c, 3)
	ctx := context.Background()
	before, _ := os.ReadFile(c.Path())
	inv, _ := c.Inventory()
	key := map[string]string{}
	for _, m := range inv.Machines {
		key[m.Name] = m.PublicKey
	}
	scripts := func(d DryRun) map[string]string {
		out := map[string]string{}
		for _, md := range d.Machines {
			if md.Away {
				out[md.Machine] += "away\n"
				continue
			}
			out[md.Machine] += "# " + md.What + "\n"
			for _, s := range md.Steps {
				out[md.Machine] += strings.Join(s.Commands, "\n") + "\n"
			}
		}
		return out
	}
	d, err := c.DryRunRotateKey(ctx, []string{"m1"})
	if err != nil {
		t.Fatal(err)
	}
	got := scripts(d)
	want := map[string]string{
		"m1": "# make a new WireGuard key\nwg genkey\n# apply generation 4\n",
		"m2": "# apply generation 4\nwg set btwg0 peer '<new public key of m1>'\nwg set btwg0 peer " + key["m1"] + " remove\n",
		"m3": "# apply generation 4\nwg set btwg0 peer '<new public key of m1>'\nwg set btwg0 peer " + key["m1"] + " remove\n",
	}
	if diff := cmp.Diff(want, got); diff != "" || d.Generation != 4 {
		t.Errorf("rotate-key m1 --dry-run at generation %d, want 4 (-want +got):\n%s", d.Generation, diff)
	}

	goAway(c, fc, 3)
	if _, err := c.DryRunRotateKey(ctx, []string{"m3"}); err == nil || !strings.Contains(err.Error(), "m3") {
		t.Errorf("rotate-key m3 --dry-run with m3 away: %v, want it to fail naming m3", err)
	}
	d, err = c.DryRunRotateKey(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	got = scripts(d)
	if got["m3"] != "away\naway\n" || !strings.Contains(got["m1"], "'<new public key of m2>'") ||
		!strings.Contains(got["m2"], "'<new public key of m1>'") || strings.Contains(got["m1"]+got["m2"], "new public key of m3") {
		t.Errorf("rotate-key --all --dry-run with m3 away: want m1 and m2 to swap each other's keys, m3 away and kept:\n%q", got)
	}
	after, _ := os.ReadFile(c.Path())
	for a, m := range fc.machines {
		if m.rotations != 0 || m.key != testbed.Key(byte('a'+a[len(a)-1]-'0')) {
			t.Errorf("machine %s made a key in a dry run", a)
		}
	}
	if !bytes.Equal(before, after) {
		t.Errorf("the inventory changed")
	}
}

// A dry run of machine add plans from the inventory alone: the next mesh
// address, the generation, the machines that would take the peer and
// where the helper would go. It contacts no machine (the fake has none at
// the new address: a dial would fail) and writes nothing. A bad entry is
// refused as AddMachine refuses it.
func TestDryRunAddMachine(t *testing.T) {
	c, _ := newFakeCloud(t, 2)
	addAll(t, c, 2)
	sums := fileSums(t, c.Path())
	p, err := c.DryRunAddMachine(NewMachine{Name: "m3", Address: "192.0.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	inv, err := inventory.Load(c.Path())
	if err != nil {
		t.Fatal(err)
	}
	want := AdditionPlan{Generation: inv.Generation + 1, Others: []string{"m1", "m2"}, HelperDir: remote.DefaultHelperDir}
	if p.Machine.Name != "m3" || !p.Machine.MeshIP.IsValid() || p.Generation != want.Generation ||
		!slices.Equal(p.Others, want.Others) || p.HelperDir != want.HelperDir {
		t.Errorf("plan = %+v, want m3 with a mesh address, %+v", p, want)
	}
	for _, m := range inv.Machines {
		if m.MeshIP == p.Machine.MeshIP {
			t.Errorf("the planned mesh address %s is %s's", p.Machine.MeshIP, m.Name)
		}
	}
	if _, err := c.DryRunAddMachine(NewMachine{Name: "web-", Address: "192.0.2.3"}); err == nil || !strings.Contains(err.Error(), `"web-"`) {
		t.Errorf("a bad name: %v, want it refused by name", err)
	}
	if got := fileSums(t, c.Path()); got != sums {
		t.Error("a dry run changed the inventory or its .bak")
	}
}
