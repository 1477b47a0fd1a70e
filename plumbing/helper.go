package plumbing

import (
	"log/slog"

	"github.com/butter-cloud/butter/plumbing/vm"
)

// Options configure a Helper.
type Options struct {
	// StateDir holds the private key and the applied spec
	// (default /var/lib/butter).
	StateDir string
	// Log receives what the helper does; never a secret.
	Log *slog.Logger
	// VM configures the VM side: libvirtd's socket, storage, accelerator.
	VM vm.Options
	// ImageMirror replaces the image catalog's servers (see images.Store).
	ImageMirror string
}

// DaemonOptions configure RunDaemon.
type DaemonOptions struct {
	StateDir    string
	Socket      string
	Log         *slog.Logger
	VM          vm.Options
	ImageMirror string
}
