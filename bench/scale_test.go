package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/butter-cloud/butter/cloud"
	"github.com/butter-cloud/butter/holder"
	"github.com/butter-cloud/butter/internal/testbed"
	"github.com/butter-cloud/butter/lab"
	"github.com/butter-cloud/butter/lab/sim"
)

// scaleSizes are the lab sizes of BenchmarkScale; scaleRounds the rounds of
// each timed verb; scaleNetworks the networks of the idle figure.
var scaleSizes = []int{8, 16, 32}

const (
	scaleRounds   = 3
	scaleNetworks = 10
	// scaleNetworkGoal is the goal for a network across 32.
	scaleNetworkGoal = 3 * time.Second
)

// scaleFigures are one lab size's medians.
type scaleFigures struct {
	n                      int
	addLast, create, apply time.Duration
	// createCPU and heldCPU are where the CPU went in the network
	// creates, without and with the holder (their medians).
	createCPU, heldCPU cpuSplit
	// heldCreate is network create with the connection holder warm (a
	// verb before it reached every machine through it).
	heldCreate time.Duration
}

// BenchmarkScale measures how the operator's verbs grow with the cloud:
// labs of 8, 16 and 32 simulated machines running only the helper (sshd
// and the helper daemon, no libvirtd), driven through the core (package
// cloud) over real SSH as the CLI drives it (a new cloud.Cloud per verb):
//
//   - `machine add` of the last machine (its helper installed and started,
//     and every other machine updated with it as a peer);
//   - `network create` across every machine;
//   - a full re-apply: `butter sync` of every machine at once;
//
// each the median of three rounds, with the growth against the 8-machine
// lab beside the growth in machines (linear growth: 2 and 4), and where
// the CPU went in network create (every processor, the helper daemons,
// the operator side: the rest is the SSH sessions' processes). On the
// 32-machine lab, with ten networks across all (31 peers each), it prints
// the helper daemon's idle resident memory and CPU share over 10 s
// (userspace WireGuard here: no kernel module). Run it once:
// -benchtime 1x (bench/scale.sh does).
func BenchmarkScale(b *testing.B) {
	needLab(b, "/usr/sbin/sshd", "/usr/bin/nsenter")
	ctx, cancel := context.WithTimeout(b.Context(), 40*time.Minute)
	defer cancel()
	dir := b.TempDir()
	butter := buildButter(b, ctx, dir)
	operatorHome(b, dir)

	var figs []scaleFigures
	for _, n := range scaleSizes {
		figs = append(figs, scaleLab(b, ctx, butter, n))
	}
	b.StopTimer()
	base := figs[0]
	fmt.Printf("\nscale (median of %d rounds; growth against %d machines, machines grow %s)\n", scaleRounds, base.n, growthOf(figs))
	fmt.Printf("%9s %22s %22s %22s %30s\n", "machines", "machine add (last)", "network create (all)", "re-apply (all)", "network create, holder warm")
	for _, f := range figs {
		fmt.Printf("%9d %12s  x%-7.2f %12s  x%-7.2f %12s  x%-7.2f %12s  x%-5.2f (%.2f of without)\n", f.n,
			f.addLast.Round(time.Millisecond), ratio(f.addLast, base.addLast),
			f.create.Round(time.Millisecond), ratio(f.create, base.create),
			f.apply.Round(time.Millisecond), ratio(f.apply, base.apply),
			f.heldCreate.Round(time.Millisecond), ratio(f.heldCreate, base.heldCreate), ratio(f.heldCreate, f.create))
	}
	fmt.Printf("\nwhere the CPU went in network create (medians, core-seconds; the machine has %d cores)\n", runtime.NumCPU())
	fmt.Printf("%9s %-7s %10s %16s %14s %14s\n", "machines", "holder", "wall", "all processors", "helper daemons", "this process")
	for _, f := range figs {
		for _, r := range []struct {
			how  string
			wall time.Duration
			c    cpuSplit
		}{{"no", f.create, f.createCPU}, {"warm", f.heldCreate, f.heldCPU}} {
			fmt.Printf("%9d %-7s %10s %16.2f %14.2f %14.2f\n", f.n, r.how, r.wall.Round(time.Millisecond), r.c.busy, r.c.daemons, r.c.self)
		}
	}
	last := figs[len(figs)-1]
	for _, c := range []struct {
		how string
		d   time.Duration
	}{{"a verb of its own", last.create}, {"through the warm holder", last.heldCreate}} {
		fmt.Printf("goal: network create across %d ≤ %s, %s: %s (%.2f of the goal)\n", last.n, scaleNetworkGoal, c.how,
			map[bool]string{true: "met", false: "missed"}[c.d <= scaleNetworkGoal], c.d.Seconds()/scaleNetworkGoal.Seconds())
	}
}

