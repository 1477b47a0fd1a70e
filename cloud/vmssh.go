package cloud

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/inventory"
)

// tcpDialer is a Link that opens TCP connections from its machine.
type tcpDialer interface {
	DialTCP(ctx context.Context, addr string) (net.Conn, error)
}

// SSHPort is the port `vm ssh` reaches on a VM.
const SSHPort = 22

// vmOn finds VM name and its machine in the inventory.
func (c *Cloud) vmOn(name string) (inventory.VM, inventory.Machine, error) {
	inv, err := c.Inventory()
	if err != nil {
		return inventory.VM{}, inventory.Machine{}, err
	}
	v, ok := inv.VM(name)
	if !ok {
		return inventory.VM{}, inventory.Machine{}, fmt.Errorf("no vm %q; `butter vm list` shows them", name)
	}
	m, ok := inv.Machine(v.Machine)
	if !ok {
		return inventory.VM{}, inventory.Machine{}, fmt.Errorf("vm %q is on machine %q, which is not in the cloud", name, v.Machine)
	}
	return *v, *m, nil
}

// DialVM opens a TCP connection to port of VM name from its machine: a
// direct-tcpip channel on the operator's SSH connection to the machine,
// which reaches the VM's address on its network's bridge (through the
// network's gateway address there). A machine that cannot be reached
// fails it at once with an *AwayError.
func (c *Cloud) DialVM(ctx context.Context, name string, port int) (net.Conn, error) {
	v, m, err := c.vmOn(name)
	if err != nil {
		return nil, err
	}
	const next = "try again when it is back (`butter machine list` shows whether it answers)"
	l, err := c.link(ctx, m, Trust{}, nil)
	if err != nil {
		return nil, onMachine(ctx, m.Name, "vm proxy", next, err)
	}
	d, ok := l.(tcpDialer)
	if !ok {
		return nil, fmt.Errorf("vm %q: the connection to machine %q cannot forward TCP", name, m.Name)
	}
	addr := net.JoinHostPort(v.Address.String(), strconv.Itoa(port))
	conn, err := d.DialTCP(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("vm %q: machine %q did not reach %s (is the VM running and its sshd up? `butter vm list` shows its state): %w",
			name, m.Name, addr, err)
	}
	return conn, nil
}

// SSHTarget is what the system ssh needs to reach a VM through
// `butter vm proxy`.
type SSHTarget struct {
	// Name is the VM's name: ssh's host and its HostKeyAlias.
	Name string
	// User is the login user: the image's default user for a catalog
	// image; "" leaves it to ssh (its -l, User, or the local user).
	User string
	// Address is the VM's address on its network, for people.
	Address netip.Addr
	// KnownHosts is the VMs' known_hosts, which has the VM's host key.
	KnownHosts string
	// Extra are more ssh options (KEY=VALUE) for SSHArgs, after butter's
	// own, which win: ssh takes an option's first value.
	Extra []string
}

// ErrNoHostKey is in SSHTargets' error for a VM whose host key butter
// does not know.
var ErrNoHostKey = errors.New("no host key known")

// SSHTargets gives the SSH targets of the VMs named (every VM of the
// inventory when none is), in the inventory's order. The login user comes
// from each VM's image, asked of its machine within timeout: a VM whose
// machine does not answer, or whose image is no catalog image, has none.
// A named VM the inventory lacks, or whose host key the VMs' known_hosts
// lacks, is an error (wrapping ErrNoHostKey for the latter); without
// names such VMs are left out and named in the error, next to the targets.
func (c *Cloud) SSHTargets(ctx context.Context, names []string, timeout time.Duration) ([]SSHTarget, error) {
	inv, err := c.Inventory()
	if err != nil {
		return nil, err
	}
	var vms []inventory.VM
	if len(names) == 0 {
		vms = inv.VMs
	}
	for _, n := range names {
		v, ok := inv.VM(n)
		if !ok {
			return nil, fmt.Errorf("no vm %q; `butter vm list` shows them", n)
		}
		vms = append(vms, *v)
	}
	images := c.vmImages(ctx, vms, timeout)
	known := inventory.KnownHostsPath(c.path)
	var out []SSHTarget
	var errs []error
	for _, v := range vms {
		key, err := inventory.VMHostKey(c.path, v.Name)
		if err == nil && key == nil {
			err = fmt.Errorf("vm %q: %w in %s (a VM made by another operator, or from a kernel and initrd, has none here; `butter vm console %s` reaches it)",
				v.Name, ErrNoHostKey, known, v.Name)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, SSHTarget{Name: v.Name, User: helperapi.CatalogUser(images[v.Name]), Address: v.Address, KnownHosts: known})
	}
	if len(names) > 0 && len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, errors.Join(errs...)
}

// vmImages asks the machines of vms, in parallel and each within
// timeout, for the VMs' images, by VM name; what does not answer is left
// out.
func (c *Cloud) vmImages(ctx context.Context, vms []inventory.VM, timeout time.Duration) map[string]string {
	inv, err := c.Inventory()
	if err != nil {
		return nil
	}
	want := map[string]bool{}
	var machines []string
	for _, v := range vms {
		if !want[v.Machine] {
			machines = append(machines, v.Machine)
		}
		want[v.Machine] = true
	}
	var mu sync.Mutex
	images := map[string]string{}
	_ = each(machines, func(name string) error {
		m, ok := inv.Machine(name)
		if !ok {
			return nil
		}
		list, err := c.vmsOn(ctx, *m, timeout)
		mu.Lock()
		defer mu.Unlock()
		for _, i := range list {
			images[i.Name] = i.Image
		}
		return err
	})
	return images
}
