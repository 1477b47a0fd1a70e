package plumbing

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/internal/testbed"
)

// testSpec is machine 1 of a three-machine mesh with the given networks.
func testSpec(networks ...helperapi.Network) helperapi.Spec {
	return helperapi.Spec{
		Mesh: helperapi.Mesh{Address: netip.MustParsePrefix("10.99.0.1/16")},
		Peers: []helperapi.Peer{
			{Name: "m2", PublicKey: testbed.Key('b'), Endpoint: "192.0.2.2:51820", MeshIP: netip.MustParseAddr("10.99.0.2")},
			{Name: "m3", PublicKey: testbed.Key('c'), MeshIP: netip.MustParseAddr("10.99.0.3"), Keepalive: 25,
				AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.98.0.0/24")}},
		},
		Networks: networks,
	}
}

func changesText(cs []Change) string {
	var b strings.Builder
	for _, c := range cs {
		b.WriteString(c.String())
		b.WriteByte('\n')
	}
	return b.String()
}

func TestPlanFromEmpty(t *testing.T) {
	blue := helperapi.Network{Name: "blue", ID: 1, Peers: []string{"m2", "m3"}}
	red := helperapi.Network{Name: "red", ID: 7, Tunnel: helperapi.TunnelVXLAN, Peers: []string{"m3"}}
	tests := []struct {
		name    string
		spec    helperapi.Spec
		machine machine
		want    string
	}{{
		name:    "mesh only",
		spec:    testSpec(),
		machine: machine{UplinkMTU: 1500},
		want: `add wireguard btwg0 mtu 1420
`,
	}, {
		name:    "auto picks gretap where the kernel has it",
		spec:    testSpec(blue),
		machine: machine{UplinkMTU: 1500, Gretap: true},
		want: `add wireguard btwg0 mtu 1420
add bridge btbr1 mtu 1378
add gretap btgt1-2 key 1 local 10.99.0.1 remote 10.99.0.2 mtu 1378 master btbr1 isolated
add gretap btgt1-3 key 1 local 10.99.0.1 remote 10.99.0.3 mtu 1378 master btbr1 isolated
`,
	}, {
		name:    "auto falls back to vxlan, a vxlan network stays vxlan",
		spec:    testSpec(blue, red),
		machine: machine{UplinkMTU: 1500},
		want: `add wireguard btwg0 mtu 1420
add bridge btbr1 mtu 1370
add bridge btbr7 mtu 1370
add vxlan btvx1 vni 1 local 10.99.0.1 dev btwg0 port 4789 mtu 1370 master btbr1
add vxlan btvx7 vni 7 local 10.99.0.1 dev btwg0 port 4789 mtu 1370 master btbr7
`,
	}, {
		name: "a network with a subnet: its gateway address and MAC on the bridge",
		spec: testSpec(helperapi.Network{Name: "teal", ID: 300, Subnet: netip.MustParsePrefix("10.30.0.0/24"),
			Tunnel: helperapi.TunnelVXLAN, Peers: []string{"m2"}}),
		machine: machine{UplinkMTU: 1500},
		want: `add wireguard btwg0 mtu 1420
add bridge btbr300 mtu 1370 addr 10.30.0.1/24 mac 02:62:74:00:01:2c
add vxlan btvx300 vni 300 local 10.99.0.1 dev btwg0 port 4789 mtu 1370 master btbr300
`,
	}, {
		name:    "jumbo uplink",
		spec:    testSpec(red),
		machine: machine{UplinkMTU: 9000, Gretap: true},
		want: `add wireguard btwg0 mtu 8920
add bridge btbr7 mtu 8870
add vxlan btvx7 vni 7 local 10.99.0.1 dev btwg0 port 4789 mtu 8870 master btbr7
`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := makePlan(tt.spec, tt.machine)
			f := newFakeTable()
			got, err := converge(context.Background(), f, p.Links)
			if err != nil {
				t.Fatal(err)
			}
			if text := changesText(got); text != tt.want {
				t.Errorf("changes:\n%s\nwant:\n%s", text, tt.want)
			}
			again, err := converge(context.Background(), f, p.Links)
			if err != nil || len(again) != 0 {
				t.Errorf("second apply changed %q (err %v), want nothing", changesText(again), err)
			}
		})
	}
}

func TestPlanRoutesAndFDB(t *testing.T) {
	p := makePlan(testSpec(helperapi.Network{Name: "red", ID: 7, Tunnel: helperapi.TunnelVXLAN, Peers: []string{"m3", "m2"}}), machine{})
	wg, vx := p.Links[0], p.Links[2]
	if got := joinPrefixes(wg.Routes); got != "10.98.0.0/24" {
		t.Errorf("routes = %s, want only the relayed prefix 10.98.0.0/24", got)
	}
	if got := joinAddrs(vx.FDB); got != "10.99.0.2,10.99.0.3" {
		t.Errorf("fdb = %s, want both peers", got)
	}
	if got := p.Networks[0]; got.MTU != 1370 || got.Tunnel != helperapi.TunnelVXLAN || got.Bridge != "btbr7" {
		t.Errorf("network report = %+v", got)
	}
}

