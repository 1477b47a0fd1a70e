package plumbing

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// nftTable is the helper's firewall table in the kernel of the current
// network namespace, read and written through nf_tables netlink: the inet
// one, or with bridge the bridge-family gateway filter. It holds no
// connection: each call opens its own.
type nftTable struct{ bridge bool }

var butterTable = &nftables.Table{Name: FirewallTable, Family: nftables.TableFamilyINet}

var bridgeTable = &nftables.Table{Name: FirewallTable, Family: nftables.TableFamilyBridge}

func (k nftTable) table() *nftables.Table {
	if k.bridge {
		return bridgeTable
	}
	return butterTable
}

func (k nftTable) name() string { return fwTable{Family: k.family()}.name() }

func (k nftTable) family() string {
	if k.bridge {
		return "bridge"
	}
	return ""
}

// hooks maps fwChain.Hook to netfilter's hook numbers (the bridge family
// numbers its hooks the same way).
var hooks = map[string]nftables.ChainHook{
	"prerouting":  *nftables.ChainHookPrerouting,
	"input":       *nftables.ChainHookInput,
	"forward":     *nftables.ChainHookForward,
	"output":      *nftables.ChainHookOutput,
	"postrouting": *nftables.ChainHookPostrouting,
}

func (k nftTable) Table(ctx context.Context) (*fwTable, error) {
	out := &fwTable{Family: k.family()}
	dormant, ok, err := readTable(k.table(), func(ch *nftables.Chain, rules []*nftables.Rule) {
		fc := fwChain{Name: ch.Name}
		fc.Hook, fc.Priority, fc.Policy = chainHeader(ch, hooks)
		if ch.Type != nftables.ChainTypeFilter {
			fc.Type = string(ch.Type)
		}
		for _, r := range rules {
			fc.Rules = append(fc.Rules, decodeRule(r.Exprs))
		}
		out.Chains = append(out.Chains, fc)
	})
	if err != nil || !ok {
		return nil, err
	}
	out.Dormant = dormant
	return out, nil
}

func (k nftTable) Write(ctx context.Context, t fwTable) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("open nftables: %w", err)
	}
	if t.Family != k.family() {
		return fmt.Errorf("write table %s as table %s: not the same table", t.name(), k.name())
	}
	table := k.table()
	// One batch, one transaction: make sure the table exists, delete it
	// with whatever it holds, and make it again as planned.
	c.AddTable(table)
	c.DelTable(table)
	c.AddTable(table)
	for _, fc := range t.Chains {
		hook, ok := hooks[fc.Hook]
		if !ok {
			return fmt.Errorf("chain %s: unknown hook %q", fc.Name, fc.Hook)
		}
		policy := nftables.ChainPolicyAccept
		if fc.Policy == VerdictDrop {
			policy = nftables.ChainPolicyDrop
		}
		typ := nftables.ChainTypeFilter
		switch fc.Type {
		case "":
		case "nat":
			typ = nftables.ChainTypeNAT
		default:
			return fmt.Errorf("chain %s: unknown type %q", fc.Name, fc.Type)
		}
		ch := c.AddChain(&nftables.Chain{
			Name: fc.Name, Table: table, Type: typ,
			Hooknum: &hook, Priority: nftables.ChainPriorityRef(nftables.ChainPriority(fc.Priority)), Policy: &policy,
		})
		for _, r := range fc.Rules {
			exprs, err := encodeRule(r)
			if err != nil {
				return fmt.Errorf("chain %s: %w", fc.Name, err)
			}
			c.AddRule(&nftables.Rule{Table: table, Chain: ch, Exprs: exprs,
				UserData: userdata.AppendString(nil, userdata.TypeComment, r.String())})
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("write table %s: %w", k.name(), err)
	}
	return nil
}

func (k nftTable) Delete(ctx context.Context) error {
	if err := deleteTable(k.table()); err != nil {
		return fmt.Errorf("%s: %w", k.name(), err)
	}
	return nil
}

// The register every load and comparison of a rule uses.
const reg = 1

// Offsets of the header fields the rules look at.
const (
	offSAddr    = 12 // IPv4 source address
	offDAddr    = 16 // IPv4 destination address
	offSPort    = 0  // UDP or TCP source port
	offDPort    = 2  // UDP or TCP destination port
	offVNI      = 12 // VXLAN network id: UDP header 8 + VXLAN flags and reserved 4
	offGRE      = 0  // GRE flags, protocol and key
	offTCPFlags = 13 // TCP flags

	offEtherDAddr = 0  // Ethernet destination address
	offEtherSAddr = 6  // Ethernet source address
	offARPTarget  = 24 // ARP (Ethernet, IPv4): the target protocol address
)

