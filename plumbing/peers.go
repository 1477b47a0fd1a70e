package plumbing

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/butter-cloud/butter/helperapi"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// peerChanges compares the WireGuard device with the spec's peers and
// returns the configuration that makes it match, with a line per change.
// Peers that already match are left alone, so their sessions survive.
func peerChanges(ctx context.Context, spec helperapi.Spec, priv wgtypes.Key, dev *wgtypes.Device) (wgtypes.Config, []string, error) {
	var cfg wgtypes.Config
	var notes []string
	if dev.PrivateKey != priv {
		cfg.PrivateKey = &priv
		notes = append(notes, "wireguard set private key (public "+priv.PublicKey().String()+")")
	}
	if port := spec.Mesh.Port(); dev.ListenPort != port {
		cfg.ListenPort = &port
		notes = append(notes, fmt.Sprintf("wireguard set listen port %d", port))
	}
	have := map[wgtypes.Key]wgtypes.Peer{}
	for _, p := range dev.Peers {
		have[p.PublicKey] = p
	}
	wanted := map[wgtypes.Key]bool{}
	relayed := map[string][]netip.Addr{}
	for _, p := range spec.Peers {
		if p.Via != "" {
			relayed[p.Via] = append(relayed[p.Via], p.MeshIP)
		}
	}
	for _, p := range spec.Peers {
		if p.Via != "" {
			continue // no entry of its own: routed through its relay
		}
		key, err := wgtypes.ParseKey(p.PublicKey)
		if err != nil {
			return cfg, nil, fmt.Errorf("peer %q public key: %w", p.Name, err)
		}
		wanted[key] = true
		allowed := allowedIPs(p, relayed[p.Name])
		keepalive := time.Duration(p.Keepalive) * time.Second
		var endpoint *net.UDPAddr
		if p.Endpoint != "" {
			endpoint, err = resolveEndpoint(ctx, p.Endpoint)
			if err != nil {
				return cfg, nil, fmt.Errorf("peer %q endpoint: %w", p.Name, err)
			}
		}
		cur, ok := have[key]
		var what []string
		switch {
		case !ok:
			what = append(what, "add")
		default:
			if !sameIPNets(cur.AllowedIPs, allowed) {
				what = append(what, "allowed ips")
			}
			if cur.PersistentKeepaliveInterval != keepalive {
				what = append(what, "keepalive")
			}
			if endpoint != nil && (cur.Endpoint == nil || cur.Endpoint.String() != endpoint.String()) {
				what = append(what, "endpoint")
			}
		}
		if len(what) == 0 {
			continue
		}
		notes = append(notes, fmt.Sprintf("wireguard peer %s: %v", p.Name, what))
		cfg.Peers = append(cfg.Peers, wgtypes.PeerConfig{
			PublicKey: key, UpdateOnly: ok, Endpoint: endpoint, ReplaceAllowedIPs: true,
			AllowedIPs: allowed, PersistentKeepaliveInterval: &keepalive,
		})
	}
	for _, p := range dev.Peers {
		if !wanted[p.PublicKey] {
			notes = append(notes, "wireguard remove peer "+p.PublicKey.String())
			cfg.Peers = append(cfg.Peers, wgtypes.PeerConfig{PublicKey: p.PublicKey, Remove: true})
		}
	}
	return cfg, notes, nil
}

// allowedIPs is what the device routes to p: its mesh address, the mesh
// addresses of the peers it relays to, and any prefixes it routes.
func allowedIPs(p helperapi.Peer, relayed []netip.Addr) []net.IPNet {
	out := []net.IPNet{*ipNet(netip.PrefixFrom(p.MeshIP, 32))}
	for _, a := range relayed {
		out = append(out, *ipNet(netip.PrefixFrom(a, 32)))
	}
	for _, a := range p.AllowedIPs {
		if a.Bits() == 32 && a.Addr() == p.MeshIP {
			continue
		}
		out = append(out, *ipNet(a))
	}
	return out
}

func sameIPNets(a, b []net.IPNet) bool {
	str := func(n net.IPNet) string { return n.String() }
	return slices.Equal(sortedStrings(a, str), sortedStrings(b, str))
}

func resolveEndpoint(ctx context.Context, hostport string) (*net.UDPAddr, error) {
	if ap, err := netip.ParseAddrPort(hostport); err == nil {
		return net.UDPAddrFromAddrPort(ap), nil
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip4", host)
	if err != nil || len(ips) == 0 {
		return nil, fmt.Errorf("resolve %q: %w", host, err)
	}
	return net.ResolveUDPAddr("udp", net.JoinHostPort(ips[0].String(), port))
}

// endpointAddrs lists the spec's peer endpoints that are literal addresses,
// for finding the uplink.
func endpointAddrs(spec helperapi.Spec) []netip.Addr {
	var out []netip.Addr
	for _, p := range spec.Peers {
		if ap, err := netip.ParseAddrPort(p.Endpoint); err == nil {
			out = append(out, ap.Addr())
		}
	}
	return out
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	bits, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), bits), true
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// notSelf refuses a spec that lists this machine, known by its public key,
// as one of its own peers.
func notSelf(s helperapi.Spec, publicKey string) error {
	for _, p := range s.Peers {
		if p.PublicKey == publicKey {
			return fmt.Errorf("peer %q has this machine's own public key; a machine is not its own peer", p.Name)
		}
	}
	return nil
}
