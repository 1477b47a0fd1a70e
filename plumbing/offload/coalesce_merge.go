// Ported from wireguard-go (tun/offload_linux.go, MIT, Copyright (C)
// 2017-2025 WireGuard LLC); the VXLAN parts are this package's own.

package offload

import (
	"bytes"
	"encoding/binary"
)

// canCoalesce represents the outcome of checking if two TCP packets are
// candidates for coalescing.
type canCoalesce int

const (
	coalescePrepend     canCoalesce = -1
	coalesceUnavailable canCoalesce = 0
	coalesceAppend      canCoalesce = 1
)

// ipHeadersCanCoalesce returns true if the IP headers found in pktA and pktB
// meet all requirements to be merged as part of a GRO operation, otherwise it
// returns false. Ported from wireguard-go (MIT).
func ipHeadersCanCoalesce(pktA, pktB []byte) bool {
	if len(pktA) < 9 || len(pktB) < 9 {
		return false
	}
	if pktA[0]>>4 == 6 {
		if pktA[0] != pktB[0] || pktA[1]>>4 != pktB[1]>>4 {
			// cannot coalesce with unequal Traffic class values
			return false
		}
		if pktA[7] != pktB[7] {
			// cannot coalesce with unequal Hop limit values
			return false
		}
	} else {
		if pktA[1] != pktB[1] {
			// cannot coalesce with unequal ToS values
			return false
		}
		if pktA[6]>>5 != pktB[6]>>5 {
			// cannot coalesce with unequal DF or reserved bits. MF is checked
			// further up the stack.
			return false
		}
		if pktA[8] != pktB[8] {
			// cannot coalesce with unequal TTL values
			return false
		}
	}
	return true
}

// udpPacketsCanCoalesce evaluates if pkt can be coalesced with the packet
// described by item. iphLen and gsoSize describe pkt. Ported from
// wireguard-go (MIT).
func udpPacketsCanCoalesce(pkt []byte, iphLen, gsoSize int, item udpGROItem, bufs [][]byte, bufsOffset int) canCoalesce {
	pktTarget := bufs[item.bufsIndex][bufsOffset:]
	if !ipHeadersCanCoalesce(pkt, pktTarget) {
		return coalesceUnavailable
	}
	if len(pktTarget[iphLen+groUDPHeaderLen:])%item.gsoSize != 0 {
		// A smaller than gsoSize packet has been appended previously.
		// Nothing can come after a smaller packet on the end.
		return coalesceUnavailable
	}
	if gsoSize > item.gsoSize {
		// We cannot have a larger packet following a smaller one.
		return coalesceUnavailable
	}
	return coalesceAppend
}

// tcpPacketsCanCoalesce evaluates if pkt, whose headers seg locates, can be
// coalesced with the packet described by item. This function makes
// considerations that match the kernel's GRO self tests, which can be found
// in tools/testing/selftests/net/gro.c. Ported from wireguard-go (MIT); the
// outer IPv4 header of VXLAN is checked too.
func tcpPacketsCanCoalesce(pkt []byte, seg tcpSegment, seq uint32, pshSet bool, gsoSize int, item tcpGROItem, bufs [][]byte, bufsOffset int) canCoalesce {
	pktTarget := bufs[item.bufsIndex][bufsOffset:]
	if seg.tcphLen != item.seg.tcphLen || seg.tcpOff != item.seg.tcpOff {
		// cannot coalesce with unequal tcp options len
		return coalesceUnavailable
	}
	if seg.tcphLen > 20 {
		if !bytes.Equal(pkt[seg.tcpOff+20:seg.headersLen()], pktTarget[seg.tcpOff+20:seg.headersLen()]) {
			// cannot coalesce with unequal tcp options
			return coalesceUnavailable
		}
	}
	if !ipHeadersCanCoalesce(pkt[seg.ipOff:], pktTarget[seg.ipOff:]) {
		return coalesceUnavailable
	}
	if seg.tunnel && !ipHeadersCanCoalesce(pkt, pktTarget) {
		return coalesceUnavailable
	}
	// seq adjacency; the payload merged so far, rather than wireguard-go's
	// (numMerged+1)*gsoSize, which may overflow or be short.
	lhsLen := len(pktTarget) - item.seg.headersLen()
	if seq == item.sentSeq+uint32(lhsLen) { // pkt aligns following item from a seq num perspective
		if item.pshSet {
			// We cannot append to a segment that has the PSH flag set, PSH
			// can only be set on the final segment in a reassembled group.
			return coalesceUnavailable
		}
		if lhsLen%item.gsoSize != 0 {
			// A smaller than gsoSize packet has been appended previously.
			// Nothing can come after a smaller packet on the end.
			return coalesceUnavailable
		}
		if gsoSize > item.gsoSize {
			// We cannot have a larger packet following a smaller one.
			return coalesceUnavailable
		}
		return coalesceAppend
	} else if seq+uint32(gsoSize) == item.sentSeq { // pkt aligns in front of item from a seq num perspective
		if pshSet {
			// We cannot prepend with a segment that has the PSH flag set, PSH
			// can only be set on the final segment in a reassembled group.
			return coalesceUnavailable
		}
		if gsoSize < item.gsoSize {
			// We cannot have a larger packet following a smaller one.
			return coalesceUnavailable
		}
		if gsoSize > item.gsoSize && item.numMerged > 0 {
			// There's at least one previous merge, and we're larger than all
			// previous. This would put multiple smaller packets on the end.
			return coalesceUnavailable
		}
		return coalescePrepend
	}
	return coalesceUnavailable
}

