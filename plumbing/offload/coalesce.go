// Coalescing (GRO), ported from wireguard-go (tun/offload_linux.go, MIT,
// Copyright (C) 2017-2025 WireGuard LLC); the VXLAN kind is this
// package's own.

package offload

import (
	"encoding/binary"
	"fmt"
	"slices"
)

// Offsets, flags and sizes the coalescing reads packets with.
const (
	groMaxPacket      = 65535 // an IP packet's total (IPv4) or payload (IPv6) length field is 16 bits
	groIPv4SrcOffset  = 12
	groIPv6SrcOffset  = 8
	groIPv4MoreFrags  = 0x20
	groProtoTCP       = 6
	groProtoUDP       = 17
	groTCPFlagsOffset = 13
	groTCPFlagPSH     = 0x08
	groTCPFlagACK     = 0x10
	groTCPCsumOffset  = 16
	groUDPHeaderLen   = 8
	groUDPCsumOffset  = 6
	groVXLANLen       = 8
	groVXLANFlagI     = 0x08 // the VNI is valid
	groEthLen         = 14
	groEtherTypeIPv4  = 0x0800
	groEtherTypeIPv6  = 0x86dd
	// A VXLAN packet's UDP header (behind an IPv4 header without options),
	// its VXLAN header and its inner IP header.
	groTunnelOuterTH    = 20
	groTunnelVXLANStart = groTunnelOuterTH + groUDPHeaderLen
	groTunnelInnerNH    = groTunnelVXLANStart + groVXLANLen + groEthLen
)

// Write is one packet to write: bufs[Index][offset:] after Coalesce, and
// the Header the kernel must be given with it (the zero Header for a
// packet written as it came).
type Write struct {
	Index  int
	Header Header
}

// Coalescer merges the packets of a batch for one write each (GRO): runs
// of TCP segments of one flow, plain or inside VXLAN, and, when the
// kernel takes them, runs of UDP datagrams of one flow. One per device;
// not safe for concurrent use; reused across batches, so that a batch
// allocates nothing once the first few have set it up.
type Coalescer struct {
	udpGRO      bool
	tunnelPorts []uint16
	tcp         tcpGROTable
	udp         udpGROTable
	headers     []Header // by index into bufs
	writes      []Write
}

// NewCoalescer returns a Coalescer. udpGRO says whether plain UDP may be
// merged (the kernel took the USO offloads); tunnelPorts are the UDP
// destination ports of VXLAN tunnels whose inner TCP may be merged into
// UDP-tunnel GSO packets (the kernel took the UDP-tunnel offloads);
// tunnelPorts is copied.
func NewCoalescer(udpGRO bool, tunnelPorts []uint16) *Coalescer {
	return &Coalescer{
		udpGRO:      udpGRO,
		tunnelPorts: slices.Clone(tunnelPorts),
		tcp:         tcpGROTable{newGROTable[tcpFlowKey, tcpGROItem]()},
		udp:         udpGROTable{newGROTable[udpFlowKey, udpGROItem]()},
	}
}

// Coalesce merges the packets bufs[i][offset:] (IP packets, as
// wireguard-go hands them to a tun's Write, in buffers with spare
// capacity) and returns, in order, the packets to write.
//
// A merged run's payloads are appended to the buffer of the packet that
// leads it (bufs[i] resliced, never beyond cap(bufs[i]) and never past
// 65535 bytes of IP packet), whose headers are rewritten for a GSO
// packet. A segment that arrives after the one it precedes is merged in
// its own buffer and the two entries of bufs are swapped, so the returned
// Index always names the run's first position in bufs; an entry
// of bufs that no Write names holds nothing to write. Packets that merge
// with no other are written unchanged, with the zero Header.
//
// The returned slice is the Coalescer's and is overwritten by the next
// call. It is an error, before anything is changed, for offset to be
// outside any of the buffers (an empty packet is written as it is).
func (c *Coalescer) Coalesce(bufs [][]byte, offset int) ([]Write, error) {
	for i, b := range bufs {
		if offset < 0 || offset > len(b) {
			return nil, fmt.Errorf("offload: coalesce: offset %d outside packet %d's buffer of %d bytes", offset, i, len(b))
		}
	}
	c.reset(len(bufs))
	for i := range bufs {
		if c.gro(bufs, offset, i) != groResultCoalesced {
			c.writes = append(c.writes, Write{Index: i})
		}
	}
	c.tcp.applyCoalesceAccounting(bufs, offset, c.headers)
	c.udp.applyCoalesceAccounting(bufs, offset, c.headers)
	for k := range c.writes {
		c.writes[k].Header = c.headers[c.writes[k].Index]
	}
	return c.writes, nil
}

