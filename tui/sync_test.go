package tui

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/butter-cloud/butter/cloud"
	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/inventory"
)

func TestCatchUps(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	applied := cloud.Outcome{Generation: 4, Applied: []string{"m"}}
	away := cloud.Outcome{Generation: 4, Behind: []cloud.Behind{{Machine: "m", Away: true, Err: errors.New("no route")}}}
	failed := cloud.Outcome{Generation: 4, Behind: []cloud.Behind{{Machine: "m", Err: errors.New("apply failed")}}}
	for _, tc := range []struct {
		name  string
		steps func(c catchUps)
		gen   int
		after time.Duration
		due   bool
	}{
		{"never tried", func(catchUps) {}, 4, 0, true},
		{"one running", func(c catchUps) { c.start([]string{"m"}) }, 4, time.Hour, false},
		{"caught up, inventory not reloaded yet", func(c catchUps) {
			c.start([]string{"m"})
			c.done(syncDoneMsg{names: []string{"m"}, out: applied}, now)
		}, 4, 0, false},
		{"caught up, then a newer change missed", func(c catchUps) {
			c.start([]string{"m"})
			c.done(syncDoneMsg{names: []string{"m"}, out: applied}, now)
		}, 5, 0, true},
		{"failed 10s ago", func(c catchUps) {
			c.start([]string{"m"})
			c.done(syncDoneMsg{names: []string{"m"}, out: failed}, now)
		}, 4, 10 * time.Second, false},
		{"failed 30s ago", func(c catchUps) {
			c.start([]string{"m"})
			c.done(syncDoneMsg{names: []string{"m"}, out: failed}, now)
		}, 4, catchUpRetry, true},
		{"sync errored 10s ago", func(c catchUps) {
			c.start([]string{"m"})
			c.done(syncDoneMsg{names: []string{"m"}, err: errors.New("inventory changed meanwhile")}, now)
		}, 4, 10 * time.Second, false},
		{"away when the dashboard tried", func(c catchUps) {
			c.start([]string{"m"})
			c.done(syncDoneMsg{names: []string{"m"}, out: away}, now)
		}, 4, 10 * time.Second, false},
		{"away when the user tried", func(c catchUps) {
			c.start([]string{"m"})
			c.done(syncDoneMsg{names: []string{"m"}, manual: true, out: away}, now)
		}, 4, 0, true},
		{"failed when the user tried", func(c catchUps) {
			c.start([]string{"m"})
			c.done(syncDoneMsg{names: []string{"m"}, manual: true, out: failed}, now)
		}, 4, 10 * time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := catchUps{}
			tc.steps(c)
			if got := c.due("m", tc.gen, now.Add(tc.after)); got != tc.due {
				t.Errorf("due = %v, want %v", got, tc.due)
			}
		})
	}
}

func TestStatusCell(t *testing.T) {
	for _, tc := range []struct {
		word             string
		pending, syncing bool
		want             cell
	}{
		{"online", false, false, cell{"online", "online"}},
		{"online", true, false, cell{"online · pending", "pending"}},
		{"degraded", true, false, cell{"degraded · pending", "pending"}},
		{"offline", true, false, cell{"offline · pending", "offline"}},
		{"connecting", true, false, cell{"connecting · pending", "connecting"}},
		{"online", true, true, cell{"online · syncing", "syncing"}},
	} {
		if got := statusCell(tc.word, tc.pending, tc.syncing); got != tc.want {
			t.Errorf("statusCell(%q, %v, %v) = %+v, want %+v", tc.word, tc.pending, tc.syncing, got, tc.want)
		}
	}
}

// The fixture's cloud at generation 3: alpha (online) and charlie
// (offline) missed changes, bravo did not.
func TestPendingRows(t *testing.T) {
	m := fixture(t, 120, 24, true)
	inv := *m.data.inv
	inv.Generation = 3
	inv.Machines = slices.Clone(inv.Machines)
	inv.Machines[0].Confirmed, inv.Machines[1].Confirmed, inv.Machines[2].Confirmed = 2, 3, 1
	m.applyEvents([]cloud.Event{{Inventory: &inv}})
	want := map[string]struct{ status, detail string }{
		"alpha":   {"online · pending", "alpha at 192.0.2.1 · pending: confirmed generation 2, the cloud is at 3; S syncs now"},
		"bravo":   {"degraded", "bravo at 192.0.2.2 · no recent WireGuard handshake with charlie"},
		"charlie": {"offline · pending", "charlie at 192.0.2.3 · pending: confirmed generation 1, the cloud is at 3; catches up when it answers · does not answer: dial tcp 192.0.2.3:22: i/o timeout"},
	}
	for _, r := range m.tables[paneMachines].all {
		w := want[r.id]
		if r.cells[1].text != w.status || r.detail != w.detail {
			t.Errorf("%s: status %q, detail %q\nwant %q, %q", r.id, r.cells[1].text, r.detail, w.status, w.detail)
		}
	}
	if s := ansi.Strip(m.render()); !strings.Contains(s, "2 pending") {
		t.Errorf("the header does not count the pending machines:\n%s", s)
	}
	m.data.catchUp.start([]string{"alpha"})
	m.dirty[paneMachines] = true
	m.rebuild()
	if r, _ := m.tables[paneMachines].Selected(); r.cells[1].text != "online · syncing" || !strings.HasSuffix(r.detail, "; catching up") {
		t.Errorf("alpha while it catches up: %q, %q", r.cells[1].text, r.detail)
	}
}

