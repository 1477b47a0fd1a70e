package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/internal/testbed"
	"github.com/butter-cloud/butter/lab/sim"
	"github.com/butter-cloud/butter/plumbing"
)

const iperf3Bin = "/usr/bin/iperf3"

// seconds is how long each iperf3 run measures, after one omitted second:
// each run lasts five seconds.
const seconds = 4

// chainRounds is how many times the chain and wg0 are measured, one after
// the other, after a first run of each: the figures are the medians.
const chainRounds = 5

// BenchmarkChain measures, in one lab, TCP throughput probe to probe
// across the whole chain (bridge, VXLAN, userspace WireGuard), mesh address
// to mesh address across WireGuard alone, the same with the WireGuard
// device's segmentation and receive offloads off (needs ethtool), and
// underlay to underlay bare. The chain and wg0 are measured once first,
// through fresh daemons, and reported apart, then chainRounds times in
// turn: the figures are the medians, and chain/wg0 the median of the
// rounds' ratios with their min-max. For the runs that cross WireGuard it also
// prints the packets per second and bytes per packet the sender's
// WireGuard device carried (one tun read of wireguard-go each) and the CPU
// the two helper daemons used, which explain the ratios: the chain's
// VXLAN packets cross a tun device one MTU-sized packet at a time, like
// wg0 with its offloads off, and cross the helper's tap (where the kernel
// has UDP-tunnel offloads) as super-packets. Where the helpers made the
// tap, a second lab whose helpers are made to use the tun
// (plumbing.PlainTUNEnv) measures the chain again, in the same run. Run
// it once: -benchtime 1x (bench/chain.sh does).
func BenchmarkChain(b *testing.B) {
	ctx, cancel := context.WithTimeout(b.Context(), 5*time.Minute)
	defer cancel()

	c := newChainLab(b, ctx, "bn")
	h, mesh, m1, m2, p1, p2, rep := c.helpers, c.mesh, c.m1, c.m2, c.p1, c.p2, c.rep

	d1, d2 := h.Daemons[m1.Name].PID(), h.Daemons[m2.Name].PID()
	runChain := func() result {
		return measure(b, ctx, "chain", p1, p2, p1.Addr.Addr(), p2.Addr.Addr(), m1, d1, d2)
	}
	runWG := func() result {
		return measure(b, ctx, "wg0", m1, m2, mesh.Addr(m1).Addr(), mesh.Addr(m2).Addr(), m1, d1, d2)
	}
	b.ResetTimer()
	// The first run through fresh daemons is slower than the ones after
	// it (their heaps and buffers grow): it is reported apart, and the
	// ratio is taken over rounds that follow, each the chain and then wg0.
	coldChain, coldWG := runChain(), runWG()
	var chains, wgs []result
	var ratios []float64
	for range chainRounds {
		c, w := runChain(), runWG()
		chains, wgs = append(chains, c), append(wgs, w)
		ratios = append(ratios, c.bps/w.bps)
	}
	chain, wg := medianRun(chains), medianRun(wgs)
	// The same path with segmentation and receive offloads off on the
	// WireGuard device: wireguard-go then reads one packet per read, as
	// it does for the encapsulated traffic of the chain.
	var plain result
	offloads := "needs " + ethtoolBin
	if _, err := os.Stat(ethtoolBin); err == nil {
		setOffloads(b, ctx, "off", m1, m2)
		plain = measure(b, ctx, "wg0 offloads off", m1, m2, mesh.Addr(m1).Addr(), mesh.Addr(m2).Addr(), m1, d1, d2)
		setOffloads(b, ctx, "on", m1, m2)
		offloads = ""
	}
	bare := measure(b, ctx, "bare", m1, m2, m1.Addr.Addr(), m2.Addr.Addr(), nil, 0, 0)
	// The same chain with wg0 a tun, where it is a tap here: one run to
	// warm it, then chainRounds runs, against the tap's chain runs.
	var onTUN result
	var tapTUN []float64
	tap := isTap(b, ctx, m1)
	if tap {
		b.Setenv(plumbing.PlainTUNEnv, "1")
		t := newChainLab(b, ctx, "bu")
		t1, t2 := t.helpers.Daemons[t.m1.Name].PID(), t.helpers.Daemons[t.m2.Name].PID()
		var tuns []result
		for i := range chainRounds + 1 {
			r := measure(b, ctx, "chain, wg0 a tun", t.p1, t.p2, t.p1.Addr.Addr(), t.p2.Addr.Addr(), t.m1, t1, t2)
			if i > 0 {
				tuns = append(tuns, r)
				tapTUN = append(tapTUN, chains[i-1].bps/r.bps)
			}
		}
		onTUN = medianRun(tuns)
	}
	b.StopTimer()

	b.ReportMetric(chain.bps/1e6, "chain-Mbit/s")
	b.ReportMetric(wg.bps/1e6, "wg0-Mbit/s")
	b.ReportMetric(bare.bps/1e6, "bare-Mbit/s")
	b.ReportMetric(medianF(ratios), "chain/wg0")
	b.ReportMetric(coldChain.bps/coldWG.bps, "chain/wg0-first")
	b.ReportMetric(wg.bps/bare.bps, "wg0/bare")
	if offloads == "" {
		b.ReportMetric(plain.bps/1e6, "wg0-nooffload-Mbit/s")
		b.ReportMetric(plain.bps/wg.bps, "wg0-nooffload/wg0")
		b.ReportMetric(chain.bps/plain.bps, "chain/wg0-nooffload")
	}
	if tap {
		b.ReportMetric(onTUN.bps/1e6, "chain-tun-Mbit/s")
		b.ReportMetric(medianF(tapTUN), "chain-tap/tun")
	}
	b.ReportMetric(chain.perPkt(), "chain-bytes/pkt")
	b.ReportMetric(wg.perPkt(), "wg0-bytes/pkt")
	// Fewer than ten lines: go test trims a benchmark's log at the tenth.
	var out strings.Builder
	fmt.Fprintf(&out, "TCP, iperf3 -t %d, one stream, %s tunnel, network MTU %d, WireGuard MTU %d. Per run: packets/s and bytes\n"+
		"per packet the sender's %s sent (one wireguard-go tun read each), CPU of both helper daemons, Mbit/s per daemon core.\n",
		seconds, rep.Tunnel, rep.MTU, h.Reports[m1.Name].WireGuard.MTU, plumbing.WireGuardName)
	fmt.Fprintf(&out, "  %-36s %9s %12s %10s %11s %12s\n", "", "Mbit/s", "tun pkts/s", "bytes/pkt", "daemon CPU", "Mbit/s/core")
	row := func(name string, r result) {
		switch {
		case r.bps == 0:
		case r.wall == 0:
			fmt.Fprintf(&out, "  %-36s %9.0f\n", name, r.bps/1e6)
		default:
			fmt.Fprintf(&out, "  %-36s %9.0f %12.0f %10.0f %10.0f%% %12.0f\n", name, r.bps/1e6,
				float64(r.pkts)/r.wall, r.perPkt(), 100*r.cpu/r.wall, r.efficiency())
		}
	}
	row(fmt.Sprintf("chain  (probe -> probe, bridge+%s)", rep.Tunnel), chain)
	row("chain  the same, wg0 a tun, not a tap", onTUN)
	row("wg0    (mesh -> mesh)", wg)
	row("wg0    offloads off (tso, gso, gro)", plain)
	row("bare   (underlay -> underlay)", bare)
	fmt.Fprintf(&out, "  chain/wg0 = %.2f (%.2f-%.2f; first runs %.0f/%.0f Mbit/s = %.2f)   wg0/bare = %.3f",
		medianF(ratios), slices.Min(ratios), slices.Max(ratios), coldChain.bps/1e6, coldWG.bps/1e6, coldChain.bps/coldWG.bps, wg.bps/bare.bps)
	if offloads == "" {
		fmt.Fprintf(&out, "   wg0 offloads off/on = %.2f   chain/(wg0 offloads off) = %.2f", plain.bps/wg.bps, chain.bps/plain.bps)
	} else {
		fmt.Fprintf(&out, "   wg0 offloads off: skipped (%s)", offloads)
	}
	if tap {
		fmt.Fprintf(&out, "   chain tap/tun = %.2f (%.2f-%.2f)", medianF(tapTUN), slices.Min(tapTUN), slices.Max(tapTUN))
	}
	fmt.Fprintf(&out, "\n  bytes per tun packet wg0/chain = %.0f   Mbit/s per daemon core chain/wg0 = %.2f",
		wg.perPkt()/max(chain.perPkt(), 1), chain.efficiency()/max(wg.efficiency(), 1e-9))
	if offloads == "" {
		fmt.Fprintf(&out, "   (wg0 offloads off)/wg0 = %.2f", plain.efficiency()/max(wg.efficiency(), 1e-9))
	}
	b.Log(out.String())
}

