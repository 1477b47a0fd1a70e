package plumbing

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/butter-cloud/butter/plumbing/offload"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"
)

// The userspace WireGuard device as a tap, not a tun, where the kernel
// offers UDP-tunnel segmentation on it (Linux 6.18 and later). The
// network's VXLAN packets then cross between the kernel and wireguard-go
// as 64 KiB super-packets both ways: the kernel hands over a VXLAN packet
// whose inner TCP is one segment of up to 64 KiB, which offload.Split
// cuts into the packets WireGuard encrypts; the packets WireGuard
// decrypts are merged by offload.Coalescer into such a super-packet, which
// the kernel takes whole: its VXLAN device decapsulates it once, and the
// bridge forwards one inner segment (measured on a bare pair of taps: 4.3-
// 5.2 Gbit/s against 0.6 packet by packet). The kernel refuses a
// UDP-tunnel packet written to a tun (its check wants an Ethernet header
// before the outer IP header), hence the tap: the device takes the
// Ethernet header off what it reads and puts one on what it writes, and
// the tap answers no ARP (its neighbours are itself).
//
// A kernel without the offload refuses it when the tap is made, and the
// helper makes wireguard-go's own tun instead.

// Offloads of TUNSETOFFLOAD that golang.org/x/sys does not name yet
// (include/uapi/linux/if_tun.h).
const (
	tunFUDPTunnelGSO     = 0x080
	tunFUDPTunnelGSOCsum = 0x100
)

// tapOffloads are the offloads the tap takes: checksums, TCP and UDP
// segmentation, and UDP-tunnel segmentation with the outer checksum.
const tapOffloads = unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6 | unix.TUN_F_USO4 | unix.TUN_F_USO6 |
	tunFUDPTunnelGSO | tunFUDPTunnelGSOCsum

// ethHeaderLen is an Ethernet header without a VLAN tag.
const ethHeaderLen = 14

// tapBatchSize is how many packets the device takes from wireguard-go at
// once (wireguard-go's own tun says the same: conn.IdealBatchSize).
const tapBatchSize = 128

// errNoTunnelOffload: the kernel's tap has no UDP-tunnel segmentation.
var errNoTunnelOffload = errors.New("the kernel's tap has no UDP-tunnel segmentation offload")

// wgTAP is a tun.Device for wireguard-go on a tap with UDP-tunnel
// offloads.
type wgTAP struct {
	file   *os.File
	raw    syscall.RawConn
	name   string
	index  int
	mac    net.HardwareAddr
	events chan tun.Event
	done   chan struct{}
	closed sync.Once

	readMu sync.Mutex
	rbuf   []byte // one read: the virtio header, the frame

	writeMu sync.Mutex
	co      *offload.Coalescer
	whead   [offload.HeaderLen + ethHeaderLen]byte

	mtuMu sync.Mutex
	mtu   int

	stats tapStats
}

// tapStats count what crossed the tap: frames read and the packets they
// gave, packets handed to Write and the frames written.
type tapStats struct {
	framesRead, packetsRead, packetsToWrite, framesWritten atomic.Int64
}

// createWGTAP makes the tap name for a userspace WireGuard device of mtu;
// the networks' VXLAN packets (VXLANPort) are merged on the way in.
// errNoTunnelOffload when the kernel lacks the offload (nothing is left
// behind then).
func createWGTAP(name string, mtu int) (*wgTAP, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
		}
	}()
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return nil, fmt.Errorf("tap %q: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return nil, fmt.Errorf("make tap %q: %w", name, err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, offload.HeaderLen); err != nil {
		return nil, fmt.Errorf("tap %q: virtio header of %d bytes: %w", name, offload.HeaderLen, err)
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tapOffloads); err != nil {
		if errors.Is(err, unix.EINVAL) {
			return nil, errNoTunnelOffload
		}
		return nil, fmt.Errorf("tap %q: offloads: %w", name, err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		return nil, fmt.Errorf("tap %q: %w", name, err)
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("tap %q: %w", name, err)
	}
	if err := netlink.LinkSetARPOff(l); err != nil {
		return nil, fmt.Errorf("tap %q: arp off: %w", name, err)
	}
	if err := netlink.LinkSetMTU(l, mtu); err != nil {
		return nil, fmt.Errorf("tap %q: mtu %d: %w", name, mtu, err)
	}
	file := os.NewFile(uintptr(fd), "/dev/net/tun")
	ok = true
	raw, err := file.SyscallConn()
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("tap %q: %w", name, err)
	}
	t := &wgTAP{file: file, raw: raw, name: name, index: l.Attrs().Index, mac: l.Attrs().HardwareAddr,
		events: make(chan tun.Event, 4), done: make(chan struct{}), mtu: mtu,
		rbuf: make([]byte, offload.HeaderLen+ethHeaderLen+65535),
		co:   offload.NewCoalescer(true, []uint16{VXLANPort})}
	binary.BigEndian.PutUint16(t.whead[offload.HeaderLen+12:], unix.ETH_P_IP)
	copy(t.whead[offload.HeaderLen:], t.mac)   // destination: the tap itself
	copy(t.whead[offload.HeaderLen+6:], t.mac) // source: the same, as its own neighbours
	t.whead[offload.HeaderLen+6] |= 0x02       // locally administered: not the tap's own
	// Subscribed here, in the namespace the tap is in (the socket stays
	// there whichever thread reads it).
	updates := make(chan netlink.LinkUpdate, 8)
	if err := netlink.LinkSubscribe(updates, t.done); err != nil {
		t.Close()
		return nil, fmt.Errorf("tap %q: watch its MTU: %w", name, err)
	}
	t.events <- tun.EventUp
	go t.watchMTU(updates)
	return t, nil
}

