package vm

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/butter-cloud/butter/helperapi"
)

// DryRun lists, as virsh commands, what action (start, stop, reboot,
// remove) would do to VM name now, changing nothing. It follows Start,
// Stop, Reboot and Remove step by step; CreateDryRun follows Create.
func (m *Manager) DryRun(ctx context.Context, name, action string, force bool) ([]string, error) {
	if err := helperapi.RefuseName("vm", name); err != nil {
		return nil, err
	}
	dom, _, err := m.lookup(name)
	if err != nil {
		return nil, err
	}
	running := m.running(dom)
	switch action {
	case "start":
		if running {
			return nil, nil
		}
		return []string{"virsh start " + name}, nil
	case "stop":
		if !running {
			return nil, nil
		}
		return []string{"virsh shutdown " + name, "# if it is still running after the timeout:", "virsh destroy " + name}, nil
	case "reboot":
		if force {
			return []string{"virsh reset " + name}, nil
		}
		return []string{"virsh reboot " + name}, nil
	case "remove":
		var out []string
		if running {
			out = append(out, "virsh destroy "+name)
		}
		return append(out, "virsh undefine "+name+" --managed-save --nvram",
			fmt.Sprintf("virsh vol-delete --pool %s %s.qcow2", VMsPool, name),
			"rm -f "+strings.Join([]string{m.seedPath(name), m.logPath(name)}, " ")), nil
	}
	return nil, fmt.Errorf("vm action %q: choose start, stop, reboot or remove", action)
}

// CreateDryRun is what Create would run for s, as commands, changing
// nothing: the disk, the seed, `virsh define` with the very domain XML
// Create defines (its creation time aside), autostart and start. It
// refuses what Create refuses first: a bad spec, a name or address
// taken, a missing bridge.
func (m *Manager) CreateDryRun(ctx context.Context, s Spec) ([]string, error) {
	if err := m.Check(ctx, s); err != nil {
		return nil, err
	}
	return m.createCommands(s)
}

// CreateDryRunUnconnected is CreateDryRun on a machine whose helper has
// not connected to libvirtd yet (connecting makes the storage pools, a
// change): the spec is checked, not what libvirt holds.
func CreateDryRunUnconnected(ctx context.Context, o Options, s Spec) ([]string, error) {
	if s.Hostname == "" {
		s.Hostname = s.Name
	}
	if err := errors.Join(s.problems()...); err != nil {
		return nil, err
	}
	m, err := unconnected(ctx, o)
	if err != nil {
		return nil, err
	}
	cmds, err := m.createCommands(s)
	if err != nil {
		return nil, err
	}
	return append([]string{fmt.Sprintf("# libvirt's storage pools %s and %s are made first if missing", ImagesPool, VMsPool)}, cmds...), nil
}

// createCommands is Create's steps for s as commands.
func (m *Manager) createCommands(s Spec) ([]string, error) {
	mac, err := s.mac()
	if err != nil {
		return nil, err
	}
	d := m.domain(s, mac)
	x, err := d.Render()
	if err != nil {
		return nil, err
	}
	var out []string
	if d.Disk != "" {
		out = append(out, fmt.Sprintf("virsh vol-create %s <volume %s.qcow2: an overlay of the image, or a blank disk>", VMsPool, s.Name))
	}
	if d.Seed != "" {
		out = append(out, "# write the cloud-init seed "+d.Seed)
	}
	return append(out, "virsh define /dev/stdin <<'EOF'\n"+strings.TrimRight(x, "\n")+"\nEOF",
		"virsh autostart "+s.Name,
		"virsh start "+s.Name), nil
}
