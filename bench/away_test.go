package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/butter-cloud/butter/cli"
	"github.com/butter-cloud/butter/cloud"
	"github.com/butter-cloud/butter/internal/testbed"
	"github.com/butter-cloud/butter/lab"
	"github.com/butter-cloud/butter/lab/sim"
)

const (
	awayRounds = 5
	// awayListGoal is the goal for `machine list` with a machine
	// away.
	awayListGoal = 2 * time.Second
)

// awayPings are the ping intervals of the rotation rounds: the test's,
// and a fine one that resolves a short pause.
var awayPings = []time.Duration{200 * time.Millisecond, 10 * time.Millisecond}

// rotation is a key rotation's rounds: the seconds rotate-key took, the
// replies lost, the loss in seconds and the slowest reply in seconds.
type rotation struct{ rotate, lost, loss, pause []float64 }

// awayLab drives a lab cloud through the built butter binary, as the
// operator does.
type awayLab struct {
	b      *testing.B
	ctx    context.Context
	butter string
	lc     lab.CloudLab
	// lastStderr is the last run's standard error.
	lastStderr string
}

// run runs butter with the lab's inventory; it fails b when butter exits
// with another code than want.
func (a *awayLab) run(want int, args ...string) (stdout string, took time.Duration) {
	a.b.Helper()
	cmd := exec.CommandContext(a.ctx, a.butter, append([]string{"--inventory", a.lc.Inventory}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	took = time.Since(start)
	a.lastStderr = errb.String()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		a.b.Fatalf("butter %s: %v", strings.Join(args, " "), err)
	}
	if code != want {
		a.b.Fatalf("butter %s: exit %d, want %d\n%s%s", strings.Join(args, " "), code, want, out.String(), errb.String())
	}
	return out.String(), took
}

// cable plugs machine m's cable in (up) or pulls it: the far end of its
// uplink, in the underlay, goes up or down.
func (a *awayLab) cable(m string, up bool) {
	a.b.Helper()
	state := map[bool]string{true: "up", false: "down"}[up]
	if out, err := exec.CommandContext(a.ctx, "ip", "-n", a.lc.Name+"-ul", "link", "set", m, state).CombinedOutput(); err != nil {
		a.b.Fatalf("%s's cable %s: %v: %s", m, state, err, out)
	}
}

// onMachine returns a command run inside machine m's namespaces (nsenter
// execs it: a signal to the process is the command's).
func (a *awayLab) onMachine(m string, args ...string) *exec.Cmd {
	full := append([]string{"--net=" + filepath.Join(sim.NetnsDir, a.lc.Name+"-"+m),
		"--mount=" + filepath.Join(sim.StateRoot, a.lc.Name, "ns", m), "--"}, args...)
	return exec.CommandContext(a.ctx, "nsenter", full...)
}

// addresses are the machines' SSH and mesh addresses, from `machine list
// --json`.
func (a *awayLab) addresses() (ssh, mesh map[string]string) {
	a.b.Helper()
	out, _ := a.run(0, "machine", "list", "--json")
	var rows []struct {
		Name    string `json:"name"`
		Address string `json:"address"`
		MeshIP  string `json:"mesh_ip"`
		Status  string `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		a.b.Fatal(err)
	}
	ssh, mesh = map[string]string{}, map[string]string{}
	for _, r := range rows {
		if r.Status == cloud.StatusOffline {
			a.b.Fatalf("%s is offline", r.Name)
		}
		ssh[r.Name] = net.JoinHostPort(r.Address, strconv.Itoa(sim.SSHPort))
		mesh[r.Name] = r.MeshIP
	}
	return ssh, mesh
}

// answers waits (at most 15 s) until addr answers a TCP connect, and
// returns when it did. A machine whose cable is back is not reachable at
// once: this host's neighbour entry for it may still be failing from the
// tries made while it was away ("no route to host" for up to three ARP
// probes' time).
func (a *awayLab) answers(addr string) time.Time {
	a.b.Helper()
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond); err == nil {
			c.Close()
			return time.Now()
		}
	}
	a.b.Fatalf("%s does not answer 15 s after its cable is back", addr)
	return time.Time{}
}

// meshUp waits (at most timeout) until machine m pings addr across the
// mesh, and returns when it did.
func (a *awayLab) meshUp(m, addr string, timeout time.Duration) time.Time {
	a.b.Helper()
	for end := time.Now().Add(timeout); time.Now().Before(end); {
		if a.onMachine(m, "ping", "-n", "-c", "1", "-W", "0.2", addr).Run() == nil {
			return time.Now()
		}
	}
	a.b.Fatalf("%s does not reach %s across the mesh within %s", m, addr, timeout)
	return time.Time{}
}

// upLabCloud starts a lab cloud as o says, with a name and underlay of its
// own (from prefix) and TCG for its VMs, and takes it down when b ends.
func upLabCloud(b *testing.B, ctx context.Context, prefix string, o lab.CloudOptions) lab.CloudLab {
	b.Helper()
	name := testbed.ClaimLab(b, prefix)
	o.Name, o.Underlay, o.Accel = name, testbed.Underlay(name), "tcg"
	lc, err := lab.StartCloud(ctx, o, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := lab.StopCloud(context.Background(), name); err != nil {
			b.Errorf("lab %s down: %v", name, err)
		}
	})
	return lc
}

// BenchmarkAway measures the offline-tolerant core through the built butter
// binary against a lab cloud of three simulated machines over real SSH, one
// of them (m3) taken away by pulling its cable (its uplink's far end set
// down in the underlay), five rounds each:
//
//   - `machine list` with every machine up, then with m3 away, alternating
//     round by round: the medians, their ratio, and the away list against the 2 s goal (an away
//     machine is known by the 1.5 s connect timeout, asked in parallel
//     with the others);
//   - a returning machine's convergence: a network is created while m3 is
//     away (m3 pending), its cable goes back, and once m3 answers on its
//     SSH port `butter sync` catches it up; timed to sync's exit and, from
//     the cable, to m3's first ping across the mesh,
//     beside a plain `butter sync` with nothing behind (it contacts no
//     machine) and `butter sync m3` re-applying with nothing behind (the
//     same connect and apply, nothing to change);
//   - a key rotation under a ping stream: `machine rotate-key m2` while m1
//     pings m2's mesh address every 200 ms, then every 10 ms (a reply later
//     than 1 s counts as lost); the loss in seconds (lost × interval) and
//     the slowest reply (the pause), against the interval.
//
// Run it once: -benchtime 1x (bench/away.sh does).
func BenchmarkAway(b *testing.B) {
	needLab(b, "/usr/sbin/sshd", "/usr/sbin/libvirtd", "/usr/sbin/virtlogd", "/usr/bin/qemu-system-x86_64", "/usr/bin/nsenter", "/usr/bin/ping")
	ctx, cancel := context.WithTimeout(b.Context(), 10*time.Minute)
	defer cancel()
	dir := b.TempDir()
	butter := buildButter(b, ctx, dir)
	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		b.Fatal(err)
	}
	b.Setenv("HOME", home)
	b.Setenv("XDG_CONFIG_HOME", filepath.Join(home, ".config"))
	b.Setenv("XDG_CACHE_HOME", filepath.Join(home, ".cache"))
	b.Setenv("SSH_AUTH_SOCK", "")
	// Every verb dials, as the figures in the README assume
	// (BenchmarkHolder measures the holder).
	b.Setenv(cli.HolderEnv, "off")
	lc := upLabCloud(b, ctx, "awb", lab.CloudOptions{Machines: 3, Butter: butter})
	name := lc.Name
	a := &awayLab{b: b, ctx: ctx, butter: butter, lc: lc}
	addrs, ips := a.addresses()

	b.ResetTimer()

	// machine list, all up and with m3 away, side by side: each round
	// lists with m3 back (once it answers), then with its cable pulled.
	var listUp, listAway []time.Duration
	for round := range awayRounds {
		if round > 0 {
			a.cable("m3", true)
			a.answers(addrs["m3"])
		}
		_, took := a.run(0, "machine", "list", "--json")
		listUp = append(listUp, took)
		a.cable("m3", false)
		_, took = a.run(0, "machine", "list", "--json")
		listAway = append(listAway, took)
	}

	// A returning machine's convergence. m3 is away at the start of each
	// round.
	var answer, catchUp, meshBack, plain, reapply []time.Duration
	for round := range awayRounds {
		net := fmt.Sprintf("back%d", round+1)
		a.run(0, "network", "create", net, "--subnet", fmt.Sprintf("10.81.%d.0/24", round+1))
		a.cable("m3", true)
		back := time.Now()
		answer = append(answer, a.answers(addrs["m3"]).Sub(back))
		out, took := a.run(0, "sync")
		if !strings.Contains(out, ": m3") {
			b.Fatalf("sync did not catch m3 up: %s", out)
		}
		catchUp = append(catchUp, took)
		meshBack = append(meshBack, a.meshUp("m3", ips["m1"], 30*time.Second).Sub(back))
		if out, took = a.run(0, "sync"); !strings.Contains(out, "every machine is up to date") {
			b.Fatalf("a second sync: %s", out)
		}
		plain = append(plain, took)
		_, took = a.run(0, "sync", "m3")
		reapply = append(reapply, took)
		a.run(0, "network", "remove", net)
		if round < awayRounds-1 {
			a.cable("m3", false)
		}
	}

	// Key rotation under a ping stream, m1 -> m2, at each interval.
	rot := map[time.Duration]*rotation{}
	for _, every := range awayPings {
		r := &rotation{}
		rot[every] = r
		for range awayRounds {
			ping := a.onMachine("m1", "ping", "-n", "-q", "-i", fmt.Sprint(every.Seconds()), "-W", "1", "-w", "120", ips["m2"])
			var pout bytes.Buffer
			ping.Stdout, ping.Stderr = &pout, &pout
			if err := ping.Start(); err != nil {
				b.Fatal(err)
			}
			time.Sleep(2 * time.Second)
			_, took := a.run(0, "machine", "rotate-key", "m2")
			time.Sleep(3 * time.Second)
			_ = ping.Process.Signal(syscall.SIGINT)
			_ = ping.Wait()
			sum := regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`).FindStringSubmatch(pout.String())
			rtt := regexp.MustCompile(`rtt min/avg/max/mdev = [\d.]+/[\d.]+/([\d.]+)/`).FindStringSubmatch(pout.String())
			if sum == nil || rtt == nil {
				b.Fatalf("ping printed no summary:\n%s", pout.String())
			}
			sent, _ := strconv.Atoi(sum[1])
			got, _ := strconv.Atoi(sum[2])
			slowest, _ := strconv.ParseFloat(rtt[1], 64)
			r.lost = append(r.lost, float64(sent-got))
			r.loss = append(r.loss, float64(sent-got)*every.Seconds())
			r.pause = append(r.pause, slowest/1000)
			r.rotate = append(r.rotate, took.Seconds())
		}
	}
	b.StopTimer()

	b.ReportMetric(median(listAway).Seconds(), "list-away-s")
	b.ReportMetric(median(catchUp).Seconds(), "sync-catch-up-s")
	b.ReportMetric(medianF(rot[awayPings[0]].loss), "rotation-loss-s")

	var out strings.Builder
	fmt.Fprintf(&out, "lab %s: 3 machines over real SSH, the CLI as a new process per call, m3 away by its cable; %d rounds each  %8s %8s %8s\n",
		name, awayRounds, "median", "min", "max")
	row := func(what string, ds []time.Duration) { spreadRow(&out, 78, what, ds) }
	rowF := func(what, unit string, fs []float64) {
		fmt.Fprintf(&out, "  %-78s %7.3f%s %7.3f%s %7.3f%s\n", what, medianF(fs), unit, slices.Min(fs), unit, slices.Max(fs), unit)
	}
	row("machine list, all up", listUp)
	row("machine list, m3 away", listAway)
	fmt.Fprintf(&out, "    away / up: %.2f; away / %s goal: %.2f (%s); the connect timeout is %s\n",
		median(listAway).Seconds()/median(listUp).Seconds(), awayListGoal, median(listAway).Seconds()/awayListGoal.Seconds(),
		map[bool]string{true: "met", false: "missed"}[median(listAway) <= awayListGoal], cloud.ConnectTimeout)
	row("cable back -> m3 answers on its SSH port (this host's ARP retrying)", answer)
	row("then sync, m3 returning one generation behind (catch-up)", catchUp)
	row("  cable back -> m3 pings m1 across the mesh", meshBack)
	row("sync, nothing behind (contacts no machine)", plain)
	row("sync m3, nothing behind (re-apply: same connect and apply)", reapply)
	fmt.Fprintf(&out, "    catch-up / re-apply: %.2f; catch-up / plain sync: %.0f\n",
		median(catchUp).Seconds()/median(reapply).Seconds(), median(catchUp).Seconds()/median(plain).Seconds())
	for _, every := range awayPings {
		r := rot[every]
		rowF(fmt.Sprintf("machine rotate-key m2, m1 pinging m2 every %s", every), "s", r.rotate)
		rowF("  lost replies (a reply later than 1 s is lost)", " ", r.lost)
		rowF("  loss (lost × interval)", "s", r.loss)
		rowF("  slowest reply (the pause while the peers learn the key)", "s", r.pause)
		fmt.Fprintf(&out, "    loss / interval: %.1f; slowest reply / interval: %.2f\n", medianF(r.loss)/every.Seconds(), medianF(r.pause)/every.Seconds())
	}
	b.Log("\n" + strings.TrimRight(out.String(), "\n"))
}

func medianF(fs []float64) float64 {
	s := slices.Sorted(slices.Values(fs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
