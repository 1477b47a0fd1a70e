package cloud

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/inventory"
)

// status is machine name answering with WireGuard peers at these
// handshake ages (-1: never) and bytes (sent, received).
func status(name string, peers map[string][3]float64) MachineStatus {
	st := MachineStatus{Name: name, Status: StatusOnline}
	for _, p := range []string{"a", "b", "c", "n1", "n2"} {
		if v, ok := peers[p]; ok {
			st.Facts.Peers = append(st.Facts.Peers, helperapi.PeerFacts{Name: p, HandshakeAge: v[0], TxBytes: int64(v[1]), RxBytes: int64(v[2])})
		}
	}
	return st
}

// probed gives st's peer the probe p.
func probed(st MachineStatus, peer string, p helperapi.Probe) MachineStatus {
	for i := range st.Facts.Peers {
		if st.Facts.Peers[i].Name == peer {
			st.Facts.Peers[i].Probe = &p
		}
	}
	return st
}

func TestNetworkLinks(t *testing.T) {
	// a, b and c reach each other; n1 and n2 are behind NAT (a relays).
	inv := testInventory(machine("a", 1, false), machine("b", 2, false), machine("c", 3, false),
		machine("n1", 4, true), machine("n2", 5, true))
	inv.Networks = []inventory.Network{
		{Name: "blue", ID: 1, Subnet: netip.MustParsePrefix("10.20.0.0/24"), Tunnel: "auto", Machines: []string{"a", "b", "c"}},
		{Name: "green", ID: 3, Subnet: netip.MustParsePrefix("10.22.0.0/24"), Tunnel: "auto", Machines: []string{"a", "b"}},
		{Name: "nat", ID: 2, Subnet: netip.MustParsePrefix("10.21.0.0/24"), Tunnel: "auto", Machines: []string{"n1", "n2"}},
	}
	offline := MachineStatus{Name: "c", Status: StatusOffline, Problem: "dial tcp: i/o timeout"}
	for _, tc := range []struct {
		name     string
		network  string
		machines []MachineStatus
		want     []string // "A-B|via|state|age|bytesAB|bytesBA|a part of why"
	}{
		{"all fresh", "blue", []MachineStatus{
			status("a", map[string][3]float64{"b": {5, 100, 200}, "c": {30, 10, 20}}),
			status("b", map[string][3]float64{"a": {5, 200, 100}, "c": {40, 1, 2}}),
			status("c", map[string][3]float64{"a": {30, 20, 10}, "b": {40, 2, 1}}),
		}, []string{"a-b||ok|5|100|200|", "a-c||ok|30|10|20|", "b-c||ok|40|1|2|"}},
		{"UDP between b and c dropped", "blue", []MachineStatus{
			status("a", map[string][3]float64{"b": {5, 100, 200}, "c": {30, 10, 20}}),
			status("b", map[string][3]float64{"a": {5, 200, 100}, "c": {-1, 900, 0}}),
			status("c", map[string][3]float64{"a": {30, 20, 10}, "b": {-1, 800, 0}}),
		}, []string{"a-b||ok|5|100|200|", "a-c||ok|30|10|20|",
			"b-c||down|-1|900|0|no handshake ever: UDP between them is blocked, or an endpoint is wrong (b sends to c at 192.0.2.3:51820, c sends to b at 192.0.2.2:51820)"}},
		{"stale, c away", "blue", []MachineStatus{
			status("a", map[string][3]float64{"b": {5, 100, 200}, "c": {600, 10, 20}}),
			status("b", map[string][3]float64{"a": {5, 200, 100}, "c": {700, 1, 2}}),
			offline,
		}, []string{"a-b||ok|5|100|200|",
			"a-c||down|600|10|20|no handshake for 10m0s: UDP between them is blocked, or an endpoint is wrong",
			"b-c||down|700|1|2|(c does not answer)"}},
		{"no peer entry: not applied", "blue", []MachineStatus{
			status("a", map[string][3]float64{"b": {5, 100, 200}}),
			status("b", map[string][3]float64{"a": {5, 200, 100}}),
			status("c", map[string][3]float64{}),
		}, []string{"a-b||ok|5|100|200|",
			"a-c||down|-1|0|0|a has no WireGuard peer for c and c has no WireGuard peer for a: its spec is not applied",
			"b-c||down|-1|0|0|"}},
		{"echoes: answered, lost, lost at full size", "blue", []MachineStatus{
			probed(probed(status("a", map[string][3]float64{"b": {5, 100, 200}, "c": {30, 10, 20}}),
				"b", helperapi.Probe{Handshake: true, RTTMillis: 0.5, FullSize: 1420, FullSizeReplied: true}),
				"c", helperapi.Probe{Handshake: true, RTTMillis: -1, FullSize: 1420}),
			probed(status("b", map[string][3]float64{"a": {5, 200, 100}, "c": {40, 1, 2}}),
				"c", helperapi.Probe{Handshake: true, RTTMillis: 0.7, FullSize: 1420}),
			probed(status("c", map[string][3]float64{"a": {30, 20, 10}, "b": {40, 2, 1}}),
				// Made before the handshake: says nothing.
				"a", helperapi.Probe{Handshake: false, RTTMillis: -1, FullSize: 1420}),
		}, []string{"a-b||ok|5|100|200|", "a-c||down|30|10|20|handshake but no frames: echoes through the tunnel get no answer, so a firewall",
			"b-c||down|40|1|2|handshake and small frames, but full-size ones (1420 bytes, don't fragment) are lost: an MTU black hole"}},
		{"an echo made before the handshake says nothing", "green", []MachineStatus{
			probed(status("a", map[string][3]float64{"b": {5, 100, 200}}), "b", helperapi.Probe{Handshake: false, RTTMillis: -1}),
			status("b", map[string][3]float64{"a": {5, 200, 100}}),
		}, []string{"a-b||ok|5|100|200|"}},
		{"nobody answers", "blue", []MachineStatus{offline}, []string{"a-b||unknown|-1|0|0|neither a nor b answers", "a-c||unknown|-1|0|0|", "b-c||unknown|-1|0|0|"}},
		{"relayed through a", "nat", []MachineStatus{
			status("a", map[string][3]float64{"n1": {10, 1, 1}, "n2": {20, 1, 1}}),
			status("n1", map[string][3]float64{"a": {10, 1, 1}}),
			status("n2", map[string][3]float64{"a": {20, 1, 1}}),
		}, []string{"n1-n2|a|ok|20|0|0|"}},
		{"relayed, one leg down", "nat", []MachineStatus{
			status("a", map[string][3]float64{"n1": {10, 1, 1}, "n2": {-1, 1, 0}}),
			status("n1", map[string][3]float64{"a": {10, 1, 1}}),
			status("n2", map[string][3]float64{"a": {-1, 1, 0}}),
		}, []string{"n1-n2|a|down|-1|0|0|through a, the leg a–n2: no handshake ever"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			links, err := NetworkLinks(inv, tc.machines, tc.network)
			if err != nil {
				t.Fatal(err)
			}
			if len(links) != len(tc.want) {
				t.Fatalf("%d links, want %d: %+v", len(links), len(tc.want), links)
			}
			for i, l := range links {
				w := strings.SplitN(tc.want[i], "|", 7)
				got := fmt.Sprintf("%s-%s|%s|%s|%v|%d|%d", l.A, l.B, l.Via, l.State, l.HandshakeAge, l.BytesAB, l.BytesBA)
				if got != strings.Join(w[:6], "|") || !strings.Contains(l.Why, w[6]) {
					t.Errorf("link %d:\n got %s|%s\nwant %s", i, got, l.Why, tc.want[i])
				}
				if (l.State == LinkOK) != (l.Why == "") {
					t.Errorf("link %d: state %s with why %q", i, l.State, l.Why)
				}
			}
		})
	}
	if _, err := NetworkLinks(inv, nil, "nope"); err == nil || !strings.Contains(err.Error(), `no network "nope"`) {
		t.Errorf("an unknown network: %v", err)
	}
}
