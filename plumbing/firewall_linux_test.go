package plumbing

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/internal/testbed"
	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// inFreshNetns runs the rest of the test on this goroutine's thread inside
// a new, empty network namespace; the thread goes back to the test's own
// namespace at the end (or, if it cannot, dies with the goroutine).
func inFreshNetns(t testing.TB) {
	t.Helper()
	testbed.NeedRoot(t)
	runtime.LockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		self.Close()
		t.Fatalf("new network namespace: %v", err)
	}
	t.Cleanup(func() {
		defer self.Close()
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err == nil {
			runtime.UnlockOSThread()
		}
	})
}

// writeReadBack writes want into k's table and checks that it reads back
// as written and that a second write changes nothing; it returns what the
// first write changed.
func writeReadBack(t *testing.T, ctx context.Context, k nftTable, want fwTable) []string {
	t.Helper()
	changes, err := convergeFirewall(ctx, k, want)
	if err != nil {
		t.Fatal(err)
	}
	have, err := k.Table(ctx)
	if err != nil || have == nil {
		t.Fatalf("read back: %v, %v", have, err)
	}
	if diff := cmp.Diff(want.String(), have.String()); diff != "" {
		t.Errorf("the table reads back otherwise (-written +read):\n%s", diff)
	}
	if changes, err := convergeFirewall(ctx, k, want); err != nil || len(changes) != 0 {
		t.Errorf("a second write changed %q (err %v), want nothing", changes, err)
	}
	return changes
}

// foreignTables makes tables of another program: one in inet with another
// name, and one named as the helper's in the ip family.
func foreignTables(t *testing.T) {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range []*nftables.Table{
		{Name: "filter", Family: nftables.TableFamilyINet},
		{Name: FirewallTable, Family: nftables.TableFamilyIPv4},
	} {
		c.AddTable(tb)
		ch := c.AddChain(&nftables.Chain{Name: "input", Table: tb, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter})
		c.AddRule(&nftables.Rule{Table: tb, Chain: ch, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
			&expr.Counter{},
			&expr.Verdict{Kind: expr.VerdictAccept},
		}})
	}
	if err := c.Flush(); err != nil {
		t.Fatalf("make foreign tables: %v", err)
	}
}

