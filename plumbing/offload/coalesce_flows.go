// Ported from wireguard-go (tun/offload_linux.go, MIT, Copyright (C)
// 2017-2025 WireGuard LLC); the VXLAN parts are this package's own.

package offload

import (
	"encoding/binary"
)

// tcpFlowKey represents the key for a TCP flow. Ported from wireguard-go
// (MIT); tunnel is this package's.
type tcpFlowKey struct {
	srcAddr, dstAddr [16]byte
	srcPort, dstPort uint16
	rxAck            uint32 // varying ack values should not be coalesced. Treat them as separate flows.
	isV6             bool
	tunnel           vxlanFlowKey
}

// vxlanFlowKey is the part of a VXLAN packet's flow key outside its inner
// TCP/IP headers; zero for plain TCP.
type vxlanFlowKey struct {
	valid            bool
	srcAddr, dstAddr [4]byte // outer IPv4
	srcPort, dstPort uint16  // outer UDP
	vxlan            [groVXLANLen]byte
	eth              [groEthLen]byte
}

// newTCPFlowKey returns the flow key of pkt, whose headers seg locates.
func newTCPFlowKey(pkt []byte, seg tcpSegment) tcpFlowKey {
	key := tcpFlowKey{isV6: seg.isV6}
	ip := pkt[seg.ipOff:]
	src, addrLen := groAddrs(seg.isV6)
	copy(key.srcAddr[:], ip[src:src+addrLen])
	copy(key.dstAddr[:], ip[src+addrLen:src+2*addrLen])
	tcp := pkt[seg.tcpOff:]
	key.srcPort = binary.BigEndian.Uint16(tcp)
	key.dstPort = binary.BigEndian.Uint16(tcp[2:])
	key.rxAck = binary.BigEndian.Uint32(tcp[8:])
	if seg.tunnel {
		t := &key.tunnel
		t.valid = true
		copy(t.srcAddr[:], pkt[groIPv4SrcOffset:])
		copy(t.dstAddr[:], pkt[groIPv4SrcOffset+4:])
		t.srcPort = binary.BigEndian.Uint16(pkt[groTunnelOuterTH:])
		t.dstPort = binary.BigEndian.Uint16(pkt[groTunnelOuterTH+2:])
		copy(t.vxlan[:], pkt[groTunnelVXLANStart:])
		copy(t.eth[:], pkt[groTunnelVXLANStart+groVXLANLen:])
	}
	return key
}

// groAddrs returns the offset of an IP header's source address and the
// addresses' length.
func groAddrs(isV6 bool) (srcOffset, addrLen int) {
	if isV6 {
		return groIPv6SrcOffset, 16
	}
	return groIPv4SrcOffset, 4
}

// tcpGROItem represents bookkeeping data for a TCP packet during the
// lifetime of a GRO evaluation across a vector of packets. Ported from
// wireguard-go (MIT).
type tcpGROItem struct {
	key       tcpFlowKey
	seg       tcpSegment // where the headers are
	sentSeq   uint32     // the sequence number
	bufsIndex int        // the index into the original bufs slice
	numMerged int        // the number of packets merged into this item
	gsoSize   int        // payload size
	pshSet    bool       // psh flag is set
}

// groTable holds each flow's items during one coalescing pass, and the
// item slices of earlier passes to reuse, so a pass allocates nothing once
// warm. Ported from wireguard-go (MIT), where the TCP and UDP tables each
// had their own copy.
type groTable[K comparable, I any] struct {
	itemsByFlow map[K][]I
	itemsPool   [][]I
}

func newGROTable[K comparable, I any]() groTable[K, I] {
	return groTable[K, I]{itemsByFlow: make(map[K][]I)}
}

// add appends item to key's flow, starting the flow with a pooled slice.
func (t *groTable[K, I]) add(key K, item I) {
	items, ok := t.itemsByFlow[key]
	if !ok {
		items = t.newItems()
	}
	t.itemsByFlow[key] = append(items, item)
}

func (t *groTable[K, I]) newItems() []I {
	if len(t.itemsPool) == 0 {
		return make([]I, 0, 8)
	}
	items := t.itemsPool[len(t.itemsPool)-1]
	t.itemsPool = t.itemsPool[:len(t.itemsPool)-1]
	return items
}

// reset empties the table, keeping every flow's slice for the next pass.
func (t *groTable[K, I]) reset() {
	for k, items := range t.itemsByFlow {
		t.itemsPool = append(t.itemsPool, items[:0])
		delete(t.itemsByFlow, k)
	}
}

