package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// LibvirtSocket is libvirtd's socket inside a machine.
const LibvirtSocket = "/run/libvirt/libvirt-sock"

// libvirtConfig are the settings that let libvirtd and qemu run inside a
// lab machine, with no systemd, cgroups or security driver of its own.
var libvirtConfig = map[string]string{
	"/etc/libvirt/qemu.conf": `user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
`,
	"/etc/libvirt/libvirtd.conf": `auth_unix_rw = "none"
unix_sock_rw_perms = "0700"
`,
	"/etc/libvirt/virtlogd.conf": "",
}

// Libvirtd is libvirtd, with its virtlogd, running inside a lab machine.
type Libvirtd struct {
	m        *Machine
	virtlogd *Process
	libvirtd *Process
}

// StartLibvirt starts virtlogd and libvirtd inside m and waits until
// libvirtd answers on its socket. out gets their logs (nil: discarded).
func (m *Machine) StartLibvirt(ctx context.Context, out io.Writer) (_ *Libvirtd, err error) {
	for path, text := range libvirtConfig {
		cmd := m.Command(ctx, "/bin/sh", "-c", `mkdir -p "$(dirname "$1")" && cat > "$1"`, "sh", path)
		cmd.Stdin = strings.NewReader(text)
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("machine %s: write %s: %v: %s", m.Name, path, err, b)
		}
	}
	// libvirt locks a console's pty in /var/lock, that is /run/lock,
	// which the machine's fresh /run lacks.
	if b, err := m.Command(ctx, "/bin/mkdir", "-p", "/run/lock").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("machine %s: make /run/lock: %v: %s", m.Name, err, b)
	}
	d := &Libvirtd{m: m}
	defer func() {
		if err != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			d.Stop(ctx)
			cancel()
		}
	}()
	if d.virtlogd, err = m.Start(ctx, out, "/usr/sbin/virtlogd"); err != nil {
		return nil, fmt.Errorf("machine %s: start virtlogd (install libvirt-daemon-system): %w", m.Name, err)
	}
	if d.libvirtd, err = m.Start(ctx, out, "/usr/sbin/libvirtd"); err != nil {
		return nil, fmt.Errorf("machine %s: start libvirtd (install libvirt-daemon-system): %w", m.Name, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if fi, err := os.Stat(d.HostSocket()); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return d, nil
		}
		select {
		case <-d.libvirtd.Done():
			return nil, fmt.Errorf("machine %s: libvirtd exited: %v", m.Name, d.libvirtd.Err())
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("machine %s: libvirtd made no socket in 30 s", m.Name)
		}
	}
}

// HostSocket is libvirtd's socket as this host's processes reach it:
// through the daemon's own root, since the machine's /run is its own.
func (d *Libvirtd) HostSocket() string {
	return filepath.Join("/proc", fmt.Sprint(d.libvirtd.PID()), "root", LibvirtSocket)
}

// Stop stops libvirtd and virtlogd. Running guests (qemu) are left to the
// lab's teardown.
func (d *Libvirtd) Stop(ctx context.Context) error {
	var errs []error
	for _, p := range []*Process{d.libvirtd, d.virtlogd} {
		if p != nil {
			if err := p.Stop(ctx); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
