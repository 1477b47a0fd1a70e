package plumbing

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Rules in nf_tables terms: a fwRule encoded as the expressions the
// kernel keeps, and read back from them.

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
