package plumbing

import (
	"net/netip"
	"slices"
)

// opKind is one kind of kernel call the link table makes.
type opKind int

const (
	opAdd opKind = iota
	opDelete
	opMTU
	opMaster
	opNoMaster
	opMAC
	opIsolated
	opAlias
	opUp
	opFDBAdd
	opFDBDelete
	opAddrAdd
	opAddrDelete
	opRouteAdd
	opRouteDelete
)

// linkOp is one kernel call of a Change. The kernel table executes these
// (kernelTable.Set, Add, Delete) and the dry run renders the same ones as
// `ip` and `bridge` commands (opCommand), so the two cannot drift.
type linkOp struct {
	Kind opKind
	// Link is the link acted on: the whole desired link for opAdd, the
	// one that exists for opDelete, the desired one otherwise.
	Link Link
	// On is opIsolated's and opUp's value.
	On bool
	// Addr is an FDB entry's peer; Prefix an address or a route.
	Addr   netip.Addr
	Prefix netip.Prefix
}

// changeOps lists the kernel calls that make c, have being the link as it
// is now (zero when there is none), in the order step makes them.
func changeOps(c Change, have Link) []linkOp {
	var ops []linkOp
	switch c.Op {
	case OpDelete:
		return []linkOp{{Kind: opDelete, Link: c.Link}}
	case OpSet:
		return setOps(have, c.Link)
	case OpReplace:
		ops = append(ops, linkOp{Kind: opDelete, Link: have})
	}
	ops = append(ops, linkOp{Kind: opAdd, Link: c.Link})
	return append(ops, setOps(Link{Name: c.Link.Name, Kind: c.Link.Kind}, c.Link)...)
}

// setOps lists the calls that change have's settable attributes to
// want's, in the order the kernel table makes them.
func setOps(have, want Link) []linkOp {
	var ops []linkOp
	add := func(k opKind) { ops = append(ops, linkOp{Kind: k, Link: want}) }
	if have.MTU != want.MTU {
		add(opMTU)
	}
	if have.Master != want.Master {
		if want.Master == "" {
			add(opNoMaster)
		} else {
			add(opMaster)
		}
	}
	if want.MAC != "" && have.MAC != want.MAC {
		add(opMAC)
	}
	if have.Isolated != want.Isolated && want.Master != "" {
		ops = append(ops, linkOp{Kind: opIsolated, Link: want, On: want.Isolated})
	}
	if have.Alias != want.Alias {
		add(opAlias)
	}
	if have.Up != want.Up {
		ops = append(ops, linkOp{Kind: opUp, Link: want, On: want.Up})
	}
	if want.Kind == KindVXLAN {
		for _, a := range want.FDB {
			if !slices.Contains(have.FDB, a) {
				ops = append(ops, linkOp{Kind: opFDBAdd, Link: want, Addr: a})
			}
		}
		for _, a := range have.FDB {
			if !slices.Contains(want.FDB, a) {
				ops = append(ops, linkOp{Kind: opFDBDelete, Link: want, Addr: a})
			}
		}
	}
	if want.Kind == KindWireGuard || want.Kind == KindBridge {
		ops = append(ops, prefixOps(want, have.Addrs, want.Addrs, opAddrAdd, opAddrDelete)...)
		ops = append(ops, prefixOps(want, have.Routes, want.Routes, opRouteAdd, opRouteDelete)...)
	}
	return ops
}

// prefixOps adds what want has and have has not, then deletes the rest.
func prefixOps(l Link, have, want []netip.Prefix, add, del opKind) []linkOp {
	var ops []linkOp
	for _, p := range want {
		if !slices.Contains(have, p) {
			ops = append(ops, linkOp{Kind: add, Link: l, Prefix: p})
		}
	}
	for _, p := range have {
		if !slices.Contains(want, p) {
			ops = append(ops, linkOp{Kind: del, Link: l, Prefix: p})
		}
	}
	return ops
}
