package offload

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"unsafe"
)

// coOffset is where the packets start in the test buffers.
const coOffset = 16

// coVXLANPort is the tunnel port of the tests.
const coVXLANPort = 4789

const (
	coACK = 0x10
	coPSH = 0x08
	coSYN = 0x02
)

var (
	coSrc4      = netip.MustParseAddr("10.1.0.1")
	coDst4      = netip.MustParseAddr("10.1.0.2")
	coSrc6      = netip.MustParseAddr("fd00::1")
	coDst6      = netip.MustParseAddr("fd00::2")
	coOuterSrc4 = netip.MustParseAddr("192.0.2.1")
	coOuterDst4 = netip.MustParseAddr("192.0.2.2")
	coOuterSrc6 = netip.MustParseAddr("2001:db8::1")
	coOuterDst6 = netip.MustParseAddr("2001:db8::2")
)

// coIP returns an IP packet from src to dst (IPv4 or IPv6 as they are),
// carrying body of protocol proto: TOS (traffic class) tos, TTL (hop
// limit) 64, IPv4 DF and header checksum.
func coIP(src, dst netip.Addr, proto, tos byte, body []byte) []byte {
	if src.Is6() {
		h := make([]byte, 40, 40+len(body))
		h[0], h[1] = 0x60|tos>>4, tos<<4
		binary.BigEndian.PutUint16(h[4:], uint16(len(body)))
		h[6], h[7] = proto, 64
		copy(h[8:], src.AsSlice())
		copy(h[24:], dst.AsSlice())
		return append(h, body...)
	}
	h := make([]byte, 20, 20+len(body))
	h[0], h[1] = 0x45, tos
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(body)))
	binary.BigEndian.PutUint16(h[4:], 0x1234)
	h[6], h[8], h[9] = 0x40, 64, proto
	copy(h[12:], src.AsSlice())
	copy(h[16:], dst.AsSlice())
	binary.BigEndian.PutUint16(h[10:], ^refFold(refSum(h, 0)))
	return append(h, body...)
}

// coSetL4Checksum sets the checksum at csumAt of the transport segment in
// the IP packet ip, which starts at l4.
func coSetL4Checksum(ip []byte, proto byte, l4, csumAt int) {
	ip[l4+csumAt], ip[l4+csumAt+1] = 0, 0
	c := ^refFold(refSum(ip[l4:], refPseudo(ip, proto, len(ip)-l4)))
	if c == 0 && proto == 17 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(ip[l4+csumAt:], c)
}

// coTCP returns a TCP header (with a timestamp option when tsval is not
// zero) and payload, the checksum left zero.
func coTCP(sport, dport uint16, seq, ack uint32, flags byte, tsval uint32, payload []byte) []byte {
	hlen := 20
	if tsval != 0 {
		hlen = 32
	}
	h := make([]byte, hlen, hlen+len(payload))
	binary.BigEndian.PutUint16(h, sport)
	binary.BigEndian.PutUint16(h[2:], dport)
	binary.BigEndian.PutUint32(h[4:], seq)
	binary.BigEndian.PutUint32(h[8:], ack)
	h[12], h[13] = byte(hlen/4)<<4, flags
	binary.BigEndian.PutUint16(h[14:], 65000)
	if tsval != 0 {
		copy(h[20:], []byte{1, 1, 8, 10})
		binary.BigEndian.PutUint32(h[24:], tsval)
		binary.BigEndian.PutUint32(h[28:], 99)
	}
	return append(h, payload...)
}

// coUDP returns a UDP header and payload, the checksum left zero.
func coUDP(sport, dport uint16, payload []byte) []byte {
	h := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(h, sport)
	binary.BigEndian.PutUint16(h[2:], dport)
	binary.BigEndian.PutUint16(h[4:], uint16(8+len(payload)))
	return append(h, payload...)
}

// coVXLAN returns a VXLAN header (flags, vni) and an inner Ethernet header
// (destination MAC ending in mac) in front of the IP packet inner.
func coVXLAN(flags byte, vni uint32, mac byte, inner []byte) []byte {
	h := make([]byte, 22, 22+len(inner))
	h[0] = flags
	binary.BigEndian.PutUint32(h[4:], vni<<8)
	copy(h[8:], []byte{2, 0, 0, 0, 0, mac, 2, 0, 0, 0, 0, 0xfe})
	binary.BigEndian.PutUint16(h[20:], 0x0800)
	if inner[0]>>4 == 6 {
		binary.BigEndian.PutUint16(h[20:], 0x86dd)
	}
	return append(h, inner...)
}

// coPayload returns n bytes that differ from segment to segment.
func coPayload(n int, seed uint32) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(seed + uint32(i)*7)
	}
	return b
}

