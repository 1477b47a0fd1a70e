//go:build unix

package holder

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

// StartProcess starts `exe args...` as a holder in a session of its own
// (so a terminal's hang-up or Ctrl-C does not reach it), with this
// process's environment and env, its standard streams on /dev/null. It is
// reaped in the background should it exit while this process runs.
func StartProcess(exe string, env []string, args ...string) error {
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", exe, err)
	}
	go cmd.Wait()
	return nil
}
