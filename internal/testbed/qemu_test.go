package testbed

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestQEMUArgs(t *testing.T) {
	base := GuestOptions{Name: "m1", Kernel: "/k/vmlinux", Initrd: "/k/initrd", Append: "console=ttyS0 quiet"}
	tests := []struct {
		name string
		opts func(o *GuestOptions)
		has  [][]string // argument pairs that must appear in order
		err  string
	}{
		{
			name: "defaults",
			opts: func(o *GuestOptions) {},
			has: [][]string{{"-accel", "tcg,tb-size=32"}, {"-m", "128M"}, {"-smp", "1"}, {"-serial", "stdio"},
				{"-kernel", "/k/vmlinux"}, {"-initrd", "/k/initrd"}, {"-append", "console=ttyS0 quiet"}, {"-nodefaults"}, {"-no-reboot"}},
		},
		{
			name: "socket network",
			opts: func(o *GuestOptions) {
				o.Memory = 96
				o.Network = &SocketNetwork{Port: 40123}
				o.MAC = "52:54:00:00:00:01"
			},
			has: [][]string{{"-m", "96M"},
				{"-netdev", "socket,id=n0,mcast=230.0.0.1:40123,localaddr=127.0.0.1"},
				{"-device", "virtio-net-pci,netdev=n0,mac=52:54:00:00:00:01"}},
		},
		{
			name: "network without a MAC",
			opts: func(o *GuestOptions) { o.Network = &SocketNetwork{Port: 40123} },
			err:  "MAC address is required",
		},
		{
			name: "network port out of range",
			opts: func(o *GuestOptions) { o.Network = &SocketNetwork{Port: 70000}; o.MAC = "52:54:00:00:00:01" },
			err:  "port 70000 out of range",
		},
		{
			name: "tap, disks, host MTU, reboot in place",
			opts: func(o *GuestOptions) {
				o.Tap = "rm1-tap"
				o.MAC = "52:54:00:00:00:02"
				o.HostMTU = 1400
				o.Disks = []string{"/d/disk.qcow2", "/d/seed.raw"}
				o.Reboot = true
			},
			has: [][]string{{"-drive", "file=/d/disk.qcow2,if=virtio,format=qcow2"},
				{"file=/d/disk.qcow2,if=virtio,format=qcow2", "-drive", "file=/d/seed.raw,if=virtio,format=raw"},
				{"-netdev", "tap,id=n0,ifname=rm1-tap,script=no,downscript=no"},
				{"-device", "virtio-net-pci,netdev=n0,mac=52:54:00:00:00:02,host_mtu=1400"}},
		},
		{
			name: "tap without a MAC",
			opts: func(o *GuestOptions) { o.Tap = "rm1-tap" },
			err:  "MAC address is required",
		},
		{
			name: "tap and socket network",
			opts: func(o *GuestOptions) {
				o.Tap = "t"
				o.Network = &SocketNetwork{Port: 40123}
				o.MAC = "52:54:00:00:00:01"
			},
			err: "not both",
		},
		{
			name: "disk with a comma",
			opts: func(o *GuestOptions) { o.Disks = []string{"/d/a,b.qcow2"} },
			err:  "comma",
		},
		{
			name: "no kernel",
			opts: func(o *GuestOptions) { o.Kernel = "" },
			err:  "kernel and initrd are required",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := base
			tt.opts(&o)
			args, err := QEMUArgs(o)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range tt.has {
				i := slices.Index(args, want[0])
				if i < 0 || i+len(want) > len(args) {
					t.Errorf("no %q in %q", want, args)
					continue
				}
				if diff := cmp.Diff(want, args[i:i+len(want)]); diff != "" {
					t.Errorf("%s (-want +got):\n%s", want[0], diff)
				}
			}
			if o.Reboot == slices.Contains(args, "-no-reboot") {
				t.Errorf("Reboot %v, and -no-reboot in %q", o.Reboot, args)
			}
			if slices.Contains(args, "kvm") || slices.Contains(args, "-enable-kvm") {
				t.Errorf("KVM in %q", args)
			}
		})
	}
}

// startFakeGuest starts guest m1 on a fakeQEMU playing script.
func startFakeGuest(t *testing.T, ctx context.Context, script string) *Guest {
	t.Helper()
	g, err := StartGuest(ctx, GuestOptions{Name: "m1", Kernel: "k", Initrd: "i", QEMU: fakeQEMU(t, script)})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// fakeQEMU writes a shell script that stands in for qemu: it ignores its
// arguments and plays a console.
func fakeQEMU(t *testing.T, script string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "qemu")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestGuestConsole(t *testing.T) {
	g := startFakeGuest(t, t.Context(), `printf 'booting\r\n'
read line
echo "got $line"
echo "qemu: a warning" >&2
`)
	var got []string
	for l := range g.Lines() {
		got = append(got, l.Text)
		if l.Text == "booting" {
			if err := g.Send("SPEC {}"); err != nil {
				t.Fatal(err)
			}
		}
		if l.At <= 0 {
			t.Errorf("line %q without a time", l.Text)
		}
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"booting", "got SPEC {}", "qemu: a warning"}, got); diff != "" {
		t.Errorf("console (-want +got):\n%s", diff)
	}
}

func TestGuestKilledWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	g := startFakeGuest(t, ctx, "echo up\nexec sleep 60\n")
	if l := <-g.Lines(); l.Text != "up" {
		t.Fatalf("first line %q", l.Text)
	}
	start := time.Now()
	cancel()
	for range g.Lines() {
	}
	err := g.Wait()
	if err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Errorf("Wait = %v, want a context error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s to stop", d)
	}
}

func TestGuestFailingQEMU(t *testing.T) {
	g := startFakeGuest(t, t.Context(), "echo 'qemu: could not load kernel' >&2\nexit 1\n")
	var got []string
	for l := range g.Lines() {
		got = append(got, l.Text)
	}
	if err := g.Wait(); err == nil {
		t.Error("Wait = nil for a qemu that exited 1")
	}
	if !slices.Contains(got, "qemu: could not load kernel") {
		t.Errorf("qemu's complaint not in the lines: %q", got)
	}
}
