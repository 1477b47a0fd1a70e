package testbed

import (
	"testing"

	"github.com/butter-cloud/butter/helperapi"
)

func TestFactsForChain(t *testing.T) {
	f := helperapi.Facts{Gretap: true, Uplink: "eth0", UplinkMTU: 1500,
		// What the helper built must not enter the expectation.
		WireGuard: &helperapi.WireGuardReport{MTU: 1000},
		Networks:  []helperapi.NetworkReport{{Name: "x", Tunnel: "vxlan", MTU: 900}}}
	cf, err := FactsForChain(f, 0)
	if err != nil {
		t.Fatal(err)
	}
	if cf != (ChainFacts{Gretap: true, WireGuardMTU: 1420}) {
		t.Errorf("facts for chain %+v, want gretap and WireGuard MTU 1420", cf)
	}
	if cf, _ := FactsForChain(f, 1380); cf.WireGuardMTU != 1380 {
		t.Errorf("mesh.mtu 1380: WireGuard MTU %d, want 1380", cf.WireGuardMTU)
	}
	if cf, _ := FactsForChain(helperapi.Facts{UplinkMTU: 9000}, 0); cf != (ChainFacts{WireGuardMTU: 8920}) {
		t.Errorf("jumbo uplink without gretap: %+v, want WireGuard MTU 8920", cf)
	}
	if _, err := FactsForChain(helperapi.Facts{}, 0); err == nil {
		t.Error("facts without an uplink MTU gave an expectation")
	}
}

func TestExpectedChain(t *testing.T) {
	withGretap := ChainFacts{Gretap: true, WireGuardMTU: 1420}
	without := ChainFacts{Gretap: false, WireGuardMTU: 1420}
	for _, tc := range []struct {
		name  string
		f     ChainFacts
		asked string
		peers int
		kind  string
		mtu   int
		ports int
	}{
		{"auto with gretap", withGretap, helperapi.TunnelAuto, 2, "gretap", 1378, 2},
		{"empty is auto", withGretap, "", 3, "gretap", 1378, 3},
		{"auto without gretap", without, helperapi.TunnelAuto, 2, "vxlan", 1370, 1},
		{"vxlan forced where gretap exists", withGretap, helperapi.TunnelVXLAN, 2, "vxlan", 1370, 1},
		{"vxlan forced without gretap", without, helperapi.TunnelVXLAN, 1, "vxlan", 1370, 1},
		{"gretap forced", withGretap, helperapi.TunnelGretap, 1, "gretap", 1378, 1},
		{"gretap, alone", withGretap, helperapi.TunnelAuto, 0, "gretap", 1378, 0},
		{"smaller WireGuard MTU", ChainFacts{Gretap: true, WireGuardMTU: 1280}, helperapi.TunnelAuto, 2, "gretap", 1238, 2},
		{"smaller WireGuard MTU, vxlan", ChainFacts{WireGuardMTU: 1280}, helperapi.TunnelAuto, 2, "vxlan", 1230, 1},
	} {
		kind, mtu, ports := ExpectedChain(tc.f, tc.asked, tc.peers)
		if kind != tc.kind || mtu != tc.mtu || ports != tc.ports {
			t.Errorf("%s: ExpectedChain(%+v, %q, %d) = %s, %d, %d; want %s, %d, %d",
				tc.name, tc.f, tc.asked, tc.peers, kind, mtu, ports, tc.kind, tc.mtu, tc.ports)
		}
	}
}