// groChecksumValid tells whether the transport checksum of the IP packet
// pkt, whose IP header is iphLen bytes, is valid. Ported from
// wireguard-go's checksumValid (MIT).
func groChecksumValid(pkt []byte, iphLen int, proto uint8, isV6 bool) bool {
	src, addrLen := groAddrs(isV6)
	lenForPseudo := uint16(len(pkt) - iphLen)
	cSum := pseudoHeaderChecksumNoFold(proto, pkt[src:src+addrLen], pkt[src+addrLen:src+addrLen*2], lenForPseudo)
	return ^checksum(pkt[iphLen:], cSum) == 0
}

// tcpChecksumsValid tells whether the TCP checksum of pkt, whose headers
// seg locates, is valid, and in VXLAN, whether the outer UDP checksum is
// valid or zero.
func tcpChecksumsValid(pkt []byte, seg tcpSegment) bool {
	if seg.tunnel && binary.BigEndian.Uint16(pkt[groTunnelOuterTH+groUDPCsumOffset:]) != 0 &&
		!groChecksumValid(pkt, groTunnelOuterTH, groProtoUDP, false) {
		return false
	}
	return groChecksumValid(pkt[seg.ipOff:], seg.tcpOff-seg.ipOff, groProtoTCP, seg.isV6)
}

// coalesceResult represents the result of attempting to coalesce two TCP
// packets.
type coalesceResult int

const (
	coalesceInsufficientCap coalesceResult = iota
	coalescePSHEnding
	coalesceItemInvalidCSum
	coalescePktInvalidCSum
	coalesceSuccess
)

// coalesceUDPPackets attempts to coalesce pkt with the packet described by
// item, and returns the outcome. Ported from wireguard-go (MIT).
func coalesceUDPPackets(pkt []byte, item *udpGROItem, bufs [][]byte, bufsOffset int, isV6 bool) coalesceResult {
	headersLen := item.iphLen + groUDPHeaderLen
	coalescedLen := len(bufs[item.bufsIndex][bufsOffset:]) + len(pkt) - headersLen
	if cap(bufs[item.bufsIndex])-bufsOffset < coalescedLen || coalescedLen > groMaxPacket {
		// We don't want to allocate a new underlying array if capacity is
		// too small.
		return coalesceInsufficientCap
	}
	if item.numMerged == 0 {
		if item.cSumKnownInvalid || !groChecksumValid(bufs[item.bufsIndex][bufsOffset:], item.iphLen, groProtoUDP, isV6) {
			return coalesceItemInvalidCSum
		}
	}
	if !groChecksumValid(pkt, item.iphLen, groProtoUDP, isV6) {
		return coalescePktInvalidCSum
	}
	bufs[item.bufsIndex] = append(bufs[item.bufsIndex], pkt[headersLen:]...)
	item.numMerged++
	return coalesceSuccess
}

