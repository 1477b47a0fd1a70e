package plumbing

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// guardLab is a machine (this test's fresh namespace) with bridge btbr1,
// a VM stand-in namespace on the port named as VM web's tap, with web's
// MAC, and a neighbour namespace on another port that sees what the
// bridge lets through.
type guardLab struct {
	machine, vm, peer netns.NsHandle
	hm                *netlink.Handle
	vmMAC             net.HardwareAddr
	vmAddr            netip.Addr
	send, recv        int // packet sockets on the VM's and the neighbour's eth0
	rules             []guardRule
}

func newGuardLab(t *testing.T) *guardLab {
	t.Helper()
	inFreshNetns(t)
	g := &guardLab{vmAddr: netip.MustParseAddr("10.10.1.2")}
	g.vmMAC = helperapi.VMMAC(g.vmAddr)
	g.rules = guardFor([]guardVM{{Name: "web", Port: helperapi.VMPort("web"), MAC: g.vmMAC, Addr: g.vmAddr}})
	var err error
	if g.machine, err = netns.Get(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.machine.Close() })
	for _, ns := range []*netns.NsHandle{&g.vm, &g.peer} {
		if *ns, err = netns.New(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ns.Close() })
	}
	if err := netns.Set(g.machine); err != nil {
		t.Fatal(err)
	}
	if g.hm, err = netlink.NewHandle(unix.NETLINK_ROUTE); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.hm.Close)
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: BridgeName(1)}}
	if err := g.hm.LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	g.send = g.port(t, helperapi.VMPort("web"), g.vm, g.vmMAC)
	g.recv = g.port(t, "peer0", g.peer, nil)
	if err := g.hm.LinkSetUp(br); err != nil {
		t.Fatal(err)
	}
	if err := unix.SetsockoptTimeval(g.recv, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 200_000}); err != nil {
		t.Fatal(err)
	}
	return g
}

// port plugs a veth named name into the bridge, its other end eth0 in ns
// (with mac, if given), and returns a packet socket on that eth0.
func (g *guardLab) port(t *testing.T, name string, ns netns.NsHandle, mac net.HardwareAddr) int {
	t.Helper()
	br, err := g.hm.LinkByName(BridgeName(1))
	if err != nil {
		t.Fatal(err)
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, MasterIndex: br.Attrs().Index}, PeerName: "eth0",
		PeerNamespace: netlink.NsFd(ns), PeerHardwareAddr: mac}
	if err := g.hm.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	if err := g.hm.LinkSetUp(veth); err != nil {
		t.Fatal(err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	eth0 := linkUp(t, h, "eth0")
	if err := netns.Set(ns); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
	if err2 := netns.Set(g.machine); err2 != nil {
		t.Fatal(err2)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: eth0.Attrs().Index}); err != nil {
		t.Fatal(err)
	}
	return fd
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// frame is one Ethernet frame the VM stand-in sends; mark, at its end,
// tells it apart at the neighbour.
type frame struct {
	what string
	pass bool // the guard lets it through
	data []byte
}

var broadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// mark is frame i's 8 bytes, inside its packet (trailing bytes past an
// IP packet's length may be trimmed on the way, by br_netfilter).
func mark(i int) []byte { return fmt.Appendf(nil, "bt-gd-%02d", i) }

func (g *guardLab) frames() []frame {
	spoofMAC := net.HardwareAddr{0x52, 0x54, 0x00, 0x0a, 0x01, 0x66}
	spoofIP := netip.MustParseAddr("10.10.1.66")
	gw := netip.MustParseAddr("10.10.1.1")
	dst := netip.MustParseAddr("10.10.1.99")
	fs := []frame{
		{"UDP from the VM's own MAC and address", true, nil},
		{"UDP from a spoofed source address", false, nil},
		{"UDP from a spoofed MAC", false, nil},
		{"a DHCP server reply (UDP source port 67)", false, nil},
		{"ARP from the VM's own MAC and address", true, nil},
		{"an ARP probe (sender 0.0.0.0)", true, nil},
		{"ARP claiming the gateway's address", false, nil},
		{"ARP with a spoofed sender MAC", false, nil},
		{"a router advertisement", false, nil},
	}
	ra := net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}
	for i, d := range [][]byte{
		ether(broadcast, g.vmMAC, etherIPv4, udp4(g.vmAddr, dst, 5000, 5000, mark(0))),
		ether(broadcast, g.vmMAC, etherIPv4, udp4(spoofIP, dst, 5000, 5000, mark(1))),
		ether(broadcast, spoofMAC, etherIPv4, udp4(g.vmAddr, dst, 5000, 5000, mark(2))),
		ether(broadcast, g.vmMAC, etherIPv4, udp4(g.vmAddr, dst, 67, 68, mark(3))),
		ether(broadcast, g.vmMAC, etherARP, append(arp(g.vmMAC, g.vmAddr, dst), mark(4)...)),
		ether(broadcast, g.vmMAC, etherARP, append(arp(g.vmMAC, netip.IPv4Unspecified(), g.vmAddr), mark(5)...)),
		ether(broadcast, g.vmMAC, etherARP, append(arp(g.vmMAC, gw, dst), mark(6)...)),
		ether(broadcast, g.vmMAC, etherARP, append(arp(spoofMAC, g.vmAddr, dst), mark(7)...)),
		ether(ra, g.vmMAC, 0x86dd, routerAdvert(g.vmMAC, mark(8))),
	} {
		fs[i].data = d
	}
	return fs
}