// tcpGROTable holds flow and coalescing information for the purposes of
// TCP GRO. Ported from wireguard-go (MIT).
type tcpGROTable struct {
	groTable[tcpFlowKey, tcpGROItem]
}

// lookupOrInsert looks up a flow for the provided packet and metadata,
// returning the packets found for the flow, or inserting a new one if none
// is found.
func (t *tcpGROTable) lookupOrInsert(key tcpFlowKey, pkt []byte, seg tcpSegment, bufsIndex int) ([]tcpGROItem, bool) {
	items, ok := t.itemsByFlow[key]
	if ok {
		return items, ok
	}
	t.insert(key, pkt, seg, bufsIndex)
	return nil, false
}

// insert an item in the table for the provided packet and packet metadata.
func (t *tcpGROTable) insert(key tcpFlowKey, pkt []byte, seg tcpSegment, bufsIndex int) {
	tcp := pkt[seg.tcpOff:]
	item := tcpGROItem{
		key:       key,
		seg:       seg,
		bufsIndex: bufsIndex,
		gsoSize:   len(pkt) - seg.headersLen(),
		sentSeq:   binary.BigEndian.Uint32(tcp[4:]),
		pshSet:    tcp[groTCPFlagsOffset]&groTCPFlagPSH != 0,
	}
	t.add(key, item)
}

func (t *tcpGROTable) updateAt(item tcpGROItem, i int) {
	t.itemsByFlow[item.key][i] = item
}

func (t *tcpGROTable) deleteAt(key tcpFlowKey, i int) {
	items := t.itemsByFlow[key]
	t.itemsByFlow[key] = append(items[:i], items[i+1:]...)
}

// udpFlowKey represents the key for a UDP flow. Ported from wireguard-go
// (MIT).
type udpFlowKey struct {
	srcAddr, dstAddr [16]byte
	srcPort, dstPort uint16
	isV6             bool
}

func newUDPFlowKey(pkt []byte, isV6 bool, udphOffset int) udpFlowKey {
	key := udpFlowKey{isV6: isV6}
	src, addrLen := groAddrs(isV6)
	copy(key.srcAddr[:], pkt[src:src+addrLen])
	copy(key.dstAddr[:], pkt[src+addrLen:src+2*addrLen])
	key.srcPort = binary.BigEndian.Uint16(pkt[udphOffset:])
	key.dstPort = binary.BigEndian.Uint16(pkt[udphOffset+2:])
	return key
}

// udpGROItem represents bookkeeping data for a UDP packet during the
// lifetime of a GRO evaluation across a vector of packets. Ported from
// wireguard-go (MIT).
type udpGROItem struct {
	key              udpFlowKey
	bufsIndex        int  // the index into the original bufs slice
	numMerged        int  // the number of packets merged into this item
	gsoSize          int  // payload size
	iphLen           int  // ip header len
	cSumKnownInvalid bool // UDP header checksum validity; a false value DOES NOT imply valid, just unknown.
}

// udpGROTable holds flow and coalescing information for the purposes of
// UDP GRO. Ported from wireguard-go (MIT).
type udpGROTable struct {
	groTable[udpFlowKey, udpGROItem]
}

// lookupOrInsert looks up a flow for the provided packet and metadata,
// returning the packets found for the flow, or inserting a new one if none
// is found.
func (u *udpGROTable) lookupOrInsert(key udpFlowKey, pkt []byte, udphOffset, bufsIndex int) ([]udpGROItem, bool) {
	items, ok := u.itemsByFlow[key]
	if ok {
		return items, ok
	}
	u.insert(key, pkt, udphOffset, bufsIndex, false)
	return nil, false
}

// insert an item in the table for the provided packet and packet metadata.
func (u *udpGROTable) insert(key udpFlowKey, pkt []byte, udphOffset, bufsIndex int, cSumKnownInvalid bool) {
	item := udpGROItem{
		key:              key,
		bufsIndex:        bufsIndex,
		gsoSize:          len(pkt) - udphOffset - groUDPHeaderLen,
		iphLen:           udphOffset,
		cSumKnownInvalid: cSumKnownInvalid,
	}
	u.add(key, item)
}

func (u *udpGROTable) updateAt(item udpGROItem, i int) {
	u.itemsByFlow[item.key][i] = item
}
