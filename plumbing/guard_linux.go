package plumbing

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

var guardTable = &nftables.Table{Name: GuardTable, Family: nftables.TableFamilyBridge}

// Offsets the guard's rules read, from the Ethernet header (link layer)
// and from the header after it (network).
const (
	offEtherSrc  = 6  // Ethernet source MAC
	offEtherType = 12 // Ethernet type
	offARPMAC    = 8  // ARP sender hardware address
	offARPAddr   = 14 // ARP sender protocol address
)

// encodeGuard turns a guard rule into nf_tables expressions.
func encodeGuard(r guardRule) ([]expr.Any, error) {
	if r.Port == "" || strings.HasSuffix(r.Port, "*") {
		return nil, fmt.Errorf("guard rule %s: needs one port", r)
	}
	if (r.NotARPMAC != nil || r.NotARPAddr.IsValid()) && r.EtherType != etherARP {
		return nil, fmt.Errorf("guard rule %s: an ARP field needs ether type arp", r)
	}
	if (r.NotIPSrc.IsValid() || r.UDPSPort != 0) && r.EtherType != etherIPv4 {
		return nil, fmt.Errorf("guard rule %s: an IPv4 field needs ether type ip", r)
	}
	out := []expr.Any{&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: ifname(r.Port)}}
	load := func(base expr.PayloadBase, off, n uint32) {
		out = append(out, &expr.Payload{DestRegister: reg, Base: base, Offset: off, Len: n})
	}
	cmp := func(op expr.CmpOp, data []byte) {
		out = append(out, &expr.Cmp{Op: op, Register: reg, Data: data})
	}
	if r.NotEtherSrc != nil {
		load(expr.PayloadBaseLLHeader, offEtherSrc, 6)
		cmp(expr.CmpOpNeq, r.NotEtherSrc)
	}
	if r.EtherType != 0 {
		load(expr.PayloadBaseLLHeader, offEtherType, 2)
		cmp(expr.CmpOpEq, binary.BigEndian.AppendUint16(nil, r.EtherType))
	}
	if r.NotARPMAC != nil {
		load(expr.PayloadBaseNetworkHeader, offARPMAC, 6)
		cmp(expr.CmpOpNeq, r.NotARPMAC)
	}
	if a := r.NotARPAddr; a.IsValid() {
		if !a.Is4() {
			return nil, fmt.Errorf("guard rule %s: %s is not IPv4", r, a)
		}
		load(expr.PayloadBaseNetworkHeader, offARPAddr, 4)
		cmp(expr.CmpOpNeq, a.AsSlice())
		cmp(expr.CmpOpNeq, []byte{0, 0, 0, 0})
	}
	if a := r.NotIPSrc; a.IsValid() {
		if !a.Is4() {
			return nil, fmt.Errorf("guard rule %s: %s is not IPv4", r, a)
		}
		load(expr.PayloadBaseNetworkHeader, offSAddr, 4)
		cmp(expr.CmpOpNeq, a.AsSlice())
	}
	if r.UDPSPort != 0 {
		out = append(out, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg})
		cmp(expr.CmpOpEq, []byte{unix.IPPROTO_UDP})
		load(expr.PayloadBaseTransportHeader, offSPort, 2)
		cmp(expr.CmpOpEq, binary.BigEndian.AppendUint16(nil, r.UDPSPort))
	}
	v, err := verdictExpr(r.Verdict)
	if err != nil {
		return nil, fmt.Errorf("guard rule %s: %w", r, err)
	}
	return append(out, v), nil
}

// readGuard reads the port guard's table (nil when there is none),
// naming each rule by the rule of want it is, expression for expression;
// any other rule reads as unknown.
func readGuard(want []guardRule) (*guardHave, error) {
	known := map[string]string{}
	for _, r := range want {
		exprs, err := encodeGuard(r)
		if err != nil {
			return nil, err
		}
		known[exprsKey(exprs)] = r.String()
	}
	have := &guardHave{Chains: map[string]string{}, Rules: map[string][]string{}}
	dormant, ok, err := readTable(guardTable, func(ch *nftables.Chain, rules []*nftables.Rule) {
		hook, prio, policy := chainHeader(ch, map[string]nftables.ChainHook{guardHook: *nftables.ChainHookPrerouting})
		if ch.Type != nftables.ChainTypeFilter {
			hook += " type " + string(ch.Type)
		}
		have.Chains[ch.Name] = fmt.Sprintf("hook %s priority %d policy %s", hook, prio, policy)
		have.Rules[ch.Name] = []string{}
		for _, r := range rules {
			text, ok := known[exprsKey(r.Exprs)]
			if !ok {
				comment, _ := userdata.GetString(r.UserData, userdata.TypeComment)
				text = fmt.Sprintf("unknown rule: not as the helper writes it (%q)", comment)
			}
			have.Rules[ch.Name] = append(have.Rules[ch.Name], text)
		}
	})
	if err != nil || !ok {
		return nil, err
	}
	have.Dormant = dormant
	return have, nil
}

// exprsKey is expressions' netlink encoding, as a map key ("" when one
// does not encode).
func exprsKey(exprs []expr.Any) string {
	var b []byte
	for _, e := range exprs {
		x, err := expr.Marshal(byte(nftables.TableFamilyBridge), e)
		if err != nil {
			return ""
		}
		b = binary.BigEndian.AppendUint32(b, uint32(len(x)))
		b = append(b, x...)
	}
	return string(b)
}

