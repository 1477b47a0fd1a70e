package testbed

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/butter-cloud/butter/helperapi"
)

// The product's chain rule, written out again on the test side on purpose:
// tests compute what a machine must build from that machine's facts with
// these numbers, then compare with what the helper reports and what the
// kernel shows. The numbers are the README's "MTU arithmetic", not
// plumbing's constants, so that a change there has to be made here too.
const (
	// WireGuardOverhead is IPv6 40 + UDP 8 + WireGuard 32.
	WireGuardOverhead = 80
	// GretapOverhead is outer IPv4 20 + GRE 4 + key 4 + inner Ethernet 14.
	GretapOverhead = 42
	// VXLANOverhead is outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14.
	VXLANOverhead = 50
)

// ChainFacts are the facts of one machine that decide its chains.
type ChainFacts struct {
	// Gretap: the machine's kernel makes gretap links.
	Gretap bool
	// WireGuardMTU is the MTU btwg0 must have.
	WireGuardMTU int
}

// FactsForChain derives ChainFacts from a machine's facts: its kernel's
// gretap capability, and the WireGuard MTU the mesh asks for (meshMTU, the
// spec's mesh.mtu) or else the uplink's MTU less WireGuardOverhead. It
// does not look at what the helper built (f.WireGuard, f.Networks).
func FactsForChain(f helperapi.Facts, meshMTU int) (ChainFacts, error) {
	cf := ChainFacts{Gretap: f.Gretap, WireGuardMTU: meshMTU}
	if cf.WireGuardMTU == 0 {
		if f.UplinkMTU <= 0 {
			return cf, fmt.Errorf("facts name no uplink MTU (uplink %q)", f.Uplink)
		}
		cf.WireGuardMTU = f.UplinkMTU - WireGuardOverhead
	}
	return cf, nil
}

// ExpectedChain is what a network asking for tunnelAsked (auto, gretap,
// vxlan; "" is auto) and carried to peers other machines must be on a
// machine with facts f: its tunnel kind (auto is gretap where the kernel
// has gretap, else VXLAN), its MTU (the WireGuard MTU less 42 for gretap
// with a key, less 50 for VXLAN), and how many tunnel ports its bridge has
// (one gretap per peer, or one VXLAN for all of them; none without peers
// for gretap). Ports for VMs or probes come on top.
func ExpectedChain(f ChainFacts, tunnelAsked string, peers int) (kind string, mtu int, tunnelPorts int) {
	kind = tunnelAsked
	if kind == "" || kind == helperapi.TunnelAuto {
		kind = helperapi.TunnelVXLAN
		if f.Gretap {
			kind = helperapi.TunnelGretap
		}
	}
	switch kind {
	case helperapi.TunnelGretap:
		return kind, f.WireGuardMTU - GretapOverhead, peers
	default:
		return kind, f.WireGuardMTU - VXLANOverhead, 1
	}
}

// Runner runs a program somewhere (a lab machine, a probe) and returns its
// standard output; the error carries its standard error.
type Runner func(ctx context.Context, name string, args ...string) ([]byte, error)

// gretapProbeName is the link KernelGretap makes: not bt…, so no helper
// ever takes it for its own.
const gretapProbeName = "tbgtprobe"

// KernelGretap asks the kernel where run runs, independently of the
// helper, whether it makes gretap links: it adds one (ipPath, e.g.
// /usr/sbin/ip) and deletes it again.
func KernelGretap(ctx context.Context, run Runner, ipPath string) (bool, error) {
	_, err := run(ctx, ipPath, "link", "add", gretapProbeName, "type", "gretap", "remote", "192.0.2.1", "local", "192.0.2.2")
	if err == nil {
		if _, err := run(ctx, ipPath, "link", "del", gretapProbeName); err != nil {
			return true, fmt.Errorf("delete the gretap probe: %w", err)
		}
		return true, nil
	}
	msg := err.Error()
	if strings.Contains(msg, "Unknown device type") || strings.Contains(msg, "not supported") {
		return false, nil
	}
	return false, fmt.Errorf("probe for gretap: %w", err)
}

// BridgePort is one link on a bridge, as `ip -d -j link show master`
// shows it.
type BridgePort struct {
	Name     string `json:"ifname"`
	MTU      int    `json:"mtu"`
	LinkInfo struct {
		Kind string `json:"info_kind"`
	} `json:"linkinfo"`
}

// BridgePorts lists the links on bridge where run runs (ipPath, e.g.
// /usr/sbin/ip), and how many of them are of kind at mtu.
func BridgePorts(ctx context.Context, run Runner, ipPath, bridge, kind string, mtu int) (ports []BridgePort, matching int, err error) {
	out, err := run(ctx, ipPath, "-d", "-j", "link", "show", "master", bridge)
	if err != nil {
		return nil, 0, err
	}
	if err := json.Unmarshal(out, &ports); err != nil {
		return nil, 0, fmt.Errorf("ip -d -j link show master %s: %w: %s", bridge, err, out)
	}
	for _, p := range ports {
		if p.LinkInfo.Kind == kind && p.MTU == mtu {
			matching++
		}
	}
	return ports, matching, nil
}