// coalesceTCPPackets attempts to coalesce pkt (at bufs[pktBuffsIndex]) with
// the packet described by item, and returns the outcome. This function may
// swap bufs elements in the event of a prepend as item's bufs index is
// already being tracked for writing to a Device. Ported from wireguard-go
// (MIT).
func coalesceTCPPackets(mode canCoalesce, pkt []byte, pktBuffsIndex int, gsoSize int, seq uint32, pshSet bool, item *tcpGROItem, bufs [][]byte, bufsOffset int) coalesceResult {
	headersLen := item.seg.headersLen()
	coalescedLen := len(bufs[item.bufsIndex][bufsOffset:]) + len(pkt) - headersLen
	if coalescedLen > groMaxPacket {
		return coalesceInsufficientCap
	}
	if mode == coalescePrepend {
		if cap(bufs[pktBuffsIndex])-bufsOffset < coalescedLen {
			// We don't want to allocate a new underlying array if capacity is
			// too small.
			return coalesceInsufficientCap
		}
		if pshSet {
			return coalescePSHEnding
		}
		if item.numMerged == 0 && !tcpChecksumsValid(bufs[item.bufsIndex][bufsOffset:], item.seg) {
			return coalesceItemInvalidCSum
		}
		if !tcpChecksumsValid(pkt, item.seg) {
			return coalescePktInvalidCSum
		}
		item.sentSeq = seq
		bufs[pktBuffsIndex] = append(bufs[pktBuffsIndex], bufs[item.bufsIndex][bufsOffset+headersLen:]...)
		// Flip the slice headers in bufs as part of prepend. The index of item
		// is already being tracked for writing.
		bufs[item.bufsIndex], bufs[pktBuffsIndex] = bufs[pktBuffsIndex], bufs[item.bufsIndex]
		if item.pshSet {
			// The segment that now ends the run had PSH: keep it (wireguard-go
			// loses it here).
			bufs[item.bufsIndex][bufsOffset+item.seg.tcpOff+groTCPFlagsOffset] |= groTCPFlagPSH
		}
	} else {
		pktHead := bufs[item.bufsIndex][bufsOffset:]
		if cap(bufs[item.bufsIndex])-bufsOffset < coalescedLen {
			// We don't want to allocate a new underlying array if capacity is
			// too small.
			return coalesceInsufficientCap
		}
		if item.numMerged == 0 && !tcpChecksumsValid(pktHead, item.seg) {
			return coalesceItemInvalidCSum
		}
		if !tcpChecksumsValid(pkt, item.seg) {
			return coalescePktInvalidCSum
		}
		if pshSet {
			// We are appending a segment with PSH set.
			item.pshSet = pshSet
			pktHead[item.seg.tcpOff+groTCPFlagsOffset] |= groTCPFlagPSH
		}
		bufs[item.bufsIndex] = append(bufs[item.bufsIndex], pkt[headersLen:]...)
	}

	if gsoSize > item.gsoSize {
		item.gsoSize = gsoSize
	}

	item.numMerged++
	return coalesceSuccess
}

type groResult int

const (
	groResultNoop groResult = iota
	groResultTableInsert
	groResultCoalesced
)

