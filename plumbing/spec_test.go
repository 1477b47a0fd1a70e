package plumbing

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/butter-cloud/butter/helperapi"
)

func TestValidate(t *testing.T) {
	ok := testSpec(helperapi.Network{Name: "blue", ID: 1, Subnet: netip.MustParsePrefix("10.10.1.0/24"), Peers: []string{"m2"}})
	tests := []struct {
		name   string
		change func(*helperapi.Spec)
		want   []string // each must appear in the error; none: valid
	}{
		{"valid", func(s *helperapi.Spec) {}, nil},
		{"mesh address missing", func(s *helperapi.Spec) { s.Mesh.Address = netip.Prefix{} },
			[]string{"mesh address", "e.g. 10.99.0.1/16"}},
		{"peer is this machine", func(s *helperapi.Spec) { s.Peers[0].MeshIP = netip.MustParseAddr("10.99.0.1") },
			[]string{`peer "m2" mesh IP 10.99.0.1`, "not its own peer"}},
		{"peer outside the mesh", func(s *helperapi.Spec) { s.Peers[0].MeshIP = netip.MustParseAddr("10.98.0.2") },
			[]string{"outside the mesh 10.99.0.0/16"}},
		{"duplicate key", func(s *helperapi.Spec) { s.Peers[1].PublicKey = s.Peers[0].PublicKey },
			[]string{`peer "m3" public key: same as peer "m2"'s`}},
		{"bad key", func(s *helperapi.Spec) { s.Peers[0].PublicKey = "abc" }, []string{`peer "m2" public key`, "44 characters"}},
		{"duplicate peer", func(s *helperapi.Spec) { s.Peers[1].Name = "m2" }, []string{`peer "m2": listed twice`}},
		{"bad endpoint", func(s *helperapi.Spec) { s.Peers[0].Endpoint = "192.0.2.2" }, []string{`endpoint "192.0.2.2"`, "host:port"}},
		{"hostname endpoint", func(s *helperapi.Spec) { s.Peers[0].Endpoint = "m2.example:51820" }, nil},
		{"duplicate network id", func(s *helperapi.Spec) {
			s.Networks = append(s.Networks, helperapi.Network{Name: "red", ID: 1})
		}, []string{`network "red" id 1: already network "blue"'s`}},
		{"overlapping subnets", func(s *helperapi.Spec) {
			s.Networks = append(s.Networks, helperapi.Network{Name: "red", ID: 2, Subnet: netip.MustParsePrefix("10.10.0.0/16")})
		}, []string{`network "red" subnet 10.10.0.0/16: overlaps network "blue"'s subnet 10.10.1.0/24`}},
		{"subnet overlaps the mesh", func(s *helperapi.Spec) { s.Networks[0].Subnet = netip.MustParsePrefix("10.99.5.0/24") },
			[]string{"overlaps the mesh"}},
		{"id too big for names", func(s *helperapi.Spec) { s.Networks[0].ID = 70000 }, []string{"between 1 and 65535"}},
		{"unknown peer", func(s *helperapi.Spec) { s.Networks[0].Peers = []string{"m9"} }, []string{`peer "m9": no such peer`}},
		{"unknown tunnel", func(s *helperapi.Spec) { s.Networks[0].Tunnel = "gre" }, []string{`tunnel "gre"`}},
		{"bad name", func(s *helperapi.Spec) { s.Networks[0].Name = "Blue Net" }, []string{`name "Blue Net"`}},
		{"every problem at once", func(s *helperapi.Spec) {
			s.Peers[0].PublicKey = ""
			s.Networks[0].ID = 0
		}, []string{"public key: missing", "id 0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := ok
			s.Peers = append([]helperapi.Peer(nil), ok.Peers...)
			s.Networks = append([]helperapi.Network(nil), ok.Networks...)
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
	_, err := helperapi.ParseSpec([]byte(`{"mesh":{"address":"10.99.0.1/16","listen_prot":1}}`))
	if err == nil || !strings.Contains(err.Error(), "listen_prot") {
		t.Fatalf("unknown field: got %v, want an error naming it", err)
	}
	s, err := helperapi.ParseSpec([]byte(`{"mesh":{"address":"10.99.0.1/16"}}`))
	if err != nil || s.Mesh.Port() != 51820 {
		t.Fatalf("minimal spec: %v, port %d", err, s.Mesh.Port())
	}
}

func TestNames(t *testing.T) {
	for _, tt := range []struct{ got, want string }{
		{BridgeName(65535), "btbr65535"},
		{VXLANName(7), "btvx7"},
		{GretapName(65535, netip.MustParseAddr("10.99.255.255")), "btgt65535-65535"},
		{GretapName(1, netip.MustParseAddr("10.99.0.2")), "btgt1-2"},
	} {
		if tt.got != tt.want {
			t.Errorf("name %q, want %q", tt.got, tt.want)
		}
		if len(tt.got) > maxIfName {
			t.Errorf("name %q is over %d characters", tt.got, maxIfName)
		}
	}
}

func TestRelayedPeers(t *testing.T) {
	s := testSpec()
	s.Peers = append(s.Peers, helperapi.Peer{Name: "m4", MeshIP: netip.MustParseAddr("10.99.0.4"), Via: "m2"})
	if err := s.Validate(); err != nil {
		t.Fatalf("a peer relayed through a direct peer: %v", err)
	}
	allowed := allowedIPs(s.Peers[0], []netip.Addr{netip.MustParseAddr("10.99.0.4")})
	if got := fmt.Sprint(allowed); got != "[{10.99.0.2 ffffffff} {10.99.0.4 ffffffff}]" {
		t.Errorf("the relay's allowed IPs = %s, want its own and the relayed peer's", got)
	}
	for _, tt := range []struct {
		via, want string
	}{{"m9", `via "m9": no such peer`}, {"m4", "itself relayed"}} {
		bad := testSpec()
		bad.Peers = append(bad.Peers, helperapi.Peer{Name: "m4", MeshIP: netip.MustParseAddr("10.99.0.4"), Via: "m2"},
			helperapi.Peer{Name: "m5", MeshIP: netip.MustParseAddr("10.99.0.5"), Via: tt.via})
		if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("via %s: %v, want %q", tt.via, err, tt.want)
		}
	}
}
