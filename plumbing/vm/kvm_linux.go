package vm

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// KVMAnswers tells whether /dev/kvm opens and makes a VM: where it does,
// AccelAuto tries KVM and the first guest proves it. It cannot tell a KVM
// that hangs guests; that is what the proof is for.
func KVMAnswers() bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	const kvmGetAPIVersion, kvmCreateVM = 0xAE00, 0xAE01
	v, err := unix.IoctlRetInt(int(f.Fd()), kvmGetAPIVersion)
	if err != nil || v != 12 {
		return false
	}
	fd, err := unix.IoctlRetInt(int(f.Fd()), kvmCreateVM)
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
}

// kernelRelease is the running kernel's release (uname -r).
func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// probeProcAttr kills the probe's qemu with the helper: a daemon killed
// during the probe (kill -9, a restart) leaves no guest hung in KVM.
func probeProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
