//go:build linux

package realkernel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// probe is a stand-in for a VM on a private network: a network namespace
// whose eth0 is a veth with its other end on the network's bridge.
type probe struct {
	ns      netns.NsHandle
	ifindex int // of eth0 inside ns
	mac     net.HardwareAddr
	host    string // the bridge side, in the machine's namespace
	// hostIndex is host's ifindex.
	hostIndex int
}

// makeProbe makes a probe with addr on bridge, its links at mtu, as a VM
// would be given the network's MTU.
func makeProbe(id int, addr netip.Prefix, mtu int, bridge string) (*probe, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return nil, err
	}
	defer orig.Close()
	ns, err := netns.New() // and this thread is in it
	if err != nil {
		return nil, fmt.Errorf("new netns: %w", err)
	}
	if err := netns.Set(orig); err != nil {
		return nil, fmt.Errorf("back to the machine's netns: %w", err)
	}
	p := &probe{ns: ns, host: fmt.Sprintf("pr%dh", id)}
	peer := fmt.Sprintf("pr%dp", id)

	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return nil, err
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: p.host, MTU: mtu, MasterIndex: br.Attrs().Index}, PeerName: peer}
	if err := netlink.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("add veth %s: %w", p.host, err)
	}
	host, err := netlink.LinkByName(p.host)
	if err != nil {
		return nil, err
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return nil, err
	}
	// IPv6 off on the bridge port, as the helper daemon's port watch does
	// for a link that joins a bridge (the guest runs no daemon; without
	// this, helper check reports the port as drift).
	for key, v := range map[string]string{"disable_ipv6": "1", "accept_ra": "0"} {
		if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+p.host+"/"+key, []byte(v), 0o644); err != nil {
			return nil, err
		}
	}
	p.hostIndex = host.Attrs().Index
	inner, err := netlink.LinkByName(peer)
	if err != nil {
		return nil, err
	}
	if err := netlink.LinkSetMTU(inner, mtu); err != nil {
		return nil, err
	}
	if err := netlink.LinkSetNsFd(inner, int(ns)); err != nil {
		return nil, fmt.Errorf("move %s into the probe: %w", peer, err)
	}

	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	if inner, err = h.LinkByName(peer); err != nil {
		return nil, err
	}
	if err := h.LinkSetName(inner, "eth0"); err != nil {
		return nil, err
	}
	if err := h.AddrAdd(inner, &netlink.Addr{IPNet: ipNet(addr)}); err != nil {
		return nil, err
	}
	if err := h.LinkSetUp(inner); err != nil {
		return nil, err
	}
	if lo, err := h.LinkByName("lo"); err == nil {
		h.LinkSetUp(lo)
	}
	p.ifindex = inner.Attrs().Index
	p.mac = inner.Attrs().HardwareAddr
	return p, nil
}

// SetMTU sets the MTU of the probe's eth0 and of its port on the bridge.
func (p *probe) SetMTU(mtu int) error {
	host, err := netlink.LinkByIndex(p.hostIndex)
	if err != nil {
		return err
	}
	h, err := netlink.NewHandleAt(p.ns, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer h.Close()
	inner, err := h.LinkByIndex(p.ifindex)
	if err != nil {
		return err
	}
	// Raise the bridge side first, lower it last, so that the probe never
	// sends what its port would drop.
	if mtu > host.Attrs().MTU {
		if err := netlink.LinkSetMTU(host, mtu); err != nil {
			return fmt.Errorf("%s mtu %d: %w", p.host, mtu, err)
		}
	}
	if err := h.LinkSetMTU(inner, mtu); err != nil {
		return fmt.Errorf("probe eth0 mtu %d: %w", mtu, err)
	}
	if err := netlink.LinkSetMTU(host, mtu); err != nil {
		return fmt.Errorf("%s mtu %d: %w", p.host, mtu, err)
	}
	return nil
}

func (p *probe) Close() {
	if l, err := netlink.LinkByName(p.host); err == nil {
		netlink.LinkDel(l)
	}
	p.ns.Close()
}

// socket opens a socket inside the probe's namespace; it stays there
// whichever thread uses it later.
func (p *probe) socket(domain, typ, proto int) (int, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return -1, err
	}
	defer orig.Close()
	if err := netns.Set(p.ns); err != nil {
		return -1, err
	}
	fd, serr := unix.Socket(domain, typ|unix.SOCK_CLOEXEC, proto)
	if err := netns.Set(orig); err != nil {
		// This thread must not go back to the pool in the wrong
		// namespace: leave it locked, and it ends with its goroutine.
		runtime.LockOSThread()
		return -1, err
	}
	return fd, serr
}

