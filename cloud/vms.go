package cloud

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os/user"
	"slices"
	"sort"
	"strings"
	"time"

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
}

// CreateVM allocates the VM's address, uploads its image files if they are
// the operator's, and creates it on its machine. The allocation is kept
// only if the VM was made.
//
// Every value is checked before anything moves: a bad name, size or image
// reserves nothing and uploads nothing.
func (c *Cloud) CreateVM(ctx context.Context, nv NewVM, progress func(helperapi.Progress), steps func(Step)) (VMStatus, error) {
	req := helperapi.VMRequest{Name: nv.Name, CPUs: nv.CPUs, MemoryMiB: nv.MemoryMiB, DiskGiB: nv.DiskGiB,
		Image: nv.Image, Network: nv.Network, SSHKeys: nv.SSHKeys, Cmdline: nv.Cmdline, Creator: creator()}.WithDefaults()
	if err := req.Check(); err != nil {
		return VMStatus{}, err
	}
	if err := helperapi.CheckName("machine", nv.Machine); err != nil {
		return VMStatus{}, err
	}
	src, err := helperapi.ParseSource(nv.Image)
	if err != nil {
		return VMStatus{}, fmt.Errorf("vm %q: %w", nv.Name, err)
	}
	// Reach the machine before reserving anything: one that is away fails
	// the create at once, and the inventory and its .bak stay as they were.
	if inv, err := c.Inventory(); err != nil {
		return VMStatus{}, err
	} else if mp, ok := inv.Machine(nv.Machine); ok {
		if _, err := c.link(ctx, *mp, Trust{}, steps); err != nil {
			return VMStatus{}, fmt.Errorf("machine %q: %w", mp.Name, err)
		}
	}
	var m inventory.Machine
	var addr netip.Addr
	// Reserve the name and address first, so two butters cannot hand out
	// the same address.
	err = inventory.Update(ctx, c.path, func(inv *inventory.Inventory) error {
		if _, ok := inv.VM(nv.Name); ok {
			return fmt.Errorf("vm %q exists; pick another name or remove it first", nv.Name)
		}
		mp, ok := inv.Machine(nv.Machine)
		if !ok {
			return fmt.Errorf("no machine %q; `butter machine list` shows them", nv.Machine)
		}
		n, ok := inv.Network(nv.Network)
		if !ok {
			return fmt.Errorf("no network %q; create it with `butter network create`", nv.Network)
		}
		if !slices.Contains(n.Machines, nv.Machine) {
			return fmt.Errorf("network %q is not on machine %q; its machines are %s", nv.Network, nv.Machine, strings.Join(n.Machines, ", "))
		}
		m = *mp
		addr = nv.Address
		if !addr.IsValid() {
			var err error
			if addr, err = inv.NextVMAddress(nv.Network); err != nil {
				return err
			}
		}
		inv.VMs = append(inv.VMs, inventory.VM{Name: nv.Name, Machine: nv.Machine, Network: nv.Network, Address: addr})
		return nil
	})
	if err != nil {
		return VMStatus{}, err
	}
	release := func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = inventory.Update(rctx, c.path, func(inv *inventory.Inventory) error {
			inv.VMs = slices.DeleteFunc(inv.VMs, func(v inventory.VM) bool { return v.Name == nv.Name })
			return nil
		})
	}
	req.Address = addr.String()
	info, err := c.createOn(ctx, m, req, src, progress, steps)
	if err != nil {
		release()
		return VMStatus{}, err
	}
	return vmStatus(m.Name, info), nil
}

// createOn uploads the operator's files of src to machine m and asks its
// helper for the VM req, whose image becomes what the machine then has.
func (c *Cloud) createOn(ctx context.Context, m inventory.Machine, req helperapi.VMRequest, src helperapi.Source, progress func(helperapi.Progress), steps func(Step)) (helperapi.VMInfo, error) {
	l, err := c.link(ctx, m, Trust{}, steps)
	if err != nil {
		return helperapi.VMInfo{}, fmt.Errorf("machine %q: %w", m.Name, err)
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
			return helperapi.VMInfo{}, fmt.Errorf("vm %q: upload %s: %w", req.Name, u.f.Path, err)
		}
	}
	h, err := l.Helper(ctx)
	if err != nil {
		return helperapi.VMInfo{}, err
	}
	say(steps, m.Name, "creating vm "+req.Name)
	req.Image = sourceOnMachine(src)
	return h.CreateVM(ctx, req, progress)
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

// VMs lists every machine's VMs, asking all in parallel. Machines that do
// not answer are named in the error, and their VMs are listed from the
// inventory with state "unknown".
func (c *Cloud) VMs(ctx context.Context, timeout time.Duration) ([]VMStatus, error) {
	inv, err := c.Inventory()
	if err != nil {
		return nil, err
	}
	var out []VMStatus
	found := map[string]bool{}
	ch := make(chan []VMStatus, len(inv.Machines))
	err = each(machineNames(inv), func(name string) error {
		m, _ := inv.Machine(name)
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		h, err := c.helper(cctx, *m)
		if err != nil {
			return err
		}
		vms, err := h.ListVMs(cctx)
		if err != nil {
			return err
		}
		var st []VMStatus
		for _, v := range vms {
			st = append(st, vmStatus(name, v))
		}
		ch <- st
		return nil
	})
	close(ch)
	for st := range ch {
		for _, v := range st {
			found[v.Name] = true
			out = append(out, v)
		}
	}
	for _, v := range inv.VMs {
		if !found[v.Name] {
			out = append(out, VMStatus{Name: v.Name, Machine: v.Machine, Network: v.Network,
				IP: v.Address.String(), State: "unknown"})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

func vmStatus(machine string, v helperapi.VMInfo) VMStatus {
	ip, _, _ := strings.Cut(v.Address, "/")
	return VMStatus{Name: v.Name, Machine: machine, Network: v.Network, IP: ip, State: v.State,
		CPUs: v.CPUs, MemoryMiB: v.MemoryMiB, CPUTime: v.CPUTime.Seconds(), Image: v.Image}
}

// VMAction starts, stops, reboots or removes a VM; remove also frees its
// address.
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
	h, err := c.helper(ctx, *m)
	if err != nil {
		return helperapi.VMActionResult{}, fmt.Errorf("machine %q: %w", m.Name, err)
	}
	res, err := h.VMAction(ctx, helperapi.VMActionRequest{Name: name, Action: action, TimeoutSeconds: timeout.Seconds()})
	if err != nil && !(action == "remove" && strings.Contains(err.Error(), "no vm")) {
		return res, err
	}
	if action == "remove" {
		err = inventory.Update(ctx, c.path, func(inv *inventory.Inventory) error {
			inv.VMs = slices.DeleteFunc(inv.VMs, func(o inventory.VM) bool { return o.Name == name })
			return nil
		})
	}
	return res, err
}

// Console attaches to a VM's serial console.
func (c *Cloud) Console(ctx context.Context, name string, in io.Reader, out io.Writer) error {
	inv, err := c.Inventory()
	if err != nil {
		return err
	}
	v, ok := inv.VM(name)
	if !ok {
		return fmt.Errorf("no vm %q; `butter vm list` shows them", name)
	}
	m, ok := inv.Machine(v.Machine)
	if !ok {
		return errors.New("vm " + name + " is on an unknown machine")
	}
	l, err := c.link(ctx, *m, Trust{}, nil)
	if err != nil {
		return fmt.Errorf("machine %q: %w", m.Name, err)
	}
	return l.Console(ctx, name, in, out)
}
