package offload

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
)

// Values the sp builders put in the headers, checked after splitting.
const (
	spSeq     = 0xfffff000 // near the top, so the sequence numbers wrap
	spInnerID = 0xfff0     // near the top, so the IDs wrap
	spOuterID = 0x1234
	spTCPLen  = 32 // the sp TCP header: 20 bytes and 12 of options
	spTunLen  = 8 + 14
	spTCPFIN  = 0x01
	spTCPPSH  = 0x08
	spTCPACK  = 0x10
	spTCPCWR  = 0x80
	spProtoT  = 6
	spProtoU  = 17
)

// spL4Valid tells whether the TCP or UDP checksum of l4 (its header and
// all that follows) is right for the IP header ip.
func spL4Valid(ip, l4 []byte, proto byte) bool {
	return refFold(refSum(l4, refPseudo(ip, proto, len(l4)))) == 0xffff
}

// spPayload is n bytes of a pattern that does not repeat every segment.
func spPayload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8 + i>>16)
	}
	return b
}

// spIPv4 is an IPv4 header (DF, 20 bytes) with a valid checksum before body.
func spIPv4(proto byte, id uint16, body []byte) []byte {
	b := make([]byte, 20, 20+len(body))
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(20+len(body)))
	binary.BigEndian.PutUint16(b[4:], id)
	b[6] = 0x40
	b[8], b[9] = 64, proto
	copy(b[12:], []byte{192, 0, 2, 1, 198, 51, 100, 2})
	binary.BigEndian.PutUint16(b[10:], ^refFold(refSum(b, 0)))
	return append(b, body...)
}

// spIPv6 is an IPv6 header before body.
func spIPv6(next byte, body []byte) []byte {
	b := make([]byte, 40, 40+len(body))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(len(body)))
	b[6], b[7] = next, 64
	copy(b[8:], []byte{0x20, 0x01, 0x0d, 0xb8, 15: 1})
	copy(b[24:], []byte{0x20, 0x01, 0x0d, 0xb8, 15: 2})
	return append(b, body...)
}

// spTCP is a TCP header of spTCPLen bytes (timestamps option) before
// payload, its checksum field junk as a GSO packet's may be.
func spTCP(seq uint32, flags byte, payload []byte) []byte {
	b := make([]byte, spTCPLen, spTCPLen+len(payload))
	binary.BigEndian.PutUint16(b[0:], 40000)
	binary.BigEndian.PutUint16(b[2:], 5201)
	binary.BigEndian.PutUint32(b[4:], seq)
	binary.BigEndian.PutUint32(b[8:], 0x01020304)
	b[12], b[13] = spTCPLen/4<<4, flags
	binary.BigEndian.PutUint16(b[14:], 512)
	binary.BigEndian.PutUint16(b[16:], 0xbeef)
	copy(b[20:], []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2})
	return append(b, payload...)
}

// spUDP is a UDP header to port dst before payload, its checksum junk.
func spUDP(dst uint16, payload []byte) []byte {
	b := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(b[0:], 40001)
	binary.BigEndian.PutUint16(b[2:], dst)
	binary.BigEndian.PutUint16(b[4:], uint16(8+len(payload)))
	binary.BigEndian.PutUint16(b[6:], 0xbeef)
	return append(b, payload...)
}

// spVXLAN is a VXLAN header (VNI 42) and an inner Ethernet header before
// the inner IP packet.
func spVXLAN(inner []byte) []byte {
	b := make([]byte, spTunLen, spTunLen+len(inner))
	b[0] = 0x08
	b[6] = 42
	copy(b[8:], []byte{0x02, 1, 2, 3, 4, 5, 0x02, 6, 7, 8, 9, 10})
	binary.BigEndian.PutUint16(b[20:], 0x0800)
	if inner[0]>>4 == 6 {
		binary.BigEndian.PutUint16(b[20:], 0x86dd)
	}
	return append(b, inner...)
}

// spSpec describes a GSO packet to build and split.
type spSpec struct {
	outer     int  // the outer IP version of a UDP tunnel, 0 for none
	outerCsum bool // FlagUDPTunnelCsum
	inner     int  // the (inner) IP version
	tcp       bool // TCP, not UDP
	flags     byte // TCP flags
	ecn       bool // GSOECN
	payload   int
	gso       int
}

