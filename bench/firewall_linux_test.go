package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/lab/sim"
	"github.com/butter-cloud/butter/plumbing"
	"github.com/google/nftables"
)

// rounds is how many times BenchmarkFirewall measures each case.
const rounds = 6

// BenchmarkFirewall measures, in one lab of three machines and one
// network over all three, TCP throughput probe to probe across the chain
// (m1 to m2) with the helper's firewall (its nftables table) on and off,
// in rounds of one each, and prints the median of the rounds' ratios. The
// probes are VMs of the desired state (guardProbes), so the port guard
// (table bridge butter-guard) checks every frame they send. Off is the three
// tables (inet butter, bridge butter-guard, bridge butter: the gateway's)
// deleted by hand on every machine; an apply puts them back. It also
// measures the chain with VXLAN learning turned off by hand, which the
// helper leaves on: a VXLAN device that does not learn sends every frame
// to every member (its flood list), so with three machines m1's WireGuard
// encrypts each frame twice. Run it once: -benchtime 1x
// (bench/firewall.sh does).
func BenchmarkFirewall(b *testing.B) {
	ctx, cancel := context.WithTimeout(b.Context(), 4*time.Minute)
	defer cancel()

	c := newChainLab(b, ctx, "bf")
	butter, l, h, net, m1, m2, p1, p2, rep := c.butter, c.lab, c.helpers, c.net, c.m1, c.m2, c.p1, c.p2, c.rep
	d1, d2 := h.Daemons[m1.Name].PID(), h.Daemons[m2.Name].PID()
	guardProbes(b, ctx, c)
	applyAll := func() {
		b.Helper()
		for _, m := range l.Machines {
			if _, err := butter.Apply(ctx, m, h.Specs[m.Name]); err != nil {
				b.Fatal(err)
			}
			if missing := missingTables(b, m); len(missing) > 0 {
				b.Fatalf("%s: apply did not put %s back", m.Name, strings.Join(missing, ", "))
			}
		}
	}
	chain := func(what string) result {
		return measure(b, ctx, what, p1, p2, p1.Addr.Addr(), p2.Addr.Addr(), m1, d1, d2)
	}

	// A first run warms the path (ARP, WireGuard's handshakes, TCP's
	// ramp on a fresh lab) and is not counted: it came out 0.4–0.5 of the
	// next ones, whichever side it fell on.
	chain("warm-up")
	b.ResetTimer()
	// Rounds on-off, off-on, on-off, …: a pair shares the machine's load
	// of the moment, and a drift over the run falls on both sides.
	var on, off []result
	var pairs []float64
	for r := range rounds {
		var a, o result
		if r%2 == 0 {
			a = chain("firewall on")
		}
		for _, m := range l.Machines {
			deleteButterTable(b, m)
		}
		o = chain("firewall off")
		applyAll()
		if r%2 == 1 {
			a = chain("firewall on")
		}
		on, off = append(on, a), append(off, o)
		pairs = append(pairs, a.bps/o.bps)
	}
	slices.Sort(pairs)
	pairRatio := pairs[len(pairs)/2]
	var nolearning result
	tunnel := ""
	if rep.Tunnel == helperapi.TunnelVXLAN {
		tunnel = plumbing.VXLANName(net.ID)
		for _, m := range l.Machines {
			if out, err := m.Run(ctx, "/usr/sbin/ip", "link", "set", tunnel, "type", "vxlan", "nolearning"); err != nil {
				b.Fatalf("%s: turn learning off: %v: %s", m.Name, err, out)
			}
			// Forget what was learned (the flood entries are permanent).
			if out, err := m.Run(ctx, "/usr/sbin/bridge", "fdb", "flush", "dev", tunnel, "self", "nopermanent"); err != nil {
				b.Fatalf("%s: flush learned entries of %s: %v: %s", m.Name, tunnel, err, out)
			}
		}
		nolearning = chain("firewall on, VXLAN learning off")
		applyAll() // learning on again: the device is made anew
	}
	b.StopTimer()

	onM, offM := medianRun(on), medianRun(off)
	b.ReportMetric(onM.bps/1e6, "on-Mbit/s")
	b.ReportMetric(offM.bps/1e6, "off-Mbit/s")
	b.ReportMetric(onM.bps/offM.bps, "on/off")
	b.ReportMetric(pairRatio, "pair-on/off")
	if nolearning.bps > 0 {
		b.ReportMetric(nolearning.bps/1e6, "nolearning-Mbit/s")
		b.ReportMetric(nolearning.bps/onM.bps, "nolearning/learning")
	}
	var out strings.Builder
	fmt.Fprintf(&out, "TCP probe m1 -> probe m2 across the chain (%s, network MTU %d, 3 machines in the network), iperf3 -t %d,\n"+
		"%d rounds (on-off, off-on, …); off = %s deleted on every machine (the probes guarded as VMs). Per run: Mbit/s, packets/s and bytes per packet m1's %s sent.\n",
		rep.Tunnel, rep.MTU, seconds, rounds, offNames(b), plumbing.WireGuardName)
	row := func(name string, rs ...result) {
		var cells []string
		for _, r := range rs {
			cells = append(cells, fmt.Sprintf("%5.0f Mbit/s %6.0f pkt/s %5.0f B/pkt", r.bps/1e6, float64(r.pkts)/r.wall, r.perPkt()))
		}
		fmt.Fprintf(&out, "  %-24s %s\n", name, strings.Join(cells, " | "))
	}
	row("firewall on", on...)
	row("firewall off", off...)
	if nolearning.bps > 0 {
		row("on, "+tunnel+" nolearning", nolearning)
	}
	fmt.Fprintf(&out, "  firewall on/off: median of the rounds' ratios = %.3f (%.2f–%.2f), ratio of the medians = %.3f",
		pairRatio, pairs[0], pairs[len(pairs)-1], onM.bps/offM.bps)
	if nolearning.bps > 0 {
		fmt.Fprintf(&out, "\n  VXLAN learning off/on = %.2f; m1's WireGuard packets per Mbit: %.0f off, %.0f on",
			nolearning.bps/onM.bps, float64(nolearning.pkts)/nolearning.wall/(nolearning.bps/1e6), float64(onM.pkts)/onM.wall/(onM.bps/1e6))
	}
	b.Log(out.String())
}

