package plumbing

import "errors"

// forwarding tells whether the WireGuard device forwards IPv4. The switch
// governs packets that arrive on the device only, so a relay forwards
// mesh traffic and nothing else.
func forwarding() (bool, error) {
	v, ok, err := ipv4Forwarding.read(WireGuardName)
	if err == nil && !ok {
		err = errors.New("read ipv4 forwarding of " + WireGuardName + ": no such link")
	}
	return v == "1", err
}

// setForwarding turns forwarding on the WireGuard device on or off and
// tells whether it changed anything.
func setForwarding(on bool) (bool, error) {
	cur, err := forwarding()
	if err != nil || cur == on {
		return false, err
	}
	return true, ipv4Forwarding.write(WireGuardName, boolValue(on))
}
