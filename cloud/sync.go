package cloud

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/inventory"
)

// Sync catches machines up with the inventory: each machine that is
// pending (or each of only, when given) and answers is given its spec at
// the cloud's generation, and confirms it. A returning machine ends
// exactly where a fresh apply puts it, whatever it missed. Machines still
// away stay pending (Outcome.Behind).
//
// It holds the change lock (inventory.LockChanges): a change waits for it,
// and it for a change.
func (c *Cloud) Sync(ctx context.Context, only []string, steps func(Step)) (Outcome, error) {
	unlock, err := inventory.LockChanges(ctx, c.path)
	if err != nil {
		return Outcome{}, err
	}
	defer unlock()
	inv, err := c.Inventory()
	if err != nil {
		return Outcome{}, err
	}
	targets, err := syncTargets(inv, only)
	if err != nil {
		return Outcome{}, err
	}
	out := Outcome{Generation: inv.Generation}
	if len(targets) == 0 {
		return out, nil
	}
	specs, err := specsAt(inv)
	if err != nil {
		return Outcome{}, err
	}
	var mu sync.Mutex
	_ = each(targets, func(name string) error {
		spec, ok := specs[name]
		if !ok {
			return nil
		}
		say(steps, name, fmt.Sprintf("catching up to generation %d", inv.Generation))
		h, err := c.reach(ctx, *mustMachine(inv, name))
		if err == nil {
			pctx, cancel := context.WithTimeout(ctx, prepareTimeout)
			err = h.Prepare(pctx, spec)
			cancel()
		}
		if err == nil {
			actx, cancel := context.WithTimeout(ctx, applyTimeout)
			_, err = h.Apply(actx, spec)
			cancel()
		}
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			out.Behind = append(out.Behind, Behind{Machine: name, Away: unreachable(err), Err: err})
			return nil
		}
		say(steps, name, "up to date")
		out.Applied = append(out.Applied, name)
		return nil
	})
	slices.Sort(out.Applied)
	slices.SortFunc(out.Behind, func(a, b Behind) int { return strings.Compare(a.Machine, b.Machine) })
	if len(out.Applied) == 0 {
		return out, nil
	}
	err = inventory.Update(ctx, c.path, func(cur *inventory.Inventory) error {
		if cur.Generation != inv.Generation {
			return fmt.Errorf("the inventory changed meanwhile (generation %d, synced %d); run `butter sync` again", cur.Generation, inv.Generation)
		}
		for i := range cur.Machines {
			if slices.Contains(out.Applied, cur.Machines[i].Name) {
				cur.Machines[i].Confirmed = inv.Generation
			}
		}
		return nil
	})
	return out, err
}

// syncTargets are the machines Sync catches up: those pending, or only.
func syncTargets(inv *inventory.Inventory, only []string) ([]string, error) {
	for _, n := range only {
		if _, ok := inv.Machine(n); !ok {
			return nil, fmt.Errorf("no machine %q in the cloud; `butter machine list` shows them", n)
		}
	}
	var targets []string
	for _, m := range inv.Machines {
		if (only == nil && inv.Pending(m)) || slices.Contains(only, m.Name) {
			targets = append(targets, m.Name)
		}
	}
	return targets, nil
}

// DryRunSync is what Sync would do, changing nothing: each machine it
// would catch up says what its spec at the cloud's generation changes.
func (c *Cloud) DryRunSync(ctx context.Context, only []string) (DryRun, error) {
	inv, err := c.Inventory()
	if err != nil {
		return DryRun{}, err
	}
	targets, err := syncTargets(inv, only)
	if err != nil || len(targets) == 0 {
		return DryRun{Generation: inv.Generation}, err
	}
	specs, err := specsAt(inv)
	if err != nil {
		return DryRun{}, err
	}
	asks := map[string][]dryRunRequest{}
	for _, name := range targets {
		if s, ok := specs[name]; ok {
			asks[name] = []dryRunRequest{{what: fmt.Sprintf("catch up to generation %d", inv.Generation),
				req: helperapi.DryRunRequest{Spec: &s}}}
		}
	}
	return DryRun{Generation: inv.Generation, Machines: c.askDryRuns(ctx, inv, asks)}, nil
}
