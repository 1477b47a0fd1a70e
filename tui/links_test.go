package tui

import (
	"net/netip"
	"testing"

	"github.com/charmbracelet/x/ansi"

	"github.com/butter-cloud/butter/cloud"
	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/inventory"
)

// TestLinksColumnRelayed: two machines behind NAT reach each other through
// the relay, with no WireGuard peer of their own: the networks pane counts
// that pair ok while both legs shake hands, and not once a leg stops.
func TestLinksColumnRelayed(t *testing.T) {
	m := New(Options{Inventory: "/nonexistent/inventory.yaml", Connector: func(string, Ask) cloud.Connector { return nil }})
	inv := inventory.New()
	for i, n := range []string{"hub", "n1", "n2"} {
		inv.Machines = append(inv.Machines, inventory.Machine{Name: n, Address: "192.0.2." + string(rune('1'+i)), Port: 22,
			NAT: n != "hub", MeshIP: netip.AddrFrom4([4]byte{10, 99, 0, byte(i + 1)}), PublicKey: b64(append([]byte{byte(i + 1)}, make([]byte, 31)...))})
	}
	inv.Networks = []inventory.Network{{Name: "blue", ID: 1, Subnet: netip.MustParsePrefix("10.20.0.0/24"), Tunnel: "auto",
		Machines: []string{"hub", "n1", "n2"}}}
	online := func(name string, ages map[string]float64) cloud.Event {
		st := cloud.MachineStatus{Name: name, Status: cloud.StatusOnline}
		for p, a := range ages {
			st.Facts.Peers = append(st.Facts.Peers, helperapi.PeerFacts{Name: p, HandshakeAge: a})
		}
		return cloud.Event{At: at, Machine: &st}
	}
	m.applyEvents([]cloud.Event{{At: at, Inventory: inv},
		online("hub", map[string]float64{"n1": 5, "n2": 7}), online("n1", map[string]float64{"hub": 5}), online("n2", map[string]float64{"hub": 7})})
	links := func() string { r, _ := m.tables[paneNetworks].Selected(); return r.cells[7].text } // LINKS
	if got := links(); got != "3/3 ok" {
		t.Errorf("relayed pair with both legs up: LINKS %q, want 3/3 ok", got)
	}
	m.applyEvents([]cloud.Event{online("hub", map[string]float64{"n1": 5, "n2": -1}), online("n2", map[string]float64{"hub": -1})})
	if got := links(); got != "1/3 ok" {
		t.Errorf("the leg to n2 down: LINKS %q, want 1/3 ok (hub–n2 and n1–n2 through it)", got)
	}
}

// TestLinksModalFitsTheScreen: a network of twelve machines whose 66
// links are all down keeps the links box on the screen: the reasons that
// fit, a count of the rest, and how many rows the table shows.
func TestLinksModalFitsTheScreen(t *testing.T) {
	m := New(Options{Inventory: "/nonexistent/inventory.yaml", Connector: func(string, Ask) cloud.Connector { return nil }})
	inv := inventory.New()
	var evs []cloud.Event
	var names []string
	for i := range 12 {
		n := string(rune('a'+i)) + "-machine"
		names = append(names, n)
		inv.Machines = append(inv.Machines, inventory.Machine{Name: n, Address: "192.0.2." + string(rune('1'+i)), Port: 22,
			MeshIP: netip.AddrFrom4([4]byte{10, 99, 0, byte(i + 1)}), PublicKey: b64(append([]byte{byte(i + 1)}, make([]byte, 31)...))})
		evs = append(evs, cloud.Event{At: at, Machine: &cloud.MachineStatus{Name: n, Status: cloud.StatusOnline}})
	}
	inv.Networks = []inventory.Network{{Name: "wide", ID: 1, Subnet: netip.MustParsePrefix("10.20.0.0/24"), Tunnel: "auto", Machines: names}}
	m.applyEvents(append([]cloud.Event{{At: at, Inventory: inv}}, evs...))
	m.resize(100, 30)
	m.Update(press("2"))
	m.Update(press("enter"))
	out := m.render()
	checkSize(t, out, 100, 30)
	for _, want := range []string{"Links of network wide", "more: butter network show wide", "0 of 66 links ok", "shown · esc closes"} {
		if msg := contains(out, want); msg != "" {
			t.Errorf("%s\n%s", msg, ansi.Strip(out))
		}
	}
}
