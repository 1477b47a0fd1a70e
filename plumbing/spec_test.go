package plumbing

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/butter-cloud/butter/helperapi"
)

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