const ethtoolBin = "/usr/sbin/ethtool"

// isTap tells whether m's WireGuard device is the helper's tap (not a
// tun): ip -d link says "tun type tap".
func isTap(b *testing.B, ctx context.Context, m *sim.Machine) bool {
	b.Helper()
	out, err := m.Run(ctx, "/usr/sbin/ip", "-d", "link", "show", plumbing.WireGuardName)
	if err != nil {
		b.Fatalf("%s: ip -d link show %s: %v", m.Name, plumbing.WireGuardName, err)
	}
	return strings.Contains(string(out), "type tap")
}

// setOffloads turns segmentation and receive offloads of the WireGuard
// device on or off on the machines.
func setOffloads(b *testing.B, ctx context.Context, onOff string, ms ...*sim.Machine) {
	b.Helper()
	for _, m := range ms {
		if out, err := m.Run(ctx, ethtoolBin, "-K", plumbing.WireGuardName, "tso", onOff, "gso", onOff, "gro", onOff); err != nil {
			b.Fatalf("ethtool %s offloads %s: %v\n%s", plumbing.WireGuardName, onOff, err, out)
		}
	}
}

// place is a machine or a probe.
type place interface {
	Run(ctx context.Context, name string, args ...string) ([]byte, error)
	Start(ctx context.Context, out io.Writer, name string, args ...string) (*sim.Process, error)
}

// result is one iperf3 run: the receiver's bit rate and, when the run
// crosses WireGuard, what the sender's WireGuard device carried and the
// CPU time the two helper daemons spent, over wall seconds.
type result struct {
	bps         float64
	pkts, bytes uint64
	cpu, wall   float64
}

func (r result) perPkt() float64 { return float64(r.bytes) / max(float64(r.pkts), 1) }

// medianRun is the run with the median throughput.
func medianRun(rs []result) result {
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b result) int {
		switch {
		case a.bps < b.bps:
			return -1
		case a.bps > b.bps:
			return 1
		}
		return 0
	})
	return rs[len(rs)/2]
}

// efficiency is Mbit/s carried per core the daemons used.
func (r result) efficiency() float64 { return r.bps / 1e6 / max(r.cpu/r.wall, 1e-9) }

// measure runs iperf3 from client (at from) to server (at to) and returns
// the bits per second the receiver saw; if via is not nil (the run crosses
// WireGuard from it), also what via's WireGuard device sent and the CPU
// time the daemons d1 and d2 spent during the run.
func measure(b *testing.B, ctx context.Context, what string, client, server place, from, to netip.Addr, via *sim.Machine, d1, d2 int) result {
	b.Helper()
	out := testbed.NewOutputBuffer("Server listening")
	srv, err := server.Start(ctx, out, iperf3Bin, "-s", "-1", "--forceflush", "-B", to.String())
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Kill()
	select {
	case <-out.Ready():
	case <-srv.Done():
		b.Fatalf("%s: iperf3 server exited: %v: %s", what, srv.Err(), out)
	case <-time.After(5 * time.Second):
		b.Fatalf("%s: iperf3 server does not listen: %s", what, out)
	}
	runCtx, cancel := context.WithTimeout(ctx, (seconds+20)*time.Second)
	defer cancel()
	var r result
	var pkts0, bytes0 uint64
	var cpu0 float64
	if via != nil {
		pkts0, bytes0 = txCounters(b, ctx, via)
		cpu0 = cpuSeconds(b, d1) + cpuSeconds(b, d2)
	}
	start := time.Now()
	data, err := client.Run(runCtx, iperf3Bin, "-c", to.String(), "-B", from.String(),
		"-t", strconv.Itoa(seconds), "-O", "1", "--connect-timeout", "3000", "-J")
	if err != nil {
		b.Fatalf("%s: %v\n%s", what, err, data)
	}
	if via != nil {
		r.wall = time.Since(start).Seconds()
		p, n := txCounters(b, ctx, via)
		r.pkts, r.bytes = p-pkts0, n-bytes0
		r.cpu = cpuSeconds(b, d1) + cpuSeconds(b, d2) - cpu0
	}
	var res struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(data, &res); err != nil {
		b.Fatalf("%s: decode iperf3 output: %v", what, err)
	}
	if res.Error != "" || res.End.SumReceived.BitsPerSecond == 0 {
		b.Fatalf("%s: iperf3: %q, %v bit/s", what, res.Error, res.End.SumReceived.BitsPerSecond)
	}
	r.bps = res.End.SumReceived.BitsPerSecond
	return r
}

