package plumbing_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/internal/testbed"
	"github.com/butter-cloud/butter/lab/sim"
	"github.com/butter-cloud/butter/plumbing"
)

// The namespace tier: three simulated machines on one underlay, each
// running the real `butter helper daemon`, two private networks (one forced
// to VXLAN, one auto) over WireGuard, and probe namespaces standing in for
// VMs. What each chain must be (tunnel kind, MTU, ports) is computed from
// the machines' facts by testbed.ExpectedChain, not written down for one
// kernel.

const (
	pingBin    = "/usr/bin/ping"
	tcpdumpBin = "/usr/bin/tcpdump"
)

// needChainLab skips unless the lab can run here (root, ping, tcpdump,
// go); with CI=true it fails instead.
func needChainLab(t *testing.T) {
	t.Helper()
	testbed.NeedLab(t)
	testbed.NeedPrograms(t, pingBin, tcpdumpBin)
	_, err := goBin()
	testbed.Require(t, err == nil, fmt.Sprint(err))
}

func goBin() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("needs the go command to build butter")
	}
	return p, nil
}

// buildButter builds the butter binary into dir.
func buildButter(t *testing.T, ctx context.Context, dir string) string {
	t.Helper()
	gobin, err := goBin()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "butter")
	start := time.Now()
	cmd := exec.CommandContext(ctx, gobin, "build", "-o", bin, "github.com/butter-cloud/butter")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build butter: %v\n%s", err, out)
	}
	t.Logf("built butter in %v", time.Since(start).Round(time.Millisecond))
	return bin
}

// What the namespace-tier lab tests (chain, firewall, edge) share: steps
// run in order on one lab, the helper daemons' logs, and a host on the
// lab's underlay that is no machine of the mesh.

// labStep is one named check of a lab test, run as a subtest.
type labStep struct {
	name string
	f    func(*testing.T, context.Context)
}

// runSteps runs the steps in order as subtests, logging how long each took
// (its name padded to width), and stops the test once a failed step has
// also run out of time.
func runSteps(t *testing.T, ctx context.Context, width int, steps []labStep) {
	t.Helper()
	for _, s := range steps {
		start := time.Now()
		ok := t.Run(s.name, func(t *testing.T) { s.f(t, ctx) })
		t.Logf("%-*s %v", width, s.name, time.Since(start).Round(time.Millisecond))
		if !ok && ctx.Err() != nil {
			t.Fatalf("out of time: %v", ctx.Err())
		}
	}
}

// helperLogs holds each machine's helper log, a file in the test's
// directory, by machine name.
type helperLogs map[string]*os.File

