package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/butter-cloud/butter/cli"
	"github.com/butter-cloud/butter/lab"
)

// The goals for verbs with the holder's connections.
const (
	holderListGoal    = 300 * time.Millisecond
	holderNetworkGoal = 500 * time.Millisecond
	holderVMRatioGoal = 1.3 // vm create / raw ssh virsh create
	holderRounds      = 5
)

// BenchmarkHolder times verbs through the built butter binary, each with
// the connection holder (BUTTER_HOLDER=on, the holder already running and
// holding the machines' connections, as after any earlier verb) and
// without it (BUTTER_HOLDER=off: every verb dials), in the same run and
// alternating which goes first, on a lab cloud of four machines over real
// SSH:
//
//   - `machine list --json`;
//   - `network create` across the four machines (removed after, untimed);
//   - `vm create` of the tiny guest on m1 (kernel and initrd cached, 128
//     MiB, TCG) until it runs, beside OpenSSH's `ssh root@m1 virsh create`
//     of the very domain butter made (its XML dumped, the domain
//     undefined, created raw, destroyed and defined again for butter's
//     `vm remove`).
//
// Each is printed as median, min and max of five rounds, with the ratios
// and the goals. Run it once: -benchtime 1x (bench/holder.sh).
func BenchmarkHolder(b *testing.B) {
	needLab(b, "/usr/sbin/sshd", "/usr/sbin/libvirtd", "/usr/sbin/virtlogd", "/usr/bin/qemu-system-x86_64", "/usr/bin/nsenter",
		"/usr/bin/ssh", "/usr/bin/virsh")
	ctx, cancel := context.WithTimeout(b.Context(), 12*time.Minute)
	defer cancel()
	dir := b.TempDir()
	butter := buildButter(b, ctx, dir)
	home := filepath.Join(dir, "home")
	runtime := filepath.Join(dir, "run")
	for _, d := range []string{home, runtime} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			b.Fatal(err)
		}
	}
	b.Setenv("HOME", home)
	b.Setenv("XDG_CONFIG_HOME", filepath.Join(home, ".config"))
	b.Setenv("XDG_CACHE_HOME", filepath.Join(home, ".cache"))
	b.Setenv("XDG_RUNTIME_DIR", runtime)
	b.Setenv("SSH_AUTH_SOCK", "")
	// The holder outlives this benchmark by its idle time: keep it short.
	b.Setenv(cli.HolderIdleEnv, "20s")
	b.Setenv(cli.HolderEnv, "off")
	lc := upLabCloud(b, ctx, "hob", lab.CloudOptions{Machines: 4, Butter: butter})
	name := lc.Name
	a := &awayLab{b: b, ctx: ctx, butter: butter, lc: lc}
	addrs, _ := a.addresses()
	m1, _, _ := strings.Cut(addrs["m1"], ":")
	a.run(0, "network", "create", "vms")
	// With the holder: its first verb starts it and dials.
	with := func(on bool) {
		b.Setenv(cli.HolderEnv, map[bool]string{true: "on", false: "off"}[on])
	}
	with(true)
	_, first := a.run(0, "machine", "list", "--json")
	// The kernel and initrd go to m1's image store once, untimed.
	a.run(0, "vm", "create", "warm", "--machine", "m1", "--network", "vms", "--image", lc.TinyImage, "--cpus", "1", "--memory", "128M")
	a.run(0, "vm", "remove", "warm")

	list := map[bool][]time.Duration{}
	network := map[bool][]time.Duration{}
	vm := map[bool][]time.Duration{}
	var raw []time.Duration
	var slowestList time.Duration
	var slowestLog string
	for round := range holderRounds {
		order := []bool{round%2 == 0, round%2 != 0}
		for _, on := range order {
			with(on)
			_, took := a.run(0, "machine", "list", "--json", "--debug")
			list[on] = append(list[on], took)
			if on && took > slowestList {
				slowestList, slowestLog = took, a.lastStderr
			}
		}
		for _, on := range order {
			with(on)
			n := fmt.Sprintf("n%d%v", round+1, on)
			_, took := a.run(0, "network", "create", n)
			network[on] = append(network[on], took)
			a.run(0, "network", "remove", n)
		}
		for _, on := range order {
			with(on)
			v := fmt.Sprintf("v%d%v", round+1, on)
			_, took := a.run(0, "vm", "create", v, "--machine", "m1", "--network", "vms", "--image", lc.TinyImage,
				"--cpus", "1", "--memory", "128M")
			vm[on] = append(vm[on], took)
			if on {
				raw = append(raw, a.rawCreate(m1, v))
			}
			a.run(0, "vm", "remove", v)
		}
	}
	b.StopTimer()

	var out strings.Builder
	fmt.Fprintf(&out, "lab %s: 4 machines over real SSH, TCG; %d rounds, holder on and off alternating  %8s %8s %8s\n",
		name, holderRounds, "median", "min", "max")
	row := func(what string, ds []time.Duration) { spreadRow(&out, 78, what, ds) }
	goal := func(d, g time.Duration) string {
		return fmt.Sprintf("%.2f of the %s goal", d.Seconds()/g.Seconds(), g)
	}
	fmt.Fprintf(&out, "  the holder's first verb (start it, dial 4 machines): machine list %s\n", ms(first))
	row("machine list, holder", list[true])
	row("machine list, no holder", list[false])
	fmt.Fprintf(&out, "    holder/none %.2f; holder %s\n", ratio(median(list[true]), median(list[false])), goal(median(list[true]), holderListGoal))
	row("network create across 4, holder", network[true])
	row("network create across 4, no holder", network[false])
	fmt.Fprintf(&out, "    holder/none %.2f; holder %s\n", ratio(median(network[true]), median(network[false])), goal(median(network[true]), holderNetworkGoal))
	row("vm create (cached tiny guest) -> running, holder", vm[true])
	row("vm create, no holder", vm[false])
	row("raw ssh root@m1 virsh create (the same domain)", raw)
	fmt.Fprintf(&out, "    vm create / raw: holder %.2f, no holder %.2f (goal <= %.1f)\n", ratio(median(vm[true]), median(raw)), ratio(median(vm[false]), median(raw)), holderVMRatioGoal)
	fmt.Fprintf(&out, "  the slowest list with the holder (%s), its holder lines:\n", ms(slowestList))
	for line := range strings.SplitSeq(slowestLog, "\n") {
		if strings.Contains(line, "holder") || strings.Contains(line, "butter ran") {
			fmt.Fprintf(&out, "    %s\n", line)
		}
	}
	b.ReportMetric(median(list[true]).Seconds(), "list-holder-s")
	b.ReportMetric(median(network[true]).Seconds(), "network-holder-s")
	b.ReportMetric(ratio(median(vm[true]), median(raw)), "vm/raw-holder")
	b.Log("\n" + strings.TrimRight(out.String(), "\n"))
}

