package inventory

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const (
	keyA = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="
	keyB = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
)

// sample is a valid inventory: two machines (one behind NAT), two
// networks, three VMs.
func sample() *Inventory {
	return &Inventory{
		Version: 1,
		Mesh:    Mesh{Prefix: netip.MustParsePrefix("10.99.0.0/16"), Port: 51820},
		Machines: []Machine{
			{Name: "alpha", Address: "192.0.2.10", Port: 22, User: "root", Identity: "/home/op/.ssh/id_ed25519",
				Endpoint: "192.0.2.10:51820", MeshIP: netip.MustParseAddr("10.99.0.1"), PublicKey: keyA, Accel: "kvm"},
			{Name: "beta", Address: "beta.example.com", Port: 2222, NAT: true,
				MeshIP: netip.MustParseAddr("10.99.0.2"), PublicKey: keyB},
		},
		Networks: []Network{
			{Name: "blue", Subnet: netip.MustParsePrefix("10.100.0.0/24"), ID: 1, Tunnel: "auto", Machines: []string{"alpha", "beta"}},
			{Name: "green", Subnet: netip.MustParsePrefix("10.100.1.0/24"), ID: 2, Tunnel: "vxlan", Machines: []string{"beta"}},
		},
		VMs: []VM{
			{Name: "web", Machine: "alpha", Network: "blue", Address: netip.MustParseAddr("10.100.0.2")},
			{Name: "db", Machine: "beta", Network: "blue", Address: netip.MustParseAddr("10.100.0.3")},
			{Name: "cache", Machine: "beta", Network: "green", Address: netip.MustParseAddr("10.100.1.2")},
		},
	}
}

// messages are the problems of an *Error, or of any other error as one
// message.
func messages(err error) []string {
	if err == nil {
		return nil
	}
	var e *Error
	if !errors.As(err, &e) {
		return []string{err.Error()}
	}
	var msgs []string
	for _, p := range e.Problems {
		msgs = append(msgs, p.Msg)
	}
	return msgs
}

