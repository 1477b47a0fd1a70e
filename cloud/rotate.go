package cloud

import (
	"context"
	"fmt"
	"slices"
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
	prev, err := c.Inventory()
	if err != nil {
		return Rotation{}, err
	}
	all := len(names) == 0
	if all {
		names = machineNames(prev)
	}
	for _, n := range names {
		if m, ok := prev.Machine(n); !ok {
			return Rotation{}, fmt.Errorf("no machine %q in the cloud; `butter machine list` shows them", n)
		} else if m.PublicKey == "" {
			return Rotation{}, fmt.Errorf("machine %q has not joined the mesh yet: it has no key to rotate", n)
		}
	}
	// A named machine that does not answer fails the rotation at once,
	// before any other machine is asked.
	if !all {
		for _, n := range names {
			m, _ := prev.Machine(n)
			if _, err := c.reach(ctx, *m); err != nil {
				return Rotation{}, onMachine(ctx, n, "rotate-key", "rotate its key when it is back", err)
			}
		}
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
