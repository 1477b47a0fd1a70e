package plumbing_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/lab/sim"
	"github.com/butter-cloud/butter/plumbing"
	"github.com/google/nftables"
)

// The gateway and the port guard on the firewall lab: blue's probe on m1
// stands in for a VM.

// gateways puts each network's gateway address on m1's bridge unless it is
// there already (the distributed gateway puts it there), and takes away
// at the end of the test the ones it put.
func (f *fwLab) gateways(t *testing.T, ctx context.Context) map[int]netip.Addr {
	t.Helper()
	m1 := f.m(0)
	out := map[int]netip.Addr{}
	for _, n := range firewallNetworks {
		gw := helperapi.GatewayAddr(n.Subnet)
		out[n.ID] = gw
		br := plumbing.BridgeName(n.ID)
		have, err := m1.Run(ctx, ipBin, "-4", "-o", "addr", "show", "dev", br)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(have), " "+gw.String()+"/") {
			continue
		}
		a := netip.PrefixFrom(gw, n.Subnet.Bits()).String()
		if out, err := m1.Run(ctx, ipBin, "addr", "add", a, "dev", br); err != nil {
			t.Fatalf("%s: add %s to %s: %v: %s", m1.Name, a, br, err, out)
		}
		t.Cleanup(func() { _, _ = m1.Run(context.WithoutCancel(ctx), ipBin, "addr", "del", a, "dev", br) })
	}
	return out
}

// testGateway: from blue's probe on m1, blue's gateway answers ICMP and
// DNS (TCP 53 refused: an answer), and nothing else of m1's does: port
// 22 (sshd's) on the gateway, red's gateway, m1's mesh and public
// addresses. Without the helper's table every one of them answers (the
// control).
func (f *fwLab) testGateway(t *testing.T, ctx context.Context) {
	m1, p := f.m(0), f.blue[0]
	gw := f.gateways(t, ctx)
	for _, n := range firewallNetworks {
		listenOn(t, m1, netip.AddrPortFrom(gw[n.ID], sim.SSHPort).String())
	}
	listenOn(t, m1, "0.0.0.0:7778")
	// The probe routes everything through its gateway, as a VM does.
	for _, dst := range []string{"10.10.2.0/24", "10.99.0.0/16", m1.Addr.Addr().String()} {
		if out, err := p.Run(ctx, ipBin, "route", "replace", dst, "via", gw[1].String()); err != nil {
			t.Fatalf("%s: route %s via %s: %v: %s", p.Name, dst, gw[1], err, out)
		}
	}
	t.Cleanup(func() {
		_, _ = p.Run(context.WithoutCancel(ctx), ipBin, "route", "flush", "table", "main", "via", gw[1].String())
	})

	type target struct {
		what string
		tcp  string     // a TCP address to connect to, or
		ping netip.Addr // an address to ping
		open bool       // answers with the firewall on
	}
	targets := []target{
		{what: "ping blue's gateway", ping: gw[1], open: true},
		{what: "DNS (TCP 53) at blue's gateway", tcp: netip.AddrPortFrom(gw[1], 53).String(), open: true},
		{what: "port 22 (sshd) at blue's gateway", tcp: netip.AddrPortFrom(gw[1], sim.SSHPort).String()},
		{what: "a host service at blue's gateway", tcp: netip.AddrPortFrom(gw[1], 7778).String()},
		{what: "ping red's gateway", ping: gw[2]},
		{what: "port 22 at red's gateway", tcp: netip.AddrPortFrom(gw[2], sim.SSHPort).String()},
		{what: "ping m1's mesh address", ping: f.meshIP(0)},
		{what: "a host service at m1's mesh address", tcp: netip.AddrPortFrom(f.meshIP(0), 7778).String()},
		{what: "a host service at m1's public address", tcp: netip.AddrPortFrom(m1.Addr.Addr(), 7778).String()},
	}
	check := func(firewall bool) {
		t.Helper()
		var wg sync.WaitGroup
		for _, tg := range targets {
			wg.Go(func() {
				var got bool
				var how string
				if tg.tcp != "" {
					got, how = answers(ctx, p, tg.tcp)
				} else {
					err := waitPing(ctx, p, tg.ping, 2*time.Second)
					got, how = err == nil, fmt.Sprint(err)
				}
				want := tg.open || !firewall
				t.Logf("firewall=%v: probe %s: %s: answered=%v (%s)", firewall, p.Name, tg.what, got, how)
				switch {
				case got != want && firewall:
					t.Errorf("with the firewall: %s: answered=%v, want %v", tg.what, got, want)
				case got != want:
					t.Errorf("control: without the firewall: %s: no answer; the check proves nothing", tg.what)
				}
			})
		}
		wg.Wait()
	}
	check(true)
	f.withoutFirewall(t, ctx, m1, func() { check(false) })
	check(true)
}

