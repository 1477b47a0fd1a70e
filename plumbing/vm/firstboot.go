package vm

import (
	"fmt"
	"net"
	"os"
	"slices"

	"github.com/butter-cloud/butter/helperapi"
	"github.com/butter-cloud/butter/plumbing/cloudinit"
)

// seed is the VM's first-boot configuration: hostname, keys, and a static
// address with the network's MTU on its one NIC, which is named eth0.
func seed(s Spec, mac net.HardwareAddr) cloudinit.Seed {
	sd := cloudinit.Seed{
		InstanceID: s.Name + "-" + mac.String(),
		Hostname:   s.Hostname,
		SSHKeys:    s.SSHKeys,
		HostKey:    s.HostKey,
		NIC: cloudinit.NIC{MAC: mac, Name: "eth0", Address: s.NIC.Address, Gateway: s.NIC.Gateway,
			DNS: s.NIC.DNS, MTU: s.NIC.MTU},
	}
	sd.NIC.Search = searchDomains(s.NIC)
	return sd
}

// searchDomains are the NIC's search domains: its network's domain when
// the network's gateway is one of its name servers (the gateway's
// resolver answers that domain), so `web` finds web.NETWORK.internal. A
// guest told other name servers gets none: its short names would go to
// them.
func searchDomains(n NIC) []string {
	gw := helperapi.GatewayAddr(n.Subnet)
	if !gw.IsValid() || !helperapi.ValidName(n.Network) || !slices.Contains(n.DNS, gw) {
		return nil
	}
	return []string{helperapi.NetworkDomain(n.Network)}
}

// kernelCmdline is a kernel-boot VM's command line: the network in
// dracut's ip= form, the serial console, then the user's own arguments.
func kernelCmdline(s Spec, mac net.HardwareAddr) string {
	return "console=ttyS0 " + cloudinit.KernelCmdline(seed(s, mac), s.Kernel.Cmdline)
}

// writeSeed writes the VM's NoCloud seed ISO into the VMs pool's folder.
func (m *Manager) writeSeed(s Spec, mac net.HardwareAddr) error {
	sd := seed(s, mac)
	if err := sd.Validate(); err != nil {
		return fmt.Errorf("vm %q first-boot configuration: %w", s.Name, err)
	}
	iso, err := sd.ISO()
	if err != nil {
		return fmt.Errorf("vm %q seed: %w", s.Name, err)
	}
	if err := os.WriteFile(m.seedPath(s.Name), iso, 0o600); err != nil {
		return fmt.Errorf("vm %q seed: %w", s.Name, err)
	}
	return nil
}
