package resolver

import (
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
)

// loopZone is a zone whose gateway is a loopback address (127.0.N.1), so
// a test can listen there and ask.
func loopZone(name string, n int, hosts map[string]string) Zone {
	subnet := netip.MustParsePrefix(netip.AddrFrom4([4]byte{127, 0, byte(n), 0}).String() + "/24")
	z := Zone{Network: name, Subnet: subnet, Gateway: subnet.Addr().Next(), Hosts: map[string]netip.Addr{}}
	for h, a := range hosts {
		z.Hosts[h] = netip.MustParseAddr(a)
	}
	return z
}

func freePort(t *testing.T) int {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return int(netip.MustParseAddrPort(pc.LocalAddr().String()).Port())
}

func TestServersConverge(t *testing.T) {
	up := startUpstream(t)
	port := freePort(t)
	s := NewServers(Options{Upstream: fixed{up.addr}, Port: port})
	t.Cleanup(func() { _ = s.Close() })
	at := func(n int) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, byte(n), 1}), uint16(port))
	}
	lookup := func(n int, name string) []string {
		t.Helper()
		return addrs(ask(t, "udp", at(n), query(name, dns.TypeA)))
	}
	blue := loopZone("blue", 10, map[string]string{"web": "127.0.10.2"})
	red := loopZone("red", 11, map[string]string{"db": "127.0.11.2"})

	steps := []struct {
		name  string
		zones []Zone
		want  []string
	}{
		{"two networks", []Zone{blue, red}, []string{
			"serve names of network blue on " + at(10).String() + ": 1 VMs",
			"serve names of network red on " + at(11).String() + ": 1 VMs"}},
		{"the same again changes nothing", []Zone{blue, red}, nil},
		{"a VM added on red", []Zone{blue, loopZone("red", 11, map[string]string{"db": "127.0.11.2", "api": "127.0.11.3"})},
			[]string{"set names of network red: 2 VMs"}},
		{"red's gateway moved", []Zone{blue, loopZone("red", 12, map[string]string{"db": "127.0.12.2"})}, []string{
			"stop names of network red on " + at(11).String(),
			"serve names of network red on " + at(12).String() + ": 1 VMs"}},
		{"red gone", []Zone{blue}, []string{"stop names of network red on " + at(12).String()}},
	}
	for _, st := range steps {
		changes, err := s.Converge(t.Context(), st.zones)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if diff := cmp.Diff(st.want, changes); diff != "" {
			t.Errorf("%s: changes (-want +got):\n%s", st.name, diff)
		}
		if miss := s.Missing(st.zones); len(miss) != 0 {
			t.Errorf("%s: missing %v", st.name, miss)
		}
		for _, z := range st.zones {
			n := int(z.Gateway.As4()[2])
			for h, a := range z.Hosts {
				if got := lookup(n, h+"."+z.Origin()); len(got) != 1 || got[0] != a.String() {
					t.Errorf("%s: %s on %s: %v, want %s", st.name, h, z.Network, got, a)
				}
			}
		}
	}
	if got := s.Missing([]Zone{blue, red}); !cmp.Equal(got, []string{"red"}) {
		t.Errorf("missing %v, want [red]", got)
	}
	// A gateway is never an upstream: one listed is skipped.
	if !s.isGateway(blue.Gateway) || s.isGateway(up.addr.Addr()) {
		t.Errorf("isGateway: blue's gateway %v, the upstream %v; want true, false", s.isGateway(blue.Gateway), s.isGateway(up.addr.Addr()))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Server("blue"); ok {
		t.Errorf("blue still served after Close")
	}
	pc, err := net.ListenPacket("udp", at(10).String())
	if err != nil {
		t.Fatalf("blue's port after Close: %v", err)
	}
	pc.Close()
}

// A server that cannot listen is named in the error; the others start,
// and a later Converge starts it.
func TestServersConvergeBusyPort(t *testing.T) {
	port := freePort(t)
	blue := loopZone("blue", 20, nil)
	red := loopZone("red", 21, nil)
	busy, err := net.ListenPacket("udp", netip.AddrPortFrom(red.Gateway, uint16(port)).String())
	if err != nil {
		t.Fatal(err)
	}
	s := NewServers(Options{Upstream: fixed{}, Port: port})
	t.Cleanup(func() { _ = s.Close() })
	changes, err := s.Converge(t.Context(), []Zone{blue, red})
	if err == nil || !cmp.Equal(len(changes), 1) {
		t.Fatalf("converge with red's port taken: changes %v, error %v; want blue served and an error", changes, err)
	}
	t.Logf("error: %v", err)
	if got := s.Missing([]Zone{blue, red}); !cmp.Equal(got, []string{"red"}) {
		t.Errorf("missing %v, want [red]", got)
	}
	busy.Close()
	if changes, err := s.Converge(t.Context(), []Zone{blue, red}); err != nil || len(changes) != 1 {
		t.Errorf("converge once the port is free: changes %v, error %v; want red served", changes, err)
	}
}
