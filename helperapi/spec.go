package helperapi

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
)

// Tunnel kinds a network can ask for.
const (
	TunnelAuto   = "auto"   // gretap where the kernel has it, VXLAN otherwise
	TunnelGretap = "gretap" // one gretap per (network, peer), keyed by the network ID
	TunnelVXLAN  = "vxlan"  // one VXLAN device per network, one FDB entry per peer
)

// MaxNetworkID bounds a network's ID: it is the GRE key and the VXLAN VNI
// (24 bits), and it must fit in interface names.
const MaxNetworkID = 65535

// DefaultListenPort is WireGuard's port when a spec gives none.
const DefaultListenPort = 51820

// Spec is everything one machine needs to know to build its part of the
// private networks. The operator sends it; the helper applies it.
type Spec struct {
	// Mesh is this machine's own place in the WireGuard mesh.
	Mesh Mesh `json:"mesh"`
	// Peers are the other machines this one talks to over WireGuard.
	Peers []Peer `json:"peers,omitempty"`
	// Networks are the private networks this machine takes part in.
	Networks []Network `json:"networks,omitempty"`
	// Generation is the cloud's generation this spec belongs to (0: none,
	// for bare specs of the test tiers). A helper refuses an older one
	// (CheckGeneration) and reports the one it holds in Facts.
	Generation int64 `json:"generation,omitempty"`
	// Desired is the whole cloud's desired state at Generation; the helper
	// keeps it beside the spec for `butter adopt`.
	Desired *Desired `json:"desired,omitempty"`
}

// Mesh is this machine's WireGuard address and port.
type Mesh struct {
	// Address is this machine's mesh address with the mesh's prefix length,
	// e.g. 10.99.0.1/16.
	Address netip.Prefix `json:"address"`
	// ListenPort is the UDP port WireGuard listens on (51820 if zero).
	ListenPort int `json:"listen_port,omitempty"`
	// MTU overrides the WireGuard MTU; zero derives it from the uplink.
	MTU int `json:"mtu,omitempty"`
	// Relay makes this machine forward mesh traffic between peers that
	// cannot reach each other directly (machines behind NAT): packets
	// that arrive on the WireGuard device may leave through it again.
	Relay bool `json:"relay,omitempty"`
}

// Peer is another machine of the mesh.
type Peer struct {
	// Name is the peer's machine name; networks name their peers by it.
	Name string `json:"name"`
	// PublicKey is the peer's WireGuard public key (base64).
	PublicKey string `json:"public_key"`
	// Endpoint is host:port where the peer can be reached; empty when it is
	// behind NAT and reaches out to us.
	Endpoint string `json:"endpoint,omitempty"`
	// MeshIP is the peer's address inside the mesh; tunnels point at it.
	MeshIP netip.Addr `json:"mesh_ip"`
	// AllowedIPs are routed to this peer; the peer's MeshIP/32 is always
	// included.
	AllowedIPs []netip.Prefix `json:"allowed_ips,omitempty"`
	// Keepalive is the persistent keepalive in seconds (0: off).
	Keepalive int `json:"keepalive,omitempty"`
	// Via names the peer that relays to this one, when the two machines
	// cannot reach each other directly (both behind NAT). Such a peer has
	// no WireGuard entry of its own: its mesh IP is routed to Via.
	Via string `json:"via,omitempty"`
}

// Network is a private network this machine takes part in.
type Network struct {
	// Name is the network's name, for people.
	Name string `json:"name"`
	// ID is the network's number: the GRE key and the VXLAN VNI.
	ID int `json:"id"`
	// Subnet is the network's address range, if it has one.
	Subnet netip.Prefix `json:"subnet,omitzero"`
	// Tunnel is one of TunnelAuto (the default), TunnelGretap, TunnelVXLAN.
	Tunnel string `json:"tunnel,omitempty"`
	// Peers names the peers that carry this network.
	Peers []string `json:"peers,omitempty"`
	// Egress lets the network's VMs out to the internet through this
	// machine's uplink (masqueraded; only replies come back in).
	Egress bool `json:"egress,omitempty"`
}

