package cloud

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/internal/testbed"
	"github.com/butter-cloud/butter/inventory"
)

func machine(name string, host byte, nat bool) inventory.Machine {
	return inventory.Machine{Name: name, Address: "192.0.2." + string('0'+host), Port: 22, NAT: nat,
		MeshIP: netip.AddrFrom4([4]byte{10, 99, 0, host}), PublicKey: testbed.Key('a' + host)}
}

func testInventory(machines ...inventory.Machine) *inventory.Inventory {
	return &inventory.Inventory{Version: 1, Mesh: inventory.Mesh{Prefix: inventory.DefaultMeshPrefix, Port: 51820},
		Machines: machines}
}

func TestSpecsFullMesh(t *testing.T) {
	inv := testInventory(machine("a", 1, false), machine("b", 2, false), machine("c", 3, false))
	inv.Machines[2].Endpoint = "c.example.org:4500"
	inv.Networks = []inventory.Network{{Name: "blue", ID: 1, Subnet: netip.MustParsePrefix("10.20.0.0/24"),
		Tunnel: "auto", Machines: []string{"a", "c"}}}
	specs, err := Specs(inv)
	if err != nil {
		t.Fatal(err)
	}
	a := specs["a"]
	if a.Mesh.Address != netip.MustParsePrefix("10.99.0.1/16") || a.Mesh.ListenPort != 51820 || a.Mesh.Relay {
		t.Errorf("a's mesh = %+v", a.Mesh)
	}
	if len(a.Peers) != 2 || a.Peers[0].Endpoint != "192.0.2.2:51820" || a.Peers[1].Endpoint != "c.example.org:4500" {
		t.Errorf("a's peers = %+v", a.Peers)
	}
	if len(a.Networks) != 1 || strings.Join(a.Networks[0].Peers, ",") != "c" {
		t.Errorf("a's networks = %+v, want blue towards c only", a.Networks)
	}
	if len(specs["b"].Networks) != 0 {
		t.Errorf("b is not in blue but got %+v", specs["b"].Networks)
	}
}

func TestSpecsNAT(t *testing.T) {
	// a and b are reachable, n1 and n2 are behind NAT.
	inv := testInventory(machine("n1", 3, true), machine("b", 2, false), machine("a", 1, false), machine("n2", 4, true))
	specs, err := Specs(inv)
	if err != nil {
		t.Fatal(err)
	}
	if !specs["a"].Mesh.Relay || specs["b"].Mesh.Relay || specs["n1"].Mesh.Relay {
		t.Errorf("the relay should be a (first reachable by name) only")
	}
	peer := func(of, name string) helperapi.Peer {
		for _, p := range specs[of].Peers {
			if p.Name == name {
				return p
			}
		}
		t.Fatalf("%s has no peer %s", of, name)
		return helperapi.Peer{}
	}
	if p := peer("n1", "n2"); p.Via != "a" || p.PublicKey != "" || p.Endpoint != "" {
		t.Errorf("n1 should reach n2 through a: %+v", p)
	}
	if p := peer("n1", "a"); p.Keepalive != Keepalive || p.Endpoint != "192.0.2.1:51820" {
		t.Errorf("n1 should keep its NAT mapping to a open: %+v", p)
	}
	if p := peer("a", "n1"); p.Endpoint != "" || p.PublicKey == "" {
		t.Errorf("a learns n1's endpoint from its handshakes: %+v", p)
	}
}

func TestSpecsSkipsMachinesNotJoined(t *testing.T) {
	half := machine("c", 3, false)
	half.PublicKey = "" // being added
	inv := testInventory(machine("a", 1, false), half)
	inv.Networks = []inventory.Network{{Name: "blue", ID: 1, Subnet: netip.MustParsePrefix("10.20.0.0/24"),
		Machines: []string{"a", "c"}}}
	specs, err := Specs(inv)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := specs["c"]; ok || len(specs["a"].Peers) != 0 || len(specs["a"].Networks[0].Peers) != 0 {
		t.Errorf("a machine without a key must not appear yet: %+v", specs)
	}
}

func TestSpecsNATWithoutRelay(t *testing.T) {
	_, err := Specs(testInventory(machine("n1", 1, true), machine("n2", 2, true)))
	if err == nil || !strings.Contains(err.Error(), "reachable machine to relay") {
		t.Fatalf("two NAT machines and no relay: %v", err)
	}
}
