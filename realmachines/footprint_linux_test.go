package realmachines

import (
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/internal/testbed"
)

// footprintEnv set to 1 runs the footprint step (bench/footprint.sh sets
// it).
const footprintEnv = "BUTTER_BENCH_FOOTPRINT"

// The footprint's scale, as the performance issue sets it: a machine in a
// cloud of 32, every network on every machine.
const (
	footprintPeers    = 31
	footprintNetworks = 10
	// footprintSettle is how long the daemon rests after an apply before
	// it is measured, and footprintWindow how long its CPU is counted.
	footprintSettle = 20 * time.Second
	footprintWindow = 10 * time.Second
	// footprintApplyWithin bounds an apply of the grown spec or back.
	footprintApplyWithin = 5 * time.Minute
)

// footprint measures the helper daemon at rest on a real machine with
// kernel WireGuard: first with the machine's own spec, then with it grown
// to footprintPeers peers and footprintNetworks networks (the machine's
// own peers and network stay in it, so it keeps working; the others are
// made up by testbed.GrowSpec), side by side in one run: its resident
// memory and its share of a core in a FIGURE line, each apply's time and
// the processes busiest meanwhile in the log. The own spec is applied
// again after, and the machine's peers are its own again.
func footprint(t *testing.T, parent *rig) {
	t.Run("idle footprint, kernel WireGuard", func(t *testing.T) {
		r := parent.with(t)
		m := r.machines[len(r.machines)-1]
		data := r.mustSh(m, "cat "+path.Join(helperapi.DefaultStateDir, "spec.json"))
		own, err := helperapi.ParseSpec([]byte(data))
		if err != nil {
			t.Fatalf("%s: the applied spec: %v", m.name, err)
		}
		grown, err := testbed.GrowSpec(own, footprintPeers, footprintNetworks, r.underlay)
		if err != nil {
			t.Fatal(err)
		}
		base := r.atRest(m)
		t.Logf("%s: at rest with its own spec (%d peers, %d networks): %s", m.name, len(own.Peers), len(own.Networks), base)

		rep := r.applyFile(m, "/tmp/footprint.json", grown)
		if rep.WireGuard.Userspace {
			t.Errorf("%s: the report says userspace WireGuard; Debian's kernel has it", m.name)
		}
		if n := len(facts(t, r, m).Peers); n != footprintPeers {
			t.Errorf("%s: the helper's facts list %d WireGuard peers, want %d", m.name, n, footprintPeers)
		}
		ports, want := testbed.TunnelPorts(grown, rep)
		if ports != want || len(rep.Networks) != footprintNetworks {
			t.Errorf("%s: %d networks with %d tunnel ports reported, want %d with %d", m.name, len(rep.Networks), ports, footprintNetworks, want)
		}
		at := r.atRest(m)
		later := r.atRest(m)
		t.Logf("FIGURE footprint: helper daemon at rest, kernel WireGuard, %d peers, %d networks (%d tunnel ports): %.1f MiB resident, %.2f%% then %.2f%% of a core; with its own spec %.1f MiB, %.2f%% (goal: 30 MiB)",
			footprintPeers, footprintNetworks, ports, at.rss, at.cpu, later.cpu, base.rss, base.cpu)

		r.applyFile(m, "/tmp/own.json", own)
		if n := len(facts(t, r, m).Peers); n != len(own.Peers) {
			t.Errorf("%s: after its own spec again, the helper's facts list %d WireGuard peers, want %d", m.name, n, len(own.Peers))
		}
	})
}

// rest is the helper daemon's resident memory (MiB) and CPU share (per
// cent of a core) over footprintWindow.
type rest struct{ rss, cpu float64 }

func (s rest) String() string {
	return fmt.Sprintf("%.1f MiB resident, %.2f%% of a core", s.rss, s.cpu)
}

// atRest waits footprintSettle, then measures the helper daemon on m.
func (r *rig) atRest(m *machine) rest {
	r.t.Helper()
	time.Sleep(footprintSettle)
	pid, err := r.helperPID(m)
	if err != nil {
		r.t.Fatal(err)
	}
	// VmRSS, then the process's user and system ticks (stat fields 14
	// and 15) before and after the window, and USER_HZ.
	line := fmt.Sprintf(`grep ^VmRSS: /proc/%[1]d/status; cut -d' ' -f14,15 /proc/%[1]d/stat; sleep %[2]d; cut -d' ' -f14,15 /proc/%[1]d/stat; getconf CLK_TCK`,
		pid, int(footprintWindow/time.Second))
	f := strings.Fields(r.mustSh(m, line))
	if len(f) != 8 || f[2] != "kB" {
		r.t.Fatalf("%s: odd /proc figures: %q", m.name, f)
	}
	n := make([]float64, 0, 6)
	for _, s := range []string{f[1], f[3], f[4], f[5], f[6], f[7]} {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			r.t.Fatalf("%s: odd /proc figures: %q", m.name, f)
		}
		n = append(n, v)
	}
	ticks, hz := (n[3]+n[4])-(n[1]+n[2]), n[5]
	return rest{rss: n[0] / 1024, cpu: 100 * ticks / hz / footprintWindow.Seconds()}
}

// applyFile writes spec to file on m and applies it with the installed
// helper, within footprintApplyWithin (a tunnel port for each peer in
// each network, on two TCG vCPUs, takes longer than the minute r.sh gives
// a line).
func (r *rig) applyFile(m *machine, file string, spec helperapi.Spec) helperapi.Report {
	r.t.Helper()
	b, err := json.Marshal(spec)
	if err != nil {
		r.t.Fatal(err)
	}
	r.mustSh(m, "cat > "+file+" <<'EOF'\n"+string(b)+"\nEOF")
	before := r.cpuTimes(m)
	start := time.Now()
	out, err := r.shWithin(m, helperCmd+"apply "+file, footprintApplyWithin)
	if err != nil {
		r.t.Fatal(err)
	}
	wall := time.Since(start)
	busiest := busiest(before, r.cpuTimes(m), 5)
	var rep helperapi.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		r.t.Fatalf("%s: helper apply: %v\n%s", m.name, err, out)
	}
	r.t.Logf("%s: %d peers and %d networks applied in %s, %d changes; CPU seconds taken meanwhile by the busiest processes: %s",
		m.name, len(spec.Peers), len(spec.Networks), wall.Round(100*time.Millisecond), len(rep.Changes), busiest)
	return rep
}

// cpuTimes is the CPU time every process on m has taken, in seconds, by
// "pid command".
func (r *rig) cpuTimes(m *machine) map[string]int {
	r.t.Helper()
	out := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(r.mustSh(m, "ps -e -o cputimes=,pid=,comm=")), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		if n, err := strconv.Atoi(f[0]); err == nil {
			out[strings.Join(f[1:], " ")] = n
		}
	}
	if len(out) == 0 {
		r.t.Fatalf("%s: ps listed no process", m.name)
	}
	return out
}

// busiest names the n processes that took the most CPU between two
// cpuTimes, with their seconds.
func busiest(before, after map[string]int, n int) string {
	type took struct {
		proc string
		s    int
	}
	var all []took
	for p, s := range after {
		if d := s - before[p]; d > 0 {
			all = append(all, took{p, d})
		}
	}
	slices.SortFunc(all, func(a, b took) int { return b.s - a.s })
	var parts []string
	for _, t := range all[:min(n, len(all))] {
		parts = append(parts, fmt.Sprintf("%s %d", t.proc, t.s))
	}
	return strings.Join(parts, ", ")
}
