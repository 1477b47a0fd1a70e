package vm

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"

	"github.com/butter-cloud/butter/helperapi"
)

// KVMProbeTime bounds the boot probe: a kernel under a working KVM prints
// its banner within a second or two.
const KVMProbeTime = 10 * time.Second

// kvmBanner is the first line a Linux kernel prints once it is
// decompressed and running in long mode: where a broken KVM hangs guests
// (after "Probing EDD" on this project's CI machines), it never comes.
var kvmBanner = []byte("Linux version ")

// ProbeKVM boots kernel (this machine's own, see HostKernel) under qemu
// with KVM, with no disk and no initrd, for at most timeout, and says
// whether KVM runs guests: kvmWorks when the kernel's banner reaches the
// serial console, kvmBroken when qemu fails or stays silent. A few
// instructions through /dev/kvm are not enough: the ones this project
// tried (real mode, the switch to protected mode, long mode) run where a
// real kernel hangs. An error means the probe could not run at all (no
// qemu, no kernel): then the first guest proves KVM instead.
func ProbeKVM(ctx context.Context, qemu, kernel string, timeout time.Duration) (verdict string, err error) {
	if _, err := os.Stat(kernel); err != nil {
		return "", fmt.Errorf("kvm probe: kernel: %w", err)
	}
	if _, err := exec.LookPath(qemu); err != nil {
		return "", fmt.Errorf("kvm probe: %w", err)
	}
	pctx := ctx
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, probeArgs(runtime.GOARCH, kernel)...)
	cmd.WaitDelay = 2 * time.Second // a qemu stuck in the kernel does not hold us
	cmd.SysProcAttr = probeProcAttr()
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("kvm probe: start %s: %w", qemu, err)
	}
	seen := sawBanner(out)
	cancel() // done reading: stop the guest
	_ = cmd.Wait()
	if err := pctx.Err(); err != nil && !seen {
		return "", fmt.Errorf("kvm probe: %w", err) // cut short: no verdict
	}
	if seen {
		return kvmWorks, nil
	}
	return kvmBroken, nil
}

// sawBanner reads the serial console until the kernel's banner (true) or
// its end (false), reading at most 1 MiB.
func sawBanner(r io.Reader) bool {
	sc := bufio.NewScanner(io.LimitReader(r, 1<<20))
	sc.Buffer(make([]byte, 4096), 64<<10)
	for sc.Scan() {
		if bytes.Contains(sc.Bytes(), kvmBanner) {
			return true
		}
	}
	return false
}

// probeArgs are qemu's arguments for the probe on arch: KVM, one CPU, no
// devices but the serial console on stdout, no reboot on panic (the kernel
// panics for want of a root file system, long after its banner).
func probeArgs(arch, kernel string) []string {
	args := []string{"-accel", "kvm", "-m", "256", "-smp", "1", "-nodefaults", "-display", "none",
		"-no-reboot", "-serial", "stdio", "-monitor", "none", "-kernel", kernel}
	if arch == "arm64" {
		return append([]string{"-machine", "virt", "-cpu", "host"},
			append(args, "-append", "console=ttyAMA0 panic=-1")...)
	}
	return append(args, "-append", "console=ttyS0 earlyprintk=serial,ttyS0 panic=-1")
}

// QEMUBinary is qemu's system emulator for this machine's architecture.
func QEMUBinary() string {
	if runtime.GOARCH == "arm64" {
		return "qemu-system-aarch64"
	}
	return "qemu-system-x86_64"
}

// HostKernel is this machine's kernel image under boot: the running
// one's, else the vmlinuz link, else the one installed last; "" when boot
// has none.
func HostKernel(boot, release string) string {
	if p := filepath.Join(boot, "vmlinuz-"+release); release != "" && exists(p) {
		return p
	}
	if p := filepath.Join(boot, "vmlinuz"); exists(p) {
		return p
	}
	all, _ := filepath.Glob(filepath.Join(boot, "vmlinuz-*"))
	if len(all) == 0 {
		return ""
	}
	newest, at := "", time.Time{}
	for _, p := range all {
		if fi, err := os.Stat(p); err == nil && fi.ModTime().After(at) {
			newest, at = p, fi.ModTime()
		}
	}
	return newest
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// KVMProbe is a ProbeKVM run in the background (from the helper daemon's
// start, so at machine add), whose verdict lands in the VMs folder as the
// first guest's proof would: the first vm create then finds it and does
// not wait for a proof.
type KVMProbe struct {
	done chan struct{}
}

// StartKVMProbe starts the probe where it is wanted: --accel auto, no
// verdict yet, a /dev/kvm that answers, qemu and a kernel at hand. It
// returns nil where there is nothing to probe.
func StartKVMProbe(ctx context.Context, o Options, log *slog.Logger) *KVMProbe {
	o = o.withDefaults()
	m := &Manager{o: o}
	if o.Accel != helperapi.AccelAuto || m.kvmVerdict() != kvmUnknown || !KVMAnswers() {
		return nil
	}
	kernel := HostKernel("/boot", kernelRelease())
	if kernel == "" {
		log.Info("kvm probe: no kernel under /boot; the first guest proves KVM")
		return nil
	}
	p := &KVMProbe{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		start := time.Now()
		verdict, err := ProbeKVM(ctx, QEMUBinary(), kernel, KVMProbeTime)
		if err != nil {
			log.Info("kvm probe could not run; the first guest proves KVM", "err", err)
			return
		}
		if err := os.MkdirAll(o.VMsDir, 0o711); err == nil {
			err = os.WriteFile(m.verdictPath(), []byte(verdict), 0o644)
		}
		log.Info("kvm probe", "verdict", verdict, "kernel", kernel, "took", time.Since(start).Round(time.Millisecond))
	}()
	return p
}

// Wait waits for the probe's verdict (bounded by KVMProbeTime) or ctx.
func (p *KVMProbe) Wait(ctx context.Context) {
	if p == nil {
		return
	}
	select {
	case <-p.done:
	case <-ctx.Done():
	}
}