// dashboard is a dashboard over the fake cluster fc, driven without a
// terminal, 120×30.
func dashboard(t *testing.T, fc *fakeCluster, path string) *driver {
	t.Helper()
	m := New(Options{Inventory: path, SSHDir: t.TempDir(), Interval: 100 * time.Millisecond,
		Connector: func(string, Ask) cloud.Connector { return fc }})
	d := newDriver(t, m)
	d.send(tea.WindowSizeMsg{Width: 120, Height: 30})
	d.until("every machine reported", 10*time.Second, func(m *Model) bool { return m.data.complete() })
	return d
}

// screenShows is a condition for driver.until: the screen shows every s
// on a line, or the open form says it (its text wrapped as it may be).
func screenShows(s ...string) func(*Model) bool {
	return func(m *Model) bool {
		screen := ansi.Strip(m.render())
		form := ""
		if m.form != nil {
			form = oneLine(strings.NewReplacer("┃", " ", "│", " ").Replace(ansi.Strip(m.form.view(m.st))))
		}
		for _, x := range s {
			if !strings.Contains(screen, x) && !strings.Contains(form, x) {
				return false
			}
		}
		return true
	}
}

func (c *fakeCluster) side(name string) *fakeSide {
	addr := c.addressOf(name)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sides[addr]
}

func loadInventory(t *testing.T, path string) *inventory.Inventory {
	t.Helper()
	inv, err := inventory.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

func machineRow(m *Model, name string) row {
	for _, r := range m.tables[paneMachines].all {
		if r.id == name {
			return r
		}
	}
	return row{}
}

// A machine away while a network is made is pending; the user's sync
// finds it still away; when it answers again the dashboard catches it up
// by itself, once.
func TestPendingMachineCaughtUpWhenBack(t *testing.T) {
	fc, path := newFakeCluster(t, 3, 0)
	away := fc.side("node002")
	away.down.Store(true)
	d := dashboard(t, fc, path)
	d.until("node002 offline", 10*time.Second, func(m *Model) bool {
		_, w := m.data.status("node002")
		return w == cloud.StatusOffline
	})

	_, out, err := d.m.cl.CreateNetwork(context.Background(), cloud.NewNetwork{Name: "blue",
		Subnet: netip.MustParsePrefix("10.100.0.0/24"), Machines: []string{"node001", "node002", "node003"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Behind) != 1 || out.Behind[0].Machine != "node002" || !out.Behind[0].Away {
		t.Fatalf("node002 should be behind, away: %+v", out)
	}
	d.until("node002 pending", 10*time.Second, screenShows("offline · pending", "1 pending"))
	d.send(press("down"))
	if r, _ := d.m.tables[paneMachines].Selected(); r.id != "node002" ||
		!strings.Contains(r.detail, "pending: confirmed generation 0, the cloud is at 1; catches up when it answers") {
		t.Errorf("node002's detail does not say it is pending: %+v", r)
	}

	// S while it is away: nothing caught up, and nothing held back.
	d.send(press("S"))
	d.until("the sync's end", 10*time.Second, screenShows("no machine caught up (node002 away: catching up when back)"))
	d.send(press("esc"))

	away.down.Store(false)
	d.until("node002 caught up", 10*time.Second, func(m *Model) bool {
		return strings.Contains(m.status, "node002 is back: caught up to generation 1") && !m.data.catchUp.running("node002")
	})
	if s := away.currentSpec(); s == nil || !slices.ContainsFunc(s.Networks, func(n helperapi.Network) bool { return n.Name == "blue" }) {
		t.Errorf("node002's spec after the catch-up lacks network blue: %+v", s)
	}
	inv := loadInventory(t, path)
	if mc, _ := inv.Machine("node002"); inv.Pending(*mc) {
		t.Errorf("node002 is still pending in the inventory: confirmed %d, generation %d", mc.Confirmed, inv.Generation)
	}
	d.until("node002 shown up to date", 10*time.Second, func(m *Model) bool {
		return machineRow(m, "node002").cells[1].text == "online"
	})
	n := 0
	for _, tk := range d.m.tasks {
		if tk.kind == taskBackground && tk.title == "catch up node002" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("the dashboard synced node002 %d times, want once", n)
	}
}
