package helperapi

import (
	"net/netip"
	"time"
)

// Report is what Apply built.
type Report struct {
	WireGuard WireGuardReport `json:"wireguard"`
	Networks  []NetworkReport `json:"networks"`
	// Changes lists what this Apply changed, one line each; empty when the
	// machine already matched the spec.
	Changes []string `json:"changes"`
}

// WireGuardReport describes the machine's WireGuard device.
type WireGuardReport struct {
	Name      string `json:"name"`
	MTU       int    `json:"mtu"`
	Userspace bool   `json:"userspace"`
	// Device is, for a userspace device, the kind of link wireguard-go
	// reads and writes: UserspaceTAP or UserspaceTUN (empty from helpers
	// that predate it, and for kernel WireGuard).
	Device     string `json:"device,omitempty"`
	PublicKey  string `json:"public_key"`
	ListenPort int    `json:"listen_port"`
}

// The kinds of link a userspace WireGuard device uses (WireGuardReport's
// Device).
const (
	// UserspaceTAP: a tap with the kernel's segmentation offloads, UDP
	// tunnels included, so a network's VXLAN traffic crosses it in
	// 64 KiB super-packets (Linux 6.18 and later).
	UserspaceTAP = "tap"
	// UserspaceTUN: wireguard-go's own tun, where the tap is not offered;
	// a network's VXLAN traffic crosses it one packet at a time.
	UserspaceTUN = "tun"
)

// NetworkReport describes one private network's chain on this machine.
type NetworkReport struct {
	Name   string   `json:"name"`
	ID     int      `json:"id"`
	Tunnel string   `json:"tunnel"` // gretap or vxlan, as resolved
	MTU    int      `json:"mtu"`
	Bridge string   `json:"bridge"`
	Ports  []string `json:"ports"` // tunnel ports on the bridge
	// Gateway is the network's gateway address on this machine's bridge
	// (GatewayAddr), when the network has a subnet.
	Gateway netip.Addr `json:"gateway,omitzero"`
	// Egress: the network's VMs reach the internet through this
	// machine's uplink.
	Egress bool `json:"egress,omitempty"`
}

// Drift is one difference between the spec and the machine.
type Drift struct {
	Link    string `json:"link"`
	Problem string `json:"problem"`
}

// Facts are what the machine can do and how its mesh is doing.
type Facts struct {
	KernelWireGuard bool             `json:"kernel_wireguard"`
	Gretap          bool             `json:"gretap"`
	Uplink          string           `json:"uplink"`
	UplinkMTU       int              `json:"uplink_mtu"`
	WireGuard       *WireGuardReport `json:"wireguard,omitempty"`
	Peers           []PeerFacts      `json:"peers"`
	// Addresses are the machine's global unicast addresses outside the
	// mesh, so the operator can tell whether it reaches the machine
	// directly or through NAT.
	Addresses []string `json:"addresses"`
	// Networks are the applied spec's networks as built here.
	Networks []NetworkReport `json:"networks"`
	// Version is the helper binary's version.
	Version string `json:"version"`
	// Generation is the cloud generation of the spec the machine holds (0:
	// none, or a bare spec).
	Generation int64 `json:"generation"`
	// Load is the machine's use: CPUs, the one-minute load average, and
	// memory in MiB.
	Load Load `json:"load"`
	// Accel is what a VM made now runs under: AccelKVM, AccelTCG, or ""
	// while KVM is neither proven nor refuted (an older helper says
	// nothing either).
	Accel string `json:"accel,omitempty"`
}

// Load is how busy a machine is.
type Load struct {
	CPUs            int     `json:"cpus"`
	Load1           float64 `json:"load1"`
	MemTotalMiB     int     `json:"mem_total_mib"`
	MemAvailableMiB int     `json:"mem_available_mib"`
}

// PeerFacts is the live state of one WireGuard peer.
type PeerFacts struct {
	Name          string    `json:"name"`
	PublicKey     string    `json:"public_key"`
	Endpoint      string    `json:"endpoint,omitempty"`
	LastHandshake time.Time `json:"last_handshake,omitzero"`
	// HandshakeAge is seconds since the last handshake, -1 if none yet.
	HandshakeAge float64 `json:"handshake_age_seconds"`
	RxBytes      int64   `json:"rx_bytes"`
	TxBytes      int64   `json:"tx_bytes"`
	// Probe is the helper daemon's last echo through the tunnel to the
	// peer, if it made one.
	Probe *Probe `json:"probe,omitempty"`
}

// Probe is one round of echoes a machine sends a peer's mesh address
// through WireGuard: a small one, then one as big as the WireGuard
// device's MTU with don't-fragment set, the largest packet the mesh
// carries (a network's full-size frame in its tunnel). Small echoes
// answered and the full-size one not is an MTU black hole on the path.
type Probe struct {
	At time.Time `json:"at"`
	// Handshake says the peer's handshake was fresh when the echoes went:
	// only then does a missing reply say frames are lost.
	Handshake bool `json:"handshake"`
	// RTTMillis is the small echo's round trip, -1 without a reply.
	RTTMillis float64 `json:"rtt_ms"`
	// FullSize is the full-size echo's IP packet in bytes, and
	// FullSizeReplied whether it was answered.
	FullSize        int  `json:"full_size"`
	FullSizeReplied bool `json:"full_size_replied"`
	// Error is why the echoes could not be sent.
	Error string `json:"error,omitempty"`
}

// CheckResult is what MethodCheck returns.
type CheckResult struct {
	Drift []Drift `json:"drift"`
}
