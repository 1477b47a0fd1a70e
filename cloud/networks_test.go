package cloud

import (
	"context"
	"testing"
)

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
