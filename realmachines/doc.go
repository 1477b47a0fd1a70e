// Package realmachines is a test tier, with no code of its own outside its
// tests: its machines are Debian 12 systems with systemd booted under qemu
// (TCG) from a cached image (testbed.BuildMachineImage), reached by the
// built butter binary over SSH on a bridge the test makes, so the helper
// runs as the systemd unit it installs, on Debian's kernel (kernel
// WireGuard, gretap), and the machines can reboot, lose power and have
// their daemon killed.
package realmachines