// tcpGRO evaluates the TCP segment at pktI in bufs, whose headers seg
// locates, for coalescing with existing packets tracked in table. It
// returns a groResultNoop when no action was taken, groResultTableInsert
// when the evaluated packet was inserted into table, and
// groResultCoalesced when the evaluated packet was coalesced with another
// packet in table. Ported from wireguard-go (MIT).
func tcpGRO(bufs [][]byte, offset int, pktI int, table *tcpGROTable, seg tcpSegment) groResult {
	pkt := bufs[pktI][offset:]
	tcp := pkt[seg.tcpOff:]
	var pshSet bool
	// not a candidate if any non-ACK flags (except PSH+ACK) are set
	switch tcp[groTCPFlagsOffset] {
	case groTCPFlagACK:
	case groTCPFlagACK | groTCPFlagPSH:
		pshSet = true
	default:
		return groResultNoop
	}
	gsoSize := len(pkt) - seg.headersLen()
	// not a candidate if payload len is 0
	if gsoSize < 1 {
		return groResultNoop
	}
	seq := binary.BigEndian.Uint32(tcp[4:])
	key := newTCPFlowKey(pkt, seg)
	items, existing := table.lookupOrInsert(key, pkt, seg, pktI)
	if !existing {
		return groResultTableInsert
	}
	for i := len(items) - 1; i >= 0; i-- {
		// In the best case of packets arriving in order iterating in reverse is
		// more efficient if there are multiple items for a given flow. This
		// also enables a natural table.deleteAt() in the
		// coalesceItemInvalidCSum case without the need for index tracking.
		// This algorithm makes a best effort to coalesce in the event of
		// unordered packets, where pkt may land anywhere in items from a
		// sequence number perspective, however once an item is inserted into
		// the table it is never compared across other items later.
		item := items[i]
		can := tcpPacketsCanCoalesce(pkt, seg, seq, pshSet, gsoSize, item, bufs, offset)
		if can == coalesceUnavailable {
			continue
		}
		switch coalesceTCPPackets(can, pkt, pktI, gsoSize, seq, pshSet, &item, bufs, offset) {
		case coalesceSuccess:
			table.updateAt(item, i)
			return groResultCoalesced
		case coalesceItemInvalidCSum:
			// delete the item with an invalid csum; it is written alone,
			// with the zero Header.
			table.deleteAt(item.key, i)
		case coalescePktInvalidCSum:
			// no point in inserting an item that we can't coalesce
			return groResultNoop
		}
	}
	// failed to coalesce with any other packets; store the item in the flow
	table.insert(key, pkt, seg, pktI)
	return groResultTableInsert
}

// udpGRO evaluates the UDP packet at pktI in bufs for coalescing with
// existing packets tracked in table. It returns a groResultNoop when no
// action was taken, groResultTableInsert when the evaluated packet was
// inserted into table, and groResultCoalesced when the evaluated packet was
// coalesced with another packet in table. Ported from wireguard-go (MIT).
func udpGRO(bufs [][]byte, offset int, pktI int, table *udpGROTable, isV6 bool) groResult {
	pkt := bufs[pktI][offset:]
	if len(pkt) > groMaxPacket {
		// A valid IPv4 or IPv6 packet will never exceed this.
		return groResultNoop
	}
	iphLen := 20
	if isV6 {
		iphLen = 40
		if int(binary.BigEndian.Uint16(pkt[4:])) != len(pkt)-iphLen {
			return groResultNoop
		}
	} else if !ipv4Unfragmented(pkt) {
		return groResultNoop
	}
	if len(pkt) < iphLen+groUDPHeaderLen {
		return groResultNoop
	}
	gsoSize := len(pkt) - groUDPHeaderLen - iphLen
	// not a candidate if payload len is 0
	if gsoSize < 1 {
		return groResultNoop
	}
	key := newUDPFlowKey(pkt, isV6, iphLen)
	items, existing := table.lookupOrInsert(key, pkt, iphLen, pktI)
	if !existing {
		return groResultTableInsert
	}
	// With UDP we only check the last item, otherwise we could reorder packets
	// for a given flow. We must also always insert a new item, or successfully
	// coalesce with an existing item, for the same reason.
	item := items[len(items)-1]
	can := udpPacketsCanCoalesce(pkt, iphLen, gsoSize, item, bufs, offset)
	var pktCSumKnownInvalid bool
	if can == coalesceAppend {
		switch coalesceUDPPackets(pkt, &item, bufs, offset, isV6) {
		case coalesceSuccess:
			table.updateAt(item, len(items)-1)
			return groResultCoalesced
		case coalesceItemInvalidCSum:
			// If the existing item has an invalid csum we take no action. A new
			// item will be stored after it, and the existing item will never be
			// revisited as part of future coalescing candidacy checks.
		case coalescePktInvalidCSum:
			// We must insert a new item, but we also mark it as invalid csum
			// to prevent a repeat checksum validation.
			pktCSumKnownInvalid = true
		}
	}
	// failed to coalesce with any other packets; store the item in the flow
	table.insert(key, pkt, iphLen, pktI, pktCSumKnownInvalid)
	return groResultTableInsert
}

