package plumbing

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/ipc"
	"golang.zx2c4.com/wireguard/tun"
)

// capabilities are what the kernel can make, found by trying once.
type capabilities struct {
	KernelWireGuard bool
	Gretap          bool
}

// Names of the throwaway links that probe the kernel; they carry Prefix,
// so a probe left behind by a crash is removed by the next Apply.
const (
	probeWireGuard = "btprobe-wg"
	probeGretap    = "btprobe-gt"
)

func (k *kernelTable) capabilities() capabilities {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.caps != nil {
		return *k.caps
	}
	try := func(l netlink.Link) bool {
		if err := k.h.LinkAdd(l); err != nil {
			return false
		}
		_ = k.h.LinkDel(l)
		return true
	}
	c := capabilities{}
	if l, err := k.h.LinkByName(WireGuardName); err == nil && l.Type() == "wireguard" {
		c.KernelWireGuard = true
	} else {
		c.KernelWireGuard = try(&netlink.Wireguard{LinkAttrs: netlink.LinkAttrs{Name: probeWireGuard}})
	}
	c.Gretap = try(&netlink.Gretap{LinkAttrs: netlink.LinkAttrs{Name: probeGretap},
		Local: net.IPv4(127, 0, 0, 1), Remote: net.IPv4(127, 0, 0, 2)})
	k.caps = &c
	return c
}

// addWireGuard makes the WireGuard device: the kernel's where it has one,
// otherwise wireguard-go inside this process, configured through the same
// UAPI that wgctrl speaks.
func (k *kernelTable) addWireGuard(l Link) error {
	if k.capabilities().KernelWireGuard {
		err := k.h.LinkAdd(&netlink.Wireguard{LinkAttrs: netlink.LinkAttrs{Name: l.Name, MTU: l.MTU}})
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EOPNOTSUPP) {
			return fmt.Errorf("add wireguard %q: %w", l.Name, err)
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.userspace != nil {
		k.userspace.Close()
	}
	u, err := startUserspace(l.Name, l.MTU)
	if err != nil {
		return err
	}
	k.userspace = u
	k.log.Info("started userspace wireguard", "device", l.Name, "mtu", l.MTU, "link", u.kind)
	return nil
}

// wireGuardReport describes the WireGuard device as the table runs it:
// in the kernel, or in user space over a link of the kind the device uses
// (helperapi.UserspaceTAP or UserspaceTUN).
func (k *kernelTable) wireGuardReport(name string, mtu int, publicKey string, port int) helperapi.WireGuardReport {
	k.mu.Lock()
	defer k.mu.Unlock()
	r := helperapi.WireGuardReport{Name: name, MTU: mtu, PublicKey: publicKey, ListenPort: port}
	if k.userspace != nil {
		r.Userspace, r.Device = true, k.userspace.kind
	}
	return r
}

// addrsAndRoutes reads the WireGuard device's IPv4 addresses and the
// routes the helper put on it (protocol static).
func (k *kernelTable) addrsAndRoutes(nl netlink.Link) ([]netip.Prefix, []netip.Prefix, error) {
	addrs, err := k.h.AddrList(nl, netlink.FAMILY_V4)
	if err != nil {
		return nil, nil, fmt.Errorf("list addresses of %q: %w", nl.Attrs().Name, err)
	}
	var as, rs []netip.Prefix
	for _, a := range addrs {
		if p, ok := prefixOf(a.IPNet); ok {
			as = append(as, p)
		}
	}
	routes, err := k.h.RouteList(nl, netlink.FAMILY_V4)
	if err != nil {
		return nil, nil, fmt.Errorf("list routes of %q: %w", nl.Attrs().Name, err)
	}
	for _, r := range routes {
		if r.Protocol != unix.RTPROT_STATIC || r.Dst == nil {
			continue
		}
		if p, ok := prefixOf(r.Dst); ok {
			rs = append(rs, p.Masked())
		}
	}
	return as, rs, nil
}

// setPrefix adds or deletes an address or a route of Set's (see setOps).
func (k *kernelTable) setPrefix(nl netlink.Link, op linkOp) error {
	name, p := nl.Attrs().Name, op.Prefix
	route := &netlink.Route{LinkIndex: nl.Attrs().Index, Dst: ipNet(p), Protocol: unix.RTPROT_STATIC,
		Scope: netlink.SCOPE_UNIVERSE}
	switch op.Kind {
	case opAddrAdd:
		if err := k.h.AddrReplace(nl, &netlink.Addr{IPNet: ipNet(p)}); err != nil {
			return fmt.Errorf("add address %s to %q: %w", p, name, err)
		}
	case opAddrDelete:
		if err := k.h.AddrDel(nl, &netlink.Addr{IPNet: ipNet(p)}); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("delete address %s from %q: %w", p, name, err)
		}
	case opRouteAdd:
		if err := k.h.RouteReplace(route); err != nil {
			return fmt.Errorf("add route %s via %q: %w", p, name, err)
		}
	case opRouteDelete:
		if err := k.h.RouteDel(route); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("delete route %s via %q: %w", p, name, err)
		}
	}
	return nil
}

