// Package realkernel is a test tier, with no code of its own outside its
// tests: it boots Debian's own kernel under qemu (TCG) with the test binary
// as /init, so that kernel WireGuard and gretap, which this machine's kernel
// lacks, run through the helper's real netlink and wgctrl code.
package realkernel
