package inventory

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/butter-cloud/butter/helperapi"
)

// nameRule is what machine, network and VM names look like (the one rule
// every side checks): they end up in host names and command lines.
var nameRule = helperapi.NameRule

var (
	// hostRE is an SSH host: a DNS name or an ~/.ssh/config alias.
	hostRE = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9._-]{0,252})$`)
	// userRE is a login name.
	userRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$`)
)

// Validate reports every problem of the inventory at once, as an *Error.
// It expects defaults filled in: a machine's port 0 is a problem here,
// though Update fills it with DefaultSSHPort before validating.
func (inv *Inventory) Validate() error {
	return toError("", inv.validate(), nil)
}

func (inv *Inventory) validate() []problem {
	var probs []problem
	bad := func(at, format string, a ...any) {
		probs = append(probs, problem{at: at, msg: fmt.Sprintf(format, a...)})
	}

	if inv.Version != Version {
		bad("version", "version %d: this butter reads and writes version %d", inv.Version, Version)
	}

	if inv.Generation < 0 {
		bad("generation", "generation %d: must not be negative", inv.Generation)
	}

	mesh := inv.Mesh.Prefix
	meshOK := false
	switch {
	case !mesh.IsValid():
		bad("mesh.prefix", "mesh prefix: missing; want an IPv4 range such as %s", DefaultMeshPrefix)
	case !mesh.Addr().Is4():
		bad("mesh.prefix", "mesh prefix %s: want an IPv4 range such as %s", mesh, DefaultMeshPrefix)
	case mesh != mesh.Masked():
		bad("mesh.prefix", "mesh prefix %s: want the range's own address, %s", mesh, mesh.Masked())
	case mesh.Bits() < 16 || mesh.Bits() > 30:
		bad("mesh.prefix", "mesh prefix %s: must be between /16 and /30 (tunnel names carry the last two bytes of a mesh address)", mesh)
	default:
		meshOK = true
	}
	if !portOK(inv.Mesh.Port) {
		bad("mesh.port", "mesh port %d: must be between 1 and 65535", inv.Mesh.Port)
	}

	machines := map[string]*Machine{}
	meshIPs := map[netip.Addr]string{}
	keys := map[string]string{}
	for i := range inv.Machines {
		m := &inv.Machines[i]
		at := fmt.Sprintf("machines[%d]", i)
		what, named := checkEntryName(bad, at, "machine", i, m.Name, machines[m.Name] != nil)
		if named {
			machines[m.Name] = m
		}
		if msg := checkHost(m.Address); msg != "" {
			bad(at+".address", "%s address %q: %s", what, m.Address, msg)
		}
		if !portOK(m.Port) {
			bad(at+".port", "%s port %d: must be between 1 and 65535", what, m.Port)
		}
		if m.Confirmed < 0 || m.Confirmed > inv.Generation {
			bad(at+".confirmed", "%s confirmed generation %d: must be between 0 and the inventory's generation %d", what, m.Confirmed, inv.Generation)
		}
		if m.User != "" && !userRE.MatchString(m.User) {
			bad(at+".user", "%s user %q: want a login name (letters, digits, '_', '.', '-')", what, m.User)
		}
		if msg := checkIdentity(m.Identity); msg != "" {
			bad(at+".identity", "%s identity: %s", what, msg)
		}
		if m.Endpoint != "" {
			if msg := checkEndpoint(m.Endpoint); msg != "" {
				bad(at+".endpoint", "%s endpoint %q: %s", what, m.Endpoint, msg)
			}
		}
		if m.MeshIP.IsValid() {
			switch {
			case !m.MeshIP.Is4():
				bad(at+".mesh_ip", "%s mesh IP %s: want an IPv4 address in the mesh %s", what, m.MeshIP, mesh)
			case meshOK && !mesh.Contains(m.MeshIP):
				bad(at+".mesh_ip", "%s mesh IP %s: outside the mesh %s", what, m.MeshIP, mesh)
			case meshOK && !isHost(mesh, m.MeshIP):
				bad(at+".mesh_ip", "%s mesh IP %s: the mesh's network or broadcast address; use a host address", what, m.MeshIP)
			}
			if other, dup := meshIPs[m.MeshIP]; dup {
				bad(at+".mesh_ip", "%s mesh IP %s: already machine %q's", what, m.MeshIP, other)
			} else {
				meshIPs[m.MeshIP] = m.Name
			}
		}
		if m.PublicKey != "" {
			if k, err := base64.StdEncoding.DecodeString(m.PublicKey); err != nil || len(k) != 32 {
				bad(at+".public_key", "%s public key %q: not a WireGuard public key (44 characters of base64)", what, m.PublicKey)
			} else if other, dup := keys[m.PublicKey]; dup {
				bad(at+".public_key", "%s public key: same as machine %q's; each machine has its own key", what, other)
			} else {
				keys[m.PublicKey] = m.Name
			}
		}
		if err := helperapi.CheckAccel(m.Accel); err != nil {
			bad(at+".accel", "%s %v", what, err)
		}
	}

	networks := map[string]*Network{}
	ids := map[int]string{}
	var subnets []*Network
	for i := range inv.Networks {
		n := &inv.Networks[i]
		at := fmt.Sprintf("networks[%d]", i)
		what, named := checkEntryName(bad, at, "network", i, n.Name, networks[n.Name] != nil)
		if named {
			networks[n.Name] = n
		}
		switch s := n.Subnet; {
		case !s.IsValid():
			bad(at+".subnet", "%s subnet: missing; want an IPv4 range such as 10.100.1.0/24", what)
		case !s.Addr().Is4():
			bad(at+".subnet", "%s subnet %s: want an IPv4 range such as 10.100.1.0/24", what, s)
		case s != s.Masked():
			bad(at+".subnet", "%s subnet %s: want the range's own address, %s", what, s, s.Masked())
		case s.Bits() < 8 || s.Bits() > 30:
			bad(at+".subnet", "%s subnet %s: must be between /8 and /30", what, s)
		default:
			if meshOK && s.Overlaps(mesh) {
				bad(at+".subnet", "%s subnet %s: overlaps the mesh %s", what, s, mesh)
			}
			for _, o := range subnets {
				if s.Overlaps(o.Subnet) {
					bad(at+".subnet", "%s subnet %s: overlaps network %q's subnet %s", what, s, o.Name, o.Subnet)
				}
			}
			subnets = append(subnets, n)
		}
		if n.ID < 1 || n.ID > MaxNetworkID {
			bad(at+".id", "%s id %d: must be between 1 and %d", what, n.ID, MaxNetworkID)
		} else if other, dup := ids[n.ID]; dup {
			bad(at+".id", "%s id %d: already network %q's; each network needs its own id", what, n.ID, other)
		} else {
			ids[n.ID] = n.Name
		}
		if err := helperapi.CheckTunnel(n.Tunnel); err != nil {
			bad(at+".tunnel", "%s %v", what, err)
		}
		seen := map[string]bool{}
		for j, name := range n.Machines {
			mat := fmt.Sprintf("%s.machines[%d]", at, j)
			if machines[name] == nil {
				bad(mat, "%s machine %q: no such machine in the inventory", what, name)
			}
			if seen[name] {
				bad(mat, "%s machine %q: listed twice", what, name)
			}
			seen[name] = true
		}
	}

	vms := map[string]bool{}
	addrs := map[netip.Addr]string{}
	for i := range inv.VMs {
		v := &inv.VMs[i]
		at := fmt.Sprintf("vms[%d]", i)
		what, named := checkEntryName(bad, at, "VM", i, v.Name, vms[v.Name])
		if named {
			vms[v.Name] = true
		}
		if machines[v.Machine] == nil {
			bad(at+".machine", "%s machine %q: no such machine in the inventory", what, v.Machine)
		}
		n := networks[v.Network]
		if n == nil {
			bad(at+".network", "%s network %q: no such network in the inventory", what, v.Network)
		} else if machines[v.Machine] != nil && !contains(n.Machines, v.Machine) {
			bad(at+".machine", "%s machine %q: not in network %q; add the machine to the network first", what, v.Machine, n.Name)
		}
		var subnet netip.Prefix
		if n != nil {
			subnet = n.Subnet
		}
		switch a, err := v.Address, helperapi.CheckVMAddress(v.Network, subnet, v.Address); {
		case err != nil:
			bad(at+".address", "%s %v", what, err)
		default:
			if other, dup := addrs[a]; dup {
				bad(at+".address", "%s address %s: already VM %q's", what, a, other)
			} else {
				addrs[a] = v.Name
			}
		}
	}
	return probs
}