// spLayout is where spBuild put the headers.
type spLayout struct {
	outerTH, nh, th, hdrLen int
}

// spBuild builds the packet s describes, its Header and its layout.
func spBuild(s spSpec) ([]byte, Header, spLayout) {
	payload := spPayload(s.payload)
	h := Header{Flags: FlagNeedsCsum, GSOSize: uint16(s.gso)}
	var l4 []byte
	proto, l4Len := byte(spProtoU), 8
	switch {
	case s.tcp:
		l4, proto, l4Len = spTCP(spSeq, s.flags, payload), spProtoT, spTCPLen
		h.GSOType, h.CsumOffset = GSOTCPv4, 16
		if s.inner == 6 {
			h.GSOType = GSOTCPv6
		}
	default:
		l4 = spUDP(5000, payload)
		h.GSOType, h.CsumOffset = GSOUDPL4, 6
	}
	if s.ecn {
		h.GSOType |= GSOECN
	}
	ip, ipLen := spIPv4(proto, spInnerID, l4), 20
	if s.inner == 6 {
		ip, ipLen = spIPv6(proto, l4), 40
	}
	l := spLayout{th: ipLen, hdrLen: ipLen + l4Len}
	if s.outer != 0 {
		udp := spUDP(4789, spVXLAN(ip))
		ip, ipLen = spIPv4(spProtoU, spOuterID, udp), 20
		h.GSOType |= GSOUDPTunnelIPv4
		if s.outer == 6 {
			ip, ipLen = spIPv6(spProtoU, udp), 40
			h.GSOType ^= GSOUDPTunnelIPv4 | GSOUDPTunnelIPv6
		}
		if s.outerCsum {
			h.Flags |= FlagUDPTunnelCsum
		}
		l.outerTH, l.nh = ipLen, ipLen+8+spTunLen
		l.th += l.nh
		l.hdrLen += l.nh
		h.OuterTH, h.InnerNH = uint16(l.outerTH), uint16(l.nh)
	}
	h.CsumStart, h.HdrLen = uint16(l.th), uint16(l.hdrLen)
	return ip, h, l
}

// spOuts is n out buffers of size bytes, each filled with 0xaa.
func spOuts(n, size int) [][]byte {
	outs := make([][]byte, n)
	for i := range outs {
		outs[i] = bytes.Repeat([]byte{0xaa}, size)
	}
	return outs
}

// spMask is a copy of the headers hdr with every field Split changes
// zeroed, so that the rest can be compared with the original's.
func spMask(hdr []byte, s spSpec, l spLayout) []byte {
	b := bytes.Clone(hdr)
	maskIP := func(ip []byte) {
		if ip[0]>>4 == 6 {
			clear(ip[4:6])
			return
		}
		clear(ip[2:6])
		clear(ip[10:12])
	}
	if s.outer != 0 {
		maskIP(b[:l.outerTH])
		clear(b[l.outerTH+4 : l.outerTH+8])
	}
	maskIP(b[l.nh:l.th])
	clear(b[l.th+4 : l.th+8]) // TCP seq, UDP length and checksum
	if s.tcp {
		b[l.th+13] = 0
		clear(b[l.th+16 : l.th+18])
	}
	return b
}

// spCheckIP checks the IP header ip of segment i, its packet being
// length bytes long: lengths, and for IPv4 the ID (firstID+i) and the
// header checksum.
func spCheckIP(ip []byte, length int, firstID uint16, i int) error {
	if ip[0]>>4 == 6 {
		if got := int(binary.BigEndian.Uint16(ip[4:])); got != length-40 {
			return fmt.Errorf("IPv6 payload length %d, want %d", got, length-40)
		}
		return nil
	}
	if got := int(binary.BigEndian.Uint16(ip[2:])); got != length {
		return fmt.Errorf("IPv4 total length %d, want %d", got, length)
	}
	if got, want := binary.BigEndian.Uint16(ip[4:]), firstID+uint16(i); got != want {
		return fmt.Errorf("IPv4 ID %#x, want %#x", got, want)
	}
	if refFold(refSum(ip, 0)) != 0xffff {
		return errors.New("IPv4 header checksum is wrong")
	}
	return nil
}

