//go:build linux

// Package realkernel is the real-kernel tier of plumbing's tests: Debian's
// own kernel, which has WireGuard and gretap where this host's may not,
// booted under qemu as two and three machines, each running this package's
// test binary as /init, so that plumbing's own code builds the networks.
//
// The host side (realkernel_test.go) builds the guest image, starts the
// guests and plays the operator: it collects each guest's public key from
// the serial console, writes back the spec for that guest, lifts barriers
// and gathers PASS and FAIL lines. The guest side (guest_test.go) runs when
// the binary is PID 1. This file holds what both sides agree on.
//
// Run it as root on a machine with qemu-system-x86 and linux-image-amd64:
//
//	CGO_ENABLED=0 go test -v ./plumbing/realkernel/
//
// CGO_ENABLED=0 makes the test binary static, so it serves as /init as it
// is; otherwise the test builds a static copy of itself first. Without
// root, qemu or the kernel the tests skip, and fail instead when CI=true.
// The extracted kernel and the initramfs are cached in lab.DefaultCacheDir.
package realkernel

import (
	"fmt"
	"net/netip"
	"strings"
)

// Lines a guest prints on its serial console. Anything else is logged.
const (
	msgPubKey = "PUBKEY" // PUBKEY <base64 public key>
	msgReady  = "READY"  // READY <barrier>: waits for GO <barrier>
	msgPass   = "PASS"   // PASS <check> <detail>
	msgFail   = "FAIL"   // FAIL <check> <detail>
	msgInfo   = "INFO"   // INFO <anything worth a log line>
	msgDone   = "DONE"   // the guest finished and powers off
)

// Lines the host writes to a guest's serial input.
const (
	msgSpec = "SPEC" // SPEC <helperapi.Spec as JSON, one line>
	msgGo   = "GO"   // GO <barrier>
)

// Kernel command line parameters of a guest.
const (
	paramScenario = "butter.scenario"
	paramIndex    = "butter.index" // 0-based machine number
	paramCount    = "butter.count" // machines in the scenario
	paramTimeout  = "butter.timeout"
)

// Scenarios.
const (
	scenarioBoot  = "boot"  // one machine: modules load, wireguard and gretap links can be made
	scenarioTwo   = "two"   // two machines, two networks: reach, isolation, MTU, facts
	scenarioThree = "three" // three machines, one network: a broadcast arrives once; a loop without isolation
)

// The underlay: the guests' eth0 on qemu's socket network.
func underlayAddr(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 168, 77, byte(i + 1)}), 24)
}

func machineMAC(i int) string { return fmt.Sprintf("52:54:00:b7:00:%02x", i+1) }

func machineName(i int) string { return fmt.Sprintf("m%d", i+1) }

func meshAddr(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 99, 0, byte(i + 1)}), 16)
}

const listenPort = 51820

// machineIndex is the inverse of meshAddr.
func machineIndex(mesh netip.Addr) int { return int(mesh.As4()[3]) - 1 }

// probeAddr is the address of machine i's probe on network id. All probes
// of all networks share one /24 on purpose: a probe could then reach a
// probe of another network if the networks leaked into each other at layer
// 2, so isolation is tested by the bridges and tunnels, not by routing.
func probeAddr(id, i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 50, 0, byte(10*id + i + 1)}), 24)
}

// What a network must be (tunnel kind, MTU, tunnel ports) is not written
// down here: each guest computes it from its own facts with
// testbed.ExpectedChain, as the namespace tier and e2e do.

// bigProbeMTU is what the sending probe's links are raised to for the MTU
// edge, above any network MTU, so that the chain, not the probe, is what
// stops a packet one byte over the network MTU.
const bigProbeMTU = 1500

// loopEtherType marks the broadcast frames of the loop check (IEEE
// 802 local experimental EtherType).
const loopEtherType = 0x88b5

// field returns the words of a protocol line after its keyword.
func field(line, keyword string) (string, bool) {
	rest, ok := strings.CutPrefix(line, keyword+" ")
	if !ok && line == keyword {
		return "", true
	}
	return strings.TrimSpace(rest), ok
}
