package offload

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrTooManySegments is returned by Split when the out buffers (or the
// sizes) cannot hold all the segments a packet stands for; nothing has
// been written then.
var ErrTooManySegments = errors.New("offload: too many segments for the out buffers")

// splitMaxLen bounds a segment: its IP and UDP length fields, and the
// pseudo-header's, are 16 bits.
const splitMaxLen = 65535

// IP protocol numbers of the transports Split handles.
const (
	splitProtoTCP = 6
	splitProtoUDP = 17
)

// Split writes the packets that pkt (one IP packet as a tun or tap read
// it, h its Header) stands for into outs[i][offset:], their lengths into
// sizes[i], and returns how many.
//
// A packet that is not GSO is copied as it is into outs[0][offset:], its
// checksum completed first when h asks for it (FlagNeedsCsum). A TCP or
// UDP GSO packet (GSOTCPv4, GSOTCPv6, GSOUDPL4), plain or inside a UDP
// tunnel (GSOUDPTunnelIPv4, GSOUDPTunnelIPv6), is cut into segments of
// h.GSOSize payload bytes (the last may be shorter), each with its own
// copy of the headers and every length, IPv4 ID, TCP sequence number,
// TCP flag and checksum fixed as the kernel would have.
//
// h is checked against pkt before anything is written: a header that does
// not fit the packet, a segment that does not fit its out buffer, or more
// segments than outs (ErrTooManySegments) are errors, and outs is left as
// it was. pkt itself is never modified; it must not overlap outs.
func Split(pkt []byte, h Header, outs [][]byte, sizes []int, offset int) (int, error) {
	if offset < 0 {
		return 0, fmt.Errorf("offload: negative offset %d", offset)
	}
	if h.GSOType == GSONone {
		return splitNone(pkt, h, outs, sizes, offset)
	}
	l, err := splitParse(pkt, h)
	if err != nil {
		return 0, err
	}
	n, err := l.checkOuts(outs, sizes, offset)
	if err != nil {
		return 0, err
	}
	for i := range n {
		sizes[i] = l.segment(pkt, outs[i][offset:], i)
	}
	return n, nil
}

// splitNone copies a packet that is not GSO into outs[0][offset:],
// completing its checksum there when h has FlagNeedsCsum.
func splitNone(pkt []byte, h Header, outs [][]byte, sizes []int, offset int) (int, error) {
	needsCsum := h.Flags&FlagNeedsCsum != 0
	csumAt := int(h.CsumStart) + int(h.CsumOffset)
	if needsCsum && csumAt+2 > len(pkt) {
		return 0, fmt.Errorf("offload: checksum field at CsumStart %d + CsumOffset %d is past the packet's end (%d bytes)",
			h.CsumStart, h.CsumOffset, len(pkt))
	}
	if len(outs) == 0 || len(sizes) == 0 {
		return 0, fmt.Errorf("%w: 1 packet, %d out buffers and %d sizes", ErrTooManySegments, len(outs), len(sizes))
	}
	if err := splitCheckOut(outs[0], offset, len(pkt), 0); err != nil {
		return 0, err
	}
	out := outs[0][offset : offset+len(pkt)]
	copy(out, pkt)
	if needsCsum {
		splitCompleteChecksum(out, int(h.CsumStart), csumAt)
	}
	sizes[0] = len(pkt)
	return 1, nil
}

// splitCompleteChecksum finishes a partial checksum (CHECKSUM_PARTIAL): the
// field at csumAt holds the pseudo-header's sum, to which the sum of
// b[start:] is added. Like the kernel (skb_checksum_help), it writes
// 0xffff for a computed 0, which is the same sum for TCP and the only
// valid one for UDP.
//
// Ported from wireguard-go (tun/offload_linux.go gsoNoneChecksum, MIT, Copyright (C) 2017-2025 WireGuard LLC).
func splitCompleteChecksum(b []byte, start, csumAt int) {
	initial := binary.BigEndian.Uint16(b[csumAt:])
	b[csumAt], b[csumAt+1] = 0, 0
	sum := ^checksum(b[start:], uint64(initial))
	if sum == 0 {
		sum = 0xffff
	}
	binary.BigEndian.PutUint16(b[csumAt:], sum)
}

// splitCheckOut tells whether packet i, n bytes long, fits in
// out[offset:], out being outs[i].
func splitCheckOut(out []byte, offset, n, i int) error {
	if offset > len(out) || n > len(out)-offset {
		return fmt.Errorf("offload: packet %d of %d bytes does not fit its out buffer (%d bytes, offset %d)",
			i, n, len(out), offset)
	}
	return nil
}

// splitLayout is where the headers of a GSO packet lie, checked against
// the packet. Without a tunnel, the segmented IP header is at 0 and the
// outer fields are unused.
type splitLayout struct {
	tunnel    bool // a UDP-tunnel packet: outer IP and UDP headers before nh
	outerV6   bool // the outer IP header is IPv6
	outerCsum bool // the outer UDP checksum is computed (IPv6), not zeroed (IPv4)
	outerTH   int  // the outer UDP header

	nh      int  // the segmented (inner) IP header
	v6      bool // it is IPv6
	th      int  // the TCP or UDP header: CsumStart
	tcp     bool // TCP, not UDP
	hdrLen  int  // all the headers: th plus the TCP or UDP header's length
	gsoSize int  // payload bytes per segment
	payload int  // the payload's length: everything after hdrLen
}

// splitParse checks h against pkt and returns the layout of its
// headers. It does not trust h.HdrLen (the kernel's can cover the whole
// first packet on the forwarding path) but computes it from the TCP data
// offset, as wireguard-go does (tun/tun_linux.go handleVirtioRead, MIT,
// Copyright (C) 2017-2025 WireGuard LLC).
func splitParse(pkt []byte, h Header) (splitLayout, error) {
	var l splitLayout
	typ := h.GSOType &^ GSOECN
	if h.Tunnel() {
		if err := l.parseOuter(pkt, h); err != nil {
			return l, err
		}
		typ = h.Inner()
	}
	switch typ {
	case GSOTCPv4, GSOTCPv6:
		l.tcp = true
	case GSOUDPL4:
	default:
		return l, fmt.Errorf("offload: unsupported GSO type %#x", h.GSOType)
	}
	if h.GSOSize == 0 {
		return l, errors.New("offload: GSO packet with GSOSize 0")
	}
	l.gsoSize = int(h.GSOSize)
	if err := l.parseIP(pkt, typ, int(h.CsumStart)); err != nil {
		return l, err
	}
	if err := l.parseTransport(pkt, h); err != nil {
		return l, err
	}
	if n := l.segmentLen(0); n > splitMaxLen {
		return l, fmt.Errorf("offload: segments of %d bytes exceed %d", n, splitMaxLen)
	}
	return l, nil
}

// parseOuter checks the outer IP and UDP headers of a UDP-tunnel packet:
// the outer IP version matches the tunnel bit, the UDP header follows the
// IP header, and the inner IP header (h.InnerNH) follows the UDP header.
func (l *splitLayout) parseOuter(pkt []byte, h Header) error {
	switch h.GSOType & gsoTunnelMask {
	case GSOUDPTunnelIPv4:
	case GSOUDPTunnelIPv6:
		l.outerV6 = true
	default:
		return fmt.Errorf("offload: GSO type %#x has both UDP-tunnel bits", h.GSOType)
	}
	if len(pkt) == 0 {
		return errors.New("offload: empty UDP-tunnel packet")
	}
	l.tunnel = true
	l.outerTH = int(h.OuterTH)
	version := pkt[0] >> 4
	switch {
	case !l.outerV6 && version == 4:
		if ihl := int(pkt[0]&0x0f) * 4; ihl < 20 || l.outerTH != ihl {
			return fmt.Errorf("offload: OuterTH %d is not the end of the outer IPv4 header (%d bytes)", l.outerTH, ihl)
		}
	case l.outerV6 && version == 6:
		if l.outerTH < 40 {
			return fmt.Errorf("offload: OuterTH %d is inside the outer IPv6 header", l.outerTH)
		}
	default:
		return fmt.Errorf("offload: outer IP version %d does not match GSO type %#x", version, h.GSOType)
	}
	l.nh = int(h.InnerNH)
	if l.nh < l.outerTH+8 {
		return fmt.Errorf("offload: InnerNH %d is before the end of the outer UDP header (OuterTH %d + 8)", l.nh, l.outerTH)
	}
	// Over IPv4 the outer UDP checksum is left 0, even when the kernel
	// asks for it (FlagUDPTunnelCsum): a UDP tunnel over IPv4 may go
	// without one (RFC 768; RFC 7348 says it should), WireGuard
	// authenticates every byte anyway, and it would cost a pass over the
	// payload on both sides (measured: the chain's daemons spend their
	// CPU on such passes). IPv6 needs it.
	l.outerCsum = l.outerV6
	return nil
}

// parseIP checks the IP header at l.nh: its version matches typ (the GSO
// type without tunnel bits) and the transport header (csumStart) follows
// it.
func (l *splitLayout) parseIP(pkt []byte, typ uint8, csumStart int) error {
	if l.nh >= len(pkt) {
		return fmt.Errorf("offload: IP header at %d is past the packet's end (%d bytes)", l.nh, len(pkt))
	}
	version := pkt[l.nh] >> 4
	switch {
	case version == 4 && typ != GSOTCPv6:
		if ihl := int(pkt[l.nh]&0x0f) * 4; ihl < 20 || csumStart != l.nh+ihl {
			return fmt.Errorf("offload: CsumStart %d is not the end of the IPv4 header at %d (%d bytes)", csumStart, l.nh, ihl)
		}
	case version == 6 && typ != GSOTCPv4:
		l.v6 = true
		if csumStart < l.nh+40 {
			return fmt.Errorf("offload: CsumStart %d is inside the IPv6 header at %d", csumStart, l.nh)
		}
	default:
		return fmt.Errorf("offload: IP version %d at %d does not match GSO type %#x", version, l.nh, typ)
	}
	l.th = csumStart
	return nil
}

// parseTransport checks the TCP or UDP header at l.th and h.CsumOffset,
// and sets the length of all the headers and of the payload.
func (l *splitLayout) parseTransport(pkt []byte, h Header) error {
	proto, csumOffset, minLen := "UDP", 6, 8
	if l.tcp {
		proto, csumOffset, minLen = "TCP", 16, 20
	}
	if int(h.CsumOffset) != csumOffset {
		return fmt.Errorf("offload: CsumOffset %d is not %s's (%d)", h.CsumOffset, proto, csumOffset)
	}
	if l.th+minLen > len(pkt) {
		return fmt.Errorf("offload: %s header at CsumStart %d is past the packet's end (%d bytes)", proto, l.th, len(pkt))
	}
	thLen := minLen
	if l.tcp {
		thLen = int(pkt[l.th+12]>>4) * 4
		if thLen < minLen {
			return fmt.Errorf("offload: TCP data offset %d bytes is under 20", thLen)
		}
	}
	l.hdrLen = l.th + thLen
	if l.hdrLen > len(pkt) {
		return fmt.Errorf("offload: headers of %d bytes are longer than the packet (%d bytes)", l.hdrLen, len(pkt))
	}
	l.payload = len(pkt) - l.hdrLen
	return nil
}

// segments is how many segments the packet is cut into: one at least,
// even with no payload (the kernel sends a packet no longer than one
// segment as it is).
func (l *splitLayout) segments() int {
	return max(1, (l.payload+l.gsoSize-1)/l.gsoSize)
}

// segmentLen is the length of segment i.
func (l *splitLayout) segmentLen(i int) int {
	return l.hdrLen + min(l.gsoSize, l.payload-i*l.gsoSize)
}

// checkOuts tells how many segments there are, once sure that outs and
// sizes can hold them all.
func (l *splitLayout) checkOuts(outs [][]byte, sizes []int, offset int) (int, error) {
	n := l.segments()
	if n > len(outs) || n > len(sizes) {
		return 0, fmt.Errorf("%w: %d segments, %d out buffers and %d sizes", ErrTooManySegments, n, len(outs), len(sizes))
	}
	for i := range n {
		if err := splitCheckOut(outs[i], offset, l.segmentLen(i), i); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// segment writes segment i into out (known to be long enough): the
// headers, the i-th chunk of the payload, then the fixed length, ID,
// sequence, flag and checksum fields, inner first since the outer UDP
// checksum covers the inner packet. It returns the segment's length.
//
// Ported from wireguard-go (tun/offload_linux.go gsoSplit, MIT, Copyright (C) 2017-2025 WireGuard LLC); the tunnel parts are this package's.
func (l *splitLayout) segment(pkt, out []byte, i int) int {
	start := l.hdrLen + i*l.gsoSize
	end := min(start+l.gsoSize, len(pkt))
	n := copy(out, pkt[:l.hdrLen])
	n += copy(out[n:], pkt[start:end])
	seg := out[:n]

	ip := seg[l.nh:l.th]
	splitFixIP(ip, l.v6, n-l.nh, i)
	if l.tcp {
		l.fixTCP(seg, i, end == len(pkt))
	} else {
		binary.BigEndian.PutUint16(seg[l.th+4:], uint16(n-l.th))
		splitL4Checksum(seg[l.th:], 6, ip, l.v6, splitProtoUDP)
	}
	if l.tunnel {
		l.fixOuter(seg, i)
	}
	return n
}

// fixTCP advances the TCP sequence number of segment i by i segments,
// keeps FIN and PSH for the last segment and CWR for the first, and
// computes the checksum.
func (l *splitLayout) fixTCP(seg []byte, i int, last bool) {
	const (
		fin = 0x01
		psh = 0x08
		cwr = 0x80
	)
	tcp := seg[l.th:]
	seq := binary.BigEndian.Uint32(tcp[4:]) + uint32(i)*uint32(l.gsoSize)
	binary.BigEndian.PutUint32(tcp[4:], seq)
	if !last {
		tcp[13] &^= fin | psh
	}
	if i > 0 {
		tcp[13] &^= cwr
	}
	splitL4Checksum(tcp, 16, seg[l.nh:l.th], l.v6, splitProtoTCP)
}

// fixOuter fixes the outer IP and UDP headers of segment i of a
// UDP-tunnel packet: lengths, IPv4 ID and header checksum, and the UDP
// checksum, computed over the whole inner packet or, where IPv4 allows
// it and h did not ask for one, zero.
func (l *splitLayout) fixOuter(seg []byte, i int) {
	ip := seg[:l.outerTH]
	splitFixIP(ip, l.outerV6, len(seg), i)
	udp := seg[l.outerTH:]
	binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
	if l.outerCsum {
		splitL4Checksum(udp, 6, ip, l.outerV6, splitProtoUDP)
	} else {
		udp[6], udp[7] = 0, 0
	}
}

// splitFixIP sets the length of the IP header ip, its packet being
// length bytes long: for IPv4, the total length, the ID advanced by i and
// the header checksum; for IPv6, the payload length (extension headers
// included).
func splitFixIP(ip []byte, v6 bool, length, i int) {
	if v6 {
		binary.BigEndian.PutUint16(ip[4:], uint16(length-40))
		return
	}
	binary.BigEndian.PutUint16(ip[2:], uint16(length))
	binary.BigEndian.PutUint16(ip[4:], binary.BigEndian.Uint16(ip[4:])+uint16(i))
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:], ^checksum(ip, 0))
}

// splitL4Checksum computes the full TCP or UDP checksum of b (the
// transport header and all that follows), its field at csumAt, with the
// pseudo-header of the IP header ip. A UDP checksum of 0 is written
// 0xffff, 0 meaning none.
func splitL4Checksum(b []byte, csumAt int, ip []byte, v6 bool, proto uint8) {
	src, dst := ip[12:16], ip[16:20]
	if v6 {
		src, dst = ip[8:24], ip[24:40]
	}
	b[csumAt], b[csumAt+1] = 0, 0
	sum := ^checksum(b, pseudoHeaderChecksumNoFold(proto, src, dst, uint16(len(b))))
	if sum == 0 && proto == splitProtoUDP {
		sum = 0xffff
	}
	binary.BigEndian.PutUint16(b[csumAt:], sum)
}
