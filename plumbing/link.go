package plumbing

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Link kinds the helper makes.
const (
	KindWireGuard = "wireguard"
	KindBridge    = "bridge"
	KindGretap    = "gretap"
	KindVXLAN     = "vxlan"
)

// VXLANPort is the UDP port VXLAN uses inside the mesh.
const VXLANPort = 4789

// PlainTUNEnv, set to 1 in the helper's environment, makes the userspace
// WireGuard device wireguard-go's own tun even where the kernel's tap
// offers UDP-tunnel segmentation (wgtap_linux.go): for comparing the two,
// and a way back should the tap misbehave somewhere.
const PlainTUNEnv = "BUTTER_USERSPACE_TUN"

// Link is one network device as the helper sees it: the desired state
// computed from a Spec, or the observed state read from the kernel.
type Link struct {
	Name     string
	Kind     string
	MTU      int
	Master   string // the bridge this link is a port of
	Isolated bool   // a bridge port that never forwards to another isolated port
	Alias    string // a note for people reading `ip link`
	Up       bool

	// Tunnel identity: changing any of it replaces the link.
	Key    uint32     // GRE key or VXLAN VNI
	Local  netip.Addr // tunnel source (the mesh address)
	Remote netip.Addr // gretap: the peer's mesh address
	Dev    string     // vxlan: the device it rides on
	Port   int        // vxlan: UDP destination port
	// Learning (vxlan) fills the device's forwarding table (MAC address
	// → peer) from the frames it receives. Without it the device sends
	// every frame to every peer of its flood list.
	Learning bool

	FDB   []netip.Addr   // vxlan: the peers' mesh addresses (all-zero MAC entries)
	Addrs []netip.Prefix // wireguard: the mesh address; bridge: the network's gateway
	// MAC is a bridge's own address when the plan sets it (the network's
	// gateway MAC); "" leaves the kernel's.
	MAC    string
	Routes []netip.Prefix // wireguard: routed prefixes beyond the mesh
}

// identity tells whether two links are the same device, so that only
// settable attributes differ.
func (l Link) identity() string {
	return fmt.Sprintf("%s key=%d local=%s remote=%s dev=%s port=%d learning=%v", l.Kind, l.Key, l.Local, l.Remote, l.Dev, l.Port, l.Learning)
}

func (l Link) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", l.Kind, l.Name)
	switch l.Kind {
	case KindGretap:
		fmt.Fprintf(&b, " key %d local %s remote %s", l.Key, l.Local, l.Remote)
	case KindVXLAN:
		fmt.Fprintf(&b, " vni %d local %s dev %s port %d", l.Key, l.Local, l.Dev, l.Port)
		if !l.Learning {
			b.WriteString(" nolearning")
		}
	}
	fmt.Fprintf(&b, " mtu %d", l.MTU)
	if l.Kind == KindBridge && len(l.Addrs) > 0 {
		fmt.Fprintf(&b, " addr %s", joinPrefixes(l.Addrs))
	}
	if l.MAC != "" {
		fmt.Fprintf(&b, " mac %s", l.MAC)
	}
	if l.Master != "" {
		fmt.Fprintf(&b, " master %s", l.Master)
	}
	if l.Isolated {
		b.WriteString(" isolated")
	}
	return b.String()
}

// Op is what a Change does.
type Op string

const (
	OpAdd     Op = "add"
	OpSet     Op = "set"
	OpReplace Op = "replace"
	OpDelete  Op = "del"
)

// Change is one step that takes the kernel towards the desired links.
type Change struct {
	Op   Op
	Link Link   // the desired link (for del: the one to delete)
	What string // for set: which attributes, e.g. "mtu 1370"
}

func (c Change) String() string {
	switch c.Op {
	case OpSet:
		return fmt.Sprintf("set %s %s", c.Link.Name, c.What)
	case OpDelete:
		return fmt.Sprintf("del %s %s", c.Link.Kind, c.Link.Name)
	default:
		return fmt.Sprintf("%s %s", c.Op, c.Link)
	}
}