// userspaceDevice is wireguard-go running inside the helper daemon, for
// kernels without WireGuard. It lives as long as the process.
type userspaceDevice struct {
	dev  *device.Device
	uapi net.Listener
	done chan struct{}
	kind string // helperapi.UserspaceTAP or UserspaceTUN
}

func startUserspace(name string, mtu int) (*userspaceDevice, error) {
	tdev, err := createUserspaceLink(name, mtu)
	if err != nil {
		return nil, err
	}
	// Read ahead (tunbatch_linux.go); without memory for that, as it is.
	rdev, _ := newReadAheadTUN(tdev)
	// Errors only: wireguard-go's verbose log would print peer keys.
	dev := device.NewDevice(rdev, conn.NewDefaultBind(), device.NewLogger(device.LogLevelError, name+": "))
	f, err := ipc.UAPIOpen(name)
	if err != nil {
		dev.Close()
		return nil, fmt.Errorf("open wireguard control socket for %q: %w", name, err)
	}
	l, err := ipc.UAPIListen(name, f)
	if err != nil {
		dev.Close()
		return nil, fmt.Errorf("listen on wireguard control socket for %q: %w", name, err)
	}
	u := &userspaceDevice{dev: dev, uapi: l, done: make(chan struct{}), kind: helperapi.UserspaceTUN}
	if _, ok := tdev.(*wgTAP); ok {
		u.kind = helperapi.UserspaceTAP
	}
	go func() {
		defer close(u.done)
		for {
			c, err := l.Accept()
			if err != nil {
				return // closed
			}
			go dev.IpcHandle(c)
		}
	}()
	if err := dev.Up(); err != nil {
		u.Close()
		return nil, fmt.Errorf("bring up userspace wireguard %q: %w", name, err)
	}
	return u, nil
}

// createUserspaceLink makes the link of a userspace WireGuard device: a tap
// with UDP-tunnel offloads where the kernel has them, else a tun.
func createUserspaceLink(name string, mtu int) (tun.Device, error) {
	if os.Getenv(PlainTUNEnv) != "1" {
		t, err := createWGTAP(name, mtu)
		if err == nil {
			return t, nil
		}
		if !errors.Is(err, errNoTunnelOffload) {
			return nil, fmt.Errorf("create tap %q for userspace wireguard (is /dev/net/tun there?): %w", name, err)
		}
	}
	tdev, err := tun.CreateTUN(name, mtu)
	if err != nil {
		return nil, fmt.Errorf("create tun %q for userspace wireguard (is /dev/net/tun there?): %w", name, err)
	}
	return tdev, nil
}

// Close stops the device; its tun link disappears with it.
func (u *userspaceDevice) Close() {
	u.uapi.Close()
	<-u.done
	u.dev.Close()
}

// uplink finds the link that carries traffic to the peers: the route to
// the first peer endpoint, else the default route, else the first link up
// with an address that is not ours.
func (k *kernelTable) uplink(endpoints []netip.Addr) (string, int) {
	byIndex := func(i int) (string, int, bool) {
		l, err := k.h.LinkByIndex(i)
		if err != nil {
			return "", 0, false
		}
		return l.Attrs().Name, l.Attrs().MTU, true
	}
	for _, e := range endpoints {
		rs, err := k.h.RouteGet(e.AsSlice())
		if err == nil && len(rs) > 0 {
			if n, m, ok := byIndex(rs[0].LinkIndex); ok && !ours(n) {
				return n, m
			}
		}
	}
	if rs, err := k.h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: nil},
		netlink.RT_FILTER_DST); err == nil {
		for _, r := range rs {
			if n, m, ok := byIndex(r.LinkIndex); ok && !ours(n) {
				return n, m
			}
		}
	}
	all, err := k.allLinks()
	if err != nil {
		return "", 0
	}
	for _, l := range all {
		a := l.Attrs()
		if ours(a.Name) || a.Flags&net.FlagLoopback != 0 || a.Flags&net.FlagUp == 0 {
			continue
		}
		if addrs, err := k.h.AddrList(l, netlink.FAMILY_V4); err == nil && len(addrs) > 0 {
			return a.Name, a.MTU
		}
	}
	return "", 0
}

// addresses lists the machine's global unicast addresses on links that
// are not the helper's own.
func (k *kernelTable) addresses() []string {
	out := []string{}
	all, err := k.allLinks()
	if err != nil {
		return out
	}
	for _, l := range all {
		if ours(l.Attrs().Name) {
			continue
		}
		addrs, err := k.h.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap().IsGlobalUnicast() {
				out = append(out, ip.Unmap().String())
			}
		}
	}
	return out
}

// wgErrno is how wgctrl reports a userspace device's refusal: the errno
// as a number only ("wguser: errno=-98").
var wgErrno = regexp.MustCompile(`errno=-?(\d+)`)

// explainErrno adds what the errno in a userspace WireGuard device's
// refusal means, e.g. "address already in use" for a taken listen port.
func explainErrno(err error) error {
	m := wgErrno.FindStringSubmatch(err.Error())
	if m == nil {
		return err
	}
	n, convErr := strconv.Atoi(m[1])
	if convErr != nil || n == 0 {
		return err
	}
	return fmt.Errorf("%w (%v)", err, unix.Errno(n))
}