// tcpACK is the ACK bit of the TCP flags.
const tcpACK = 0x10

// etherTypeARP is ARP's EtherType, as meta protocol reads it.
var etherTypeARP = []byte{0x08, 0x06}

// greTEBKey is the start of a GRE header that carries a key and nothing
// else optional (flags 0x2000) and Ethernet (protocol 0x6558), which is
// what a gretap with a key sends.
const greTEBKey = 0x20006558

// ifname is the comparison data for an interface name: the name padded
// to IFNAMSIZ for an exact match, or its stem alone for "stem*".
func ifname(n string) []byte {
	if stem, ok := strings.CutSuffix(n, "*"); ok {
		return []byte(stem)
	}
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, n)
	return b
}

// encodeRule turns a rule into nf_tables expressions; decodeRule reads
// them back.
func encodeRule(r fwRule) ([]expr.Any, error) {
	if r.Unknown != "" {
		return nil, fmt.Errorf("cannot write %s", r)
	}
	if (r.SPort != 0 || r.DPort != 0) && r.Proto != "udp" && r.Proto != "tcp" {
		return nil, fmt.Errorf("rule %s: a port needs udp or tcp", r)
	}
	if r.VNI != 0 && r.Proto != "udp" {
		return nil, fmt.Errorf("rule %s: a VXLAN network id needs udp", r)
	}
	if r.GREKey != 0 && r.Proto != "gre" {
		return nil, fmt.Errorf("rule %s: a GRE key needs gre", r)
	}
	if r.ACK && r.Proto != "tcp" {
		return nil, fmt.Errorf("rule %s: a TCP flag needs tcp", r)
	}
	var out []expr.Any
	meta := func(key expr.MetaKey, op expr.CmpOp, data []byte) {
		out = append(out, &expr.Meta{Key: key, Register: reg}, &expr.Cmp{Op: op, Register: reg, Data: data})
	}
	payload := func(base expr.PayloadBase, off uint32, data []byte) {
		out = append(out, &expr.Payload{DestRegister: reg, Base: base, Offset: off, Len: uint32(len(data))},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: data})
	}
	if r.IIF != "" {
		meta(expr.MetaKeyIIFNAME, expr.CmpOpEq, ifname(r.IIF))
	}
	if r.NotIIF != "" {
		meta(expr.MetaKeyIIFNAME, expr.CmpOpNeq, ifname(r.NotIIF))
	}
	if r.OIF != "" {
		meta(expr.MetaKeyOIFNAME, expr.CmpOpEq, ifname(r.OIF))
	}
	if r.NotOIF != "" {
		meta(expr.MetaKeyOIFNAME, expr.CmpOpNeq, ifname(r.NotOIF))
	}
	for _, m := range []struct {
		mac string
		off uint32
	}{{r.EtherSAddr, offEtherSAddr}, {r.EtherDAddr, offEtherDAddr}} {
		if m.mac == "" {
			continue
		}
		hw, err := net.ParseMAC(m.mac)
		if err != nil || len(hw) != 6 {
			return nil, fmt.Errorf("rule %s: %q is no Ethernet address", r, m.mac)
		}
		payload(expr.PayloadBaseLLHeader, m.off, hw)
	}
	if r.ARPTarget.IsValid() {
		if !r.ARPTarget.Is4() {
			return nil, fmt.Errorf("rule %s: ARP target %s is not IPv4", r, r.ARPTarget)
		}
		meta(expr.MetaKeyPROTOCOL, expr.CmpOpEq, etherTypeARP)
		payload(expr.PayloadBaseNetworkHeader, offARPTarget, r.ARPTarget.AsSlice())
	}
	if r.SAddr.IsValid() || r.DAddr.IsValid() || r.SNet.IsValid() {
		meta(expr.MetaKeyNFPROTO, expr.CmpOpEq, []byte{unix.NFPROTO_IPV4})
	}
	if r.SAddr.IsValid() {
		if !r.SAddr.Is4() {
			return nil, fmt.Errorf("rule %s: source %s is not IPv4", r, r.SAddr)
		}
		payload(expr.PayloadBaseNetworkHeader, offSAddr, r.SAddr.AsSlice())
	}
	if r.DAddr.IsValid() {
		if !r.DAddr.Is4() {
			return nil, fmt.Errorf("rule %s: destination %s is not IPv4", r, r.DAddr)
		}
		payload(expr.PayloadBaseNetworkHeader, offDAddr, r.DAddr.AsSlice())
	}
	if r.SNet.IsValid() {
		if !r.SNet.Addr().Is4() || r.SNet != r.SNet.Masked() {
			return nil, fmt.Errorf("rule %s: source %s is no IPv4 network prefix", r, r.SNet)
		}
		mask := net.CIDRMask(r.SNet.Bits(), 32)
		out = append(out, &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: offSAddr, Len: 4},
			&expr.Bitwise{SourceRegister: reg, DestRegister: reg, Len: 4, Mask: mask, Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: r.SNet.Addr().AsSlice()})
	}
	if r.Reply {
		out = append(out, &expr.Ct{Register: reg, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: reg, DestRegister: reg, Len: 4, Mask: ctReplyMask(), Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: reg, Data: make([]byte, 4)})
	}
	if r.Proto != "" {
		p, ok := fwProtocols[r.Proto]
		if !ok {
			return nil, fmt.Errorf("rule %s: unknown protocol %q", r, r.Proto)
		}
		meta(expr.MetaKeyL4PROTO, expr.CmpOpEq, []byte{p})
	}
	if r.SPort != 0 {
		payload(expr.PayloadBaseTransportHeader, offSPort, binary.BigEndian.AppendUint16(nil, r.SPort))
	}
	if r.DPort != 0 {
		payload(expr.PayloadBaseTransportHeader, offDPort, binary.BigEndian.AppendUint16(nil, r.DPort))
	}
	if r.VNI != 0 {
		payload(expr.PayloadBaseTransportHeader, offVNI, binary.BigEndian.AppendUint32(nil, r.VNI)[1:])
	}
	if r.GREKey != 0 {
		payload(expr.PayloadBaseTransportHeader, offGRE, binary.BigEndian.AppendUint64(nil, greTEBKey<<32|uint64(r.GREKey)))
	}
	if r.ACK {
		out = append(out, &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: offTCPFlags, Len: 1},
			&expr.Bitwise{SourceRegister: reg, DestRegister: reg, Len: 1, Mask: []byte{tcpACK}, Xor: []byte{0}},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: []byte{tcpACK}})
	}
	v, err := verdictExpr(r.Verdict)
	if err != nil {
		return nil, fmt.Errorf("rule %s: %w", r, err)
	}
	return append(out, v), nil
}