// spCheckSegment checks segment i of the n that Split made of pkt.
func spCheckSegment(seg, pkt []byte, s spSpec, l spLayout, i, n int) error {
	if want := l.hdrLen + min(s.gso, s.payload-i*s.gso); len(seg) != want {
		return fmt.Errorf("length %d, want %d", len(seg), want)
	}
	if !bytes.Equal(spMask(seg[:l.hdrLen], s, l), spMask(pkt[:l.hdrLen], s, l)) {
		return errors.New("headers differ from the original's beyond the fixed fields")
	}
	if s.outer != 0 {
		if err := spCheckIP(seg[:l.outerTH], len(seg), spOuterID, i); err != nil {
			return fmt.Errorf("outer %w", err)
		}
		udp := seg[l.outerTH:]
		if got := int(binary.BigEndian.Uint16(udp[4:])); got != len(udp) {
			return fmt.Errorf("outer UDP length %d, want %d", got, len(udp))
		}
		csum := binary.BigEndian.Uint16(udp[6:])
		switch {
		case s.outer == 6: // over IPv4 it is left 0 even when asked for
			if csum == 0 || !spL4Valid(seg[:l.outerTH], udp, spProtoU) {
				return fmt.Errorf("outer UDP checksum %#x is wrong", csum)
			}
		case csum != 0:
			return fmt.Errorf("outer UDP checksum %#x, want 0", csum)
		}
	}
	ip := seg[l.nh:l.th]
	if err := spCheckIP(ip, len(seg)-l.nh, spInnerID, i); err != nil {
		return fmt.Errorf("inner %w", err)
	}
	l4 := seg[l.th:]
	if !s.tcp {
		if got := int(binary.BigEndian.Uint16(l4[4:])); got != len(l4) {
			return fmt.Errorf("UDP length %d, want %d", got, len(l4))
		}
		if binary.BigEndian.Uint16(l4[6:]) == 0 || !spL4Valid(ip, l4, spProtoU) {
			return errors.New("UDP checksum is wrong")
		}
		return nil
	}
	if got, want := binary.BigEndian.Uint32(l4[4:]), uint32(spSeq)+uint32(i*s.gso); got != want {
		return fmt.Errorf("TCP seq %#x, want %#x", got, want)
	}
	want := s.flags
	if i != n-1 {
		want &^= spTCPFIN | spTCPPSH
	}
	if i != 0 {
		want &^= spTCPCWR
	}
	if l4[13] != want {
		return fmt.Errorf("TCP flags %#x, want %#x", l4[13], want)
	}
	if !spL4Valid(ip, l4, spProtoT) {
		return errors.New("TCP checksum is wrong")
	}
	return nil
}