// coSeg describes a test packet: a TCP segment or UDP datagram, plain or
// inside VXLAN over IPv4.
type coSeg struct {
	udp      bool   // UDP rather than TCP
	v6       bool   // the (inner) IP version
	sport    uint16 // the (inner) source port
	seq, ack uint32
	flags    byte   // TCP flags; zero: ACK
	tsval    uint32 // a TCP timestamp option, if not zero
	n        int    // the payload's length
	tos      byte   // of the (outer) IP header
	badL4    bool   // a wrong (inner) TCP or UDP checksum

	vxlan    bool
	vni      uint32
	noVNI    bool   // VXLAN flags without the I bit
	mac      byte   // the inner destination MAC's last byte
	innerTOS byte   // of the inner IP header
	port     uint16 // the outer UDP destination port; zero: coVXLANPort
	osport   uint16 // the outer UDP source port; zero: 40000
	odst     bool   // another outer IPv4 destination
	outerV6  bool
	badUDP   bool // a wrong outer UDP checksum
	zeroUDP  bool // no outer UDP checksum
}

// at is s moved k segments of its payload length on.
func (s coSeg) at(k int) coSeg {
	s.seq += uint32(k * s.n)
	return s
}

// psh is s with PSH set.
func (s coSeg) psh() coSeg {
	s.flags = coACK | coPSH
	return s
}

// bad is s with a wrong (inner) transport checksum.
func (s coSeg) bad() coSeg {
	s.badL4 = true
	return s
}

// coRun is count segments of s's flow in a row.
func coRun(s coSeg, count int) []coSeg {
	segs := make([]coSeg, count)
	for k := range segs {
		segs[k] = s.at(k)
	}
	return segs
}

// coPkt is a built test packet and where its headers are.
type coPkt struct {
	b      []byte
	ipOff  int   // the (inner) IP header
	l4Off  int   // the (inner) TCP or UDP header
	hdrLen int   // all headers
	gso    uint8 // the GSOType of a run of it merged
	tunnel bool
	udp    bool
}

// payload is p's payload.
func (p coPkt) payload() []byte { return p.b[p.hdrLen:] }

// build returns the packet s describes.
func (s coSeg) build() coPkt {
	src, dst := coSrc4, coDst4
	if s.v6 {
		src, dst = coSrc6, coDst6
	}
	payload := coPayload(s.n, s.seq+uint32(s.sport))
	proto, l4, csumAt, gso := byte(6), []byte(nil), 16, uint8(GSOTCPv4)
	if s.udp {
		proto, l4, csumAt, gso = 17, coUDP(s.sport, 53, payload), 6, GSOUDPL4
	} else {
		flags := s.flags
		if flags == 0 {
			flags = coACK
		}
		l4 = coTCP(s.sport, 443, s.seq, s.ack, flags, s.tsval, payload)
		if s.v6 {
			gso = GSOTCPv6
		}
	}
	tos := s.tos
	if s.vxlan {
		tos = s.innerTOS
	}
	ip := coIP(src, dst, proto, tos, l4)
	iphLen := len(ip) - len(l4)
	coSetL4Checksum(ip, proto, iphLen, csumAt)
	if s.badL4 {
		ip[iphLen+csumAt] ^= 0x5a
	}
	p := coPkt{b: ip, l4Off: iphLen, hdrLen: len(ip) - len(payload), gso: gso, udp: s.udp}
	if s.vxlan {
		p = s.wrap(p)
	}
	return p
}

// wrap puts p into the VXLAN packet s describes: a tunnel packet, but
// plain UDP to a port other than coVXLANPort or over IPv6.
func (s coSeg) wrap(p coPkt) coPkt {
	osrc, odst := coOuterSrc4, coOuterDst4
	if s.outerV6 {
		osrc, odst = coOuterSrc6, coOuterDst6
	}
	if s.odst {
		odst = coOuterDst4.Next()
	}
	port, flags := s.port, byte(0x08)
	if port == 0 {
		port = coVXLANPort
	}
	if s.noVNI {
		flags = 0
	}
	sport := s.osport
	if sport == 0 {
		sport = 40000
	}
	udp := coUDP(sport, port, coVXLAN(flags, s.vni, s.mac, p.b))
	outer := coIP(osrc, odst, 17, s.tos, udp)
	oh := len(outer) - len(udp)
	switch {
	case s.zeroUDP:
	case s.badUDP:
		coSetL4Checksum(outer, 17, oh, 6)
		outer[oh+6] ^= 0x5a
	default:
		coSetL4Checksum(outer, 17, oh, 6)
	}
	if port != coVXLANPort || s.outerV6 {
		return coPkt{b: outer, l4Off: oh, hdrLen: oh + 8, gso: GSOUDPL4, udp: true}
	}
	inner := oh + 8 + 8 + 14
	return coPkt{b: outer, ipOff: inner, l4Off: inner + p.l4Off, hdrLen: inner + p.hdrLen,
		gso: p.gso | GSOUDPTunnelIPv4, tunnel: true, udp: p.udp}
}

// coBuild builds segs into buffers of coOffset+room bytes of capacity
// (65535 of room when zero).
func coBuild(segs []coSeg, room int) ([]coPkt, [][]byte) {
	if room == 0 {
		room = 65535
	}
	pkts := make([]coPkt, len(segs))
	bufs := make([][]byte, len(segs))
	for i, s := range segs {
		pkts[i] = s.build()
		bufs[i] = coBuffer(pkts[i].b, room)
	}
	return pkts, bufs
}

