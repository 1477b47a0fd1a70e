package vm

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/butter-cloud/butter/helperapi"
)

// A create's dry run needs no libvirtd, and names the VM's seed and the
// virsh steps Create takes, in its order, with the domain XML Create
// defines in full: bridge, tap, MAC, MTU, disk overlay, seed, console log.
func TestCreateDryRun(t *testing.T) {
	s := Spec{Name: "web", CPUs: 1, MemoryMiB: 512, DiskGiB: 4, ImageName: "debian-12 (abc)",
		Disk: &BaseDisk{Path: "/srv/images/debian", Format: "qcow2"},
		NIC: NIC{Network: "blue", Bridge: "btbr1", MTU: 1370, Subnet: netip.MustParsePrefix("10.20.0.0/24"),
			Address: netip.MustParsePrefix("10.20.0.5/24")}}
	cmds, err := CreateDryRunUnconnected(context.Background(), Options{VMsDir: "/srv/vms", LogDir: "/srv/log", Accel: helperapi.AccelTCG}, s)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(cmds, "\n")
	for _, want := range []string{"virsh vol-create butter-vms <volume web.qcow2", "# write the cloud-init seed /srv/vms/web-seed.iso",
		"virsh define /dev/stdin <<'EOF'\n<domain type='qemu'>\n", "<source bridge='btbr1'/>", "<target dev='" + helperapi.VMPort("web") + "'/>",
		"<mac address='" + helperapi.VMMAC(s.NIC.Address.Addr()).String() + "'/>", "<mtu size='1370'/>",
		"<source file='/srv/vms/web.qcow2'/>", "<source file='/srv/vms/web-seed.iso'/>", "<log file='/srv/log/web.console.log'",
		"</domain>\nEOF\nvirsh autostart web\nvirsh start web"} {
		if !strings.Contains(got, want) {
			t.Errorf("create dry run lacks %q:\n%s", want, got)
		}
	}
	s.NIC.Address = netip.MustParsePrefix("10.20.0.0/24")
	if _, err := CreateDryRunUnconnected(context.Background(), Options{Accel: helperapi.AccelTCG}, s); err == nil {
		t.Errorf("a create's dry run took the network's own address")
	}
}
