package cloud

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/inventory"
)

// DryRun is what a change would do, machine by machine, had it been made:
// computed from the same next inventory and specs the change would apply,
// and asked of each machine's helper (helperapi.MethodDryRun), which
// renders its plan as commands. A dry run writes nothing: no inventory,
// no lock, no reservation, nothing on a machine (not even a helper: a
// machine whose helper is not this butter's says so instead).
type DryRun struct {
	// Generation is the generation the change would make (0: none, such
	// as a VM start).
	Generation int
	Machines   []MachineDryRun
}

// MachineDryRun is what the change would do on one machine.
type MachineDryRun struct {
	Machine string
	// What the machine would be asked: "apply generation 4", "tear down",
	// "vm remove web".
	What  string
	Steps []helperapi.DryRunStep
	// Away: the machine did not answer; it would be pending. Err is why
	// (away or not) no plan came.
	Away bool
	Err  error
}

// dryRunRequest is one question of a dry run to one machine.
type dryRunRequest struct {
	what string
	req  helperapi.DryRunRequest
}

// noInstallKey marks a ctx whose connections must not install or start a
// helper, nor record a host key they trust (a dry run).
type noInstallKey struct{}

func withoutInstall(ctx context.Context) context.Context {
	return context.WithValue(ctx, noInstallKey{}, true)
}

func installs(ctx context.Context) bool { return ctx.Value(noInstallKey{}) == nil }

// ErrHelperNotCurrent: a dry run found a machine whose helper is not this
// butter's (or not running), which a real change would install first.
var ErrHelperNotCurrent = errors.New("the machine's helper is not this butter's (a real change installs it first, and a dry run installs nothing); " +
	"upgrade it with `butter sync`, then run the dry run again")

// dryRunChange is change's dry run: next (a changed copy of prev) is
// stamped and validated as change does, and each machine that would be
// asked (every machine of next with a spec; those of prev that next drops
// are asked for their teardown) says what it would do. extra adds
// questions (VM actions) before the spec's, by machine.
func (c *Cloud) dryRunChange(ctx context.Context, prev, next *inventory.Inventory, extra map[string][]dryRunRequest, untouched ...string) (DryRun, error) {
	asks := map[string][]dryRunRequest{}
	for m, rs := range extra {
		asks[m] = append(asks[m], rs...)
	}
	d := DryRun{}
	if next != nil {
		next.Generation = prev.Generation + 1
		if err := next.Validate(); err != nil {
			return DryRun{}, err
		}
		specs, err := specsAt(next)
		if err != nil {
			return DryRun{}, err
		}
		d.Generation = next.Generation
		for name, s := range specs {
			asks[name] = append(asks[name], dryRunRequest{what: fmt.Sprintf("apply generation %d", next.Generation),
				req: helperapi.DryRunRequest{Spec: &s}})
		}
		for _, m := range prev.Machines {
			if _, ok := next.Machine(m.Name); !ok && !slices.Contains(untouched, m.Name) {
				asks[m.Name] = append(asks[m.Name], dryRunRequest{what: "tear down its networks and mesh",
					req: helperapi.DryRunRequest{Remove: true}})
			}
		}
	}
	d.Machines = c.askDryRuns(ctx, prev, asks)
	return d, nil
}

// askDryRuns asks every machine its questions, in parallel; a machine
// that does not answer is away, the others still answer.
func (c *Cloud) askDryRuns(ctx context.Context, inv *inventory.Inventory, asks map[string][]dryRunRequest) []MachineDryRun {
	ctx = withoutInstall(ctx)
	var mu sync.Mutex
	var out []MachineDryRun
	names := slices.Sorted(maps.Keys(asks))
	_ = each(names, func(name string) error {
		var mds []MachineDryRun
		m, ok := inv.Machine(name)
		var h Helper
		var err error
		if ok {
			h, err = c.reach(ctx, *m)
		} else {
			err = fmt.Errorf("machine %q is not in the cloud yet", name)
		}
		for _, a := range asks[name] {
			md := MachineDryRun{Machine: name, What: a.what}
			if err == nil {
				pctx, cancel := context.WithTimeout(ctx, prepareTimeout)
				var r helperapi.DryRun
				r, md.Err = h.DryRun(pctx, a.req)
				cancel()
				md.Steps = r.Steps
			} else {
				md.Err = err
			}
			md.Away = md.Err != nil && unreachable(md.Err)
			mds = append(mds, md)
		}
		mu.Lock()
		out = append(out, mds...)
		mu.Unlock()
		return nil
	})
	slices.SortStableFunc(out, func(a, b MachineDryRun) int { return strings.Compare(a.Machine, b.Machine) })
	return out
}

// vmDryRunRequest asks what a VM action would do.
func vmDryRunRequest(vm, action string) dryRunRequest {
	return dryRunRequest{what: "vm " + action + " " + vm,
		req: helperapi.DryRunRequest{VM: &helperapi.VMActionRequest{Name: vm, Action: action}}}
}
