package helperapi

import (
	"context"
	"errors"
	"fmt"

	"github.com/sourcegraph/jsonrpc2"
)

// MethodDryRun computes, changing nothing on the machine, what Apply (or
// Remove, or a VM action) would do there, as the shell commands that do
// the same by hand. Its params are a DryRunRequest, its result a DryRun.
// Helpers older than it answer "method not found" (ErrNoDryRun).
const MethodDryRun = "helper.dry_run"

// DryRunRequest is what the dry run is asked about: one of Spec, Remove,
// VM, CreateVM and RotateKey.
type DryRunRequest struct {
	// Spec is a spec Apply would be given; it is checked as Prepare
	// checks it.
	Spec *Spec `json:"spec,omitempty"`
	// Remove asks what Remove (the machine's teardown) would do.
	Remove bool `json:"remove,omitempty"`
	// VM asks what a VM action would do ("create" for a VM being made).
	VM *VMActionRequest `json:"vm,omitempty"`
	// CreateVM asks what MethodVMCreate would do with this request: the
	// domain it would define, in full. Its image is not fetched: one the
	// machine does not have yet is said to be fetched first.
	CreateVM *VMRequest `json:"create_vm,omitempty"`
	// RotateKey asks what MethodRotateKey would do: the new key made and
	// put to use (the peers' side is each peer's spec, asked as Spec).
	RotateKey bool `json:"rotate_key,omitempty"`
}

// DryRun is what a change would do on one machine, in order.
type DryRun struct {
	Steps []DryRunStep `json:"steps"`
}

// DryRunStep is one change, in the helper's words (Change), and the
// commands that make it by hand. A command never carries a secret: the
// WireGuard private key is named by its file on the machine.
type DryRunStep struct {
	Change   string   `json:"change"`
	Commands []string `json:"commands"`
}

// ErrNoDryRun: the helper on the machine predates MethodDryRun.
var ErrNoDryRun = errors.New("the helper on this machine is older than this butter and cannot show a dry run; " +
	"upgrade it with `butter sync` (a real change installs the new helper too), then run the dry run again")

// DryRun asks what req would do on the machine, changing nothing.
func (c *Client) DryRun(ctx context.Context, req DryRunRequest) (DryRun, error) {
	var d DryRun
	err := c.call(ctx, MethodDryRun, req, &d)
	if hasCode(err, jsonrpc2.CodeMethodNotFound) {
		return DryRun{}, fmt.Errorf("%w (%v)", ErrNoDryRun, err)
	}
	return d, err
}