// reset empties c's tables for a batch of n packets.
func (c *Coalescer) reset(n int) {
	c.tcp.reset()
	c.udp.reset()
	c.headers = slices.Grow(c.headers[:0], n)[:n]
	clear(c.headers)
	c.writes = c.writes[:0]
}

// gro evaluates the packet at bufs[i] for coalescing with those before it.
func (c *Coalescer) gro(bufs [][]byte, offset, i int) groResult {
	pkt := bufs[i][offset:]
	switch c.candidate(pkt) {
	case tcp4GROCandidate:
		if seg, ok := plainTCPSegment(pkt, false); ok {
			return tcpGRO(bufs, offset, i, &c.tcp, seg)
		}
	case tcp6GROCandidate:
		if seg, ok := plainTCPSegment(pkt, true); ok {
			return tcpGRO(bufs, offset, i, &c.tcp, seg)
		}
	case vxlan4GROCandidate:
		if seg, ok := vxlanTCPSegment(pkt); ok {
			return tcpGRO(bufs, offset, i, &c.tcp, seg)
		}
	case udp4GROCandidate:
		return udpGRO(bufs, offset, i, &c.udp, false)
	case udp6GROCandidate:
		return udpGRO(bufs, offset, i, &c.udp, true)
	}
	return groResultNoop
}

type groCandidateType uint8

const (
	notGROCandidate groCandidateType = iota
	tcp4GROCandidate
	tcp6GROCandidate
	udp4GROCandidate
	udp6GROCandidate
	vxlan4GROCandidate // UDP over IPv4 to a tunnel port
)

// candidate tells which kind of coalescing b may take part in. UDP to a
// tunnel port is never plain UDP: over IPv4 it is a VXLAN candidate, over
// IPv6 no candidate. Ported from wireguard-go's packetIsGROCandidate (MIT).
func (c *Coalescer) candidate(b []byte) groCandidateType {
	if len(b) < 28 {
		return notGROCandidate
	}
	switch b[0] >> 4 {
	case 4:
		if b[0]&0x0F != 5 {
			// IPv4 packets w/IP options do not coalesce
			return notGROCandidate
		}
		if b[9] == groProtoTCP && len(b) >= 40 {
			return tcp4GROCandidate
		}
		if b[9] == groProtoUDP {
			if slices.Contains(c.tunnelPorts, binary.BigEndian.Uint16(b[22:])) {
				return vxlan4GROCandidate
			}
			if c.udpGRO {
				return udp4GROCandidate
			}
		}
	case 6:
		if b[6] == groProtoTCP && len(b) >= 60 {
			return tcp6GROCandidate
		}
		if b[6] == groProtoUDP && len(b) >= 48 && c.udpGRO &&
			!slices.Contains(c.tunnelPorts, binary.BigEndian.Uint16(b[42:])) {
			return udp6GROCandidate
		}
	}
	return notGROCandidate
}

// tcpSegment locates the headers of a TCP segment that may be coalesced:
// a plain TCP/IP packet, or a VXLAN packet carrying one.
type tcpSegment struct {
	ipOff   int  // the IP header carrying TCP: 0, or groTunnelInnerNH in VXLAN
	tcpOff  int  // the TCP header
	tcphLen int  // the TCP header's length
	isV6    bool // the IP header at ipOff is IPv6
	tunnel  bool // VXLAN over IPv4
}