func TestSplitGSO(t *testing.T) {
	tcpFlags := byte(spTCPACK | spTCPPSH | spTCPFIN | spTCPCWR)
	tests := []struct {
		name string
		spec spSpec
		segs int
	}{
		{"tcp4 5 segments", spSpec{inner: 4, tcp: true, flags: tcpFlags, payload: 4*1000 + 321, gso: 1000}, 5},
		{"tcp6 5 segments", spSpec{inner: 6, tcp: true, flags: tcpFlags, payload: 4*1000 + 321, gso: 1000}, 5},
		{"tcp4 even segments", spSpec{inner: 4, tcp: true, flags: spTCPACK | spTCPPSH, payload: 3 * 1448, gso: 1448}, 3},
		{"tcp4 ecn", spSpec{inner: 4, tcp: true, flags: tcpFlags, ecn: true, payload: 3000, gso: 1448}, 3},
		{"tcp6 past 64 KiB", spSpec{inner: 6, tcp: true, flags: tcpFlags, payload: 100000, gso: 1440}, 70},
		{"tcp4 one segment", spSpec{inner: 4, tcp: true, flags: tcpFlags, payload: 500, gso: 1448}, 1},
		{"tcp4 no payload", spSpec{inner: 4, tcp: true, flags: tcpFlags, gso: 1448}, 1},
		{"udp4", spSpec{inner: 4, payload: 3*1200 + 1, gso: 1200}, 4},
		{"udp6", spSpec{inner: 6, payload: 2*1200 + 7, gso: 1200}, 3},
		{"tunnel4 tcp4 csum", spSpec{outer: 4, outerCsum: true, inner: 4, tcp: true, flags: tcpFlags, payload: 65000, gso: 1318}, 50},
		{"tunnel4 tcp4 no csum", spSpec{outer: 4, inner: 4, tcp: true, flags: tcpFlags, payload: 65000, gso: 1318}, 50},
		{"tunnel4 tcp6 csum", spSpec{outer: 4, outerCsum: true, inner: 6, tcp: true, flags: tcpFlags, payload: 64900, gso: 1318}, 50},
		{"tunnel4 tcp6 no csum", spSpec{outer: 4, inner: 6, tcp: true, flags: tcpFlags, payload: 64900, gso: 1318}, 50},
		{"tunnel4 udp4 csum", spSpec{outer: 4, outerCsum: true, inner: 4, payload: 10*1318 + 5, gso: 1318}, 11},
		{"tunnel4 udp6 no csum", spSpec{outer: 4, inner: 6, payload: 3 * 1318, gso: 1318}, 3},
		{"tunnel6 tcp4 (outer csum always)", spSpec{outer: 6, inner: 4, tcp: true, flags: tcpFlags, payload: 20000, gso: 1318}, 16},
		{"tunnel6 udp6 csum", spSpec{outer: 6, outerCsum: true, inner: 6, payload: 5000, gso: 1318}, 4},
		{"tunnel4 tcp4 ecn", spSpec{outer: 4, inner: 4, tcp: true, flags: tcpFlags, ecn: true, payload: 3000, gso: 1318}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkt, h, l := spBuild(tt.spec)
			orig := bytes.Clone(pkt)
			outs, sizes := spOuts(tt.segs+3, 1600+16), make([]int, tt.segs+3)
			n, err := Split(pkt, h, outs, sizes, 16)
			if err != nil {
				t.Fatalf("Split: %v", err)
			}
			if n != tt.segs {
				t.Fatalf("Split made %d segments, want %d", n, tt.segs)
			}
			if !bytes.Equal(pkt, orig) {
				t.Error("Split modified pkt")
			}
			var payload []byte
			for i := range n {
				if !bytes.Equal(outs[i][:16], bytes.Repeat([]byte{0xaa}, 16)) {
					t.Errorf("segment %d: bytes before offset written", i)
				}
				seg := outs[i][16 : 16+sizes[i]]
				if err := spCheckSegment(seg, pkt, tt.spec, l, i, n); err != nil {
					t.Fatalf("segment %d: %v", i, err)
				}
				payload = append(payload, seg[l.hdrLen:]...)
			}
			if !bytes.Equal(payload, pkt[l.hdrLen:]) {
				t.Error("the segments' payloads are not the original payload")
			}
			for i := n; i < len(outs); i++ {
				if !bytes.Equal(outs[i], bytes.Repeat([]byte{0xaa}, len(outs[i]))) {
					t.Errorf("out %d written past the segments", i)
				}
			}
		})
	}
}

// spPartialUDP4 is an IPv4 UDP packet as a tun gives it with
// CHECKSUM_PARTIAL: the checksum field holds the pseudo-header's sum.
func spPartialUDP4(payload []byte) []byte {
	pkt := spIPv4(spProtoU, 1, spUDP(53, payload))
	binary.BigEndian.PutUint16(pkt[26:], refFold(refPseudo(pkt, spProtoU, len(pkt)-20)))
	return pkt
}

// spPartialTCP6 is spPartialUDP4 for TCP over IPv6.
func spPartialTCP6(payload []byte) []byte {
	pkt := spIPv6(spProtoT, spTCP(7, spTCPACK, payload))
	binary.BigEndian.PutUint16(pkt[56:], refFold(refPseudo(pkt, spProtoT, len(pkt)-40)))
	return pkt
}

// spZeroSumUDP4 is spPartialUDP4 with its last two payload bytes chosen
// so that the completed checksum computes to 0, which must be written
// 0xffff.
func spZeroSumUDP4() []byte {
	pkt := spPartialUDP4(spPayload(100))
	partial := binary.BigEndian.Uint16(pkt[26:])
	clear(pkt[len(pkt)-2:])
	b := bytes.Clone(pkt[20:])
	clear(b[6:8])
	binary.BigEndian.PutUint16(pkt[len(pkt)-2:], ^refFold(refSum(b, uint64(partial))))
	return pkt
}