// vmName is the VM blue's probe on m1 stands in for.
const vmName = "web"

// asVM makes blue's probe on m1 a VM of the desired state: m1's spec
// gets a desired state with the VM on m1's blue bridge at the probe's
// address; the probe's port takes the VM's tap name and its eth0 the
// VM's MAC, as libvirt would make them.
func (f *fwLab) asVM(t *testing.T, ctx context.Context) {
	t.Helper()
	m1, p := f.m(0), f.blue[0]
	spec := f.helpers.Specs[m1.Name]
	spec.Desired = &helperapi.Desired{
		Machines: []helperapi.DesiredMachine{{Name: m1.Name, MeshIP: f.meshIP(0)}},
		VMs:      []helperapi.DesiredVM{{Name: vmName, Machine: m1.Name, Network: "blue", Address: p.Addr.Addr()}},
	}
	rep, err := f.butter.Apply(ctx, m1, spec)
	if err != nil {
		t.Fatal(err)
	}
	f.helpers.Specs[m1.Name] = spec
	t.Logf("%s: apply with the VM changed %q", m1.Name, rep.Changes)
	port := helperapi.VMPort(vmName)
	for _, args := range [][]string{{"link", "set", p.Port, "down"}, {"link", "set", p.Port, "name", port}, {"link", "set", port, "up"}} {
		if out, err := m1.Run(ctx, ipBin, args...); err != nil {
			t.Fatalf("%s: ip %s: %v: %s", m1.Name, strings.Join(args, " "), err, out)
		}
	}
	p.Port = port
	f.setMAC(t, ctx, helperapi.VMMAC(p.Addr.Addr()).String())
}

// setMAC gives blue's probe on m1 another MAC and flushes the neighbour
// caches of the probes it talks to, so no stale entry hides a drop.
func (f *fwLab) setMAC(t *testing.T, ctx context.Context, mac string) {
	t.Helper()
	p := f.blue[0]
	if out, err := p.Run(ctx, ipBin, "link", "set", "eth0", "address", mac); err != nil {
		t.Fatalf("%s: set MAC %s: %v: %s", p.Name, mac, err, out)
	}
	for _, q := range f.blue {
		_, _ = q.Run(ctx, ipBin, "neigh", "flush", "dev", "eth0")
	}
}