// startHolder runs a connection holder (package holder, as `butter
// holder` runs it) in this process on a socket of its own until the
// benchmark ends, and returns the dialer a verb reaches it with.
func startHolder(b *testing.B, ctx context.Context) *holder.Dialer {
	b.Helper()
	dir := b.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil { // the holder insists on a private folder
		b.Fatal(err)
	}
	socket := filepath.Join(dir, "holder.sock")
	ln, err := holder.Listen(socket)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = (&holder.Server{Idle: 10 * time.Minute}).Serve(ctx, ln)
	}()
	b.Cleanup(func() { cancel(); <-done })
	return &holder.Dialer{Socket: socket}
}

func ratio(a, b time.Duration) float64 { return a.Seconds() / max(b.Seconds(), 1e-9) }

func growthOf(figs []scaleFigures) string {
	var s []string
	for _, f := range figs {
		s = append(s, fmt.Sprintf("x%.0f", float64(f.n)/float64(figs[0].n)))
	}
	return strings.Join(s, ", ")
}

// scaleLab builds a lab of n machines, adds them, and times the verbs.
func scaleLab(b *testing.B, ctx context.Context, butter string, n int) scaleFigures {
	b.Helper()
	name := testbed.ClaimLab(b, fmt.Sprintf("s%d", n))
	begin := time.Now()
	lc, err := lab.StartCloud(ctx, lab.CloudOptions{Name: name, Underlay: testbed.Underlay(name), Machines: n, NoAdd: true,
		NoLibvirt: true, Butter: butter, Accel: "tcg"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := lab.StopCloud(context.WithoutCancel(ctx), name); err != nil {
			b.Errorf("lab %s down: %v", name, err)
		}
	}()
	conn := lc.Connector(butter)
	machine := func(i int) cloud.NewMachine {
		m := fmt.Sprintf("m%d", i)
		return cloud.NewMachine{Name: m, Address: machineAddr(b, ctx, name, m).String(), Port: sim.SSHPort,
			User: "root", Identity: lc.Key, Accel: "tcg"}
	}
	// All but the last join untimed.
	setup := cloud.New(lc.Inventory, conn, nil)
	for i := 1; i < n; i++ {
		if _, _, err := setup.AddMachine(ctx, machine(i), cloud.Trust{}, nil); err != nil {
			b.Fatalf("lab of %d: add m%d: %v", n, i, err)
		}
	}
	setup.Close()
	fmt.Printf("lab of %d machines up and %d added in %s\n", n, n-1, time.Since(begin).Round(time.Second))

	f := scaleFigures{n: n}
	var adds, applies []time.Duration
	for round := range scaleRounds {
		if round > 0 {
			// Dropped (the machines have no libvirtd, so a plain
			// remove cannot list its VMs) and made fresh: the next add
			// uploads and starts the helper again.
			cl := cloud.New(lc.Inventory, conn, nil)
			if _, err := cl.RemoveMachine(ctx, fmt.Sprintf("m%d", n), true, nil); err != nil {
				b.Fatalf("lab of %d: remove m%d: %v", n, n, err)
			}
			cl.Close()
			freshen(b, ctx, name, fmt.Sprintf("m%d", n))
		}
		adds = append(adds, timed(b, lc.Inventory, conn, func(cl *cloud.Cloud) error {
			_, _, err := cl.AddMachine(ctx, machine(n), cloud.Trust{}, nil)
			return err
		}))
	}
	daemons := make([]int, 0, n)
	for i := 1; i <= n; i++ {
		daemons = append(daemons, daemonPID(b, ctx, fmt.Sprintf("%s-m%d", name, i)))
	}
	// The last network stays, for the re-apply below to carry.
	creates, splits := createRounds(b, ctx, lc.Inventory, conn, "s", daemons, true)
	// The same through a warm holder: one verb (machine list) dials every
	// machine through it first, as the verb before would have.
	held := conn.(cloud.SSH)
	held.Holder = startHolder(b, ctx)
	timed(b, lc.Inventory, held, func(cl *cloud.Cloud) error {
		ms, err := cl.Machines(ctx, 20*time.Second)
		for _, m := range ms {
			if err == nil && m.Status == cloud.StatusOffline { // degraded answers too: a new machine's handshakes may be on their way
				err = fmt.Errorf("machine %s: %s %s", m.Name, m.Status, m.Problem)
			}
		}
		return err
	})
	heldCreates, heldSplits := createRounds(b, ctx, lc.Inventory, held, "h", daemons, false)
	f.heldCreate = median(heldCreates)
	var all []string
	for i := 1; i <= n; i++ {
		all = append(all, fmt.Sprintf("m%d", i))
	}
	for range scaleRounds {
		applies = append(applies, timed(b, lc.Inventory, conn, func(cl *cloud.Cloud) error {
			out, err := cl.Sync(ctx, all, nil)
			if err == nil && len(out.Applied) != n {
				err = fmt.Errorf("re-applied on %d machines, want %d (behind: %v)", len(out.Applied), n, out.Behind)
			}
			return err
		}))
	}
	f.addLast, f.create, f.apply = median(adds), median(creates), median(applies)
	f.createCPU, f.heldCPU = medianSplit(splits), medianSplit(heldSplits)
	fmt.Printf("lab of %d: machine add %v, network create %v, re-apply %v, network create through the warm holder %v\n", n, adds, creates, applies, heldCreates)
	if n == scaleSizes[len(scaleSizes)-1] {
		idle(b, ctx, lc, conn, name, n)
	}
	return f
}

// createRounds times scaleRounds network creates across every machine
// (networks named prefix0, prefix1, …, each removed after but the last
// when keepLast), with where the CPU went in each.
func createRounds(b *testing.B, ctx context.Context, inventory string, conn cloud.Connector, prefix string, daemons []int, keepLast bool) ([]time.Duration, []cpuSplit) {
	b.Helper()
	var times []time.Duration
	var splits []cpuSplit
	for round := range scaleRounds {
		net := fmt.Sprintf("%s%d", prefix, round)
		before := takeCPU(b, daemons)
		times = append(times, timed(b, inventory, conn, createEverywhere(ctx, net)))
		splits = append(splits, takeCPU(b, daemons).since(before))
		if keepLast && round == scaleRounds-1 {
			break
		}
		if _, err := cloud.New(inventory, conn, nil).RemoveNetwork(ctx, net, nil); err != nil {
			b.Fatalf("network remove %s: %v", net, err)
		}
	}
	return times, splits
}

// createEverywhere is the verb `network create NAME`, which must reach
// every machine.
func createEverywhere(ctx context.Context, name string) func(*cloud.Cloud) error {
	return func(cl *cloud.Cloud) error {
		_, out, err := cl.CreateNetwork(ctx, cloud.NewNetwork{Name: name}, nil)
		if err == nil && len(out.Behind) > 0 {
			err = fmt.Errorf("machines behind: %v", out.Behind)
		}
		return err
	}
}

// timed runs one verb with a new cloud.Cloud, as one CLI call has, and
// returns how long it took.
func timed(b *testing.B, inventory string, conn cloud.Connector, verb func(*cloud.Cloud) error) time.Duration {
	b.Helper()
	cl := cloud.New(inventory, conn, nil)
	defer cl.Close()
	begin := time.Now()
	if err := verb(cl); err != nil {
		b.Fatal(err)
	}
	return time.Since(begin)
}

// idle makes scaleNetworks networks across the lab (one is there) and
// prints m1's helper daemon's resident memory and CPU share at rest.
func idle(b *testing.B, ctx context.Context, lc lab.CloudLab, conn cloud.Connector, name string, n int) {
	b.Helper()
	cl := cloud.New(lc.Inventory, conn, nil)
	defer cl.Close()
	inv, err := cl.Inventory()
	if err != nil {
		b.Fatal(err)
	}
	for i := len(inv.Networks); i < scaleNetworks; i++ {
		if _, _, err := cl.CreateNetwork(ctx, cloud.NewNetwork{Name: fmt.Sprintf("idle%d", i)}, nil); err != nil {
			b.Fatal(err)
		}
	}
	pid := daemonPID(b, ctx, name+"-m1")
	time.Sleep(5 * time.Second) // settle after the last apply
	cpu0, t0 := cpuSeconds(b, pid), time.Now()
	time.Sleep(10 * time.Second)
	share := (cpuSeconds(b, pid) - cpu0) / time.Since(t0).Seconds()
	fmt.Printf("helper daemon at rest with %d peers and %d networks (userspace WireGuard): %.1f MiB resident, %.2f%% of a core\n",
		n-1, scaleNetworks, rssMiB(b, pid), share*100)
}

// daemonPID is the helper daemon's process in network namespace ns.
func daemonPID(b *testing.B, ctx context.Context, ns string) int {
	b.Helper()
	out, err := exec.CommandContext(ctx, "ip", "netns", "pids", ns).Output()
	if err != nil {
		b.Fatalf("processes of %s: %v", ns, err)
	}
	for _, f := range strings.Fields(string(out)) {
		cmd, err := os.ReadFile("/proc/" + f + "/cmdline")
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(cmd), "\x00"), "\x00")
		if len(args) >= 3 && args[1] == "helper" && args[2] == "daemon" {
			pid, _ := strconv.Atoi(f)
			return pid
		}
	}
	b.Fatalf("no helper daemon in %s (%s)", ns, out)
	return 0
}

