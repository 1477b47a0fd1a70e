package plumbing

import (
	"fmt"

	"github.com/butter-cloud/butter/helperapi"
)

// admit decides whether this machine takes spec, before anything changes:
// bad input (spec.Validate fails, or a peer has self, this machine's own
// public key, "" while it has none) is refused with helperapi.CodeInvalid,
// a spec behind held (the spec the machine keeps; zero when none) with
// helperapi.CodeStale (helperapi.CheckGeneration).
func admit(spec helperapi.Spec, self string, held helperapi.Spec) error {
	if err := spec.Validate(); err != nil {
		return &helperapi.RemoteError{Code: helperapi.CodeInvalid, Message: err.Error()}
	}
	if self != "" {
		if err := notSelf(spec, self); err != nil {
			return &helperapi.RemoteError{Code: helperapi.CodeInvalid, Message: err.Error()}
		}
	}
	return helperapi.CheckGeneration(spec, held.Generation, held.Desired.Digest())
}

// buildable refuses, as bad input, a network this machine cannot build:
// gretap asked for where the kernel has none.
func buildable(spec helperapi.Spec, gretap bool) error {
	for _, n := range spec.Networks {
		if n.Tunnel == helperapi.TunnelGretap && !gretap {
			return &helperapi.RemoteError{Code: helperapi.CodeInvalid, Message: fmt.Sprintf(
				"network %s: tunnel gretap: this machine's kernel has no gretap (module ip_gre); use tunnel vxlan or auto", n.Name)}
		}
	}
	return nil
}
