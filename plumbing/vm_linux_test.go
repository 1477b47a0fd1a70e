package plumbing_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/internal/testbed"
	"github.com/butter-cloud/butter/lab/sim"
	"github.com/butter-cloud/butter/plumbing"
	"github.com/butter-cloud/butter/plumbing/vm"
)

// The VM tier: two simulated machines, each with its own libvirtd and
// butter helper daemon, one private network between them, and tiny guests
// (Debian's kernel and a busybox initramfs) booted by libvirt under TCG.

var vmNetwork = helperapi.Network{Name: "blue", ID: 7, Tunnel: helperapi.TunnelVXLAN,
	Subnet: netip.MustParsePrefix("10.20.0.0/24")}

func needVMLab(t *testing.T) {
	t.Helper()
	needChainLab(t)
	testbed.NeedPrograms(t, "/usr/sbin/libvirtd", "/usr/sbin/virtlogd", "/usr/bin/qemu-system-x86_64", "/usr/bin/qemu-img")
	_, err := sim.FindKernel("/")
	testbed.Require(t, err == nil, fmt.Sprintf("needs Debian's kernel (linux-image-amd64): %v", err))
}

type vmLab struct {
	*sim.Lab
	butter  string
	bin     testbed.Butter // butter, as the helpers run it
	helpers *testbed.Helpers
	kernel  string
	initrd  string
	logs    map[string]*bytes.Buffer
	logMu   sync.Mutex
}

func newVMLab(t *testing.T, ctx context.Context, prefix string, machines int) *vmLab {
	// This machine's /dev/kvm hangs guests: TCG, unless a test is about
	// the accelerator (newVMLabAccel).
	return newVMLabAccel(t, ctx, prefix, machines, helperapi.AccelTCG)
}

