package vm

import (
	"context"
	"fmt"
	"strings"

	"github.com/butter-cloud/butter/helperapi"
)

// DryRun lists, as virsh commands, what action (create, start, stop,
// reboot, remove) would do to VM name now, changing nothing. It follows
// Create, Start, Stop, Reboot and Remove step by step.
func (m *Manager) DryRun(ctx context.Context, name, action string, force bool) ([]string, error) {
	if err := helperapi.RefuseName("vm", name); err != nil {
		return nil, err
	}
	if action == "create" {
		if _, err := m.l.DomainLookupByName(name); err == nil {
			return nil, fmt.Errorf("vm %q exists on this machine", name)
		}
		return CreateDryRun(m.o, name), nil
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
	return nil, fmt.Errorf("vm action %q: choose create, start, stop, reboot or remove", action)
}

// CreateDryRun is what Create would run for VM name, as virsh commands;
// it needs no libvirtd (a machine that never ran a VM has none open yet,
// and opening one would make the storage pools).
func CreateDryRun(o Options, name string) []string {
	o = o.withDefaults()
	return []string{
		fmt.Sprintf("# libvirt's storage pools %s and %s are made first if missing", ImagesPool, VMsPool),
		fmt.Sprintf("virsh vol-create %s <volume %s.qcow2: an overlay of the image, or a blank disk>", VMsPool, name),
		"# write the cloud-init seed " + seedFile(o.VMsDir, name),
		fmt.Sprintf("virsh define <domain %s: the helper's domain XML, on the network's bridge through tap %s>", name, helperapi.VMPort(name)),
		"virsh autostart " + name,
		"virsh start " + name,
	}
}
