package vm

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// fakeQEMU writes an executable script standing in for qemu.
func fakeQEMU(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "qemu")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestProbeKVMVerdicts(t *testing.T) {
	kernel := filepath.Join(t.TempDir(), "vmlinuz")
	if err := os.WriteFile(kernel, []byte("not really"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, qemu, want string
	}{
		{"banner", `echo "Probing EDD (edd=off to disable)... ok"; echo "[    0.000000] Linux version 6.1.0-57-amd64"; sleep 30`, kvmWorks},
		{"banner after noise", `i=0; while [ $i -lt 500 ]; do echo "SeaBIOS noise $i"; i=$((i+1)); done; echo "Linux version 6.1"`, kvmWorks},
		{"silent until the deadline", `echo "Probing EDD (edd=off to disable)... ok"; sleep 30`, kvmBroken},
		{"qemu fails", `echo "qemu-system-x86_64: failed to initialize kvm: Permission denied" >&2; exit 1`, kvmBroken},
		{"banner on stderr only", `echo "Linux version 6.1" >&2; exit 1`, kvmBroken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ProbeKVM(t.Context(), fakeQEMU(t, tc.qemu), kernel, 2*time.Second)
			if err != nil || got != tc.want {
				t.Fatalf("ProbeKVM = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	// No probe at all (an error, no verdict) without qemu or a kernel.
	if v, err := ProbeKVM(t.Context(), filepath.Join(t.TempDir(), "no-qemu"), kernel, time.Second); err == nil {
		t.Errorf("ProbeKVM without qemu = %q, want an error", v)
	}
	if v, err := ProbeKVM(t.Context(), fakeQEMU(t, "echo Linux version"), filepath.Join(t.TempDir(), "no-kernel"), time.Second); err == nil {
		t.Errorf("ProbeKVM without a kernel = %q, want an error", v)
	}
}

func TestProbeArgsAskForKVM(t *testing.T) {
	for _, arch := range []string{"amd64", "arm64"} {
		args := probeArgs(arch, "/boot/vmlinuz")
		if i := slices.Index(args, "-accel"); i < 0 || args[i+1] != "kvm" {
			t.Errorf("%s: %v does not ask for KVM", arch, args)
		}
		if i := slices.Index(args, "-kernel"); i < 0 || args[i+1] != "/boot/vmlinuz" {
			t.Errorf("%s: %v does not boot the kernel", arch, args)
		}
	}
}

func TestHostKernel(t *testing.T) {
	touch := func(dir string, names ...string) string {
		at := time.Now().Add(-time.Hour)
		for i, n := range names { // installed in this order
			p := filepath.Join(dir, n)
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(p, at, at.Add(time.Duration(i)*time.Minute)); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	for _, tc := range []struct {
		name    string
		files   []string
		release string
		want    string
	}{
		{"the running kernel's", []string{"vmlinuz-6.1.0-9-amd64", "vmlinuz-6.1.0-57-amd64"}, "6.1.0-9-amd64", "vmlinuz-6.1.0-9-amd64"},
		{"the last installed when the running one is not there", []string{"vmlinuz-6.1.0-9-amd64", "vmlinuz-6.1.0-10-amd64"}, "6.18.44", "vmlinuz-6.1.0-10-amd64"},
		{"the last installed, not the highest name", []string{"vmlinuz-6.1.0-10-amd64", "vmlinuz-6.1.0-9-amd64"}, "6.18.44", "vmlinuz-6.1.0-9-amd64"},
		{"the vmlinuz link", []string{"vmlinuz", "vmlinuz-6.1.0-9-amd64"}, "6.18.44", "vmlinuz"},
		{"none", []string{"config-6.1.0-9-amd64"}, "6.1.0-9-amd64", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := touch(t.TempDir(), tc.files...)
			got := HostKernel(dir, tc.release)
			if tc.want == "" && got != "" || tc.want != "" && got != filepath.Join(dir, tc.want) {
				t.Errorf("HostKernel = %q, want %q", got, tc.want)
			}
		})
	}
}