// newVMLabAccel is newVMLab with the helper daemons started with --accel
// accel.
func newVMLabAccel(t *testing.T, ctx context.Context, prefix string, machines int, accel string) *vmLab {
	dir := t.TempDir()
	v := &vmLab{butter: buildButter(t, ctx, dir), logs: map[string]*bytes.Buffer{}}
	v.bin = testbed.Butter{Path: v.butter, DaemonArgs: []string{"--accel", accel}}
	var err error
	if v.kernel, v.initrd, err = sim.TinyGuest(ctx, sim.DefaultCacheDir); err != nil {
		t.Fatal(err)
	}
	l := testbed.NewLab(t, prefix, sim.Config{Machines: machines})
	v.Lab = l
	t.Cleanup(func() {
		if t.Failed() {
			v.logMu.Lock()
			for m, b := range v.logs {
				t.Logf("--- %s logs:\n%s", m, b)
			}
			v.logMu.Unlock()
		}
	})
	logOf := func(m *sim.Machine) io.Writer {
		v.logMu.Lock()
		defer v.logMu.Unlock()
		b := &bytes.Buffer{}
		v.logs[m.Name] = b
		return &lockedWriter{mu: &v.logMu, w: b}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(l.Machines))
	for i, m := range l.Machines {
		wg.Go(func() {
			_, errs[i] = m.StartLibvirt(ctx, logOf(m))
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	v.helpers, err = v.bin.StartMesh(ctx, l, testbed.Mesh{Networks: []helperapi.Network{vmNetwork}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

// helper runs `butter helper ARGS` on machine m.
func (v *vmLab) helper(ctx context.Context, m *sim.Machine, args ...string) ([]byte, error) {
	return m.Run(ctx, v.butter, append([]string{"helper"}, args...)...)
}

// restartDaemon kills m's helper daemon, runs between (if set) while it
// is down, starts it again and waits for it to answer.
func (v *vmLab) restartDaemon(t *testing.T, ctx context.Context, m *sim.Machine, between func()) {
	t.Helper()
	d := v.helpers.Daemons[m.Name]
	if err := d.Kill(); err != nil {
		t.Fatal(err)
	}
	if between != nil {
		between()
	}
	nd, err := d.Restart(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v.helpers.Daemons[m.Name] = nd
	if err := v.bin.WaitHelper(ctx, m, nd); err != nil {
		t.Fatal(err)
	}
}

func (v *vmLab) createTiny(ctx context.Context, m *sim.Machine, name, addr string, extra ...string) (helperapi.VMInfo, error) {
	args := append([]string{"vm", "create", name, "--network", vmNetwork.Name, "--address", addr,
		"--image", "kernel=" + v.kernel + ",initrd=" + v.initrd, "--memory-mib", "128"}, extra...)
	out, err := v.helper(ctx, m, args...)
	if err != nil {
		return helperapi.VMInfo{}, err
	}
	var info helperapi.VMInfo
	return info, json.Unmarshal(out, &info)
}

func (v *vmLab) list(t *testing.T, ctx context.Context, m *sim.Machine) map[string]helperapi.VMInfo {
	t.Helper()
	out, err := v.helper(ctx, m, "vm", "list")
	if err != nil {
		t.Fatal(err)
	}
	var vms []helperapi.VMInfo
	if err := json.Unmarshal(out, &vms); err != nil {
		t.Fatalf("vm list: %v: %s", err, out)
	}
	byName := map[string]helperapi.VMInfo{}
	for _, i := range vms {
		byName[i.Name] = i
	}
	return byName
}

// waitConsoleLog waits until the VM's console log has a line containing
// want, and returns that line.
func (v *vmLab) waitConsoleLog(ctx context.Context, m *sim.Machine, name, want string, within time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	path := filepath.Join(vm.DefaultLogDir, name+".console.log")
	for {
		out, _ := m.Run(ctx, "/bin/cat", path)
		// Whole lines only: the guest may be half-way through writing
		// the last one.
		lines := strings.Split(string(out), "\n")
		for _, line := range lines[:len(lines)-1] {
			if strings.Contains(line, want) {
				return strings.TrimSpace(line), nil
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("vm %s on %s: no %q on the console within %s; it shows:\n%s", name, m.Name, want, within, out)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// vmFiles lists the files of VMs on m: disks, seeds and console logs.
func vmFiles(ctx context.Context, m *sim.Machine) ([]string, error) {
	out, err := m.Run(ctx, "/usr/bin/find", vm.DefaultVMsDir, vm.DefaultLogDir, "-type", "f")
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(out)), nil
}

// console attaches to a VM's console on m through `butter helper vm
// console`; write to in, read lines from out.
type consoleSession struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
	done  chan error
}

func (v *vmLab) attach(ctx context.Context, m *sim.Machine, name string) (*consoleSession, error) {
	cmd := m.Command(ctx, v.butter, "helper", "vm", "console", name, "--replay", "20")
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &consoleSession{cmd: cmd, in: in, lines: make(chan string, 1000), done: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			s.lines <- strings.TrimRight(sc.Text(), "\r")
		}
		close(s.lines)
		s.done <- cmd.Wait()
	}()
	return s, nil
}

// expect reads lines until one contains want.
func (s *consoleSession) expect(want string, within time.Duration) (string, error) {
	timeout := time.After(within)
	var seen []string
	for {
		select {
		case line, ok := <-s.lines:
			if !ok {
				return "", fmt.Errorf("console closed before %q; saw %q", want, seen)
			}
			seen = append(seen, line)
			if strings.Contains(line, want) {
				return line, nil
			}
		case <-timeout:
			return "", fmt.Errorf("no %q on the console within %s; saw %q", want, within, seen)
		}
	}
}

func TestVMs(t *testing.T) {
	needVMLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	v := newVMLab(t, ctx, "vmt", 2)
	m1, m2 := v.Machines[0], v.Machines[1]

	start := time.Now()
	web1, err := v.createTiny(ctx, m1, "web1", "10.20.0.11")
	if err != nil {
		t.Fatalf("create web1: %v", err)
	}
	t.Logf("web1 created and running in %s: %+v", time.Since(start), web1)
	if web1.State != "running" || web1.Network != "blue" || web1.Address != "10.20.0.11/24" || !web1.Autostart {
		t.Errorf("web1 = %+v, want running on blue at 10.20.0.11/24 with autostart", web1)
	}
	web2, err := v.createTiny(ctx, m2, "web2", "10.20.0.12")
	if err != nil {
		t.Fatalf("create web2: %v", err)
	}
	for _, c := range []struct {
		m    *sim.Machine
		name string
		addr string
	}{{m1, "web1", "10.20.0.11/24"}, {m2, "web2", "10.20.0.12/24"}} {
		line, err := v.waitConsoleLog(ctx, c.m, c.name, sim.TinyGuestReady, 90*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("%s host=%s addr=%s mtu=1370", sim.TinyGuestReady, c.name, c.addr)
		if line != want {
			t.Errorf("%s says %q, want %q: the ip= argument (address, hostname, MTU) did not arrive", c.name, line, want)
		}
	}
	t.Logf("both guests up %s after the first create; web2 %+v", time.Since(start), web2)

	t.Run("console", func(t *testing.T) {
		s, err := v.attach(ctx, m1, "web1")
		if err != nil {
			t.Fatal(err)
		}
		defer s.cmd.Process.Kill()
		if _, err := s.expect(sim.TinyGuestReady, 10*time.Second); err != nil {
			t.Fatalf("replay of earlier boot lines: %v", err)
		}
		// A command across the private network, to the VM on the other
		// machine, through the console.
		fmt.Fprintf(s.in, "\nping -c 3 -W 2 10.20.0.12 && echo PING-OK-$((6*7))\n")
		if _, err := s.expect("PING-OK-42", 30*time.Second); err != nil {
			t.Fatalf("command over the console: %v", err)
		}
		// A full-size packet (the guest's MTU, the network's) from one
		// VM to the other crosses the machines. busybox's ping cannot set
		// DF, and the guest's own MTU would stop one byte more: the edge
		// is proven across the chain by "MTU edge across the chain".
		fmt.Fprintf(s.in, "ping -c 1 -W 2 -s 1342 10.20.0.12 >/dev/null && echo BIG-OK\n")
		if _, err := s.expect("BIG-OK", 20*time.Second); err != nil {
			t.Errorf("full-size frame across machines: %v", err)
		}

		// A second attach takes the console over; the first one ends.
		s2, err := v.attach(ctx, m1, "web1")
		if err != nil {
			t.Fatal(err)
		}
		defer s2.cmd.Process.Kill()
		select {
		case <-s.done:
		case <-time.After(15 * time.Second):
			t.Errorf("the first console session did not end when a second attached")
		}
		fmt.Fprintf(s2.in, "\necho SECOND-$((2*21))\n")
		if _, err := s2.expect("SECOND-42", 15*time.Second); err != nil {
			t.Errorf("second console: %v", err)
		}
		s2.in.Write([]byte{0x1d}) // Ctrl+] detaches
		select {
		case <-s2.done:
		case <-time.After(10 * time.Second):
			t.Errorf("Ctrl+] did not detach the console")
		}
	})

	t.Run("MTU edge across the chain", func(t *testing.T) {
		// A probe on m1 with its eth0 and port above the network MTU
		// sends to web2 on m2: the chain (bridge, tunnel, WireGuard, and
		// web2's tap on the far side) is the bottleneck, not the sender.
		mtu := v.helpers.Reports[m1.Name].Networks[0].MTU
		br := plumbing.BridgeName(vmNetwork.ID)
		p, err := v.AddProbe(ctx, m1, br, netip.MustParsePrefix("10.20.0.31/24"), bigProbeMTU)
		if err != nil {
			t.Fatal(err)
		}
		tap, err := vmTap(ctx, m2, br)
		if err != nil {
			t.Fatal(err)
		}
		dfEdge(t, ctx, vmNetwork.Name, p, netip.MustParseAddr("10.20.0.12"), mtu, m2.Name+" "+tap+" (web2's tap)", m2.Start, tap)
	})

	t.Run("helper restart keeps metadata", func(t *testing.T) {
		v.restartDaemon(t, ctx, m1, nil)
		got := v.list(t, ctx, m1)["web1"]
		if got.Network != "blue" || got.Address != "10.20.0.11/24" || !strings.HasPrefix(got.Image, "vmlinux") ||
			got.Creator == "" || got.Created.IsZero() || got.State != "running" || got.MemoryMiB != 128 || got.CPUs != 1 {
			t.Errorf("after a helper restart web1 lists as %+v", got)
		}
	})

	t.Run("stop", func(t *testing.T) {
		// The tiny guest powers off on the ACPI button: a graceful stop.
		begin := time.Now()
		out, err := v.helper(ctx, m2, "vm", "stop", "web2", "--timeout", "60s")
		if err != nil {
			t.Fatalf("stop web2: %v: %s", err, out)
		}
		var res helperapi.VMActionResult
		if err := json.Unmarshal(out, &res); err != nil || res.Forced {
			t.Errorf("web2 should shut down on the ACPI button, gracefully: %s (%v)", out, err)
		}
		t.Logf("graceful stop took %s", time.Since(begin))
		if got := v.list(t, ctx, m2)["web2"].State; got != "shut off" {
			t.Errorf("web2 after stop: %q", got)
		}
		if _, err := v.helper(ctx, m2, "vm", "start", "web2"); err != nil {
			t.Fatalf("start web2: %v", err)
		}
		if got := v.list(t, ctx, m2)["web2"].State; got != "running" {
			t.Errorf("web2 after start: %q", got)
		}
	})

	t.Run("a boot starts the VMs that ran, not those stopped", func(t *testing.T) {
		// A power loss: web1's qemu is gone, its autostart mark kept. A
		// boot is the kernel's boot id changing: the helper records the
		// boot whose VMs it started, so another value in that file is a
		// boot it has not seen.
		restart := func(m *sim.Machine, newBoot bool) {
			t.Helper()
			var between func()
			if newBoot {
				between = func() {
					if out, err := m.Run(ctx, "/bin/sh", "-c", "echo an-earlier-boot > "+helperapi.DefaultStateDir+"/vms-started-boot"); err != nil {
						t.Fatalf("%v: %s", err, out)
					}
				}
			}
			v.restartDaemon(t, ctx, m, between)
		}
		state := func(m *sim.Machine, name, want string, within time.Duration) helperapi.VMInfo {
			t.Helper()
			var got helperapi.VMInfo
			for deadline := time.Now().Add(within); ; time.Sleep(250 * time.Millisecond) {
				if got = v.list(t, ctx, m)[name]; got.State == want || time.Now().After(deadline) {
					break
				}
			}
			if got.State != want {
				t.Fatalf("%s on %s: %q (autostart %v), want %q", name, m.Name, got.State, got.Autostart, want)
			}
			return got
		}
		if out, err := m1.Run(ctx, "/usr/bin/virsh", "-c", "qemu:///system", "destroy", "web1"); err != nil {
			t.Fatalf("virsh destroy web1: %v: %s", err, out)
		}
		if got := state(m1, "web1", "shut off", 10*time.Second); !got.Autostart {
			t.Fatalf("web1 lost its autostart mark: %+v", got)
		}
		// Its console log emptied, so the guest's ready line below is
		// this boot's.
		if out, err := m1.Run(ctx, "/bin/sh", "-c", ": > "+filepath.Join(vm.DefaultLogDir, "web1.console.log")); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		// The control: a daemon restart alone is no boot.
		restart(m1, false)
		time.Sleep(3 * time.Second)
		state(m1, "web1", "shut off", 0)
		begin := time.Now()
		restart(m1, true)
		state(m1, "web1", "running", 30*time.Second)
		t.Logf("web1 running %s after the helper's start on a new boot", time.Since(begin).Round(time.Millisecond))
		if _, err := v.waitConsoleLog(ctx, m1, "web1", sim.TinyGuestReady, 90*time.Second); err != nil {
			t.Fatalf("web1 started at boot never came up: %v", err)
		}

		// web2 stopped on purpose stays stopped across a boot.
		if out, err := v.helper(ctx, m2, "vm", "stop", "web2", "--timeout", "60s"); err != nil {
			t.Fatalf("stop web2: %v: %s", err, out)
		}
		if got := state(m2, "web2", "shut off", 0); got.Autostart {
			t.Errorf("web2 stopped is still marked to autostart")
		}
		restart(m2, true)
		time.Sleep(3 * time.Second)
		state(m2, "web2", "shut off", 0)
		if _, err := v.helper(ctx, m2, "vm", "start", "web2"); err != nil {
			t.Fatalf("start web2: %v", err)
		}
		if got := state(m2, "web2", "running", 10*time.Second); !got.Autostart {
			t.Errorf("web2 started is not marked to autostart")
		}
	})

	t.Run("remove leaves nothing", func(t *testing.T) {
		for _, c := range []struct {
			m    *sim.Machine
			name string
		}{{m1, "web1"}, {m2, "web2"}} {
			if out, err := v.helper(ctx, c.m, "vm", "remove", c.name); err != nil {
				t.Fatalf("remove %s: %v: %s", c.name, err, out)
			}
			if vms := v.list(t, ctx, c.m); len(vms) != 0 {
				t.Errorf("after remove %s lists %v", c.m.Name, vms)
			}
			files, err := vmFiles(ctx, c.m)
			if err != nil {
				t.Fatal(err)
			}
			if len(files) != 0 {
				t.Errorf("after remove %s still has %v", c.m.Name, files)
			}
		}
		out, err := v.helper(ctx, m1, "images")
		if err != nil || !bytes.Contains(out, []byte("vmlinux")) {
			t.Errorf("the base image should stay cached after remove: %v: %s", err, out)
		}
	})
}

// vmTap is the one port of bridge on m that is neither a tunnel nor a
// probe: the tap of the one VM on m.
func vmTap(ctx context.Context, m *sim.Machine, bridge string) (string, error) {
	ports, err := kernelLinks(ctx, m, "master", bridge)
	if err != nil {
		return "", err
	}
	var taps []string
	for _, p := range ports {
		// A VM's tap (btvm…, helperapi.VMPort): the only tun device on a
		// network's bridge.
		if p.Kind() == "tun" {
			taps = append(taps, p.Name)
		}
	}
	if len(taps) != 1 {
		return "", fmt.Errorf("%s: %s has ports %v, want exactly one VM tap", m.Name, bridge, ports)
	}
	return taps[0], nil
}
