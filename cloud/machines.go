package cloud

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/inventory"
	"github.com/butter-cloud/butter/remote"
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
// other machine, in parallel. The new machine must take its configuration
// (else nothing is recorded); machines that are away are pending and add
// the new peer when they return.
func (c *Cloud) AddMachine(ctx context.Context, nm NewMachine, trust Trust, steps func(Step)) (inventory.Machine, Outcome, error) {
	prev, m, err := c.machineAddition(nm)
	if err != nil {
		return inventory.Machine{}, Outcome{}, err
	}

	say(steps, m.Name, "connecting")
	l, err := c.link(withConnectTimeout(ctx, AddConnectTimeout), m, trust, steps)
	if err != nil {
		return inventory.Machine{}, Outcome{}, fmt.Errorf("machine %q: %w", m.Name, err)
	}
	h, err := l.Helper(ctx)
	if err != nil {
		c.forget(m.Name)
		return inventory.Machine{}, Outcome{}, fmt.Errorf("machine %q: %w", m.Name, err)
	}
	if m.PublicKey, err = h.PublicKey(ctx); err != nil {
		return inventory.Machine{}, Outcome{}, fmt.Errorf("machine %q: public key: %w", m.Name, err)
	}
	facts, err := h.Facts(ctx)
	if err != nil {
		return inventory.Machine{}, Outcome{}, fmt.Errorf("machine %q: facts: %w", m.Name, err)
	}
	m.NAT = m.Endpoint == "" && behindNAT(l.Via(), facts)
	if m.MeshIP, err = prev.NextMeshIP(); err != nil {
		return inventory.Machine{}, Outcome{}, err
	}
	for _, o := range prev.Machines {
		if o.PublicKey == m.PublicKey {
			return inventory.Machine{}, Outcome{}, fmt.Errorf("machine %q is machine %q already (same WireGuard key); remove that one first", m.Name, o.Name)
		}
	}
	say(steps, m.Name, fmt.Sprintf("mesh address %s, %s", m.MeshIP, reachability(m)))

	next := clone(prev)
	next.Machines = append(next.Machines, m)
	out, err := c.change(ctx, prev, next, []string{m.Name}, steps)
	if err != nil {
		return inventory.Machine{}, Outcome{}, err
	}
	say(steps, m.Name, "added")
	return m, out, nil
}

// machineAddition is the inventory as it is and the new machine's entry,
// validated on its own before the machine is touched.
func (c *Cloud) machineAddition(nm NewMachine) (*inventory.Inventory, inventory.Machine, error) {
	prev, err := c.Inventory()
	if err != nil {
		return nil, inventory.Machine{}, err
	}
	if _, ok := prev.Machine(nm.Name); ok {
		return nil, inventory.Machine{}, fmt.Errorf("machine %q is already in the cloud; remove it first or pick another name", nm.Name)
	}
	m := inventory.Machine{Name: nm.Name, Address: nm.Address, Port: nm.Port, User: nm.User,
		Identity: nm.Identity, Endpoint: nm.Endpoint, Accel: nm.Accel}
	if m.Port == 0 {
		m.Port = inventory.DefaultSSHPort
	}
	probe := clone(prev)
	probe.Machines = append(probe.Machines, m)
	if err := probe.Validate(); err != nil {
		return nil, inventory.Machine{}, err
	}
	return prev, m, nil
}

// AdditionPlan is what AddMachine would do, told without touching the
// machine (it has no helper to ask yet).
type AdditionPlan struct {
	Machine inventory.Machine // its entry; MeshIP is the address it would get
	// Generation is the change's; Others the machines that would take
	// the new peer.
	Generation int
	Others     []string
	// HelperDir is the folder on the machine the helper would be
	// uploaded to.
	HelperDir string
}