// rank orders links so that what others depend on comes first: the
// WireGuard device, then bridges, then the tunnels that are their ports.
func rank(kind string) int {
	switch kind {
	case KindWireGuard:
		return 0
	case KindBridge:
		return 1
	default:
		return 2
	}
}

func sortLinks(ls []Link) {
	slices.SortFunc(ls, func(a, b Link) int {
		if r := rank(a.Kind) - rank(b.Kind); r != 0 {
			return r
		}
		return strings.Compare(a.Name, b.Name)
	})
}

// diff lists the changes that turn have into want: adds and sets first, in
// dependency order, deletes last (ports before bridges, WireGuard last).
// Only links of ours are considered.
func diff(want, have []Link) []Change {
	haveBy := map[string]Link{}
	for _, l := range have {
		if ours(l.Name) {
			haveBy[l.Name] = l
		}
	}
	want = slices.Clone(want)
	sortLinks(want)
	wanted := map[string]bool{}
	var changes []Change
	for _, w := range want {
		wanted[w.Name] = true
		h, ok := haveBy[w.Name]
		switch {
		case !ok:
			changes = append(changes, Change{Op: OpAdd, Link: w})
		case h.identity() != w.identity():
			changes = append(changes, Change{Op: OpReplace, Link: w})
		default:
			if what := settable(h, w); what != "" {
				changes = append(changes, Change{Op: OpSet, Link: w, What: what})
			}
		}
	}
	var dels []Link
	for _, h := range have {
		if ours(h.Name) && !wanted[h.Name] {
			dels = append(dels, h)
		}
	}
	sortLinks(dels)
	slices.Reverse(dels)
	for _, d := range dels {
		changes = append(changes, Change{Op: OpDelete, Link: d})
	}
	return changes
}

// settable describes the settable attributes in which have differs from
// want, or "" when none do.
func settable(have, want Link) string {
	var what []string
	if have.MTU != want.MTU {
		what = append(what, fmt.Sprintf("mtu %d", want.MTU))
	}
	if have.Master != want.Master {
		if want.Master == "" {
			what = append(what, "nomaster")
		} else {
			what = append(what, "master "+want.Master)
		}
	}
	if want.MAC != "" && have.MAC != want.MAC {
		what = append(what, "mac "+want.MAC)
	}
	if have.Isolated != want.Isolated {
		what = append(what, fmt.Sprintf("isolated %s", onOff(want.Isolated)))
	}
	if have.Alias != want.Alias {
		what = append(what, fmt.Sprintf("alias %q", want.Alias))
	}
	if have.Up != want.Up {
		if want.Up {
			what = append(what, "up")
		} else {
			what = append(what, "down")
		}
	}
	if !sameAddrs(have.FDB, want.FDB) {
		what = append(what, "fdb "+joinAddrs(want.FDB))
	}
	if !samePrefixes(have.Addrs, want.Addrs) {
		what = append(what, "addr "+joinPrefixes(want.Addrs))
	}
	if !samePrefixes(have.Routes, want.Routes) {
		what = append(what, "routes "+joinPrefixes(want.Routes))
	}
	return strings.Join(what, " ")
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func sameAddrs(a, b []netip.Addr) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.SortFunc(a, netip.Addr.Compare)
	slices.SortFunc(b, netip.Addr.Compare)
	return slices.Equal(a, b)
}

func samePrefixes(a, b []netip.Prefix) bool {
	return slices.Equal(sortedStrings(a, netip.Prefix.String), sortedStrings(b, netip.Prefix.String))
}

func joinAddrs(as []netip.Addr) string { return joinSorted(as, netip.Addr.String) }

func joinPrefixes(ps []netip.Prefix) string { return joinSorted(ps, netip.Prefix.String) }

// sortedStrings is xs written with str, sorted: a set of values to compare
// or print.
func sortedStrings[T any](xs []T, str func(T) string) []string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = str(x)
	}
	slices.Sort(s)
	return s
}

// joinSorted is xs written with str, sorted and comma-separated, or
// "none".
func joinSorted[T any](xs []T, str func(T) string) string {
	s := sortedStrings(xs, str)
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ",")
}
