package vm

import (
	"context"
	"errors"
	"fmt"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/digitalocean/go-libvirt"
)

// A VM's autostart flag is whether it runs after its machine boots: set
// by create and start, cleared by stop, so a VM stopped on purpose stays
// stopped across a reboot. libvirtd's own autostart runs when libvirtd
// starts, usually before the helper has made the networks' bridges, and
// then fails; so the helper, once it has restored its networks after a
// boot, starts what libvirt could not (StartAtBoot).

// toStartAtBoot are the VMs a boot should start: butter's, marked to
// autostart and shut off (or crashed).
func toStartAtBoot(vms []helperapi.VMInfo) []string {
	var out []string
	for _, v := range vms {
		if v.Autostart && (v.State == stateName(libvirt.DomainShutoff) || v.State == stateName(libvirt.DomainCrashed)) {
			out = append(out, v.Name)
		}
	}
	return out
}

// StartAtBoot starts every VM of this machine marked to autostart that
// is not running, and returns the names it started; a VM that does not
// start is named in the error, and the others start all the same.
func (m *Manager) StartAtBoot(ctx context.Context) ([]string, error) {
	vms, err := m.List(ctx)
	if err != nil {
		return nil, err
	}
	var started []string
	var errs []error
	for _, name := range toStartAtBoot(vms) {
		if err := m.Start(ctx, name); err != nil {
			errs = append(errs, err)
			continue
		}
		started = append(started, name)
	}
	return started, errors.Join(errs...)
}

// setAutostart marks dom to run after a boot, or not.
func (m *Manager) setAutostart(dom libvirt.Domain, on bool) error {
	flag := int32(0)
	if on {
		flag = 1
	}
	if err := m.l.DomainSetAutostart(dom, flag); err != nil {
		return fmt.Errorf("autostart vm %q: %w", dom.Name, err)
	}
	return nil
}
