package assets

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestHelperUnitGolden(t *testing.T) {
	got, err := HelperUnit{Binary: "/var/lib/butter/bin/butter-v1", StateDir: "/var/lib/butter",
		Socket: "/run/butter/helper.sock"}.Render()
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, HelperUnitName, got)
}

func TestHelperUnitRefusesOddPaths(t *testing.T) {
	for _, bin := range []string{"butter", "/opt/my butter/butter", "/x;rm -rf /", ""} {
		_, err := HelperUnit{Binary: bin, StateDir: "/var/lib/butter", Socket: "/run/butter/helper.sock"}.Render()
		if err == nil || !strings.Contains(err.Error(), "absolute path") {
			t.Errorf("binary %q: %v, want a refusal that says what to give", bin, err)
		}
	}
}

func TestDomainGolden(t *testing.T) {
	for _, tc := range []struct {
		file string
		d    Domain
	}{{
		file: "domain-kernel.xml",
		d: Domain{Name: "web1", Type: "qemu", Arch: "x86_64", Machine: "pc", MemoryMiB: 128, CPUs: 1,
			Kernel: "/c/vmlinux", Initrd: "/c/initrd.gz", Cmdline: "console=ttyS0 ip=10.0.0.5::::web1:eth0:none:1370",
			Bridge: "btbr7", MAC: "52:54:00:00:00:01", MTU: 1370, ConsoleLog: "/var/log/libvirt/butter/web1.console.log",
			Network: "blue", Address: "10.0.0.5/24", Image: "tiny", Creator: "alice@laptop", Created: "2026-11-26T00:00:00Z"},
	}, {
		file: "domain-disk.xml",
		d: Domain{Name: "db", Type: "kvm", Arch: "x86_64", Machine: "pc", MemoryMiB: 2048, CPUs: 2,
			Disk: "/var/lib/libvirt/butter/vms/db.qcow2", Seed: "/var/lib/libvirt/butter/vms/db-seed.iso",
			Bridge: "btbr1", Port: "btvm5f4d1b2c", MAC: "52:54:00:00:00:02", MTU: 1378, ConsoleLog: "/var/log/libvirt/butter/db.console.log",
			Network: "red", Address: "10.1.0.9/24", Image: "debian-12", Creator: "bob <b&b>", Created: "2026-11-26T00:00:00Z"},
	}} {
		got, err := tc.d.Render()
		if err != nil {
			t.Fatal(err)
		}
		checkGolden(t, tc.file, got)
		if strings.Contains(got, "<b&b>") {
			t.Errorf("%s: a creator with markup went into the XML unescaped", tc.file)
		}
	}
	if _, err := (Domain{Name: "x"}).Render(); err == nil {
		t.Error("an incomplete domain rendered")
	}
}

// checkGolden compares got with testdata/name (rewritten with -update).
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	golden := filepath.Join("testdata", name)
	if *update {
		os.WriteFile(golden, []byte(got), 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test ./assets -update to accept):\n%s", golden, got)
	}
}
