package cloud

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/inventory"
	"github.com/butter-cloud/butter/remote"
)

// specJSON is what a machine holds, for comparing with a fresh apply.
func specJSON(t *testing.T, m *fakeMachine) string {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.spec == nil {
		return "none"
	}
	b, err := json.Marshal(m.spec)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// An away machine does not block a change: it is pending, the others
// take it, and on its return a sync leaves it exactly where a fresh
// apply of the inventory does.
func TestAwayMachineIsPendingThenCatchesUp(t *testing.T) {
	ctx := context.Background()
	c, fc := newFakeCloud(t, 3)
	addAll(t, c, 3)
	goAway(c, fc, 3)
	n, out, err := c.CreateNetwork(ctx, NewNetwork{Name: "blue"}, nil)
	if err != nil {
		t.Fatalf("CreateNetwork with m3 away = %v", err)
	}
	if len(out.Behind) != 1 || out.Behind[0].Machine != "m3" || !out.Behind[0].Away ||
		!strings.Contains(out.Behind[0].String(), "machine m3 is away") || !slices.Equal(out.Applied, []string{"m1", "m2"}) {
		t.Fatalf("outcome = %+v, want m1 and m2 applied and m3 away", out)
	}
	if !slices.Equal(n.Machines, []string{"m1", "m2", "m3"}) {
		t.Errorf("network members = %v", n.Machines)
	}
	ms, _ := c.Machines(ctx, listTimeoutForTests)
	for _, m := range ms {
		if want := m.Name == "m3"; m.Pending != want {
			t.Errorf("machine %s pending = %v, want %v", m.Name, m.Pending, want)
		}
	}
	// Another change while m3 is still away, then it returns.
	if _, _, err := c.CreateNetwork(ctx, NewNetwork{Name: "red", Machines: []string{"m1", "m3"}}, nil); err != nil {
		t.Fatal(err)
	}
	fc.down["192.0.2.3"] = false
	out, err = c.Sync(ctx, nil, nil)
	if err != nil || !slices.Equal(out.Applied, []string{"m3"}) || len(out.Behind) != 0 {
		t.Fatalf("Sync = %+v, %v; want m3 caught up", out, err)
	}
	inv, _ := c.Inventory()
	fresh, err := specsAt(inv)
	if err != nil {
		t.Fatal(err)
	}
	for addr, m := range fc.machines {
		want, _ := json.Marshal(fresh[m.name])
		if got := specJSON(t, m); got != string(want) {
			t.Errorf("%s (%s) holds\n%s\nwant what a fresh apply gives\n%s", m.name, addr, got, want)
		}
		mi, _ := inv.Machine(m.name)
		if inv.Pending(*mi) {
			t.Errorf("%s still pending after sync", m.name)
		}
	}
	// Nothing behind: sync has nothing to do.
	if out, err := c.Sync(ctx, nil, nil); err != nil || len(out.Applied) != 0 {
		t.Errorf("second sync = %+v, %v; want nothing to do", out, err)
	}
}

// A machine refusing the change as bad input stops it before anything
// moves: no machine took it, the inventory and .bak are byte-identical.
// A machine that answers but cannot be used (its host key changed) is
// behind as failed, not away: the change holds for the others, and the
// report says it failed rather than that it will catch up by itself.
func TestUnusableMachineIsFailedNotAway(t *testing.T) {
	ctx := context.Background()
	c, fc := newFakeCloud(t, 3)
	addAll(t, c, 3)
	fc.fail = map[string]error{"192.0.2.3": fmt.Errorf("ssh 192.0.2.3:22: %w", remote.ErrHostKeyChanged)}
	c.forget("m3")
	_, out, err := c.CreateNetwork(ctx, NewNetwork{Name: "blue"}, nil)
	if err != nil {
		t.Fatalf("CreateNetwork with m3's host key changed = %v", err)
	}
	failed, away := out.Split()
	if !slices.Equal(failed, []string{"m3"}) || len(away) != 0 || !slices.Equal(out.Applied, []string{"m1", "m2"}) {
		t.Fatalf("outcome = %+v (failed %v, away %v), want m3 failed, none away", out, failed, away)
	}
	if !errors.Is(out.Behind[0].Err, remote.ErrHostKeyChanged) || strings.Contains(out.Behind[0].String(), "is away") {
		t.Errorf("m3 behind = %q, want the host key error, not away", out.Behind[0])
	}
	// The control: the same machine not answering at all is away.
	delete(fc.fail, "192.0.2.3")
	goAway(c, fc, 3)
	if _, out, err = c.CreateNetwork(ctx, NewNetwork{Name: "red"}, nil); err != nil {
		t.Fatal(err)
	}
	if failed, away = out.Split(); len(failed) != 0 || !slices.Equal(away, []string{"m3"}) {
		t.Fatalf("outcome = %+v, want m3 away", out)
	}
}

func TestRefusedChangeMovesNothing(t *testing.T) {
	ctx := context.Background()
	c, fc := newFakeCloud(t, 3)
	addAll(t, c, 3)
	sums := fileSums(t, c.path)
	applies := map[string]int{}
	for a, m := range fc.machines {
		applies[a] = m.applies
	}
	fc.machines["192.0.2.2"].refuse = &helperapi.RemoteError{Code: helperapi.CodeInvalid, Message: "network blue: subnet clashes with the uplink"}
	_, _, err := c.CreateNetwork(ctx, NewNetwork{Name: "blue"}, nil)
	if err == nil || !strings.Contains(err.Error(), "nothing changed") || !strings.Contains(err.Error(), "machine m2: network blue") {
		t.Fatalf("CreateNetwork = %v, want m2's refusal and nothing changed", err)
	}
	if fileSums(t, c.path) != sums {
		t.Error("a refused change reached the inventory or its .bak")
	}
	for a, m := range fc.machines {
		if m.applies != applies[a] {
			t.Errorf("machine at %s applied a refused change", a)
		}
	}
	// A bad value never gets as far as a machine.
	prepares := fc.machines["192.0.2.1"].prepares
	if _, _, err := c.CreateNetwork(ctx, NewNetwork{Name: "Blue"}, nil); err == nil || !strings.Contains(err.Error(), `network name "Blue"`) {
		t.Fatalf("a bad name: %v", err)
	}
	if fc.machines["192.0.2.1"].prepares != prepares || fileSums(t, c.path) != sums {
		t.Error("a bad name reached a machine or the inventory")
	}
}

// Two operators: the one whose inventory is older than the machines is
// refused, and told to adopt; after adopting, its change goes through.
func TestStaleOperatorIsRefused(t *testing.T) {
	ctx := context.Background()
	a, fc := newFakeCloud(t, 2)
	addAll(t, a, 2)
	// Operator B has a copy of A's inventory from now.
	bPath := filepath.Join(t.TempDir(), "inventory.yaml")
	data, err := os.ReadFile(a.path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	b := New(bPath, fc, nil)
	if _, _, err := a.CreateNetwork(ctx, NewNetwork{Name: "blue"}, nil); err != nil {
		t.Fatal(err)
	}
	sums := fileSums(t, bPath)
	_, _, err = b.CreateNetwork(ctx, NewNetwork{Name: "red"}, nil)
	if err == nil || !helperapi.IsStale(err) || !strings.Contains(err.Error(), "butter adopt") {
		t.Fatalf("B's change from an old inventory = %v, want a refusal telling to adopt", err)
	}
	if fileSums(t, bPath) != sums {
		t.Error("the refused change touched B's inventory")
	}
	for _, m := range fc.machines {
		if s := m.spec; len(s.Networks) != 1 || s.Networks[0].Name != "blue" {
			t.Errorf("%s: A's network was undone: %+v", m.name, s.Networks)
		}
	}
	if _, err := b.Adopt(ctx, AdoptFrom{Address: "192.0.2.2"}, Trust{}, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.CreateNetwork(ctx, NewNetwork{Name: "red"}, nil); err != nil {
		t.Fatalf("B's change after adopting: %v", err)
	}
	if got := len(fc.machines["192.0.2.1"].spec.Networks); got != 2 {
		t.Errorf("m1 has %d networks, want blue and red", got)
	}
}

// A lost inventory comes back from the machines: adopt writes one equal
// to the lost one (identity files aside, which come from the flag), and
// every verb works after it.
func TestAdoptRebuildsTheInventory(t *testing.T) {
	ctx := context.Background()
	c, fc := newWebCloud(t, 3, "m2")
	// Make the last change with m3 away, so its copy is older.
	goAway(c, fc, 3)
	if _, _, err := c.CreateNetwork(ctx, NewNetwork{Name: "red", Machines: []string{"m1", "m2"}}, nil); err != nil {
		t.Fatal(err)
	}
	fc.down["192.0.2.3"] = false
	lost, _ := c.Inventory()
	want, _ := lost.Marshal()
	for _, p := range []string{c.path, c.path + ".bak"} {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	c2 := New(c.path, fc, nil)
	// The dry run finds the same inventory and writes nothing: the folder
	// stays as it is (no inventory, .bak or lock).
	dir, _ := os.ReadDir(filepath.Dir(c.path))
	a, err := c2.DryRunAdopt(ctx, AdoptFrom{Address: "192.0.2.3"}, Trust{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := a.Inventory.Marshal(); string(got) != string(want) {
		t.Errorf("adopt's dry run found:\n%s\nwant the lost one:\n%s", got, want)
	}
	if after, _ := os.ReadDir(filepath.Dir(c.path)); len(after) != len(dir) {
		t.Errorf("adopt's dry run wrote in the inventory's folder: %v, was %v", after, dir)
	}
	// Start from m3, whose copy is older: adopt follows it to the newest.
	a, err = c2.Adopt(ctx, AdoptFrom{Address: "192.0.2.3"}, Trust{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := a.Inventory.Marshal()
	if string(got) != string(want) {
		t.Fatalf("adopted inventory:\n%s\nwant the lost one:\n%s", got, want)
	}
	if a.From == "192.0.2.3" {
		t.Errorf("adopted from m3's older copy")
	}
	if _, _, err := c2.CreateNetwork(ctx, NewNetwork{Name: "green"}, nil); err != nil {
		t.Fatalf("a change after adopt: %v", err)
	}
	if out, err := c2.Sync(ctx, nil, nil); err != nil || len(out.Behind) != 0 {
		t.Fatalf("sync after adopt: %+v, %v", out, err)
	}
	// A machine holding no cloud says so.
	fc.machines["192.0.2.9"] = &fakeMachine{name: "stray", vms: map[string]helperapi.VMInfo{}}
	if _, err := New(filepath.Join(t.TempDir(), "i.yaml"), fc, nil).Adopt(ctx, AdoptFrom{Address: "192.0.2.9"}, Trust{}, nil); err == nil ||
		!strings.Contains(err.Error(), "holds no cloud") {
		t.Errorf("adopting from a machine in no cloud: %v", err)
	}
}

// Removing: a reachable machine is torn down; an away one is refused
// without --force, and with it dropped untouched, its VMs written off and
// its key gone from every peer.
func TestRemoveMachineAwayAndForce(t *testing.T) {
	ctx := context.Background()
	c, fc := newWebCloud(t, 4, "m2")
	m2key := fc.machines["192.0.2.2"].key
	goAway(c, fc, 2)
	sums := fileSums(t, c.path)
	_, err := c.RemoveMachine(ctx, "m2", false, nil)
	if err == nil || !strings.Contains(err.Error(), "--force") || !strings.Contains(err.Error(), "web") {
		t.Fatalf("removing an away machine without --force = %v; want a refusal naming --force and its VMs", err)
	}
	if fileSums(t, c.path) != sums {
		t.Error("the refused removal changed the inventory")
	}
	// m4 is away too: it keeps m2's key until it returns.
	goAway(c, fc, 4)
	r, err := c.RemoveMachine(ctx, "m2", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.WrittenOff, []string{"web"}) || r.TornDown || !slices.Equal(r.StillTrusting(), []string{"m4"}) {
		t.Errorf("removal = %+v, want web written off, untouched, m4 still trusting", r)
	}
	if fc.machines["192.0.2.2"].spec == nil {
		t.Error("--force touched the machine")
	}
	inv, _ := c.Inventory()
	if _, ok := inv.Machine("m2"); ok || len(inv.VMs) != 0 {
		t.Errorf("m2 or its VM is still in the inventory: %+v", inv)
	}
	fc.down["192.0.2.4"] = false
	if _, err := c.Sync(ctx, nil, nil); err != nil {
		t.Fatal(err)
	}
	for _, m := range fc.machines {
		if m.name == "m2" {
			continue
		}
		for _, p := range peersOf(m) {
			if p.PublicKey == m2key || p.Name == "m2" {
				t.Errorf("%s still has m2 as a peer", m.name)
			}
		}
	}
}

// Rotating a key: a new key made on the machine, every peer updated, the
// old key nowhere.
func TestRotateKey(t *testing.T) {
	ctx := context.Background()
	c, fc := newFakeCloud(t, 3)
	addAll(t, c, 3)
	old := fc.machines["192.0.2.1"].key
	r, err := c.RotateKey(ctx, []string{"m1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.Rotated, []string{"m1"}) || len(r.Behind) != 0 {
		t.Fatalf("rotation = %+v", r)
	}
	now := fc.machines["192.0.2.1"].key
	inv, _ := c.Inventory()
	if m1, _ := inv.Machine("m1"); m1.PublicKey != now || now == old {
		t.Errorf("inventory key %q, machine key %q, old %q", m1.PublicKey, now, old)
	}
	for _, m := range fc.machines {
		for _, p := range peersOf(m) {
			if p.PublicKey == old {
				t.Errorf("%s still holds m1's old key", m.name)
			}
			if p.Name == "m1" && p.PublicKey != now {
				t.Errorf("%s has m1 as %q, want the new key", m.name, p.PublicKey)
			}
		}
	}
	// An away machine's key cannot be rotated; --all rotates the others.
	goAway(c, fc, 3)
	asked := fc.machines["192.0.2.1"].prepares
	if _, err := c.RotateKey(ctx, []string{"m3"}, nil); !isAway(err, "m3") {
		t.Errorf("rotating an away machine: %v", err)
	}
	if fc.machines["192.0.2.1"].prepares != asked {
		t.Errorf("rotating m3, away, asked m1 to prepare a change: it should fail before asking anyone")
	}
	r, err = c.RotateKey(ctx, nil, nil)
	if err != nil || !slices.Equal(r.Rotated, []string{"m1", "m2"}) || len(r.NotRotated) != 1 || r.NotRotated[0].Machine != "m3" {
		t.Errorf("rotate --all with m3 away = %+v, %v", r, err)
	}
}

// The desired-state copy carries no operator path and no secret.
func TestDesiredHasNoOperatorPaths(t *testing.T) {
	inv := inventory.New()
	inv.Machines = []inventory.Machine{{Name: "m1", Address: "192.0.2.1", Port: 22, Identity: "/home/op/.ssh/id_ed25519"}}
	b, _ := json.Marshal(Desired(inv))
	if strings.Contains(string(b), "id_ed25519") || strings.Contains(string(b), "/home/op") {
		t.Errorf("the copy holds the identity path: %s", b)
	}
}

// A removal the others refuse leaves the machine whole and in the cloud:
// it is asked before the machine is torn down.
func TestRefusedRemovalTouchesNothing(t *testing.T) {
	ctx := context.Background()
	c, fc := newFakeCloud(t, 3)
	addAll(t, c, 3)
	sums := fileSums(t, c.path)
	fc.machines["192.0.2.1"].refuse = &helperapi.RemoteError{Code: helperapi.CodeStale, Message: "this machine is at generation 9"}
	if _, err := c.RemoveMachine(ctx, "m3", false, nil); err == nil || !helperapi.IsStale(err) {
		t.Fatalf("RemoveMachine = %v, want m1's refusal", err)
	}
	if fc.machines["192.0.2.3"].spec == nil {
		t.Error("m3 was torn down though the removal was refused")
	}
	if fileSums(t, c.path) != sums {
		t.Error("the refused removal changed the inventory")
	}
}

// The VM verbs on a machine that is away fail naming the machine, and a
// create reserves nothing: the inventory and its .bak stay byte-identical.
func TestVMVerbsOnAnAwayMachine(t *testing.T) {
	ctx := context.Background()
	c, fc := newWebCloud(t, 2, "m2")
	goAway(c, fc, 2)
	sums := fileSums(t, c.path)
	_, err := c.CreateVM(ctx, NewVM{Name: "db", Machine: "m2", Network: "blue", Image: "debian-12"}, nil, nil)
	if !isAway(err, "m2") {
		t.Errorf("CreateVM on m2 away = %v, want an *AwayError naming machine m2", err)
	}
	if fileSums(t, c.path) != sums {
		t.Errorf("CreateVM on m2 away changed the inventory or its .bak")
	}
	if err := c.Console(ctx, "web", strings.NewReader(""), io.Discard); !isAway(err, "m2") {
		t.Errorf("Console of a VM on m2 away = %v, want an *AwayError naming machine m2", err)
	}
	if _, err := c.VMAction(ctx, "web", "start", time.Second); !isAway(err, "m2") {
		t.Errorf("VMAction on m2 away = %v, want an *AwayError naming machine m2", err)
	}
}

// countingConnector fails every connect as a machine that does not answer,
// counting the tries.
type countingConnector struct{ tries int }

func (c *countingConnector) Connect(ctx context.Context, m inventory.Machine, trust Trust, steps func(Step)) (Link, error) {
	c.tries++
	return nil, &remote.UnreachableError{Addr: m.Address + ":22", Timeout: ConnectTimeout, Err: os.ErrDeadlineExceeded}
}

// A machine whose connect just failed is away for a while without being
// dialled again: one command waits out its connect timeout once.
func TestAwayIsRemembered(t *testing.T) {
	cc := &countingConnector{}
	c := New(filepath.Join(t.TempDir(), "inventory.yaml"), cc, nil)
	m := inventory.Machine{Name: "m1", Address: "192.0.2.1", Port: 22}
	for range 3 {
		if _, err := c.helper(context.Background(), m); err == nil || !strings.Contains(err.Error(), "no answer from 192.0.2.1:22") {
			t.Fatalf("helper = %v, want the machine's unreachable error", err)
		}
	}
	if cc.tries != 1 {
		t.Errorf("dialled %d times, want once within awayMemory", cc.tries)
	}
	c.away["m1"] = awayMark{err: c.away["m1"].err, at: time.Now().Add(-awayMemory)}
	_, _ = c.helper(context.Background(), m)
	if cc.tries != 2 {
		t.Errorf("dialled %d times after awayMemory, want a second try", cc.tries)
	}
}

// A VM made or removed reaches every machine's copy of the desired state,
// so an adopt after it finds the VM (or its absence).
func TestVMsReachTheCopies(t *testing.T) {
	ctx := context.Background()
	c, fc := newFakeCloud(t, 2)
	addAll(t, c, 2)
	if _, _, err := c.CreateNetwork(ctx, NewNetwork{Name: "blue"}, nil); err != nil {
		t.Fatal(err)
	}
	has := func(vm string) int {
		n := 0
		for _, m := range fc.machines {
			d, _ := m.Desired(ctx)
			if slices.ContainsFunc(d.VMs, func(v helperapi.DesiredVM) bool { return v.Name == vm }) {
				n++
			}
		}
		return n
	}
	if _, err := c.CreateVM(ctx, NewVM{Name: "web", Machine: "m1", Network: "blue", Image: "debian-12"}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if n := has("web"); n != 2 {
		t.Fatalf("%d of 2 machines' copies have the new VM", n)
	}
	if _, err := c.VMAction(ctx, "web", "remove", 0); err != nil {
		t.Fatal(err)
	}
	if n := has("web"); n != 0 {
		t.Fatalf("%d machines' copies still have the removed VM", n)
	}
}

// isAway tells whether err is an *AwayError for machine whose message
// names it.
func isAway(err error, machine string) bool {
	var ae *AwayError
	return errors.As(err, &ae) && ae.Machine == machine && strings.Contains(err.Error(), "machine "+machine+" is away")
}