func TestChangesBetweenSpecs(t *testing.T) {
	blue := helperapi.Network{Name: "blue", ID: 1, Tunnel: helperapi.TunnelGretap, Peers: []string{"m2", "m3"}}
	m := machine{UplinkMTU: 1500, Gretap: true}
	f := newFakeTable()
	if _, err := converge(context.Background(), f, makePlan(testSpec(blue), m).Links); err != nil {
		t.Fatal(err)
	}
	// m3 leaves blue; blue moves to VXLAN; the uplink shrinks.
	blue2 := helperapi.Network{Name: "blue", ID: 1, Tunnel: helperapi.TunnelVXLAN, Peers: []string{"m2"}}
	got, err := converge(context.Background(), f, makePlan(testSpec(blue2), machine{UplinkMTU: 1400}).Links)
	if err != nil {
		t.Fatal(err)
	}
	want := `set btwg0 mtu 1320
set btbr1 mtu 1270
add vxlan btvx1 vni 1 local 10.99.0.1 dev btwg0 port 4789 mtu 1270 master btbr1
del gretap btgt1-3
del gretap btgt1-2
`
	if text := changesText(got); text != want {
		t.Errorf("changes:\n%s\nwant:\n%s", text, want)
	}
}

// TestConvergeFromAnyState moves between specs and damaged states in random
// order and checks that every apply ends in the state a fresh machine gets,
// links and firewall both, and that no other program's table changes.
func TestConvergeFromAnyState(t *testing.T) {
	specs := []helperapi.Spec{
		testSpec(),
		testSpec(helperapi.Network{Name: "blue", ID: 1, Subnet: netip.MustParsePrefix("10.10.1.0/24"), Peers: []string{"m2", "m3"}}),
		testSpec(helperapi.Network{Name: "blue", ID: 1, Subnet: netip.MustParsePrefix("10.10.1.0/24"), Tunnel: helperapi.TunnelVXLAN, Peers: []string{"m2"}},
			helperapi.Network{Name: "red", ID: 2, Subnet: netip.MustParsePrefix("10.10.2.0/25"), Peers: []string{"m3"}}),
		testSpec(helperapi.Network{Name: "green", ID: 300, Tunnel: helperapi.TunnelGretap, Peers: []string{"m3"}}),
	}
	// The same network after the machine's mesh address moved: every
	// tunnel's local end changes, so its links are replaced.
	// (A network keeps its subnet for life, and with it its gateway.)
	moved := testSpec(helperapi.Network{Name: "blue", ID: 1, Subnet: netip.MustParsePrefix("10.10.1.0/24"), Peers: []string{"m2", "m3"}})
	moved.Mesh.Address = netip.MustParsePrefix("10.99.0.9/16")
	specs = append(specs, moved)
	machines := []machine{{UplinkMTU: 1500, Gretap: true}, {UplinkMTU: 1500}, {UplinkMTU: 9000, Gretap: true}}
	fresh := func(s helperapi.Spec, m machine) (string, string) {
		f, fw, gw := newFakeTable(), newFakeRules(), newFakeRules()
		p := makePlan(s, m)
		if _, err := converge(context.Background(), f, p.Links); err != nil {
			t.Fatal(err)
		}
		if _, err := convergeFirewall(context.Background(), fw, makeFirewall(s, p)); err != nil {
			t.Fatal(err)
		}
		if _, err := convergeFirewall(context.Background(), gw, gatewayFilter(p)); err != nil {
			t.Fatal(err)
		}
		return f.dump(), fw.dump() + gw.dump()
	}
	rng := rand.New(rand.NewPCG(1, 2))
	f := newFakeTable(Link{Name: "eth0", Kind: "veth", MTU: 1500, Up: true})
	fw, gw := newFakeRules(), newFakeRules()
	fwRng := rand.New(rand.NewPCG(3, 4)) // its own, so the links' walk is the same with it or without
	ops := map[Op]int{}
	damages := map[string]int{}
	fwDamages := map[string]int{}
	for i := 0; i < 300; i++ {
		damages[damage(rng, f)]++
		fwDamages[fwDamage(fwRng, fw)]++
		fwDamages[fwDamage(fwRng, gw)]++
		s, m := specs[rng.IntN(len(specs))], machines[rng.IntN(len(machines))]
		// What Check would report before the apply: every replace is a
		// "wrong kind or tunnel ends" drift.
		for _, c := range diff(makePlan(s, m).Links, mustLinks(t, f)) {
			ops[c.Op]++
		}
		if _, err := converge(context.Background(), f, makePlan(s, m).Links); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if _, err := convergeFirewall(context.Background(), fw, makeFirewall(s, makePlan(s, m))); err != nil {
			t.Fatalf("step %d: firewall: %v", i, err)
		}
		if _, err := convergeFirewall(context.Background(), gw, gatewayFilter(makePlan(s, m))); err != nil {
			t.Fatalf("step %d: gateway filter: %v", i, err)
		}
		got := strings.Replace(f.dump(), "veth eth0 mtu 1500 up=true alias=\"\" fdb=none addrs=none routes=none\n", "", 1)
		want, wantFW := fresh(s, m)
		if got != want {
			t.Fatalf("step %d: state after apply:\n%s\nfresh machine:\n%s", i, got, want)
		}
		if got := fw.dump() + gw.dump(); got != wantFW {
			t.Fatalf("step %d: nftables after apply:\n%s\nfresh machine:\n%s", i, got, wantFW)
		}
		if _, ok := f.links["eth0"]; !ok {
			t.Fatalf("step %d: the helper deleted eth0, which is not its own", i)
		}
	}
	// The walk must have covered every kind of damage and every kind of
	// change, the replace path included; otherwise it claims more than it
	// tests.
	for _, d := range damageKinds {
		if damages[d] == 0 {
			t.Errorf("no step did damage %q; the walk does not cover it", d)
		}
	}
	for _, d := range fwDamageKinds {
		if fwDamages[d] == 0 {
			t.Errorf("no step did firewall damage %q; the walk does not cover it", d)
		}
	}
	for _, op := range []Op{OpAdd, OpSet, OpReplace, OpDelete} {
		if ops[op] < 3 {
			t.Errorf("only %d %s changes in the walk; want the path exercised", ops[op], op)
		}
	}
	t.Logf("damage: %v; firewall damage: %v; changes planned: %v", damages, fwDamages, ops)
}

