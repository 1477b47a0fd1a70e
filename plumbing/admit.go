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

// buildable refuses, with helperapi.CodeInvalid, a spec this machine could
// not build whatever it did: a network that asks for gretap where the
// kernel makes none. Refused in prepare, such a change moves nothing and
// records nothing, instead of failing part-way on every member.
func buildable(spec helperapi.Spec, m machine) error {
	if m.Gretap {
		return nil
	}
	for _, n := range spec.Networks {
		if n.Tunnel == helperapi.TunnelGretap {
			return &helperapi.RemoteError{Code: helperapi.CodeInvalid, Message: fmt.Sprintf(
				"network %q asks for tunnel gretap, which this machine's kernel cannot make; use --tunnel vxlan or auto", n.Name)}
		}
	}
	return nil
}
