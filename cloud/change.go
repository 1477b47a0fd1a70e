package cloud

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/inventory"
)

// Outcome is how a recorded change went on the machines.
type Outcome struct {
	// Generation is the cloud's generation the change made.
	Generation int
	// Applied are the machines that took it.
	Applied []string
	// Behind are the machines that did not: they are pending, and catch
	// up on `butter sync` (the dashboard does it when they come back).
	Behind []Behind
}

// Behind is a machine that did not take a change.
type Behind struct {
	Machine string
	// Away: the machine could not be reached (or the connection was
	// lost). Otherwise it answered but failed to apply, and is back on
	// its previous spec.
	Away bool
	Err  error
}

func (b Behind) String() string {
	if b.Away {
		return fmt.Sprintf("machine %s is away (%v): it catches up when it returns (`butter sync`, or the dashboard does it)", b.Machine, b.Err)
	}
	return fmt.Sprintf("machine %s could not apply the change and is back on its previous configuration (%v): fix the cause, then `butter sync`", b.Machine, b.Err)
}

// Note is a short line about the machines behind ("" when none), to
// follow a change's message.
func (o Outcome) Note() string {
	failed, away := o.Split()
	var parts []string
	if len(away) > 0 {
		parts = append(parts, fmt.Sprintf("%s away: catching up when back", strings.Join(away, ", ")))
	}
	if len(failed) > 0 {
		parts = append(parts, fmt.Sprintf("%s failed to apply it: fix, then sync", strings.Join(failed, ", ")))
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, "; ") + ")"
}

// Split names the machines behind: those that answered but failed to
// apply, and those away.
func (o Outcome) Split() (failed, away []string) {
	for _, b := range o.Behind {
		if b.Away {
			away = append(away, b.Machine)
		} else {
			failed = append(failed, b.Machine)
		}
	}
	return failed, away
}

// ConnectTimeout bounds the TCP connect to a machine already in the cloud:
// past it, the machine is away. A machine being added or adopted gets
// AddConnectTimeout.
const (
	ConnectTimeout    = 1500 * time.Millisecond
	AddConnectTimeout = 15 * time.Second
)

// Time bounds of one machine's part of a change, once reached.
const (
	prepareTimeout = 10 * time.Second
	// A machine the change must reach gets longer: the change fails
	// without it, and one just started (machine add) may still be
	// loading kernel modules.
	mustPrepareTimeout = 30 * time.Second
	applyTimeout       = 2 * time.Minute
)

type connectTimeoutKey struct{}

// withConnectTimeout tells the Connector how long a TCP connect may take.
func withConnectTimeout(ctx context.Context, d time.Duration) context.Context {
	return context.WithValue(ctx, connectTimeoutKey{}, d)
}

// connectTimeout is the TCP connect bound ctx carries (ConnectTimeout by
// default).
func connectTimeout(ctx context.Context) time.Duration {
	if d, ok := ctx.Value(connectTimeoutKey{}).(time.Duration); ok {
		return d
	}
	return ConnectTimeout
}

// refused tells whether err is the helper's own answer (it got the request
// and said no), as opposed to the request not getting there.
func refused(err error) bool {
	var re *helperapi.RemoteError
	return errors.As(err, &re)
}

