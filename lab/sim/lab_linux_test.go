package sim_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/butter-cloud/butter/internal/testbed"
	"github.com/butter-cloud/butter/lab/sim"
)

func upLab(t *testing.T, prefix string, cfg sim.Config) *sim.Lab {
	t.Helper()
	return testbed.NewLab(t, prefix, cfg)
}

func TestLabMachines(t *testing.T) {
	ctx := t.Context()
	l := upLab(t, "lm", sim.Config{Machines: 3})

	// Underlay: every machine reaches every other.
	for _, a := range l.Machines {
		for _, b := range l.Machines {
			if a == b {
				continue
			}
			if _, err := a.Run(ctx, "ping", "-c", "1", "-W", "2", b.Addr.Addr().String()); err != nil {
				t.Errorf("%s cannot ping %s on the underlay: %v", a.Name, b.Name, err)
			}
		}
	}

	// Each machine's sysfs shows its own links only.
	for _, m := range l.Machines {
		out, err := m.Run(ctx, "ls", "/sys/class/net")
		if err != nil {
			t.Fatal(err)
		}
		if got, want := strings.Fields(string(out)), []string{"eth0", "lo"}; strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s /sys/class/net = %v, want %v", m.Name, got, want)
		}
	}

	// Each machine has its own /run and /var/lib/butter, apart from the
	// host's and the other machines'.
	for _, m := range l.Machines {
		for _, dir := range []string{"/run", "/var/lib/butter"} {
			file := filepath.Join(dir, "lab-test-"+m.Name)
			if _, err := m.Run(ctx, "sh", "-c", "echo "+m.Name+" > "+file); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, m := range l.Machines {
		out, err := m.Run(ctx, "sh", "-c", "ls /run /var/lib/butter")
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range l.Machines {
			has := strings.Contains(string(out), "lab-test-"+o.Name)
			if has != (o == m) {
				t.Errorf("%s sees %s's files: %v (ls: %q)", m.Name, o.Name, has, out)
			}
		}
		if strings.Contains(string(out), "netns") {
			t.Errorf("%s's /run shows the host's netns folder: %q", m.Name, out)
		}
	}
	if matches, _ := filepath.Glob("/var/lib/butter/lab-test-*"); len(matches) > 0 {
		t.Errorf("the host sees machine files: %v", matches)
	}
	if matches, _ := filepath.Glob("/run/lab-test-*"); len(matches) > 0 {
		t.Errorf("the host sees machine files: %v", matches)
	}

	// No lab link in the root namespace.
	out, err := os.ReadDir("/sys/class/net")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range out {
		if e.Name() == sim.UnderlayBridge || strings.HasPrefix(e.Name(), "prb") {
			t.Errorf("lab link %s is in the root namespace", e.Name())
		}
	}
}

func TestLabProbes(t *testing.T) {
	ctx := t.Context()
	l := upLab(t, "lp", sim.Config{Machines: 2})
	m1, m2 := l.Machine("m1"), l.Machine("m2")

	// A bridge on each machine, joined over the underlay by a VXLAN, with
	// two probes on m1 and one on m2: a stand-in for the helper's chain.
	for _, m := range []*sim.Machine{m1, m2} {
		other := m2
		if m == m2 {
			other = m1
		}
		for _, args := range [][]string{
			{"link", "add", "x0", "mtu", "1450", "type", "bridge"},
			{"link", "add", "xv0", "type", "vxlan", "id", "7", "dstport", "4789", "local", m.Addr.Addr().String(), "remote", other.Addr.Addr().String(), "dev", "eth0"},
			{"link", "set", "xv0", "master", "x0", "up"},
			{"link", "set", "x0", "up"},
		} {
			if _, err := m.Run(ctx, "ip", args...); err != nil {
				t.Fatal(err)
			}
		}
	}
	p1, err := l.AddProbe(ctx, m1, "x0", netip.MustParsePrefix("10.1.0.1/24"), 1450)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := l.AddProbe(ctx, m1, "x0", netip.MustParsePrefix("10.1.0.2/24"), 1450)
	if err != nil {
		t.Fatal(err)
	}
	p3, err := l.AddProbe(ctx, m2, "x0", netip.MustParsePrefix("10.1.0.3/24"), 1450)
	if err != nil {
		t.Fatal(err)
	}
	for _, pair := range [][2]*sim.Probe{{p1, p2}, {p1, p3}, {p3, p2}} {
		if _, err := pair[0].Run(ctx, "ping", "-c", "1", "-W", "2", "-M", "do", "-s", "1422", pair[1].Addr.Addr().String()); err != nil {
			t.Errorf("probe %s cannot ping %s: %v", pair[0].Name, pair[1].Name, err)
		}
	}

	// After the bridge is made again, Attach plugs the probe back in.
	for _, args := range [][]string{
		{"link", "del", "x0"},
		{"link", "add", "x0", "mtu", "1450", "type", "bridge"},
		{"link", "set", "xv0", "master", "x0"},
		{"link", "set", "x0", "up"},
	} {
		if _, err := m2.Run(ctx, "ip", args...); err != nil {
			t.Fatal(err)
		}
	}
	if err := p3.Attach(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := p3.Run(ctx, "ping", "-c", "1", "-W", "2", p1.Addr.Addr().String()); err != nil {
		t.Errorf("after Attach, probe p3 cannot ping p1: %v", err)
	}
}

func TestLabProcess(t *testing.T) {
	ctx := t.Context()
	l := upLab(t, "lq", sim.Config{Machines: 1})
	m := l.Machine("m1")

	p, err := m.Start(ctx, nil, "sleep", "300")
	if err != nil {
		t.Fatal(err)
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p.PID()))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(comm)); got != "sleep" {
		t.Errorf("PID %d is %q, want the program itself (sleep)", p.PID(), got)
	}
	for _, ns := range []struct{ kind, file string }{{"net", filepath.Join(sim.NetnsDir, m.Netns())}, {"mnt", m.MountNS}} {
		a, err := os.Stat(fmt.Sprintf("/proc/%d/ns/%s", p.PID(), ns.kind))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.Stat(ns.file)
		if err != nil {
			t.Fatal(err)
		}
		if !os.SameFile(a, b) {
			t.Errorf("the process is not in %s's %s namespace", m.Name, ns.kind)
		}
	}

	q, err := p.Restart(ctx)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	default:
		t.Error("Restart left the old process running")
	}
	if q.PID() == p.PID() {
		t.Errorf("Restart kept PID %d", q.PID())
	}
	stopCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := q.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Start(ctx, nil, "/nonexistent/daemon"); err == nil {
		t.Error("Start of a missing program succeeded")
	}
	// One left running for Down to stop.
	if _, err := m.Start(ctx, nil, "sleep", "300"); err != nil {
		t.Fatal(err)
	}
}

