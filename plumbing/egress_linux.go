package plumbing

import (
	"errors"
	"fmt"

	"github.com/butter-cloud/butter/helperapi"
)

// ipv4Forwarding is a link's IPv4 forwarding switch.
var ipv4Forwarding = linkSetting{"ipv4", "forwarding"}

// egressForwarding lists the forwarding switches egress needs, link →
// on: each bridge's follows its network's egress; the uplink's is on while
// any network has egress, for the replies (it is left as it is
// otherwise: it may be on for reasons of the machine's own).
func egressForwarding(spec helperapi.Spec, p plan) map[string]bool {
	want := egressBridges(spec)
	for _, on := range want {
		if on && p.Uplink != "" {
			want[p.Uplink] = true
		}
	}
	return want
}

// forwardingDrift lists the links whose forwarding differs from want, as
// (link, value now). A link that does not exist is skipped.
func forwardingDrift(want map[string]bool) ([][2]string, error) {
	var out [][2]string
	for l, on := range want {
		v, ok, err := ipv4Forwarding.read(l)
		if err != nil {
			return out, err
		}
		if ok && (v == "1") != on {
			out = append(out, [2]string{l, v})
		}
	}
	return out, nil
}

// setEgressForwarding sets the switches of egressForwarding and says what
// it changed.
func setEgressForwarding(want map[string]bool) ([]string, error) {
	drift, err := forwardingDrift(want)
	if err != nil {
		return nil, err
	}
	var changes []string
	var errs []error
	for _, d := range drift {
		on := want[d[0]]
		if err := ipv4Forwarding.write(d[0], boolValue(on)); err != nil {
			errs = append(errs, err)
			continue
		}
		changes = append(changes, fmt.Sprintf("set %s forwarding %s", d[0], onOff(on)))
	}
	return changes, errors.Join(errs...)
}
