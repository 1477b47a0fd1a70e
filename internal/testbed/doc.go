// Package testbed is what tests use to build the machines they run on: a
// lab of simulated machines (package lab/sim) with a name and an underlay
// unique to the test run, the butter helper driven on its machines and a
// WireGuard mesh planned over them (helperapi.Plan), tiny qemu guests
// booted straight into a kernel (the real-kernel tier), the Debian
// cloud-init image built by debootstrap, SSH into guests from inside a
// namespace, and the one gate every tier passes (skip with the reason, or
// fail when CI=true). With them the small parts the tiers share: a
// throwaway SSH user key, sockets made inside a network namespace, a
// program's output that says when it is ready, a test log writer, and a
// WireGuard-shaped key. Only tests import it; it imports neither the
// operator's core nor SSH, so those packages' own tests can use it.
package testbed
