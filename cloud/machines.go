package cloud

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/inventory"
)

// NewMachine is what `machine add` is told.
type NewMachine struct {
	Name     string
	Address  string
	Port     int
	User     string
	Identity string
	// Endpoint overrides the address peers use (host:port).
	Endpoint string
	// Accel is the VM accelerator for this machine ("" = auto).
	Accel string
}

// AddMachine brings a machine into the cloud: it connects (checking the
// host key per trust), installs and starts the helper, gives the machine a
// mesh address, collects its public key and adds it as a peer on every
// other machine, in parallel. The inventory records it only when every
// machine took its new configuration.
func (c *Cloud) AddMachine(ctx context.Context, nm NewMachine, trust Trust, steps func(Step)) (inventory.Machine, error) {
	prev, err := c.Inventory()
	if err != nil {
		return inventory.Machine{}, err
	}
	if _, ok := prev.Machine(nm.Name); ok {
		return inventory.Machine{}, fmt.Errorf("machine %q is already in the cloud; remove it first or pick another name", nm.Name)
	}
	m := inventory.Machine{Name: nm.Name, Address: nm.Address, Port: nm.Port, User: nm.User,
		Identity: nm.Identity, Endpoint: nm.Endpoint, Accel: nm.Accel}
	if m.Port == 0 {
		m.Port = inventory.DefaultSSHPort
	}
	// Validate the new entry on its own before touching the machine.
	probe := clone(prev)
	probe.Machines = append(probe.Machines, m)
	if err := probe.Validate(); err != nil {
		return inventory.Machine{}, err
	}

	say(steps, m.Name, "connecting")
	l, err := c.link(ctx, m, trust, steps)
	if err != nil {
		return inventory.Machine{}, fmt.Errorf("machine %q: %w", m.Name, err)
	}
	h, err := l.Helper(ctx)
	if err != nil {
		c.forget(m.Name)
		return inventory.Machine{}, fmt.Errorf("machine %q: %w", m.Name, err)
	}
	if m.PublicKey, err = h.PublicKey(ctx); err != nil {
		return inventory.Machine{}, fmt.Errorf("machine %q: public key: %w", m.Name, err)
	}
	facts, err := h.Facts(ctx)
	if err != nil {
		return inventory.Machine{}, fmt.Errorf("machine %q: facts: %w", m.Name, err)
	}
	m.NAT = m.Endpoint == "" && behindNAT(l.Via(), facts)
	if m.MeshIP, err = prev.NextMeshIP(); err != nil {
		return inventory.Machine{}, err
	}
	for _, o := range prev.Machines {
		if o.PublicKey == m.PublicKey {
			return inventory.Machine{}, fmt.Errorf("machine %q is machine %q already (same WireGuard key); remove that one first", m.Name, o.Name)
		}
	}
	say(steps, m.Name, fmt.Sprintf("mesh address %s, %s", m.MeshIP, reachability(m)))

	next := clone(prev)
	next.Machines = append(next.Machines, m)
	// The new machine's link is made; the others are known already, and
	// the trust given for the new one must not apply to them.
	if err := c.converge(ctx, prev, next, machineNames(next), steps); err != nil {
		return inventory.Machine{}, err
	}
	err = inventory.Update(ctx, c.path, func(inv *inventory.Inventory) error {
		if _, ok := inv.Machine(m.Name); ok {
			return fmt.Errorf("machine %q was added meanwhile by another butter", m.Name)
		}
		for _, o := range inv.Machines {
			if o.MeshIP == m.MeshIP {
				return fmt.Errorf("mesh address %s was taken meanwhile by machine %q; run the command again", m.MeshIP, o.Name)
			}
		}
		inv.Machines = append(inv.Machines, m)
		return nil
	})
	if err != nil {
		return inventory.Machine{}, err
	}
	say(steps, m.Name, "added")
	return m, nil
}

// behindNAT decides that a machine cannot be reached by the others: the
// operator reached it through a jump host, or at an address the machine
// does not have (a port forward).
func behindNAT(r Route, f helperapi.Facts) bool {
	if r.Jumped {
		return true
	}
	return !slices.Contains(f.Addresses, r.Addr)
}

func reachability(m inventory.Machine) string {
	if m.NAT {
		return "behind NAT: it will reach out to the others"
	}
	return "reachable at " + endpoint(m, inventory.DefaultMeshPort)
}