// Ping sends ICMP echo requests with size bytes of payload to dst, one at
// a time, until one is answered (returning its round trip) or tries have
// gone unanswered. With df the request may not be fragmented: one too big
// for the probe's MTU fails at once with EMSGSIZE.
func (p *probe) Ping(dst netip.Addr, size int, df bool, tries int) (time.Duration, error) {
	fd, err := p.socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP)
	if err != nil {
		return 0, fmt.Errorf("icmp socket: %w", err)
	}
	defer unix.Close(fd)
	pmtu := unix.IP_PMTUDISC_DONT
	if df {
		pmtu = unix.IP_PMTUDISC_DO
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, pmtu); err != nil {
		return 0, err
	}
	tv := unix.NsecToTimeval((200 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return 0, err
	}
	id := uint16(rand.IntN(1 << 16))
	to := &unix.SockaddrInet4{Addr: dst.As4()}
	buf := make([]byte, 65536)
	var lastErr error
	for seq := uint16(1); int(seq) <= tries; seq++ {
		req := echoRequest(id, seq, size)
		sent := time.Now()
		if err := unix.Sendto(fd, req, 0, to); err != nil {
			if errors.Is(err, unix.EMSGSIZE) {
				return 0, fmt.Errorf("send %d-byte echo: %w", len(req), err)
			}
			lastErr = err
			time.Sleep(time.Second)
			continue
		}
		for time.Since(sent) < time.Second {
			n, from, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				continue // timeout tick, or an error worth retrying
			}
			src, ok := from.(*unix.SockaddrInet4)
			if !ok || netip.AddrFrom4(src.Addr) != dst {
				continue
			}
			if isEchoReply(buf[:n], id, seq, size) {
				return time.Since(sent).Round(10 * time.Microsecond), nil
			}
		}
		lastErr = fmt.Errorf("no reply from %s to %d tries", dst, seq)
	}
	return 0, lastErr
}

func echoRequest(id, seq uint16, size int) []byte {
	b := make([]byte, 8+size)
	b[0] = 8 // echo request
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	for i := 8; i < len(b); i++ {
		b[i] = byte(i)
	}
	binary.BigEndian.PutUint16(b[2:], checksum(b))
	return b
}

// isEchoReply checks a raw IPv4 packet for our echo reply, whole.
func isEchoReply(pkt []byte, id, seq uint16, size int) bool {
	if len(pkt) < 20 {
		return false
	}
	ihl := int(pkt[0]&0x0f) * 4
	if len(pkt) < ihl+8 {
		return false
	}
	icmp := pkt[ihl:]
	return icmp[0] == 0 && binary.BigEndian.Uint16(icmp[4:]) == id &&
		binary.BigEndian.Uint16(icmp[6:]) == seq && len(icmp) == 8+size
}

func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// listener counts frames of one EtherType arriving at the probe's eth0.
type listener struct{ fd int }

func (p *probe) Listen(etherType uint16) (*listener, error) {
	fd, err := packetSocket(p.socket, p.ifindex, etherType)
	if err != nil {
		return nil, err
	}
	return &listener{fd}, nil
}