// decodeRule reads expressions as encodeRule writes them. What it does
// not know it describes in Unknown, so that such a rule never passes for
// one of the plan's.
func decodeRule(exprs []expr.Any) fwRule {
	var r fwRule
	unknown := func() fwRule {
		var names []string
		for _, e := range exprs {
			names = append(names, strings.ToLower(strings.TrimPrefix(fmt.Sprintf("%T", e), "*expr.")))
		}
		return fwRule{Unknown: "not as the helper writes it (" + strings.Join(names, ", ") + ")"}
	}
	set := func(field *string, v string) bool {
		if *field != "" {
			return false
		}
		*field = v
		return true
	}
	ipv4, arp := false, false
	for i := 0; i < len(exprs); i++ {
		if _, ok := exprs[i].(*expr.Masq); ok {
			if i != len(exprs)-1 || r.Verdict != "" {
				return unknown()
			}
			r.Verdict = VerdictMasquerade
			continue
		}
		if _, ok := exprs[i].(*expr.Notrack); ok {
			if i != len(exprs)-1 || r.Verdict != "" {
				return unknown()
			}
			r.Verdict = VerdictNotrack
			continue
		}
		// Three expressions: a load, a mask, a comparison.
		if i+2 < len(exprs) {
			if bw, ok := exprs[i+1].(*expr.Bitwise); ok {
				cmp, ok := exprs[i+2].(*expr.Cmp)
				if !ok {
					return unknown()
				}
				switch e := exprs[i].(type) {
				case *expr.Ct:
					if e.Key != expr.CtKeySTATE || r.Reply || cmp.Op != expr.CmpOpNeq {
						return unknown()
					}
					r.Reply = true
				case *expr.Payload:
					if e.Base == expr.PayloadBaseTransportHeader && e.Offset == offTCPFlags && e.Len == 1 && !r.ACK &&
						bytes.Equal(bw.Mask, []byte{tcpACK}) && cmp.Op == expr.CmpOpEq && bytes.Equal(cmp.Data, []byte{tcpACK}) {
						r.ACK = true
						break
					}
					if e.Base != expr.PayloadBaseNetworkHeader || e.Offset != offSAddr || e.Len != 4 || !ipv4 ||
						r.SNet.IsValid() || len(cmp.Data) != 4 || len(bw.Mask) != 4 {
						return unknown()
					}
					ones, _ := net.IPMask(bw.Mask).Size()
					r.SNet = netip.PrefixFrom(netip.AddrFrom4([4]byte(cmp.Data)), ones)
				default:
					return unknown()
				}
				i += 2
				continue
			}
		}
		if v, ok := exprs[i].(*expr.Verdict); ok {
			if i != len(exprs)-1 || r.Verdict != "" {
				return unknown()
			}
			switch v.Kind {
			case expr.VerdictAccept:
				r.Verdict = VerdictAccept
			case expr.VerdictDrop:
				r.Verdict = VerdictDrop
			default:
				return unknown()
			}
			continue
		}
		if i+1 >= len(exprs) {
			return unknown()
		}
		cmp, ok := exprs[i+1].(*expr.Cmp)
		if !ok || cmp.Register != reg {
			return unknown()
		}
		i++
		eq := cmp.Op == expr.CmpOpEq
		if !eq && cmp.Op != expr.CmpOpNeq {
			return unknown()
		}
		ok = false
		switch e := exprs[i-1].(type) {
		case *expr.Meta:
			if e.Register != reg || e.SourceRegister {
				break
			}
			switch {
			case e.Key == expr.MetaKeyIIFNAME && eq:
				ok = set(&r.IIF, ifnameOf(cmp.Data))
			case e.Key == expr.MetaKeyIIFNAME:
				ok = set(&r.NotIIF, ifnameOf(cmp.Data))
			case e.Key == expr.MetaKeyOIFNAME && eq:
				ok = set(&r.OIF, ifnameOf(cmp.Data))
			case e.Key == expr.MetaKeyOIFNAME:
				ok = set(&r.NotOIF, ifnameOf(cmp.Data))
			case e.Key == expr.MetaKeyNFPROTO && eq && bytes.Equal(cmp.Data, []byte{unix.NFPROTO_IPV4}) && !ipv4:
				ipv4, ok = true, true
			case e.Key == expr.MetaKeyPROTOCOL && eq && bytes.Equal(cmp.Data, etherTypeARP) && !arp:
				arp, ok = true, true
			case e.Key == expr.MetaKeyL4PROTO && eq && len(cmp.Data) == 1:
				for name, p := range fwProtocols {
					if p == cmp.Data[0] {
						ok = set(&r.Proto, name)
					}
				}
			}
		case *expr.Payload:
			if !eq || e.OperationType != expr.PayloadLoad || e.DestRegister != reg || int(e.Len) != len(cmp.Data) {
				break
			}
			d := cmp.Data
			switch {
			case e.Base == expr.PayloadBaseLLHeader && e.Offset == offEtherSAddr && e.Len == 6 && r.EtherSAddr == "":
				r.EtherSAddr, ok = net.HardwareAddr(d).String(), true
			case e.Base == expr.PayloadBaseLLHeader && e.Offset == offEtherDAddr && e.Len == 6 && r.EtherDAddr == "":
				r.EtherDAddr, ok = net.HardwareAddr(d).String(), true
			case e.Base == expr.PayloadBaseNetworkHeader && e.Offset == offARPTarget && e.Len == 4 && arp && !r.ARPTarget.IsValid():
				r.ARPTarget, ok = netip.AddrFrom4([4]byte(d)), true
			case e.Base == expr.PayloadBaseNetworkHeader && e.Offset == offSAddr && e.Len == 4 && ipv4 && !r.SAddr.IsValid():
				r.SAddr, ok = netip.AddrFrom4([4]byte(d)), true
			case e.Base == expr.PayloadBaseNetworkHeader && e.Offset == offDAddr && e.Len == 4 && ipv4 && !r.DAddr.IsValid():
				r.DAddr, ok = netip.AddrFrom4([4]byte(d)), true
			case e.Base != expr.PayloadBaseTransportHeader:
			case e.Offset == offSPort && e.Len == 2 && r.SPort == 0:
				r.SPort, ok = binary.BigEndian.Uint16(d), true
			case e.Offset == offDPort && e.Len == 2 && r.DPort == 0:
				r.DPort, ok = binary.BigEndian.Uint16(d), true
			case e.Offset == offVNI && e.Len == 3 && r.VNI == 0:
				r.VNI, ok = uint32(d[0])<<16|uint32(d[1])<<8|uint32(d[2]), true
			case e.Offset == offGRE && e.Len == 8 && binary.BigEndian.Uint32(d) == greTEBKey && r.GREKey == 0:
				r.GREKey, ok = binary.BigEndian.Uint32(d[4:]), true
			}
		}
		if !ok {
			return unknown()
		}
	}
	if r.Verdict == "" {
		return unknown()
	}
	// What encodeRule writes again must be these very expressions:
	// anything else (a port without its protocol, an IPv4 address
	// without the family) is not a rule of the helper's.
	again, err := encodeRule(r)
	if err != nil || !sameExprs(again, exprs) {
		return unknown()
	}
	return r
}

