package plumbing_test

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/internal/testbed"
	"github.com/butter-cloud/butter/lab/sim"
	"github.com/butter-cloud/butter/plumbing"
)

// The relay, end to end: m1 on the underlay, m2 behind NAT router r1, m3
// behind NAT router r2 (another LAN). m2 and m3 cannot reach each other;
// the plan (helperapi.Plan through testbed.Specs: no endpoint for the
// machines behind NAT) has them reach each other through m1, whose
// WireGuard forwards. A probe on m2 pings a probe on m3 across a private
// network, and m1's uplink carries nothing but WireGuard meanwhile.

var relayNetwork = helperapi.Network{Name: "relay", ID: 9, Tunnel: helperapi.TunnelVXLAN,
	Subnet: netip.MustParsePrefix("10.30.0.0/24")}

// udpLine is tcpdump -q's line for a UDP packet: time, source, destination.
var udpLine = regexp.MustCompile(`^\d+\.\d+ IP (\S+) > (\S+): UDP, length \d+$`)

func TestRelayThroughThirdMachine(t *testing.T) {
	needChainLab(t)
	ctx, cancel := context.WithTimeout(t.Context(), 150*time.Second)
	defer cancel()

	dir := t.TempDir()
	b := testbed.Butter{Path: buildButter(t, ctx, dir)}
	l := testbed.NewLab(t, "rl", sim.Config{Machines: 1, NAT: 1, NAT2: 1})
	if len(l.Machines) != 3 || len(l.Routers) != 2 {
		t.Fatalf("lab: %d machines, %d routers; want 3 and 2", len(l.Machines), len(l.Routers))
	}
	relay, a, c := l.Machines[0], l.Machines[1], l.Machines[2]
	if relay.Router != nil || a.Router != l.Routers[0] || c.Router != l.Routers[1] {
		t.Fatalf("want m1 on the underlay, m2 behind r1, m3 behind r2; got %v, %v, %v", relay.Router, a.Router, c.Router)
	}
	t.Logf("relay %s %s; %s %s behind %s %s; %s %s behind %s %s", relay.Name, relay.Addr, a.Name, a.Addr, a.Router.Name, a.Router.Addr,
		c.Name, c.Addr, c.Router.Name, c.Router.Addr)

	// Control on the lab: the two machines behind NAT do not reach each
	// other directly, but both reach the relay.
	for _, p := range [][2]*sim.Machine{{a, c}, {c, a}} {
		if _, err := p[0].Run(ctx, pingBin, "-n", "-c", "1", "-W", "1", p[1].Addr.Addr().String()); err == nil {
			t.Fatalf("%s reaches %s's LAN address %s directly: the two NATs are not separate", p[0].Name, p[1].Name, p[1].Addr.Addr())
		}
		if _, err := p[0].Run(ctx, pingBin, "-n", "-c", "1", "-W", "2", relay.Addr.Addr().String()); err != nil {
			t.Fatalf("%s behind %s cannot reach the relay %s: %v", p[0].Name, p[0].Router.Name, relay.Addr.Addr(), err)
		}
	}

	logs := openHelperLogs(t, dir, l, 0)
	meshCtx, meshCancel := context.WithTimeout(ctx, 60*time.Second)
	start := time.Now()
	h, err := b.StartMesh(meshCtx, l, testbed.Mesh{Networks: []helperapi.Network{relayNetwork}},
		logs.of)
	meshCancel()
	if err != nil {
		t.Fatalf("waited up to 60 s for the helpers, their specs and every machine to reach every other over the mesh: %v", err)
	}
	t.Logf("mesh up in %s", time.Since(start).Round(time.Millisecond))

	// The specs are the relay's shape: no endpoint for either machine
	// behind NAT, each reaching the other through m1, which relays.
	if !h.Specs[relay.Name].Mesh.Relay {
		t.Errorf("%s's spec does not relay: %+v", relay.Name, h.Specs[relay.Name].Mesh)
	}
	for _, p := range [][2]*sim.Machine{{a, c}, {c, a}} {
		for _, peer := range h.Specs[p[0].Name].Peers {
			switch peer.Name {
			case p[1].Name:
				if peer.Via != relay.Name || peer.Endpoint != "" {
					t.Errorf("%s's peer %s: via %q endpoint %q, want via %s and no endpoint", p[0].Name, peer.Name, peer.Via, peer.Endpoint, relay.Name)
				}
			case relay.Name:
				if peer.Endpoint == "" || peer.Via != "" {
					t.Errorf("%s's peer %s: via %q endpoint %q, want the relay's endpoint", p[0].Name, peer.Name, peer.Via, peer.Endpoint)
				}
			}
		}
	}
	for _, peer := range h.Specs[relay.Name].Peers {
		if peer.Endpoint != "" {
			t.Errorf("%s's peer %s has endpoint %q: a machine behind NAT has none", relay.Name, peer.Name, peer.Endpoint)
		}
	}

	mtu := h.Reports[a.Name].Networks[0].MTU
	pa, err := l.AddProbe(ctx, a, plumbing.BridgeName(relayNetwork.ID), netip.MustParsePrefix("10.30.0.2/24"), mtu)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := l.AddProbe(ctx, c, plumbing.BridgeName(relayNetwork.ID), netip.MustParsePrefix("10.30.0.3/24"), mtu)
	if err != nil {
		t.Fatal(err)
	}
	// The first ping may wait for ARP and VXLAN learning: bounded.
	if err := waitPing(ctx, pa, pc.Addr.Addr(), 15*time.Second); err != nil {
		t.Fatalf("waited 15 s for probe %s (on %s, behind %s) to ping probe %s (on %s, behind %s) through %s: %v",
			pa.Name, a.Name, a.Router.Name, pc.Name, c.Name, c.Router.Name, relay.Name, err)
	}

	cp, err := startCapture(ctx, relay.Name+" uplink", relay.Start, sim.MachineUplink, "")
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	_, pingErr := pa.Run(ctx, pingBin, "-n", "-q", "-c", "10", "-i", "0.2", "-W", "2", "-M", "do", "-s", fmt.Sprint(mtu-28), pc.Addr.Addr().String())
	took := time.Since(begin)
	time.Sleep(200 * time.Millisecond)
	pkts := cp.stop()
	if pingErr != nil {
		t.Errorf("10 full-size DF pings %s -> %s through %s: %v", pa.Name, pc.Name, relay.Name, pingErr)
	}

	// Sort what crossed m1's eth0: WireGuard between the relay's port and
	// each router (the NATs' public side), ARP, and anything else.
	wgPort := fmt.Sprintf("%s.%d", relay.Addr.Addr(), helperapi.DefaultListenPort)
	dirs := map[string]int{} // "r1>m1", "m1>r2", …
	var other []string
	wgCount := 0
	igmp := 0
	for _, line := range pkts {
		if strings.Contains(line, " ARP, ") {
			continue
		}
		// IGMPv3 membership reports from an address-less lab link
		// (0.0.0.0 > 224.0.0.22) now and then cross the underlay: the lab's
		// own link-local control traffic, carrying nothing of a network.
		if strings.HasSuffix(line, " IP 0.0.0.0 > 224.0.0.22: igmp") {
			igmp++
			continue
		}
		sm := udpLine.FindStringSubmatch(line)
		if sm == nil || (sm[1] != wgPort && sm[2] != wgPort) {
			other = append(other, line)
			continue
		}
		wgCount++
		for _, r := range l.Routers {
			switch {
			case strings.HasPrefix(sm[1], r.Addr.Addr().String()+"."):
				dirs[r.Name+">"+relay.Name]++
			case strings.HasPrefix(sm[2], r.Addr.Addr().String()+"."):
				dirs[relay.Name+">"+r.Name]++
			}
		}
	}
	t.Logf("%s's uplink during %s of pings: %d WireGuard packets %v, %d others, %d IGMP reports, %d in all", relay.Name, took.Round(time.Millisecond), wgCount, dirs, len(other), igmp, len(pkts))
	if len(other) > 0 {
		t.Errorf("%s's uplink carried %d packets that are not WireGuard (VXLAN or ICMP in the clear?):\n%s", relay.Name, len(other), strings.Join(other, "\n"))
	}
	// The control: the capture sees the relayed traffic, in through one
	// NAT and out through the other, both ways; an empty "others" list
	// means something only if it does.
	ra, rc := a.Router.Name, c.Router.Name
	for _, d := range []string{ra + ">" + relay.Name, relay.Name + ">" + rc, rc + ">" + relay.Name, relay.Name + ">" + ra} {
		if dirs[d] < 10 {
			t.Errorf("WireGuard packets %s on %s's uplink: %d, want at least 10 (one per ping, relayed): %v", d, relay.Name, dirs[d], dirs)
		}
	}
}
