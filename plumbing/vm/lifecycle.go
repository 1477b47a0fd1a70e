package vm

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/butter-cloud/butter/assets"
	"github.com/butter-cloud/butter/helperapi"
	"github.com/digitalocean/go-libvirt"
)

// Create defines the VM's domain with its disk and first-boot
// configuration, marks it to autostart, and starts it. On failure it
// leaves nothing behind.
func (m *Manager) Create(ctx context.Context, s Spec) (_ helperapi.VMInfo, err error) {
	if s.Hostname == "" {
		s.Hostname = s.Name
	}
	if err := s.validate(); err != nil {
		return helperapi.VMInfo{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.checkFree(s); err != nil {
		return helperapi.VMInfo{}, err
	}
	// The MAC and the tap's name follow from the VM's address and name,
	// so the helper's port guard knows both from the desired state.
	mac, err := s.mac()
	if err != nil {
		return helperapi.VMInfo{}, err
	}

	var undo []func()
	defer func() {
		if err != nil {
			for _, u := range slices.Backward(undo) {
				u()
			}
		}
	}()
	d := m.domain(s, mac)
	if d.Disk != "" {
		if err := m.makeDisk(s); err != nil {
			return helperapi.VMInfo{}, err
		}
		undo = append(undo, func() { m.deleteVolume(s.Name + ".qcow2") })
	}
	if d.Seed != "" {
		if err := m.writeSeed(s, mac); err != nil {
			return helperapi.VMInfo{}, err
		}
		undo = append(undo, func() { os.Remove(m.seedPath(s.Name)) })
	}
	undo = append(undo, func() { os.Remove(m.logPath(s.Name)) })

	x, err := d.Render()
	if err != nil {
		return helperapi.VMInfo{}, err
	}
	dom, err := m.l.DomainDefineXMLFlags(x, 0)
	if err != nil {
		return helperapi.VMInfo{}, fmt.Errorf("define vm %q: %w", s.Name, err)
	}
	undo = append(undo, func() {
		_ = m.l.DomainDestroy(dom)
		_ = m.l.DomainUndefineFlags(dom, libvirt.DomainUndefineManagedSave|libvirt.DomainUndefineNvram)
	})
	if err := m.setAutostart(dom, true); err != nil {
		return helperapi.VMInfo{}, err
	}
	if err := m.l.DomainCreate(dom); err != nil {
		return helperapi.VMInfo{}, fmt.Errorf("start vm %q: %w", s.Name, err)
	}
	if d.Type == "kvm" && m.kvmUnproven() {
		if ok := m.proveKVM(ctx, dom, s.Name); !ok {
			// This machine's KVM does not run guests: run this one, and
			// every later one, under TCG.
			_ = m.l.DomainDestroy(dom)
			if err := m.l.DomainUndefineFlags(dom, libvirt.DomainUndefineManagedSave|libvirt.DomainUndefineNvram); err != nil {
				return helperapi.VMInfo{}, fmt.Errorf("redefine vm %q for TCG: %w", s.Name, err)
			}
			d.Type = "qemu"
			x, err := d.Render()
			if err != nil {
				return helperapi.VMInfo{}, err
			}
			os.Remove(m.logPath(s.Name))
			if dom, err = m.l.DomainDefineXMLFlags(x, 0); err != nil {
				return helperapi.VMInfo{}, fmt.Errorf("define vm %q for TCG: %w", s.Name, err)
			}
			if err := m.setAutostart(dom, true); err != nil {
				return helperapi.VMInfo{}, err
			}
			if err := m.l.DomainCreate(dom); err != nil {
				return helperapi.VMInfo{}, fmt.Errorf("start vm %q under TCG: %w", s.Name, err)
			}
		}
	}
	return m.info(dom)
}

// mac is the VM's MAC, which follows from its address.
func (s Spec) mac() (net.HardwareAddr, error) {
	mac := helperapi.VMMAC(s.NIC.Address.Addr())
	if mac == nil {
		return nil, fmt.Errorf("vm %q: address %s is not IPv4; give an IPv4 address", s.Name, s.NIC.Address)
	}
	return mac, nil
}

// domain is the libvirt domain Create defines for s: its disk (the
// overlay Create makes, if any), and its kernel boot or its cloud-init
// seed.
func (m *Manager) domain(s Spec, mac net.HardwareAddr) assets.Domain {
	d := assets.Domain{
		Name: s.Name, Type: m.domType, Arch: m.arch, Machine: m.machine,
		MemoryMiB: s.MemoryMiB, CPUs: s.CPUs,
		Bridge: s.NIC.Bridge, Port: helperapi.VMPort(s.Name), MAC: mac.String(), MTU: s.NIC.MTU, ConsoleLog: m.logPath(s.Name),
		Network: s.NIC.Network, Address: s.NIC.Address.String(), Image: s.ImageName, Creator: s.Creator,
		Created: time.Now().UTC().Format(time.RFC3339),
	}
	if s.Disk != nil || s.DiskGiB > 0 {
		d.Disk = m.diskPath(s.Name)
	}
	if s.Kernel != nil {
		d.Kernel, d.Initrd = s.Kernel.Kernel, s.Kernel.Initrd
		d.Cmdline = kernelCmdline(s, mac)
	} else {
		d.Seed = m.seedPath(s.Name)
	}
	return d
}

// Check refuses what Create would refuse, the image aside: a bad spec, a
// name or address that is taken, a network whose bridge is missing, more
// memory than the machine has. A caller checks before fetching the image,
// so that bad input costs no download; Create checks again.
func (m *Manager) Check(ctx context.Context, s Spec) error {
	if s.Hostname == "" {
		s.Hostname = s.Name
	}
	if err := errors.Join(s.problems()...); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.checkFree(s)
}

// checkFree refuses a name or address that is taken, a network whose
// bridge is not on this machine, and more memory than the machine has.
func (m *Manager) checkFree(s Spec) error {
	if _, err := m.l.DomainLookupByName(s.Name); err == nil {
		return fmt.Errorf("vm %q already exists on this machine; choose another name or remove it first", s.Name)
	} else if !libvirt.IsNotFound(err) {
		return fmt.Errorf("look up vm %q: %w", s.Name, err)
	}
	vms, err := m.List(context.Background())
	if err != nil {
		return err
	}
	for _, v := range vms {
		if v.Network == s.NIC.Network && addrOnly(v.Address) == s.NIC.Address.Addr().String() {
			return fmt.Errorf("vm %q: address %s on network %q is taken by vm %q; choose another",
				s.Name, s.NIC.Address.Addr(), s.NIC.Network, v.Name)
		}
	}
	if _, err := net.InterfaceByName(s.NIC.Bridge); err != nil {
		return fmt.Errorf("vm %q: network %q has no bridge %s on this machine; add the machine to the network first",
			s.Name, s.NIC.Network, s.NIC.Bridge)
	}
	avail, err := availableMiB()
	if err != nil {
		return fmt.Errorf("read free memory: %w", err)
	}
	if s.MemoryMiB > avail {
		return fmt.Errorf("vm %q: %d MiB of memory asked, but this machine has %d MiB available; ask for less",
			s.Name, s.MemoryMiB, avail)
	}
	return nil
}

func addrOnly(cidr string) string {
	a, _, _ := strings.Cut(cidr, "/")
	return a
}

// makeDisk makes the VM's disk: a qcow2 overlay of the base image, or a
// blank qcow2 for a kernel-boot VM, through the VMs pool.
func (m *Manager) makeDisk(s Spec) error {
	pool, err := m.l.StoragePoolLookupByName(VMsPool)
	if err != nil {
		return fmt.Errorf("look up storage pool %q: %w", VMsPool, err)
	}
	capacity := uint64(s.DiskGiB) << 30
	backing := ""
	if s.Disk != nil {
		size, err := virtualSize(s.Disk.Path, s.Disk.Format)
		if err != nil {
			return fmt.Errorf("vm %q base image: %w", s.Name, err)
		}
		capacity = max(capacity, size)
		backing = fmt.Sprintf("<backingStore><path>%s</path><format type='%s'/></backingStore>",
			xmlEscape(s.Disk.Path), s.Disk.Format)
	}
	vol := fmt.Sprintf("<volume><name>%s.qcow2</name><capacity unit='bytes'>%d</capacity>"+
		"<target><format type='qcow2'/><permissions><mode>0600</mode></permissions></target>%s</volume>",
		s.Name, capacity, backing)
	if _, err := m.l.StorageVolCreateXML(pool, vol, 0); err != nil {
		return fmt.Errorf("make disk of vm %q: %w", s.Name, err)
	}
	return nil
}

func (m *Manager) deleteVolume(name string) error {
	pool, err := m.l.StoragePoolLookupByName(VMsPool)
	if err != nil {
		return err
	}
	_ = m.l.StoragePoolRefresh(pool, 0)
	vol, err := m.l.StorageVolLookupByName(pool, name)
	if err != nil {
		if isCode(err, libvirt.ErrNoStorageVol) {
			return nil
		}
		return err
	}
	return m.l.StorageVolDelete(vol, libvirt.StorageVolDeleteNormal)
}

func xmlEscape(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// lookup finds a VM of butter's: a domain carrying butter's metadata.
func (m *Manager) lookup(name string) (libvirt.Domain, metadata, error) {
	if err := helperapi.RefuseName("vm", name); err != nil {
		return libvirt.Domain{}, metadata{}, err
	}
	dom, err := m.l.DomainLookupByName(name)
	if err != nil {
		if libvirt.IsNotFound(err) {
			return dom, metadata{}, fmt.Errorf("no vm %q on this machine", name)
		}
		return dom, metadata{}, fmt.Errorf("look up vm %q: %w", name, err)
	}
	md, ok, err := m.metadata(dom)
	if err != nil {
		return dom, md, err
	}
	if !ok {
		return dom, md, fmt.Errorf("domain %q was not made by butter; manage it with virsh", name)
	}
	return dom, md, nil
}

// Start starts a stopped VM, and marks it to run after a boot again.
func (m *Manager) Start(ctx context.Context, name string) error {
	dom, _, err := m.lookup(name)
	if err != nil {
		return err
	}
	if err := m.setAutostart(dom, true); err != nil {
		return err
	}
	if st, _, err := m.l.DomainGetState(dom, 0); err == nil && libvirt.DomainState(st) == libvirt.DomainRunning {
		return nil
	}
	if err := m.l.DomainCreate(dom); err != nil {
		return fmt.Errorf("start vm %q: %w", name, err)
	}
	return nil
}

// Stop asks the guest to shut down and, if it has not within timeout,
// pulls the plug. It reports whether it had to. A stopped VM stays
// stopped across a boot of its machine.
func (m *Manager) Stop(ctx context.Context, name string, timeout time.Duration) (forced bool, err error) {
	dom, _, err := m.lookup(name)
	if err != nil {
		return false, err
	}
	if err := m.setAutostart(dom, false); err != nil {
		return false, err
	}
	if !m.running(dom) {
		return false, nil
	}
	if err := m.l.DomainShutdown(dom); err != nil && m.running(dom) {
		return false, fmt.Errorf("shut down vm %q: %w", name, err)
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for m.running(dom) {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-deadline.C:
			if err := m.l.DomainDestroy(dom); err != nil && m.running(dom) {
				return true, fmt.Errorf("force off vm %q: %w", name, err)
			}
			return true, nil
		case <-tick.C:
		}
	}
	return false, nil
}

func (m *Manager) running(dom libvirt.Domain) bool {
	st, _, err := m.l.DomainGetState(dom, 0)
	return err == nil && libvirt.DomainState(st) != libvirt.DomainShutoff && libvirt.DomainState(st) != libvirt.DomainCrashed
}

// Reboot asks the guest to reboot, or resets it when it does not listen
// (force).
func (m *Manager) Reboot(ctx context.Context, name string, force bool) error {
	dom, _, err := m.lookup(name)
	if err != nil {
		return err
	}
	if force {
		err = m.l.DomainReset(dom, 0)
	} else {
		err = m.l.DomainReboot(dom, 0)
	}
	if err != nil {
		return fmt.Errorf("reboot vm %q: %w", name, err)
	}
	return nil
}

// Remove destroys the VM and deletes its domain, disk, seed and console
// log. The base image stays cached. What is already gone is not an error.
func (m *Manager) Remove(ctx context.Context, name string) error {
	// The name becomes paths to delete: never an unchecked one.
	if err := helperapi.RefuseName("vm", name); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	dom, _, err := m.lookup(name)
	if err == nil {
		if m.running(dom) {
			if err := m.l.DomainDestroy(dom); err != nil && m.running(dom) {
				return fmt.Errorf("force off vm %q: %w", name, err)
			}
		}
		if err := m.l.DomainUndefineFlags(dom, libvirt.DomainUndefineManagedSave|libvirt.DomainUndefineNvram); err != nil {
			return fmt.Errorf("undefine vm %q: %w", name, err)
		}
	} else if _, lerr := m.l.DomainLookupByName(name); !libvirt.IsNotFound(lerr) {
		return err // exists but is not ours, or libvirt failed
	}
	var errs []error
	if err := m.deleteVolume(name + ".qcow2"); err != nil {
		errs = append(errs, fmt.Errorf("delete disk of vm %q: %w", name, err))
	}
	for _, p := range []string{m.seedPath(name), m.logPath(name)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
