package plumbing_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/internal/testbed"
	"github.com/butter-cloud/butter/lab/sim"
	"github.com/butter-cloud/butter/plumbing"
	"github.com/google/nftables"
)

// The network's edge on a lab of two machines running the real helper
// daemon, network blue (VXLAN) on both with egress on: the distributed
// gateway on every member's bridge, its ARP kept off the tunnel, and egress
// to an "internet" namespace on the lab's underlay, which sees only the
// machine's uplink address. Every "nothing" has its control.

var edgeNetwork = helperapi.Network{Name: "blue", ID: 1, Subnet: netip.MustParsePrefix("10.10.1.0/24"),
	Tunnel: helperapi.TunnelVXLAN, Egress: true}

type edgeLab struct {
	lab     *sim.Lab
	butter  testbed.Butter
	helpers *testbed.Helpers
	probes  []*sim.Probe // one on each machine's bridge
	// internet is a namespace on the underlay with a TCP service that
	// notes who connects.
	internet     string
	internetAddr netip.Addr
	mu           sync.Mutex
	seen         []string // remote addresses the internet's service saw
}

func TestEdge(t *testing.T) {
	needChainLab(t)
	ctx, cancel := context.WithTimeout(t.Context(), 180*time.Second)
	defer cancel()
	dir := t.TempDir()
	e := &edgeLab{butter: testbed.Butter{Path: buildButter(t, ctx, dir)}}
	e.lab = testbed.NewLab(t, "edg", sim.Config{Machines: 2})
	var err error
	e.helpers, err = e.butter.StartMesh(ctx, e.lab, testbed.Mesh{Networks: []helperapi.Network{edgeNetwork}},
		func(*sim.Machine) io.Writer { return io.Discard })
	if err != nil {
		t.Fatalf("start the mesh: %v", err)
	}
	mtu := e.helpers.Reports[e.lab.Machines[0].Name].Networks[0].MTU
	gw := helperapi.GatewayAddr(edgeNetwork.Subnet)
	e.probes = addProbes(t, ctx, e.lab, e.lab.Machines, edgeNetwork.ID, mtu)
	for _, p := range e.probes {
		if out, err := p.Run(ctx, ipBin, "route", "add", "default", "via", gw.String()); err != nil {
			t.Fatalf("%s: default route: %v: %s", p.Name, err, out)
		}
	}
	e.addInternet(t, ctx)

	runSteps(t, ctx, 90, []labStep{
		{"every member's bridge holds the gateway address and MAC; a deleted address comes back", e.testGatewayOnBridges},
		{"a probe pings its own machine's gateway; its ARP never crosses the tunnel", e.testGatewayARP},
		{"egress: a probe reaches the internet, which sees the machine's uplink address", e.testEgress},
		{"egress off on every member: nothing gets out", e.testEgressOff},
	})
}

// addInternet makes a namespace on the underlay bridge with an address no
// machine has and no route to any network's subnet, and a TCP service on
// port 8080 that notes each caller's address.
func (e *edgeLab) addInternet(t *testing.T, ctx context.Context) {
	t.Helper()
	e.internet = e.lab.Name + "-inet"
	e.internetAddr = addUnderlayHost(t, ctx, e.lab, e.internet, "inet", 101)
	serveTCP(t, e.internet, ":8080", func(c net.Conn) {
		e.mu.Lock()
		e.seen = append(e.seen, c.RemoteAddr().(*net.TCPAddr).IP.String())
		e.mu.Unlock()
		_, _ = io.WriteString(c, "hello from the internet\n")
	})
}

// reach says whether probe p gets the internet's service to answer
// within a second, and which addresses the service saw meanwhile.
func (e *edgeLab) reach(ctx context.Context, p *sim.Probe) (bool, []string) {
	e.mu.Lock()
	e.seen = nil
	e.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	ok := false
	if c, err := testbed.DialInNetns(ctx, nsPath(p.Netns()), netip.AddrPortFrom(e.internetAddr, 8080).String()); err == nil {
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		line, _ := io.ReadAll(io.LimitReader(c, 64))
		ok = strings.Contains(string(line), "hello")
		c.Close()
	}
	time.Sleep(100 * time.Millisecond)
	e.mu.Lock()
	defer e.mu.Unlock()
	return ok, append([]string(nil), e.seen...)
}

