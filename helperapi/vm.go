package helperapi

import (
	"errors"
	"fmt"
	"time"
)

// The defaults of a new VM, in one place: the CLI, the dashboard and the
// helper all take them from here.
const (
	DefaultCPUs      = 1
	DefaultMemoryMiB = 512
)

// Accelerators a machine can be told to use for its VMs.
const (
	AccelAuto = "auto" // KVM where /dev/kvm answers (and proves itself), TCG otherwise
	AccelKVM  = "kvm"
	AccelTCG  = "tcg"
)

// CheckAccel checks an accelerator's name ("" means AccelAuto).
func CheckAccel(a string) error {
	switch a {
	case "", AccelAuto, AccelKVM, AccelTCG:
		return nil
	}
	return fmt.Errorf("accel %q: choose %q, %q or %q", a, AccelAuto, AccelKVM, AccelTCG)
}

// DefaultStopTimeout is how long a stop waits for the guest to shut down
// before pulling the plug.
const DefaultStopTimeout = 30 * time.Second

// VMRequest asks the helper for a VM.
type VMRequest struct {
	Name      string `json:"name"`
	CPUs      int    `json:"cpus,omitempty"`
	MemoryMiB int    `json:"memory_mib,omitempty"`
	DiskGiB   int    `json:"disk_gib,omitempty"`
	// Image is a source as ParseSource reads it: a catalog name, an
	// URL, a file, or kernel=PATH,initrd=PATH[,cmdline=ARGS].
	Image string `json:"image"`
	// Network names a network of the applied spec.
	Network string `json:"network"`
	// Address is the VM's address on the network: 10.0.0.5 or 10.0.0.5/24.
	Address string `json:"address"`
	// Gateway is the VM's default route and DNS the name servers it is
	// told (vm create: the network's gateway for both).
	Gateway  string   `json:"gateway,omitempty"`
	DNS      []string `json:"dns,omitempty"`
	Hostname string   `json:"hostname,omitempty"`
	SSHKeys  []string `json:"ssh_keys,omitempty"`
	// HostKey is the VM's SSH host key, made by the operator so that its
	// public half is known before the first connection (disk images, by
	// cloud-init). It crosses only inside this request, on the encrypted
	// SSH channel, and is written only into the VM's seed.
	HostKey PrivateKey `json:"host_key,omitempty"`
	// Cmdline is added to a kernel-boot VM's command line.
	Cmdline string `json:"cmdline,omitempty"`
	Creator string `json:"creator,omitempty"`
}

// VMActionRequest asks for a lifecycle action on a VM.
type VMActionRequest struct {
	Name   string `json:"name"`
	Action string `json:"action"` // start, stop, reboot, remove
	// TimeoutSeconds bounds a graceful stop (DefaultStopTimeout if 0).
	TimeoutSeconds float64 `json:"timeout_seconds,omitempty"`
	// Force resets instead of asking the guest to reboot.
	Force bool `json:"force,omitempty"`
}

// VMActionResult is what an action did.
type VMActionResult struct {
	// Forced is true when a stop had to pull the plug.
	Forced bool `json:"forced"`
}

// VMInfo is a VM as the machine's libvirt knows it.
type VMInfo struct {
	Name      string        `json:"name"`
	State     string        `json:"state"` // running, shut off, paused, …
	CPUs      int           `json:"cpus"`
	MemoryMiB int           `json:"memory_mib"`
	CPUTime   time.Duration `json:"cpu_time_ns"`
	Network   string        `json:"network"`
	Address   string        `json:"address"`
	Image     string        `json:"image"`
	Creator   string        `json:"creator"`
	Created   time.Time     `json:"created,omitzero"`
	MAC       string        `json:"mac"`
	Autostart bool          `json:"autostart"`
}

// VMEvent is a change in a VM's life.
type VMEvent struct {
	VM    string `json:"vm"`
	Event string `json:"event"` // defined, started, stopped, …
	State string `json:"state"`
}

// The bounds of a VM's size.
const (
	MaxCPUs      = 64
	MinMemoryMiB = 64
	MaxDiskGiB   = 16384
)

// WithDefaults fills in what the request leaves out.
func (r VMRequest) WithDefaults() VMRequest {
	if r.CPUs == 0 {
		r.CPUs = DefaultCPUs
	}
	if r.MemoryMiB == 0 {
		r.MemoryMiB = DefaultMemoryMiB
	}
	return r
}

// Check reports, all at once, every problem of the request that can be
// seen without the machine: the VM's name and size, the network's name,
// the image source. It is called before anything moves (no address is
// reserved, no image uploaded); the helper checks again, and checks what
// needs the machine (the network is there, the address is free).
func (r VMRequest) Check() error {
	errs := CheckVM(r.Name, r.CPUs, r.MemoryMiB, r.DiskGiB)
	if err := CheckName("network", r.Network); err != nil {
		errs = append(errs, fmt.Errorf("vm %q: %w", r.Name, err))
	}
	if _, err := ParseSource(r.Image); err != nil {
		errs = append(errs, fmt.Errorf("vm %q: %w", r.Name, err))
	}
	if r.HostKey != "" {
		if _, err := r.HostKey.PublicKey(); err != nil {
			errs = append(errs, fmt.Errorf("vm %q: %w", r.Name, err))
		}
	}
	return errors.Join(errs...)
}

// CheckVM lists what is wrong with a VM's name and size.
func CheckVM(name string, cpus, memoryMiB, diskGiB int) []error {
	var errs []error
	if err := CheckName("vm", name); err != nil {
		errs = append(errs, err)
	}
	what := fmt.Sprintf("vm %q", name)
	if cpus < 1 || cpus > MaxCPUs {
		errs = append(errs, fmt.Errorf("%s: %d CPUs: want 1 to %d", what, cpus, MaxCPUs))
	}
	if memoryMiB < MinMemoryMiB {
		errs = append(errs, fmt.Errorf("%s: %d MiB of memory: want at least %d", what, memoryMiB, MinMemoryMiB))
	}
	if diskGiB < 0 || diskGiB > MaxDiskGiB {
		errs = append(errs, fmt.Errorf("%s: disk of %d GiB: want 0 to %d", what, diskGiB, MaxDiskGiB))
	}
	return errs
}