// coBuffer is pkt at coOffset in a buffer of coOffset+room bytes of
// capacity (at least enough for pkt).
func coBuffer(pkt []byte, room int) []byte {
	b := make([]byte, coOffset+len(pkt), coOffset+max(room, len(pkt)))
	copy(b[coOffset:], pkt)
	return b
}

// coCheckMerged checks that pkt is a GSO packet as Coalesce makes them
// for h: every length, header checksum and partial transport checksum
// right, at least two segments.
func coCheckMerged(pkt []byte, h Header) error {
	if len(pkt) > 65535 {
		return fmt.Errorf("%d bytes", len(pkt))
	}
	if h.Flags != FlagNeedsCsum || h.GSOSize == 0 || int(h.HdrLen) > len(pkt) || len(pkt)-int(h.HdrLen) <= int(h.GSOSize) {
		return fmt.Errorf("header %+v for %d bytes", h, len(pkt))
	}
	ipOff := 0
	if h.Tunnel() {
		if h.GSOType&GSOUDPTunnelIPv4 == 0 || h.OuterTH != 20 || h.InnerNH != 50 {
			return fmt.Errorf("tunnel header %+v", h)
		}
		if err := coCheckIP(pkt, false); err != nil {
			return fmt.Errorf("outer: %w", err)
		}
		udp := pkt[20:]
		if int(binary.BigEndian.Uint16(udp[4:])) != len(udp) || binary.BigEndian.Uint16(udp[6:]) != 0 {
			return fmt.Errorf("outer UDP length %d of %d, checksum %#x", binary.BigEndian.Uint16(udp[4:]), len(udp), udp[6:8])
		}
		ipOff = 50
	}
	ip := pkt[ipOff:]
	v6 := ip[0]>>4 == 6
	if err := coCheckIP(ip, v6); err != nil {
		return err
	}
	iphLen, proto, thLen, csumAt := 20, byte(6), 0, 16
	if v6 {
		iphLen = 40
	}
	switch h.Inner() {
	case GSOTCPv4, GSOTCPv6:
		if (h.Inner() == GSOTCPv6) != v6 {
			return fmt.Errorf("GSO type %#x for IPv%d", h.GSOType, ip[0]>>4)
		}
		thLen = int(ip[iphLen+12]>>4) * 4
	case GSOUDPL4:
		if h.Tunnel() {
			return fmt.Errorf("GSO type %#x", h.GSOType)
		}
		proto, thLen, csumAt = 17, 8, 6
		if int(binary.BigEndian.Uint16(ip[iphLen+4:])) != len(ip)-iphLen {
			return fmt.Errorf("UDP length %d of %d", binary.BigEndian.Uint16(ip[iphLen+4:]), len(ip)-iphLen)
		}
	default:
		return fmt.Errorf("GSO type %#x", h.GSOType)
	}
	if int(h.CsumStart) != ipOff+iphLen || int(h.CsumOffset) != csumAt || int(h.HdrLen) != ipOff+iphLen+thLen {
		return fmt.Errorf("offsets %+v", h)
	}
	return coCheckPartial(ip, iphLen, proto, csumAt)
}

// coCheckIP checks the length field of the IP packet ip, and its header
// checksum (IPv4).
func coCheckIP(ip []byte, v6 bool) error {
	if v6 {
		if ip[0]>>4 != 6 || int(binary.BigEndian.Uint16(ip[4:])) != len(ip)-40 {
			return fmt.Errorf("IPv6 payload length %d of %d", binary.BigEndian.Uint16(ip[4:]), len(ip)-40)
		}
		return nil
	}
	if ip[0] != 0x45 || int(binary.BigEndian.Uint16(ip[2:])) != len(ip) {
		return fmt.Errorf("IPv4 %#x, total length %d of %d", ip[0], binary.BigEndian.Uint16(ip[2:]), len(ip))
	}
	if refFold(refSum(ip[:20], 0)) != 0xffff {
		return errors.New("bad IPv4 header checksum")
	}
	return nil
}

// coCheckPartial checks that the transport checksum of ip is the folded
// pseudo-header sum, and that completing it as the kernel does gives a
// valid checksum.
func coCheckPartial(ip []byte, iphLen int, proto byte, csumAt int) error {
	pseudo := refPseudo(ip, proto, len(ip)-iphLen)
	at := iphLen + csumAt
	if got := binary.BigEndian.Uint16(ip[at:]); got != refFold(pseudo) {
		return fmt.Errorf("partial checksum %#04x, want %#04x", got, refFold(pseudo))
	}
	seg := slices.Clone(ip[iphLen:])
	binary.BigEndian.PutUint16(seg[csumAt:], ^refFold(refSum(seg, 0)))
	if refFold(refSum(seg, pseudo)) != 0xffff {
		return errors.New("completed checksum is not valid")
	}
	return nil
}

// coMutable lists the header bytes of p that Coalesce rewrites in a
// merged packet: lengths and checksums, and the TCP flags (PSH).
func coMutable(p coPkt) []int {
	var at []int
	ipFields := func(off int, v6 bool) {
		if v6 {
			at = append(at, off+4, off+5)
		} else {
			at = append(at, off+2, off+3, off+10, off+11)
		}
	}
	if p.tunnel {
		ipFields(0, false)
		at = append(at, 24, 25, 26, 27)
	}
	ipFields(p.ipOff, p.b[p.ipOff]>>4 == 6)
	if p.udp {
		return append(at, p.l4Off+4, p.l4Off+5, p.l4Off+6, p.l4Off+7)
	}
	return append(at, p.l4Off+13, p.l4Off+16, p.l4Off+17)
}

