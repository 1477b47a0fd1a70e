package offload

import (
	"encoding/binary"
	"io"
)

// HeaderLen is the size of the virtio-net header a tun or tap puts before
// each packet once its header size is set to it (TUNSETVNETHDRSZ):
// struct virtio_net_hdr_v1_hash_tunnel, the only one with the UDP-tunnel
// offsets.
const HeaderLen = 24

// Header flags (VIRTIO_NET_HDR_F_*).
const (
	FlagNeedsCsum     = 1 // the checksum at CsumStart+CsumOffset is to be completed
	FlagDataValid     = 2
	FlagUDPTunnelCsum = 8 // a UDP tunnel's outer UDP checksum is to be completed too
)

// GSO types (VIRTIO_NET_HDR_GSO_*). A UDP-tunnel packet has one of the
// tunnel bits and the inner packet's type.
const (
	GSONone          = 0
	GSOTCPv4         = 1
	GSOUDP           = 3 // UFO: never produced or taken here
	GSOTCPv6         = 4
	GSOUDPL4         = 5
	GSOUDPTunnelIPv4 = 0x20 // the outer IP header is IPv4
	GSOUDPTunnelIPv6 = 0x40
	GSOECN           = 0x80

	gsoTunnelMask = GSOUDPTunnelIPv4 | GSOUDPTunnelIPv6
)

// Header is struct virtio_net_hdr_v1_hash_tunnel, little endian (the
// hash fields are never used). Offsets count from the start of the IP
// packet here; the kernel's count from the frame's start, so a device
// for a tap adds the Ethernet header's length when it writes one and
// takes it off when it reads one.
type Header struct {
	Flags      uint8
	GSOType    uint8
	HdrLen     uint16 // the length of all headers of a GSO packet
	GSOSize    uint16 // the payload of each segment (the last may be shorter)
	CsumStart  uint16
	CsumOffset uint16
	OuterTH    uint16 // UDP tunnel: the outer UDP header
	InnerNH    uint16 // UDP tunnel: the inner IP header
}

// Tunnel tells whether h is a UDP-tunnel GSO packet.
func (h Header) Tunnel() bool { return h.GSOType&gsoTunnelMask != 0 }

// Inner is h's GSO type without the tunnel and ECN bits.
func (h Header) Inner() uint8 { return h.GSOType &^ (gsoTunnelMask | GSOECN) }

// Decode reads h from b's first HeaderLen bytes.
func (h *Header) Decode(b []byte) error {
	if len(b) < HeaderLen {
		return io.ErrShortBuffer
	}
	le := binary.LittleEndian
	*h = Header{Flags: b[0], GSOType: b[1], HdrLen: le.Uint16(b[2:]), GSOSize: le.Uint16(b[4:]),
		CsumStart: le.Uint16(b[6:]), CsumOffset: le.Uint16(b[8:]), OuterTH: le.Uint16(b[20:]), InnerNH: le.Uint16(b[22:])}
	return nil
}

// Encode writes h into b's first HeaderLen bytes (the unused fields zero).
func (h Header) Encode(b []byte) error {
	if len(b) < HeaderLen {
		return io.ErrShortBuffer
	}
	clear(b[:HeaderLen])
	le := binary.LittleEndian
	b[0], b[1] = h.Flags, h.GSOType
	le.PutUint16(b[2:], h.HdrLen)
	le.PutUint16(b[4:], h.GSOSize)
	le.PutUint16(b[6:], h.CsumStart)
	le.PutUint16(b[8:], h.CsumOffset)
	le.PutUint16(b[20:], h.OuterTH)
	le.PutUint16(b[22:], h.InnerNH)
	return nil
}

// Shift is h with every offset moved by n bytes (a device adding or
// taking off a link-layer header); HdrLen too, when h is GSO.
func (h Header) Shift(n int) Header {
	move := func(v uint16) uint16 {
		if v == 0 {
			return 0
		}
		return uint16(int(v) + n)
	}
	h.CsumStart = move(h.CsumStart)
	h.HdrLen = move(h.HdrLen)
	h.OuterTH, h.InnerNH = move(h.OuterTH), move(h.InnerNH)
	return h
}