// ParseSpec decodes a Spec strictly (an unknown field is an error) and
// validates it.
func ParseSpec(data []byte) (Spec, error) {
	var s Spec
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return Spec{}, fmt.Errorf("decode spec: %w", err)
	}
	if err := s.Validate(); err != nil {
		return Spec{}, err
	}
	return s, nil
}

// Validate reports every problem of the spec at once.
func (s Spec) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	if !s.Mesh.Address.IsValid() || !s.Mesh.Address.Addr().Is4() {
		bad("mesh address %q: want an IPv4 address with a prefix length, e.g. 10.99.0.1/16", s.Mesh.Address)
	} else if s.Mesh.Address.Bits() < 8 || s.Mesh.Address.Bits() > 30 {
		bad("mesh address %s: prefix length must be between /8 and /30", s.Mesh.Address)
	}
	if s.Generation < 0 {
		bad("generation %d: must not be negative", s.Generation)
	}
	if s.Desired != nil && s.Desired.Generation != s.Generation {
		bad("desired state generation %d: must be the spec's generation %d", s.Desired.Generation, s.Generation)
	}
	if p := s.Mesh.ListenPort; p < 0 || p > 65535 {
		bad("mesh listen port %d: must be between 1 and 65535 (or 0 for 51820)", p)
	}
	if m := s.Mesh.MTU; m != 0 && (m < 1280 || m > 9000) {
		bad("mesh MTU %d: must be between 1280 and 9000 (or 0 to derive it from the uplink)", m)
	}

	peers := map[string]Peer{}
	keys := map[string]string{}
	ips := map[netip.Addr]string{}
	hosts := map[int]string{}
	for i, p := range s.Peers {
		what := fmt.Sprintf("peer %q", p.Name)
		if err := CheckName("peer", p.Name); err != nil {
			bad("peer %d: %v", i+1, err)
		}
		if _, dup := peers[p.Name]; dup {
			bad("%s: listed twice; give each peer one entry", what)
		}
		peers[p.Name] = p
		if p.Via != "" && p.PublicKey == "" {
			// reached through Via; checked below
		} else if err := CheckKey(p.PublicKey); err != nil {
			bad("%s public key: %v", what, err)
		} else if other, dup := keys[p.PublicKey]; dup {
			bad("%s public key: same as peer %q's; each machine has its own key", what, other)
		} else {
			keys[p.PublicKey] = p.Name
		}
		if p.Endpoint != "" {
			if _, err := netip.ParseAddrPort(p.Endpoint); err != nil {
				if err := checkHostPort(p.Endpoint); err != nil {
					bad("%s endpoint %q: %v", what, p.Endpoint, err)
				}
			}
		}
		if !p.MeshIP.IsValid() || !p.MeshIP.Is4() {
			bad("%s mesh IP %q: want an IPv4 address", what, p.MeshIP)
		} else {
			if s.Mesh.Address.IsValid() {
				if p.MeshIP == s.Mesh.Address.Addr() {
					bad("%s mesh IP %s: that is this machine's own address; a machine is not its own peer", what, p.MeshIP)
				} else if !s.Mesh.Address.Masked().Contains(p.MeshIP) {
					bad("%s mesh IP %s: outside the mesh %s", what, p.MeshIP, s.Mesh.Address.Masked())
				}
			}
			if other, dup := ips[p.MeshIP]; dup {
				bad("%s mesh IP %s: already peer %q's", what, p.MeshIP, other)
			}
			ips[p.MeshIP] = p.Name
			h := HostNumber(p.MeshIP)
			if other, dup := hosts[h]; dup && ips[p.MeshIP] != other {
				bad("%s mesh IP %s: its last two bytes equal peer %q's; tunnel names need them unique", what, p.MeshIP, other)
			}
			hosts[h] = p.Name
		}
		for _, a := range p.AllowedIPs {
			if !a.IsValid() || a != a.Masked() {
				bad("%s allowed IP %s: want a network prefix such as %s", what, a, a.Masked())
			}
		}
		if p.Keepalive < 0 || p.Keepalive > 65535 {
			bad("%s keepalive %d: must be between 0 and 65535 seconds", what, p.Keepalive)
		}
	}

	for _, p := range s.Peers {
		if p.Via == "" {
			continue
		}
		via, ok := peers[p.Via]
		switch {
		case !ok:
			bad("peer %q via %q: no such peer in the spec", p.Name, p.Via)
		case via.Via != "":
			bad("peer %q via %q: that peer is itself relayed; relay through a directly reachable peer", p.Name, p.Via)
		case p.Endpoint != "" || p.Keepalive != 0:
			bad("peer %q via %q: a relayed peer has no endpoint or keepalive of its own", p.Name, p.Via)
		}
	}

	ids := map[int]string{}
	names := map[string]bool{}
	var subnets []Network
	for i, n := range s.Networks {
		what := fmt.Sprintf("network %q", n.Name)
		if err := CheckName("network", n.Name); err != nil {
			bad("network %d: %v", i+1, err)
		}
		if names[n.Name] {
			bad("%s: listed twice; give each network one entry", what)
		}
		names[n.Name] = true
		if n.ID < 1 || n.ID > MaxNetworkID {
			bad("%s id %d: must be between 1 and %d", what, n.ID, MaxNetworkID)
		} else if other, dup := ids[n.ID]; dup {
			bad("%s id %d: already network %q's; each network needs its own id", what, n.ID, other)
		} else {
			ids[n.ID] = n.Name
		}
		if err := CheckTunnel(cmp.Or(n.Tunnel, TunnelAuto)); err != nil {
			bad("%s %v", what, err)
		}
		if n.Subnet.IsValid() {
			if n.Subnet != n.Subnet.Masked() {
				bad("%s subnet %s: want the network prefix %s", what, n.Subnet, n.Subnet.Masked())
			}
			if s.Mesh.Address.IsValid() && n.Subnet.Overlaps(s.Mesh.Address.Masked()) {
				bad("%s subnet %s: overlaps the mesh %s", what, n.Subnet, s.Mesh.Address.Masked())
			}
			for _, o := range subnets {
				if n.Subnet.Overlaps(o.Subnet) {
					bad("%s subnet %s: overlaps network %q's subnet %s", what, n.Subnet, o.Name, o.Subnet)
				}
			}
			subnets = append(subnets, n)
		}
		seen := map[string]bool{}
		for _, pn := range n.Peers {
			if _, ok := peers[pn]; !ok {
				bad("%s peer %q: no such peer in the spec", what, pn)
			}
			if seen[pn] {
				bad("%s peer %q: listed twice", what, pn)
			}
			seen[pn] = true
		}
	}
	return errors.Join(errs...)
}

