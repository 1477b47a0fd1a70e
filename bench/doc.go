// Package bench holds measurements that need a lab (root): run them with
// the scripts beside this file (footprint.sh runs a step of the
// realmachines tier, whose guests have kernel WireGuard). They are
// figures to read, not pass/fail tests.
//
// BenchmarkChain explains its own ratio: with userspace WireGuard
// (wireguard-go behind a tun device) TCP across wg0 alone crosses the tun
// as 64 KiB GSO super-packets, while the chain's VXLAN-encapsulated
// frames are segmented by the kernel before the tun (wireguard-go does
// not negotiate TUN_F_UDP_TUNNEL_GSO), so wireguard-go handles them one
// 1420-byte packet per read. The run shows this as bytes per tun packet
// and Mbit/s per daemon core beside wg0 with its offloads turned off.
package bench
