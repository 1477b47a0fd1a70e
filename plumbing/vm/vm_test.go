package vm

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSpecValidate(t *testing.T) {
	ok := Spec{Name: "web1", CPUs: 1, MemoryMiB: 256, Kernel: &KernelBoot{Kernel: "/k", Initrd: "/i"},
		NIC: NIC{Network: "blue", Bridge: "btbr1", MTU: 1370, Subnet: netip.MustParsePrefix("10.0.0.0/24"),
			Address: netip.MustParsePrefix("10.0.0.5/24")}}
	tests := []struct {
		name   string
		change func(*Spec)
		want   string
	}{
		{"valid", func(s *Spec) {}, ""},
		{"bad name", func(s *Spec) { s.Name = "Web_1" }, `vm name "Web_1"`},
		{"dash at the end", func(s *Spec) { s.Name = "web-" }, "not starting or ending with a dash"},
		{"no cpus", func(s *Spec) { s.CPUs = 0 }, "0 CPUs"},
		{"tiny memory", func(s *Spec) { s.MemoryMiB = 16 }, "at least 64"},
		{"both boot kinds", func(s *Spec) { s.Disk = &BaseDisk{Path: "/b", Format: "qcow2"} }, "exactly one"},
		{"address outside", func(s *Spec) { s.NIC.Address = netip.MustParsePrefix("10.9.0.5/24") },
			`address 10.9.0.5/24 is outside network "blue"'s subnet 10.0.0.0/24`},
		{"wrong prefix", func(s *Spec) { s.NIC.Address = netip.MustParsePrefix("10.0.0.5/16") }, "with /24"},
		{"broadcast", func(s *Spec) { s.NIC.Address = netip.MustParsePrefix("10.0.0.255/24") }, "broadcast"},
		{"network address", func(s *Spec) { s.NIC.Address = netip.MustParsePrefix("10.0.0.0/24") }, "broadcast"},
		{"no address", func(s *Spec) { s.NIC.Address = netip.Prefix{} }, "no address"},
		{"gateway outside", func(s *Spec) { s.NIC.Gateway = netip.MustParseAddr("10.1.0.1") }, "gateway 10.1.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := ok
			tt.change(&s)
			err := s.validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("want valid: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one saying %q", err, tt.want)
			}
		})
	}
}

func TestLastLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	if got, err := lastLines(path, 3); err != nil || len(got) != 0 {
		t.Fatalf("missing log: %q, %v", got, err)
	}
	var b strings.Builder
	for i := range 10000 {
		b.WriteString(strings.Repeat("x", 40) + " line " + string(rune('a'+i%26)) + "\n")
	}
	b.WriteString("last, no newline")
	os.WriteFile(path, []byte(b.String()), 0o600)
	got, err := lastLines(path, 2)
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.Repeat("x", 40) + " line " + string(rune('a'+9999%26)) + "\nlast, no newline"; string(got) != want {
		t.Errorf("last two lines = %q, want %q", got, want)
	}
}

func TestVirtualSize(t *testing.T) {
	dir := t.TempDir()
	q := make([]byte, 64)
	copy(q, "QFI\xfb")
	q[24+7] = 0x40 // the size field is big-endian at offset 24
	q[24+3] = 0x01 // plus 4 GiB
	os.WriteFile(filepath.Join(dir, "a.qcow2"), q, 0o600)
	if n, err := virtualSize(filepath.Join(dir, "a.qcow2"), "qcow2"); err != nil || n != 1<<32+0x40 {
		t.Errorf("qcow2 size %d, %v", n, err)
	}
	os.WriteFile(filepath.Join(dir, "b.raw"), make([]byte, 1234), 0o600)
	if n, err := virtualSize(filepath.Join(dir, "b.raw"), "raw"); err != nil || n != 1234 {
		t.Errorf("raw size %d, %v", n, err)
	}
	if _, err := virtualSize(filepath.Join(dir, "b.raw"), "qcow2"); err == nil {
		t.Error("a raw file passed for qcow2")
	}
}