// DryRunAddMachine checks nm as AddMachine does and says what adding it
// would do, changing nothing and contacting no machine.
func (c *Cloud) DryRunAddMachine(nm NewMachine) (AdditionPlan, error) {
	prev, m, err := c.machineAddition(nm)
	if err != nil {
		return AdditionPlan{}, err
	}
	if m.MeshIP, err = prev.NextMeshIP(); err != nil {
		return AdditionPlan{}, err
	}
	return AdditionPlan{Machine: m, Generation: prev.Generation + 1, Others: machineNames(prev), HelperDir: remote.DefaultHelperDir}, nil
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

// Removal is how a machine's removal went.
type Removal struct {
	Outcome
	// WrittenOff are the VMs of a machine removed with Force: the
	// machine was not touched, and they are out of the inventory.
	WrittenOff []string
	// TornDown tells that the machine answered and was cleaned up.
	TornDown bool
}

// StillTrusting names the machines that still hold the removed machine's
// key: they were away and drop it when they return. Until then the
// removed machine could still reach them; rotating their keys when they
// return (or every key now) closes that.
func (r Removal) StillTrusting() []string {
	var out []string
	for _, b := range r.Behind {
		out = append(out, b.Machine)
	}
	return out
}

// RemoveMachine takes a machine out of the cloud: its VMs and network
// chain are torn down, it leaves every network, and the other machines
// drop it as a peer (those away when they return). A machine that does
// not answer is not removed unless force: then it is dropped without
// being touched, its VMs written off, and its key dropped everywhere.
func (c *Cloud) RemoveMachine(ctx context.Context, name string, force bool, steps func(Step)) (Removal, error) {
	prev, next, vms, err := c.machineRemoval(name)
	if err != nil {
		return Removal{}, err
	}
	m, _ := prev.Machine(name)
	// The machine itself first: one that does not answer is refused at
	// once (its connect timeout), before the others are asked.
	var h Helper
	if !force {
		if h, err = c.helper(ctx, *m); err != nil {
			what := ""
			if len(vms) > 0 {
				what = fmt.Sprintf(" (its VMs %s are written off)", strings.Join(vms, ", "))
			}
			return Removal{}, fmt.Errorf("machine %q does not answer (%w), so it cannot be torn down; "+
				"to drop it from the cloud without touching it: `butter machine remove %s --force`%s", name, err, name, what)
		}
	}
	// Would the others take it? Asked before the machine is torn down, so
	// a refusal leaves it whole and in the cloud.
	if _, err := c.prepare(ctx, prev, clone(next), nil); err != nil {
		return Removal{}, err
	}
	var r Removal
	if force {
		say(steps, name, "dropping it without touching it")
		r.WrittenOff = vms
	} else {
		if err := c.tearDown(ctx, name, h, len(vms) > 0, steps); err != nil {
			return Removal{}, fmt.Errorf("machine %q: %w; it stays in the cloud: fix the cause and remove it again, or drop it with --force", name, err)
		}
		r.TornDown = true
	}
	c.forget(name)
	r.Outcome, err = c.change(ctx, prev, next, nil, steps)
	if err == nil {
		for _, v := range vms {
			if kerr := inventory.SetVMHostKey(ctx, c.path, v, nil); kerr != nil {
				say(steps, name, fmt.Sprintf("vm %s: its host key stays in %s: %v", v, inventory.KnownHostsPath(c.path), kerr))
			}
		}
	}
	return r, err
}

// DryRunRemoveMachine is what RemoveMachine would do, changing nothing:
// the machine's VMs removed and its teardown (none with force), and the
// others' new specs.
func (c *Cloud) DryRunRemoveMachine(ctx context.Context, name string, force bool) (DryRun, error) {
	prev, next, vms, err := c.machineRemoval(name)
	if err != nil {
		return DryRun{}, err
	}
	if force {
		return c.dryRunChange(ctx, prev, next, nil, name)
	}
	extra := map[string][]dryRunRequest{}
	for _, v := range vms {
		extra[name] = append(extra[name], vmDryRunRequest(v, "remove"))
	}
	return c.dryRunChange(ctx, prev, next, extra)
}

// machineRemoval is the inventory as it is and as RemoveMachine makes it,
// with the VMs on the machine.
func (c *Cloud) machineRemoval(name string) (prev, next *inventory.Inventory, vms []string, err error) {
	prev, err = c.Inventory()
	if err != nil {
		return nil, nil, nil, err
	}
	if _, ok := prev.Machine(name); !ok {
		return nil, nil, nil, fmt.Errorf("no machine %q in the cloud; `butter machine list` shows them", name)
	}
	for _, v := range prev.VMs {
		if v.Machine == name {
			vms = append(vms, v.Name)
		}
	}
	next = clone(prev)
	next.Machines = slices.DeleteFunc(next.Machines, func(o inventory.Machine) bool { return o.Name == name })
	next.VMs = slices.DeleteFunc(next.VMs, func(v inventory.VM) bool { return v.Machine == name })
	for i := range next.Networks {
		next.Networks[i].Machines = slices.DeleteFunc(next.Networks[i].Machines, func(n string) bool { return n == name })
	}
	return prev, next, vms, nil
}

// tearDown removes a machine's VMs and its links. hasVMs: the inventory
// has VMs on it; without, a machine whose VMs cannot be listed (no
// libvirtd: a machine for networks only) is torn down all the same.
func (c *Cloud) tearDown(ctx context.Context, name string, h Helper, hasVMs bool, steps func(Step)) error {
	vms, err := h.ListVMs(ctx)
	if err != nil && hasVMs {
		return fmt.Errorf("list its VMs: %w", err)
	}
	if err != nil {
		say(steps, name, fmt.Sprintf("its VMs cannot be listed (%v); the cloud has none on it", err))
	}
	for _, v := range vms {
		say(steps, name, "removing vm "+v.Name)
		if _, err := h.VMAction(ctx, helperapi.VMActionRequest{Name: v.Name, Action: "remove"}); err != nil {
			return fmt.Errorf("remove vm %q: %w", v.Name, err)
		}
	}
	say(steps, name, "tearing down its networks and mesh")
	return h.Remove(ctx)
}

// MachineStatus is a machine as the operator sees it.
type MachineStatus struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	Status  string `json:"status"` // online, offline, degraded
	Problem string `json:"problem,omitempty"`
	// Notes are facts worth knowing that need no action (WireGuard in
	// userspace); machine add says them once, machine list every time.
	Notes         []string `json:"notes,omitempty"`
	MeshIP        string   `json:"mesh_ip"`
	NAT           bool     `json:"nat"`
	HelperVersion string   `json:"helper_version"`
	// Pending: the machine has not confirmed the cloud's latest change
	// (it was away); `butter sync` catches it up. Confirmed is the
	// generation it confirmed, Generation the cloud's.
	Pending    bool            `json:"pending"`
	Confirmed  int             `json:"confirmed"`
	Generation int             `json:"generation"`
	Facts      helperapi.Facts `json:"facts,omitzero"`
}

