package cloud

import (
	"context"
	"fmt"
	"slices"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/inventory"
)

// AdoptFrom is the machine `butter adopt` starts from, and what is the
// operator's own: the identity file for every machine (empty: ssh-agent,
// ~/.ssh/config and the default keys).
type AdoptFrom struct {
	Address  string
	Port     int
	User     string
	Identity string
}

// Adopted is what Adopt found.
type Adopted struct {
	Inventory *inventory.Inventory
	// From is the machine whose copy was the newest.
	From string
	// Unreached are the cloud's machines that did not answer: their copy
	// was not read, and they are pending until they confirm.
	Unreached []Behind
}

// Adopt rebuilds the inventory from the cloud itself: every helper keeps
// a copy of the cloud's desired state. It reads the copy of the machine
// at from, then the copies of every machine that copy names (checking
// host keys with trust, as `machine add` does), and writes the newest as
// the inventory. Each machine that answered confirms the generation it
// holds; the others are pending. The inventory it replaces, if any, is
// kept in the .bak; identity files of machines it knew are kept unless
// from.Identity is given.
func (c *Cloud) Adopt(ctx context.Context, from AdoptFrom, trust Trust, steps func(Step)) (Adopted, error) {
	out, err := c.readCopies(ctx, from, trust, steps)
	if err != nil {
		return Adopted{}, err
	}
	unlock, err := inventory.LockChanges(ctx, c.path)
	if err != nil {
		return Adopted{}, err
	}
	defer unlock()
	err = inventory.Update(ctx, c.path, func(cur *inventory.Inventory) error {
		*cur = *keepIdentities(out.Inventory, cur, from.Identity)
		return nil
	})
	if err != nil {
		return Adopted{}, err
	}
	return out, nil
}

// DryRunAdopt is what Adopt would write, writing nothing: the machines'
// copies are read as Adopt reads them, but no helper is installed or
// started, no host key trusted is recorded, and the inventory is left as
// it is. The Adopted's Inventory is what the file would hold.
func (c *Cloud) DryRunAdopt(ctx context.Context, from AdoptFrom, trust Trust, steps func(Step)) (Adopted, error) {
	cur, err := c.Inventory()
	if err != nil {
		return Adopted{}, fmt.Errorf("adopt would not replace the inventory it cannot read: %w", err)
	}
	out, err := c.readCopies(withoutInstall(ctx), from, trust, steps)
	if err != nil {
		return Adopted{}, err
	}
	out.Inventory = keepIdentities(out.Inventory, cur, from.Identity)
	return out, nil
}

// keepIdentities is adopted with the identity files cur gives its
// machines, unless identity (adopt's --identity) is given for all.
func keepIdentities(adopted, cur *inventory.Inventory, identity string) *inventory.Inventory {
	n := clone(adopted)
	for i := range n.Machines {
		if identity != "" {
			continue
		}
		if old, ok := cur.Machine(n.Machines[i].Name); ok {
			n.Machines[i].Identity = old.Identity
		}
	}
	return n
}

// readCopies reads the copy of the cloud's desired state of the machine
// at from, then of every machine it names, and makes the newest an
// inventory, each machine that answered confirming the generation it
// holds.
func (c *Cloud) readCopies(ctx context.Context, from AdoptFrom, trust Trust, steps func(Step)) (Adopted, error) {
	first := inventory.Machine{Name: "adopt", Address: from.Address, Port: from.Port, User: from.User, Identity: from.Identity}
	if first.Port == 0 {
		first.Port = inventory.DefaultSSHPort
	}
	probe := inventory.New()
	probe.Machines = []inventory.Machine{first}
	if err := probe.Validate(); err != nil {
		return Adopted{}, err
	}
	actx := withConnectTimeout(ctx, AddConnectTimeout)
	say(steps, from.Address, "connecting")
	l, err := c.conn.Connect(actx, first, trust, steps)
	if err != nil {
		return Adopted{}, fmt.Errorf("adopt from %s: %w", from.Address, err)
	}
	h, err := l.Helper(ctx)
	var d helperapi.Desired
	if err == nil {
		d, err = h.Desired(ctx)
	}
	l.Close()
	if err != nil {
		return Adopted{}, fmt.Errorf("adopt from %s: %w", from.Address, err)
	}
	if d.Generation == 0 || len(d.Machines) == 0 {
		return Adopted{}, fmt.Errorf("adopt from %s: the machine holds no cloud: it is in no butter cloud (or was removed from one); try another of the cloud's machines", from.Address)
	}
	say(steps, from.Address, fmt.Sprintf("holds generation %d of a cloud of %d machines", d.Generation, len(d.Machines)))

	// Read every machine's copy; follow a newer copy's machines too.
	newest, fromName := d, from.Address
	held := map[string]int{}
	unreached := map[string]error{}
	asked := map[string]bool{}
	for round := 0; round < 3; round++ {
		var todo []inventory.Machine
		for _, m := range FromDesired(newest, from.Identity).Machines {
			if !asked[m.Name] {
				asked[m.Name] = true
				todo = append(todo, m)
			}
		}
		if len(todo) == 0 {
			break
		}
		copies := make([]helperapi.Desired, len(todo))
		errs := make([]error, len(todo))
		_ = each(names(todo), func(name string) error {
			i := slices.IndexFunc(todo, func(m inventory.Machine) bool { return m.Name == name })
			lctx := withConnectTimeout(ctx, AddConnectTimeout)
			l, err := c.link(lctx, todo[i], trust, steps)
			if err == nil {
				var h Helper
				if h, err = l.Helper(ctx); err == nil {
					copies[i], err = h.Desired(ctx)
				}
			}
			errs[i] = err
			return nil
		})
		for i, m := range todo {
			if errs[i] != nil {
				unreached[m.Name] = errs[i]
				continue
			}
			delete(unreached, m.Name)
			held[m.Name] = int(copies[i].Generation)
			if copies[i].Generation > newest.Generation {
				newest, fromName = copies[i], m.Name
			}
		}
	}
	inv := FromDesired(newest, from.Identity)
	var out Adopted
	for i := range inv.Machines {
		m := &inv.Machines[i]
		if g, ok := held[m.Name]; ok {
			m.Confirmed = min(g, inv.Generation)
		}
		if err, ok := unreached[m.Name]; ok {
			out.Unreached = append(out.Unreached, Behind{Machine: m.Name, Away: unreachable(err), Err: err})
		}
	}
	if err := inv.Validate(); err != nil {
		return Adopted{}, fmt.Errorf("adopt: the copy from %s does not make a valid inventory: %w", fromName, err)
	}
	out.Inventory, out.From = inv, fromName
	return out, nil
}

func names(ms []inventory.Machine) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name)
	}
	return out
}
