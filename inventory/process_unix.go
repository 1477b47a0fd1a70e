//go:build unix

package inventory

import (
	"errors"
	"syscall"
)

// processAlive tells whether a process with this ID runs on this host
// (one of another user's counts).
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
