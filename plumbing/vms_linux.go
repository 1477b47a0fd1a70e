package plumbing

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/plumbing/images"
	"github.com/butter-cloud/butter/plumbing/vm"
)

// vmManager returns the machine's VM manager, connecting to libvirtd on
// first use and again after libvirtd went away.
func (h *Helper) vmManager(ctx context.Context) (*vm.Manager, error) {
	h.vmMu.Lock()
	defer h.vmMu.Unlock()
	if h.vms != nil && h.vms.Connected() {
		return h.vms, nil
	}
	if h.vms != nil {
		h.vms.Close()
		h.vms = nil
	}
	m, err := vm.Open(ctx, h.vmOpts)
	if err != nil {
		return nil, err
	}
	h.vms = m
	return m, nil
}

func (h *Helper) imageStore() *images.Store {
	h.vmMu.Lock()
	defer h.vmMu.Unlock()
	if h.images == nil {
		dir := h.vmOpts.ImagesDir
		if dir == "" {
			dir = vm.DefaultImagesDir
		}
		h.images = images.New(dir)
		h.images.Mirror = h.imageMirror
		h.images.MaxImageSize = h.vmOpts.MaxImageSize
	}
	return h.images
}

// CreateVM makes the image ready (fetching or taking an upload) and
// creates the VM on the named network with the requested address. Bad
// input is refused before any image moves.
func (h *Helper) CreateVM(ctx context.Context, req helperapi.VMRequest, progress func(helperapi.Progress)) (helperapi.VMInfo, error) {
	req = req.WithDefaults()
	if err := req.Check(); err != nil {
		return helperapi.VMInfo{}, &helperapi.RemoteError{Code: helperapi.CodeInvalid, Message: err.Error()}
	}
	src, err := helperapi.ParseSource(req.Image)
	if err != nil {
		return helperapi.VMInfo{}, fmt.Errorf("vm %q: %w", req.Name, err)
	}
	spec, err := h.vmSpec(req)
	if err != nil {
		return helperapi.VMInfo{}, err
	}
	m, err := h.vmManager(ctx)
	if err != nil {
		return helperapi.VMInfo{}, err
	}
	if err := m.Check(ctx, spec); err != nil {
		return helperapi.VMInfo{}, err
	}
	store := h.imageStore()
	for kind, f := range map[string]*helperapi.File{helperapi.BlobKernel: src.Kernel, helperapi.BlobInitrd: src.Initrd} {
		if f == nil {
			continue
		}
		if sum, ok := strings.CutPrefix(f.Path, "sha256:"); ok {
			// Uploaded before by the operator: known by content.
			size, ok := store.BlobSize(kind, sum)
			if !ok {
				return helperapi.VMInfo{}, fmt.Errorf("vm %q: the %s %s is not on this machine; upload it first", req.Name, kind, f.Path)
			}
			f.SHA256, f.Size = sum, size
		}
	}
	if f := src.File; f != nil {
		if sum, ok := strings.CutPrefix(f.Path, "sha256:"); ok {
			f.SHA256 = sum // uploaded before; the store finds it by content
		}
	}
	for _, f := range src.Files() {
		closeFile, err := localFile(f)
		if err != nil {
			return helperapi.VMInfo{}, fmt.Errorf("vm %q: %w", req.Name, err)
		}
		defer closeFile()
	}
	img, err := store.Ensure(ctx, src, progress)
	if err != nil {
		return helperapi.VMInfo{}, err
	}
	if err := withImage(&spec, img, req.Cmdline); err != nil {
		return helperapi.VMInfo{}, err
	}
	return m.Create(ctx, spec)
}

// vmSpec is the VM a request makes, its image aside, on its network of
// the applied spec.
func (h *Helper) vmSpec(req helperapi.VMRequest) (vm.Spec, error) {
	nic, err := h.vmNIC(req)
	if err != nil {
		return vm.Spec{}, err
	}
	return vm.Spec{
		Name: req.Name, CPUs: req.CPUs, MemoryMiB: req.MemoryMiB, DiskGiB: req.DiskGiB,
		NIC: nic, SSHKeys: req.SSHKeys, HostKey: req.HostKey, Creator: req.Creator, Hostname: req.Hostname,
	}, nil
}

// withImage boots spec from img: an overlay of its disk, or its kernel
// and initrd with cmdline added to the image's own.
func withImage(spec *vm.Spec, img helperapi.Image, cmdline string) error {
	spec.ImageName = img.Name + " (" + shortID(img.ID) + ")"
	switch {
	case img.Disk != nil:
		spec.Disk = &vm.BaseDisk{Path: img.Disk.Path, Format: string(img.Format)}
	case img.Kernel != nil && img.Initrd != nil:
		cmdline := strings.TrimSpace(img.Cmdline + " " + cmdline)
		spec.Kernel = &vm.KernelBoot{Kernel: img.Kernel.Path, Initrd: img.Initrd.Path, Cmdline: cmdline}
	default:
		return fmt.Errorf("vm %q: image %s has neither a disk nor a kernel with an initrd", spec.Name, img.Name)
	}
	return nil
}

func shortID(id string) string { return id[:min(12, len(id))] }