// Status values.
const (
	StatusOnline   = "online"
	StatusOffline  = "offline"
	StatusDegraded = "degraded"
)

// NoteUserspaceWireGuard is the note of a machine whose kernel has no
// WireGuard module.
const NoteUserspaceWireGuard = "WireGuard in userspace (no kernel module; slower)"

// NoteTCG is the note of a machine whose VMs run without KVM.
const NoteTCG = "VMs run under qemu's TCG (no working KVM; slower)"

// notes are what a machine's facts say worth knowing.
func notes(f helperapi.Facts) []string {
	var n []string
	if !f.KernelWireGuard {
		n = append(n, NoteUserspaceWireGuard)
	}
	if f.Accel == helperapi.AccelTCG {
		n = append(n, NoteTCG)
	}
	return n
}

// StaleHandshake is when a peer's last handshake counts as lost.
const StaleHandshake = 3 * time.Minute

// Machines lists the machines with live status, asking all in parallel;
// a machine that does not answer within timeout (or whose TCP connect
// does not within ConnectTimeout) is offline, with the reason.
func (c *Cloud) Machines(ctx context.Context, timeout time.Duration) ([]MachineStatus, error) {
	inv, err := c.Inventory()
	if err != nil {
		return nil, err
	}
	out := make([]MachineStatus, len(inv.Machines))
	_ = each(machineNames(inv), func(name string) error {
		i := slices.IndexFunc(inv.Machines, func(m inventory.Machine) bool { return m.Name == name })
		out[i], _ = c.probe(ctx, inv.Machines[i], timeout)
		out[i].Pending, out[i].Confirmed, out[i].Generation = inv.Pending(inv.Machines[i]), inv.Machines[i].Confirmed, inv.Generation
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
	st.Notes = notes(st.Facts)
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
