package realmachines

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/internal/testbed"
)

// The probes: a network namespace on each machine with one veth into the
// network's bridge, made at every boot by a unit the test installs (as a
// VM's domain autostarts), so that traffic across can be watched across
// reboots. Nested TCG (a VM inside these TCG guests) boots far too slowly
// on two shared cores for a test, so no VM carries the traffic.
const (
	probeNetns = "probe"
	probeUnit  = "lab-probe.service"
)

// probeAddr is machine i's probe address in the network's subnet: from
// the top, away from the gateway (the first host) and VMs (from the
// bottom).
func probeAddr(subnet netip.Prefix, i int) netip.Prefix {
	a := subnet.Masked().Addr()
	for range 250 + i {
		a = a.Next()
	}
	return netip.PrefixFrom(a, subnet.Bits())
}

// probeMAC is the probe's fixed MAC, made from its address: like a VM's,
// it stays the same across a reboot or a power loss, so the other probes'
// neighbour entries for it stay right (a veth's random MAC would leave
// them stale for seconds after the machine comes back).
func probeMAC(addr netip.Prefix) string {
	a := addr.Addr().As4()
	return fmt.Sprintf("02:b7:%02x:%02x:%02x:%02x", a[0], a[1], a[2], a[3])
}

// probeScript waits for the bridge and attaches the probe namespace to it
// at the bridge's MTU; it starts over from nothing each time.
func probeScript(bridge string, addr netip.Prefix) string {
	return fmt.Sprintf(`#!/bin/sh
ip netns del %[1]s 2>/dev/null; ip link del prb0 2>/dev/null
i=0; until [ -e /sys/class/net/%[2]s ]; do i=$((i+1)); [ $i -gt 600 ] && exit 1; sleep 0.5; done
mtu=$(cat /sys/class/net/%[2]s/mtu)
ip netns add %[1]s
ip link add prb0 mtu $mtu type veth peer name pr0 mtu $mtu
ip link set pr0 netns %[1]s
ip -n %[1]s link set pr0 address %[4]s
ip link set prb0 master %[2]s up
ip -n %[1]s link set lo up
ip -n %[1]s addr add %[3]s dev pr0
ip -n %[1]s link set pr0 up
`, probeNetns, bridge, addr, probeMAC(addr))
}

// installProbe installs and starts the probe unit on m.
func (r *rig) installProbe(m *machine, bridge string, addr netip.Prefix) {
	r.t.Helper()
	unit := `[Unit]
Description=lab probe on ` + bridge + `
After=` + "butter-helper.service" + `
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh /usr/local/sbin/lab-probe
[Install]
WantedBy=multi-user.target
`
	r.mustSh(m, fmt.Sprintf(`cat > /usr/local/sbin/lab-probe <<'EOF'
%sEOF
cat > /etc/systemd/system/%s <<'EOF'
%sEOF
systemctl daemon-reload && systemctl enable %s && systemctl restart %s`, probeScript(bridge, addr), probeUnit, unit, probeUnit, probeUnit))
}

// ping pings to from m's probe: count packets of size bytes of payload
// with DF set, and returns how many came back.
func (r *rig) ping(m *machine, to netip.Addr, count, size int) (int, error) {
	out, err := r.sh(m, fmt.Sprintf("ip netns exec %s ping -n -q -M do -c %d -i 0.2 -W 2 -s %d %s; true", probeNetns, count, size, to))
	if err != nil {
		return 0, err
	}
	var sent, recv int
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "packets transmitted") {
			fmt.Sscanf(l, "%d packets transmitted, %d received", &sent, &recv)
		}
	}
	if sent != count {
		return 0, fmt.Errorf("%s: ping to %s: %q", m.name, to, out)
	}
	return recv, nil
}

// network is one network as the machines report it.
type network struct {
	helperapi.NetworkReport
	subnet netip.Prefix
}

// createNetwork runs `butter network create name` (tunnel auto) across
// every machine and checks, on each, the chain against its facts and the
// kernel's links.
func (r *rig) createNetwork(name string, subnet netip.Prefix) network {
	r.t.Helper()
	start := time.Now()
	r.must("network", "create", name, "--subnet", subnet.String(), "--wait")
	r.t.Logf("network %s created across %d machines in %s", name, len(r.machines), time.Since(start).Round(100*time.Millisecond))
	var nw network
	for _, m := range r.machines {
		nw = r.checkChain(m, name, len(r.machines)-1)
	}
	nw.subnet = subnet
	return nw
}

