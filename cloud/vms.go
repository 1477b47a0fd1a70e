package cloud

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os/user"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/inventory"
)

// NewVM is what `vm create` is told.
type NewVM struct {
	Name      string
	Machine   string
	Network   string
	Image     string // as helperapi.ParseSource reads it; files are the operator's
	CPUs      int
	MemoryMiB int
	DiskGiB   int
	Address   netip.Addr // invalid: the next free one
	SSHKeys   []string
	Cmdline   string
}

// VMStatus is a VM as the operator sees it.
type VMStatus struct {
	Name      string  `json:"name"`
	Machine   string  `json:"machine"`
	Network   string  `json:"network"`
	IP        string  `json:"ip"`
	State     string  `json:"state"`
	CPUs      int     `json:"cpus"`
	MemoryMiB int     `json:"memory_mib"`
	CPUTime   float64 `json:"cpu_seconds"`
	Image     string  `json:"image"`
	// Autostart: the VM runs again after its machine boots (vm stop
	// clears it, vm start sets it).
	Autostart bool `json:"autostart"`
}

// CreateVM creates a VM on its machine: it checks every value, reserves
// the VM's name and address (inventory.Reserve: the inventory file is not
// written), uploads its image files if they are the operator's, has the
// machine's helper make it, and only then records it in the inventory.
// A VM booted from a disk image gets an SSH host key made here: its
// private half goes to the machine in the request, for the VM's seed, and
// only its public half is kept, in the VMs' known_hosts
// (inventory.KnownHostsPath), so `vm ssh` knows the VM before it first
// connects.
//
// A create that fails, or is refused, leaves the inventory and its .bak
// byte for byte as they were: a bad value reserves nothing and uploads
// nothing, and a machine that is away (an *AwayError) or refuses the VM
// only ends the reservation.
func (c *Cloud) CreateVM(ctx context.Context, nv NewVM, progress func(helperapi.Progress), steps func(Step)) (VMStatus, error) {
	req, src, err := vmRequest(nv)
	if err != nil {
		return VMStatus{}, err
	}
	var hostKey ssh.PublicKey
	if src.Kernel == nil {
		if req.HostKey, hostKey, err = helperapi.NewHostKey(); err != nil {
			return VMStatus{}, fmt.Errorf("vm %q: %w", nv.Name, err)
		}
	}
	var m inventory.Machine
	var subnet netip.Prefix
	r, err := inventory.Reserve(ctx, c.path, func(inv *inventory.Inventory) (inventory.VM, error) {
		v, mp, n, err := placeVM(inv, nv)
		m, subnet = mp, n
		return v, err
	})
	if err != nil {
		return VMStatus{}, err
	}
	// The reservation ends however the create does, Ctrl+C included.
	defer func() {
		actx, cancel := afterwards(ctx)
		defer cancel()
		_ = r.Release(actx) // failing, it lasts until this process ends
	}()
	req = placed(req, r.VM.Address, subnet)
	info, err := c.createOn(ctx, m, req, src, progress, steps)
	if err != nil {
		return VMStatus{}, err
	}
	// The VM is made: record it even if ctx ended meanwhile.
	actx, cancel := afterwards(ctx)
	defer cancel()
	if err := c.publish(actx, m.Name, steps, r.Commit); err != nil {
		return VMStatus{}, c.unmake(actx, m, nv.Name, err)
	}
	// A VM that had no host key made for it may have left a line behind
	// under its name: the nil key drops it.
	if err := inventory.SetVMHostKey(actx, c.path, nv.Name, hostKey); err != nil {
		say(steps, "", fmt.Sprintf("vm %s: its host key was not kept (%v): `butter vm ssh %s` will refuse it; remove the VM and create it again", nv.Name, err, nv.Name))
	}
	return vmStatus(m.Name, info), nil
}

// vmRequest is what the VM's machine is asked to make for nv, checked,
// and its image's source.
func vmRequest(nv NewVM) (helperapi.VMRequest, helperapi.Source, error) {
	req := helperapi.VMRequest{Name: nv.Name, CPUs: nv.CPUs, MemoryMiB: nv.MemoryMiB, DiskGiB: nv.DiskGiB,
		Image: nv.Image, Network: nv.Network, SSHKeys: nv.SSHKeys, Cmdline: nv.Cmdline, Creator: creator()}.WithDefaults()
	if err := req.Check(); err != nil {
		return req, helperapi.Source{}, err
	}
	if err := helperapi.CheckName("machine", nv.Machine); err != nil {
		return req, helperapi.Source{}, err
	}
	src, err := helperapi.ParseSource(nv.Image)
	if err != nil {
		return req, helperapi.Source{}, fmt.Errorf("vm %q: %w", nv.Name, err)
	}
	return req, src, nil
}