func TestValidate(t *testing.T) {
	addr := netip.MustParseAddr
	prefix := netip.MustParsePrefix
	tests := []struct {
		name   string
		change func(*Inventory)
		want   []string
	}{
		{name: "valid", change: func(*Inventory) {}},
		{name: "empty inventory is valid", change: func(inv *Inventory) { *inv = *New() }},
		{name: "version", change: func(inv *Inventory) { inv.Version = 2 },
			want: []string{`version 2: this butter reads and writes version 1`}},

		// The mesh.
		{name: "mesh prefix missing", change: func(inv *Inventory) { inv.Mesh.Prefix = netip.Prefix{} },
			want: []string{`mesh prefix: missing; want an IPv4 range such as 10.99.0.0/16`}},
		{name: "mesh prefix IPv6", change: func(inv *Inventory) { inv.Mesh.Prefix = prefix("fd00::/64") },
			want: []string{`mesh prefix fd00::/64: want an IPv4 range such as 10.99.0.0/16`}},
		{name: "mesh prefix not masked", change: func(inv *Inventory) { inv.Mesh.Prefix = prefix("10.99.0.1/16") },
			want: []string{`mesh prefix 10.99.0.1/16: want the range's own address, 10.99.0.0/16`}},
		{name: "mesh prefix too large", change: func(inv *Inventory) {
			inv.Mesh.Prefix = prefix("10.0.0.0/8")
			inv.Networks = nil
			inv.VMs = nil
		},
			want: []string{`mesh prefix 10.0.0.0/8: must be between /16 and /30 (tunnel names carry the last two bytes of a mesh address)`}},
		{name: "mesh port", change: func(inv *Inventory) { inv.Mesh.Port = 70000 },
			want: []string{`mesh port 70000: must be between 1 and 65535`}},

		// Machines.
		{name: "machine without name", change: func(inv *Inventory) {
			inv.Machines[1].Name = ""
			inv.Networks[1].Machines = nil
			inv.Networks[0].Machines = inv.Networks[0].Machines[:1]
			inv.VMs = inv.VMs[:1]
		},
			want: []string{`machine 2: no name; use 1 to 32 lower-case letters, digits and dashes, not starting or ending with a dash`}},
		{name: "machine bad names", change: func(inv *Inventory) {
			inv.Machines = append(inv.Machines,
				Machine{Name: "Gamma", Address: "192.0.2.12", Port: 22},
				Machine{Name: "-delta", Address: "192.0.2.13", Port: 22},
				Machine{Name: "a23456789012345678901234567890123", Address: "192.0.2.14", Port: 22},
				Machine{Name: "e_f", Address: "192.0.2.15", Port: 22})
		},
			want: []string{
				`machine "Gamma": bad name; use 1 to 32 lower-case letters, digits and dashes, not starting or ending with a dash`,
				`machine "-delta": bad name; use 1 to 32 lower-case letters, digits and dashes, not starting or ending with a dash`,
				`machine "a23456789012345678901234567890123": bad name; use 1 to 32 lower-case letters, digits and dashes, not starting or ending with a dash`,
				`machine "e_f": bad name; use 1 to 32 lower-case letters, digits and dashes, not starting or ending with a dash`,
			}},
		{name: "machine twice", change: func(inv *Inventory) {
			inv.Machines = append(inv.Machines, Machine{Name: "alpha", Address: "192.0.2.99", Port: 22})
		},
			want: []string{`machine "alpha": listed twice; give each machine one entry`}},
		{name: "machine addresses", change: func(inv *Inventory) {
			inv.Machines[0].Address = ""
			inv.Machines[1].Address = "op@beta"
			inv.Machines = append(inv.Machines,
				Machine{Name: "gamma", Address: "192.0.2.12:22", Port: 22},
				Machine{Name: "delta", Address: "two words", Port: 22},
				Machine{Name: "epsilon", Address: "2001:db8::5", Port: 22},
				Machine{Name: "zeta", Address: "zeta-alias_1", Port: 22})
		},
			want: []string{
				`machine "alpha" address "": missing; give the machine's host name or IP address`,
				`machine "beta" address "op@beta": put the user in "user", not in the address`,
				`machine "gamma" address "192.0.2.12:22": put the SSH port in "port", not in the address`,
				`machine "delta" address "two words": want a host name or an IP address`,
			}},
		{name: "machine ports", change: func(inv *Inventory) { inv.Machines[0].Port = 0; inv.Machines[1].Port = -22 },
			want: []string{
				`machine "alpha" port 0: must be between 1 and 65535`,
				`machine "beta" port -22: must be between 1 and 65535`,
			}},
		{name: "machine user", change: func(inv *Inventory) { inv.Machines[0].User = "root user" },
			want: []string{`machine "alpha" user "root user": want a login name (letters, digits, '_', '.', '-')`}},
		{name: "identity is key material", change: func(inv *Inventory) {
			inv.Machines[0].Identity = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXkt\n-----END OPENSSH PRIVATE KEY-----\n"
			inv.Machines[1].Identity = "/keys/a\n/keys/b"
		},
			want: []string{
				`machine "alpha" identity: this looks like key material; butter keeps no secrets in the inventory: give the path of the key file`,
				`machine "beta" identity: want the path of a key file, on one line`,
			}},
		{name: "endpoints", change: func(inv *Inventory) {
			inv.Machines[0].Endpoint = "192.0.2.10"
			inv.Machines[1].Endpoint = "beta.example.com:0"
			inv.Machines = append(inv.Machines,
				Machine{Name: "gamma", Address: "192.0.2.12", Port: 22, Endpoint: ":51820"},
				Machine{Name: "delta", Address: "192.0.2.13", Port: 22, Endpoint: "[2001:db8::7]:51820"},
				Machine{Name: "epsilon", Address: "192.0.2.14", Port: 22, Endpoint: "epsilon.example.com:wg"})
		},
			want: []string{
				`machine "alpha" endpoint "192.0.2.10": want host:port, e.g. 192.0.2.7:51820 or [2001:db8::7]:51820`,
				`machine "beta" endpoint "beta.example.com:0": the port must be a number between 1 and 65535`,
				`machine "gamma" endpoint ":51820": host: missing; give the machine's host name or IP address`,
				`machine "epsilon" endpoint "epsilon.example.com:wg": the port must be a number between 1 and 65535`,
			}},
		{name: "mesh IPs", change: func(inv *Inventory) {
			inv.Machines[1].MeshIP = addr("10.99.0.1")
			inv.Machines = append(inv.Machines,
				Machine{Name: "gamma", Address: "192.0.2.12", Port: 22, MeshIP: addr("10.98.0.1")},
				Machine{Name: "delta", Address: "192.0.2.13", Port: 22, MeshIP: addr("10.99.0.0")},
				Machine{Name: "epsilon", Address: "192.0.2.14", Port: 22, MeshIP: addr("10.99.255.255")},
				Machine{Name: "zeta", Address: "192.0.2.15", Port: 22, MeshIP: addr("fd00::1")},
				Machine{Name: "eta", Address: "192.0.2.16", Port: 22}) // none yet: fine
		},
			want: []string{
				`machine "beta" mesh IP 10.99.0.1: already machine "alpha"'s`,
				`machine "gamma" mesh IP 10.98.0.1: outside the mesh 10.99.0.0/16`,
				`machine "delta" mesh IP 10.99.0.0: the mesh's network or broadcast address; use a host address`,
				`machine "epsilon" mesh IP 10.99.255.255: the mesh's network or broadcast address; use a host address`,
				`machine "zeta" mesh IP fd00::1: want an IPv4 address in the mesh 10.99.0.0/16`,
			}},
		{name: "public keys", change: func(inv *Inventory) {
			inv.Machines[1].PublicKey = keyA
			inv.Machines = append(inv.Machines,
				Machine{Name: "gamma", Address: "192.0.2.12", Port: 22, PublicKey: "not-a-key"},
				Machine{Name: "delta", Address: "192.0.2.13", Port: 22, PublicKey: "AAAA"})
		},
			want: []string{
				`machine "beta" public key: same as machine "alpha"'s; each machine has its own key`,
				`machine "gamma" public key "not-a-key": not a WireGuard public key (44 characters of base64)`,
				`machine "delta" public key "AAAA": not a WireGuard public key (44 characters of base64)`,
			}},
		{name: "accel", change: func(inv *Inventory) { inv.Machines[0].Accel = "hvf"; inv.Machines[1].Accel = "tcg" },
			want: []string{`machine "alpha" accel "hvf": choose "auto", "kvm" or "tcg"`}},

		// Networks.
		{name: "network names", change: func(inv *Inventory) {
			inv.Networks = append(inv.Networks,
				Network{Name: "", Subnet: prefix("10.100.2.0/24"), ID: 3, Tunnel: "auto"},
				Network{Name: "Red", Subnet: prefix("10.100.3.0/24"), ID: 4, Tunnel: "auto"},
				Network{Name: "blue", Subnet: prefix("10.100.4.0/24"), ID: 5, Tunnel: "auto"})
		},
			want: []string{
				`network 3: no name; use 1 to 32 lower-case letters, digits and dashes, not starting or ending with a dash`,
				`network "Red": bad name; use 1 to 32 lower-case letters, digits and dashes, not starting or ending with a dash`,
				`network "blue": listed twice; give each network one entry`,
			}},
		{name: "subnets", change: func(inv *Inventory) {
			inv.Networks = append(inv.Networks,
				Network{Name: "a", ID: 3, Tunnel: "auto"},
				Network{Name: "b", Subnet: prefix("10.100.0.128/25"), ID: 4, Tunnel: "auto"},
				Network{Name: "c", Subnet: prefix("10.99.7.0/24"), ID: 5, Tunnel: "auto"},
				Network{Name: "d", Subnet: prefix("10.100.9.1/24"), ID: 6, Tunnel: "auto"},
				Network{Name: "e", Subnet: prefix("10.101.0.0/31"), ID: 7, Tunnel: "auto"},
				Network{Name: "f", Subnet: prefix("fd00:1::/64"), ID: 8, Tunnel: "auto"},
				Network{Name: "g", Subnet: prefix("10.0.0.0/8"), ID: 9, Tunnel: "auto"})
		},
			want: []string{
				`network "a" subnet: missing; want an IPv4 range such as 10.100.1.0/24`,
				`network "b" subnet 10.100.0.128/25: overlaps network "blue"'s subnet 10.100.0.0/24`,
				`network "c" subnet 10.99.7.0/24: overlaps the mesh 10.99.0.0/16`,
				`network "d" subnet 10.100.9.1/24: want the range's own address, 10.100.9.0/24`,
				`network "e" subnet 10.101.0.0/31: must be between /8 and /30`,
				`network "f" subnet fd00:1::/64: want an IPv4 range such as 10.100.1.0/24`,
				`network "g" subnet 10.0.0.0/8: overlaps the mesh 10.99.0.0/16`,
				`network "g" subnet 10.0.0.0/8: overlaps network "blue"'s subnet 10.100.0.0/24`,
				`network "g" subnet 10.0.0.0/8: overlaps network "green"'s subnet 10.100.1.0/24`,
				`network "g" subnet 10.0.0.0/8: overlaps network "b"'s subnet 10.100.0.128/25`,
				`network "g" subnet 10.0.0.0/8: overlaps network "c"'s subnet 10.99.7.0/24`,
			}},
		{name: "network ids", change: func(inv *Inventory) {
			inv.Networks[1].ID = 1
			inv.Networks = append(inv.Networks,
				Network{Name: "a", Subnet: prefix("10.100.2.0/24"), ID: 0, Tunnel: "auto"},
				Network{Name: "b", Subnet: prefix("10.100.3.0/24"), ID: 65536, Tunnel: "auto"},
				Network{Name: "c", Subnet: prefix("10.100.4.0/24"), ID: 65535, Tunnel: "auto"})
		},
			want: []string{
				`network "green" id 1: already network "blue"'s; each network needs its own id`,
				`network "a" id 0: must be between 1 and 65535`,
				`network "b" id 65536: must be between 1 and 65535`,
			}},
		{name: "tunnel", change: func(inv *Inventory) { inv.Networks[0].Tunnel = "ipip"; inv.Networks[1].Tunnel = "" },
			want: []string{
				`network "blue" tunnel "ipip": choose "auto", "gretap" or "vxlan"`,
				`network "green" tunnel "": choose "auto", "gretap" or "vxlan"`,
			}},
		{name: "network machines", change: func(inv *Inventory) { inv.Networks[1].Machines = []string{"beta", "gamma", "beta"} },
			want: []string{
				`network "green" machine "gamma": no such machine in the inventory`,
				`network "green" machine "beta": listed twice`,
			}},

		// VMs.
		{name: "VM names", change: func(inv *Inventory) {
			inv.VMs = append(inv.VMs,
				VM{Name: "", Machine: "alpha", Network: "blue", Address: addr("10.100.0.10")},
				VM{Name: "Web", Machine: "alpha", Network: "blue", Address: addr("10.100.0.11")},
				VM{Name: "web", Machine: "alpha", Network: "blue", Address: addr("10.100.0.12")})
		},
			want: []string{
				`VM 4: no name; use 1 to 32 lower-case letters, digits and dashes, not starting or ending with a dash`,
				`VM "Web": bad name; use 1 to 32 lower-case letters, digits and dashes, not starting or ending with a dash`,
				`VM "web": listed twice; give each VM one entry`,
			}},
		{name: "VM places", change: func(inv *Inventory) {
			inv.VMs = append(inv.VMs,
				VM{Name: "a", Machine: "gamma", Network: "blue", Address: addr("10.100.0.10")},
				VM{Name: "b", Machine: "alpha", Network: "red", Address: addr("10.100.0.11")},
				VM{Name: "c", Machine: "alpha", Network: "green", Address: addr("10.100.1.12")})
		},
			want: []string{
				`VM "a" machine "gamma": no such machine in the inventory`,
				`VM "b" network "red": no such network in the inventory`,
				`VM "c" machine "alpha": not in network "green"; add the machine to the network first`,
			}},
		{name: "VM addresses", change: func(inv *Inventory) {
			inv.VMs[1].Address = addr("10.100.0.2")
			inv.VMs = append(inv.VMs,
				VM{Name: "a", Machine: "alpha", Network: "blue", Address: addr("10.100.1.10")},
				VM{Name: "b", Machine: "alpha", Network: "blue", Address: addr("10.100.0.0")},
				VM{Name: "c", Machine: "alpha", Network: "blue", Address: addr("10.100.0.255")},
				VM{Name: "d", Machine: "alpha", Network: "blue"},
				VM{Name: "e", Machine: "alpha", Network: "blue", Address: addr("10.100.0.1")}) // the gateway, which every member holds
		},
			want: []string{
				`VM "db" address 10.100.0.2: already VM "web"'s`,
				`VM "a" address 10.100.1.10: outside network "blue"'s subnet 10.100.0.0/24; pick one inside it, or leave it out for the next free one`,
				`VM "b" address 10.100.0.0: network "blue"'s network address; pick a host address, or leave it out for the next free one`,
				`VM "c" address 10.100.0.255: network "blue"'s broadcast address; pick a host address, or leave it out for the next free one`,
				`VM "d" address: missing; want an IPv4 address`,
				`VM "e" address 10.100.0.1: network "blue"'s gateway (every member machine holds it on its bridge); pick another, or leave it out for the next free one`,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv := sample()
			tt.change(inv)
			err := inv.Validate()
			if diff := cmp.Diff(tt.want, messages(err)); diff != "" {
				t.Errorf("Validate problems (-want +got):\n%s", diff)
			}
		})
	}
}