func mustLinks(t *testing.T, f *fakeTable) []Link {
	t.Helper()
	ls, err := f.Links(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

// damageKinds are what damage can do, by name.
var damageKinds = []string{"delete", "mtu", "unbridge", "down", "fdb", "stale", "key", "local", "remote", "kind", "mesh address", "learning", "gateway address", "mac"}

// damage does to the table what a person or a reboot might, and says
// which of damageKinds it did ("" when it found nothing of the helper's).
func damage(rng *rand.Rand, f *fakeTable) string {
	ls, _ := f.Links(context.Background())
	var mine []Link
	for _, l := range ls {
		if ours(l.Name) {
			mine = append(mine, l)
		}
	}
	if len(mine) == 0 {
		return ""
	}
	l := mine[rng.IntN(len(mine))]
	what := damageKinds[rng.IntN(len(damageKinds))]
	switch what {
	case "delete":
		_ = f.Delete(context.Background(), l)
	case "mtu":
		l.MTU = 1500
	case "unbridge":
		l.Master, l.Isolated = "", false
	case "down":
		l.Up = false
	case "fdb":
		l.FDB = nil
	case "stale":
		f.links["btstale9"] = Link{Name: "btstale9", Kind: KindBridge, MTU: 1500}
	case "key":
		l.Key++
	case "local":
		l.Local = netip.MustParseAddr("10.99.7.7")
	case "remote":
		l.Remote = netip.MustParseAddr("10.99.8.8")
	case "kind":
		// Someone made a device of another kind under the helper's name.
		if l.Kind == KindBridge {
			l.Kind = KindVXLAN
		} else {
			l.Kind = KindBridge
		}
	case "mesh address":
		l.Addrs = []netip.Prefix{netip.MustParsePrefix("10.99.6.6/16")}
	case "gateway address":
		// Someone deleted the bridge's gateway address, or added another.
		if l.Kind == KindBridge && len(l.Addrs) > 0 {
			l.Addrs = nil
		} else if l.Kind == KindBridge {
			l.Addrs = []netip.Prefix{netip.MustParsePrefix("192.0.2.99/24")}
		}
	case "mac":
		l.MAC = "52:54:00:12:34:56"
	case "learning":
		// Someone turned learning off (`ip link set … type vxlan nolearning`).
		if l.Kind == KindVXLAN {
			l.Learning = false
		}
	}
	if _, ok := f.links[l.Name]; ok {
		f.links[l.Name] = l
	}
	return what
}

// Replacing the WireGuard device takes the VXLAN devices on it along: a
// change planned for one of them in the same pass is made on the next
// pass, from what is there then, not from stale facts.
func TestConvergeReplacedDevice(t *testing.T) {
	s := testSpec(helperapi.Network{Name: "blue", ID: 1, Tunnel: helperapi.TunnelVXLAN, Peers: []string{"m2", "m3"}})
	p := makePlan(s, machine{UplinkMTU: 1500})
	f := newFakeTable()
	if _, err := converge(context.Background(), f, p.Links); err != nil {
		t.Fatal(err)
	}
	wg, vx := f.links[WireGuardName], f.links[VXLANName(1)]
	wg.Key = 99 // not the device the helper made: replaced
	vx.FDB = vx.FDB[:1]
	f.links[wg.Name], f.links[vx.Name] = wg, vx
	got, err := converge(context.Background(), f, p.Links)
	if err != nil {
		t.Fatal(err)
	}
	want := `replace wireguard btwg0 mtu 1420
add vxlan btvx1 vni 1 local 10.99.0.1 dev btwg0 port 4789 mtu 1370 master btbr1
`
	if text := changesText(got); text != want {
		t.Errorf("changes:\n%s\nwant:\n%s", text, want)
	}
}