func TestSplitNone(t *testing.T) {
	tests := []struct {
		name     string
		pkt      []byte
		h        Header
		csumAt   int // -1: the packet is copied as it is
		wantCsum uint16
	}{
		{"plain", spIPv4(spProtoU, 1, spUDP(53, spPayload(99))), Header{}, -1, 0},
		{"data valid", spPartialUDP4(spPayload(99)), Header{Flags: FlagDataValid, CsumStart: 20, CsumOffset: 6}, -1, 0},
		{"udp4 needs csum", spPartialUDP4(spPayload(99)), Header{Flags: FlagNeedsCsum, CsumStart: 20, CsumOffset: 6}, 26, 0},
		{"tcp6 needs csum", spPartialTCP6(spPayload(1400)), Header{Flags: FlagNeedsCsum, CsumStart: 40, CsumOffset: 16}, 56, 0},
		{"udp4 sum 0 is 0xffff", spZeroSumUDP4(), Header{Flags: FlagNeedsCsum, CsumStart: 20, CsumOffset: 6}, 26, 0xffff},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := bytes.Clone(tt.pkt)
			outs, sizes := spOuts(2, 2000), make([]int, 2)
			n, err := Split(tt.pkt, tt.h, outs, sizes, 8)
			if err != nil || n != 1 {
				t.Fatalf("Split = %d, %v; want 1, nil", n, err)
			}
			if !bytes.Equal(tt.pkt, orig) {
				t.Error("Split modified pkt")
			}
			out := outs[0][8 : 8+sizes[0]]
			if sizes[0] != len(tt.pkt) {
				t.Fatalf("size %d, want %d", sizes[0], len(tt.pkt))
			}
			if tt.csumAt < 0 {
				if !bytes.Equal(out, tt.pkt) {
					t.Error("the packet was not copied as it is")
				}
				return
			}
			if !bytes.Equal(out[:tt.csumAt], tt.pkt[:tt.csumAt]) || !bytes.Equal(out[tt.csumAt+2:], tt.pkt[tt.csumAt+2:]) {
				t.Error("bytes other than the checksum changed")
			}
			ipLen, proto := 20, byte(spProtoU)
			if tt.pkt[0]>>4 == 6 {
				ipLen, proto = 40, spProtoT
			}
			if !spL4Valid(out[:ipLen], out[ipLen:], proto) {
				t.Errorf("checksum %#x is wrong", binary.BigEndian.Uint16(out[tt.csumAt:]))
			}
			if got := binary.BigEndian.Uint16(out[tt.csumAt:]); tt.wantCsum != 0 && got != tt.wantCsum {
				t.Errorf("checksum %#x, want %#x", got, tt.wantCsum)
			}
		})
	}
}