// placed is req at its address on its network's subnet: the network's
// gateway, on the VM's own machine, is its default route and its name
// server.
func placed(req helperapi.VMRequest, addr netip.Addr, subnet netip.Prefix) helperapi.VMRequest {
	req.Address = addr.String()
	if gw := helperapi.GatewayAddr(subnet); gw.IsValid() {
		req.Gateway, req.DNS = gw.String(), []string{gw.String()}
	}
	return req
}

// placeVM places the new VM nv in inv: its machine, its network's
// subnet, and its address (the next free one unless nv gives one).
func placeVM(inv *inventory.Inventory, nv NewVM) (inventory.VM, inventory.Machine, netip.Prefix, error) {
	mp, ok := inv.Machine(nv.Machine)
	if !ok {
		return inventory.VM{}, inventory.Machine{}, netip.Prefix{}, fmt.Errorf("no machine %q; `butter machine list` shows them", nv.Machine)
	}
	n, ok := inv.Network(nv.Network)
	if !ok {
		return inventory.VM{}, inventory.Machine{}, netip.Prefix{}, fmt.Errorf("no network %q; create it with `butter network create`", nv.Network)
	}
	if !slices.Contains(n.Machines, nv.Machine) {
		return inventory.VM{}, inventory.Machine{}, netip.Prefix{}, fmt.Errorf("network %q is not on machine %q; its machines are %s", nv.Network, nv.Machine, strings.Join(n.Machines, ", "))
	}
	v := inventory.VM{Name: nv.Name, Machine: nv.Machine, Network: nv.Network, Address: nv.Address}
	if v.Address.IsValid() {
		if err := helperapi.CheckVMAddress(n.Name, n.Subnet, v.Address); err != nil {
			return inventory.VM{}, inventory.Machine{}, netip.Prefix{}, fmt.Errorf("vm %q: %w", nv.Name, err)
		}
	} else {
		var err error
		if v.Address, err = inv.NextVMAddress(nv.Network); err != nil {
			return inventory.VM{}, inventory.Machine{}, netip.Prefix{}, err
		}
	}
	return v, *mp, n.Subnet, nil
}

// afterwards is a context to finish an operation in when its own, ctx,
// may have ended: it keeps ctx's values but not its end, and lasts a
// minute.
func afterwards(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
}

// unmake removes VM name, made on machine m, that the inventory would not
// record (why), so a create that fails as a whole leaves nothing behind.
func (c *Cloud) unmake(ctx context.Context, m inventory.Machine, name string, why error) error {
	h, err := c.helper(ctx, m)
	if err == nil {
		_, err = h.VMAction(ctx, helperapi.VMActionRequest{Name: name, Action: "remove"})
	}
	if err != nil {
		return fmt.Errorf("vm %q was made on machine %q, but the inventory would not record it: %w; removing it from the machine failed too, so it is there, unrecorded: %v",
			name, m.Name, why, err)
	}
	return fmt.Errorf("vm %q not created: the inventory would not record it, so it was removed from machine %q again: %w", name, m.Name, why)
}

// createOn uploads the operator's files of src to machine m and asks its
// helper for the VM req, whose image becomes what the machine then has.
func (c *Cloud) createOn(ctx context.Context, m inventory.Machine, req helperapi.VMRequest, src helperapi.Source, progress func(helperapi.Progress), steps func(Step)) (helperapi.VMInfo, error) {
	fail := func(err error) error {
		return onMachine(ctx, m.Name, "vm create", "try again when it is back, or pick another machine with --machine", err)
	}
	l, err := c.link(ctx, m, Trust{}, steps)
	if err != nil {
		return helperapi.VMInfo{}, fail(err)
	}
	for _, u := range []struct {
		kind string
		f    *helperapi.File
	}{{"disk", src.File}, {helperapi.BlobKernel, src.Kernel}, {helperapi.BlobInitrd, src.Initrd}} {
		if u.f == nil {
			continue
		}
		say(steps, m.Name, "uploading "+u.f.Path)
		if err := l.Upload(ctx, u.kind, u.f, progress); err != nil {
			return helperapi.VMInfo{}, fail(fmt.Errorf("vm %q: upload %s: %w", req.Name, u.f.Path, err))
		}
	}
	h, err := l.Helper(ctx)
	if err != nil {
		return helperapi.VMInfo{}, fail(err)
	}
	say(steps, m.Name, "creating vm "+req.Name)
	req.Image = sourceOnMachine(src)
	info, err := h.CreateVM(ctx, req, progress)
	if err != nil {
		return helperapi.VMInfo{}, fail(err)
	}
	return info, nil
}

