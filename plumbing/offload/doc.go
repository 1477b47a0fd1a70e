// Package offload segments and coalesces IP packets the way a Linux tun or
// tap with a virtio-net header does, for the helper's own WireGuard device
// (plumbing's userspace path): a super-packet the kernel hands over (TCP or
// UDP segmentation offload, and UDP-tunnel segmentation: a VXLAN packet
// whose inner TCP is one 64 KiB segment) is split into the packets
// WireGuard encrypts one by one, and the packets WireGuard decrypts are
// merged back into super-packets before they are written, so the kernel
// handles one packet where there were forty-five.
//
// The plain TCP and UDP code is ported from wireguard-go's tun package
// (golang.zx2c4.com/wireguard/tun, MIT, Copyright (C) 2017-2025 WireGuard
// LLC), which keeps it unexported; the UDP-tunnel parts are this
// package's own. Offsets in a Header count from the start of the IP
// packet (a tap's Ethernet header is the device's business). Pure Go: it
// builds on every platform, though only Linux uses it.
package offload
