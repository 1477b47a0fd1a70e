// Package vm runs the helper's virtual machines as libvirt domains, talking
// to the machine's libvirtd through go-libvirt. libvirt is the source of
// truth: everything butter needs to know about a VM is kept in its domain's
// metadata, so virsh and virt-manager keep working beside it.
package vm

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/butter-cloud/butter/helperapi"
)

// Spec describes a VM to create.
type Spec struct {
	Name      string
	CPUs      int
	MemoryMiB int
	// DiskGiB is the size the disk grows to; for a disk image it is at
	// least the image's own size. A kernel-boot VM gets a blank disk only
	// when DiskGiB is set.
	DiskGiB int

	// Exactly one of Disk and Kernel.
	Disk   *BaseDisk
	Kernel *KernelBoot
	// ImageName is what the user asked for (catalog name, URL, file), kept
	// in the metadata.
	ImageName string

	NIC NIC

	// Hostname defaults to Name.
	Hostname string
	// SSHKeys are authorized for the guest's default user (disk images).
	SSHKeys []string
	// HostKey is the guest's SSH host key (disk images).
	HostKey helperapi.PrivateKey
	// Creator is who asked for the VM, e.g. alice@laptop.
	Creator string
}

// BaseDisk is a cached base image the VM's disk is an overlay of.
type BaseDisk struct {
	Path   string
	Format string // qcow2 or raw
}

// KernelBoot boots a kernel and initrd directly.
type KernelBoot struct {
	Kernel, Initrd string
	Cmdline        string // the user's own arguments, after butter's ip=
}

// NIC is the VM's network card on a private network's bridge.
type NIC struct {
	Network string       // the private network's name
	Bridge  string       // its bridge on this machine
	MTU     int          // its MTU
	Subnet  netip.Prefix // its subnet
	Address netip.Prefix // the VM's address, inside Subnet
	Gateway netip.Addr   // optional
	DNS     []netip.Addr // name servers, optional
}

// validate reports every problem with s at once.
func (s Spec) validate() error {
	errs := s.problems()
	what := fmt.Sprintf("vm %q", s.Name)
	switch {
	case (s.Disk == nil) == (s.Kernel == nil):
		errs = append(errs, fmt.Errorf("%s: give exactly one of a disk image and a kernel to boot", what))
	case s.Kernel != nil && (s.Kernel.Kernel == "" || s.Kernel.Initrd == ""):
		errs = append(errs, fmt.Errorf("%s: a kernel boot needs both kernel and initrd", what))
	case s.Disk != nil && s.Disk.Format != "qcow2" && s.Disk.Format != "raw":
		errs = append(errs, fmt.Errorf("%s: base image format %q: want qcow2 or raw", what, s.Disk.Format))
	}
	return errors.Join(errs...)
}

// problems lists what is wrong with s, its image aside.
func (s Spec) problems() []error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	errs = append(errs, helperapi.CheckVM(s.Name, s.CPUs, s.MemoryMiB, s.DiskGiB)...)
	what := fmt.Sprintf("vm %q", s.Name)
	n := s.NIC
	if n.Bridge == "" || n.Network == "" {
		bad("%s: the NIC needs a network and its bridge", what)
	}
	if n.MTU < 576 || n.MTU > 9000 {
		bad("%s: NIC MTU %d: want 576 to 9000", what, n.MTU)
	}
	switch {
	case !n.Address.IsValid():
		bad("%s: no address; give one inside the network's subnet %s", what, n.Subnet)
	case n.Subnet.IsValid() && (!n.Subnet.Contains(n.Address.Addr()) || n.Address.Bits() != n.Subnet.Bits()):
		bad("%s: address %s is outside network %q's subnet %s; pick one inside it, with /%d", what,
			n.Address, n.Network, n.Subnet, n.Subnet.Bits())
	case n.Subnet.IsValid() && (n.Address.Addr() == n.Subnet.Addr() || n.Address.Addr() == lastAddr(n.Subnet)):
		bad("%s: address %s is the subnet's network or broadcast address; pick a host address", what, n.Address.Addr())
	}
	if n.Gateway.IsValid() && n.Subnet.IsValid() && !n.Subnet.Contains(n.Gateway) {
		bad("%s: gateway %s is outside the subnet %s", what, n.Gateway, n.Subnet)
	}
	return errs
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := (uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
