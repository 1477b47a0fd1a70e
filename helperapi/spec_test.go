package helperapi

import (
	"encoding/base64"
	"net/netip"
	"strings"
	"testing"
)

func testKey(b byte) string {
	return base64.StdEncoding.EncodeToString([]byte(strings.Repeat(string(b), 32)))
}

// testSpec is machine 1 of a three-machine mesh with the given networks.
func testSpec(networks ...Network) Spec {
	return Spec{
		Mesh: Mesh{Address: netip.MustParsePrefix("10.99.0.1/16")},
		Peers: []Peer{
			{Name: "m2", PublicKey: testKey('b'), Endpoint: "192.0.2.2:51820", MeshIP: netip.MustParseAddr("10.99.0.2")},
			{Name: "m3", PublicKey: testKey('c'), MeshIP: netip.MustParseAddr("10.99.0.3"), Keepalive: 25,
				AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.98.0.0/24")}},
		},
		Networks: networks,
	}
}

func TestSpecValidate(t *testing.T) {
	ok := testSpec(Network{Name: "blue", ID: 1, Subnet: netip.MustParsePrefix("10.10.1.0/24"), Peers: []string{"m2"}})
	tests := []struct {
		name   string
		change func(*Spec)
		want   []string // each must appear in the error; none: valid
	}{
		{"valid", func(s *Spec) {}, nil},
		{"mesh address missing", func(s *Spec) { s.Mesh.Address = netip.Prefix{} },
			[]string{"mesh address", "e.g. 10.99.0.1/16"}},
		{"peer is this machine", func(s *Spec) { s.Peers[0].MeshIP = netip.MustParseAddr("10.99.0.1") },
			[]string{`peer "m2" mesh IP 10.99.0.1`, "not its own peer"}},
		{"peer outside the mesh", func(s *Spec) { s.Peers[0].MeshIP = netip.MustParseAddr("10.98.0.2") },
			[]string{"outside the mesh 10.99.0.0/16"}},
		{"duplicate key", func(s *Spec) { s.Peers[1].PublicKey = s.Peers[0].PublicKey },
			[]string{`peer "m3" public key: same as peer "m2"'s`}},
		{"bad key", func(s *Spec) { s.Peers[0].PublicKey = "abc" }, []string{`peer "m2" public key`, "44 characters"}},
		{"duplicate peer", func(s *Spec) { s.Peers[1].Name = "m2" }, []string{`peer "m2": listed twice`}},
		{"bad endpoint", func(s *Spec) { s.Peers[0].Endpoint = "192.0.2.2" }, []string{`endpoint "192.0.2.2"`, "host:port"}},
		{"hostname endpoint", func(s *Spec) { s.Peers[0].Endpoint = "m2.example:51820" }, nil},
		{"duplicate network id", func(s *Spec) {
			s.Networks = append(s.Networks, Network{Name: "red", ID: 1})
		}, []string{`network "red" id 1: already network "blue"'s`}},
		{"overlapping subnets", func(s *Spec) {
			s.Networks = append(s.Networks, Network{Name: "red", ID: 2, Subnet: netip.MustParsePrefix("10.10.0.0/16")})
		}, []string{`network "red" subnet 10.10.0.0/16: overlaps network "blue"'s subnet 10.10.1.0/24`}},
		{"subnet overlaps the mesh", func(s *Spec) { s.Networks[0].Subnet = netip.MustParsePrefix("10.99.5.0/24") },
			[]string{"overlaps the mesh"}},
		{"id too big for names", func(s *Spec) { s.Networks[0].ID = 70000 }, []string{"between 1 and 65535"}},
		{"unknown peer", func(s *Spec) { s.Networks[0].Peers = []string{"m9"} }, []string{`peer "m9": no such peer`}},
		{"unknown tunnel", func(s *Spec) { s.Networks[0].Tunnel = "gre" }, []string{`tunnel "gre"`}},
		{"bad name", func(s *Spec) { s.Networks[0].Name = "Blue Net" }, []string{`name "Blue Net"`}},
		{"every problem at once", func(s *Spec) {
			s.Peers[0].PublicKey = ""
			s.Networks[0].ID = 0
		}, []string{"public key: missing", "id 0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := ok
			s.Peers = append([]Peer(nil), ok.Peers...)
			s.Networks = append([]Network(nil), ok.Networks...)
			tt.change(&s)
			err := s.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("want an error naming %q, got none", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestParseSpecStrict(t *testing.T) {
	_, err := ParseSpec([]byte(`{"mesh":{"address":"10.99.0.1/16","listen_prot":1}}`))
	if err == nil || !strings.Contains(err.Error(), "listen_prot") {
		t.Fatalf("unknown field: got %v, want an error naming it", err)
	}
	s, err := ParseSpec([]byte(`{"mesh":{"address":"10.99.0.1/16"}}`))
	if err != nil || s.Mesh.Port() != 51820 {
		t.Fatalf("minimal spec: %v, port %d", err, s.Mesh.Port())
	}
}