func (e *edgeLab) testGatewayOnBridges(t *testing.T, ctx context.Context) {
	br := plumbing.BridgeName(edgeNetwork.ID)
	gw := netip.PrefixFrom(helperapi.GatewayAddr(edgeNetwork.Subnet), edgeNetwork.Subnet.Bits()).String()
	mac := helperapi.GatewayMAC(edgeNetwork.ID).String()
	holds := func(m *sim.Machine) (bool, bool) {
		addrs, _ := m.Run(ctx, ipBin, "-br", "addr", "show", "dev", br)
		link, _ := m.Run(ctx, ipBin, "-br", "link", "show", "dev", br)
		return strings.Contains(string(addrs), gw), strings.Contains(string(link), mac)
	}
	for _, m := range e.lab.Machines {
		if a, l := holds(m); !a || !l {
			t.Errorf("%s: %s has address %s: %v, MAC %s: %v", m.Name, br, gw, a, mac, l)
		}
	}
	m2 := e.lab.Machines[1]
	if out, err := m2.Run(ctx, ipBin, "addr", "del", gw, "dev", br); err != nil {
		t.Fatalf("delete the gateway by hand: %v: %s", err, out)
	}
	if a, _ := holds(m2); a {
		t.Fatal("control: the address is still there after deleting it by hand")
	}
	drift, err := e.butter.Check(ctx, m2, e.helpers.Specs[m2.Name])
	if err != nil || len(drift) == 0 {
		t.Errorf("%s: check after the address was deleted: %v, %v; want drift", m2.Name, drift, err)
	}
	if _, err := e.butter.Apply(ctx, m2, e.helpers.Specs[m2.Name]); err != nil {
		t.Fatal(err)
	}
	if a, l := holds(m2); !a || !l {
		t.Errorf("%s: after the daemon's apply %s has address %v, MAC %v; want both back", m2.Name, br, a, l)
	}
}

func (e *edgeLab) testGatewayARP(t *testing.T, ctx context.Context) {
	m1, p := e.lab.Machines[0], e.probes[0]
	gw := helperapi.GatewayAddr(edgeNetwork.Subnet)
	vx := plumbing.VXLANName(edgeNetwork.ID)
	// Counted on the tunnel port: the probe's ARP for the gateway, and
	// anything the machine sends from the gateway's MAC.
	filter := fmt.Sprintf("(arp and host %s) or ether src %s", gw, helperapi.GatewayMAC(edgeNetwork.ID))
	try := func() (bool, []string) {
		_, _ = p.Run(ctx, ipBin, "neigh", "flush", "dev", "eth0")
		cp, err := startCapture(ctx, m1.Name+" "+vx, m1.Start, vx, filter)
		if err != nil {
			t.Fatal(err)
		}
		err = waitPing(ctx, p, gw, probeBudget)
		time.Sleep(200 * time.Millisecond)
		return err == nil, cp.stop()
	}
	ok, leaked := try()
	t.Logf("probe %s -> gateway %s: reply=%v; %d packets of the gateway's on %s", p.Name, gw, ok, len(leaked), vx)
	if !ok {
		t.Errorf("probe %s cannot ping its machine's gateway %s", p.Name, gw)
	}
	if len(leaked) != 0 {
		t.Errorf("the gateway's ARP or frames crossed %s on %s:\n%s", vx, m1.Name, strings.Join(leaked, "\n"))
	}
	// The control: without the gateway filter the same ARP crosses.
	c := nft(t, m1)
	c.DelTable(&nftables.Table{Name: plumbing.FirewallTable, Family: nftables.TableFamilyBridge})
	if err := c.Flush(); err != nil {
		t.Fatalf("delete table bridge %s: %v", plumbing.FirewallTable, err)
	}
	ok, leaked = try()
	t.Logf("control, without the gateway filter: reply=%v; %d packets of the gateway's on %s", ok, len(leaked), vx)
	if len(leaked) == 0 {
		t.Error("control: without the gateway filter no ARP for the gateway crossed the tunnel; the check proves nothing")
	}
	rep, err := e.butter.Apply(ctx, m1, e.helpers.Specs[m1.Name])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(rep.Changes, "\n"), "table bridge butter missing") {
		t.Errorf("apply after the bridge table was deleted changed %q, want it written", rep.Changes)
	}
}

