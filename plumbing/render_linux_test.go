package plumbing

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/internal/testbed"
)

// sh runs a dry run's commands by hand, with sh, in the namespace of the
// calling thread (locked there by inFreshNetns).
func sh(t *testing.T, script string) {
	t.Helper()
	out, err := exec.Command("/bin/sh", "-ec", script).CombinedOutput()
	if err != nil {
		t.Fatalf("by hand: %v: %s\nscript:\n%s", err, out, script)
	}
}

// The dry run's commands, run by hand in a fresh network namespace, build
// what the executor builds: afterwards the kernel's links are what the
// plan wants (diff finds nothing to do), and the tables read back as the
// plan's. Then a second spec (a network gone, another's peers and MTU
// changed) is reached by hand the same way: sets, replaces and deletes.
func TestCommandsBuildThePlan(t *testing.T) {
	inFreshNetns(t)
	testbed.NeedPrograms(t, "ip", "bridge", "nft")
	ctx := context.Background()
	k, err := newKernelTable(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer k.close()
	// The mesh device: a TUN, as userspace WireGuard's (this kernel may
	// have no WireGuard); a kernel one is made by `ip link add … type
	// wireguard` instead, which TestChangeCommands covers.
	sh(t, "ip tuntap add btwg0 mode tun")
	byHand := func(spec helperapi.Spec) {
		t.Helper()
		p := makePlan(spec, machine{UplinkMTU: 1500})
		have, err := k.Links(ctx)
		if err != nil {
			t.Fatal(err)
		}
		haveBy := map[string]Link{}
		for _, l := range have {
			haveBy[l.Name] = l
		}
		var cmds []string
		for _, c := range diff(p.Links, have) {
			cmds = append(cmds, changeCommands(c, haveBy[c.Link.Name])...)
		}
		cmds = append(cmds, nftScript(makeFirewall(spec, p)), nftScript(gatewayFilter(p)), guardScript(guardFor(guardVMs(spec))))
		sh(t, strings.Join(cmds, "\n"))
		if have, err = k.Links(ctx); err != nil {
			t.Fatal(err)
		}
		if left := diff(p.Links, have); len(left) > 0 {
			t.Errorf("after the commands by hand, the executor would still do:\n%s\ncommands:\n%s", changesText(left), strings.Join(cmds, "\n"))
		}
		for _, tc := range []struct {
			name string
			t    nftTable
			want fwTable
		}{{"firewall", nftTable{}, makeFirewall(spec, p)}, {"gateway filter", nftTable{bridge: true}, gatewayFilter(p)}} {
			got, err := tc.t.Table(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if d := fwDiff(tc.want, got); len(d) > 0 {
				t.Errorf("%s written by hand reads back otherwise: %q", tc.name, d)
			}
		}
		guard := guardFor(guardVMs(spec))
		got, err := readGuard(guard)
		if err != nil {
			t.Fatal(err)
		}
		// One guard rule is written to the same effect, not expression
		// for expression (see nftGuardRule): the helper would rewrite it.
		d := slices.DeleteFunc(guardDiff(guard, got), func(s string) bool {
			return strings.Contains(s, "missing rule: iifname \"btvm4b5e57f6\" arp saddr ip != { 10.10.1.5, 0.0.0.0 } drop") ||
				strings.HasSuffix(s, "extra rule: unknown rule: not as the helper writes it (\"\")")
		})
		if len(d) > 0 {
			t.Errorf("guard written by hand reads back otherwise: %q", d)
		}
	}
	blue := helperapi.Network{Name: "blue", ID: 1, Tunnel: helperapi.TunnelVXLAN, Peers: []string{"m2", "m3"},
		Subnet: netip.MustParsePrefix("10.10.1.0/24"), Egress: true}
	red := helperapi.Network{Name: "red", ID: 7, Tunnel: helperapi.TunnelVXLAN, Peers: []string{"m3"},
		Subnet: netip.MustParsePrefix("10.10.7.0/24")}
	spec := testSpec(blue, red)
	spec.Desired = &helperapi.Desired{
		Machines: []helperapi.DesiredMachine{{Name: "m1", MeshIP: netip.MustParseAddr("10.99.0.1")}},
		VMs:      []helperapi.DesiredVM{{Name: "web", Machine: "m1", Network: "blue", Address: netip.MustParseAddr("10.10.1.5")}},
	}
	byHand(spec)

	blue.Peers = []string{"m3"}
	spec = testSpec(blue)
	spec.Mesh.MTU = 1400
	byHand(spec)
	if _, err := net.InterfaceByName(VXLANName(7)); err == nil {
		t.Errorf("red's VXLAN is still there")
	}
}

// Each rule shape, written by hand from its printed form, reads back as
// the rule: the words come in the order encodeRule writes the matches
// (nft keeps a rule's order), ports and TCP flags together included.
func TestPrintedRulesReadBack(t *testing.T) {
	inFreshNetns(t)
	testbed.NeedPrograms(t, "nft")
	want := fwTable{Chains: []fwChain{{Name: ChainInput, Hook: "input", Policy: VerdictAccept, Rules: []fwRule{
		{IIF: "btbr1", DAddr: netip.MustParseAddr("10.10.1.1"), Proto: "tcp", DPort: 22, ACK: true, Verdict: VerdictAccept},
		{IIF: "btbr1", Proto: "tcp", SPort: 53, ACK: true, Verdict: VerdictAccept},
	}}}}
	sh(t, nftScript(want))
	have, err := nftTable{}.Table(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if d := fwDiff(want, have); len(d) > 0 {
		t.Errorf("written by hand from %q, the table reads back otherwise: %q", want.Chains[0].Rules, d)
	}
}
