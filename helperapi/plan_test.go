package helperapi

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// member is machine name at 10.99.0.host, reachable at 192.0.2.host
// unless behind NAT.
func member(name string, host byte, nat bool) Member {
	m := Member{Name: name, PublicKey: testKey('a' + host), MeshIP: netip.AddrFrom4([4]byte{10, 99, 0, host}), NAT: nat}
	if !nat {
		m.Endpoint = netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, host}), 51820).String()
	}
	return m
}

func TestPlan(t *testing.T) {
	mesh := netip.MustParsePrefix("10.99.0.0/16")
	blue := Network{Name: "blue", ID: 1, Subnet: netip.MustParsePrefix("10.10.1.0/24"), Tunnel: TunnelVXLAN}
	green := Network{Name: "green", ID: 2, Tunnel: TunnelAuto}
	addr := func(host byte) netip.Prefix { return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 99, 0, host}), 16) }
	ip := func(host byte) netip.Addr { return netip.AddrFrom4([4]byte{10, 99, 0, host}) }
	tests := []struct {
		name string
		plan MeshPlan
		want map[string]Spec
	}{
		{
			name: "full mesh, no keepalive, networks on their machines",
			plan: MeshPlan{Prefix: mesh, Members: []Member{member("a", 1, false), member("b", 2, false), member("c", 3, false)},
				Networks: []PlanNetwork{
					{Network: blue, Machines: []string{"a", "b", "c"}},
					{Network: green, Machines: []string{"a", "c", "gone"}},
				}},
			want: map[string]Spec{
				"a": {Mesh: Mesh{Address: addr(1), ListenPort: 51820},
					Peers: []Peer{
						{Name: "b", PublicKey: testKey('c'), Endpoint: "192.0.2.2:51820", MeshIP: ip(2)},
						{Name: "c", PublicKey: testKey('d'), Endpoint: "192.0.2.3:51820", MeshIP: ip(3)},
					},
					Networks: []Network{withPeers(blue, "b", "c"), withPeers(green, "c")}},
				"b": {Mesh: Mesh{Address: addr(2), ListenPort: 51820},
					Peers: []Peer{
						{Name: "a", PublicKey: testKey('b'), Endpoint: "192.0.2.1:51820", MeshIP: ip(1)},
						{Name: "c", PublicKey: testKey('d'), Endpoint: "192.0.2.3:51820", MeshIP: ip(3)},
					},
					Networks: []Network{withPeers(blue, "a", "c")}},
				"c": {Mesh: Mesh{Address: addr(3), ListenPort: 51820},
					Peers: []Peer{
						{Name: "a", PublicKey: testKey('b'), Endpoint: "192.0.2.1:51820", MeshIP: ip(1)},
						{Name: "b", PublicKey: testKey('c'), Endpoint: "192.0.2.2:51820", MeshIP: ip(2)},
					},
					Networks: []Network{withPeers(blue, "a", "b"), withPeers(green, "a")}},
			},
		},
		{
			name: "one machine behind NAT keeps its mapping open",
			plan: MeshPlan{Prefix: mesh, Port: 4500, Members: []Member{member("a", 1, false), member("n", 4, true)}},
			want: map[string]Spec{
				"a": {Mesh: Mesh{Address: addr(1), ListenPort: 4500},
					Peers: []Peer{{Name: "n", PublicKey: testKey('e'), MeshIP: ip(4)}}},
				"n": {Mesh: Mesh{Address: addr(4), ListenPort: 4500},
					Peers: []Peer{{Name: "a", PublicKey: testKey('b'), Endpoint: "192.0.2.1:51820", MeshIP: ip(1), Keepalive: NATKeepalive}}},
			},
		},
		{
			name: "two behind NAT reach each other through the first reachable machine",
			plan: MeshPlan{Prefix: mesh, Keepalive: 25, Members: []Member{
				member("n1", 3, true), member("b", 2, false), member("a", 1, false), member("n2", 4, true)}},
			want: map[string]Spec{
				"b": {Mesh: Mesh{Address: addr(2), ListenPort: 51820, Relay: true},
					Peers: []Peer{
						{Name: "n1", PublicKey: testKey('d'), MeshIP: ip(3), Keepalive: 25},
						{Name: "a", PublicKey: testKey('b'), Endpoint: "192.0.2.1:51820", MeshIP: ip(1), Keepalive: 25},
						{Name: "n2", PublicKey: testKey('e'), MeshIP: ip(4), Keepalive: 25},
					}},
				"a": {Mesh: Mesh{Address: addr(1), ListenPort: 51820},
					Peers: []Peer{
						{Name: "n1", PublicKey: testKey('d'), MeshIP: ip(3), Keepalive: 25},
						{Name: "b", PublicKey: testKey('c'), Endpoint: "192.0.2.2:51820", MeshIP: ip(2), Keepalive: 25},
						{Name: "n2", PublicKey: testKey('e'), MeshIP: ip(4), Keepalive: 25},
					}},
				"n1": {Mesh: Mesh{Address: addr(3), ListenPort: 51820},
					Peers: []Peer{
						{Name: "b", PublicKey: testKey('c'), Endpoint: "192.0.2.2:51820", MeshIP: ip(2), Keepalive: 25},
						{Name: "a", PublicKey: testKey('b'), Endpoint: "192.0.2.1:51820", MeshIP: ip(1), Keepalive: 25},
						{Name: "n2", MeshIP: ip(4), Via: "b"},
					}},
				"n2": {Mesh: Mesh{Address: addr(4), ListenPort: 51820},
					Peers: []Peer{
						{Name: "n1", MeshIP: ip(3), Via: "b"},
						{Name: "b", PublicKey: testKey('c'), Endpoint: "192.0.2.2:51820", MeshIP: ip(2), Keepalive: 25},
						{Name: "a", PublicKey: testKey('b'), Endpoint: "192.0.2.1:51820", MeshIP: ip(1), Keepalive: 25},
					}},
			},
		},
		{
			name: "a lone machine",
			plan: MeshPlan{Prefix: mesh, Members: []Member{member("a", 1, false)},
				Networks: []PlanNetwork{{Network: blue, Machines: []string{"a"}}, {Network: green}}},
			want: map[string]Spec{"a": {Mesh: Mesh{Address: addr(1), ListenPort: 51820}, Networks: []Network{blue}}},
		},
	}
	cmpAddr := cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
	cmpPrefix := cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Plan(tt.plan)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmpAddr, cmpPrefix); diff != "" {
				t.Errorf("Plan mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func withPeers(n Network, peers ...string) Network {
	n.Peers = peers
	return n
}

func TestPlanErrors(t *testing.T) {
	mesh := netip.MustParsePrefix("10.99.0.0/16")
	noKey := member("b", 2, false)
	noKey.PublicKey = ""
	noIP := member("c", 3, false)
	noIP.MeshIP = netip.Addr{}
	sameIP := member("d", 1, false)
	tests := []struct {
		name string
		plan MeshPlan
		want []string // all must appear
	}{
		{"every member problem at once", MeshPlan{Prefix: mesh, Members: []Member{member("a", 1, false), noKey, noIP, member("a", 4, false)}},
			[]string{`machine "b": no public key`, `machine "c": no mesh address`, `machine "a": listed twice`}},
		{"NAT without a relay", MeshPlan{Prefix: mesh, Members: []Member{member("n1", 1, true), member("n2", 2, true)}},
			[]string{"reachable machine to relay"}},
		{"specs are validated", MeshPlan{Prefix: mesh, Members: []Member{member("a", 1, false), sameIP}},
			[]string{`spec of machine "a"`, `spec of machine "d"`, "own address"}},
		{"a mesh prefix too short", MeshPlan{Prefix: netip.MustParsePrefix("10.0.0.0/4"), Members: []Member{member("a", 1, false)}},
			[]string{"prefix length"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Plan(tt.plan)
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
