package bench

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/butter-cloud/butter/cloud"
	"github.com/butter-cloud/butter/lab"
	"github.com/butter-cloud/butter/lab/sim"
	"github.com/butter-cloud/butter/plumbing"
)

const (
	opRounds = 5
	// opNetworkGoal is the goal for a network across three
	// machines.
	opNetworkGoal = 2 * time.Second
)

// opLab is the operator benchmark's lab, with a name and an underlay of
// its own (testbed.ClaimLab, testbed.Underlay), so that it never meets
// another lab (`butter lab up`, a test's) on this box.
var opLab string

// BenchmarkOperator times the operator's verbs through the core (package
// cloud) against a lab cloud of three simulated machines reached over
// real SSH, with the helper uploaded from a freshly built butter binary:
//
//   - adding a machine fresh (m1, while m2 and m3 are in the cloud, so
//     both are updated as peers): between rounds m1 is removed, its
//     supervised helper daemon stopped and its helper binaries deleted, so
//     every round connects, checks, uploads the helper, starts the daemon
//     and updates the peers, with a new cloud.Cloud as the CLI would have;
//   - creating a network across the three machines (then removing it;
//     both checked by the bridge on every machine): with a new
//     cloud.Cloud per call, as each `butter network create` has, SSH
//     connections included, and with one connected cloud.Cloud, as the
//     dashboard has; the goal is 2 s or less;
//   - creating a tiny VM (direct kernel boot, 128 MiB, TCG) on that
//     network until the call returns it running, with a new cloud.Cloud
//     per call; the first round uploads the kernel and initrd and is
//     printed apart from the others, which find them cached.
//
// Each is printed as median, min and max of five rounds, with where the
// time goes (from the core's steps). Run it once:
// -benchtime 1x (bench/operator.sh does).
func BenchmarkOperator(b *testing.B) {
	needLab(b, "/usr/sbin/sshd", "/usr/sbin/libvirtd", "/usr/sbin/virtlogd", "/usr/bin/qemu-system-x86_64", "/usr/bin/nsenter")
	ctx, cancel := context.WithTimeout(b.Context(), 8*time.Minute)
	defer cancel()

	dir := b.TempDir()
	butter := buildButter(b, ctx, dir)
	helperSize := fileMiB(butter)
	operatorHome(b, dir)

	lc := upLabCloud(b, ctx, "opb", lab.CloudOptions{Machines: 3, NoAdd: true, Butter: butter})
	opLab = lc.Name
	conn := lc.Connector(butter)
	machine := func(name string) cloud.NewMachine {
		return cloud.NewMachine{Name: name, Address: machineAddr(b, ctx, opLab, name).String(), Port: sim.SSHPort,
			User: "root", Identity: lc.Key, Accel: "tcg"}
	}
	m1 := machine("m1")
	machines := []string{"m1", "m2", "m3"}

	// m2 and m3 join first, untimed: they are the peers m1's add updates.
	setup := cloud.New(lc.Inventory, conn, nil)
	for _, name := range []string{"m2", "m3"} {
		if _, _, err := setup.AddMachine(ctx, machine(name), cloud.Trust{}, nil); err != nil {
			b.Fatal(err)
		}
	}
	setup.Close()

	b.ResetTimer()

	// Add machine, fresh. The phases come from the core's steps.
	var add, addConnect, addUpload, addDaemon, addPeers []time.Duration
	for round := range opRounds {
		if round > 0 {
			freshen(b, ctx, opLab, "m1")
		}
		st := &stepTimes{}
		cl := cloud.New(lc.Inventory, conn, nil)
		begin := time.Now()
		if _, _, err := cl.AddMachine(ctx, m1, cloud.Trust{}, st.record); err != nil {
			b.Fatalf("add m1, round %d: %v", round+1, err)
		}
		end := time.Now()
		add = append(add, end.Sub(begin))
		// Steps are said when done: connected (then the checks), helper
		// installed, daemon started, mesh address.
		connected, install, start, mesh := st.at("m1", "connected as"), st.at("m1", "installed the helper"),
			st.at("m1", "started the helper daemon"), st.at("m1", "mesh address")
		if connected.IsZero() || install.IsZero() || start.IsZero() || mesh.IsZero() {
			b.Fatalf("add m1, round %d: missing steps (want connected, installed, started, mesh address): %v", round+1, st.texts())
		}
		addConnect = append(addConnect, connected.Sub(begin))
		addUpload = append(addUpload, install.Sub(connected))
		addDaemon = append(addDaemon, mesh.Sub(install))
		addPeers = append(addPeers, end.Sub(mesh))
		if round < opRounds-1 {
			if _, err := cl.RemoveMachine(ctx, "m1", false, nil); err != nil {
				b.Fatalf("remove m1, round %d: %v", round+1, err)
			}
		}
		cl.Close()
	}

	// Network create across the three machines: a new Cloud per call (the
	// CLI), then one connected Cloud (the dashboard).
	var netFresh, netWarm []time.Duration
	// Where a new Cloud's network create spends its time, per machine:
	// reaching the running helper (SSH handshake, serve session), then
	// applying the spec. Nothing is installed or started (no such steps).
	var netReach, netApply []time.Duration
	for round := range opRounds {
		cl := cloud.New(lc.Inventory, conn, nil)
		name := fmt.Sprintf("cli%d", round+1)
		st := &stepTimes{}
		begin := time.Now()
		n, _, err := cl.CreateNetwork(ctx, cloud.NewNetwork{Name: name}, st.record)
		if err != nil {
			b.Fatalf("network create %s: %v", name, err)
		}
		netFresh = append(netFresh, time.Since(begin))
		for _, m := range machines {
			applying, applied := st.at(m, "applying the network"), st.at(m, "network configuration applied")
			if applying.IsZero() || applied.IsZero() {
				b.Fatalf("network create %s: missing steps of %s: %v", name, m, st.texts())
			}
			if !st.at(m, "installed the helper").IsZero() || !st.at(m, "started the helper daemon").IsZero() {
				b.Fatalf("network create %s: %s installed or started the helper again: %v", name, m, st.texts())
			}
			netReach = append(netReach, applying.Sub(begin))
			netApply = append(netApply, applied.Sub(applying))
		}
		checkBridges(b, ctx, n.ID, true)
		if _, err := cl.RemoveNetwork(ctx, name, nil); err != nil {
			b.Fatalf("network remove %s: %v", name, err)
		}
		checkBridges(b, ctx, n.ID, false)
		cl.Close()
	}
	warm := cloud.New(lc.Inventory, conn, nil)
	defer warm.Close()
	if _, err := warm.Machines(ctx, 30*time.Second); err != nil { // connects to all three
		b.Fatal(err)
	}
	for round := range opRounds {
		name := fmt.Sprintf("tui%d", round+1)
		begin := time.Now()
		n, _, err := warm.CreateNetwork(ctx, cloud.NewNetwork{Name: name}, nil)
		if err != nil {
			b.Fatalf("network create %s: %v", name, err)
		}
		netWarm = append(netWarm, time.Since(begin))
		checkBridges(b, ctx, n.ID, true)
		if _, err := warm.RemoveNetwork(ctx, name, nil); err != nil {
			b.Fatalf("network remove %s: %v", name, err)
		}
		checkBridges(b, ctx, n.ID, false)
	}

	// VM create end to end, on m1, a new Cloud per call (the CLI).
	if _, _, err := warm.CreateNetwork(ctx, cloud.NewNetwork{Name: "vms"}, nil); err != nil {
		b.Fatal(err)
	}
	// The phases of a create, from the core's steps: connecting (SSH,
	// checks, the helper's version), the kernel and initrd (uploaded, or
	// found in the machine's image store by their hash), the helper's
	// create call.
	var vmFirst, vmFirstConnect, vmFirstUpload time.Duration
	var vmCached, vmConnect, vmUpload []time.Duration
	for round := range opRounds {
		name := fmt.Sprintf("op%d", round+1)
		st := &stepTimes{}
		cl := cloud.New(lc.Inventory, conn, nil)
		begin := time.Now()
		v, err := cl.CreateVM(ctx, cloud.NewVM{Name: name, Machine: "m1", Network: "vms", Image: lc.TinyImage,
			CPUs: 1, MemoryMiB: 128}, nil, st.record)
		if err != nil {
			b.Fatalf("vm create %s: %v", name, err)
		}
		took := time.Since(begin)
		if v.State != "running" {
			b.Fatalf("vm %s answered %q, want running", name, v.State)
		}
		upload, create := st.at("m1", "uploading"), st.at("m1", "creating vm")
		if upload.IsZero() || create.IsZero() {
			b.Fatalf("vm create %s: want uploading and creating steps, got %v", name, st.texts())
		}
		if round == 0 {
			vmFirst, vmFirstConnect, vmFirstUpload = took, upload.Sub(begin), create.Sub(upload)
		} else {
			vmCached = append(vmCached, took)
			vmConnect = append(vmConnect, upload.Sub(begin))
			vmUpload = append(vmUpload, create.Sub(upload))
		}
		if _, err := cl.VMAction(ctx, name, "remove", 30*time.Second); err != nil {
			b.Fatalf("vm remove %s: %v", name, err)
		}
		cl.Close()
	}
	b.StopTimer()

	b.ReportMetric(median(add).Seconds(), "add-machine-s")
	b.ReportMetric(median(netFresh).Seconds(), "network-create-s")
	b.ReportMetric(median(netWarm).Seconds(), "network-create-connected-s")
	b.ReportMetric(median(vmCached).Seconds(), "vm-create-s")

	kernel, initrd := tinyFiles(lc.TinyImage)
	goal := func(d time.Duration) string {
		if d <= opNetworkGoal {
			return "met"
		}
		return "missed"
	}
	var out strings.Builder
	fmt.Fprintf(&out, "lab %s: 3 machines over real SSH, helper %.1f MiB (this build), TCG; %d rounds each  %8s %8s %8s\n",
		opLab, helperSize, opRounds, "median", "min", "max")
	row := func(what string, ds []time.Duration) { spreadRow(&out, 86, what, ds) }
	row("add machine m1 fresh (connect, checks, helper upload, daemon start, 2 peers), new Cloud", add)
	fmt.Fprintf(&out, "    its medians: connect %s, checks+helper upload %s, daemon start+keys %s, peers (connect to m2, m3; apply on all 3) %s\n",
		ms(median(addConnect)), ms(median(addUpload)), ms(median(addDaemon)), ms(median(addPeers)))
	row("network create on 3 machines, new Cloud per call (as the CLI: SSH connects included)", netFresh)
	fmt.Fprintf(&out, "    per machine, medians: until applying %s, apply %s; median / %s goal: %.2f (%s)\n",
		ms(median(netReach)), ms(median(netApply)), opNetworkGoal,
		median(netFresh).Seconds()/opNetworkGoal.Seconds(), goal(median(netFresh)))
	row(fmt.Sprintf("network create on 3 machines, one connected Cloud (as the dashboard); median / goal %.3f (%s)",
		median(netWarm).Seconds()/opNetworkGoal.Seconds(), goal(median(netWarm))), netWarm)
	row(fmt.Sprintf("vm create -> running, tiny guest 128 MiB, kernel+initrd cached (rounds 2-%d), new Cloud", opRounds), vmCached)
	fmt.Fprintf(&out, "    round 1 (extracted kernel %.1f MiB + initrd %.1f MiB uploaded): %s = connect %s + upload %s + create; rounds 2-%d (medians): connect %s + hash and has-check %s + create\n",
		kernel, initrd, ms(vmFirst), ms(vmFirstConnect), ms(vmFirstUpload), opRounds, ms(median(vmConnect)), ms(median(vmUpload)))
	b.Log("\n" + strings.TrimRight(out.String(), "\n"))
}

