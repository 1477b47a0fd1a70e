package plumbing

import (
	"fmt"
	"os"
	"strings"
)

// forwardingPath is the WireGuard device's IPv4 forwarding switch. It
// governs packets that arrive on the device only, so a relay forwards mesh
// traffic and nothing else.
var forwardingPath = "/proc/sys/net/ipv4/conf/" + WireGuardName + "/forwarding"

func forwarding() (bool, error) {
	b, err := os.ReadFile(forwardingPath)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", forwardingPath, err)
	}
	return strings.TrimSpace(string(b)) == "1", nil
}

// setForwarding turns forwarding on the WireGuard device on or off and
// tells whether it changed anything.
func setForwarding(on bool) (bool, error) {
	cur, err := forwarding()
	if err != nil {
		return false, err
	}
	if cur == on {
		return false, nil
	}
	v := "0\n"
	if on {
		v = "1\n"
	}
	if err := os.WriteFile(forwardingPath, []byte(v), 0o644); err != nil {
		return false, fmt.Errorf("set forwarding on %s: %w", WireGuardName, err)
	}
	return true, nil
}