// txCounters reads the packets and bytes the machine's WireGuard device
// has sent: each is one read of wireguard-go from the tun device.
func txCounters(b *testing.B, ctx context.Context, m *sim.Machine) (pkts, bytes uint64) {
	b.Helper()
	dir := "/sys/class/net/" + plumbing.WireGuardName + "/statistics/"
	out, err := m.Run(ctx, "/bin/cat", dir+"tx_packets", dir+"tx_bytes")
	if err != nil {
		b.Fatalf("read %s counters: %v", plumbing.WireGuardName, err)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		b.Fatalf("read %s counters: %q", plumbing.WireGuardName, out)
	}
	pkts, err1 := strconv.ParseUint(f[0], 10, 64)
	bytes, err2 := strconv.ParseUint(f[1], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		b.Fatalf("read %s counters: %v", plumbing.WireGuardName, err)
	}
	return pkts, bytes
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times: 100 on Linux.
const clockTicks = 100

// cpuSeconds is the user and system CPU time process pid (all its
// threads) has used, from /proc/<pid>/stat.
func cpuSeconds(b *testing.B, pid int) float64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatalf("daemon CPU time: %v", err)
	}
	// The command name, in parentheses, may hold spaces: fields count from
	// after its closing parenthesis (field 3, state, is f[0]).
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		b.Fatalf("daemon CPU time: short /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		b.Fatalf("daemon CPU time: %v", err)
	}
	return float64(utime+stime) / clockTicks
}

func buildButter(b *testing.B, ctx context.Context, dir string) string {
	b.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(dir, "butter")
	if out, err := exec.CommandContext(ctx, gobin, "build", "-o", bin, "github.com/butter-cloud/butter").CombinedOutput(); err != nil {
		b.Fatalf("go build butter: %v\n%s", err, out)
	}
	return bin
}

// chainLab is a lab of three machines running the helper, one network on
// all three, and a probe on it on m1 and on m2: what the chain benchmarks
// measure across.
type chainLab struct {
	butter  testbed.Butter
	lab     *sim.Lab
	net     helperapi.Network
	mesh    testbed.Mesh
	helpers *testbed.Helpers
	rep     helperapi.NetworkReport // m1's report of the network
	m1, m2  *sim.Machine
	p1, p2  *sim.Probe
}

// newChainLab builds a chainLab whose lab is named with prefix, or skips
// the benchmark where it cannot build a lab or lacks iperf3 or ping; the
// helpers' logs go to a file in the benchmark's temporary folder.
func newChainLab(b *testing.B, ctx context.Context, prefix string) chainLab {
	b.Helper()
	testbed.NeedLab(b)
	testbed.NeedPrograms(b, iperf3Bin, "/usr/bin/ping")
	dir := b.TempDir()
	c := chainLab{butter: testbed.Butter{Path: buildButter(b, ctx, dir)}, lab: testbed.NewLab(b, prefix, sim.Config{Machines: 3}),
		net: helperapi.Network{Name: "blue", ID: 1, Subnet: netip.MustParsePrefix("10.10.1.0/24"), Tunnel: helperapi.TunnelAuto}}
	c.mesh = testbed.Mesh{Networks: []helperapi.Network{c.net}}
	logs, err := os.Create(filepath.Join(dir, "helpers.log"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { logs.Close() })
	if c.helpers, err = c.butter.StartMesh(ctx, c.lab, c.mesh, func(*sim.Machine) io.Writer { return logs }); err != nil {
		b.Fatal(err)
	}
	c.m1, c.m2 = c.lab.Machines[0], c.lab.Machines[1]
	c.rep = c.helpers.Reports[c.m1.Name].Networks[0]
	if c.p1, err = c.lab.AddProbe(ctx, c.m1, c.rep.Bridge, netip.MustParsePrefix("10.10.1.11/24"), c.rep.MTU); err != nil {
		b.Fatal(err)
	}
	if c.p2, err = c.lab.AddProbe(ctx, c.m2, c.rep.Bridge, netip.MustParsePrefix("10.10.1.12/24"), c.rep.MTU); err != nil {
		b.Fatal(err)
	}
	return c
}