// watchMTU tells wireguard-go when the tap's MTU changes (the helper sets
// it as the plan says), as wireguard-go's own tun does.
func (t *wgTAP) watchMTU(updates <-chan netlink.LinkUpdate) {
	for u := range updates {
		if int(u.Index) != t.index || u.Attrs() == nil {
			continue
		}
		t.mtuMu.Lock()
		changed := u.Attrs().MTU != t.mtu
		t.mtu = u.Attrs().MTU
		t.mtuMu.Unlock()
		if changed {
			select {
			case t.events <- tun.EventMTUUpdate:
			case <-t.done:
				return
			}
		}
	}
}

func (t *wgTAP) File() *os.File           { return t.file }
func (t *wgTAP) Name() (string, error)    { return t.name, nil }
func (t *wgTAP) Events() <-chan tun.Event { return t.events }
func (t *wgTAP) BatchSize() int           { return tapBatchSize }

func (t *wgTAP) MTU() (int, error) {
	t.mtuMu.Lock()
	defer t.mtuMu.Unlock()
	return t.mtu, nil
}

// Close closes the tap; its link goes with it.
func (t *wgTAP) Close() error {
	var err error
	t.closed.Do(func() {
		close(t.done)
		err = t.file.Close()
	})
	return err
}

// Read reads one frame and hands wireguard-go the IP packets it stands
// for (a super-packet split). A frame that is not IPv4 or IPv6 gives
// none.
func (t *wgTAP) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	t.readMu.Lock()
	defer t.readMu.Unlock()
	n, err := t.file.Read(t.rbuf)
	if err != nil {
		if errors.Is(err, syscall.EBADFD) {
			err = os.ErrClosed
		}
		return 0, err
	}
	if n < offload.HeaderLen+ethHeaderLen {
		return 0, nil
	}
	var h offload.Header
	if err := h.Decode(t.rbuf); err != nil {
		return 0, nil
	}
	frame := t.rbuf[offload.HeaderLen:n]
	switch binary.BigEndian.Uint16(frame[12:]) {
	case unix.ETH_P_IP, unix.ETH_P_IPV6:
	default:
		return 0, nil
	}
	if h.Flags&offload.FlagNeedsCsum != 0 && h.CsumStart < ethHeaderLen {
		return 0, nil
	}
	n, err = offload.Split(frame[ethHeaderLen:], h.Shift(-ethHeaderLen), bufs, sizes, offset)
	t.stats.framesRead.Add(1)
	t.stats.packetsRead.Add(int64(n))
	switch {
	case errors.Is(err, offload.ErrTooManySegments):
		return n, tun.ErrTooManySegments // wireguard-go drops it and reads on
	case err != nil:
		// A frame the kernel should not have given: dropped, as any
		// other error would end the device.
		return 0, nil
	}
	return n, nil
}

// Write merges the packets bufs[i][offset:] where it can and writes them,
// each behind its virtio header and an Ethernet header to the tap.
func (t *wgTAP) Write(bufs [][]byte, offset int) (int, error) {
	t.writeMu.Lock()
	defer t.writeMu.Unlock()
	writes, err := t.co.Coalesce(bufs, offset)
	if err != nil {
		return 0, err
	}
	t.stats.packetsToWrite.Add(int64(len(bufs)))
	var errs error
	written := 0
	for _, w := range writes {
		pkt := bufs[w.Index][offset:]
		if len(pkt) == 0 {
			continue
		}
		head := t.whead[:]
		if err := w.Header.Shift(ethHeaderLen).Encode(head); err != nil {
			return written, err
		}
		et := uint16(unix.ETH_P_IP)
		if pkt[0]>>4 == 6 {
			et = unix.ETH_P_IPV6
		}
		binary.BigEndian.PutUint16(head[offload.HeaderLen+12:], et)
		if err := t.writev(head, pkt); err != nil {
			if errors.Is(err, unix.EBADFD) {
				return written, os.ErrClosed
			}
			errs = errors.Join(errs, err)
			continue
		}
		written++
	}
	t.stats.framesWritten.Add(int64(written))
	return written, errs
}

// writev writes head and pkt as one frame, waiting while the tap's queue
// is full.
func (t *wgTAP) writev(head, pkt []byte) error {
	iov := [][]byte{head, pkt}
	var werr error
	err := t.raw.Write(func(fd uintptr) bool {
		_, werr = unix.Writev(int(fd), iov)
		return werr != unix.EAGAIN
	})
	if err != nil {
		return err
	}
	return werr
}