// ctReplyMask is ct state's established and related bits, as the kernel
// keeps them (host byte order).
func ctReplyMask() []byte {
	return binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED)
}

func ifnameOf(data []byte) string {
	if len(data) == unix.IFNAMSIZ {
		return string(bytes.TrimRight(data, "\x00"))
	}
	return string(data) + "*"
}

// sameExprs compares expressions by their netlink encoding.
func sameExprs(a, b []expr.Any) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, err1 := expr.Marshal(byte(nftables.TableFamilyINet), a[i])
		y, err2 := expr.Marshal(byte(nftables.TableFamilyINet), b[i])
		if err1 != nil || err2 != nil || !bytes.Equal(x, y) {
			return false
		}
	}
	return true
}

// ipv6Conf is where the kernel keeps a link's IPv6 settings; it is missing
// when the kernel runs without IPv6.
const ipv6Conf = "/proc/sys/net/ipv6/conf"

// ipv6Drift reads the IPv6 settings of links and returns the ones that
// differ from ipv6Settings, as (link, key, value now). A link that does
// not exist is skipped: the link's own drift says so.
func ipv6Drift(links []string) ([][3]string, error) {
	var out [][3]string
	for _, l := range links {
		for _, s := range ipv6Settings {
			b, err := os.ReadFile(filepath.Join(ipv6Conf, l, s.Key))
			if errors.Is(err, fs.ErrNotExist) {
				break
			}
			if err != nil {
				return out, fmt.Errorf("read ipv6 %s of %q: %w", s.Key, l, err)
			}
			if v := strings.TrimSpace(string(b)); v != s.Value {
				out = append(out, [3]string{l, s.Key, v})
			}
		}
	}
	return out, nil
}

