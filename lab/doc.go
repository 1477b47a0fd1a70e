// Package lab is `butter lab`: a whole cloud on one Linux box. StartCloud
// builds simulated machines (package sim), some behind a NAT router, each
// with its own sshd and libvirtd, reachable from the host through the
// lab's host link; then it adds them to the lab's own inventory through
// the same core (package cloud) and SSH as `butter machine add`, and
// builds the tiny guest image so that VMs boot without internet.
// StopCloud removes every trace of it. Tests make their machines with
// internal/testbed, not here.
package lab