// coCheckRun checks that got is pkts[run...] merged, and h its Header.
func coCheckRun(pkts []coPkt, run []int, got []byte, h Header) error {
	first, last := pkts[run[0]], pkts[run[len(run)-1]]
	want := Header{Flags: FlagNeedsCsum, GSOType: first.gso, HdrLen: uint16(first.hdrLen),
		GSOSize: uint16(len(first.payload())), CsumStart: uint16(first.l4Off), CsumOffset: 16}
	if first.udp {
		want.CsumOffset = 6
	}
	if first.tunnel {
		want.OuterTH, want.InnerNH = 20, 50
	}
	if h != want {
		return fmt.Errorf("header %+v, want %+v", h, want)
	}
	if err := coCheckMerged(got, h); err != nil {
		return err
	}
	var payload []byte
	for _, i := range run {
		payload = append(payload, pkts[i].payload()...)
	}
	if !bytes.Equal(got[first.hdrLen:], payload) {
		return fmt.Errorf("payload of %d bytes, want %d", len(got)-first.hdrLen, len(payload))
	}
	head := slices.Clone(first.b[:first.hdrLen])
	if !first.udp {
		head[first.l4Off+13] |= last.b[last.l4Off+13] & coPSH
	}
	for _, at := range coMutable(first) {
		if at != first.l4Off+13 {
			head[at] = got[at]
		}
	}
	if !bytes.Equal(got[:first.hdrLen], head) {
		return fmt.Errorf("headers\n%x, want\n%x", got[:first.hdrLen], head)
	}
	return nil
}

// coCheck checks writes against want: runs of indices into pkts, each
// written at its smallest index.
func coCheck(t *testing.T, pkts []coPkt, bufs [][]byte, writes []Write, want [][]int) {
	t.Helper()
	var got [][]int
	for _, w := range writes {
		got = append(got, []int{w.Index})
	}
	if len(writes) != len(want) {
		t.Fatalf("%d writes %v, want %d: %v", len(writes), got, len(want), want)
	}
	for k, run := range want {
		w := writes[k]
		if w.Index != slices.Min(run) {
			t.Fatalf("write %d: index %d, want %d (writes %v, want %v)", k, w.Index, slices.Min(run), got, want)
		}
		pkt := bufs[w.Index][coOffset:]
		if len(run) == 1 {
			if w.Header != (Header{}) || !bytes.Equal(pkt, pkts[run[0]].b) {
				t.Errorf("write %d (packet %d): header %+v, changed %v; want it as it was", k, run[0], w.Header, !bytes.Equal(pkt, pkts[run[0]].b))
			}
			continue
		}
		if err := coCheckRun(pkts, run, pkt, w.Header); err != nil {
			t.Errorf("write %d (packets %v): %v", k, run, err)
		}
	}
}