func portOK(p int) bool { return p >= 1 && p <= 65535 }

// isHost tells whether a is neither p's network address nor, in IPv4, its
// broadcast address.
func isHost(p netip.Prefix, a netip.Addr) bool {
	return a != p.Masked().Addr() && a != lastAddr(p)
}

// lastAddr is the highest address of p (IPv4: the broadcast address).
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// checkHost says what is wrong with an SSH host, or "".
func checkHost(h string) string {
	switch {
	case h == "":
		return "missing; give the machine's host name or IP address"
	case strings.Contains(h, "@"):
		return "put the user in \"user\", not in the address"
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return ""
	}
	if _, _, err := net.SplitHostPort(h); err == nil {
		return "put the SSH port in \"port\", not in the address"
	}
	if !hostRE.MatchString(h) {
		return "want a host name or an IP address"
	}
	return ""
}

// checkEndpoint says what is wrong with a WireGuard endpoint, or "".
func checkEndpoint(e string) string {
	host, port, err := net.SplitHostPort(e)
	if err != nil {
		return "want host:port, e.g. 192.0.2.7:51820 or [2001:db8::7]:51820"
	}
	if msg := checkHost(host); msg != "" {
		return "host: " + msg
	}
	p, err := strconv.Atoi(port)
	if err != nil || !portOK(p) {
		return "the port must be a number between 1 and 65535"
	}
	return ""
}

// checkIdentity says what is wrong with an identity file path, or "": it
// catches a key pasted where its path belongs.
func checkIdentity(id string) string {
	switch {
	case strings.Contains(id, "PRIVATE KEY") || strings.HasPrefix(strings.TrimSpace(id), "-----"):
		return "this looks like key material; butter keeps no secrets in the inventory: give the path of the key file"
	case strings.ContainsAny(id, "\n\r\x00"):
		return "want the path of a key file, on one line"
	}
	return ""
}

// checkEntryName checks the name of entry i of a list of kind, at path at:
// given, by the name rule, and not seen before (dup). It returns how
// messages name the entry, and whether the name is good and new.
func checkEntryName(bad func(at, format string, a ...any), at, kind string, i int, name string, dup bool) (what string, ok bool) {
	what = fmt.Sprintf("%s %q", kind, name)
	switch {
	case name == "":
		what = fmt.Sprintf("%s %d", kind, i+1)
		bad(at+".name", "%s: no name; %s", what, nameRule)
	case !helperapi.ValidName(name):
		bad(at+".name", "%s: bad name; %s", what, nameRule)
	case dup:
		bad(at+".name", "%s: listed twice; give each %s one entry", what, kind)
	default:
		return what, true
	}
	return what, false
}
