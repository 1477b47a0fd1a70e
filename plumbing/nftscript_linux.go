package plumbing

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// nftScript renders t as the `nft -f -` input that replaces the table in
// one transaction, as nftTable.Write does: make sure it exists, delete it,
// make it again.
func nftScript(t fwTable) string {
	var b strings.Builder
	name := t.name()
	fmt.Fprintf(&b, "nft -f - <<'EOF'\ntable %s\ndelete table %s\ntable %s {\n", name, name, name)
	for _, c := range t.Chains {
		typ := c.Type
		if typ == "" {
			typ = "filter"
		}
		fmt.Fprintf(&b, "  chain %s {\n    type %s hook %s priority %d; policy %s;\n", c.Name, typ, c.Hook, c.Priority, c.Policy)
		for _, r := range c.Rules {
			fmt.Fprintf(&b, "    %s\n", nftRule(r))
		}
		b.WriteString("  }\n")
	}
	b.WriteString("}\nEOF")
	return b.String()
}

// nftDelete deletes a table of the helper's.
func nftDelete(table string) string { return "nft delete table " + table }

// guardScript renders the port guard's table as writeGuard makes it.
func guardScript(rules []guardRule) string {
	var b strings.Builder
	name := "bridge " + GuardTable
	fmt.Fprintf(&b, "nft -f - <<'EOF'\ntable %s\ndelete table %s\ntable %s {\n", name, name, name)
	fmt.Fprintf(&b, "  chain %s {\n    type filter hook %s priority %d; policy %s;\n", ChainGuard, guardHook, guardPriority, VerdictAccept)
	for _, r := range rules {
		fmt.Fprintf(&b, "    %s\n", nftGuardRule(r))
	}
	b.WriteString("  }\n}\nEOF")
	return b.String()
}

// nftRule is r in nft's own input: its String, but for the matches nft
// has no words for in every version (a VXLAN network id, a GRE key),
// which are the raw payload matches encodeRule writes.
func nftRule(r fwRule) string {
	s := r.String()
	if r.VNI != 0 {
		s = strings.Replace(s, fmt.Sprintf("vxlan vni %d", r.VNI), fmt.Sprintf("@th,%d,24 %d", offVNI*8, r.VNI), 1)
	}
	if r.ARPTarget.IsValid() {
		s = strings.Replace(s, "arp daddr ip "+r.ARPTarget.String(),
			fmt.Sprintf("meta protocol arp @nh,%d,32 %s", offARPTarget*8, hexBytes(r.ARPTarget.AsSlice())), 1)
	}
	if r.Proto == "gre" && r.GREKey != 0 {
		s = strings.Replace(s, fmt.Sprintf("gre key %d", r.GREKey),
			fmt.Sprintf("meta l4proto gre @th,%d,64 %#x", offGRE*8, uint64(greTEBKey)<<32|uint64(r.GREKey)), 1)
	}
	return s
}

// nftGuardRule is a port guard rule in nft's input, match for match as
// encodeGuard writes it (raw payload matches: nft's own words for them
// add checks of their own). One rule cannot be written exactly: the ARP
// sender address is loaded once and compared twice by the helper, and
// twice by this rule, to the same effect.
func nftGuardRule(r guardRule) string {
	f := []string{"iifname", strconv.Quote(r.Port)}
	raw := func(base string, off, bits int, op string, b []byte) {
		f = append(f, fmt.Sprintf("@%s,%d,%d", base, off*8, bits))
		if op != "" {
			f = append(f, op)
		}
		f = append(f, hexBytes(b))
	}
	if r.NotEtherSrc != nil {
		raw("ll", offEtherSrc, 48, "!=", r.NotEtherSrc)
	}
	if r.EtherType != 0 {
		raw("ll", offEtherType, 16, "", binary.BigEndian.AppendUint16(nil, r.EtherType))
	}
	if r.NotARPMAC != nil {
		raw("nh", offARPMAC, 48, "!=", r.NotARPMAC)
	}
	if a := r.NotARPAddr; a.IsValid() {
		raw("nh", offARPAddr, 32, "!=", a.AsSlice())
		raw("nh", offARPAddr, 32, "!=", make([]byte, 4))
	}
	if a := r.NotIPSrc; a.IsValid() {
		raw("nh", offSAddr, 32, "!=", a.AsSlice())
	}
	if r.UDPSPort != 0 {
		f = append(f, "meta", "l4proto", "udp")
		raw("th", offSPort, 16, "", binary.BigEndian.AppendUint16(nil, r.UDPSPort))
	}
	return strings.Join(append(f, r.Verdict), " ")
}

// hexBytes is b as one hexadecimal number, as nft reads a raw payload's
// value.
func hexBytes(b []byte) string { return "0x" + hex.EncodeToString(b) }
