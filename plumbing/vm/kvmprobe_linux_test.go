package vm_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/butter-cloud/butter/internal/testbed"
	"github.com/butter-cloud/butter/lab/sim"
	"github.com/butter-cloud/butter/plumbing/vm"
	"golang.org/x/sys/unix"
)

// The probe with this machine's real qemu and kernel. The control runs the
// same kernel under TCG (a wrapper swaps the accelerator): its banner must
// be seen, so a "broken" verdict under KVM is KVM's, not the probe's. Which
// verdict KVM gets depends on the machine (broken on this project's CI
// machines); TestKVMProof shows that guests then run as it says.
func TestProbeKVMWithQEMU(t *testing.T) {
	testbed.NeedPrograms(t, vm.QEMUBinary())
	var u unix.Utsname
	_ = unix.Uname(&u)
	kernel := vm.HostKernel("/boot", unix.ByteSliceToString(u.Release[:]))
	testbed.Require(t, kernel != "", "needs a kernel image under /boot (linux-image-amd64, see .ci/deps)")
	qemu, err := sim.LookPath(vm.QEMUBinary())
	if err != nil {
		t.Fatal(err)
	}

	tcg := filepath.Join(t.TempDir(), "qemu-tcg")
	script := "#!/bin/sh\nfor a; do shift; [ \"$a\" = kvm ] && a=tcg; set -- \"$@\" \"$a\"; done\nexec " + qemu + " \"$@\"\n"
	if err := os.WriteFile(tcg, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	got, err := vm.ProbeKVM(t.Context(), tcg, kernel, 3*time.Minute)
	if err != nil || got != "works" {
		t.Fatalf("the probe under TCG (the control) = %q, %v; want works: it does not see %s's banner", got, err, kernel)
	}
	t.Logf("control: %s's banner under TCG after %s", kernel, time.Since(begin).Round(time.Millisecond))

	if _, err := os.Stat("/dev/kvm"); err != nil || !vm.KVMAnswers() {
		t.Logf("no answering /dev/kvm here: the KVM half does not apply")
		return
	}
	begin = time.Now()
	got, err = vm.ProbeKVM(t.Context(), qemu, kernel, vm.KVMProbeTime)
	if err != nil || (got != "works" && got != "broken") {
		t.Fatalf("the probe under KVM = %q, %v; want works or broken", got, err)
	}
	t.Logf("KVM here: %s (after %s)", got, time.Since(begin).Round(time.Millisecond))
}