// arrived sends every frame three times from the VM stand-in and says,
// per frame, whether the neighbour saw it.
func (g *guardLab) arrived(t *testing.T, fs []frame) []bool {
	t.Helper()
	buf := make([]byte, 2048)
	for {
		if _, _, err := unix.Recvfrom(g.recv, buf, unix.MSG_DONTWAIT); err != nil {
			break
		}
	}
	for _, f := range fs {
		for range 3 {
			if err := unix.Send(g.send, f.data, 0); err != nil {
				t.Fatalf("send %s: %v", f.what, err)
			}
		}
	}
	seen := make([]bool, len(fs))
	for {
		n, _, err := unix.Recvfrom(g.recv, buf, 0)
		if err != nil {
			return seen
		}
		for i := range fs {
			if bytes.Contains(buf[:n], mark(i)) {
				seen[i] = true
			}
		}
	}
}

// TestGuardKernel writes the port guard into a fresh namespace's
// nf_tables, reads it back, and checks it against frames a VM stand-in
// sends on web's port: its own MAC and address pass (the positive
// control), spoofed ones, DHCP server replies and router advertisements
// do not; with the guard's table deleted every one of them passes (the
// negative control). A rule deleted by hand is drift and comes back.
func TestGuardKernel(t *testing.T) {
	g := newGuardLab(t)
	changes, err := convergeGuard(g.rules)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"guard: table bridge butter-guard missing"}, changes); diff != "" {
		t.Errorf("first write (-want +got):\n%s", diff)
	}
	if changes, err := convergeGuard(g.rules); err != nil || len(changes) != 0 {
		t.Errorf("a second write changed %q (err %v), want nothing", changes, err)
	}
	fs := g.frames()
	on := g.arrived(t, fs)
	if err := deleteGuard(); err != nil {
		t.Fatal(err)
	}
	off := g.arrived(t, fs)
	for i, f := range fs {
		t.Logf("%-45s guard on: arrived=%v; off: arrived=%v", f.what, on[i], off[i])
		if on[i] != f.pass {
			t.Errorf("%s: arrived=%v through the guard, want %v", f.what, on[i], f.pass)
		}
		if !off[i] {
			t.Errorf("control: %s did not arrive even without the guard; the check proves nothing", f.what)
		}
	}

	// Damage: a rule deleted by hand is drift, and a converge puts it back.
	if _, err := convergeGuard(g.rules); err != nil {
		t.Fatal(err)
	}
	c, _, rules := chainRules(t, guardTable, ChainGuard)
	if err := c.DelRule(rules[1]); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	have, err := readGuard(g.rules)
	if err != nil {
		t.Fatal(err)
	}
	if d := guardDiff(g.rules, have); !slices.Equal(d, []string{"ports: missing rule: " + g.rules[1].String()}) {
		t.Errorf("drift after a rule was deleted: %q", d)
	}
	if changes, err := convergeGuard(g.rules); err != nil || len(changes) != 1 {
		t.Errorf("repair changed %q (err %v), want the rule back", changes, err)
	}
	if on := g.arrived(t, fs); !slices.EqualFunc(on, fs, func(a bool, f frame) bool { return a == f.pass }) {
		t.Errorf("after the repair: arrived %v", on)
	}
	if err := deleteGuard(); err != nil {
		t.Fatal(err)
	}
	if have, err := readGuard(nil); err != nil || have != nil {
		t.Errorf("after delete the table reads %+v (err %v)", have, err)
	}
}