func TestLabCleanAfterCrash(t *testing.T) {
	testbed.NeedLab(t)
	ctx := t.Context()
	name := testbed.ClaimLab(t, "lc")
	l, err := sim.Up(ctx, sim.Config{Name: name, Machines: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Clean(context.Background(), name) })
	if _, err := l.AddProbe(ctx, l.Machine("m1"), "nosuchbr", netip.MustParsePrefix("10.1.0.1/24"), 1500); err == nil {
		t.Error("AddProbe onto a missing bridge succeeded")
	}
	// A daemon that nobody stops, as after a crash of the test binary.
	if _, err := l.Machine("m2").Start(ctx, nil, "sleep", "300"); err != nil {
		t.Fatal(err)
	}
	if _, err := sim.Up(ctx, sim.Config{Name: name, Machines: 1}); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("Up over a live lab: %v, want an 'already exists' error", err)
	}

	if err := sim.Clean(ctx, name); err != nil {
		t.Fatalf("Clean: %v", err)
	}
	left, err := sim.Leftovers(name)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("after Clean, left: %v", left)
	}
	mountinfo, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if dir := filepath.Join(sim.StateRoot, name); slices.Contains(sim.MountPoints(string(mountinfo)), dir) {
		t.Errorf("after Clean, %s is still mounted", dir)
	}
	// Clean is tolerant of a lab that is already gone.
	if err := sim.Clean(ctx, name); err != nil {
		t.Errorf("second Clean: %v", err)
	}
}

func TestLabNAT(t *testing.T) {
	testbed.NeedPrograms(t, "iptables")
	ctx := t.Context()
	l := upLab(t, "ln", sim.Config{Machines: 1, NAT: 2})
	m1, m2, m3 := l.Machine("m1"), l.Machine("m2"), l.Machine("m3")
	if m2.Router == nil || m3.Router == nil || m1.Router != nil {
		t.Fatalf("routers: m1 %v, m2 %v, m3 %v; want m2 and m3 behind NAT", m1.Router, m2.Router, m3.Router)
	}
	if got, want := m2.Addr.String(), "192.168.100.2/24"; got != want {
		t.Errorf("m2 address %s, want %s", got, want)
	}
	// Out through the router: m1 has no route to the LAN, so its replies
	// reach m2 only because the router masqueraded m2's address.
	if _, err := m2.Run(ctx, "ping", "-n", "-c", "1", "-W", "2", m1.Addr.Addr().String()); err != nil {
		t.Errorf("m2 behind NAT cannot reach m1: %v", err)
	}
	// On the LAN, neighbours reach each other directly.
	if _, err := m2.Run(ctx, "ping", "-n", "-c", "1", "-W", "2", m3.Addr.Addr().String()); err != nil {
		t.Errorf("m2 cannot reach its LAN neighbour m3: %v", err)
	}
	// In from the underlay: nothing reaches the LAN.
	if _, err := m1.Run(ctx, "ping", "-n", "-c", "1", "-W", "1", m2.Addr.Addr().String()); err == nil {
		t.Errorf("m1 reaches m2's LAN address through the NAT")
	}
	out, err := l.Router.Run(ctx, "iptables", "-t", "nat", "-S", "POSTROUTING")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "MASQUERADE") {
		t.Errorf("router has no masquerade rule:\n%s", out)
	}
}