// CheckTunnel checks a network's tunnel kind.
func CheckTunnel(t string) error {
	switch t {
	case TunnelAuto, TunnelGretap, TunnelVXLAN:
		return nil
	}
	return fmt.Errorf("tunnel %q: choose %q, %q or %q", t, TunnelAuto, TunnelGretap, TunnelVXLAN)
}

// Port is the WireGuard port, defaulted.
func (m Mesh) Port() int {
	if m.ListenPort == 0 {
		return DefaultListenPort
	}
	return m.ListenPort
}

// CheckKey checks a WireGuard public key: 32 bytes in standard base64.
func CheckKey(s string) error {
	if s == "" {
		return fmt.Errorf("missing; give the peer's WireGuard public key (base64)")
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != 32 {
		return fmt.Errorf("not a WireGuard key (want 44 characters of base64 for 32 bytes)")
	}
	return nil
}

// HostNumber is the last two bytes of a mesh address: the helper names a
// peer's tunnels by it, so it is unique within a mesh.
func HostNumber(a netip.Addr) int {
	b := a.As4()
	return int(b[2])<<8 | int(b[3])
}

func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("want host:port, e.g. 192.0.2.7:51820")
	}
	if host == "" {
		return fmt.Errorf("the host is empty")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q must be between 1 and 65535", port)
	}
	return nil
}
