//go:build !linux

package plumbing

import (
	"context"
)

// RunDaemon runs on Linux machines only.
func RunDaemon(ctx context.Context, o DaemonOptions) error { return errNotLinux }