// rawCreate times OpenSSH's `ssh root@addr virsh create` of VM v's domain
// as butter defined it: its XML dumped on the machine, the domain stopped
// and undefined, created raw (transient), then stopped and defined again
// so that butter's `vm remove` finds it as it left it.
func (a *awayLab) rawCreate(addr, v string) time.Duration {
	a.b.Helper()
	xml := "/run/bench-" + v + ".xml"
	virsh := "virsh -q -c qemu:///system "
	on := func(script string) {
		if out, err := a.onMachine("m1", "sh", "-ec", script).CombinedOutput(); err != nil {
			a.b.Fatalf("on m1: %s: %v: %s", script, err, out)
		}
	}
	on(virsh + "dumpxml " + v + " > " + xml + " && " + virsh + "destroy " + v + " && " + virsh + "undefine " + v)
	ssh := exec.CommandContext(a.ctx, "ssh", "-F", "none", "-i", a.lc.Key, "-o", "UserKnownHostsFile="+a.lc.KnownHosts,
		"-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ControlMaster=no", "root@"+addr,
		virsh+"create "+xml)
	start := time.Now()
	if out, err := ssh.CombinedOutput(); err != nil {
		a.b.Fatalf("ssh %s virsh create: %v: %s", addr, err, out)
	}
	took := time.Since(start)
	on(virsh + "destroy " + v + " && " + virsh + "define " + xml + " >/dev/null && rm -f " + xml)
	return took
}
