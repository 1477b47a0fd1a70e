package bench

import (
	"context"
	"strings"
	"testing"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/lab/sim"
	"github.com/butter-cloud/butter/plumbing"
	"github.com/google/nftables"
)

// guardProbes makes the chain lab's two probes VMs of the desired state
// (p1 on m1, p2 on m2), so every frame they send crosses its machine's
// port guard: each machine's spec gets the desired state, each probe's
// port the VM's tap name and its eth0 the VM's MAC, as libvirt would make
// them.
func guardProbes(b *testing.B, ctx context.Context, c chainLab) {
	b.Helper()
	d := &helperapi.Desired{}
	for _, m := range c.lab.Machines {
		d.Machines = append(d.Machines, helperapi.DesiredMachine{Name: m.Name, MeshIP: c.helpers.Specs[m.Name].Mesh.Address.Addr()})
	}
	probes := []*sim.Probe{c.p1, c.p2}
	for i, p := range probes {
		d.VMs = append(d.VMs, helperapi.DesiredVM{Name: vmName(i), Machine: p.Machine.Name, Network: c.net.Name, Address: p.Addr.Addr()})
	}
	for _, m := range c.lab.Machines {
		spec := c.helpers.Specs[m.Name]
		spec.Desired = d
		if _, err := c.butter.Apply(ctx, m, spec); err != nil {
			b.Fatal(err)
		}
		c.helpers.Specs[m.Name] = spec
	}
	for i, p := range probes {
		port := helperapi.VMPort(vmName(i))
		for _, args := range [][]string{{"link", "set", p.Port, "down"}, {"link", "set", p.Port, "name", port}, {"link", "set", port, "up"}} {
			if out, err := p.Machine.Run(ctx, "/usr/sbin/ip", args...); err != nil {
				b.Fatalf("%s: ip %s: %v: %s", p.Machine.Name, strings.Join(args, " "), err, out)
			}
		}
		p.Port = port
		if out, err := p.Run(ctx, "/usr/sbin/ip", "link", "set", "eth0", "address", helperapi.VMMAC(p.Addr.Addr()).String()); err != nil {
			b.Fatalf("%s: set the VM's MAC: %v: %s", p.Name, err, out)
		}
	}
	for _, p := range probes {
		_, _ = p.Run(ctx, "/usr/sbin/ip", "neigh", "flush", "dev", "eth0")
	}
}

func vmName(i int) string { return []string{"bench-a", "bench-b"}[i] }

// guardTable is the helper's port guard (bridge family): deleteButterTable
// takes it away with the others.
var guardTable = &nftables.Table{Name: plumbing.GuardTable, Family: nftables.TableFamilyBridge}