func TestSplitErrors(t *testing.T) {
	tcp4, tcp4H, _ := spBuild(spSpec{inner: 4, tcp: true, flags: spTCPACK, payload: 3000, gso: 1000})
	tcp6, tcp6H, _ := spBuild(spSpec{inner: 6, tcp: true, flags: spTCPACK, payload: 3000, gso: 1000})
	udp4, udp4H, _ := spBuild(spSpec{inner: 4, payload: 3000, gso: 1000})
	tun, tunH, tunL := spBuild(spSpec{outer: 4, inner: 4, tcp: true, flags: spTCPACK, payload: 3000, gso: 1000})
	tun6, tun6H, _ := spBuild(spSpec{outer: 6, inner: 6, payload: 3000, gso: 1000})
	with := func(h Header, change func(*Header)) Header {
		change(&h)
		return h
	}
	big, bigH, _ := spBuild(spSpec{inner: 6, payload: 70000, gso: 65535})
	tests := []struct {
		name    string
		pkt     []byte
		h       Header
		outs    int
		outLen  int
		offset  int
		sizes   int // 0: as many as outs
		wantErr error
	}{
		{"empty packet", nil, tcp4H, 4, 1100, 0, 0, nil},
		{"empty tunnel packet", nil, tunH, 4, 1200, 0, 0, nil},
		{"truncated in TCP header", tcp4[:30], tcp4H, 4, 1100, 0, 0, nil},
		{"truncated in TCP options", tcp4[:45], tcp4H, 4, 1100, 0, 0, nil},
		{"truncated in IP header", tcp6[:30], tcp6H, 4, 1100, 0, 0, nil},
		{"truncated tunnel", tun[:tunL.th+10], tunH, 4, 1200, 0, 0, nil},
		{"CsumStart past end v4", tcp4, with(tcp4H, func(h *Header) { h.CsumStart = uint16(len(tcp4) + 10) }), 4, 1100, 0, 0, nil},
		{"CsumStart past end v6", tcp6, with(tcp6H, func(h *Header) { h.CsumStart = uint16(len(tcp6) + 10) }), 4, 1100, 0, 0, nil},
		{"CsumStart inside IPv6 header", tcp6, with(tcp6H, func(h *Header) { h.CsumStart = 30 }), 4, 1100, 0, 0, nil},
		{"CsumStart past end tunnel", tun, with(tunH, func(h *Header) { h.CsumStart = 0xfff0 }), 4, 1200, 0, 0, nil},
		{"none CsumStart past end", udp4, Header{Flags: FlagNeedsCsum, CsumStart: uint16(len(udp4)), CsumOffset: 6}, 1, 4000, 0, 0, nil},
		{"none CsumOffset past end", udp4, Header{Flags: FlagNeedsCsum, CsumStart: 20, CsumOffset: uint16(len(udp4) - 21)}, 1, 4000, 0, 0, nil},
		{"InnerNH < OuterTH+8", tun, with(tunH, func(h *Header) { h.InnerNH = h.OuterTH + 7 }), 4, 1200, 0, 0, nil},
		{"InnerNH past end", tun, with(tunH, func(h *Header) { h.InnerNH = uint16(len(tun)) }), 4, 1200, 0, 0, nil},
		{"InnerNH wrong", tun, with(tunH, func(h *Header) { h.InnerNH -= 2 }), 4, 1200, 0, 0, nil},
		{"OuterTH wrong", tun, with(tunH, func(h *Header) { h.OuterTH = 24 }), 4, 1200, 0, 0, nil},
		{"OuterTH inside IPv6", tun6, with(tun6H, func(h *Header) { h.OuterTH = 20 }), 4, 1200, 0, 0, nil},
		{"GSOSize 0", tcp4, with(tcp4H, func(h *Header) { h.GSOSize = 0 }), 4, 1100, 0, 0, nil},
		{"GSOSize 0 tunnel", tun, with(tunH, func(h *Header) { h.GSOSize = 0 }), 4, 1200, 0, 0, nil},
		{"CsumOffset not TCP's", tcp4, with(tcp4H, func(h *Header) { h.CsumOffset = 6 }), 4, 1100, 0, 0, nil},
		{"CsumOffset not UDP's", udp4, with(udp4H, func(h *Header) { h.CsumOffset = 16 }), 4, 1100, 0, 0, nil},
		{"TCPv6 type on IPv4", tcp4, with(tcp4H, func(h *Header) { h.GSOType = GSOTCPv6 }), 4, 1100, 0, 0, nil},
		{"TCPv4 type on IPv6", tcp6, with(tcp6H, func(h *Header) { h.GSOType = GSOTCPv4 }), 4, 1100, 0, 0, nil},
		{"tunnel IPv6 bit on IPv4 outer", tun, with(tunH, func(h *Header) { h.GSOType ^= GSOUDPTunnelIPv4 | GSOUDPTunnelIPv6 }), 4, 1200, 0, 0, nil},
		{"both tunnel bits", tun, with(tunH, func(h *Header) { h.GSOType |= GSOUDPTunnelIPv6 }), 4, 1200, 0, 0, nil},
		{"tunnel without inner type", tun, with(tunH, func(h *Header) { h.GSOType = GSOUDPTunnelIPv4 }), 4, 1200, 0, 0, nil},
		{"UFO", udp4, with(udp4H, func(h *Header) { h.GSOType = GSOUDP }), 4, 1100, 0, 0, nil},
		{"ECN alone", tcp4, with(tcp4H, func(h *Header) { h.GSOType = GSOECN }), 4, 1100, 0, 0, nil},
		{"TCP data offset under 20", func() []byte { b := bytes.Clone(tcp4); b[32] = 4 << 4; return b }(), tcp4H, 4, 1100, 0, 0, nil},
		{"segment over 65535", big, bigH, 4, 70000, 0, 0, nil},
		{"too few outs", tcp4, tcp4H, 2, 1100, 0, 0, ErrTooManySegments},
		{"too few outs tunnel", tun, tunH, 1, 1200, 0, 0, ErrTooManySegments},
		{"too few sizes", tcp4, tcp4H, 4, 1100, 0, 2, ErrTooManySegments},
		{"no outs none", udp4, Header{}, 0, 0, 0, 0, ErrTooManySegments},
		{"out too small", tcp4, tcp4H, 4, 1000, 0, 0, nil},
		{"out too small with offset", tcp4, tcp4H, 4, 1100, 60, 0, nil},
		{"offset past out", tcp4, tcp4H, 4, 1100, 2000, 0, nil},
		{"negative offset", tcp4, tcp4H, 4, 1100, -1, 0, nil},
		{"none out too small", udp4, Header{}, 1, len(udp4) - 1, 0, 0, nil},
		{"none offset past out", udp4, Header{}, 1, 4000, 4001, 0, nil},
		{"tunnel out too small", tun, tunH, 4, 1000 + tunL.hdrLen - 1, 0, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := bytes.Clone(tt.pkt)
			outs := spOuts(tt.outs, tt.outLen)
			sizes := make([]int, tt.outs)
			if tt.sizes != 0 {
				sizes = make([]int, tt.sizes)
			}
			n, err := Split(tt.pkt, tt.h, outs, sizes, tt.offset)
			if err == nil {
				t.Fatalf("Split = %d, nil; want an error", n)
			}
			t.Log(err)
			if n != 0 {
				t.Errorf("Split = %d with an error, want 0", n)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v is not %v", err, tt.wantErr)
			}
			if !bytes.Equal(tt.pkt, orig) {
				t.Error("Split modified pkt")
			}
			for i, out := range outs {
				if !bytes.Equal(out, bytes.Repeat([]byte{0xaa}, len(out))) {
					t.Errorf("out %d written despite the error", i)
				}
			}
		})
	}
}