// checkChain checks network name on m: the helper's report and the
// kernel's links match what m's facts call for with tunnel auto (gretap
// on Debian's kernel, one port per peer, the WireGuard MTU less 42).
func (r *rig) checkChain(m *machine, name string, peers int) network {
	r.t.Helper()
	f := facts(r.t, r, m)
	var nw network
	for _, n := range f.Networks {
		if n.Name == name {
			nw.NetworkReport = n
		}
	}
	if nw.Name == "" {
		r.t.Fatalf("%s: facts show no network %s: %+v", m.name, name, f.Networks)
	}
	gretap, err := testbed.KernelGretap(r.ctx, r.runner(m), "/usr/sbin/ip")
	if err != nil {
		r.t.Fatal(err)
	}
	if gretap != f.Gretap {
		r.t.Errorf("%s: facts say gretap=%v, the kernel says %v", m.name, f.Gretap, gretap)
	}
	cf, err := testbed.FactsForChain(f, 0)
	if err != nil {
		r.t.Fatalf("%s: %v", m.name, err)
	}
	kind, mtu, ports := testbed.ExpectedChain(cf, helperapi.TunnelAuto, peers)
	if kind != helperapi.TunnelGretap {
		r.t.Errorf("%s: auto picks %s from its facts %+v; Debian's kernel has gretap", m.name, kind, cf)
	}
	if nw.Tunnel != kind || nw.MTU != mtu || len(nw.Ports) != ports {
		r.t.Errorf("%s: network %s reported as %s MTU %d ports %v; want %s MTU %d, %d ports", m.name, name, nw.Tunnel, nw.MTU, nw.Ports, kind, mtu, ports)
	}
	links, n, err := testbed.BridgePorts(r.ctx, r.runner(m), "/usr/sbin/ip", nw.Bridge, kind, mtu)
	if err != nil {
		r.t.Fatal(err)
	}
	if n != ports {
		r.t.Errorf("%s: %s has ports %+v; want %d %s at MTU %d", m.name, nw.Bridge, links, ports, kind, mtu)
	}
	return nw
}

// runner runs a program on m over SSH, for testbed's probes.
func (r *rig) runner(m *machine) testbed.Runner {
	return func(ctx context.Context, name string, args ...string) ([]byte, error) {
		line := name
		for _, a := range args {
			line += " '" + a + "'"
		}
		c, err := r.ssh(m, bootWithin)
		if err != nil {
			return nil, err
		}
		s, err := c.NewSession()
		if err != nil {
			return nil, err
		}
		defer s.Close()
		var stdout, stderr bytes.Buffer
		s.Stdout, s.Stderr = &stdout, &stderr
		if err := s.Run(line); err != nil {
			return stdout.Bytes(), fmt.Errorf("on %s: %s: %v: %s", m.name, line, err, stderr.String())
		}
		return stdout.Bytes(), nil
	}
}

// reachWithin bounds how long a pair of probes may take to answer.
const reachWithin = 20 * time.Second

// reachAll checks that every probe reaches every other with a full-size
// DF packet (the network's MTU less 28: IPv4 and ICMP headers); a pair
// that needed more than one try is logged.
func (r *rig) reachAll(nw network) {
	r.t.Helper()
	size := nw.MTU - 28
	for i, m := range r.machines {
		for j := range r.machines {
			if i == j {
				continue
			}
			to := probeAddr(nw.subnet, j).Addr()
			// A machine just back from a power loss may still be
			// settling (its port watch, its guard): a pair gets
			// reachWithin, and a retry is logged, never hidden.
			var got, tries int
			start := time.Now()
			for deadline := start.Add(reachWithin); ; time.Sleep(time.Second) {
				var err error
				tries++
				if got, err = r.ping(m, to, 3, size); err != nil {
					r.t.Fatal(err)
				}
				if got > 0 || time.Now().After(deadline) {
					break
				}
			}
			if tries > 1 {
				r.t.Logf("%s's probe: %d answers from %s after %d tries in %s", m.name, got, to, tries, time.Since(start).Round(100*time.Millisecond))
			}
			if got == 0 {
				r.t.Errorf("%s's probe: no answer from %s (%s) with %d bytes and DF", m.name, r.machines[j].name, to, size)
			}
		}
	}
	// The control: an address no probe has gets no answer, so an answer
	// above came from the probe asked.
	none := probeAddr(nw.subnet, -1).Addr()
	if got, err := r.ping(r.machines[0], none, 2, 56); err != nil || got != 0 {
		r.t.Errorf("%s's probe: %d answers from %s, which no probe has (%v)", r.machines[0].name, got, none, err)
	}
}
