package offload

// The tests' own Internet checksum (RFC 1071), independent of checksum.go,
// to check what Split and Coalesce write.

// refSum is the sum of b's 16-bit big-endian words (b padded with a zero
// byte), added to sum and not folded.
func refSum(b []byte, sum uint64) uint64 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint64(b[i])<<8 | uint64(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint64(b[len(b)-1]) << 8
	}
	return sum
}

// refFold folds sum into 16 bits (one's complement addition).
func refFold(sum uint64) uint16 {
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

// refPseudo is the unfolded sum of the pseudo-header for a transport
// segment of n bytes of protocol proto in the IP packet whose header is
// ip (IPv4 or IPv6 by its version).
func refPseudo(ip []byte, proto byte, n int) uint64 {
	addrs := ip[12:20]
	if ip[0]>>4 == 6 {
		addrs = ip[8:40]
	}
	return refSum(addrs, uint64(proto)+uint64(n))
}
