package vm

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/digitalocean/go-libvirt"
)

// A /dev/kvm that answers may still not run guests (it pauses them with an
// internal error, or they hang early): with AccelAuto, the first guest
// started under KVM proves it, and the verdict is kept beside the VMs'
// files so that it is reached once per machine.
const (
	kvmUnknown = ""
	kvmWorks   = "works"
	kvmBroken  = "broken"
)

// kvmProofTime is how long the first KVM guest has to show it runs: it
// must stay running and write to its serial console.
var kvmProofTime = 20 * time.Second

func (m *Manager) verdictPath() string { return filepath.Join(m.o.VMsDir, ".kvm-verdict") }

func (m *Manager) kvmVerdict() string {
	b, err := os.ReadFile(m.verdictPath())
	if err != nil {
		return kvmUnknown
	}
	return string(b)
}

func (m *Manager) kvmUnproven() bool {
	return m.o.Accel == helperapi.AccelAuto && m.kvmVerdict() == kvmUnknown
}

// proveKVM watches the first guest started under KVM: paused (KVM's
// internal errors pause a guest), stopped, or silent on its console for
// kvmProofTime means KVM does not work here. It records the verdict, and
// on a broken KVM switches the manager to TCG.
func (m *Manager) proveKVM(ctx context.Context, dom libvirt.Domain, name string) bool {
	works := false
	deadline := time.Now().Add(kvmProofTime)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		st, _, err := m.l.DomainGetState(dom, 0)
		if err != nil || libvirt.DomainState(st) != libvirt.DomainRunning {
			break
		}
		if fi, err := os.Stat(m.logPath(name)); err == nil && fi.Size() > 0 {
			works = true
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if ctx.Err() != nil {
		return true // no verdict: the caller gave up
	}
	verdict := kvmBroken
	if works {
		verdict = kvmWorks
	} else {
		m.domType = "qemu"
	}
	_ = os.WriteFile(m.verdictPath(), []byte(verdict), 0o644)
	return works
}
