// Package cloudinit makes a VM's first-boot configuration: a cloud-init
// NoCloud seed (meta-data, user-data and network-config on an ISO 9660
// image labelled "cidata") for VMs that boot from a disk image, and the
// equivalent kernel command line (dracut's ip=) for VMs booted from a
// kernel and initrd directly.
//
// The seed carries only what the Seed says: the instance ID, the host
// name, the default user's name and SSH keys, the SSH host key, and one
// NIC's static configuration matched by its MAC address.
package cloudinit

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/butter-cloud/butter/helperapi"
)

// Seed is a VM's first-boot configuration.
type Seed struct {
	// InstanceID identifies this instance of the VM: cloud-init runs its
	// once-per-instance steps again when it changes. Letters, digits,
	// '.', '-', '_' and ':', at most 128 (a UUID fits).
	InstanceID string
	// Hostname is the VM's host name, a short name (web1) or a fully
	// qualified one (web1.example.org), which cloud-init then sets as the
	// FQDN with the first label as the host name.
	Hostname string
	// SSHKeys are authorized_keys lines for the default user.
	SSHKeys []string
	// NIC is the VM's network interface.
	NIC NIC
	// User names the default user; "" keeps the distribution's default
	// (debian, ubuntu, …).
	User string
	// HostKey is the VM's ed25519 SSH host key, whose public half the
	// operator already knows; "" lets the VM make its own.
	HostKey helperapi.PrivateKey
}

// NIC is a network interface's static configuration.
type NIC struct {
	// MAC is the interface's MAC address; the configuration applies to the
	// interface that has it.
	MAC net.HardwareAddr
	// Name is what the interface is renamed to, e.g. eth0.
	Name string
	// Address is the interface's address and the length of its network's
	// prefix, e.g. 10.0.0.5/24. Not valid: configure by DHCP instead.
	Address netip.Prefix
	// Gateway is the default route's next hop, inside Address's network.
	// Not valid: no default route.
	Gateway netip.Addr
	// MTU is the interface's MTU; 0 leaves the default.
	MTU int
	// DNS are the name servers, if any.
	DNS []netip.Addr
	// Search are the domains a short name is looked up in, first to last
	// (a butter network's NETWORK.internal), if any.
	Search []string
}

const (
	maxInstanceID = 128
	maxHostname   = 253
	maxIfName     = 15 // IFNAMSIZ - 1
	maxSearch     = 6  // the domains resolv.conf's search line took until glibc 2.26
)

