//go:build !linux

package plumbing

import (
	"context"
	"log/slog"

	"github.com/butter-cloud/butter/plumbing/vm"
)

// DaemonOptions configure RunDaemon.
type DaemonOptions struct {
	StateDir    string
	Socket      string
	Log         *slog.Logger
	VM          vm.Options
	ImageMirror string
}

// RunDaemon runs on Linux machines only.
func RunDaemon(ctx context.Context, o DaemonOptions) error { return errNotLinux }