// change makes next (a changed copy of prev) the cloud's new generation:
//
//  1. next is validated: bad input moves nothing and records nothing;
//  2. every machine's spec is prepared on every machine that answers: a
//     refusal (bad input for that machine, or a machine ahead of this
//     inventory) moves nothing and records nothing;
//  3. the machines in must apply first: if one of them fails, nothing
//     more moves and nothing is recorded (each machine restores its own
//     previous spec; there is no rollback across machines);
//  4. the others apply in parallel; one that cannot be reached or fails
//     is behind (pending) and the change still holds;
//  5. next is recorded, each machine that applied confirming the
//     generation, unless another butter changed the inventory meanwhile.
//
// It holds the inventory's change lock throughout (inventory.LockChanges),
// and moves nothing when the inventory is no longer prev by then.
func (c *Cloud) change(ctx context.Context, prev, next *inventory.Inventory, must []string, steps func(Step)) (Outcome, error) {
	unlock, err := inventory.LockChanges(ctx, c.path)
	if err != nil {
		return Outcome{}, err
	}
	defer unlock()
	if cur, err := c.Inventory(); err != nil {
		return Outcome{}, err
	} else if !reflect.DeepEqual(cur, prev) {
		return Outcome{}, fmt.Errorf("nothing changed: the inventory changed while this change was being made "+
			"(another butter, or a VM made or removed alongside, now at generation %d): make the change again", cur.Generation)
	}
	return c.changeLocked(ctx, prev, next, must, steps)
}

// changeLocked is change with the change lock held and prev checked.
func (c *Cloud) changeLocked(ctx context.Context, prev, next *inventory.Inventory, must []string, steps func(Step)) (Outcome, error) {
	p, err := c.prepare(ctx, prev, next, must)
	if err != nil {
		return Outcome{}, err
	}
	out := p.apply(ctx, c, must, steps)
	if f := out.failedMust; f != nil {
		return Outcome{}, fmt.Errorf("nothing recorded: %w", f)
	}
	err = c.record(ctx, prev, next, out.Applied)
	return out.Outcome, err
}

// prepared is a change every answering machine said it would take.
type prepared struct {
	next   *inventory.Inventory
	specs  map[string]helperapi.Spec
	ready  []string // answered and took the spec in prepare
	behind []Behind // away
}

// prepare stamps next with the generation after prev's, validates it and
// asks every machine that answers whether it takes its spec.
func (c *Cloud) prepare(ctx context.Context, prev, next *inventory.Inventory, must []string) (*prepared, error) {
	next.Generation = prev.Generation + 1
	if err := next.Validate(); err != nil {
		return nil, err
	}
	specs, err := specsAt(next)
	if err != nil {
		return nil, err
	}
	p := &prepared{next: next, specs: specs}
	var mu sync.Mutex
	refused := each(machineNames(next), func(name string) error {
		spec, ok := specs[name]
		if !ok {
			return nil // not joined yet
		}
		h, err := c.reach(ctx, *mustMachine(next, name))
		if err == nil {
			bound := prepareTimeout
			if slices.Contains(must, name) {
				bound = mustPrepareTimeout
			}
			pctx, cancel := context.WithTimeout(ctx, bound)
			err = h.Prepare(pctx, spec)
			cancel()
		}
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err == nil:
			p.ready = append(p.ready, name)
		case !refused(err) && !slices.Contains(must, name):
			// Not reached (away), or reached but not usable (a changed
			// host key, a failed login): behind either way, and only
			// the first is called away.
			p.behind = append(p.behind, Behind{Machine: name, Away: unreachable(err), Err: err})
		default:
			return err
		}
		return nil
	})
	if refused != nil {
		return nil, fmt.Errorf("nothing changed: %w", refused)
	}
	return p, nil
}

// applied is how apply went; failedMust is set when a machine that must
// take the change did not (then the others were not asked).
type applied struct {
	Outcome
	failedMust error
}