// TestSplitGood checks the packets the error cases start from do split.
func TestSplitGood(t *testing.T) {
	for _, s := range []spSpec{
		{inner: 4, tcp: true, flags: spTCPACK, payload: 3000, gso: 1000},
		{outer: 4, inner: 4, tcp: true, flags: spTCPACK, payload: 3000, gso: 1000},
		{outer: 6, inner: 6, payload: 3000, gso: 1000},
	} {
		pkt, h, l := spBuild(s)
		if n, err := Split(pkt, h, spOuts(3, 1000+l.hdrLen), make([]int, 3), 0); n != 3 || err != nil {
			t.Errorf("%+v: Split = %d, %v; want 3, nil", s, n, err)
		}
	}
}

// TestSplitUDPZeroChecksum checks that a UDP checksum computed as 0 is
// written 0xffff, inner and outer. It splits a packet once, then changes
// a 16-bit word the checksum covers by the checksum written, which makes
// the sum 0xffff, and splits it again.
func TestSplitUDPZeroChecksum(t *testing.T) {
	tests := []struct {
		name string
		spec spSpec
		word func(spLayout) int // the word to change
		csum func(spLayout) int // the checksum to check
	}{
		{"udp4", spSpec{inner: 4, payload: 100, gso: 1000},
			func(l spLayout) int { return l.hdrLen + 98 }, func(l spLayout) int { return l.th + 6 }},
		{"udp6", spSpec{inner: 6, payload: 100, gso: 1000},
			func(l spLayout) int { return l.hdrLen }, func(l spLayout) int { return l.th + 6 }},
		{"tunnel6 outer", spSpec{outer: 6, inner: 6, payload: 100, gso: 1000},
			func(l spLayout) int { return l.outerTH + 8 + 2 }, func(l spLayout) int { return l.outerTH + 6 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkt, h, l := spBuild(tt.spec)
			outs, sizes := spOuts(1, 2000), make([]int, 1)
			if n, err := Split(pkt, h, outs, sizes, 0); n != 1 || err != nil {
				t.Fatalf("Split = %d, %v; want 1, nil", n, err)
			}
			at, c := tt.word(l), binary.BigEndian.Uint16(outs[0][tt.csum(l):])
			w := uint64(binary.BigEndian.Uint16(pkt[at:]))
			binary.BigEndian.PutUint16(pkt[at:], refFold(w+uint64(c)))
			if n, err := Split(pkt, h, outs, sizes, 0); n != 1 || err != nil {
				t.Fatalf("Split = %d, %v; want 1, nil", n, err)
			}
			seg := outs[0][:sizes[0]]
			if got := binary.BigEndian.Uint16(seg[tt.csum(l):]); got != 0xffff {
				t.Errorf("checksum %#x, want 0xffff", got)
			}
			if err := spCheckSegment(seg, pkt, tt.spec, l, 0, 1); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestSplitAllocs(t *testing.T) {
	pkt, h, _ := spBuild(spSpec{outer: 4, outerCsum: true, inner: 4, tcp: true, flags: spTCPACK, payload: 65000, gso: 1318})
	outs, sizes := spOuts(64, 1500), make([]int, 64)
	allocs := testing.AllocsPerRun(20, func() {
		if _, err := Split(pkt, h, outs, sizes, 0); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Split allocates %v times per call, want 0", allocs)
	}
}

func BenchmarkSplitTunnel(b *testing.B) {
	pkt, h, _ := spBuild(spSpec{outer: 4, outerCsum: true, inner: 4, tcp: true, flags: spTCPACK, payload: 65000, gso: 1318})
	outs, sizes := spOuts(64, 1500), make([]int, 64)
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		if _, err := Split(pkt, h, outs, sizes, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzSplit splits random packets with random Headers: Split must never
// panic, every size it returns must fit its out buffer, and on an error
// nothing is written.
func FuzzSplit(f *testing.F) {
	// Small packets of a few segments: the fuzzer minimizes every new
	// input it finds, which takes long on big ones.
	for _, s := range []spSpec{
		{inner: 4, tcp: true, flags: spTCPACK | spTCPPSH | spTCPCWR, payload: 250, gso: 100},
		{inner: 6, tcp: true, flags: spTCPACK, payload: 200, gso: 100},
		{inner: 4, payload: 150, gso: 70},
		{outer: 4, outerCsum: true, inner: 4, tcp: true, flags: spTCPACK, payload: 300, gso: 128},
		{outer: 4, inner: 6, tcp: true, flags: spTCPACK, payload: 200, gso: 128},
		{outer: 6, inner: 4, payload: 200, gso: 100},
	} {
		pkt, h, _ := spBuild(s)
		f.Add(pkt, h.Flags, h.GSOType, h.GSOSize, h.CsumStart, h.CsumOffset, h.OuterTH, h.InnerNH, uint8(4), uint16(400), uint8(4))
	}
	f.Add(spPartialUDP4(spPayload(33)), uint8(FlagNeedsCsum), uint8(GSONone), uint16(0), uint16(20), uint16(6), uint16(0), uint16(0), uint8(1), uint16(200), uint8(0))
	f.Fuzz(func(t *testing.T, pkt []byte, flags, gsoType uint8, gsoSize, csumStart, csumOffset, outerTH, innerNH uint16, nOuts uint8, outLen uint16, offset uint8) {
		h := Header{Flags: flags, GSOType: gsoType, GSOSize: gsoSize, CsumStart: csumStart, CsumOffset: csumOffset, OuterTH: outerTH, InnerNH: innerNH}
		outs := spOuts(int(nOuts%16), int(outLen%2048))
		sizes := make([]int, len(outs))
		orig := bytes.Clone(pkt)
		n, err := Split(pkt, h, outs, sizes, int(offset))
		if !bytes.Equal(pkt, orig) {
			t.Fatal("Split modified pkt")
		}
		if err != nil {
			if n != 0 {
				t.Fatalf("Split = %d with error %v", n, err)
			}
			for i, out := range outs {
				if !bytes.Equal(out, bytes.Repeat([]byte{0xaa}, len(out))) {
					t.Fatalf("out %d written despite error %v", i, err)
				}
			}
			return
		}
		if n < 1 || n > len(outs) {
			t.Fatalf("Split = %d with %d outs", n, len(outs))
		}
		for i := range n {
			if sizes[i] < 0 || sizes[i] > len(outs[i])-int(offset) {
				t.Fatalf("size %d of segment %d does not fit out buffer of %d at offset %d", sizes[i], i, len(outs[i]), offset)
			}
		}
	})
}