// TestGuardRouterAdvert sends a router advertisement from the VM
// stand-in's port and reads the machine's IPv6 routes: with the guard,
// or with IPv6 off on the bridge (either layer alone), they stay as they
// were; with neither (the control), the advertisement gives the machine
// a default route.
func TestGuardRouterAdvert(t *testing.T) {
	g := newGuardLab(t)
	br := BridgeName(1)
	for _, p := range []string{"all/forwarding", br + "/forwarding"} {
		if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+p, []byte("0"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ra := ether(net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}, g.vmMAC, 0x86dd, routerAdvert(g.vmMAC, nil))
	// defaultRoute sends the advertisement and says whether the machine
	// has an IPv6 default route within a second.
	defaultRoute := func() bool {
		t.Helper()
		for range 3 {
			if err := unix.Send(g.send, ra, 0); err != nil {
				t.Fatal(err)
			}
		}
		for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			rs, err := g.hm.RouteList(nil, netlink.FAMILY_V6)
			if err != nil {
				t.Fatal(err)
			}
			if slices.ContainsFunc(rs, func(r netlink.Route) bool { return r.Dst == nil || r.Dst.IP.IsUnspecified() }) {
				return true
			}
		}
		return false
	}
	if _, err := convergeGuard(g.rules); err != nil {
		t.Fatal(err)
	}
	if defaultRoute() {
		t.Error("with the guard (IPv6 still on the bridge) a VM's router advertisement gave the machine a default route")
	}
	if err := deleteGuard(); err != nil {
		t.Fatal(err)
	}
	if _, err := setIPv6Off([]string{br}); err != nil {
		t.Fatal(err)
	}
	if defaultRoute() {
		t.Error("with IPv6 off on the bridge (no guard) a VM's router advertisement gave the machine a default route")
	}
	for _, kv := range [][2]string{{"disable_ipv6", "0"}, {"accept_ra", "1"}} {
		if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+br+"/"+kv[0], []byte(kv[1]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if !defaultRoute() {
		t.Error("control: with neither the guard nor IPv6 off the advertisement gives no default route; the check proves nothing")
	}
}

// ether is an Ethernet frame.
func ether(dst, src net.HardwareAddr, typ uint16, payload []byte) []byte {
	b := append(append(slices.Clone([]byte(dst)), src...), byte(typ>>8), byte(typ))
	return append(b, payload...)
}

// udp4 is an IPv4 UDP packet.
func udp4(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	n := 28 + len(payload)
	ip := []byte{0x45, 0, byte(n >> 8), byte(n), 0, 0, 0x40, 0, 64, unix.IPPROTO_UDP, 0, 0}
	ip = append(append(ip, src.AsSlice()...), dst.AsSlice()...)
	binary.BigEndian.PutUint16(ip[10:], ^sum16(0, ip))
	u := binary.BigEndian.AppendUint16(nil, sport)
	u = binary.BigEndian.AppendUint16(u, dport)
	u = binary.BigEndian.AppendUint16(u, uint16(8+len(payload)))
	u = append(u, 0, 0) // no checksum
	return append(append(ip, u...), payload...)
}

// arp is an ARP request from sha/spa for tpa.
func arp(sha net.HardwareAddr, spa, tpa netip.Addr) []byte {
	b := []byte{0, 1, 0x08, 0, 6, 4, 0, 1}
	b = append(append(b, sha...), spa.AsSlice()...)
	b = append(append(b, make([]byte, 6)...), tpa.AsSlice()...)
	return b
}

// routerAdvert is an IPv6 router advertisement from the link-local
// address of mac to all nodes, offering a default route for 1800 s; an
// 8-byte mark, if given, rides in an experimental option (type 253).
func routerAdvert(mac net.HardwareAddr, mark []byte) []byte {
	src := netip.AddrFrom16([16]byte{0xfe, 0x80, 8: mac[0] ^ 2, mac[1], mac[2], 0xff, 0xfe, mac[3], mac[4], mac[5]})
	dst := netip.MustParseAddr("ff02::1")
	icmp := []byte{134, 0, 0, 0, 64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0}
	if mark != nil {
		icmp = append(append(append(icmp, 253, 2), mark...), make([]byte, 14-len(mark))...)
	}
	pseudo := append(append(src.AsSlice(), dst.AsSlice()...), 0, 0, 0, byte(len(icmp)), 0, 0, 0, unix.IPPROTO_ICMPV6)
	binary.BigEndian.PutUint16(icmp[2:], ^sum16(sum16(0, pseudo), icmp))
	ip := []byte{0x60, 0, 0, 0, 0, byte(len(icmp)), unix.IPPROTO_ICMPV6, 255}
	ip = append(append(ip, src.AsSlice()...), dst.AsSlice()...)
	return append(ip, icmp...)
}

// sum16 adds b to the ones' complement sum s (folded, not inverted).
func sum16(s uint16, b []byte) uint16 {
	acc := uint32(s)
	for i := 0; i+1 < len(b); i += 2 {
		acc += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		acc += uint32(b[len(b)-1]) << 8
	}
	for acc > 0xffff {
		acc = acc&0xffff + acc>>16
	}
	return uint16(acc)
}

// TestWatchPorts: a link that becomes a port of a helper bridge while the
// daemon runs (a VM's tap libvirt makes) has IPv6 off without an apply; a
// link on no helper bridge keeps it (the control: the watcher is not
// turning IPv6 off everywhere).
func TestWatchPorts(t *testing.T) {
	inFreshNetns(t)
	machine, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer machine.Close()
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: BridgeName(1)}}
	if err := h.LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		// In the test's namespace, on a thread that dies with the
		// goroutine: /proc/sys/net is the namespace's of the thread.
		runtime.LockOSThread()
		if err := netns.Set(machine); err != nil {
			done <- err
			return
		}
		done <- watchPorts(ctx, slog.New(slog.DiscardHandler))
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	other := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "other0"}, PeerName: "other1"}
	tap := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: helperapi.VMPort("web"), MasterIndex: br.Attrs().Index}, PeerName: "vm0"}
	for _, l := range []netlink.Link{other, tap} {
		if err := h.LinkAdd(l); err != nil {
			t.Fatal(err)
		}
	}
	read := func(link string) string {
		b, err := os.ReadFile("/proc/sys/net/ipv6/conf/" + link + "/disable_ipv6")
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	deadline := time.Now().Add(5 * time.Second)
	for read(tap.Name) != "1" {
		if time.Now().After(deadline) {
			t.Fatalf("5 s after %s joined %s its disable_ipv6 is still %s", tap.Name, br.Name, read(tap.Name))
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, l := range []string{"other0", "other1", "vm0"} {
		if v := read(l); v != "0" {
			t.Errorf("%s, on no helper bridge, has disable_ipv6 %s: the watcher turns IPv6 off beyond the bridges' ports", l, v)
		}
	}
}

// TestGuardRandomDamage damages the port guard's table in the kernel at
// random, as a person with nft might (a rule deleted, a foreign rule
// added, the rules swapped, the chain's policy or priority changed, the
// chain or the table deleted), and checks each converge brings back
// exactly the planned table, and that the damage was seen as drift first.
func TestGuardRandomDamage(t *testing.T) {
	inFreshNetns(t)
	rules := guardFor(guardVMs(guardSpec()))
	kinds := []string{"delete rule", "foreign rule", "swap rules", "policy", "priority", "delete chain", "delete table"}
	seen := map[string]int{}
	rng := rand.New(rand.NewPCG(5, 6))
	if _, err := convergeGuard(rules); err != nil {
		t.Fatal(err)
	}
	for step := range 40 {
		what := kinds[rng.IntN(len(kinds))]
		seen[what]++
		c, chain, have := chainRules(t, guardTable, ChainGuard)
		var err error
		switch what {
		case "delete rule":
			err = c.DelRule(have[rng.IntN(len(have))])
		case "foreign rule":
			c.InsertRule(&nftables.Rule{Table: guardTable, Chain: chain, Exprs: []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictAccept}}})
		case "swap rules":
			// The first rule again at the end, the original deleted.
			c.AddRule(&nftables.Rule{Table: guardTable, Chain: chain, Exprs: have[0].Exprs})
			err = c.DelRule(have[0])
		case "policy", "priority":
			policy, prio := nftables.ChainPolicyAccept, nftables.ChainPriority(guardPriority)
			if what == "policy" {
				policy = nftables.ChainPolicyDrop
			} else {
				prio = 0
			}
			c.FlushTable(guardTable)
			c.DelChain(chain)
			c.AddChain(&nftables.Chain{Name: ChainGuard, Table: guardTable, Type: nftables.ChainTypeFilter,
				Hooknum: nftables.ChainHookPrerouting, Priority: &prio, Policy: &policy})
		case "delete chain":
			c.FlushTable(guardTable)
			c.DelChain(chain)
		case "delete table":
			c.DelTable(guardTable)
		}
		if err == nil {
			err = c.Flush()
		}
		if err != nil {
			t.Fatalf("step %d: damage %q: %v", step, what, err)
		}
		hv, err := readGuard(rules)
		if err != nil {
			t.Fatal(err)
		}
		if d := guardDiff(rules, hv); len(d) == 0 {
			t.Fatalf("step %d: damage %q is no drift", step, what)
		}
		if _, err := convergeGuard(rules); err != nil {
			t.Fatalf("step %d after %q: %v", step, what, err)
		}
		hv, err = readGuard(rules)
		if err != nil {
			t.Fatal(err)
		}
		if d := guardDiff(rules, hv); len(d) != 0 {
			t.Fatalf("step %d: after %q and a converge: %v", step, what, d)
		}
	}
	for _, k := range kinds {
		if seen[k] == 0 {
			t.Errorf("no step did damage %q; the walk does not cover it", k)
		}
	}
	t.Logf("damage: %v", seen)
}

// linkUp sets the named link up and returns it.
func linkUp(t testing.TB, h *netlink.Handle, name string) netlink.Link {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	return l
}

// chainRules opens nf_tables and reads the rules of a chain of table.
func chainRules(t *testing.T, table *nftables.Table, name string) (*nftables.Conn, *nftables.Chain, []*nftables.Rule) {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	chain := &nftables.Chain{Name: name, Table: table}
	rules, err := c.GetRules(table, chain)
	if err != nil {
		t.Fatal(err)
	}
	return c, chain, rules
}