// RemoveMachine takes a machine out of the cloud: its VMs and network
// chain are torn down (when it answers), it leaves every network, and the
// other machines drop it as a peer.
func (c *Cloud) RemoveMachine(ctx context.Context, name string, steps func(Step)) error {
	prev, err := c.Inventory()
	if err != nil {
		return err
	}
	m, ok := prev.Machine(name)
	if !ok {
		return fmt.Errorf("no machine %q in the cloud; `butter machine list` shows them", name)
	}
	var teardown error
	if h, err := c.helper(ctx, *m); err != nil {
		teardown = err
	} else {
		if vms, err := h.ListVMs(ctx); err == nil {
			for _, v := range vms {
				say(steps, name, "removing vm "+v.Name)
				if _, err := h.VMAction(ctx, helperapi.VMActionRequest{Name: v.Name, Action: "remove"}); err != nil {
					teardown = errors.Join(teardown, fmt.Errorf("remove vm %q: %w", v.Name, err))
				}
			}
		}
		say(steps, name, "tearing down its networks and mesh")
		if err := h.Remove(ctx); err != nil {
			teardown = errors.Join(teardown, err)
		}
	}
	c.forget(name)
	next := clone(prev)
	next.Machines = slices.DeleteFunc(next.Machines, func(o inventory.Machine) bool { return o.Name == name })
	next.VMs = slices.DeleteFunc(next.VMs, func(v inventory.VM) bool { return v.Machine == name })
	for i := range next.Networks {
		next.Networks[i].Machines = slices.DeleteFunc(next.Networks[i].Machines, func(n string) bool { return n == name })
	}
	if err := c.converge(ctx, prev, next, machineNames(next), steps); err != nil {
		return err
	}
	err = inventory.Update(ctx, c.path, func(inv *inventory.Inventory) error {
		inv.Machines = slices.DeleteFunc(inv.Machines, func(o inventory.Machine) bool { return o.Name == name })
		inv.VMs = slices.DeleteFunc(inv.VMs, func(v inventory.VM) bool { return v.Machine == name })
		for i := range inv.Networks {
			inv.Networks[i].Machines = slices.DeleteFunc(inv.Networks[i].Machines, func(n string) bool { return n == name })
		}
		return nil
	})
	if err != nil {
		return err
	}
	if teardown != nil {
		return fmt.Errorf("machine %q removed from the cloud, but tearing it down failed (it keeps butter's links and VMs until you remove them by hand or it comes back and you run `butter helper remove` on it): %w", name, teardown)
	}
	return nil
}

// MachineStatus is a machine as the operator sees it.
type MachineStatus struct {
	Name          string          `json:"name"`
	Address       string          `json:"address"`
	Status        string          `json:"status"` // online, offline, degraded
	Problem       string          `json:"problem,omitempty"`
	MeshIP        string          `json:"mesh_ip"`
	NAT           bool            `json:"nat"`
	HelperVersion string          `json:"helper_version"`
	Facts         helperapi.Facts `json:"facts,omitzero"`
}

// Status values.
const (
	StatusOnline   = "online"
	StatusOffline  = "offline"
	StatusDegraded = "degraded"
)

// StaleHandshake is when a peer's last handshake counts as lost.
const StaleHandshake = 3 * time.Minute

// Machines lists the machines with live status, asking all in parallel;
// a machine that does not answer within timeout is offline.
func (c *Cloud) Machines(ctx context.Context, timeout time.Duration) ([]MachineStatus, error) {
	inv, err := c.Inventory()
	if err != nil {
		return nil, err
	}
	out := make([]MachineStatus, len(inv.Machines))
	_ = each(machineNames(inv), func(name string) error {
		i := slices.IndexFunc(inv.Machines, func(m inventory.Machine) bool { return m.Name == name })
		out[i], _ = c.probe(ctx, inv.Machines[i], timeout)
		return nil
	})
	return out, nil
}

// probe asks one machine for its facts and tells its status; h is its
// helper when it answered.
func (c *Cloud) probe(ctx context.Context, m inventory.Machine, timeout time.Duration) (MachineStatus, Helper) {
	st := MachineStatus{Name: m.Name, Address: m.Address, MeshIP: m.MeshIP.String(), NAT: m.NAT}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	h, err := c.helper(cctx, m)
	if err == nil {
		st.Facts, err = h.Facts(cctx)
	}
	if err != nil {
		st.Status, st.Problem = StatusOffline, err.Error()
		return st, nil
	}
	st.Status, st.HelperVersion = StatusOnline, st.Facts.Version
	if p := degraded(st.Facts); p != "" {
		st.Status, st.Problem = StatusDegraded, p
	}
	return st, h
}

// degraded names what is wrong with an answering machine: a peer it has
// not shaken hands with lately.
func degraded(f helperapi.Facts) string {
	for _, p := range f.Peers {
		if p.HandshakeAge < 0 || time.Duration(p.HandshakeAge*float64(time.Second)) > StaleHandshake {
			name := p.Name
			if name == "" {
				name = p.PublicKey
			}
			return "no recent WireGuard handshake with " + name
		}
	}
	return ""
}
