package plumbing

import (
	"context"
	"net/netip"
	"testing"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/google/go-cmp/cmp"
)

// TestGatewayFilterKernel writes the gateway filter (table bridge butter)
// into a fresh network namespace and reads it back: every rule reads back
// as written, a second write changes nothing, and neither the inet table
// nor another program's tables are touched; removing it leaves them.
func TestGatewayFilterKernel(t *testing.T) {
	inFreshNetns(t)
	ctx := context.Background()
	foreignTables(t)
	before := ruleset(t)
	spec := testSpec(
		helperapi.Network{Name: "blue", ID: 1, Subnet: netip.MustParsePrefix("10.10.1.0/24"), Tunnel: helperapi.TunnelVXLAN, Peers: []string{"m2"}},
		helperapi.Network{Name: "red", ID: 300, Subnet: netip.MustParsePrefix("10.10.3.0/24"), Tunnel: helperapi.TunnelGretap, Peers: []string{"m2", "m3"}},
		helperapi.Network{Name: "bare", ID: 4, Tunnel: helperapi.TunnelVXLAN, Peers: []string{"m3"}},
	)
	want := gatewayFilter(makePlan(spec, machine{UplinkMTU: 1500, Gretap: true}))
	k := nftTable{bridge: true}
	changes := writeReadBack(t, ctx, k, want)
	if diff := cmp.Diff([]string{"firewall: table bridge butter missing"}, changes); diff != "" {
		t.Errorf("first write (-want +got):\n%s", diff)
	}
	if inet, err := (nftTable{}).Table(ctx); err != nil || inet != nil {
		t.Errorf("writing the bridge table made an inet table: %v %v", inet, err)
	}
	if err := k.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if after := ruleset(t); after != before {
		t.Errorf("other tables changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}