// coSpan is the indices from..to-1.
func coSpan(from, to int) []int {
	s := make([]int, 0, to-from)
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

// coCat is the segments of runs one after the other.
func coCat(runs ...[]coSeg) []coSeg { return slices.Concat(runs...) }

func TestCoalesce(t *testing.T) {
	tcp4 := coSeg{sport: 1000, seq: 1000, ack: 77, n: 100}
	tcp6 := coSeg{v6: true, sport: 1000, seq: 5000, ack: 77, n: 100}
	other4 := tcp4
	other4.sport = 2000
	otherAck := tcp4
	otherAck.ack = 78
	tos4 := tcp4.at(2)
	tos4.tos = 0x10
	ts4 := tcp4
	ts4.tsval = 500
	ts4b := ts4.at(2)
	ts4b.tsval = 501
	syn4 := tcp4.at(1)
	syn4.flags = coACK | coSYN
	short4 := tcp4.at(2)
	short4.n = 40
	udp4 := coSeg{udp: true, sport: 3000, n: 200}
	udp6 := coSeg{udp: true, v6: true, sport: 3000, n: 200}
	big4 := coSeg{sport: 1000, seq: 1, ack: 1, n: 1400}
	bigUDP := udp4
	bigUDP.n = 1400

	vx4 := coSeg{vxlan: true, vni: 42, mac: 1, sport: 1000, seq: 7, ack: 9, n: 1318}
	vx6 := vx4
	vx6.v6 = true
	vxVNI := vx4.at(2)
	vxVNI.vni = 43
	vxMAC := vx4.at(2)
	vxMAC.mac = 2
	vxFlow := vx4
	vxFlow.sport = 2000
	vxOuterTOS := vx4.at(2)
	vxOuterTOS.tos = 0x20
	vxInnerTOS := vx4.at(2)
	vxInnerTOS.innerTOS = 0x20
	vxOuterPort := vx4.at(2)
	vxOuterPort.osport = 40001
	vxOuterDst := vx4
	vxOuterDst.odst = true
	vxPort := vx4
	vxPort.port = coVXLANPort + 1
	vxBadUDP := vx4.at(1)
	vxBadUDP.badUDP = true
	vxZeroUDP := vx4
	vxZeroUDP.zeroUDP = true
	vxOuter6 := vx4
	vxOuter6.outerV6 = true
	vxNoVNI := vx4
	vxNoVNI.noVNI = true
	vxUDP := coSeg{vxlan: true, udp: true, vni: 42, mac: 1, sport: 1000, n: 300}
	vxSmall := vx4
	vxSmall.n = 100

	cases := []struct {
		name   string
		udpGRO bool
		room   int // of each buffer: 65535 when zero
		segs   []coSeg
		want   [][]int
		first  Header // when set, the exact Header of the first Write
	}{
		{name: "tcp4 run", segs: coRun(tcp4, 3), want: [][]int{{0, 1, 2}},
			first: Header{Flags: FlagNeedsCsum, GSOType: GSOTCPv4, HdrLen: 40, GSOSize: 100, CsumStart: 20, CsumOffset: 16}},
		{name: "tcp6 run", segs: coRun(tcp6, 4), want: [][]int{{0, 1, 2, 3}},
			first: Header{Flags: FlagNeedsCsum, GSOType: GSOTCPv6, HdrLen: 60, GSOSize: 100, CsumStart: 40, CsumOffset: 16}},
		{name: "single packet unchanged", segs: coRun(tcp4, 1), want: [][]int{{0}}},
		{name: "psh ends a run", segs: []coSeg{tcp4, tcp4.at(1).psh(), tcp4.at(2), tcp4.at(3)}, want: [][]int{{0, 1}, {2, 3}}},
		{name: "seq gap starts a new run", segs: []coSeg{tcp4, tcp4.at(1), tcp4.at(3), tcp4.at(4)}, want: [][]int{{0, 1}, {2, 3}}},
		{name: "shorter last ends a run", segs: []coSeg{tcp4, tcp4.at(1), short4, short4.at(1)}, want: [][]int{{0, 1, 2}, {3}}},
		{name: "different ports stay apart", segs: []coSeg{tcp4, tcp4.at(1), other4.at(2), other4.at(3)}, want: [][]int{{0, 1}, {2, 3}}},
		{name: "different acks stay apart", segs: []coSeg{tcp4, tcp4.at(1), otherAck.at(2), otherAck.at(3)}, want: [][]int{{0, 1}, {2, 3}}},
		{name: "different tos stay apart", segs: []coSeg{tcp4, tcp4.at(1), tos4, tos4.at(1)}, want: [][]int{{0, 1}, {2, 3}}},
		{name: "v4 and v6 stay apart", segs: []coSeg{tcp4, tcp6, tcp4.at(1), tcp6.at(1)}, want: [][]int{{0, 2}, {1, 3}}},
		{name: "tcp options merge when equal", segs: []coSeg{ts4, ts4.at(1), ts4b, ts4b.at(1)}, want: [][]int{{0, 1}, {2, 3}},
			first: Header{Flags: FlagNeedsCsum, GSOType: GSOTCPv4, HdrLen: 52, GSOSize: 100, CsumStart: 20, CsumOffset: 16}},
		{name: "syn is not merged", segs: []coSeg{tcp4, syn4, tcp4.at(2)}, want: [][]int{{0}, {1}, {2}}},
		{name: "bad checksum not merged", segs: []coSeg{tcp4, tcp4.at(1), tcp4.at(2).bad(), tcp4.at(3)}, want: [][]int{{0, 1}, {2}, {3}}},
		{name: "bad first checksum not merged", segs: []coSeg{tcp4.bad(), tcp4.at(1), tcp4.at(2)}, want: [][]int{{0}, {1, 2}}},
		{name: "out of order prepends", segs: []coSeg{tcp4.at(1), tcp4, tcp4.at(2)}, want: [][]int{{1, 0, 2}}},
		{name: "prepend keeps the last psh", segs: []coSeg{tcp4.at(1).psh(), tcp4}, want: [][]int{{1, 0}}},
		{name: "interleaved flows each merge", segs: []coSeg{tcp4, other4, tcp6, tcp4.at(1), other4.at(1), tcp6.at(1), tcp4.at(2), other4.at(2), tcp6.at(2)},
			want: [][]int{{0, 3, 6}, {1, 4, 7}, {2, 5, 8}}},
		{name: "65535 bytes cut a run", room: 80000, segs: coRun(big4, 50), want: [][]int{coSpan(0, 46), coSpan(46, 50)}},
		{name: "capacity cuts a run", room: 40 + 3*100, segs: coRun(tcp4, 5), want: [][]int{{0, 1, 2}, {3, 4}}},
		{name: "capacity one short", room: 40 + 3*100 - 1, segs: coRun(tcp4, 4), want: [][]int{{0, 1}, {2, 3}}},

		{name: "udp4 not merged without udpGRO", segs: coRun(udp4, 3), want: [][]int{{0}, {1}, {2}}},
		{name: "udp4 run", udpGRO: true, segs: coRun(udp4, 3), want: [][]int{{0, 1, 2}},
			first: Header{Flags: FlagNeedsCsum, GSOType: GSOUDPL4, HdrLen: 28, GSOSize: 200, CsumStart: 20, CsumOffset: 6}},
		{name: "udp6 run", udpGRO: true, segs: coRun(udp6, 3), want: [][]int{{0, 1, 2}}},
		{name: "udp 65535 bytes cut a run", udpGRO: true, room: 80000, segs: coRun(bigUDP, 50), want: [][]int{coSpan(0, 46), coSpan(46, 50)}},
		{name: "udp bad checksum", udpGRO: true, segs: []coSeg{udp4, udp4.bad(), udp4, udp4}, want: [][]int{{0}, {1}, {2, 3}}},

		{name: "vxlan tcp4 45x1318", segs: coRun(vx4, 45), want: [][]int{coSpan(0, 45)},
			first: Header{Flags: FlagNeedsCsum, GSOType: GSOUDPTunnelIPv4 | GSOTCPv4, HdrLen: 90, GSOSize: 1318,
				CsumStart: 70, CsumOffset: 16, OuterTH: 20, InnerNH: 50}},
		{name: "vxlan tcp6 45x1318", segs: coRun(vx6, 45), want: [][]int{coSpan(0, 45)},
			first: Header{Flags: FlagNeedsCsum, GSOType: GSOUDPTunnelIPv4 | GSOTCPv6, HdrLen: 110, GSOSize: 1318,
				CsumStart: 90, CsumOffset: 16, OuterTH: 20, InnerNH: 50}},
		{name: "vxlan single packet unchanged", segs: coRun(vx4, 1), want: [][]int{{0}}},
		{name: "vxlan with udpGRO", udpGRO: true, segs: coRun(vx4, 3), want: [][]int{{0, 1, 2}}},
		{name: "vxlan two vnis stay apart", segs: coCat(coRun(vx4, 2), coRun(vxVNI, 2)), want: [][]int{{0, 1}, {2, 3}}},
		{name: "vxlan two inner flows interleaved", segs: []coSeg{vx4, vxFlow, vx4.at(1), vxFlow.at(1), vx4.at(2)},
			want: [][]int{{0, 2, 4}, {1, 3}}},
		{name: "vxlan inner ethernet differs", segs: coCat(coRun(vx4, 2), coRun(vxMAC, 2)), want: [][]int{{0, 1}, {2, 3}}},
		{name: "vxlan outer tos differs", segs: coCat(coRun(vx4, 2), coRun(vxOuterTOS, 2)), want: [][]int{{0, 1}, {2, 3}}},
		{name: "vxlan inner tos differs", segs: coCat(coRun(vx4, 2), coRun(vxInnerTOS, 2)), want: [][]int{{0, 1}, {2, 3}}},
		{name: "vxlan outer source port differs", segs: coCat(coRun(vx4, 2), coRun(vxOuterPort, 2)), want: [][]int{{0, 1}, {2, 3}}},
		{name: "vxlan outer address differs", segs: []coSeg{vx4, vx4.at(1), vxOuterDst.at(2), vx4.at(2)}, want: [][]int{{0, 1, 3}, {2}}},
		{name: "vxlan other port not merged", segs: coRun(vxPort, 3), want: [][]int{{0}, {1}, {2}}},
		{name: "vxlan other port is plain udp", udpGRO: true, segs: coRun(vxPort, 3), want: [][]int{{0, 1, 2}},
			first: Header{Flags: FlagNeedsCsum, GSOType: GSOUDPL4, HdrLen: 28, GSOSize: 1318 + 90 - 28, CsumStart: 20, CsumOffset: 6}},
		{name: "vxlan bad inner checksum", segs: []coSeg{vx4, vx4.at(1), vx4.at(2).bad(), vx4.at(3)}, want: [][]int{{0, 1}, {2}, {3}}},
		{name: "vxlan bad outer checksum", segs: []coSeg{vx4, vxBadUDP, vx4.at(2)}, want: [][]int{{0}, {1}, {2}}},
		{name: "vxlan zero outer checksum", segs: coRun(vxZeroUDP, 3), want: [][]int{{0, 1, 2}}},
		{name: "vxlan over ipv6 not merged", udpGRO: true, segs: coRun(vxOuter6, 3), want: [][]int{{0}, {1}, {2}}},
		{name: "vxlan without vni not merged", udpGRO: true, segs: coRun(vxNoVNI, 3), want: [][]int{{0}, {1}, {2}}},
		{name: "vxlan inner udp not merged", udpGRO: true, segs: coRun(vxUDP, 3), want: [][]int{{0}, {1}, {2}}},
		{name: "vxlan psh ends a run", segs: []coSeg{vx4, vx4.at(1).psh(), vx4.at(2), vx4.at(3)}, want: [][]int{{0, 1}, {2, 3}}},
		{name: "vxlan out of order prepends", segs: []coSeg{vx6.at(1), vx6, vx6.at(2)}, want: [][]int{{1, 0, 2}}},
		{name: "vxlan 65535 bytes cut a run", room: 80000, segs: coRun(vx4, 50), want: [][]int{coSpan(0, 49), {49}}},
		{name: "vxlan capacity cuts a run", room: 90 + 3*100, segs: coRun(vxSmall, 7), want: [][]int{{0, 1, 2}, {3, 4, 5}, {6}}},
		{name: "mixed kinds", udpGRO: true, segs: []coSeg{vx4, tcp4, udp4, vx4.at(1), tcp4.at(1), udp4, vx4.at(2)},
			want: [][]int{{0, 3, 6}, {1, 4}, {2, 5}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pkts, bufs := coBuild(tc.segs, tc.room)
			caps := make([]int, len(bufs))
			for i, b := range bufs {
				caps[i] = cap(b)
			}
			writes, err := NewCoalescer(tc.udpGRO, []uint16{coVXLANPort}).Coalesce(bufs, coOffset)
			if err != nil {
				t.Fatal(err)
			}
			coCheck(t, pkts, bufs, writes, tc.want)
			if tc.first != (Header{}) && writes[0].Header != tc.first {
				t.Errorf("first header %+v, want %+v", writes[0].Header, tc.first)
			}
			for i, b := range bufs {
				if !slices.Contains(caps, cap(b)) {
					t.Errorf("buffer %d has grown to %d bytes of capacity", i, cap(b))
				}
			}
		})
	}
}

// TestCoalesceReuse runs batches through Coalescers of different tunnel
// ports, each used again after the others.
func TestCoalesceReuse(t *testing.T) {
	vx := coSeg{vxlan: true, vni: 1, sport: 1000, seq: 1, ack: 1, n: 500}
	tcp := coSeg{sport: 1000, seq: 1, ack: 1, n: 500}
	none, vxlan, both, other := NewCoalescer(false, nil), NewCoalescer(false, []uint16{coVXLANPort}),
		NewCoalescer(false, []uint16{1, coVXLANPort}), NewCoalescer(false, []uint16{1})
	batches := []struct {
		c    *Coalescer
		segs []coSeg
		want [][]int
	}{
		{none, coCat(coRun(vx, 3), coRun(tcp, 2)), [][]int{{0}, {1}, {2}, {3, 4}}},
		{vxlan, coCat(coRun(vx, 3), coRun(tcp, 2)), [][]int{{0, 1, 2}, {3, 4}}},
		{vxlan, coRun(tcp, 1), [][]int{{0}}},
		{both, coCat(coRun(tcp, 2), coRun(vx, 2)), [][]int{{0, 1}, {2, 3}}},
		{other, coRun(vx, 2), [][]int{{0}, {1}}},
		{none, coRun(vx, 2), [][]int{{0}, {1}}},
		{vxlan, coCat(coRun(tcp, 2), coRun(vx, 2)), [][]int{{0, 1}, {2, 3}}},
	}
	for k, b := range batches {
		c := b.c
		pkts, bufs := coBuild(b.segs, 0)
		writes, err := c.Coalesce(bufs, coOffset)
		if err != nil {
			t.Fatalf("batch %d: %v", k, err)
		}
		coCheck(t, pkts, bufs, writes, b.want)
	}
}

func TestCoalesceOffset(t *testing.T) {
	pkt := coSeg{sport: 1, seq: 1, ack: 1, n: 10}.build().b
	for _, tc := range []struct {
		name   string
		offset int
		ok     bool
	}{
		{"inside", coOffset, true},
		{"empty packet", coOffset + len(pkt), true},
		{"beyond", coOffset + len(pkt) + 1, false},
		{"negative", -1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bufs := [][]byte{coBuffer(pkt, 0), coBuffer(pkt, 0)}
			writes, err := NewCoalescer(true, nil).Coalesce(bufs, tc.offset)
			if (err == nil) != tc.ok {
				t.Fatalf("error %v, want ok %v", err, tc.ok)
			}
			if tc.ok && len(writes) != 2 {
				t.Fatalf("writes %+v, want both packets alone", writes)
			}
		})
	}
}

