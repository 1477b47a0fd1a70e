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

// KVMProofTime is how long the first KVM guest has to show it runs: it
// must stay running and write to its serial console.
const KVMProofTime = 20 * time.Second

// VerdictFile is the file, in the VMs folder, that keeps this machine's
// KVM verdict ("works" or "broken") once the first guest proved it.
const VerdictFile = ".kvm-verdict"

// domainType decides a machine's libvirt domain type ("kvm" or "qemu",
// which is TCG) from the accelerator asked for and the verdict recorded by
// an earlier proof. With AccelAuto and no verdict yet, KVM is tried where
// /dev/kvm answers, and the first guest proves it (see proveKVM).
func domainType(accel, verdict string, kvmAnswers func() bool) (string, error) {
	switch accel {
	case helperapi.AccelKVM:
		return "kvm", nil
	case helperapi.AccelTCG:
		return "qemu", nil
	case helperapi.AccelAuto:
		switch verdict {
		case kvmBroken:
			return "qemu", nil
		case kvmWorks:
			return "kvm", nil
		}
		if kvmAnswers() {
			return "kvm", nil
		}
		return "qemu", nil
	}
	return "", helperapi.CheckAccel(accel)
}

// Accelerator is what a VM made now on this machine runs under, as
// helperapi.Facts reports it: AccelKVM (asked for, or proven), AccelTCG
// (asked for, KVM found broken, or no /dev/kvm), or "" while KVM is not
// proven either way.
func Accelerator(o Options) string {
	o = o.withDefaults()
	return accelerator(o.Accel, (&Manager{o: o}).kvmVerdict(), KVMAnswers)
}

func accelerator(accel, verdict string, kvmAnswers func() bool) string {
	t, err := domainType(accel, verdict, kvmAnswers)
	switch {
	case err != nil:
		return ""
	case t == "qemu":
		return helperapi.AccelTCG
	case accel == helperapi.AccelAuto && verdict == kvmUnknown:
		return ""
	}
	return helperapi.AccelKVM
}

// proofVerdict reads one look at the guest under proof: a guest that is
// not running has failed; one that wrote to its console has passed;
// otherwise there is no verdict yet.
func proofVerdict(running bool, consoleBytes int64) (verdict string, done bool) {
	switch {
	case !running:
		return kvmBroken, true
	case consoleBytes > 0:
		return kvmWorks, true
	}
	return kvmUnknown, false
}

func (m *Manager) verdictPath() string { return filepath.Join(m.o.VMsDir, VerdictFile) }

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
// KVMProofTime means KVM does not work here. It records the verdict, and
// on a broken KVM switches the manager to TCG.
func (m *Manager) proveKVM(ctx context.Context, dom libvirt.Domain, name string) bool {
	verdict := kvmBroken // silent until the deadline
	deadline := time.Now().Add(KVMProofTime)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		st, _, err := m.l.DomainGetState(dom, 0)
		var size int64
		if fi, err := os.Stat(m.logPath(name)); err == nil {
			size = fi.Size()
		}
		v, done := proofVerdict(err == nil && libvirt.DomainState(st) == libvirt.DomainRunning, size)
		if done {
			verdict = v
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if ctx.Err() != nil {
		return true // no verdict: the caller gave up
	}
	works := verdict == kvmWorks
	if !works {
		m.domType = "qemu"
	}
	_ = os.WriteFile(m.verdictPath(), []byte(verdict), 0o644)
	return works
}
