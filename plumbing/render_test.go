package plumbing

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func TestChangeCommands(t *testing.T) {
	a := netip.MustParseAddr
	pfx := netip.MustParsePrefix
	bridge := Link{Name: "btbr1", Kind: KindBridge, MTU: 1370, Up: true, Alias: "butter network blue",
		Addrs: []netip.Prefix{pfx("10.10.1.1/24")}, MAC: "02:62:74:00:00:01"}
	vxlan := Link{Name: "btvx1", Kind: KindVXLAN, MTU: 1370, Master: "btbr1", Up: true, Alias: "butter network blue",
		Key: 1, Local: a("100.64.0.1"), Dev: WireGuardName, Port: VXLANPort, Learning: true,
		FDB: []netip.Addr{a("100.64.0.2"), a("100.64.0.3")}}
	gretap := Link{Name: "btgt1-2", Kind: KindGretap, MTU: 1378, Master: "btbr1", Isolated: true, Up: true,
		Alias: "butter network blue to m2", Key: 1, Local: a("100.64.0.1"), Remote: a("100.64.0.2")}
	wg := Link{Name: WireGuardName, Kind: KindWireGuard, MTU: 1420, Up: true, Alias: "butter mesh",
		Addrs: []netip.Prefix{pfx("100.64.0.1/16")}, Routes: []netip.Prefix{pfx("192.168.50.0/24")}}
	addGretap := []string{
		"ip link add name btgt1-2 mtu 1378 type gretap key 1 local 100.64.0.1 remote 100.64.0.2 pmtudisc",
		"ip link set dev btgt1-2 mtu 1378",
		"ip link set dev btgt1-2 master btbr1",
		"bridge link set dev btgt1-2 isolated on",
		"ip link set dev btgt1-2 alias 'butter network blue to m2'",
		"ip link set dev btgt1-2 up",
	}
	tests := []struct {
		name string
		c    Change
		have Link
		want []string
	}{
		{"add wireguard", Change{Op: OpAdd, Link: wg}, Link{}, []string{
			"ip link add name btwg0 mtu 1420 type wireguard",
			"ip link set dev btwg0 mtu 1420",
			"ip link set dev btwg0 alias 'butter mesh'",
			"ip link set dev btwg0 up",
			"ip addr replace 100.64.0.1/16 dev btwg0",
			"ip route replace 192.168.50.0/24 dev btwg0 proto static scope global",
		}},
		{"add bridge", Change{Op: OpAdd, Link: bridge}, Link{}, []string{
			"ip link add name btbr1 mtu 1370 type bridge",
			"ip link set dev btbr1 mtu 1370",
			"ip link set dev btbr1 address 02:62:74:00:00:01",
			"ip link set dev btbr1 alias 'butter network blue'",
			"ip link set dev btbr1 up",
			"ip addr replace 10.10.1.1/24 dev btbr1",
		}},
		{"add vxlan", Change{Op: OpAdd, Link: vxlan}, Link{}, []string{
			"ip link add name btvx1 mtu 1370 type vxlan id 1 local 100.64.0.1 dev btwg0 dstport 4789 learning",
			"ip link set dev btvx1 mtu 1370",
			"ip link set dev btvx1 master btbr1",
			"ip link set dev btvx1 alias 'butter network blue'",
			"ip link set dev btvx1 up",
			"bridge fdb append 00:00:00:00:00:00 dev btvx1 dst 100.64.0.2 self permanent",
			"bridge fdb append 00:00:00:00:00:00 dev btvx1 dst 100.64.0.3 self permanent",
		}},
		{"add gretap", Change{Op: OpAdd, Link: gretap}, Link{}, addGretap},
		{"replace gretap", Change{Op: OpReplace, Link: gretap}, Link{Name: "btgt1-2", Kind: KindVXLAN},
			append([]string{"ip link del dev btgt1-2"}, addGretap...)},
		{"set mtu, fdb, unisolate", Change{Op: OpSet, Link: func() Link { l := vxlan; l.MTU = 1300; return l }()},
			func() Link {
				l := vxlan
				l.Isolated, l.FDB = true, []netip.Addr{a("100.64.0.2"), a("100.64.0.9")}
				return l
			}(), []string{
				"ip link set dev btvx1 mtu 1300",
				"bridge link set dev btvx1 isolated off",
				"bridge fdb append 00:00:00:00:00:00 dev btvx1 dst 100.64.0.3 self permanent",
				"bridge fdb del 00:00:00:00:00:00 dev btvx1 dst 100.64.0.9 self",
			}},
		{"set nomaster, down, addresses", Change{Op: OpSet, Link: Link{Name: "btbr1", Kind: KindBridge, MTU: 1370}},
			Link{Name: "btbr1", Kind: KindBridge, MTU: 1370, Master: "btbr9", Up: true, Addrs: []netip.Prefix{pfx("10.10.1.1/24")}}, []string{
				"ip link set dev btbr1 nomaster",
				"ip link set dev btbr1 down",
				"ip addr del 10.10.1.1/24 dev btbr1",
			}},
		{"set routes", Change{Op: OpSet, Link: Link{Name: WireGuardName, Kind: KindWireGuard, Routes: []netip.Prefix{pfx("10.1.0.0/16")}}},
			Link{Name: WireGuardName, Kind: KindWireGuard, Routes: []netip.Prefix{pfx("10.2.0.0/16")}}, []string{
				"ip route replace 10.1.0.0/16 dev btwg0 proto static scope global",
				"ip route del 10.2.0.0/16 dev btwg0 proto static",
			}},
		{"delete", Change{Op: OpDelete, Link: vxlan}, vxlan, []string{"ip link del dev btvx1"}},
		{"alias with a quote", Change{Op: OpSet, Link: Link{Name: "btbr2", Kind: KindBridge, Alias: "butter network it's"}},
			Link{Name: "btbr2", Kind: KindBridge}, []string{`ip link set dev btbr2 alias 'butter network it'\''s'`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := cmp.Diff(tt.want, changeCommands(tt.c, tt.have)); d != "" {
				t.Errorf("commands (-want +got):\n%s", d)
			}
		})
	}
}