// Count counts incoming frames carrying payload during window, stopping
// early at max. Frames this probe sent itself are not counted.
func (l *listener) Count(payload []byte, window time.Duration, max int) (int, error) {
	buf := make([]byte, 4096)
	n := 0
	for end := time.Now().Add(window); time.Now().Before(end) && n < max; {
		m, from, err := unix.Recvfrom(l.fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return n, err
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		if m >= 14 && bytes.Contains(buf[14:m], payload) {
			n++
		}
	}
	return n, nil
}

func (l *listener) Close() { unix.Close(l.fd) }

// Broadcast sends one Ethernet broadcast frame from the probe's eth0.
func (p *probe) Broadcast(etherType uint16, payload []byte) error {
	fd, err := p.socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
	if err != nil {
		return fmt.Errorf("packet socket: %w", err)
	}
	defer unix.Close(fd)
	frame := make([]byte, 14, 14+max(len(payload), 46))
	copy(frame, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(frame[6:], p.mac)
	binary.BigEndian.PutUint16(frame[12:], etherType)
	frame = append(frame, payload...)
	for len(frame) < 60 {
		frame = append(frame, 0)
	}
	to := &unix.SockaddrLinklayer{Ifindex: p.ifindex, Protocol: htons(etherType), Halen: 6}
	copy(to.Addr[:], frame[:6])
	return unix.Sendto(fd, frame, 0, to)
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// opener opens a socket in some network namespace.
type opener func(domain, typ, proto int) (int, error)

// packetSocket opens (with open) a packet socket for etherType bound to
// the link ifindex, whose reads give up after 100 ms.
func packetSocket(open opener, ifindex int, etherType uint16) (int, error) {
	fd, err := open(unix.AF_PACKET, unix.SOCK_RAW, int(htons(etherType)))
	if err != nil {
		return -1, fmt.Errorf("packet socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(etherType), Ifindex: ifindex}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind packet socket: %w", err)
	}
	tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// rootSocket opens a socket in the machine's own namespace.
func rootSocket(domain, typ, proto int) (int, error) {
	return unix.Socket(domain, typ|unix.SOCK_CLOEXEC, proto)
}

// echoCounter counts ICMP echo requests from src to dst that arrive on one
// interface, by IP packet size, until stopped.
type echoCounter struct {
	fd    int
	quit  chan struct{}
	sizes chan map[int]int
}

// It listens to every protocol (ETH_P_ALL), as tcpdump does: on a bridge
// port the bridge takes frames before a socket for ETH_P_IP would see them.
func countEchoRequests(open opener, ifindex int, src, dst netip.Addr) (*echoCounter, error) {
	fd, err := packetSocket(open, ifindex, unix.ETH_P_ALL)
	if err != nil {
		return nil, err
	}
	c := &echoCounter{fd: fd, quit: make(chan struct{}), sizes: make(chan map[int]int, 1)}
	go func() {
		sizes := map[int]int{}
		buf := make([]byte, 65536)
		s4, d4 := src.As4(), dst.As4()
		for {
			select {
			case <-c.quit:
				c.sizes <- sizes
				return
			default:
			}
			n, from, err := unix.Recvfrom(fd, buf, 0)
			if err != nil || n < 14 {
				continue // the receive timeout's tick, or a runt
			}
			if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
				continue
			}
			if binary.BigEndian.Uint16(buf[12:14]) != unix.ETH_P_IP {
				continue
			}
			ip := buf[14:n]
			if len(ip) < 20 || ip[0]>>4 != 4 || ip[9] != unix.IPPROTO_ICMP ||
				!bytes.Equal(ip[12:16], s4[:]) || !bytes.Equal(ip[16:20], d4[:]) {
				continue
			}
			ihl := int(ip[0]&0x0f) * 4
			if len(ip) > ihl && ip[ihl] == 8 { // echo request
				sizes[int(binary.BigEndian.Uint16(ip[2:4]))]++
			}
		}
	}()
	return c, nil
}

// stop ends the count and returns it: echo requests by IP packet size.
func (c *echoCounter) stop() map[int]int {
	close(c.quit)
	sizes := <-c.sizes
	unix.Close(c.fd)
	return sizes
}