// TestValidateAllAtOnce: problems of every kind come back together, not
// one per run.
func TestValidateAllAtOnce(t *testing.T) {
	inv := sample()
	inv.Mesh.Port = 0
	inv.Machines[0].Port = 0
	inv.Networks[0].ID = 0
	inv.VMs[0].Address = netip.MustParseAddr("10.100.9.9")
	want := []string{
		`mesh port 0: must be between 1 and 65535`,
		`machine "alpha" port 0: must be between 1 and 65535`,
		`network "blue" id 0: must be between 1 and 65535`,
		`VM "web" address 10.100.9.9: outside network "blue"'s subnet 10.100.0.0/24; pick one inside it, or leave it out for the next free one`,
	}
	err := inv.Validate()
	if diff := cmp.Diff(want, messages(err)); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
	wantText := "inventory: 4 problems:\n\tmesh port 0: must be between 1 and 65535\n" +
		"\tmachine \"alpha\" port 0: must be between 1 and 65535\n" +
		"\tnetwork \"blue\" id 0: must be between 1 and 65535\n" +
		"\tVM \"web\" address 10.100.9.9: outside network \"blue\"'s subnet 10.100.0.0/24; pick one inside it, or leave it out for the next free one"
	if diff := cmp.Diff(wantText, err.Error()); diff != "" {
		t.Errorf("error text (-want +got):\n%s", diff)
	}
}