// localFile fills in an upload that names a file on this machine (the
// helper run by hand, or tests); an upload from the operator arrives with
// its SHA256 already set and its content already in the store. The caller
// closes the file when the store is done with it.
func localFile(f *helperapi.File) (closeFile func(), err error) {
	if f.SHA256 != "" {
		return func() {}, nil
	}
	file, err := os.Open(f.Path)
	if err != nil {
		return nil, fmt.Errorf("image file %s: %w (a path on the operator's computer must be uploaded by butter)", f.Path, err)
	}
	h := sha256.New()
	n, err := io.Copy(h, file)
	if err == nil {
		_, err = file.Seek(0, io.SeekStart)
	}
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("read image file %s: %w", f.Path, err)
	}
	f.Size, f.SHA256, f.Body = n, hex.EncodeToString(h.Sum(nil)), file
	return func() { file.Close() }, nil
}

// vmNIC places a VM on a network of the applied spec.
func (h *Helper) vmNIC(req helperapi.VMRequest) (vm.NIC, error) {
	h.mu.Lock()
	spec, ok, err := h.state.spec()
	h.mu.Unlock()
	if err != nil {
		return vm.NIC{}, err
	}
	if !ok {
		return vm.NIC{}, fmt.Errorf("vm %q: this machine has no networks yet; create network %q first", req.Name, req.Network)
	}
	var net *helperapi.Network
	for i := range spec.Networks {
		if spec.Networks[i].Name == req.Network {
			net = &spec.Networks[i]
		}
	}
	if net == nil {
		return vm.NIC{}, fmt.Errorf("vm %q: network %q is not on this machine; add the machine to it first", req.Name, req.Network)
	}
	p := makePlan(spec, h.machine(spec))
	var rep helperapi.NetworkReport
	for _, n := range p.Networks {
		if n.Name == net.Name {
			rep = n
		}
	}
	nic := vm.NIC{Network: net.Name, Bridge: rep.Bridge, MTU: rep.MTU, Subnet: net.Subnet}
	addr, err := parseVMAddress(req.Address, net.Subnet)
	if err != nil {
		return vm.NIC{}, fmt.Errorf("vm %q: %w", req.Name, err)
	}
	if err := helperapi.CheckVMAddress(net.Name, net.Subnet, addr.Addr()); err != nil {
		return vm.NIC{}, fmt.Errorf("vm %q: %w", req.Name, err)
	}
	nic.Address = addr
	if req.Gateway != "" {
		if nic.Gateway, err = netip.ParseAddr(req.Gateway); err != nil {
			return vm.NIC{}, fmt.Errorf("vm %q gateway %q: %w", req.Name, req.Gateway, err)
		}
	}
	for _, d := range req.DNS {
		a, err := netip.ParseAddr(d)
		if err != nil {
			return vm.NIC{}, fmt.Errorf("vm %q name server %q: %w", req.Name, d, err)
		}
		nic.DNS = append(nic.DNS, a)
	}
	return nic, nil
}

// parseVMAddress takes 10.0.0.5 (the prefix length comes from the
// network's subnet) or 10.0.0.5/24.
func parseVMAddress(s string, subnet netip.Prefix) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, fmt.Errorf("no address; give one inside the network's subnet %s", subnet)
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("address %q: want an IPv4 address such as 10.0.0.5", s)
	}
	if !subnet.IsValid() {
		return netip.Prefix{}, fmt.Errorf("address %q: the network has no subnet, so give the prefix length too (e.g. %s/24)", s, a)
	}
	return netip.PrefixFrom(a, subnet.Bits()), nil
}

// ListVMs lists the machine's VMs.
func (h *Helper) ListVMs(ctx context.Context) ([]helperapi.VMInfo, error) {
	m, err := h.vmManager(ctx)
	if err != nil {
		return nil, err
	}
	return m.List(ctx)
}

// VMAction starts, stops, reboots or removes a VM.
func (h *Helper) VMAction(ctx context.Context, a helperapi.VMActionRequest) (helperapi.VMActionResult, error) {
	if err := helperapi.RefuseName("vm", a.Name); err != nil {
		return helperapi.VMActionResult{}, err
	}
	m, err := h.vmManager(ctx)
	if err != nil {
		return helperapi.VMActionResult{}, err
	}
	var res helperapi.VMActionResult
	switch a.Action {
	case "start":
		err = m.Start(ctx, a.Name)
	case "stop":
		timeout := time.Duration(a.TimeoutSeconds * float64(time.Second))
		if timeout <= 0 {
			timeout = helperapi.DefaultStopTimeout
		}
		res.Forced, err = m.Stop(ctx, a.Name, timeout)
	case "reboot":
		err = m.Reboot(ctx, a.Name, a.Force)
	case "remove":
		err = m.Remove(ctx, a.Name)
	default:
		err = fmt.Errorf("vm action %q: choose start, stop, reboot or remove", a.Action)
	}
	return res, err
}

// WatchVMs streams the machine's VM lifecycle events until ctx ends or
// libvirtd hangs up.
func (h *Helper) WatchVMs(ctx context.Context) (<-chan helperapi.VMEvent, error) {
	m, err := h.vmManager(ctx)
	if err != nil {
		return nil, err
	}
	return m.Events(ctx)
}

// Images lists the cached images.
func (h *Helper) Images(ctx context.Context) ([]helperapi.Image, error) {
	return h.imageStore().List(ctx)
}
