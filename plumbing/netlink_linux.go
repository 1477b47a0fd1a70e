package plumbing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// kernelTable is the link table of the current network namespace, read and
// changed through netlink.
type kernelTable struct {
	h *netlink.Handle
	// ports dumps the bridge ports' flags (portsIsolated), in the
	// namespace h is in.
	ports *nl.SocketHandle
	log   *slog.Logger

	mu        sync.Mutex
	userspace *userspaceDevice // the in-process WireGuard device, if any
	caps      *capabilities
}

func newKernelTable(log *slog.Logger) (*kernelTable, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	s, err := nl.GetNetlinkSocketAt(netns.None(), netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	return &kernelTable{h: h, ports: &nl.SocketHandle{Socket: s}, log: log}, nil
}

func (k *kernelTable) close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.userspace != nil {
		k.userspace.Close()
		k.userspace = nil
	}
	k.h.Close()
	k.ports.Close()
}

// allLinks lists every link, retrying a dump the kernel interrupted.
func (k *kernelTable) allLinks() ([]netlink.Link, error) {
	var err error
	for range 5 {
		var ls []netlink.Link
		ls, err = k.h.LinkList()
		if err == nil {
			return ls, nil
		}
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	return nil, fmt.Errorf("list links: %w", err)
}

// linkMTU is one link's MTU, read without listing the others (a machine
// in a large cloud has hundreds of tunnel ports).
func (k *kernelTable) linkMTU(name string) (int, error) {
	l, err := k.h.LinkByName(name)
	if err != nil {
		return 0, fmt.Errorf("find %q: %w", name, err)
	}
	return l.Attrs().MTU, nil
}

func (k *kernelTable) Links(ctx context.Context) ([]Link, error) {
	all, err := k.allLinks()
	if err != nil {
		return nil, err
	}
	isolated, err := k.portsIsolated()
	if err != nil {
		return nil, err
	}
	names := map[int]string{}
	for _, l := range all {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	var out []Link
	for _, nl := range all {
		a := nl.Attrs()
		if !ours(a.Name) {
			continue
		}
		l := Link{Name: a.Name, Kind: nl.Type(), MTU: a.MTU, Alias: a.Alias, Up: a.Flags&net.FlagUp != 0}
		if a.MasterIndex != 0 {
			l.Master = names[a.MasterIndex]
			l.Isolated = isolated[a.Index]
		}
		switch v := nl.(type) {
		case *netlink.Gretap:
			l.Key, l.Local, l.Remote = v.IKey, addrOf(v.Local), addrOf(v.Remote)
		case *netlink.Vxlan:
			l.Key, l.Local, l.Dev, l.Port, l.Learning = uint32(v.VxlanId), addrOf(v.SrcAddr), names[v.VtepDevIndex], v.Port, v.Learning
			if l.FDB, err = k.fdb(nl); err != nil {
				return nil, err
			}
		case *netlink.Bridge:
			l.MAC = a.HardwareAddr.String()
			if l.Addrs, _, err = k.addrsAndRoutes(nl); err != nil {
				return nil, err
			}
		case *netlink.Wireguard, *netlink.Tuntap:
			if a.Name != WireGuardName {
				break
			}
			l.Kind = KindWireGuard
			if l.Addrs, l.Routes, err = k.addrsAndRoutes(nl); err != nil {
				return nil, err
			}
		}
		out = append(out, l)
	}
	return out, nil
}

func addrOf(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

func (k *kernelTable) Add(ctx context.Context, l Link) error {
	attrs := netlink.LinkAttrs{Name: l.Name, MTU: l.MTU}
	var nl netlink.Link
	switch l.Kind {
	case KindWireGuard:
		return k.addWireGuard(l)
	case KindBridge:
		nl = &netlink.Bridge{LinkAttrs: attrs}
	case KindGretap:
		nl = &netlink.Gretap{LinkAttrs: attrs, IKey: l.Key, OKey: l.Key, PMtuDisc: 1,
			Local: l.Local.AsSlice(), Remote: l.Remote.AsSlice()}
	case KindVXLAN:
		dev, err := k.h.LinkByName(l.Dev)
		if err != nil {
			return fmt.Errorf("find %q for vxlan %q: %w", l.Dev, l.Name, err)
		}
		nl = &netlink.Vxlan{LinkAttrs: attrs, VxlanId: int(l.Key), VtepDevIndex: dev.Attrs().Index,
			SrcAddr: l.Local.AsSlice(), Port: l.Port, Learning: l.Learning}
	default:
		return fmt.Errorf("add %q: unknown kind %q", l.Name, l.Kind)
	}
	if err := k.h.LinkAdd(nl); err != nil {
		return fmt.Errorf("add %s %q: %w", l.Kind, l.Name, err)
	}
	return nil
}

func (k *kernelTable) Set(ctx context.Context, have, want Link) error {
	nl, err := k.h.LinkByName(want.Name)
	if err != nil {
		return fmt.Errorf("find %q: %w", want.Name, err)
	}
	for _, op := range setOps(have, want) {
		if err := k.set(nl, op); err != nil {
			return err
		}
	}
	return nil
}

// set makes one of Set's calls (see setOps).
func (k *kernelTable) set(nl netlink.Link, op linkOp) error {
	want := op.Link
	switch op.Kind {
	case opMTU:
		if err := k.h.LinkSetMTU(nl, want.MTU); err != nil {
			return fmt.Errorf("set mtu of %q to %d: %w", want.Name, want.MTU, err)
		}
	case opMaster, opNoMaster:
		var err error
		if op.Kind == opNoMaster {
			err = k.h.LinkSetNoMaster(nl)
		} else {
			var br netlink.Link
			if br, err = k.h.LinkByName(want.Master); err == nil {
				err = k.h.LinkSetMasterByIndex(nl, br.Attrs().Index)
			}
		}
		if err != nil {
			return fmt.Errorf("set master of %q to %q: %w", want.Name, want.Master, err)
		}
	case opMAC:
		mac, err := net.ParseMAC(want.MAC)
		if err == nil {
			err = k.h.LinkSetHardwareAddr(nl, mac)
		}
		if err != nil {
			return fmt.Errorf("set mac of %q to %s: %w", want.Name, want.MAC, err)
		}
	case opIsolated:
		if err := k.h.LinkSetIsolated(nl, op.On); err != nil {
			return fmt.Errorf("set isolated of %q: %w", want.Name, err)
		}
	case opAlias:
		if err := k.h.LinkSetAlias(nl, want.Alias); err != nil {
			return fmt.Errorf("set alias of %q: %w", want.Name, err)
		}
	case opUp:
		set := k.h.LinkSetDown
		if op.On {
			set = k.h.LinkSetUp
		}
		if err := set(nl); err != nil {
			return fmt.Errorf("set %q up=%v: %w", want.Name, op.On, err)
		}
	case opFDBAdd:
		if err := k.h.NeighAppend(fdbEntry(nl, op.Addr)); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("add fdb entry to %s on %q: %w", op.Addr, want.Name, err)
		}
	case opFDBDelete:
		if err := k.h.NeighDel(fdbEntry(nl, op.Addr)); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("delete fdb entry to %s on %q: %w", op.Addr, want.Name, err)
		}
	case opAddrAdd, opAddrDelete, opRouteAdd, opRouteDelete:
		return k.setPrefix(nl, op)
	default:
		return fmt.Errorf("set %q: unknown change %d", want.Name, op.Kind)
	}
	return nil
}

func (k *kernelTable) Delete(ctx context.Context, l Link) error {
	if l.Kind == KindWireGuard {
		k.mu.Lock()
		if k.userspace != nil {
			k.userspace.Close()
			k.userspace = nil
		}
		k.mu.Unlock()
	}
	nl, err := k.h.LinkByName(l.Name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("find %q: %w", l.Name, err)
	}
	if err := k.h.LinkDel(nl); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete %s %q: %w", l.Kind, l.Name, err)
	}
	return nil
}

