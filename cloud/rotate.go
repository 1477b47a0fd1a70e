package cloud

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/inventory"
)

// Rotation is how a key rotation went.
type Rotation struct {
	Outcome
	// Rotated are the machines with a new key.
	Rotated []string
	// NotRotated are the machines asked for that did not answer.
	NotRotated []Behind
}

// RotateKey gives the named machines (every machine when names is empty)
// a new WireGuard key, made on the machine, and updates every peer. The
// change is prepared everywhere first, so a cloud that would refuse it
// (another butter ahead) is not left with an unrecorded key. Traffic
// across a rotated machine stops until its peers have the new key: about
// the time of the update plus a handshake. Peers that are away are
// pending and get the new key when they return.
func (c *Cloud) RotateKey(ctx context.Context, names []string, steps func(Step)) (Rotation, error) {
	prev, names, all, err := c.rotationTargets(ctx, names)
	if err != nil {
		return Rotation{}, err
	}
	// Would the cloud take a change now? Nothing moves yet.
	if _, err := c.prepare(ctx, prev, clone(prev), nil); err != nil {
		return Rotation{}, err
	}
	next := clone(prev)
	var r Rotation
	for _, n := range names {
		m, _ := next.Machine(n)
		h, err := c.reach(ctx, *m)
		if err != nil {
			if !all {
				return Rotation{}, onMachine(ctx, n, "rotate-key", "rotate its key when it is back", err)
			}
			r.NotRotated = append(r.NotRotated, Behind{Machine: n, Away: unreachable(err), Err: err})
			continue
		}
		say(steps, n, "making a new WireGuard key on the machine")
		key, err := h.RotateKey(ctx)
		if err != nil {
			if !all || len(r.Rotated) == 0 {
				return Rotation{}, fmt.Errorf("machine %q: rotate key: %w", n, err)
			}
			r.NotRotated = append(r.NotRotated, Behind{Machine: n, Err: err})
			continue
		}
		m.PublicKey = key
		r.Rotated = append(r.Rotated, n)
	}
	if len(r.Rotated) == 0 {
		return r, fmt.Errorf("no machine answered: no key rotated")
	}
	// Every peer learns the new keys; the rotated machines confirm too.
	r.Outcome, err = c.change(ctx, prev, next, nil, steps)
	if err != nil {
		return r, fmt.Errorf("the new keys of %v are in use, but recording them failed: %w; run `butter machine rotate-key` again", r.Rotated, err)
	}
	slices.Sort(r.Rotated)
	return r, nil
}

// rotationTargets is the inventory and the machines whose keys
// RotateKey(names) rotates (all: every machine, names being empty),
// refusing a machine not in the cloud or without a key. A named machine
// that does not answer fails the rotation at once, before any other
// machine is asked.
func (c *Cloud) rotationTargets(ctx context.Context, names []string) (prev *inventory.Inventory, targets []string, all bool, err error) {
	prev, err = c.Inventory()
	if err != nil {
		return nil, nil, false, err
	}
	all = len(names) == 0
	if all {
		names = machineNames(prev)
	}
	for _, n := range names {
		if m, ok := prev.Machine(n); !ok {
			return nil, nil, false, fmt.Errorf("no machine %q in the cloud; `butter machine list` shows them", n)
		} else if m.PublicKey == "" {
			return nil, nil, false, fmt.Errorf("machine %q has not joined the mesh yet: it has no key to rotate", n)
		}
	}
	if !all {
		for _, n := range names {
			m, _ := prev.Machine(n)
			if _, err := c.reach(ctx, *m); err != nil {
				return nil, nil, false, onMachine(ctx, n, "rotate-key", "rotate its key when it is back", err)
			}
		}
	}
	return prev, names, all, nil
}

// DryRunRotateKey is what RotateKey would do, changing nothing: no key is
// made. Each machine to rotate says how it would make and use its new
// key; then every machine what the next generation, with the new keys,
// changes. A new public key is not known before the machine makes it, so
// the plans are asked with a stand-in for it (32 bytes derived from the
// machine's name, no key of anyone's), and the stand-in is printed as
// '<new public key of NAME>'. A machine away keeps its old key, as in
// RotateKey --all.
func (c *Cloud) DryRunRotateKey(ctx context.Context, names []string) (DryRun, error) {
	prev, names, _, err := c.rotationTargets(withoutInstall(ctx), names)
	if err != nil {
		return DryRun{}, err
	}
	asks := map[string][]dryRunRequest{}
	for _, n := range names {
		asks[n] = []dryRunRequest{{what: "make a new WireGuard key", req: helperapi.DryRunRequest{RotateKey: true}}}
	}
	rotations := c.askDryRuns(ctx, prev, asks)
	next := clone(prev)
	standIns := map[string]string{}
	for _, r := range rotations {
		if r.Err != nil {
			continue
		}
		m, _ := next.Machine(r.Machine)
		sum := sha256.Sum256([]byte("butter dry run: the new public key of machine " + m.Name))
		m.PublicKey = base64.StdEncoding.EncodeToString(sum[:])
		standIns[m.PublicKey] = "'<new public key of " + m.Name + ">'"
	}
	d, err := c.dryRunChange(ctx, prev, next, nil)
	if err != nil {
		return DryRun{}, err
	}
	for i := range d.Machines {
		for j := range d.Machines[i].Steps {
			st := &d.Machines[i].Steps[j]
			for key, shown := range standIns {
				st.Change = strings.ReplaceAll(st.Change, key, shown)
				for k := range st.Commands {
					st.Commands[k] = strings.ReplaceAll(st.Commands[k], key, shown)
				}
			}
		}
	}
	d.Machines = append(rotations, d.Machines...)
	slices.SortStableFunc(d.Machines, func(a, b MachineDryRun) int { return strings.Compare(a.Machine, b.Machine) })
	return d, nil
}