// stepTimes keeps when the core said each step.
type stepTimes struct {
	mu   sync.Mutex
	seen []cloud.Step
	when []time.Time
}

func (s *stepTimes) record(st cloud.Step) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen = append(s.seen, st)
	s.when = append(s.when, now)
}

// at is when the machine's first step starting with prefix was said
// (zero: never).
func (s *stepTimes) at(machine, prefix string) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, st := range s.seen {
		if st.Machine == machine && strings.HasPrefix(st.Text, prefix) {
			return s.when[i]
		}
	}
	return time.Time{}
}

func (s *stepTimes) texts() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, st := range s.seen {
		out = append(out, st.Machine+": "+st.Text)
	}
	return out
}

// machineAddr is the address of lab machine name's uplink, where its
// sshd listens.
func machineAddr(b *testing.B, ctx context.Context, lab, name string) netip.Addr {
	b.Helper()
	out, err := exec.CommandContext(ctx, "ip", "-n", lab+"-"+name, "-4", "-o", "addr", "show", "dev", sim.MachineUplink).Output()
	if err != nil {
		b.Fatalf("address of %s: %v", name, err)
	}
	f := strings.Fields(string(out))
	for i, w := range f {
		if w == "inet" && i+1 < len(f) {
			if p, err := netip.ParsePrefix(f[i+1]); err == nil {
				return p.Addr()
			}
		}
	}
	b.Fatalf("address of %s: none in %q", name, out)
	return netip.Addr{}
}

