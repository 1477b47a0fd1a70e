package plumbing

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"

	"github.com/butter-cloud/butter/helperapi"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Every link the helper makes starts with Prefix; it touches no other.
const Prefix = "bt"

// WireGuardName is the machine's one WireGuard device.
const WireGuardName = "btwg0"

const maxIfName = 15 // IFNAMSIZ - 1

// BridgeName is the bridge of network id: VM taps and tunnels are its ports.
func BridgeName(id int) string { return fmt.Sprintf("btbr%d", id) }

// VXLANName is network id's VXLAN device (one per network).
func VXLANName(id int) string { return fmt.Sprintf("btvx%d", id) }

// GretapName is network id's gretap towards the peer at meshIP. The name
// carries the last two bytes of the peer's mesh address, unique in a mesh
// of /16 or smaller.
func GretapName(id int, meshIP netip.Addr) string {
	return fmt.Sprintf("btgt%d-%d", id, helperapi.HostNumber(meshIP))
}

// ours tells whether a link name is one the helper made. A VM's tap
// (helperapi.VMPort) is named by the helper but made and removed by
// libvirt with its VM: never the helper's to delete.
func ours(name string) bool {
	return strings.HasPrefix(name, Prefix) && !strings.HasPrefix(name, helperapi.VMPortPrefix)
}

func parseKey(s string) (wgtypes.Key, error) {
	if s == "" {
		return wgtypes.Key{}, fmt.Errorf("missing; give the peer's WireGuard public key (base64)")
	}
	k, err := wgtypes.ParseKey(s)
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("not a WireGuard key (want 44 characters of base64): %w", err)
	}
	return k, nil
}

func splitHostPort(s string) (string, string, error) { return net.SplitHostPort(s) }

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }
