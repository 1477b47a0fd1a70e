package vm

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The probe's qemu dies with the process that runs the probe: a helper
// daemon killed during its KVM probe leaves no guest hung in KVM. The
// test runs the probe in a child process (this test binary again), kills
// that child with SIGKILL and checks that the stand-in qemu, which would
// sleep for five minutes, is gone.
func TestProbeDiesWithTheHelper(t *testing.T) {
	if os.Getenv("BUTTER_PROBE_CHILD") != "" {
		_, _ = ProbeKVM(context.Background(), os.Getenv("BUTTER_PROBE_QEMU"), os.Getenv("BUTTER_PROBE_KERNEL"), time.Minute)
		return
	}
	dir := t.TempDir()
	kernel, pidFile := filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "qemu.pid")
	if err := os.WriteFile(kernel, []byte("not really"), 0o644); err != nil {
		t.Fatal(err)
	}
	qemu := fakeQEMU(t, "echo $$ > "+pidFile+".tmp && mv "+pidFile+".tmp "+pidFile+"; exec sleep 300")
	child := exec.Command(os.Args[0], "-test.run=^TestProbeDiesWithTheHelper$")
	child.Env = append(os.Environ(), "BUTTER_PROBE_CHILD=1", "BUTTER_PROBE_QEMU="+qemu, "BUTTER_PROBE_KERNEL="+kernel)
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	for deadline := time.Now().Add(10 * time.Second); pid == 0; time.Sleep(50 * time.Millisecond) {
		if b, err := os.ReadFile(pidFile); err == nil {
			pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
		if time.Now().After(deadline) {
			child.Process.Kill()
			t.Fatal("the probe never started its qemu")
		}
	}
	if !alive(pid) {
		t.Fatalf("the stand-in qemu (PID %d) is not running before the kill", pid)
	}
	child.Process.Kill()
	child.Wait()
	for deadline := time.Now().Add(5 * time.Second); alive(pid); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			exec.Command("kill", "-9", strconv.Itoa(pid)).Run()
			t.Fatalf("the probe's qemu (PID %d) outlived the killed helper by 5 s", pid)
		}
	}
}

// alive: pid is a process that has not exited (a zombie has).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) S …: the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z'
}