// rssMiB is a process's resident memory (VmRSS) in MiB.
func rssMiB(b *testing.B, pid int) float64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				b.Fatal(err)
			}
			return float64(kb) / 1024
		}
	}
	b.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// cpuSplit is CPU time in core-seconds: every processor's busy time (not
// idle, iowait or steal: time the hypervisor gave to others), the lab's
// helper daemons', and this process's (the operator side).
type cpuSplit struct{ busy, daemons, self float64 }

// takeCPU reads the counters of a cpuSplit now.
func takeCPU(b *testing.B, daemons []int) cpuSplit {
	b.Helper()
	var c cpuSplit
	for _, pid := range daemons {
		c.daemons += cpuSeconds(b, pid)
	}
	c.self = cpuSeconds(b, os.Getpid())
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		b.Fatal(err)
	}
	// cpu  user nice system idle iowait irq softirq steal …
	f := strings.Fields(strings.SplitN(string(data), "\n", 2)[0])
	for i, v := range f[1:min(len(f), 9)] {
		if i == 3 || i == 4 || i == 7 { // idle, iowait, steal
			continue
		}
		t, err := strconv.ParseFloat(v, 64)
		if err != nil {
			b.Fatalf("/proc/stat: %q", f)
		}
		c.busy += t / clockTicks
	}
	return c
}

func (c cpuSplit) since(before cpuSplit) cpuSplit {
	return cpuSplit{busy: c.busy - before.busy, daemons: c.daemons - before.daemons, self: c.self - before.self}
}

func medianSplit(s []cpuSplit) cpuSplit {
	pick := func(get func(cpuSplit) float64) float64 {
		v := make([]float64, 0, len(s))
		for _, c := range s {
			v = append(v, get(c))
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	return cpuSplit{busy: pick(func(c cpuSplit) float64 { return c.busy }),
		daemons: pick(func(c cpuSplit) float64 { return c.daemons }),
		self:    pick(func(c cpuSplit) float64 { return c.self })}
}
