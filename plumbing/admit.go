package plumbing

import "github.com/butter-cloud/butter/helperapi"

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