func TestCoalesceAllocs(t *testing.T) {
	segs := coRun(coSeg{vxlan: true, sport: 1, seq: 1, ack: 1, n: 1318}, 45)
	pkts, bufs := coBuild(segs, 0)
	c := NewCoalescer(true, []uint16{coVXLANPort})
	allocs := testing.AllocsPerRun(20, func() {
		for i := range bufs {
			bufs[i] = bufs[i][:coOffset+copy(bufs[i][coOffset:cap(bufs[i])], pkts[i].b)]
		}
		if _, err := c.Coalesce(bufs, coOffset); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 0 {
		t.Errorf("%v allocations a batch, want none", allocs)
	}
}

func BenchmarkCoalesceVXLAN(b *testing.B) {
	segs := coRun(coSeg{vxlan: true, sport: 1, seq: 1, ack: 1, n: 1318}, 45)
	pkts, bufs := coBuild(segs, 0)
	c := NewCoalescer(true, []uint16{coVXLANPort})
	b.SetBytes(int64(45 * len(pkts[0].b)))
	for b.Loop() {
		for i := range bufs {
			bufs[i] = bufs[i][:coOffset+copy(bufs[i][coOffset:cap(bufs[i])], pkts[i].b)]
		}
		if _, err := c.Coalesce(bufs, coOffset); err != nil {
			b.Fatal(err)
		}
	}
}

// coFuzzBatch turns data into a batch of packets, four bytes each, most
// of them segments of a few flows with valid checksums so that they merge:
//
//	op: kind (op%8: TCPv4, TCPv6, UDPv4, UDPv6, VXLAN TCPv4, VXLAN TCPv6,
//	    a VXLAN variant, raw bytes), flow (op/8%4)
//	a, b: the payload length
//	c: 1 PSH, 2 a flipped byte, 4 no spare capacity, 8 swapped with the
//	   packet before, 16 other TOS, 32 other ACK, 64|128 the VXLAN variant
//
// A raw packet takes the next a bytes of data as they are.
func coFuzzBatch(data []byte) (pkts [][]byte, rooms []int) {
	seqs := map[[2]byte]uint32{}
	for len(data) >= 4 && len(pkts) < 128 {
		op, a, b, c := data[0], data[1], data[2], data[3]
		data = data[4:]
		n := 1 + int(binary.BigEndian.Uint16([]byte{a, b}))%1500
		var pkt []byte
		if op%8 == 7 {
			pkt = slices.Clone(data[:min(int(a), len(data))])
			data = data[len(pkt):]
		} else {
			flow := [2]byte{op % 8, op / 8 % 4}
			s := coFuzzSeg(op%8, c)
			s.sport, s.n, s.seq = 1000+uint16(flow[1]), n, seqs[flow]
			seqs[flow] += uint32(n)
			pkt = s.build().b
		}
		if c&2 != 0 && len(pkt) > 0 {
			pkt[(int(a)*31+int(b))%len(pkt)] ^= 0xa5
		}
		room := 65535
		if c&4 != 0 {
			room = 0
		}
		pkts, rooms = append(pkts, pkt), append(rooms, room)
		if c&8 != 0 && len(pkts) > 1 {
			k := len(pkts) - 1
			pkts[k], pkts[k-1] = pkts[k-1], pkts[k]
		}
	}
	return pkts, rooms
}

// coFuzzSeg is the segment kind and c of coFuzzBatch describe.
func coFuzzSeg(kind, c byte) coSeg {
	s := coSeg{ack: 1, v6: kind%2 == 1, udp: kind == 2 || kind == 3, vxlan: kind >= 4}
	if c&1 != 0 {
		s.flags = coACK | coPSH
	}
	if c&16 != 0 {
		s.tos = 0x10
	}
	if c&32 != 0 {
		s.ack = 2
	}
	if kind == 6 {
		switch c >> 6 {
		case 0:
			s.outerV6 = true
		case 1:
			s.port = coVXLANPort + 1
		case 2:
			s.udp = true
		case 3:
			s.zeroUDP = true
		}
	}
	return s
}

func FuzzCoalesce(f *testing.F) {
	rep := func(rec []byte, n int) []byte { return bytes.Repeat(rec, n) }
	f.Add(true, rep([]byte{4, 5, 0x25, 0}, 45))                         // VXLAN TCPv4, 45x1318
	f.Add(false, rep([]byte{5, 5, 0x25, 0}, 50))                        // VXLAN TCPv6 past 65535
	f.Add(false, rep([]byte{0, 5, 0x77, 0, 9, 5, 0x77, 0}, 30))         // two TCPv4 flows of 1400
	f.Add(true, rep([]byte{2, 0, 200, 0, 11, 0, 100, 0}, 20))           // UDPv4, UDPv6
	f.Add(true, rep([]byte{1, 0, 99, 8, 1, 0, 99, 1, 6, 1, 0, 64}, 10)) // swapped, PSH, VXLAN variants
	f.Add(true, []byte{7, 28, 0, 0, 0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0x12, 0xb5, 0x12, 0xb5, 0, 8, 0, 0})
	f.Fuzz(func(t *testing.T, udpGRO bool, data []byte) {
		pkts, rooms := coFuzzBatch(data)
		bufs := make([][]byte, len(pkts))
		arrays := map[*byte]int{}
		for i, p := range pkts {
			bufs[i] = coBuffer(p, rooms[i])
			arrays[unsafe.SliceData(bufs[i])] = cap(bufs[i])
		}
		writes, err := NewCoalescer(udpGRO, []uint16{coVXLANPort}).Coalesce(bufs, coOffset)
		if err != nil {
			t.Fatal(err)
		}
		for i, b := range bufs {
			if c, ok := arrays[unsafe.SliceData(b)]; !ok || c != cap(b) {
				t.Fatalf("buffer %d is not one of the batch's (capacity %d)", i, cap(b))
			}
			delete(arrays, unsafe.SliceData(b))
		}
		last := -1
		for _, w := range writes {
			if w.Index <= last || w.Index >= len(bufs) {
				t.Fatalf("write index %d after %d of %d packets", w.Index, last, len(bufs))
			}
			last = w.Index
			pkt := bufs[w.Index][coOffset:]
			if w.Header == (Header{}) {
				if !bytes.Equal(pkt, pkts[w.Index]) {
					t.Fatalf("packet %d written alone but changed", w.Index)
				}
				continue
			}
			if err := coCheckMerged(pkt, w.Header); err != nil {
				t.Fatalf("packet %d: %v", w.Index, err)
			}
		}
	})
}