// applyCoalesceAccounting rewrites the headers of the merged packets in
// table for GSO and sets their Headers (by index into bufs). Ported from
// wireguard-go's applyTCPCoalesceAccounting (MIT), which encodes the
// header in front of the packet instead.
func (t *tcpGROTable) applyCoalesceAccounting(bufs [][]byte, offset int, headers []Header) {
	for _, items := range t.itemsByFlow {
		for _, item := range items {
			if item.numMerged == 0 {
				continue
			}
			seg := item.seg
			pkt := bufs[item.bufsIndex][offset:]
			hdr := Header{
				Flags:      FlagNeedsCsum, // this turns into CHECKSUM_PARTIAL in the skb
				GSOType:    GSOTCPv4,
				HdrLen:     uint16(seg.headersLen()),
				GSOSize:    uint16(item.gsoSize),
				CsumStart:  uint16(seg.tcpOff),
				CsumOffset: groTCPCsumOffset,
			}
			if seg.isV6 {
				hdr.GSOType = GSOTCPv6
			}
			if seg.tunnel {
				setVXLANLengths(pkt)
				hdr.GSOType |= GSOUDPTunnelIPv4
				hdr.OuterTH, hdr.InnerNH = groTunnelOuterTH, groTunnelInnerNH
			}
			ip := pkt[seg.ipOff:]
			iphLen := seg.tcpOff - seg.ipOff
			setIPLength(ip, iphLen, seg.isV6)
			// Downstream checksum offloading will combine the pseudo-header
			// sum with that of the TCP header and payload.
			putPseudoHeaderSum(ip, iphLen, groProtoTCP, groTCPCsumOffset, seg.isV6)
			headers[item.bufsIndex] = hdr
		}
	}
}

// applyCoalesceAccounting rewrites the headers of the merged packets in
// table for GSO and sets their Headers (by index into bufs). Ported from
// wireguard-go's applyUDPCoalesceAccounting (MIT), which encodes the
// header in front of the packet instead.
func (u *udpGROTable) applyCoalesceAccounting(bufs [][]byte, offset int, headers []Header) {
	for _, items := range u.itemsByFlow {
		for _, item := range items {
			if item.numMerged == 0 {
				continue
			}
			pkt := bufs[item.bufsIndex][offset:]
			setIPLength(pkt, item.iphLen, item.key.isV6)
			binary.BigEndian.PutUint16(pkt[item.iphLen+4:], uint16(len(pkt)-item.iphLen)) // UDP length
			putPseudoHeaderSum(pkt, item.iphLen, groProtoUDP, groUDPCsumOffset, item.key.isV6)
			headers[item.bufsIndex] = Header{
				Flags:      FlagNeedsCsum, // this turns into CHECKSUM_PARTIAL in the skb
				GSOType:    GSOUDPL4,
				HdrLen:     uint16(item.iphLen + groUDPHeaderLen),
				GSOSize:    uint16(item.gsoSize),
				CsumStart:  uint16(item.iphLen),
				CsumOffset: groUDPCsumOffset,
			}
		}
	}
}

// setIPLength sets the total (IPv4) or payload (IPv6) length of the IP
// packet ip to its length, and recomputes the IPv4 header checksum.
func setIPLength(ip []byte, iphLen int, isV6 bool) {
	if isV6 {
		binary.BigEndian.PutUint16(ip[4:], uint16(len(ip)-iphLen))
		return
	}
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:], ^checksum(ip[:iphLen], 0))
}

// setVXLANLengths sets the outer IPv4 and UDP lengths of the merged VXLAN
// packet pkt, the IPv4 header checksum, and the UDP checksum to zero
// (none): the kernel delivers the packet locally and does not need it.
func setVXLANLengths(pkt []byte) {
	setIPLength(pkt, groTunnelOuterTH, false)
	udp := pkt[groTunnelOuterTH:]
	binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
	udp[groUDPCsumOffset], udp[groUDPCsumOffset+1] = 0, 0
}

// putPseudoHeaderSum puts the folded pseudo-header sum of the IP packet
// ip (its transport after iphLen bytes) into the transport checksum at
// csumOffset, for the kernel to complete (CHECKSUM_PARTIAL).
func putPseudoHeaderSum(ip []byte, iphLen int, proto uint8, csumOffset int, isV6 bool) {
	src, addrLen := groAddrs(isV6)
	psum := pseudoHeaderChecksumNoFold(proto, ip[src:src+addrLen], ip[src+addrLen:src+2*addrLen], uint16(len(ip)-iphLen))
	binary.BigEndian.PutUint16(ip[iphLen+csumOffset:], checksum(nil, psum))
}
