// Package sim simulates machines on one Linux box, for `butter lab` and
// for the tests: each machine is a network namespace plus a persistent
// private mount namespace (its own /run, /var/lib/butter, libvirt folders
// and sysfs), joined by veth to a shared underlay bridge in a namespace of
// its own, optionally behind a NAT router, with its own sshd and libvirtd;
// a host link plugs the root namespace into the underlay. Probes are plain
// network namespaces plugged into a bridge inside a machine, standing in
// for VMs. It also builds the tiny guest (Debian's kernel, extracted for a
// fast PVH boot, and a busybox initramfs) and keeps built artifacts in a
// cache.
//
// Everything a lab makes is named after it: network namespaces
// /run/netns/<lab>-ul (underlay), <lab>-m<i> (machines), <lab>-r1 (router),
// <lab>-p<k> (probes), and its state under /run/butter-lab/<lab>. Nothing
// but the opt-in host link is put in the root network namespace. Up needs
// root and Linux.
package sim