// ruleset describes every table, chain and rule of the namespace, for
// comparing before and after.
func ruleset(t *testing.T) string {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	rs, err := testbed.Ruleset(c)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// everyRule is a plan with a rule of every shape the helper writes.
var everyRule = firewallFor(fwInput{Relay: true, Networks: []fwNetwork{
	{Bridge: "btbr1", Tunnel: KindVXLAN, Key: 1, Port: VXLANPort, Gateway: netip.MustParseAddr("10.10.1.1"),
		Peers: []netip.Addr{netip.MustParseAddr("10.99.0.2"), netip.MustParseAddr("10.99.0.3")}},
	{Bridge: "btbr300", Tunnel: KindGretap, Key: 300, Peers: []netip.Addr{netip.MustParseAddr("10.99.0.3")}},
}})

// TestFirewallKernel writes the firewall into a fresh network namespace's
// nf_tables and reads it back: every rule the helper writes reads back as
// itself, a rule deleted or added by hand is drift and is put right, and
// nothing the helper does touches another table, even one of the same
// name in another family.
func TestFirewallKernel(t *testing.T) {
	inFreshNetns(t)
	ctx := context.Background()
	foreignTables(t)
	before := ruleset(t)
	k := nftTable{}

	changes := writeReadBack(t, ctx, k, everyRule)
	if diff := cmp.Diff([]string{"firewall: table inet butter missing"}, changes); diff != "" {
		t.Errorf("first write (-want +got):\n%s", diff)
	}

	// Damage by hand, as nft would: delete a rule, add one of another
	// program's kind. (The library cannot make a table dormant.)
	c, input, rules := chainRules(t, butterTable, ChainInput)
	if err := c.DelRule(rules[2]); err != nil {
		t.Fatal(err)
	}
	c.AddRule(&nftables.Rule{Table: butterTable, Chain: input, Exprs: []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictAccept}}})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	have, err := k.Table(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"input: missing rule: " + everyRule.Chains[0].Rules[2].String(),
		"input: extra rule: unknown rule: not as the helper writes it (counter, verdict)",
	}
	if diff := cmp.Diff(want, fwDiff(everyRule, have)); diff != "" {
		t.Errorf("drift after damage (-want +got):\n%s", diff)
	}
	if _, err := convergeFirewall(ctx, k, everyRule); err != nil {
		t.Fatal(err)
	}
	if have, err := k.Table(ctx); err != nil || len(fwDiff(everyRule, have)) != 0 {
		t.Errorf("after the repair: %v (err %v)", fwDiff(everyRule, have), err)
	}

	if err := k.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if err := k.Delete(ctx); err != nil {
		t.Errorf("deleting a table already gone: %v", err)
	}
	if have, err := k.Table(ctx); err != nil || have != nil {
		t.Errorf("after delete the table reads %v (err %v), want none", have, err)
	}
	if after := ruleset(t); after != before {
		t.Errorf("other tables changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// Rules the helper never writes, read from the kernel, are never taken
// for one of its own.
func TestDecodeForeignRules(t *testing.T) {
	ip := []byte{10, 99, 0, 2}
	tests := []struct {
		name  string
		exprs []expr.Any
	}{
		{"jump", []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: "x"}}},
		{"counter", []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}}},
		{"no verdict", []expr.Any{&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1}, &expr.Cmp{Register: 1, Data: ifname("btwg0")}}},
		{"address without the family", []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offSAddr, Len: 4},
			&expr.Cmp{Register: 1, Data: ip}, &expr.Verdict{Kind: expr.VerdictDrop}}},
		{"port without its protocol", []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: offDPort, Len: 2},
			&expr.Cmp{Register: 1, Data: []byte{0x12, 0xb5}}, &expr.Verdict{Kind: expr.VerdictDrop}}},
		{"less than", []expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpLt, Register: 1, Data: []byte{17}}, &expr.Verdict{Kind: expr.VerdictDrop}}},
		{"two interfaces", []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1}, &expr.Cmp{Register: 1, Data: ifname("a")},
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1}, &expr.Cmp{Register: 1, Data: ifname("b")},
			&expr.Verdict{Kind: expr.VerdictDrop}}},
	}
	for _, tt := range tests {
		if r := decodeRule(tt.exprs); r.Unknown == "" {
			t.Errorf("%s: decoded as %s", tt.name, r)
		}
	}
	for _, c := range everyRule.Chains {
		for _, r := range c.Rules {
			exprs, err := encodeRule(r)
			if err != nil {
				t.Fatal(err)
			}
			if got := decodeRule(exprs); got.String() != r.String() {
				t.Errorf("%s decodes as %s", r, got)
			}
		}
	}
}

// IPv6 is turned off on the helper's links and reads back off; the link
// keeps no IPv6 address, link-local included.
func TestIPv6OffKernel(t *testing.T) {
	inFreshNetns(t)
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "btbr1"}}
	if err := h.LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(br); err != nil {
		t.Fatal(err)
	}
	links := []string{"btbr1", "btbr2"} // btbr2 does not exist: skipped
	drift, err := ipv6Drift(links)
	if err != nil {
		t.Fatal(err)
	}
	if len(drift) == 0 {
		t.Fatalf("a new bridge has IPv6 off already: the check proves nothing")
	}
	changes, err := setIPv6Off(links)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"set btbr1 ipv6 disable_ipv6 1", "set btbr1 ipv6 accept_ra 0"}
	if diff := cmp.Diff(want, changes); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
	if drift, err := ipv6Drift(links); err != nil || len(drift) != 0 {
		t.Errorf("after setting: drift %v (err %v)", drift, err)
	}
	if changes, err := setIPv6Off(links); err != nil || len(changes) != 0 {
		t.Errorf("setting again changed %q (err %v)", changes, err)
	}
	addrs, err := h.AddrList(br, netlink.FAMILY_V6)
	if err != nil {
		t.Fatal(err)
	}
	if len(addrs) != 0 {
		t.Errorf("btbr1 keeps IPv6 addresses %v", addrs)
	}
}