// freshen makes a removed lab machine fresh for the next add: it stops the
// supervised helper daemon there (the supervisor and the daemon, only
// processes in that machine's network namespace) and deletes the helper
// binaries, so the next add uploads and starts the helper from scratch.
func freshen(b *testing.B, ctx context.Context, lab, name string) {
	b.Helper()
	netns := filepath.Join(sim.NetnsDir, lab+"-"+name)
	mntns := filepath.Join(sim.StateRoot, lab, "ns", name)
	want, err := os.Stat(netns)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := os.Stat(mntns); err != nil {
		b.Fatal(err)
	}
	// The helper verbs that keep running: `helper supervise` and
	// `helper daemon`, found by their arguments and their network
	// namespace (the machine's, not another machine's or lab's).
	helpers := func() []int {
		var pids []int
		for _, pid := range sim.PidsIn([]os.FileInfo{want}) {
			cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
			if err != nil {
				continue
			}
			args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
			if len(args) >= 3 && args[1] == "helper" && (args[2] == "supervise" || args[2] == "daemon") {
				pids = append(pids, pid)
			}
		}
		return pids
	}
	if len(helpers()) == 0 {
		b.Fatalf("%s: no helper supervise or daemon process running after remove; the machine would not be fresh in the way this benchmark assumes", name)
	}
	for start := time.Now(); ; {
		pids := helpers()
		if len(pids) == 0 {
			break
		}
		sig := syscall.SIGTERM
		if time.Since(start) > 5*time.Second {
			sig = syscall.SIGKILL
		}
		if time.Since(start) > 10*time.Second {
			b.Fatalf("%s: helper processes %v survive SIGKILL", name, pids)
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, sig)
		}
		time.Sleep(100 * time.Millisecond)
	}
	cmd := exec.CommandContext(ctx, "nsenter", "--net="+netns, "--mount="+mntns, "--",
		"sh", "-c", "rm -rf /var/lib/butter/bin && test ! -e /var/lib/butter/bin")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("%s: delete the helper binaries: %v\n%s", name, err, out)
	}
}

// tinyFiles are the sizes in MiB of the tiny image's kernel and initrd
// ("kernel=PATH,initrd=PATH").
func tinyFiles(image string) (kernel, initrd float64) {
	for f := range strings.SplitSeq(image, ",") {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "kernel":
			kernel = fileMiB(v)
		case "initrd":
			initrd = fileMiB(v)
		}
	}
	return kernel, initrd
}

func fileMiB(path string) float64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return float64(fi.Size()) / (1 << 20)
}

// checkBridges checks that network id's bridge is on every lab machine
// (want) or on none.
func checkBridges(b *testing.B, ctx context.Context, id int, want bool) {
	b.Helper()
	for _, m := range []string{"m1", "m2", "m3"} {
		err := exec.CommandContext(ctx, "ip", "-n", opLab+"-"+m, "link", "show", plumbing.BridgeName(id)).Run()
		if (err == nil) != want {
			b.Fatalf("network %d on %s: bridge %s there: %v, want %v", id, m, plumbing.BridgeName(id), err == nil, want)
		}
	}
}