// openHelperLogs makes a log file in dir for each machine of l; when the
// test fails, the last tail lines of each (all of it for 0) are logged.
func openHelperLogs(t *testing.T, dir string, l *sim.Lab, tail int) helperLogs {
	t.Helper()
	logs := helperLogs{}
	t.Cleanup(func() {
		if t.Failed() {
			logs.dump(t, l, tail)
		}
	})
	for _, m := range l.Machines {
		f, err := os.Create(filepath.Join(dir, m.Name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		logs[m.Name] = f
	}
	return logs
}

// of is m's log: what StartMesh writes each daemon's output to.
func (logs helperLogs) of(m *sim.Machine) io.Writer { return logs[m.Name] }

func (logs helperLogs) dump(t *testing.T, l *sim.Lab, tail int) {
	for _, m := range l.Machines {
		data, err := os.ReadFile(logs[m.Name].Name())
		if err != nil {
			continue
		}
		if tail == 0 {
			t.Logf("helper log of %s:\n%s", m.Name, data)
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(lines) > tail {
			lines = lines[len(lines)-tail:]
		}
		t.Logf("helper log of %s (last %d lines):\n%s", m.Name, len(lines), strings.Join(lines, "\n"))
	}
}

// addUnderlayHost makes the network namespace ns a host on l's underlay
// that no machine is: a veth into the underlay bridge (port its bridge
// side), underlay address number host, lo up. The namespace goes at the
// end of the test. It returns the host's address.
func addUnderlayHost(t *testing.T, ctx context.Context, l *sim.Lab, ns, port string, host int) netip.Addr {
	t.Helper()
	addr := sim.HostAddr(l.Underlay, host).Addr()
	labIP(t, ctx, "netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command(ipBin, "netns", "del", ns).Run() })
	labIP(t, ctx, "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", l.UnderlayNetns())
	labIP(t, ctx, "-n", l.UnderlayNetns(), "link", "set", port, "master", sim.UnderlayBridge, "up")
	labIP(t, ctx, "-n", ns, "addr", "add", netip.PrefixFrom(addr, l.Underlay.Bits()).String(), "dev", "eth0")
	labIP(t, ctx, "-n", ns, "link", "set", "eth0", "up")
	labIP(t, ctx, "-n", ns, "link", "set", "lo", "up")
	return addr
}

// labIP runs ip(8) in the root namespace, or fails the test.
func labIP(t *testing.T, ctx context.Context, args ...string) {
	t.Helper()
	if out, err := sim.Output(exec.CommandContext(ctx, ipBin, args...)); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// chain is the lab under test.
type chain struct {
	lab     *sim.Lab
	butter  testbed.Butter
	mesh    testbed.Mesh
	helpers *testbed.Helpers
	logs    helperLogs
	// probes[netIndex][machineIndex], both from 0.
	probes [][]*sim.Probe
	// By network index, as computed from the machines' facts.
	kind        []string
	mtu         []int
	tunnelPorts []int
}

var chainNetworks = []helperapi.Network{
	{Name: "blue", ID: 1, Subnet: netip.MustParsePrefix("10.10.1.0/24"), Tunnel: helperapi.TunnelVXLAN},
	{Name: "green", ID: 2, Subnet: netip.MustParsePrefix("10.10.2.0/24"), Tunnel: helperapi.TunnelAuto},
}

// probeAddr is probe (network n, machine i)'s address, both from 0. All
// probes share one /16, so that a probe on one network would reach a probe
// on the other if the networks leaked into each other: the isolation
// check fails for the right reason, not for want of a route.
func probeAddr(n, i int) netip.Prefix {
	return netip.MustParsePrefix(fmt.Sprintf("10.10.%d.%d/16", n+1, i+11))
}

// addProbes adds a probe on network id's bridge on each of ms, the i-th
// at 10.10.id.(11+i)/24.
func addProbes(t *testing.T, ctx context.Context, l *sim.Lab, ms []*sim.Machine, id, mtu int) []*sim.Probe {
	t.Helper()
	var out []*sim.Probe
	for i, m := range ms {
		p, err := l.AddProbe(ctx, m, plumbing.BridgeName(id), netip.MustParsePrefix(fmt.Sprintf("10.10.%d.%d/24", id, 11+i)), mtu)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func TestChain(t *testing.T) {
	needChainLab(t)
	ctx, cancel := context.WithTimeout(t.Context(), 150*time.Second)
	defer cancel()
	c := startChain(t, ctx, "ch")
	runSteps(t, ctx, 55, []labStep{
		{"every pair pings on every network", c.testPairs},
		{"networks are isolated", c.testIsolation},
		{"every bridge port carries the network MTU", c.testPortMTU},
		{"DF ping at the MTU crosses the chain, one byte more never arrives", c.testDF},
		{"TCP crosses the chain intact", c.testBulk},
		{"the WireGuard device's link is the one reported", c.testDevice("")},
		{"a broadcast arrives once at each probe of its network", c.testBroadcast},
		{"the underlay carries only WireGuard", c.testUnderlay},
		{"no IP fragments", c.testNoFragments},
		{"applying the same spec again changes nothing", c.testIdempotent},
		{"a deleted link is drift and comes back", c.testDrift},
		{"a deleted firewall table or rule is drift and comes back", c.testFirewallDrift},
		{"a killed daemon restores everything", c.testKilledDaemon},
		{"all daemons stopped and started restore everything", c.testRestartAll},
		{"no IP fragments at the end", c.testNoFragments},
	})
}

// TestChainOverTUN runs the chain with userspace WireGuard on
// wireguard-go's own tun (plumbing.PlainTUNEnv in the daemons'
// environment), the link the helper makes where the kernel's tap lacks
// UDP-tunnel offloads (before Linux 6.18): every other test here runs the
// tap on such a kernel.
func TestChainOverTUN(t *testing.T) {
	needChainLab(t)
	t.Setenv(plumbing.PlainTUNEnv, "1")
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	c := startChain(t, ctx, "ct")
	runSteps(t, ctx, 55, []labStep{
		{"every machine reports its WireGuard device on a tun, and the kernel agrees", c.testDevice(helperapi.UserspaceTUN)},
		{"every pair pings on every network", c.testPairs},
		{"DF ping at the MTU crosses the chain, one byte more never arrives", c.testDF},
		{"TCP crosses the chain intact", c.testBulk},
		{"the underlay carries only WireGuard", c.testUnderlay},
		{"no IP fragments", c.testNoFragments},
	})
}

// startChain builds a lab of three machines named with prefix, starts the
// helpers with chainNetworks on all three, checks their first reports and
// plugs a probe into each network on each machine.
func startChain(t *testing.T, ctx context.Context, prefix string) *chain {
	t.Helper()
	dir := t.TempDir() // first, so that it goes last
	c := &chain{butter: testbed.Butter{Path: buildButter(t, ctx, dir)}}
	c.mesh = testbed.Mesh{Networks: chainNetworks}

	l := testbed.NewLab(t, prefix, sim.Config{Machines: 3})
	c.lab = l
	c.logs = openHelperLogs(t, dir, l, 40)
	start := time.Now()
	var err error
	c.helpers, err = c.butter.StartMesh(ctx, l, c.mesh, c.logs.of)
	if err != nil {
		t.Fatalf("start the mesh: %v", err)
	}
	t.Logf("helpers started, specs applied, mesh up: %v", time.Since(start).Round(time.Millisecond))

	c.checkReports(t, ctx)
	if t.Failed() {
		t.FailNow()
	}

	for n := range chainNetworks {
		var row []*sim.Probe
		for i, m := range l.Machines {
			p, err := l.AddProbe(ctx, m, plumbing.BridgeName(chainNetworks[n].ID), probeAddr(n, i), c.mtu[n])
			if err != nil {
				t.Fatal(err)
			}
			row = append(row, p)
		}
		c.probes = append(c.probes, row)
	}
	return c
}

// testDevice checks that every machine reports its userspace WireGuard
// device on a link of kind (helperapi.UserspaceTAP or UserspaceTUN; ""
// for either, as the helper found the kernel) and that ip(8) shows the
// same.
func (c *chain) testDevice(kind string) func(*testing.T, context.Context) {
	return func(t *testing.T, ctx context.Context) {
		for _, m := range c.lab.Machines {
			rep := c.helpers.Reports[m.Name].WireGuard
			kind := kind
			if kind == "" && (rep.Device == helperapi.UserspaceTAP || rep.Device == helperapi.UserspaceTUN) {
				kind = rep.Device
				t.Logf("%s: userspace WireGuard on a %s", m.Name, kind)
			}
			if !rep.Userspace || rep.Device != kind || kind == "" {
				t.Errorf("%s: the report says userspace %v on %q, want userspace on %q", m.Name, rep.Userspace, rep.Device, kind)
			}
			out, err := m.Run(ctx, ipBin, "-d", "link", "show", plumbing.WireGuardName)
			if err != nil {
				t.Fatalf("%s: %v", m.Name, err)
			}
			if !strings.Contains(string(out), "tun type "+kind) {
				t.Errorf("%s: ip -d link show %s says, wanting \"tun type %s\":\n%s", m.Name, plumbing.WireGuardName, kind, out)
			}
		}
	}
}

// testBulk sends 8 MiB of TCP from a probe on m1 to one on m2 on every
// network and checks they arrive unchanged: the segmentation and merging
// on the WireGuard device's way keep every byte.
func (c *chain) testBulk(t *testing.T, ctx context.Context) {
	const size = 8 << 20
	for n, row := range c.probes {
		a, b := row[0], row[1]
		to := netip.AddrPortFrom(b.Addr.Addr(), 7100).String()
		took, err := testbed.SendIntact(ctx, filepath.Join(sim.NetnsDir, a.Netns()), filepath.Join(sim.NetnsDir, b.Netns()), to, size)
		if err != nil {
			t.Errorf("%s: %s (%s) -> %s (%s): %v", chainNetworks[n].Name, a.Name, a.Machine.Name, b.Name, b.Machine.Name, err)
			continue
		}
		t.Logf("%s: %d MiB %s -> %s in %v", chainNetworks[n].Name, size>>20, a.Machine.Name, b.Machine.Name, took.Round(time.Millisecond))
	}
}

// checkReports computes what each machine's chains must be from its facts
// (the kernel's gretap, checked again here without the helper, and the
// uplink's MTU, checked against /sys), then checks the first reports and
// the kernel's links against that, and records it per network.
func (c *chain) checkReports(t *testing.T, ctx context.Context) {
	c.kind = make([]string, len(chainNetworks))
	c.mtu = make([]int, len(chainNetworks))
	c.tunnelPorts = make([]int, len(chainNetworks))
	peers := len(c.lab.Machines) - 1 // every network spans every machine
	for i, m := range c.lab.Machines {
		f, err := c.butter.Facts(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		gretap, err := testbed.KernelGretap(ctx, m.Run, ipBin)
		if err != nil {
			t.Fatal(err)
		}
		if gretap != f.Gretap {
			t.Errorf("%s: facts say gretap=%v, the kernel says %v", m.Name, f.Gretap, gretap)
		}
		if out, err := m.Run(ctx, "/bin/cat", "/sys/class/net/"+f.Uplink+"/mtu"); err != nil {
			t.Errorf("%s: uplink %q: %v", m.Name, f.Uplink, err)
		} else if mtu, _ := strconv.Atoi(strings.TrimSpace(string(out))); mtu != f.UplinkMTU {
			t.Errorf("%s: facts say uplink %s has MTU %d, the kernel says %d", m.Name, f.Uplink, f.UplinkMTU, mtu)
		}
		cf, err := testbed.FactsForChain(f, c.helpers.Specs[m.Name].Mesh.MTU)
		if err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
		t.Logf("%s: gretap=%v uplink %s MTU %d: WireGuard MTU %d", m.Name, cf.Gretap, f.Uplink, f.UplinkMTU, cf.WireGuardMTU)

		rep := c.helpers.Reports[m.Name]
		if rep.WireGuard.MTU != cf.WireGuardMTU {
			t.Errorf("%s: reported WireGuard MTU %d, want %d (uplink %d - %d)", m.Name, rep.WireGuard.MTU, cf.WireGuardMTU, f.UplinkMTU, testbed.WireGuardOverhead)
		}
		if wg, err := kernelLinks(ctx, m, "dev", plumbing.WireGuardName); err != nil {
			t.Error(err)
		} else if len(wg) != 1 || wg[0].MTU != cf.WireGuardMTU {
			t.Errorf("%s: the kernel's %s is %+v, want MTU %d", m.Name, plumbing.WireGuardName, wg, cf.WireGuardMTU)
		}
		if len(rep.Networks) != len(chainNetworks) {
			t.Fatalf("%s: report has %d networks, want %d: %+v", m.Name, len(rep.Networks), len(chainNetworks), rep)
		}
		for n, nr := range rep.Networks {
			want := chainNetworks[n]
			kind, mtu, ports := testbed.ExpectedChain(cf, want.Tunnel, peers)
			if i == 0 {
				c.kind[n], c.mtu[n], c.tunnelPorts[n] = kind, mtu, ports
			} else if kind != c.kind[n] || mtu != c.mtu[n] || ports != c.tunnelPorts[n] {
				t.Fatalf("%s: network %s must be %s/%d/%d ports here but %s/%d/%d on %s: the lab's machines differ", m.Name, want.Name, kind, mtu, ports, c.kind[n], c.mtu[n], c.tunnelPorts[n], c.lab.Machines[0].Name)
			}
			if nr.Name != want.Name || nr.ID != want.ID {
				t.Errorf("%s: network %d reported as %s/%d, want %s/%d", m.Name, n, nr.Name, nr.ID, want.Name, want.ID)
			}
			if nr.Tunnel != kind {
				t.Errorf("%s: network %s (asked %q) resolved to tunnel %q, want %q (gretap=%v)", m.Name, nr.Name, want.Tunnel, nr.Tunnel, kind, cf.Gretap)
			}
			if nr.MTU != mtu {
				t.Errorf("%s: network %s MTU %d, want %d (%s over WireGuard at %d)", m.Name, nr.Name, nr.MTU, mtu, kind, cf.WireGuardMTU)
			}
			if len(nr.Ports) != ports {
				t.Errorf("%s: network %s reports tunnel ports %v, want %d (%s, %d peers)", m.Name, nr.Name, nr.Ports, ports, kind, peers)
			}
			if nr.Bridge != plumbing.BridgeName(want.ID) {
				t.Errorf("%s: network %s bridge %q, want %q", m.Name, nr.Name, nr.Bridge, plumbing.BridgeName(want.ID))
			}
			c.checkKernelChain(t, ctx, m, n, 0)
		}
	}
}

// checkKernelChain checks network n's chain on m as the kernel shows it:
// the bridge and its tunnel ports of the expected kind, number and MTU,
// and others (probes) more ports besides.
func (c *chain) checkKernelChain(t *testing.T, ctx context.Context, m *sim.Machine, n, others int) {
	t.Helper()
	br := plumbing.BridgeName(chainNetworks[n].ID)
	bl, err := kernelLinks(ctx, m, "dev", br)
	if err != nil {
		t.Error(err)
		return
	}
	if len(bl) != 1 || bl[0].Kind() != "bridge" || bl[0].MTU != c.mtu[n] {
		t.Errorf("%s: the kernel's %s is %+v, want a bridge with MTU %d", m.Name, br, bl, c.mtu[n])
	}
	ports, err := kernelLinks(ctx, m, "master", br)
	if err != nil {
		t.Error(err)
		return
	}
	var tunnels []string
	for _, p := range ports {
		switch p.Kind() {
		case c.kind[n]:
			tunnels = append(tunnels, p.Name)
			if p.MTU != c.mtu[n] {
				t.Errorf("%s: %s %s on %s has MTU %d, want %d", m.Name, p.Kind(), p.Name, br, p.MTU, c.mtu[n])
			}
		case "gretap", "vxlan":
			t.Errorf("%s: %s has a %s port %s; network %s must use %s", m.Name, br, p.Kind(), p.Name, chainNetworks[n].Name, c.kind[n])
		}
	}
	if len(tunnels) != c.tunnelPorts[n] || len(ports) != c.tunnelPorts[n]+others {
		t.Errorf("%s: %s has ports %v, %d of them %s; want %d %s and %d more", m.Name, br, ports, len(tunnels), c.kind[n], c.tunnelPorts[n], c.kind[n], others)
	}
}

const ipBin = "/usr/sbin/ip"

// kernelLink is a link as `ip -d -j link show` gives it.
type kernelLink struct {
	Name     string `json:"ifname"`
	MTU      int    `json:"mtu"`
	LinkInfo struct {
		InfoKind string `json:"info_kind"`
	} `json:"linkinfo"`
}

func (l kernelLink) Kind() string { return l.LinkInfo.InfoKind }

func (l kernelLink) String() string { return fmt.Sprintf("%s(%s mtu %d)", l.Name, l.Kind(), l.MTU) }

// kernelLinks lists m's links that `ip -d -j link show ARGS` shows.
func kernelLinks(ctx context.Context, m *sim.Machine, args ...string) ([]kernelLink, error) {
	out, err := m.Run(ctx, ipBin, append([]string{"-d", "-j", "link", "show"}, args...)...)
	if err != nil {
		return nil, err
	}
	var ls []kernelLink
	if len(bytes.TrimSpace(out)) == 0 {
		return nil, nil
	}
	if err := json.Unmarshal(out, &ls); err != nil {
		return nil, fmt.Errorf("%s: ip -d -j link show %s: %w: %s", m.Name, strings.Join(args, " "), err, out)
	}
	return ls, nil
}

// ping sends one ping and reports whether a reply came.
func ping(ctx context.Context, p *sim.Probe, to netip.Addr, args ...string) error {
	argv := append([]string{"-n", "-c", "1", "-W", "1"}, args...)
	_, err := p.Run(ctx, pingBin, append(argv, to.String())...)
	return err
}

// probeBudget is the time a probe gets, whether it must pass or fail: a
// ping that must fail is tried as long and as often as one that must pass.
const probeBudget = 5 * time.Second

// waitPing pings (ping ARGS, one echo waiting a second, again every 50 ms)
// until a reply comes or within passes. Probes that must pass and probes
// that must fail both use it, with the same within.
func waitPing(ctx context.Context, p *sim.Probe, to netip.Addr, within time.Duration, args ...string) error {
	return retryWithin(ctx, within, func(ctx context.Context) error { return ping(ctx, p, to, args...) })
}

// retryWithin calls f every 50 ms until it succeeds or within passes, and
// returns its last error.
func retryWithin(ctx context.Context, within time.Duration, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	for {
		err := f(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// pingAll checks that every probe reaches every other probe of its
// network, waiting up to within for each pair.
func (c *chain) pingAll(t *testing.T, ctx context.Context, within time.Duration) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed []string
	for n, row := range c.probes {
		for _, a := range row {
			for _, b := range row {
				if a == b {
					continue
				}
				wg.Go(func() {
					if err := waitPing(ctx, a, b.Addr.Addr(), within); err != nil {
						mu.Lock()
						failed = append(failed, fmt.Sprintf("%s: %s (%s) -> %s (%s): %v", chainNetworks[n].Name, a.Name, a.Machine.Name, b.Name, b.Machine.Name, err))
						mu.Unlock()
					}
				})
			}
		}
	}
	wg.Wait()
	for _, f := range failed {
		t.Error(f)
	}
}

func (c *chain) testPairs(t *testing.T, ctx context.Context) {
	c.pingAll(t, ctx, 10*time.Second)
}

func (c *chain) testIsolation(t *testing.T, ctx context.Context) {
	// Positive control first: within one network the same /16 works.
	for _, pair := range [][2]*sim.Probe{{c.probes[0][0], c.probes[0][1]}, {c.probes[1][0], c.probes[1][1]}} {
		if err := waitPing(ctx, pair[0], pair[1].Addr.Addr(), probeBudget); err != nil {
			t.Fatalf("control: %s cannot ping %s on its own network within %v: %v", pair[0].Name, pair[1].Name, probeBudget, err)
		}
	}
	// Each pair that must fail gets the control's budget: all at once.
	var wg sync.WaitGroup
	for n, row := range c.probes {
		other := c.probes[1-n]
		for _, a := range row {
			for _, b := range other {
				wg.Go(func() {
					if err := waitPing(ctx, a, b.Addr.Addr(), probeBudget); err == nil {
						t.Errorf("%s probe %s (%s) reaches %s probe %s (%s)", chainNetworks[n].Name, a.Name, a.Machine.Name, chainNetworks[1-n].Name, b.Name, b.Machine.Name)
					}
				})
			}
		}
	}
	wg.Wait()
}

func (c *chain) testPortMTU(t *testing.T, ctx context.Context) {
	for _, m := range c.lab.Machines {
		for n, nw := range chainNetworks {
			br := plumbing.BridgeName(nw.ID)
			out, err := m.Run(ctx, "/bin/sh", "-c", `cd /sys/class/net/"$1"/brif && for p in *; do echo "$p $(cat /sys/class/net/$p/mtu)"; done; echo "$1 $(cat /sys/class/net/$1/mtu)"`, "sh", br)
			if err != nil {
				t.Fatal(err)
			}
			var ports []string
			for line := range strings.Lines(strings.TrimSpace(string(out))) {
				f := strings.Fields(line)
				if len(f) != 2 {
					t.Fatalf("%s: odd line %q", m.Name, line)
				}
				ports = append(ports, f[0])
				if mtu, _ := strconv.Atoi(f[1]); mtu != c.mtu[n] {
					t.Errorf("%s: %s (on %s) has MTU %d, want %d", m.Name, f[0], br, mtu, c.mtu[n])
				}
			}
			// The tunnel ports, the probe, and the bridge itself.
			if len(ports) != c.tunnelPorts[n]+2 {
				t.Errorf("%s: %s ports %v, want %d %s and the probe", m.Name, br, ports[:len(ports)-1], c.tunnelPorts[n], c.kind[n])
			}
			c.checkKernelChain(t, ctx, m, n, 1)
		}
	}
}

// testDF proves the MTU edge across the chain rather than on a probe's own
// link: the sending probe's eth0 and bridge port are raised to
// bigProbeMTU while the network's bridge and tunnels keep the network MTU.
// A don't-fragment packet of exactly the MTU crosses to the far probe; one
// byte more leaves the probe, enters the sender's bridge, and never
// arrives on the far side (the chain drops it silently). Both are tried
// with the same budget.
func (c *chain) testDF(t *testing.T, ctx context.Context) {
	var wg sync.WaitGroup
	for n, row := range c.probes {
		for _, pair := range [][2]*sim.Probe{{row[0], row[1]}, {row[2], row[0]}} {
			wg.Go(func() { c.dfAcross(t, ctx, n, pair[0], pair[1]) })
		}
	}
	wg.Wait()
}

const bigProbeMTU = 1500

var icmpLength = regexp.MustCompile(`ICMP echo request, .*length (\d+)$`)

// echoSizes counts the echo requests among tcpdump's lines by IP packet
// size (tcpdump gives the ICMP length: 20 less).
func echoSizes(lines []string) map[int]int {
	got := map[int]int{}
	for _, l := range lines {
		if m := icmpLength.FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[1])
			got[n+20]++
		}
	}
	return got
}

func (c *chain) dfAcross(t *testing.T, ctx context.Context, n int, a, b *sim.Probe) {
	mtu := c.mtu[n]
	name := chainNetworks[n].Name
	setMTU := func(v int) error {
		if _, err := a.Run(ctx, ipBin, "link", "set", "eth0", "mtu", strconv.Itoa(v)); err != nil {
			return err
		}
		_, err := a.Machine.Run(ctx, ipBin, "link", "set", a.Port, "mtu", strconv.Itoa(v))
		return err
	}
	if bigProbeMTU <= mtu {
		t.Errorf("%s: the network MTU %d is not below the big probe MTU %d", name, mtu, bigProbeMTU)
		return
	}
	if err := setMTU(bigProbeMTU); err != nil {
		t.Error(err)
		return
	}
	defer func() {
		if err := setMTU(mtu); err != nil {
			t.Errorf("%s: put %s back at MTU %d: %v", name, a.Name, mtu, err)
		}
	}()
	// The network's own links on the sender's machine keep their MTU.
	c.checkKernelChain(t, ctx, a.Machine, n, 1)

	dfEdge(t, ctx, name, a, b.Addr.Addr(), mtu, "probe "+b.Name, b.Start, "eth0")
}

// dfEdge proves a network's MTU edge across the chain from probe a, whose
// eth0 and bridge port are above mtu, to dst: a don't-fragment echo of
// exactly mtu bytes is answered and arrives at farIface (captured through
// farStart, named farWhere); one of mtu+1 bytes enters the bridge at a's
// port, is not answered, and never arrives there. Both are tried with the
// same budget.
func dfEdge(t *testing.T, ctx context.Context, name string, a *sim.Probe, dst netip.Addr, mtu int, farWhere string, farStart starter, farIface string) {
	t.Helper()
	filter := "icmp[icmptype] == icmp-echo and src host " + a.Addr.Addr().String() + " and dst host " + dst.String()
	near, err := startCapture(ctx, a.Machine.Name+" "+a.Port, a.Machine.Start, a.Port, filter)
	if err != nil {
		t.Error(err)
		return
	}
	far, err := startCapture(ctx, farWhere, farStart, farIface, filter)
	if err != nil {
		near.stop()
		t.Error(err)
		return
	}
	payload := mtu - 28 // IPv4 20 + ICMP 8
	atMTU := waitPing(ctx, a, dst, probeBudget, "-M", "do", "-s", strconv.Itoa(payload))
	over := waitPing(ctx, a, dst, probeBudget, "-M", "do", "-s", strconv.Itoa(payload+1))
	time.Sleep(200 * time.Millisecond)
	nearSizes, farSizes := echoSizes(near.stop()), echoSizes(far.stop())
	t.Logf("%s: %s -> %s (%s) across MTU %d: echo requests by size entering the bridge %v, arriving %v", name, a.Name, dst, farWhere, mtu, nearSizes, farSizes)

	if atMTU != nil {
		t.Errorf("%s: DF ping %s -> %s with %d bytes (a %d-byte packet) fails within %v: %v", name, a.Name, dst, payload, mtu, probeBudget, atMTU)
	}
	if farSizes[mtu] == 0 {
		t.Errorf("%s: no %d-byte echo request from %s arrived at %s", name, mtu, a.Name, farWhere)
	}
	if over == nil {
		t.Errorf("%s: DF ping %s -> %s with %d bytes (one over the network MTU %d) got a reply", name, a.Name, dst, payload+1, mtu)
	}
	if nearSizes[mtu+1] == 0 {
		t.Errorf("%s: no %d-byte echo request from %s entered the bridge on %s: the test did not reach the chain (%v)", name, mtu+1, a.Name, a.Machine.Name, over)
	}
	for size, k := range farSizes {
		if size > mtu {
			t.Errorf("%s: %d echo requests of %d bytes (over the network MTU %d) arrived at %s", name, k, size, mtu, farWhere)
		}
	}
}

// capture is tcpdump running in the background.
type capture struct {
	proc  *sim.Process
	out   *testbed.OutputBuffer
	where string
}

type starter func(ctx context.Context, out io.Writer, name string, args ...string) (*sim.Process, error)

// startCapture starts tcpdump on iface and waits until it listens.
func startCapture(ctx context.Context, where string, start starter, iface, filter string) (*capture, error) {
	out := testbed.NewOutputBuffer("listening on")
	args := []string{"-i", iface, "-n", "-q", "-l", "-tt", "--immediate-mode", "-Z", "root"}
	if filter != "" {
		args = append(args, filter)
	}
	p, err := start(ctx, out, tcpdumpBin, args...)
	if err != nil {
		return nil, err
	}
	select {
	case <-out.Ready():
		return &capture{proc: p, out: out, where: where}, nil
	case <-p.Done():
		return nil, fmt.Errorf("tcpdump on %s %s exited: %v: %s", where, iface, p.Err(), out.String())
	case <-time.After(5 * time.Second):
		_ = p.Kill()
		return nil, fmt.Errorf("tcpdump on %s %s does not listen: %s", where, iface, out.String())
	}
}

var packetLine = regexp.MustCompile(`^\d+\.\d+ `)

// stop stops tcpdump and returns the packet lines it printed.
func (c *capture) stop() []string {
	_ = c.proc.Signal(syscall.SIGINT)
	select {
	case <-c.proc.Done():
	case <-time.After(3 * time.Second):
		_ = c.proc.Kill()
	}
	var pkts []string
	for line := range strings.Lines(c.out.String()) {
		if packetLine.MatchString(line) {
			pkts = append(pkts, strings.TrimSpace(line))
		}
	}
	return pkts
}

func (c *chain) testBroadcast(t *testing.T, ctx context.Context) {
	sender := c.probes[0][0]
	var caps []*capture
	var receivers []*sim.Probe
	for _, row := range c.probes {
		for _, p := range row {
			if p == sender {
				continue
			}
			cp, err := startCapture(ctx, p.Name, p.Start, "eth0", "icmp[icmptype] == icmp-echo and ether broadcast and src host "+sender.Addr.Addr().String())
			if err != nil {
				for _, cp := range caps {
					cp.stop()
				}
				t.Fatal(err)
			}
			caps = append(caps, cp)
			receivers = append(receivers, p)
		}
	}
	bcast := netip.MustParseAddr("10.10.255.255") // the probes' /16
	// One echo request to the broadcast address; no replies expected
	// (icmp_echo_ignore_broadcasts), so ping's failure is fine.
	_, _ = sender.Run(ctx, pingBin, "-n", "-q", "-b", "-c", "1", "-W", "1", bcast.String())
	// A loop would multiply the frame within milliseconds; a window of a
	// second catches it.
	time.Sleep(time.Second)
	for i, cp := range caps {
		p := receivers[i]
		pkts := cp.stop()
		want := 0
		if p.Bridge == sender.Bridge {
			want = 1
		}
		if len(pkts) != want {
			t.Errorf("probe %s (%s on %s) saw %d copies of %s's broadcast, want %d:\n%s", p.Name, p.Bridge, p.Machine.Name, len(pkts), sender.Name, want, strings.Join(pkts, "\n"))
		}
	}
}

var wireGuardLine = regexp.MustCompile(`^\d+\.\d+ IP 10\.250\.0\.\d+\.51820 > 10\.250\.0\.\d+\.51820: UDP, length \d+$`)

func (c *chain) testUnderlay(t *testing.T, ctx context.Context) {
	cp, err := startCapture(ctx, "underlay", c.lab.UnderlayStart, sim.UnderlayBridge, "")
	if err != nil {
		t.Fatal(err)
	}
	// Probes talk on both networks, at full size too, and broadcast.
	for n, row := range c.probes {
		for _, pair := range [][2]*sim.Probe{{row[0], row[1]}, {row[1], row[2]}, {row[2], row[0]}} {
			if err := ping(ctx, pair[0], pair[1].Addr.Addr(), "-M", "do", "-s", strconv.Itoa(c.mtu[n]-28)); err != nil {
				t.Errorf("%s -> %s: %v", pair[0].Name, pair[1].Name, err)
			}
		}
	}
	_, _ = c.probes[1][2].Run(ctx, pingBin, "-n", "-q", "-b", "-c", "1", "-W", "1", "10.10.255.255")
	time.Sleep(200 * time.Millisecond)
	pkts := cp.stop()
	var wg, other []string
	for _, line := range pkts {
		switch {
		case wireGuardLine.MatchString(line):
			wg = append(wg, line)
		case strings.Contains(line, " ARP, "):
		default:
			other = append(other, line)
		}
	}
	if len(wg) == 0 {
		t.Errorf("saw no WireGuard packets on the underlay while probes talked (%d packets in all)", len(pkts))
	}
	if len(other) > 0 {
		t.Errorf("the underlay carried %d packets that are not WireGuard (GRE, VXLAN, ICMP in the clear?):\n%s", len(other), strings.Join(other, "\n"))
	}
	t.Logf("underlay: %d WireGuard packets, %d others", len(wg), len(other))
}

// fragCounters reads the IP fragmentation counters of /proc/net/snmp.
func fragCounters(snmp string) (map[string]int, error) {
	var head, vals []string
	sc := bufio.NewScanner(strings.NewReader(snmp))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "Ip:" {
			continue
		}
		if head == nil {
			head = f[1:]
		} else {
			vals = f[1:]
			break
		}
	}
	if head == nil || len(head) != len(vals) {
		return nil, fmt.Errorf("no Ip: lines in /proc/net/snmp")
	}
	got := map[string]int{}
	for i, h := range head {
		switch h {
		case "ReasmReqds", "ReasmOKs", "ReasmFails", "FragOKs", "FragFails", "FragCreates":
			n, err := strconv.Atoi(vals[i])
			if err != nil {
				return nil, fmt.Errorf("%s %q: %w", h, vals[i], err)
			}
			got[h] = n
		}
	}
	return got, nil
}

func (c *chain) testNoFragments(t *testing.T, ctx context.Context) {
	type where struct {
		name string
		run  func(context.Context, string, ...string) ([]byte, error)
	}
	var all []where
	for _, m := range c.lab.Machines {
		all = append(all, where{m.Name, m.Run})
	}
	for _, row := range c.probes {
		for _, p := range row {
			all = append(all, where{"probe " + p.Name, p.Run})
		}
	}
	for _, w := range all {
		out, err := w.run(ctx, "/bin/cat", "/proc/net/snmp")
		if err != nil {
			t.Fatal(err)
		}
		got, err := fragCounters(string(out))
		if err != nil {
			t.Fatalf("%s: %v", w.name, err)
		}
		for k, v := range got {
			// FragFails counts packets that needed fragments and were
			// dropped instead: the one-byte-over packets of testDF, which
			// the chain refuses to fragment. No fragment is made of them.
			if k == "FragFails" {
				if v != 0 {
					t.Logf("%s: Ip FragFails = %d (over-size DF packets dropped, not fragmented)", w.name, v)
				}
				continue
			}
			if v != 0 {
				t.Errorf("%s: Ip %s = %d, want 0", w.name, k, v)
			}
		}
	}
}

func (c *chain) testIdempotent(t *testing.T, ctx context.Context) {
	for _, m := range c.lab.Machines {
		for i := range 10 {
			rep, err := c.butter.Apply(ctx, m, c.helpers.Specs[m.Name])
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Changes) != 0 {
				t.Errorf("%s: apply #%d of the same spec changed %q", m.Name, i+2, rep.Changes)
			}
		}
		drift, err := c.butter.Check(ctx, m, c.helpers.Specs[m.Name])
		if err != nil {
			t.Fatal(err)
		}
		if len(drift) != 0 {
			t.Errorf("%s: check after apply reports drift %+v", m.Name, drift)
		}
	}
}

func (c *chain) testDrift(t *testing.T, ctx context.Context) {
	cases := []struct {
		machine *sim.Machine
		link    string
		probe   *sim.Probe // to plug back in when the bridge was made anew
	}{
		{c.lab.Machines[1], plumbing.VXLANName(chainNetworks[0].ID), nil},
		{c.lab.Machines[2], plumbing.BridgeName(chainNetworks[1].ID), c.probes[1][2]},
	}
	for _, tc := range cases {
		m := tc.machine
		spec := c.helpers.Specs[m.Name]
		if _, err := m.Run(ctx, "/usr/sbin/ip", "link", "del", tc.link); err != nil {
			t.Fatal(err)
		}
		drift, err := c.butter.Check(ctx, m, spec)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, d := range drift {
			if d.Link == tc.link {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: after deleting %s, check reports %+v, want drift on %s", m.Name, tc.link, drift, tc.link)
		}
		rep, err := c.butter.Apply(ctx, m, spec)
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Changes) == 0 {
			t.Errorf("%s: apply after deleting %s reports no changes", m.Name, tc.link)
		}
		t.Logf("%s: deleted %s; drift %+v; apply changed %q", m.Name, tc.link, drift, rep.Changes)
		if _, err := m.Run(ctx, "/usr/sbin/ip", "link", "show", tc.link); err != nil {
			t.Errorf("%s: %s did not come back: %v", m.Name, tc.link, err)
		}
		if drift, err := c.butter.Check(ctx, m, spec); err != nil {
			t.Fatal(err)
		} else if len(drift) != 0 {
			t.Errorf("%s: check after the repair reports %+v", m.Name, drift)
		}
		if tc.probe != nil {
			// A bridge made anew has lost the probe's port, as it would
			// lose a VM's tap: plug it back in, as libvirt would have to.
			if err := tc.probe.Attach(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	c.pingAll(t, ctx, 10*time.Second)
}

// testFirewallDrift deletes the helper's nftables table on one machine and
// a rule of it on another, by hand: each is drift, and an apply puts it
// back.
func (c *chain) testFirewallDrift(t *testing.T, ctx context.Context) {
	cases := []struct {
		machine *sim.Machine
		damage  func() string // returns the drift it must cause
	}{
		{c.lab.Machines[0], func() string { deleteTable(t, c.lab.Machines[0], butterTable); return "table inet butter missing" }},
		{c.lab.Machines[2], func() string {
			return "forward: missing rule: " + deleteRule(t, c.lab.Machines[2], plumbing.ChainForward, 1)
		}},
	}
	for _, tc := range cases {
		m := tc.machine
		spec := c.helpers.Specs[m.Name]
		want := tc.damage()
		drift, err := c.butter.Check(ctx, m, spec)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(drift, helperapi.Drift{Link: "firewall", Problem: want}) {
			t.Errorf("%s: check reports %+v, want firewall drift %q", m.Name, drift, want)
		}
		rep, err := c.butter.Apply(ctx, m, spec)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(rep.Changes, "firewall: "+want) {
			t.Errorf("%s: apply changed %q, want %q", m.Name, rep.Changes, "firewall: "+want)
		}
		if drift, err := c.butter.Check(ctx, m, spec); err != nil {
			t.Fatal(err)
		} else if len(drift) != 0 {
			t.Errorf("%s: check after the repair reports %+v", m.Name, drift)
		}
	}
	c.pingAll(t, ctx, 10*time.Second)
}

// probesPlugged checks that every probe's port is still on its bridge.
func (c *chain) probesPlugged(t *testing.T, ctx context.Context) {
	t.Helper()
	for _, row := range c.probes {
		for _, p := range row {
			out, err := p.Machine.Run(ctx, "/bin/cat", "/sys/class/net/"+p.Port+"/master/ifindex")
			if err != nil {
				t.Errorf("%s: probe %s's port %s is not on a bridge any more: %v", p.Machine.Name, p.Name, p.Port, err)
				continue
			}
			want, err := p.Machine.Run(ctx, "/bin/cat", "/sys/class/net/"+p.Bridge+"/ifindex")
			if err != nil || !bytes.Equal(out, want) {
				t.Errorf("%s: probe %s's port %s is not on %s (err %v)", p.Machine.Name, p.Name, p.Port, p.Bridge, err)
			}
		}
	}
}

func (c *chain) testKilledDaemon(t *testing.T, ctx context.Context) {
	m := c.lab.Machines[0]
	old := c.helpers.Daemons[m.Name]
	if err := old.Kill(); err != nil {
		t.Fatal(err)
	}
	// Userspace WireGuard dies with the daemon, and the VXLAN ports on it.
	if _, err := m.Run(ctx, "/usr/sbin/ip", "link", "show", plumbing.WireGuardName); err == nil {
		t.Logf("%s: %s survived the daemon's death", m.Name, plumbing.WireGuardName)
	}
	p, err := m.Start(ctx, c.logs[m.Name], c.butter.Path, "helper", "daemon")
	if err != nil {
		t.Fatal(err)
	}
	c.helpers.Daemons[m.Name] = p
	if err := c.butter.WaitHelper(ctx, m, p); err != nil {
		t.Fatal(err)
	}
	c.probesPlugged(t, ctx)
	c.pingAll(t, ctx, 15*time.Second)
	if drift, err := c.butter.Check(ctx, m, c.helpers.Specs[m.Name]); err != nil {
		t.Fatal(err)
	} else if len(drift) != 0 {
		t.Errorf("%s: after the restart check reports %+v", m.Name, drift)
	}
}

func (c *chain) testRestartAll(t *testing.T, ctx context.Context) {
	var wg sync.WaitGroup
	errs := make([]error, len(c.lab.Machines))
	procs := make([]*sim.Process, len(c.lab.Machines))
	for i, m := range c.lab.Machines {
		wg.Go(func() {
			stopCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if err := c.helpers.Daemons[m.Name].Stop(stopCtx); err != nil {
				errs[i] = err
				return
			}
			procs[i], errs[i] = c.butter.StartHelper(ctx, m, c.logs[m.Name])
		})
	}
	wg.Wait()
	for i, m := range c.lab.Machines {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		c.helpers.Daemons[m.Name] = procs[i]
	}
	c.probesPlugged(t, ctx)
	c.pingAll(t, ctx, 15*time.Second)
	if err := c.butter.WaitMesh(ctx, c.lab, c.helpers.Specs); err != nil {
		t.Error(err)
	}
}