// headersLen is the length of all of the segment's headers.
func (s tcpSegment) headersLen() int { return s.tcpOff + s.tcphLen }

// plainTCPSegment locates the headers of the TCP/IP packet pkt, if it may
// be coalesced.
func plainTCPSegment(pkt []byte, isV6 bool) (tcpSegment, bool) {
	if len(pkt) > groMaxPacket {
		// A valid IPv4 or IPv6 packet will never exceed this.
		return tcpSegment{}, false
	}
	iphLen, tcphLen, ok := tcpIPHeaders(pkt, isV6)
	return tcpSegment{tcpOff: iphLen, tcphLen: tcphLen, isV6: isV6}, ok
}

// vxlanTCPSegment locates the headers of the TCP segment inside the VXLAN
// packet pkt (an IPv4 packet of UDP to a tunnel port), if it may be
// coalesced: outer IPv4 without options or fragmentation, outer UDP of
// the packet's length, VXLAN with a VNI, an untagged inner Ethernet header
// for IPv4 or IPv6, and inner TCP/IP as plainTCPSegment takes it.
func vxlanTCPSegment(pkt []byte) (tcpSegment, bool) {
	if len(pkt) > groMaxPacket || len(pkt) < groTunnelInnerNH || !ipv4Unfragmented(pkt) {
		return tcpSegment{}, false
	}
	udp := pkt[groTunnelOuterTH:]
	if int(binary.BigEndian.Uint16(udp[4:])) != len(udp) || pkt[groTunnelVXLANStart]&groVXLANFlagI == 0 {
		return tcpSegment{}, false
	}
	var isV6 bool
	switch binary.BigEndian.Uint16(pkt[groTunnelInnerNH-2:]) {
	case groEtherTypeIPv4:
	case groEtherTypeIPv6:
		isV6 = true
	default:
		return tcpSegment{}, false
	}
	iphLen, tcphLen, ok := tcpIPHeaders(pkt[groTunnelInnerNH:], isV6)
	seg := tcpSegment{ipOff: groTunnelInnerNH, tcpOff: groTunnelInnerNH + iphLen, tcphLen: tcphLen, isV6: isV6, tunnel: true}
	return seg, ok
}

// tcpIPHeaders checks that pkt is an IP packet carrying TCP as GRO takes
// it (its length fields matching len(pkt), IPv4 without options and
// unfragmented, IPv6 without extension headers, a whole TCP header) and
// returns the lengths of its IP and TCP headers. Ported from wireguard-go's
// tcpGRO (MIT).
func tcpIPHeaders(pkt []byte, isV6 bool) (iphLen, tcphLen int, ok bool) {
	if isV6 {
		iphLen = 40
		if len(pkt) < iphLen || pkt[0]>>4 != 6 || pkt[6] != groProtoTCP ||
			int(binary.BigEndian.Uint16(pkt[4:])) != len(pkt)-iphLen {
			return 0, 0, false
		}
	} else {
		iphLen = 20
		if !ipv4Unfragmented(pkt) || pkt[9] != groProtoTCP {
			return 0, 0, false
		}
	}
	if len(pkt) < iphLen+20 {
		return 0, 0, false
	}
	tcphLen = int(pkt[iphLen+12]>>4) * 4
	if tcphLen < 20 || len(pkt) < iphLen+tcphLen {
		return 0, 0, false
	}
	return iphLen, tcphLen, true
}

// ipv4Unfragmented tells whether pkt is an IPv4 packet without options
// whose total length is len(pkt) and which is no fragment.
func ipv4Unfragmented(pkt []byte) bool {
	if len(pkt) < 20 || pkt[0] != 0x45 || int(binary.BigEndian.Uint16(pkt[2:])) != len(pkt) {
		return false
	}
	// no GRO support for fragmented segments for now
	return pkt[6]&groIPv4MoreFrags == 0 && pkt[6]<<3 == 0 && pkt[7] == 0
}