// nftIn opens nf_tables inside m's network namespace.
func nftIn(b *testing.B, m *sim.Machine) (*nftables.Conn, func()) {
	b.Helper()
	ns, err := os.Open(filepath.Join(sim.NetnsDir, m.Netns()))
	if err != nil {
		b.Fatal(err)
	}
	c, err := nftables.New(nftables.WithNetNSFd(int(ns.Fd())))
	if err != nil {
		ns.Close()
		b.Fatal(err)
	}
	return c, func() { ns.Close() }
}

var butterTable = &nftables.Table{Name: plumbing.FirewallTable, Family: nftables.TableFamilyINet}

// gatewayTable is the helper's gateway filter (bridge family): "off" takes
// it away too, so the ratio prices every rule a frame of the chain meets.
var gatewayTable = &nftables.Table{Name: plumbing.FirewallTable, Family: nftables.TableFamilyBridge}

// offTables are the tables "off" deletes: all three, or those
// $BUTTER_BENCH_OFF names (inet, gateway, guard; comma-separated), to
// tell which one costs what.
func offTables(b *testing.B) []*nftables.Table {
	all := map[string]*nftables.Table{"inet": butterTable, "gateway": gatewayTable, "guard": guardTable}
	v := os.Getenv("BUTTER_BENCH_OFF")
	if v == "" {
		return []*nftables.Table{butterTable, gatewayTable, guardTable}
	}
	var out []*nftables.Table
	for _, n := range strings.Split(v, ",") {
		t, ok := all[n]
		if !ok {
			b.Fatalf("BUTTER_BENCH_OFF=%s: %q is none of inet, gateway, guard", v, n)
		}
		out = append(out, t)
	}
	return out
}

func deleteButterTable(b *testing.B, m *sim.Machine) {
	b.Helper()
	c, done := nftIn(b, m)
	defer done()
	for _, t := range offTables(b) {
		c.DelTable(t)
	}
	if err := c.Flush(); err != nil {
		b.Fatalf("%s: delete table inet %s: %v", m.Name, plumbing.FirewallTable, err)
	}
}

func offNames(b *testing.B) string {
	var n []string
	for _, t := range offTables(b) {
		n = append(n, tableName(t))
	}
	return strings.Join(n, ", ")
}

// tableName is t as nft names it.
func tableName(t *nftables.Table) string {
	f := "inet"
	if t.Family == nftables.TableFamilyBridge {
		f = "bridge"
	}
	return "table " + f + " " + t.Name
}

// missingTables names the tables "off" deletes that m does not have.
func missingTables(b *testing.B, m *sim.Machine) []string {
	b.Helper()
	c, done := nftIn(b, m)
	defer done()
	tables, err := c.ListTables()
	if err != nil {
		b.Fatal(err)
	}
	var missing []string
	for _, want := range offTables(b) {
		if !slices.ContainsFunc(tables, func(t *nftables.Table) bool { return t.Name == want.Name && t.Family == want.Family }) {
			missing = append(missing, tableName(want))
		}
	}
	return missing
}
