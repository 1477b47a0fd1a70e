package vm

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// A guest told its network's gateway as name server searches its
// network's domain; one told other name servers searches nothing.
func TestSeedSearchDomain(t *testing.T) {
	mac := net.HardwareAddr{0x52, 0x54, 0, 1, 2, 3}
	gw, other := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("9.9.9.9")
	tests := []struct {
		name string
		dns  []netip.Addr
		want []string
	}{
		{"the gateway", []netip.Addr{gw}, []string{"blue.internal"}},
		{"the gateway second", []netip.Addr{other, gw}, []string{"blue.internal"}},
		{"other name servers", []netip.Addr{other}, nil},
		{"none", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Spec{Name: "web1", Hostname: "web1", NIC: NIC{Network: "blue", Subnet: netip.MustParsePrefix("10.0.0.0/24"),
				Address: netip.MustParsePrefix("10.0.0.5/24"), Gateway: gw, DNS: tt.dns}}
			sd := seed(s, mac)
			if diff := cmp.Diff(tt.want, sd.NIC.Search); diff != "" {
				t.Errorf("search (-want +got):\n%s", diff)
			}
			nc, err := sd.NetworkConfig()
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(string(nc), `- "blue.internal"`); got != (tt.want != nil) {
				t.Errorf("network-config names blue.internal: %v, want %v:\n%s", got, tt.want != nil, nc)
			}
		})
	}
}
