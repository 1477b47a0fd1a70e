// Package inventory is the operator's record of the cloud: the machines
// butter drives over SSH, the WireGuard mesh between them, the private
// networks and the addresses given to VMs. It is one YAML file, read
// strictly and rewritten atomically under a lock.
//
// The file holds no secrets: an identity is the path of a key file, and the
// only key it stores is each machine's WireGuard public key. Live state (is
// a VM running?) comes from the helpers, never from here.
//
// Saving: Update takes an exclusive flock on "<file>.lock", loads, applies a
// change, validates, and writes a temporary file beside the inventory that
// is synced and renamed over it (then the folder is synced). Before
// replacing the file it copies the version it replaces to "<file>.bak", so
// the .bak is always the inventory as it was before butter's last change. A
// file that does not load is never overwritten: Update refuses and says how
// to recover.
//
// Update keeps the file's permission mode and the comment block at its
// top; other comments are not kept. A VM being created is held in
// "<file>.reservations" (see Reserve), never in the file, so a create that
// fails leaves the file and its .bak as they were.
//
// A file as butter writes it (fields left out take their defaults: mesh
// 10.99.0.0/16 port 51820, SSH port 22, tunnel auto):
//
//	# Butter Cloud inventory: ...
//	version: 1
//
//	generation: 7
//
//	mesh:
//	  prefix: 10.99.0.0/16
//	  port: 51820
//
//	machines:
//	  - name: alpha
//	    address: 192.0.2.10
//	    port: 22
//	    user: root
//	    identity: /home/op/.ssh/id_ed25519
//	    endpoint: 192.0.2.10:51820
//	    mesh_ip: 10.99.0.1
//	    public_key: yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=
//	    confirmed: 7
//	  - name: beta
//	    address: beta.example.com
//	    port: 2222
//	    nat: true
//	    mesh_ip: 10.99.0.2
//	    public_key: xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=
//	    confirmed: 6
//
//	networks:
//	  - name: blue
//	    subnet: 10.100.0.0/24
//	    id: 1
//	    tunnel: auto
//	    machines: [alpha, beta]
//
//	vms:
//	  - name: web
//	    machine: alpha
//	    network: blue
//	    address: 10.100.0.2
package inventory

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/butter-cloud/butter/helperapi"
)

// Version is the only inventory format this package reads and writes.
const Version = 1

// Defaults for fields a file or a caller leaves out.
var (
	DefaultMeshPrefix = netip.MustParsePrefix("10.99.0.0/16")
)

const (
	DefaultMeshPort = helperapi.DefaultListenPort // WireGuard's usual port
	DefaultSSHPort  = 22
)

// MaxNetworkID bounds a network's ID: it is the GRE key and the VXLAN VNI,
// and it is part of interface names on every machine.
const MaxNetworkID = 65535

// Inventory is the whole file.
type Inventory struct {
	// Version is the file format, always Version.
	Version int `yaml:"version"`
	// Generation counts the cloud's changes: every change butter makes is
	// the previous generation plus one, and every machine is told the
	// generation its spec belongs to. 0 in a file from before generations.
	Generation int       `yaml:"generation,omitempty"`
	Mesh       Mesh      `yaml:"mesh"`
	Machines   []Machine `yaml:"machines,omitempty"`
	Networks   []Network `yaml:"networks,omitempty"`
	VMs        []VM      `yaml:"vms,omitempty"`
}

// Mesh is the WireGuard mesh joining the machines.
type Mesh struct {
	// Prefix is the range mesh addresses come from (DefaultMeshPrefix).
	// IPv4, between /16 and /30: tunnel names on the machines carry the
	// last two bytes of a mesh address.
	Prefix netip.Prefix `yaml:"prefix"`
	// Port is the UDP port WireGuard listens on (DefaultMeshPort).
	Port int `yaml:"port"`
}

