package helperapi

import (
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/netip"
)

// VMPortPrefix starts the name of every VM's tap: the helper names it in
// the domain (libvirt makes it), so the helper's port guard finds a VM's
// port from the desired state alone.
const VMPortPrefix = "btvm"

// VMPort is the name of VM name's tap on its machine's bridge: the prefix
// and 8 hex digits of the name's SHA-256 (VM names are unique in a cloud;
// 12 characters fit IFNAMSIZ).
func VMPort(name string) string {
	sum := sha256.Sum256([]byte(name))
	return VMPortPrefix + hex.EncodeToString(sum[:4])
}

// VMMAC is the MAC of the VM at address addr: the qemu/KVM prefix
// 52:54:00 and the address's last three bytes, so it is unique in any
// subnet of /8 or smaller and the helper knows it from the desired state
// alone. Nil for an address that is not IPv4.
func VMMAC(addr netip.Addr) net.HardwareAddr {
	if !addr.Is4() {
		return nil
	}
	a := addr.As4()
	return net.HardwareAddr{0x52, 0x54, 0x00, a[1], a[2], a[3]}
}