// fdb lists a VXLAN device's flood entries: the all-zero MAC towards each
// peer.
func (k *kernelTable) fdb(nl netlink.Link) ([]netip.Addr, error) {
	neighs, err := k.h.NeighList(nl.Attrs().Index, unix.AF_BRIDGE)
	if err != nil {
		return nil, fmt.Errorf("list fdb of %q: %w", nl.Attrs().Name, err)
	}
	var out []netip.Addr
	for _, n := range neighs {
		if n.IP != nil && isZeroMAC(n.HardwareAddr) {
			out = append(out, addrOf(n.IP))
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out, nil
}

func isZeroMAC(m net.HardwareAddr) bool {
	for _, b := range m {
		if b != 0 {
			return false
		}
	}
	return len(m) == 6
}

// fdbEntry is the flood entry towards a on VXLAN device nl: the all-zero
// MAC, permanent.
func fdbEntry(nl netlink.Link, a netip.Addr) *netlink.Neigh {
	return &netlink.Neigh{LinkIndex: nl.Attrs().Index, Family: unix.AF_BRIDGE,
		State: netlink.NUD_NOARP | netlink.NUD_PERMANENT, Flags: netlink.NTF_SELF,
		IP: a.AsSlice(), HardwareAddr: make(net.HardwareAddr, 6)}
}