// Machine is a Linux machine butter reaches over SSH.
type Machine struct {
	// Name is how butter and its user call the machine: 1 to 32
	// lower-case letters, digits and dashes.
	Name string `yaml:"name"`
	// Address is the SSH host: a name, an ~/.ssh/config alias or an IP.
	Address string `yaml:"address"`
	// Port is the SSH port (DefaultSSHPort).
	Port int `yaml:"port"`
	// User is the SSH user; empty leaves it to ~/.ssh/config and the
	// local user name.
	User string `yaml:"user,omitempty"`
	// Identity is the path of an SSH private key file, never the key.
	Identity string `yaml:"identity,omitempty"`
	// Endpoint is host:port where the other machines reach this one's
	// WireGuard; empty when the core derives it (or the machine is behind
	// NAT).
	Endpoint string `yaml:"endpoint,omitempty"`
	// NAT records that the machine cannot be reached from the others: it
	// peers outwards with keepalive. The core decides it.
	NAT bool `yaml:"nat,omitempty"`
	// MeshIP is the machine's address inside the mesh, assigned by the
	// core (see NextMeshIP).
	MeshIP netip.Addr `yaml:"mesh_ip,omitempty"`
	// PublicKey is the machine's WireGuard public key (base64), as the
	// machine reported it.
	PublicKey string `yaml:"public_key,omitempty"`
	// Accel is the VM accelerator: "", AccelAuto, AccelKVM or AccelTCG.
	Accel string `yaml:"accel,omitempty"`
	// Confirmed is the generation the machine last confirmed it applied.
	// Below Generation, the machine is pending: it was away for a change
	// and catches up on `butter sync` (or when the dashboard sees it back).
	Confirmed int `yaml:"confirmed,omitempty"`
}

// Pending tells whether machine m has not confirmed the inventory's
// generation yet.
func (inv *Inventory) Pending(m Machine) bool { return m.Confirmed < inv.Generation }

// Network is a private network: an Ethernet segment over the mesh.
type Network struct {
	// Name is 1 to 32 lower-case letters, digits and dashes.
	Name string `yaml:"name"`
	// Subnet is the network's IPv4 range; VM addresses come from it.
	Subnet netip.Prefix `yaml:"subnet"`
	// ID is the GRE key and VXLAN VNI, 1 to MaxNetworkID, unique.
	ID int `yaml:"id"`
	// Tunnel is TunnelAuto (the default), TunnelGretap or TunnelVXLAN.
	Tunnel string `yaml:"tunnel"`
	// Machines names the machines that carry the network.
	Machines []string `yaml:"machines,omitempty"`
	// Egress lets the network's VMs out to the internet through each
	// member machine's uplink.
	Egress bool `yaml:"egress,omitempty"`
}

// VM is a VM's place: its machine, its network and the address allocated
// to it.
type VM struct {
	Name    string     `yaml:"name"`
	Machine string     `yaml:"machine"`
	Network string     `yaml:"network"`
	Address netip.Addr `yaml:"address"`
}

// New is an empty inventory with the default mesh: what a missing file
// loads as.
func New() *Inventory {
	inv := &Inventory{}
	inv.fillDefaults()
	return inv
}

// fillDefaults gives every field left at its zero value its default.
// Update calls it after the caller's change, so callers may leave a
// machine's port or a network's tunnel out.
func (inv *Inventory) fillDefaults() {
	if inv.Version == 0 {
		inv.Version = Version
	}
	inv.Mesh.fillDefaults()
	for i := range inv.Machines {
		inv.Machines[i].fillDefaults()
	}
	for i := range inv.Networks {
		inv.Networks[i].fillDefaults()
	}
}

func (m *Mesh) fillDefaults() {
	if !m.Prefix.IsValid() {
		m.Prefix = DefaultMeshPrefix
	}
	if m.Port == 0 {
		m.Port = DefaultMeshPort
	}
}

func (m *Machine) fillDefaults() {
	if m.Port == 0 {
		m.Port = DefaultSSHPort
	}
}

func (n *Network) fillDefaults() {
	if n.Tunnel == "" {
		n.Tunnel = helperapi.TunnelAuto
	}
}

// Path is where the inventory lives: $BUTTER_INVENTORY, else
// $XDG_CONFIG_HOME/butter/inventory.yaml, else
// ~/.config/butter/inventory.yaml (on macOS too: butter is a command-line
// tool, and that is where people look for its configuration).
func Path() (string, error) {
	if p := os.Getenv("BUTTER_INVENTORY"); p != "" {
		return p, nil
	}
	// The XDG spec says a relative XDG_CONFIG_HOME is to be ignored.
	if dir := os.Getenv("XDG_CONFIG_HOME"); dir != "" && filepath.IsAbs(dir) {
		return filepath.Join(dir, "butter", "inventory.yaml"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find the inventory: %w; set BUTTER_INVENTORY to its path", err)
	}
	if home == "" {
		return "", errors.New("find the inventory: no home folder; set BUTTER_INVENTORY to its path")
	}
	return filepath.Join(home, ".config", "butter", "inventory.yaml"), nil
}