func (e *edgeLab) testEgress(t *testing.T, ctx context.Context) {
	for i, p := range e.probes {
		m := e.lab.Machines[i]
		ok, seen := e.reach(ctx, p)
		t.Logf("egress on: probe %s on %s -> %s:8080: answered=%v, the internet saw %v", p.Name, m.Name, e.internetAddr, ok, seen)
		if !ok {
			t.Errorf("probe %s on %s does not reach the internet with egress on", p.Name, m.Name)
		}
		if want := m.Addr.Addr().String(); len(seen) != 1 || seen[0] != want {
			t.Errorf("the internet saw %v, want only %s's uplink address %s", seen, m.Name, want)
		}
		if err := waitPing(ctx, p, e.internetAddr, probeBudget); err != nil {
			t.Errorf("probe %s on %s cannot ping the internet with egress on: %v", p.Name, m.Name, err)
		}
	}
	// Nothing inbound unless a reply: the internet, routed to blue
	// through m1, does not reach m1's probe.
	m1 := e.lab.Machines[0]
	if out, err := sim.Output(exec.CommandContext(ctx, ipBin, "-n", e.internet, "route", "add", edgeNetwork.Subnet.String(), "via", m1.Addr.Addr().String())); err != nil {
		t.Fatalf("route blue through m1: %v: %s", err, out)
	}
	defer func() {
		_ = exec.Command(ipBin, "-n", e.internet, "route", "del", edgeNetwork.Subnet.String()).Run()
	}()
	err := inNetnsPing(ctx, e.internet, e.probes[0].Addr.Addr())
	t.Logf("internet -> probe %s through m1: %v", e.probes[0].Name, err)
	if err == nil {
		t.Error("the internet reaches a probe on blue through m1; want nothing inbound but replies")
	}
}

func (e *edgeLab) testEgressOff(t *testing.T, ctx context.Context) {
	off := func(on bool) {
		t.Helper()
		for _, m := range e.lab.Machines {
			s := e.helpers.Specs[m.Name]
			s.Networks = append([]helperapi.Network(nil), s.Networks...)
			s.Networks[0].Egress = on
			if _, err := e.butter.Apply(ctx, m, s); err != nil {
				t.Fatal(err)
			}
		}
	}
	off(false)
	defer off(true)
	for i, p := range e.probes {
		m := e.lab.Machines[i]
		ok, seen := e.reach(ctx, p)
		err := waitPing(ctx, p, e.internetAddr, probeBudget)
		t.Logf("egress off: probe %s on %s -> internet: answered=%v, saw %v, ping %v", p.Name, m.Name, ok, seen, err)
		if ok || len(seen) != 0 || err == nil {
			t.Errorf("probe %s on %s gets out with egress off (answered=%v, seen %v, ping error %v)", p.Name, m.Name, ok, seen, err)
		}
	}
	// The positive control: its own gateway still answers.
	if err := waitPing(ctx, e.probes[0], helperapi.GatewayAddr(edgeNetwork.Subnet), probeBudget); err != nil {
		t.Errorf("control: with egress off the probe cannot ping its gateway: %v", err)
	}
}

// inNetnsPing pings to once from the named namespace.
func inNetnsPing(ctx context.Context, netns string, to netip.Addr) error {
	ctx, cancel := context.WithTimeout(ctx, probeBudget)
	defer cancel()
	_, err := sim.Output(exec.CommandContext(ctx, ipBin, "netns", "exec", netns, pingBin, "-n", "-c", "2", "-W", "1", to.String()))
	return err
}