var (
	instanceIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]*$`)
	labelRE      = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
	userRE       = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	ifNameRE     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
)

// reservedUsers are accounts every Debian-like system already has; making
// one of them the default user would hand its files to the VM's owner.
var reservedUsers = map[string]bool{
	"root": true, "daemon": true, "bin": true, "sys": true, "sync": true, "games": true, "man": true,
	"lp": true, "mail": true, "news": true, "uucp": true, "proxy": true, "www-data": true,
	"backup": true, "list": true, "irc": true, "nobody": true, "systemd-network": true,
	"systemd-resolve": true, "messagebus": true, "sshd": true, "_apt": true,
}

// Validate reports every problem with the seed at once, each naming the
// field and what to do about it.
func (s Seed) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	switch {
	case s.InstanceID == "":
		add("seed InstanceID: empty: set a unique ID for this instance of the VM, e.g. a UUID")
	case len(s.InstanceID) > maxInstanceID:
		add("seed InstanceID %.20q…: %d characters: use at most %d", s.InstanceID, len(s.InstanceID), maxInstanceID)
	case !instanceIDRE.MatchString(s.InstanceID):
		add("seed InstanceID %q: use letters, digits, '.', '-', '_' and ':', starting with a letter or digit", s.InstanceID)
	}

	if err := checkHostname(s.Hostname); err != nil {
		errs = append(errs, err)
	}

	for i, k := range s.SSHKeys {
		if strings.ContainsAny(k, "\r\n") {
			add("seed SSHKeys[%d]: more than one line: give each key as its own element", i)
			continue
		}
		if _, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(k)); err != nil {
			add("seed SSHKeys[%d] %.30q: not an authorized_keys line (%v): paste a public key such as the content of ~/.ssh/id_ed25519.pub", i, k, err)
		} else if len(rest) > 0 {
			add("seed SSHKeys[%d]: more than one key: give each key as its own element", i)
		}
	}

	if s.User != "" {
		switch {
		case !userRE.MatchString(s.User):
			add("seed User %q: use 1 to 32 lower-case letters, digits, '_' and '-', starting with a letter or '_', or leave it empty for the distribution's default user", s.User)
		case reservedUsers[s.User]:
			add("seed User %q: a system account: choose another name, or leave it empty for the distribution's default user", s.User)
		}
	}

	if s.HostKey != "" {
		if _, err := s.HostKey.PublicKey(); err != nil {
			add("seed HostKey: %w", err)
		}
	}

	errs = append(errs, s.NIC.validate()...)
	return errors.Join(errs...)
}

func checkHostname(h string) error {
	if h == "" {
		return errors.New("seed Hostname: empty: set the VM's host name, e.g. web1 or web1.example.org")
	}
	if len(h) > maxHostname {
		return fmt.Errorf("seed Hostname %.20q…: %d characters: use at most %d", h, len(h), maxHostname)
	}
	for i, label := range strings.Split(h, ".") {
		if !labelRE.MatchString(label) {
			return fmt.Errorf("seed Hostname %q: label %q: use 1 to 63 letters, digits and '-' per dot-separated label, not starting or ending with '-'", h, label)
		}
		if i == 0 && allDigits(label) {
			return fmt.Errorf("seed Hostname %q: the first label %q is all digits: start the name with a letter", h, label)
		}
	}
	return nil
}

func allDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func (n NIC) validate() []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	switch {
	case len(n.MAC) == 0:
		add("seed NIC.MAC: empty: set the MAC address the VM's interface is given, e.g. 52:54:00:12:34:56")
	case len(n.MAC) != 6:
		add("seed NIC.MAC %s: %d bytes: want an Ethernet (6-byte) MAC address such as 52:54:00:12:34:56", n.MAC, len(n.MAC))
	case n.MAC[0]&1 != 0:
		add("seed NIC.MAC %s: a multicast address: clear the lowest bit of the first byte, e.g. 52:54:00:…", n.MAC)
	}

	switch {
	case n.Name == "":
		add("seed NIC.Name: empty: set the interface's name, e.g. eth0")
	case len(n.Name) > maxIfName:
		add("seed NIC.Name %q: %d characters: use at most %d", n.Name, len(n.Name), maxIfName)
	case !ifNameRE.MatchString(n.Name):
		add("seed NIC.Name %q: use letters, digits, '_', '.' and '-', starting with a letter or digit", n.Name)
	}

	a := n.Address
	if a.IsValid() {
		switch addr := a.Addr(); {
		case addr.Zone() != "":
			add("seed NIC.Address %s: has a zone: drop the %%%s", a, addr.Zone())
		case addr.Is4In6():
			add("seed NIC.Address %s: an IPv4-mapped IPv6 address: write it as IPv4", a)
		case addr.IsUnspecified() || addr.IsMulticast() || addr.IsLoopback():
			add("seed NIC.Address %s: not a unicast address: give the VM's own address, e.g. 10.0.0.5/24", a)
		case a.Bits() < addr.BitLen()-1 && addr == a.Masked().Addr():
			add("seed NIC.Address %s: the network's own address: give the VM's address inside it, e.g. %s", a, a.Masked().Addr().Next())
		case addr.Is4() && a.Bits() < 31 && addr == lastAddr(a):
			add("seed NIC.Address %s: the network's broadcast address: give the VM's address inside it", a)
		}
	}

	if g := n.Gateway; g.IsValid() {
		switch {
		case !a.IsValid():
			add("seed NIC.Gateway %s: without NIC.Address: set a static address in the gateway's network, or leave the gateway out to use DHCP", g)
		case g.Is4() != a.Addr().Is4() || g.Is4In6():
			add("seed NIC.Gateway %s: not of NIC.Address %s's family: give a gateway in %s", g, a, a.Masked())
		case !a.Contains(g):
			add("seed NIC.Gateway %s: outside NIC.Address's network %s: give a gateway the VM can reach directly", g, a.Masked())
		case g == a.Addr():
			add("seed NIC.Gateway %s: the VM's own address: give the router's address, or none", g)
		}
	}

	if n.MTU != 0 {
		low := 68
		if a.IsValid() && a.Addr().Is6() {
			low = 1280
		}
		if n.MTU < low || n.MTU > 65535 {
			add("seed NIC.MTU %d: want %d to 65535, or 0 for the default", n.MTU, low)
		}
	}

	for i, d := range n.DNS {
		if !d.IsValid() || d.IsUnspecified() || d.IsMulticast() {
			add("seed NIC.DNS[%d] %s: not a name server's address: give a unicast address such as 10.0.0.1", i, d)
		}
	}
	if len(n.Search) > maxSearch {
		add("seed NIC.Search: %d domains; give at most %d", len(n.Search), maxSearch)
	}
	for i, d := range n.Search {
		if !validDomain(d) {
			add("seed NIC.Search[%d] %q: not a domain: give labels of letters, digits and dashes joined by dots, such as blue.internal", i, d)
		}
	}
	return errs
}

// validDomain tells a domain name of at most 253 characters, without
// the root's dot.
func validDomain(d string) bool {
	if d == "" || len(d) > maxHostname {
		return false
	}
	for _, l := range strings.Split(d, ".") {
		if !labelRE.MatchString(l) {
			return false
		}
	}
	return true
}

// lastAddr is the highest address of p's network.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// shortName is the first label of the host name.
func (s Seed) shortName() string {
	short, _, _ := strings.Cut(s.Hostname, ".")
	return short
}