// TestFirewallGRE checks the gretap rules against packets, in three fresh
// namespaces: a machine with the firewall of a gretap network (key 7,
// member 10.99.0.2), that member on the other end of a veth named btwg0,
// and an outsider on the machine's eth0. The namespace tier cannot: its
// kernel makes no gretap, so no lab network rides on GRE. That kernel
// also has no GRE handler, which answers every GRE packet it takes in
// with ICMP protocol unreachable: the sign that a packet got past the
// firewall. The member's packets with its network's key must get that
// answer; with another key, or spoofed by the outsider, none, unless the
// table is deleted (the negative control).
func TestFirewallGRE(t *testing.T) {
	inFreshNetns(t)
	ctx := context.Background()
	machine, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer machine.Close()
	member, err := netns.New()
	if err != nil {
		t.Fatal(err)
	}
	defer member.Close()
	outsider, err := netns.New()
	if err != nil {
		t.Fatal(err)
	}
	defer outsider.Close()
	if err := netns.Set(machine); err != nil {
		t.Fatal(err)
	}
	hm, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer hm.Close()
	probe := &netlink.Gretap{LinkAttrs: netlink.LinkAttrs{Name: "btprobe-gt"}, Local: []byte{127, 0, 0, 1}, Remote: []byte{127, 0, 0, 2}}
	if hm.LinkAdd(probe) == nil {
		_ = hm.LinkDel(probe)
		testbed.Applies(t, false, "this kernel has GRE, so it does not answer stray GRE with protocol unreachable, the sign this test reads")
	}

	link := func(h *netlink.Handle, name, addr string, up bool) {
		t.Helper()
		l, err := h.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		if addr != "" {
			a, _ := netlink.ParseAddr(addr)
			if err := h.AddrAdd(l, a); err != nil {
				t.Fatal(err)
			}
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	peerIn := func(name, peer string, ns netns.NsHandle) *netlink.Handle {
		t.Helper()
		if err := hm.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: peer, PeerNamespace: netlink.NsFd(ns)}); err != nil {
			t.Fatal(err)
		}
		h, err := netlink.NewHandleAt(ns)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(h.Close)
		link(h, "lo", "", true)
		return h
	}
	hp := peerIn(WireGuardName, "wg", member)
	ho := peerIn("eth0", "eth0", outsider)
	link(hm, WireGuardName, "10.99.0.1/16", true)
	link(hm, "eth0", "10.250.0.1/24", true)
	link(hp, "wg", "10.99.0.2/16", true)
	link(ho, "eth0", "10.250.0.100/24", true)
	_, mesh, _ := net.ParseCIDR("10.99.0.0/16")
	if err := ho.RouteAdd(&netlink.Route{Dst: mesh, Gw: net.IPv4(10, 250, 0, 1)}); err != nil {
		t.Fatal(err)
	}
	// Every stray packet answered (no rate limit), and a spoofed source
	// taken in on eth0 (no reverse path filter), as on a Debian host.
	for path, v := range map[string]string{
		"ipv4/icmp_ratelimit": "0", "ipv4/conf/all/rp_filter": "0", "ipv4/conf/eth0/rp_filter": "0",
	} {
		if err := os.WriteFile("/proc/sys/net/"+path, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	socketIn := func(ns netns.NsHandle, proto int) int {
		t.Helper()
		if err := netns.Set(ns); err != nil {
			t.Fatal(err)
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, proto)
		if err := netns.Set(machine); err != nil {
			t.Fatal(err)
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fd) })
		return fd
	}
	icmp := socketIn(member, unix.IPPROTO_ICMP)
	if err := unix.SetsockoptTimeval(icmp, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 300_000}); err != nil {
		t.Fatal(err)
	}
	fromMember, fromOutsider := socketIn(member, unix.IPPROTO_RAW), socketIn(outsider, unix.IPPROTO_RAW)

	// answered sends one GRE packet and says whether the machine answered
	// it with protocol unreachable (at the member, the source it names).
	buf := make([]byte, 1500)
	answered := func(fd int, src, dst string, key uint32) bool {
		t.Helper()
		for {
			if _, _, err := unix.Recvfrom(icmp, buf, unix.MSG_DONTWAIT); err != nil {
				break
			}
		}
		pkt := greTEB(netip.MustParseAddr(src), netip.MustParseAddr(dst), key)
		if err := unix.Sendto(fd, pkt, 0, &unix.SockaddrInet4{Addr: netip.MustParseAddr(dst).As4()}); err != nil {
			t.Fatal(err)
		}
		for {
			n, _, err := unix.Recvfrom(icmp, buf, 0)
			if err != nil {
				return false
			}
			// IPv4 20 + ICMP 8, then the packet it answers: protocol at 9.
			if n >= 20+8+20 && buf[20] == 3 && buf[21] == 2 && buf[20+8+9] == unix.IPPROTO_GRE {
				return true
			}
		}
	}
	type greCase struct {
		what     string
		fd       int
		src, dst string
		key      uint32
	}
	member7 := greCase{"the member over btwg0 with its network's key", fromMember, "10.99.0.2", "10.99.0.1", 7}
	cases := []greCase{
		{"the member over btwg0 with another network's key", fromMember, "10.99.0.2", "10.99.0.1", 8},
		{"the outsider on eth0 as the member, to the public address", fromOutsider, "10.99.0.2", "10.250.0.1", 7},
		{"the outsider on eth0 as the member, to the mesh address", fromOutsider, "10.99.0.2", "10.99.0.1", 7},
	}

	fw := firewallFor(fwInput{Networks: []fwNetwork{{Bridge: "btbr7", Tunnel: KindGretap, Key: 7,
		Peers: []netip.Addr{netip.MustParseAddr("10.99.0.2")}}}})
	if _, err := convergeFirewall(ctx, nftTable{}, fw); err != nil {
		t.Fatal(err)
	}
	if !answered(member7.fd, member7.src, member7.dst, member7.key) {
		t.Errorf("%s: no answer; the firewall drops what it must take in", member7.what)
	}
	for _, c := range cases {
		if answered(c.fd, c.src, c.dst, c.key) {
			t.Errorf("%s: answered: it got past the firewall", c.what)
		}
	}
	if err := (nftTable{}).Delete(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		if !answered(c.fd, c.src, c.dst, c.key) {
			t.Errorf("control: %s: no answer even without the firewall; the check proves nothing", c.what)
		}
	}
}