// apply applies the prepared specs: the machines in must first, then the
// others in parallel.
func (p *prepared) apply(ctx context.Context, c *Cloud, must []string, steps func(Step)) applied {
	out := applied{Outcome: Outcome{Generation: p.next.Generation, Behind: slices.Clone(p.behind)}}
	var mu sync.Mutex
	one := func(name string) error {
		say(steps, name, "applying the network configuration")
		actx, cancel := context.WithTimeout(ctx, applyTimeout)
		defer cancel()
		h, err := c.reach(actx, *mustMachine(p.next, name))
		if err == nil {
			_, err = h.Apply(actx, p.specs[name])
		}
		if err != nil {
			return err
		}
		say(steps, name, "network configuration applied")
		mu.Lock()
		out.Applied = append(out.Applied, name)
		mu.Unlock()
		return nil
	}
	first := slices.DeleteFunc(slices.Clone(must), func(n string) bool { return !slices.Contains(p.ready, n) })
	if err := each(first, one); err != nil {
		out.failedMust = err
		return out
	}
	rest := slices.DeleteFunc(slices.Clone(p.ready), func(n string) bool { return slices.Contains(must, n) })
	_ = each(rest, func(name string) error {
		if err := one(name); err != nil {
			mu.Lock()
			out.Behind = append(out.Behind, Behind{Machine: name, Away: unreachable(err), Err: err})
			mu.Unlock()
		}
		return nil
	})
	slices.Sort(out.Applied)
	slices.SortFunc(out.Behind, func(a, b Behind) int { return strings.Compare(a.Machine, b.Machine) })
	return out
}

// reachTimeout bounds getting a machine's helper: connecting, and
// installing or starting the helper if need be. An away machine is known
// sooner, by ConnectTimeout.
const reachTimeout = 30 * time.Second

// reach is a machine's helper, connecting if need be.
func (c *Cloud) reach(ctx context.Context, m inventory.Machine) (Helper, error) {
	rctx, cancel := context.WithTimeout(ctx, reachTimeout)
	defer cancel()
	return c.helper(rctx, m)
}

// publish writes a change to the inventory that has no generation of its
// own (a VM made or removed: write), then makes the inventory as it now is
// the cloud's next generation on the machines, so every helper's copy of
// the desired state has its VMs. Both happen under the change lock, so a
// change or another VM never comes between them. Machines away are
// pending as after any change. write's error is returned; publishing
// cannot undo it, so its failure is told as a step of machine.
func (c *Cloud) publish(ctx context.Context, machine string, steps func(Step), write func(context.Context) error) error {
	unlock, err := inventory.LockChanges(ctx, c.path)
	if err != nil {
		return err
	}
	defer unlock()
	if err := write(ctx); err != nil {
		return err
	}
	prev, err := c.Inventory()
	if err == nil {
		_, err = c.changeLocked(ctx, prev, clone(prev), nil, nil)
	}
	if err != nil {
		c.log.Warn("the machines' copies of the cloud were not updated", "err", err)
		if steps != nil {
			steps(Step{Machine: machine, Text: "the machines' copies of the cloud were not updated (the next change carries it): " + err.Error()})
		}
	}
	return nil
}

// record writes next as the inventory, the machines in applied confirming
// its generation, if the file is still prev: not only at prev's generation
// (another change), but with nothing else written meanwhile either (a VM
// made alongside is recorded without a generation of its own, and must
// not be written over).
func (c *Cloud) record(ctx context.Context, prev, next *inventory.Inventory, applied []string) error {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	return inventory.Update(rctx, c.path, func(inv *inventory.Inventory) error {
		if inv.Generation != prev.Generation {
			return fmt.Errorf("the inventory changed meanwhile (another butter made generation %d; this change was made from %d): "+
				"the machines that answered have this change; run `butter sync` to put them on the inventory's state, then make the change again",
				inv.Generation, prev.Generation)
		}
		if !reflect.DeepEqual(inv, prev) {
			return fmt.Errorf("the inventory changed meanwhile (at generation %d, by a VM made or removed alongside): "+
				"the machines that answered have this change; run `butter sync` to put them on the inventory's state, then make the change again",
				inv.Generation)
		}
		n := clone(next)
		for i := range n.Machines {
			if slices.Contains(applied, n.Machines[i].Name) {
				n.Machines[i].Confirmed = n.Generation
			}
		}
		*inv = *n
		return nil
	})
}

func mustMachine(inv *inventory.Inventory, name string) *inventory.Machine {
	m, ok := inv.Machine(name)
	if !ok {
		panic("cloud: machine " + name + " vanished from a change")
	}
	return m
}
