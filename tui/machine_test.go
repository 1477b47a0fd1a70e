package tui

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/butter-cloud/butter/cloud"
	"github.com/butter-cloud/butter/helperapi"
)

// waitOffline waits until the dashboard shows name offline.
func waitOffline(d *driver, name string) {
	d.t.Helper()
	d.until(name+" offline", 10*time.Second, func(m *Model) bool {
		_, w := m.data.status(name)
		return w == cloud.StatusOffline
	})
}

// selectMachine puts the machines pane's cursor on name.
func selectMachine(d *driver, name string) {
	d.t.Helper()
	d.send(press("1"))
	d.send(press("g"))
	for range d.m.tables[paneMachines].Len() {
		if d.m.tables[paneMachines].SelectedID() == name {
			return
		}
		d.send(press("down"))
	}
	d.t.Fatalf("no %s in the machines pane", name)
}

// A machine that does not answer cannot be torn down: d offers to drop it
// untouched, naming the VMs written off; then the cloud has neither it
// nor its VMs, and the machine itself was not asked for anything.
func TestRemoveAwayMachineDropsIt(t *testing.T) {
	fc, path := newFakeCluster(t, 3, 2)
	gone := fc.side("node002")
	gone.down.Store(true)
	d := dashboard(t, fc, path)
	waitOffline(d, "node002")
	selectMachine(d, "node002")
	d.send(press("d"))
	d.until("the drop offer", 5*time.Second, screenShows("Drop machine node002 from the cloud without touching it?",
		"does not answer", "Its VMs are written off: node002-vm01, node002-vm02."))
	d.send(press("y"))
	d.until("the drop's end", 10*time.Second, screenShows("machine node002 removed; written off with it (never touched): vm node002-vm01, vm node002-vm02"))

	inv := loadInventory(t, path)
	if _, ok := inv.Machine("node002"); ok {
		t.Error("node002 is still in the inventory")
	}
	for _, v := range inv.VMs {
		if v.Machine == "node002" {
			t.Errorf("vm %s of node002 is still in the inventory", v.Name)
		}
	}
	for _, n := range inv.Networks {
		if slices.Contains(n.Machines, "node002") {
			t.Errorf("network %s still lists node002", n.Name)
		}
	}
	if len(inv.VMs) != 4 {
		t.Errorf("%d VMs left, want the other machines' 4", len(inv.VMs))
	}
	if s := gone.currentSpec(); s == nil || len(gone.vms) != 2 {
		t.Errorf("node002 was touched: spec %v, %d VMs", s, len(gone.vms))
	}
	for _, name := range []string{"node001", "node003"} {
		if s := fc.side(name).currentSpec(); s == nil || slices.ContainsFunc(s.Peers, func(p helperapi.Peer) bool { return p.Name == "node002" }) {
			t.Errorf("%s still has node002 as a peer: %+v", name, s)
		}
	}
}

// Removing a machine while a peer is away leaves that peer trusting it:
// the dashboard says so and offers to rotate every key, which gives each
// machine that answers a new key and records it.
func TestRemoveWithAPeerAwayOffersRotation(t *testing.T) {
	fc, path := newFakeCluster(t, 3, 1)
	away := fc.side("node003")
	away.down.Store(true)
	before := loadInventory(t, path)
	d := dashboard(t, fc, path)
	waitOffline(d, "node003")
	selectMachine(d, "node001")
	d.send(press("d"))
	d.until("the remove question", 5*time.Second, screenShows("Remove machine node001 from the cloud?"))
	d.send(press("y"))
	d.until("the rotation offer", 10*time.Second, screenShows("Rotate every key now?",
		"node003 was away: it still holds node001's key", "pauses for about a handshake"))
	if s := fc.side("node001").currentSpec(); s != nil {
		t.Errorf("node001 was not torn down: %+v", s)
	}
	d.send(press("y"))
	d.until("the rotation's end", 10*time.Second, func(m *Model) bool {
		return m.shown != nil && m.shown.title == "rotate every key" && !m.shown.running
	})
	if tk := d.m.shown; tk.err != nil || !strings.Contains(tk.result, "new key on node002; node003 kept its key (away)") {
		t.Fatalf("rotation: %q, %v", tk.result, tk.err)
	}

	inv := loadInventory(t, path)
	if _, ok := inv.Machine("node001"); ok {
		t.Error("node001 is still in the inventory")
	}
	n2, _ := inv.Machine("node002")
	old2, _ := before.Machine("node002")
	if n2.PublicKey == old2.PublicKey || n2.PublicKey != fc.side("node002").publicKey() {
		t.Errorf("node002's key in the inventory %s: was %s, the machine has %s", n2.PublicKey, old2.PublicKey, fc.side("node002").publicKey())
	}
	n3, _ := inv.Machine("node003")
	old3, _ := before.Machine("node003")
	if n3.PublicKey != old3.PublicKey || away.rotated != 0 {
		t.Errorf("node003 was away but its key changed: %s, was %s (rotated %d times)", n3.PublicKey, old3.PublicKey, away.rotated)
	}
	if !inv.Pending(*n3) {
		t.Error("node003 missed the removal and the rotation but is not pending")
	}
}

// R on a machine asks, saying traffic pauses, then gives it a new key:
// the machine made it, the inventory records it, its peers have it.
func TestRotateKeyOfAMachine(t *testing.T) {
	fc, path := newFakeCluster(t, 3, 0)
	side := fc.side("node002")
	old := side.publicKey()
	d := dashboard(t, fc, path)
	selectMachine(d, "node002")
	d.send(press("R"))
	d.until("the rotate question", 5*time.Second, screenShows("Give node002 a new WireGuard key?", "pauses for about a handshake"))
	d.send(press("y"))
	d.until("the rotation's end", 10*time.Second, screenShows("new key on node002"))

	key := side.publicKey()
	if key == old || side.rotated != 1 {
		t.Fatalf("node002 was not asked for a new key once: rotated %d times", side.rotated)
	}
	inv := loadInventory(t, path)
	if mc, _ := inv.Machine("node002"); mc.PublicKey != key {
		t.Errorf("the inventory has node002's key %s, the machine %s", mc.PublicKey, key)
	}
	for _, name := range []string{"node001", "node003"} {
		s := fc.side(name).currentSpec()
		i := slices.IndexFunc(s.Peers, func(p helperapi.Peer) bool { return p.Name == "node002" })
		if i < 0 || s.Peers[i].PublicKey != key {
			t.Errorf("%s's peer node002 does not have the new key: %+v", name, s.Peers)
		}
	}
}
