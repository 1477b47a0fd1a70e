package plumbing

import "time"

// DefaultStopTimeout is how long a stop waits for the guest to shut down
// before pulling the plug.
const DefaultStopTimeout = 30 * time.Second

// VMRequest asks the helper for a VM.
type VMRequest struct {
	Name      string `json:"name"`
	CPUs      int    `json:"cpus,omitempty"`
	MemoryMiB int    `json:"memory_mib,omitempty"`
	DiskGiB   int    `json:"disk_gib,omitempty"`
	// Image is a source as images.ParseSource reads it: a catalog name, an
	// URL, a file, or kernel=PATH,initrd=PATH[,cmdline=ARGS].
	Image string `json:"image"`
	// Network names a network of the applied spec.
	Network string `json:"network"`
	// Address is the VM's address on the network: 10.0.0.5 or 10.0.0.5/24.
	Address  string   `json:"address"`
	Gateway  string   `json:"gateway,omitempty"`
	Hostname string   `json:"hostname,omitempty"`
	SSHKeys  []string `json:"ssh_keys,omitempty"`
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
