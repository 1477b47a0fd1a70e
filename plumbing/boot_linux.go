package plumbing

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// bootFile, in the state folder, holds the boot (the kernel's boot_id)
// whose VMs the helper has started: once per boot, never on a restart of
// the daemon alone, where a VM that is off was stopped by someone.
const bootFile = "vms-started-boot"

// bootIDPath is where the kernel tells its boot.
const bootIDPath = "/proc/sys/kernel/random/boot_id"

// libvirtWait bounds how long a boot waits for libvirtd to answer.
const libvirtWait = 2 * time.Minute

// startVMsAtBoot, once the networks are restored after a boot of the
// machine, starts the VMs marked to autostart that libvirtd could not
// start (their bridges did not exist yet when it started).
func (h *Helper) startVMsAtBoot(ctx context.Context, log *slog.Logger) {
	b, err := os.ReadFile(bootIDPath)
	if err != nil {
		log.Error("VMs not started at boot: no boot id", "err", err)
		return
	}
	boot := strings.TrimSpace(string(b))
	path := filepath.Join(h.state.dir, bootFile)
	if done, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(done)) == boot {
		return // this boot's VMs were started; the daemon restarted
	}
	wait := time.Second
	deadline := time.Now().Add(libvirtWait)
	for {
		m, err := h.vmManager(ctx)
		if err == nil {
			started, err := m.StartAtBoot(ctx)
			if len(started) > 0 {
				log.Info("VMs started at boot", "vms", started)
			}
			if err != nil {
				log.Error("VMs not started at boot", "err", err)
			}
			break
		}
		if time.Now().After(deadline) {
			log.Info("no VMs started at boot: libvirt does not answer", "err", err)
			return // the next daemon start tries again
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 10*time.Second)
	}
	if err := os.WriteFile(path, []byte(boot+"\n"), 0o600); err != nil {
		log.Error("record the boot whose VMs were started", "err", fmt.Errorf("write %s: %w", path, err))
	}
}