// sourceOnMachine rewrites an operator's file source to what the machine
// has after the upload: the same source with content hashes, which the
// machine's image store finds without the files.
func sourceOnMachine(src helperapi.Source) string {
	var parts []string
	hashed := func(f *helperapi.File) string { return "sha256:" + f.SHA256 }
	switch {
	case src.File != nil:
		return "file=" + hashed(src.File)
	case src.Kernel != nil:
		parts = append(parts, "kernel="+hashed(src.Kernel))
		if src.Initrd != nil {
			parts = append(parts, "initrd="+hashed(src.Initrd))
		}
		if src.Cmdline != "" {
			parts = append(parts, "cmdline="+src.Cmdline)
		}
		return strings.Join(parts, ",")
	}
	return src.String()
}

func creator() string {
	name := "someone"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return name + "@" + hostname()
}

// States VMs gives a VM besides its helper's (running, shut off, ...).
const (
	// VMUnknown: the VM's machine did not answer; the VM is listed from
	// the inventory.
	VMUnknown = "unknown"
	// VMMissing: the inventory records the VM, but its machine answered
	// without it.
	VMMissing = "missing"
)

// vmsOn is machine m's VMs, as its helper lists them within timeout.
func (c *Cloud) vmsOn(ctx context.Context, m inventory.Machine, timeout time.Duration) ([]helperapi.VMInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	h, err := c.helper(ctx, m)
	if err != nil {
		return nil, err
	}
	return h.ListVMs(ctx)
}

// ErrNoAnswer is in VMs' error when no machine answered.
var ErrNoAnswer = errors.New("no machine answered")

// VMs lists every machine's VMs, asking all in parallel, each within
// timeout. The error is nil when every machine answered, so an empty list
// with no error is a cloud with no VM. Machines that did not answer are
// named in a MachineErrors, and the VMs the inventory records on them are
// listed with state VMUnknown; when none answered (and there are
// machines), the error wraps ErrNoAnswer too. A VM the inventory records
// whose machine answered without it is listed as VMMissing. An inventory
// that does not load gives no list.
func (c *Cloud) VMs(ctx context.Context, timeout time.Duration) ([]VMStatus, error) {
	inv, err := c.Inventory()
	if err != nil {
		return nil, err
	}
	type answer struct {
		machine string
		vms     []helperapi.VMInfo
	}
	ch := make(chan answer, len(inv.Machines))
	err = each(machineNames(inv), func(name string) error {
		m, _ := inv.Machine(name)
		vms, err := c.vmsOn(ctx, *m, timeout)
		if err != nil {
			return err
		}
		ch <- answer{name, vms}
		return nil
	})
	close(ch)
	var out []VMStatus
	answered := map[string]bool{}
	found := map[[2]string]bool{} // machine, VM
	for a := range ch {
		answered[a.machine] = true
		for _, v := range a.vms {
			found[[2]string{a.machine, v.Name}] = true
			out = append(out, vmStatus(a.machine, v))
		}
	}
	for _, v := range inv.VMs {
		if found[[2]string{v.Machine, v.Name}] {
			continue
		}
		state := VMUnknown
		if answered[v.Machine] {
			state = VMMissing
		}
		out = append(out, VMStatus{Name: v.Name, Machine: v.Machine, Network: v.Network, IP: v.Address.String(), State: state})
	}
	slices.SortFunc(out, func(a, b VMStatus) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Machine, b.Machine))
	})
	if len(answered) == 0 && err != nil {
		err = fmt.Errorf("%w: %w", ErrNoAnswer, err)
	}
	return out, err
}

func vmStatus(machine string, v helperapi.VMInfo) VMStatus {
	ip, _, _ := strings.Cut(v.Address, "/")
	return VMStatus{Name: v.Name, Machine: machine, Network: v.Network, IP: ip, State: v.State,
		CPUs: v.CPUs, MemoryMiB: v.MemoryMiB, CPUTime: v.CPUTime.Seconds(), Image: v.Image, Autostart: v.Autostart}
}