// setIPv6Off turns IPv6 off on links and says what it changed.
func setIPv6Off(links []string) ([]string, error) {
	drift, err := ipv6Drift(links)
	if err != nil {
		return nil, err
	}
	var changes []string
	var errs []error
	for _, d := range drift {
		for _, s := range ipv6Settings {
			if s.Key != d[1] {
				continue
			}
			if err := os.WriteFile(filepath.Join(ipv6Conf, d[0], s.Key), []byte(s.Value+"\n"), 0o644); err != nil {
				errs = append(errs, fmt.Errorf("set ipv6 %s of %q to %s: %w", s.Key, d[0], s.Value, err))
				continue
			}
			changes = append(changes, fmt.Sprintf("set %s ipv6 %s %s", d[0], s.Key, s.Value))
		}
	}
	return changes, errors.Join(errs...)
}

// applyFirewall converges the firewall table for spec, whose links are
// p's. The links need not exist yet. (setIPv6Off, once they do, turns IPv6
// off on them.)
func (h *Helper) applyFirewall(ctx context.Context, spec helperapi.Spec, p plan) ([]string, error) {
	changes, err := convergeFirewall(ctx, nftTable{}, makeFirewall(spec, p))
	if err != nil {
		return nil, fmt.Errorf("apply firewall: %w", err)
	}
	return changes, nil
}

// firewallDrift is how the firewall table and the links' IPv6 settings
// differ from what spec wants.
func (h *Helper) firewallDrift(ctx context.Context, spec helperapi.Spec, p plan) ([]helperapi.Drift, error) {
	have, err := nftTable{}.Table(ctx)
	if err != nil {
		return nil, err
	}
	var out []helperapi.Drift
	for _, d := range fwDiff(makeFirewall(spec, p), have) {
		out = append(out, helperapi.Drift{Link: "firewall", Problem: d})
	}
	v6, err := ipv6Drift(ipv6Off(p))
	for _, d := range v6 {
		out = append(out, helperapi.Drift{Link: d[0], Problem: fmt.Sprintf("ipv6 %s is %s, want IPv6 off", d[1], d[2])})
	}
	return out, err
}

// removeFirewall deletes the firewall table, if there is one. The links'
// IPv6 settings go with the links.
func (h *Helper) removeFirewall(ctx context.Context) error {
	t := nftTable{}
	have, err := t.Table(ctx)
	if err != nil || have == nil {
		return err
	}
	if err := t.Delete(ctx); err != nil {
		return err
	}
	h.log.Info("removed", "change", "firewall: table inet "+FirewallTable)
	return nil
}