func TestWireGuardCommands(t *testing.T) {
	priv, _ := wgtypes.GeneratePrivateKey()
	peer, _ := wgtypes.GeneratePrivateKey()
	gone, _ := wgtypes.GeneratePrivateKey()
	port := 51820
	ka := 25 * time.Second
	none := time.Duration(0)
	_, n1, _ := net.ParseCIDR("100.64.0.2/32")
	_, n2, _ := net.ParseCIDR("192.168.50.0/24")
	cfg := wgtypes.Config{PrivateKey: &priv, ListenPort: &port, Peers: []wgtypes.PeerConfig{
		{PublicKey: peer.PublicKey(), Endpoint: &net.UDPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 51820},
			PersistentKeepaliveInterval: &ka, ReplaceAllowedIPs: true, AllowedIPs: []net.IPNet{*n1, *n2}},
		{PublicKey: peer.PublicKey(), PersistentKeepaliveInterval: &none, ReplaceAllowedIPs: true},
		{PublicKey: gone.PublicKey(), Remove: true},
	}}
	pub, goneKey := peer.PublicKey().String(), gone.PublicKey().String()
	tests := []struct {
		keyFile string
		first   string
	}{
		{"/var/lib/butter/wireguard.key", "wg set btwg0 private-key /var/lib/butter/wireguard.key listen-port 51820"},
		{"", "wg set btwg0 private-key '<private key the helper makes on the machine>' listen-port 51820"},
	}
	for _, tt := range tests {
		got := wgCommands(cfg, tt.keyFile)
		want := []string{tt.first,
			"wg set btwg0 peer " + shellWord(pub) + " endpoint 192.0.2.7:51820 persistent-keepalive 25 allowed-ips 100.64.0.2/32,192.168.50.0/24",
			"wg set btwg0 peer " + shellWord(pub) + " persistent-keepalive off allowed-ips ''",
			"wg set btwg0 peer " + shellWord(goneKey) + " remove",
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("wg commands (-want +got):\n%s", d)
		}
		if strings.Contains(strings.Join(got, "\n"), priv.String()) {
			t.Errorf("the private key shows in the commands")
		}
	}
}