// VMAction starts, stops, reboots or removes a VM; remove also frees its
// address. A machine that cannot be reached fails it at once with an
// *AwayError.
func (c *Cloud) VMAction(ctx context.Context, name, action string, timeout time.Duration) (helperapi.VMActionResult, error) {
	inv, err := c.Inventory()
	if err != nil {
		return helperapi.VMActionResult{}, err
	}
	v, ok := inv.VM(name)
	if !ok {
		return helperapi.VMActionResult{}, fmt.Errorf("no vm %q; `butter vm list` shows them", name)
	}
	m, ok := inv.Machine(v.Machine)
	if !ok {
		return helperapi.VMActionResult{}, fmt.Errorf("vm %q is on machine %q, which is not in the cloud", name, v.Machine)
	}
	next := fmt.Sprintf("vm %s is there: try again when it is back (`butter machine list` shows whether it answers)", name)
	if action == "remove" {
		next = fmt.Sprintf("try again when it is back, or take the machine and its VMs out of the cloud with `butter machine remove %s`", m.Name)
	}
	h, err := c.helper(ctx, *m)
	if err != nil {
		return helperapi.VMActionResult{}, onMachine(ctx, m.Name, "vm "+action, next, err)
	}
	res, err := h.VMAction(ctx, helperapi.VMActionRequest{Name: name, Action: action, TimeoutSeconds: timeout.Seconds()})
	if err != nil && unreachable(err) {
		return res, onMachine(ctx, m.Name, "vm "+action, next, err)
	}
	if err != nil && !(action == "remove" && strings.Contains(err.Error(), "no vm")) {
		return res, err
	}
	if action == "remove" {
		err = c.publish(ctx, m.Name, nil, func(ctx context.Context) error {
			return inventory.Update(ctx, c.path, func(inv *inventory.Inventory) error {
				inv.VMs = slices.DeleteFunc(inv.VMs, func(o inventory.VM) bool { return o.Name == name })
				return nil
			})
		})
		if err == nil {
			err = inventory.SetVMHostKey(ctx, c.path, name, nil)
		}
	}
	return res, err
}

// Console attaches to a VM's serial console. A machine that cannot be
// reached fails it at once with an *AwayError.
func (c *Cloud) Console(ctx context.Context, name string, in io.Reader, out io.Writer) error {
	_, m, err := c.vmOn(name)
	if err != nil {
		return err
	}
	const next = "try again when it is back (`butter machine list` shows whether it answers)"
	l, err := c.link(ctx, m, Trust{}, nil)
	if err != nil {
		return onMachine(ctx, m.Name, "vm console", next, err)
	}
	err = l.Console(ctx, name, in, out)
	if err != nil && ctx.Err() == nil && unreachable(err) {
		return onMachine(ctx, m.Name, "vm console", next, err)
	}
	return err
}

// DryRunCreateVM is what CreateVM would do, changing nothing: nothing is
// reserved, uploaded or made. The VM's machine says how it would make
// it; every machine, what the cloud's next generation (with the VM in
// its desired state) changes.
func (c *Cloud) DryRunCreateVM(ctx context.Context, nv NewVM) (DryRun, error) {
	req, _, err := vmRequest(nv)
	if err != nil {
		return DryRun{}, err
	}
	prev, err := c.Inventory()
	if err != nil {
		return DryRun{}, err
	}
	if _, ok := prev.VM(nv.Name); ok {
		return DryRun{}, fmt.Errorf("vm %q exists; pick another name or remove it first", nv.Name)
	}
	v, m, subnet, err := placeVM(prev, nv)
	if err != nil {
		return DryRun{}, err
	}
	next := clone(prev)
	next.VMs = append(next.VMs, v)
	// Its image as given: a file of the operator's is not uploaded, and
	// no host key is made.
	req = placed(req, v.Address, subnet)
	create := dryRunRequest{what: "vm create " + nv.Name, req: helperapi.DryRunRequest{CreateVM: &req}}
	return c.dryRunChange(ctx, prev, next, map[string][]dryRunRequest{m.Name: {create}})
}

// DryRunVMAction is what VMAction would do, changing nothing; a remove
// also shows what the cloud's next generation (without the VM) changes.
func (c *Cloud) DryRunVMAction(ctx context.Context, name, action string) (DryRun, error) {
	inv, err := c.Inventory()
	if err != nil {
		return DryRun{}, err
	}
	v, ok := inv.VM(name)
	if !ok {
		return DryRun{}, fmt.Errorf("no vm %q; `butter vm list` shows them", name)
	}
	extra := map[string][]dryRunRequest{v.Machine: {vmDryRunRequest(name, action)}}
	if action != "remove" {
		return DryRun{Machines: c.askDryRuns(ctx, inv, extra)}, nil
	}
	next := clone(inv)
	next.VMs = slices.DeleteFunc(next.VMs, func(o inventory.VM) bool { return o.Name == name })
	return c.dryRunChange(ctx, inv, next, extra)
}