// writeGuard replaces the port guard's table with one chain of rules, in
// one transaction.
func writeGuard(rules []guardRule) error {
	c, err := openNFT()
	if err != nil {
		return fmt.Errorf("open nftables: %w", err)
	}
	c.AddTable(guardTable)
	c.DelTable(guardTable)
	c.AddTable(guardTable)
	policy := nftables.ChainPolicyAccept
	ch := c.AddChain(&nftables.Chain{Name: ChainGuard, Table: guardTable, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(guardPriority), Policy: &policy})
	for _, r := range rules {
		exprs, err := encodeGuard(r)
		if err != nil {
			return err
		}
		c.AddRule(&nftables.Rule{Table: guardTable, Chain: ch, Exprs: exprs,
			UserData: userdata.AppendString(nil, userdata.TypeComment, r.String())})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("write table bridge %s: %w", GuardTable, err)
	}
	return nil
}

// deleteGuard removes the port guard's table; one already gone is no
// error.
func deleteGuard() error {
	if err := deleteTable(guardTable); err != nil {
		return fmt.Errorf("table bridge: %w", err)
	}
	return nil
}

// convergeGuard makes the port guard's table want, if it differs, reads
// it back, and returns what differed.
func convergeGuard(want []guardRule) ([]string, error) {
	have, err := readGuard(want)
	if err != nil {
		return nil, err
	}
	diff := guardDiff(want, have)
	if len(diff) == 0 {
		return nil, nil
	}
	if err := writeGuard(want); err != nil {
		return nil, err
	}
	have, err = readGuard(want)
	if err != nil {
		return nil, err
	}
	if left := guardDiff(want, have); len(left) > 0 {
		return nil, fmt.Errorf("table bridge %s written but it reads back otherwise: %s", GuardTable, strings.Join(left, "; "))
	}
	changes := make([]string, len(diff))
	for i, d := range diff {
		changes[i] = "guard: " + d
	}
	return changes, nil
}

// bridgePorts lists the ports of the helper's bridges as the kernel has
// them now: tunnels, VM taps, anything plugged in.
func bridgePorts() ([]string, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	bridges := map[int]bool{}
	for _, l := range links {
		if _, ok := l.(*netlink.Bridge); ok && ours(l.Attrs().Name) {
			bridges[l.Attrs().Index] = true
		}
	}
	var out []string
	for _, l := range links {
		if bridges[l.Attrs().MasterIndex] {
			out = append(out, l.Attrs().Name)
		}
	}
	return out, nil
}

// applyGuard converges the port guard for spec. Its rules name ports
// that need not exist yet.
func (h *Helper) applyGuard(ctx context.Context, spec helperapi.Spec) ([]string, error) {
	changes, err := convergeGuard(guardFor(guardVMs(spec)))
	if err != nil {
		return nil, fmt.Errorf("apply port guard: %w", err)
	}
	return changes, nil
}

// portsIPv6Off turns IPv6 off on every port of the helper's bridges.
func portsIPv6Off() ([]string, error) {
	ports, err := bridgePorts()
	if err != nil {
		return nil, err
	}
	return setIPv6Off(ports)
}

// guardDrift is how the port guard and the ports' IPv6 settings differ
// from what spec wants.
func (h *Helper) guardDrift(ctx context.Context, spec helperapi.Spec) ([]helperapi.Drift, error) {
	want := guardFor(guardVMs(spec))
	have, err := readGuard(want)
	if err != nil {
		return nil, err
	}
	var out []helperapi.Drift
	for _, d := range guardDiff(want, have) {
		out = append(out, helperapi.Drift{Link: "guard", Problem: d})
	}
	ports, err := bridgePorts()
	if err != nil {
		return out, err
	}
	v6, err := ipv6Drift(ports)
	for _, d := range v6 {
		out = append(out, helperapi.Drift{Link: d[0], Problem: fmt.Sprintf("ipv6 %s is %s, want IPv6 off", d[1], d[2])})
	}
	return out, err
}

// removeGuard deletes the port guard's table, if there is one.
func (h *Helper) removeGuard(ctx context.Context) error {
	have, err := readGuard(nil)
	if err != nil || have == nil {
		return err
	}
	if err := deleteGuard(); err != nil {
		return err
	}
	h.log.Info("removed", "change", "guard: table bridge "+GuardTable)
	return nil
}

// watchPorts turns IPv6 off on every link that becomes a port of one of
// the helper's bridges (a VM's tap libvirt makes, a tunnel), as it
// appears, until ctx ends: between two applies a new port would otherwise
// take a link-local address and router advertisements.
func watchPorts(ctx context.Context, log *slog.Logger) error {
	updates := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	if err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{
		ErrorCallback: func(err error) { log.Error("watch ports", "err", err) },
	}); err != nil {
		return fmt.Errorf("watch links: %w", err)
	}
	// Ports that came before the watch.
	if ports, err := bridgePorts(); err == nil {
		logIPv6Off(log, ports)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case u, ok := <-updates:
			if !ok {
				return errors.New("watch links: the kernel's link events stopped")
			}
			a := u.Attrs()
			if u.Header.Type != unix.RTM_NEWLINK || a.MasterIndex == 0 {
				continue
			}
			master, err := netlink.LinkByIndex(a.MasterIndex)
			if err != nil || !ours(master.Attrs().Name) {
				continue
			}
			if _, ok := master.(*netlink.Bridge); ok {
				logIPv6Off(log, []string{a.Name})
			}
		}
	}
}

func logIPv6Off(log *slog.Logger, links []string) {
	changes, err := setIPv6Off(links)
	for _, c := range changes {
		log.Info("applied", "change", c)
	}
	if err != nil {
		log.Error("turn IPv6 off on a port", "err", err)
	}
}