// greTEB is an IPv4 packet from src to dst carrying what a gretap with a
// key sends: a GRE header with the key and a broadcast Ethernet frame.
func greTEB(src, dst netip.Addr, key uint32) []byte {
	inner := append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0xbe, 0xef, 0, 0, 1, 0x88, 0xb5}, make([]byte, 46)...)
	gre := binary.BigEndian.AppendUint32([]byte{0x20, 0x00, 0x65, 0x58}, key)
	total := 20 + len(gre) + len(inner)
	pkt := []byte{0x45, 0, byte(total >> 8), byte(total), 0, 0, 0x40, 0, 64, unix.IPPROTO_GRE, 0, 0}
	pkt = append(pkt, src.AsSlice()...)
	pkt = append(pkt, dst.AsSlice()...)
	return append(append(pkt, gre...), inner...)
}

// BenchmarkFirewallInput is what the firewall costs a packet that crosses
// the input hook: UDP to a local socket, in a fresh namespace, with no
// table and with the table of a machine in two VXLAN networks (the packet
// matches none of its rules, so it is compared with all of them).
// Compare the two ns/op.
func BenchmarkFirewallInput(b *testing.B) {
	for _, withTable := range []bool{false, true} {
		name := "none"
		if withTable {
			name = "table"
		}
		b.Run(name, func(b *testing.B) {
			inFreshNetns(b)
			h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
			if err != nil {
				b.Fatal(err)
			}
			defer h.Close()
			linkUp(b, h, "lo")
			if withTable {
				spec := testSpec(helperapi.Network{Name: "blue", ID: 1, Tunnel: helperapi.TunnelVXLAN, Peers: []string{"m2", "m3"}},
					helperapi.Network{Name: "red", ID: 2, Tunnel: helperapi.TunnelVXLAN, Peers: []string{"m2"}})
				if _, err := convergeFirewall(context.Background(), nftTable{}, makeFirewall(spec, makePlan(spec, machine{}))); err != nil {
					b.Fatal(err)
				}
			}
			sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				b.Fatal(err)
			}
			defer sink.Close()
			conn, err := net.DialUDP("udp4", nil, sink.LocalAddr().(*net.UDPAddr))
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			payload := make([]byte, 16)
			b.ResetTimer()
			for b.Loop() {
				// The sink never reads: once its buffer is full the kernel
				// drops at the socket, after the input hook.
				if _, err := conn.Write(payload); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
