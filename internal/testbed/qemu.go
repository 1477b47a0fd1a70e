package testbed

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// GuestOptions describe a tiny qemu guest booted straight into a kernel
// and an initramfs, its serial console on qemu's standard streams.
type GuestOptions struct {
	Name    string // for errors and logs
	Kernel  string // ELF vmlinux (PVH) or bzImage
	Initrd  string // gzip'd cpio
	Append  string // kernel command line
	Memory  int    // MiB; 128 if zero
	CPUs    int    // 1 if zero
	QEMU    string // qemu-system-x86_64 if empty
	Network *SocketNetwork
	MAC     string // of the guest's one NIC; required with Network or Tap
	// Tap is a tap device (made by the caller) for the guest's one NIC,
	// instead of Network.
	Tap string
	// HostMTU is offered to the guest's virtio NIC (host_mtu): its driver
	// takes it as the link's MTU at boot. 0 leaves the default.
	HostMTU int
	// Disks are attached as virtio disks in order (vda, vdb, …): qcow2
	// when the name ends in .qcow2, raw otherwise.
	Disks []string
	// Reboot makes a reboot in the guest restart it in the same qemu;
	// otherwise qemu exits when the guest reboots or powers off.
	Reboot bool
}

// SocketNetwork is a qemu "socket" network: every guest joining the same
// multicast group and port on loopback sees every other's frames (and its
// own), like a hub. Nothing leaves the machine.
type SocketNetwork struct {
	Group string // 230.0.0.1 if empty
	Port  int
}

// SerialLine is one line of a guest's serial console.
type SerialLine struct {
	At   time.Duration // since the guest started
	Text string        // without the line ending
}

// Guest is a running qemu process. Its serial output arrives on Lines;
// Send writes to its serial input.
type Guest struct {
	Name    string
	Started time.Time

	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan SerialLine
	done  chan struct{}
	err   error // set before done is closed
	mu    sync.Mutex
}

// QEMUArgs returns the qemu command line for opts, without the program.
// The guest runs under TCG: KVM may be present and yet hang on these
// machines (see the lab notes).
func QEMUArgs(opts GuestOptions) ([]string, error) {
	if opts.Kernel == "" || opts.Initrd == "" {
		return nil, errors.New("guest: kernel and initrd are required")
	}
	mem := opts.Memory
	if mem == 0 {
		mem = 128
	}
	cpus := opts.CPUs
	if cpus == 0 {
		cpus = 1
	}
	args := []string{
		"-nodefaults", "-no-user-config", "-display", "none",
		"-machine", "pc", "-accel", "tcg,tb-size=32", "-cpu", "max",
		"-m", strconv.Itoa(mem) + "M", "-smp", strconv.Itoa(cpus),
		"-serial", "stdio", "-monitor", "none",
		"-kernel", opts.Kernel, "-initrd", opts.Initrd,
		"-append", opts.Append,
	}
	if !opts.Reboot {
		args = append(args, "-no-reboot")
	}
	for _, d := range opts.Disks {
		if strings.Contains(d, ",") {
			return nil, fmt.Errorf("guest %s: disk %q: a comma cannot be passed to qemu", opts.Name, d)
		}
		format := "raw"
		if strings.HasSuffix(d, ".qcow2") {
			format = "qcow2"
		}
		args = append(args, "-drive", "file="+d+",if=virtio,format="+format)
	}
	nic := "virtio-net-pci,netdev=n0,mac=" + opts.MAC
	if opts.HostMTU > 0 {
		nic += ",host_mtu=" + strconv.Itoa(opts.HostMTU)
	}
	if opts.Network != nil && opts.Tap != "" {
		return nil, fmt.Errorf("guest %s: a socket network or a tap, not both", opts.Name)
	}
	if (opts.Network != nil || opts.Tap != "") && opts.MAC == "" {
		return nil, fmt.Errorf("guest %s: a MAC address is required with a network", opts.Name)
	}
	if opts.Tap != "" {
		args = append(args, "-netdev", "tap,id=n0,ifname="+opts.Tap+",script=no,downscript=no", "-device", nic)
	}
	if n := opts.Network; n != nil {
		group := n.Group
		if group == "" {
			group = "230.0.0.1"
		}
		if n.Port < 1 || n.Port > 65535 {
			return nil, fmt.Errorf("guest %s: socket network port %d out of range", opts.Name, n.Port)
		}
		args = append(args,
			"-netdev", fmt.Sprintf("socket,id=n0,mcast=%s:%d,localaddr=127.0.0.1", group, n.Port),
			"-device", nic)
	}
	return args, nil
}

// StartGuest starts qemu. The guest is killed when ctx ends; Wait returns
// when qemu has exited and its output is read.
func StartGuest(ctx context.Context, opts GuestOptions) (*Guest, error) {
	args, err := QEMUArgs(opts)
	if err != nil {
		return nil, err
	}
	prog := opts.QEMU
	if prog == "" {
		prog = "qemu-system-x86_64"
	}
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.WaitDelay = 2 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("guest %s: %w", opts.Name, err)
	}
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	cmd.Stderr = pw // qemu's own complaints belong in the same log
	g := &Guest{
		Name:  opts.Name,
		cmd:   cmd,
		stdin: stdin,
		lines: make(chan SerialLine, 1024),
		done:  make(chan struct{}),
	}
	g.Started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("guest %s: start %s: %w", opts.Name, prog, err)
	}
	readDone := make(chan struct{})
	go func() { // ends at EOF, when qemu exits and pw is closed
		defer close(readDone)
		defer close(g.lines)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
		for sc.Scan() {
			text := strings.TrimRight(sc.Text(), "\r")
			g.lines <- SerialLine{At: time.Since(g.Started), Text: text}
		}
		io.Copy(io.Discard, pr) // a too-long line: keep qemu unblocked
	}()
	go func() {
		err := cmd.Wait()
		pw.Close()
		<-readDone
		if err != nil && ctx.Err() != nil {
			err = fmt.Errorf("guest %s: %w (%v)", opts.Name, ctx.Err(), err)
		} else if err != nil {
			err = fmt.Errorf("guest %s: qemu: %w", opts.Name, err)
		}
		g.err = err
		close(g.done)
	}()
	return g, nil
}

// Lines delivers the serial console line by line; it is closed when qemu
// has exited. Read it to the end: qemu blocks when nobody does.
func (g *Guest) Lines() <-chan SerialLine { return g.lines }

// Send writes one line to the guest's serial input.
func (g *Guest) Send(line string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, err := io.WriteString(g.stdin, line+"\n"); err != nil {
		return fmt.Errorf("guest %s: send: %w", g.Name, err)
	}
	return nil
}

// Done is closed when qemu has exited.
func (g *Guest) Done() <-chan struct{} { return g.done }

// Wait waits for qemu to exit and returns why it failed, if it did.
func (g *Guest) Wait() error {
	<-g.done
	return g.err
}

// Kill stops qemu at once.
func (g *Guest) Kill() {
	if g.cmd.Process != nil {
		g.cmd.Process.Kill()
	}
}