// testGuard: the VM stand-in reaches blue's probe on m2 with its own MAC
// and address (the positive control); with a spoofed source address, or
// a spoofed MAC, it does not, unless m1's guard table is deleted by hand
// (the negative control). A guard rule deleted by hand is drift and
// comes back.
func (f *fwLab) testGuard(t *testing.T, ctx context.Context) {
	m1, p, q := f.m(0), f.blue[0], f.blue[1]
	f.asVM(t, ctx)
	realMAC := helperapi.VMMAC(p.Addr.Addr()).String()
	spoofIP := netip.MustParseAddr("10.10.1.66")
	if out, err := p.Run(ctx, ipBin, "addr", "add", netip.PrefixFrom(spoofIP, 24).String(), "dev", "eth0"); err != nil {
		t.Fatalf("%s: add %s: %v: %s", p.Name, spoofIP, err, out)
	}
	defer func() {
		_, _ = p.Run(context.WithoutCancel(ctx), ipBin, "addr", "del", netip.PrefixFrom(spoofIP, 24).String(), "dev", "eth0")
	}()
	reach := func(mac string, args ...string) error {
		f.setMAC(t, ctx, mac)
		return waitPing(ctx, p, q.Addr.Addr(), 3*time.Second, args...)
	}
	type try struct {
		what  string
		mac   string
		args  []string
		guard bool // passes the guard
	}
	tries := []try{
		{"its own MAC and address", realMAC, nil, true},
		{"a spoofed source address " + spoofIP.String(), realMAC, []string{"-I", spoofIP.String()}, false},
		{"a spoofed MAC 52:54:00:0a:01:66", "52:54:00:0a:01:66", nil, false},
	}
	check := func(guard bool) {
		t.Helper()
		for _, tr := range tries {
			err := reach(tr.mac, tr.args...)
			t.Logf("guard=%v: %s -> %s with %s: %v", guard, p.Name, q.Name, tr.what, err)
			switch want := tr.guard || !guard; {
			case (err == nil) != want && guard:
				t.Errorf("with the guard: %s reaching %s with %s: reply=%v, want %v", p.Name, q.Name, tr.what, err == nil, want)
			case (err == nil) != want:
				t.Errorf("control: without the guard %s cannot reach %s with %s (%v); the check proves nothing", p.Name, q.Name, tr.what, err)
			}
		}
		f.setMAC(t, ctx, realMAC)
	}
	check(true)
	deleteTable(t, m1, guardBridgeTable)
	check(false)
	rep, err := f.butter.Apply(ctx, m1, f.helpers.Specs[m1.Name])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(rep.Changes, "\n"), "guard: table bridge butter-guard missing") {
		t.Errorf("%s: apply after the guard was deleted changed %q, want the guard written", m1.Name, rep.Changes)
	}
	check(true)

	rule := deleteRuleOf(t, m1, guardBridgeTable, plumbing.ChainGuard, 1)
	f.driftOn(t, ctx, m1, "guard", "ports: missing rule: "+rule)
	check(true)
}

var guardBridgeTable = &nftables.Table{Name: plumbing.GuardTable, Family: nftables.TableFamilyBridge}

// testPortsIPv6 checks that the probes' ports, plugged into the bridges
// after the daemon started, have IPv6 off with no apply since. The lab
// turns IPv6 off machine-wide (all and default disable_ipv6), so the sign
// of the daemon's watch is accept_ra: 0 on the ports, while the machine's
// eth0, no bridge's port, keeps the kernel's 1 (the control: the check
// reads a setting the helper did not change everywhere).
func (f *fwLab) testPortsIPv6(t *testing.T, ctx context.Context) {
	for _, m := range f.lab.Machines {
		if out, err := m.Run(ctx, "/bin/cat", "/proc/sys/net/ipv6/conf/eth0/accept_ra"); err != nil || strings.TrimSpace(string(out)) != "1" {
			t.Errorf("control: %s: eth0 has accept_ra %q (err %v), want the kernel's 1: the check cannot tell the watch's work", m.Name, out, err)
		}
	}
	for _, p := range append(append([]*sim.Probe{}, f.blue...), f.red...) {
		m := p.Machine
		out, err := m.Run(ctx, "/bin/cat", "/proc/sys/net/ipv6/conf/"+p.Port+"/disable_ipv6", "/proc/sys/net/ipv6/conf/"+p.Port+"/accept_ra")
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Fields(string(out)); len(got) != 2 || got[0] != "1" || got[1] != "0" {
			t.Errorf("%s: port %s of %s has disable_ipv6, accept_ra = %v, want 1 0", m.Name, p.Port, p.Bridge, got)
		}
		if out, err := m.Run(ctx, ipBin, "-6", "-o", "addr", "show", "dev", p.Port); err != nil || len(strings.TrimSpace(string(out))) != 0 {
			t.Errorf("%s: port %s has IPv6 addresses %q (err %v)", m.Name, p.Port, out, err)
		}
	}
}
